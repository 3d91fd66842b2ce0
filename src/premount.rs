//! The privileged half of a sandboxed service: `gbo-fs premount` mounts the
//! FUSE device where the host sees it and hands the descriptor to systemd's
//! file-descriptor store for the daemon; `gbo-fs unmount` detaches a gbo-fs mount.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::MsFlags;

use crate::cli::MountArgs;
use crate::daemon::{lazy_unmount, prepare_mountpoint, DaemonError};
use crate::systemd;

/// The source (and subtype) name of every gbo-fs mount.
pub const FS_NAME: &str = "gbo-fs";

/// The filesystem type a `premount` mount shows in /proc/self/mountinfo.
pub const FS_TYPE: &str = "fuse.gbo-fs";

/// How long systemd gets to confirm it stored the descriptor.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Mounts the FUSE device at `args.mountpoint` and stores its descriptor in the
/// service's fd store, from where systemd passes it to `gbo-fs mount`.
pub fn run_premount(args: &MountArgs) -> Result<(), DaemonError> {
    if !systemd::notify_socket_present() {
        return Err(DaemonError::Setup(
            "premount hands the mount to systemd and needs NOTIFY_SOCKET: run it as \
             ExecStartPre=+ of a unit with FileDescriptorStoreMax=1 and NotifyAccess=exec \
             (see mount/gbo-fs.service)"
                .into(),
        ));
    }
    if args.auto_unmount {
        return Err(DaemonError::Setup(
            "--auto-unmount does not apply to premount: the unit's ExecStopPost unmounts".into(),
        ));
    }
    join_init_mount_namespace()?;
    let mountpoint = prepare_mountpoint(&args.mountpoint)?;
    let device = mount_fuse_device(&mountpoint, args.allow_other)?;
    if let Err(error) = systemd::store_fd(systemd::FUSE_FD_NAME, device.as_fd(), STORE_TIMEOUT) {
        lazy_unmount(&mountpoint);
        return Err(DaemonError::Setup(format!(
            "{}: mounted, but systemd did not take the descriptor ({error}); unmounted again. \
             The unit needs FileDescriptorStoreMax=1 and NotifyAccess=exec",
            mountpoint.display()
        )));
    }
    tracing::info!(mountpoint = %mountpoint.display(), "mounted; descriptor handed to systemd for gbo-fs mount");
    Ok(())
}

/// Opens /dev/fuse and mounts it read-only at `mountpoint` with the options
/// `gbo-fs mount` uses itself; the kernel then waits for a daemon on the descriptor.
pub fn mount_fuse_device(mountpoint: &Path, allow_other: bool) -> Result<OwnedFd, DaemonError> {
    let failed = |reason: String| DaemonError::Mountpoint {
        path: mountpoint.display().to_string(),
        reason,
    };
    let device = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")
        .map_err(|e| failed(format!("cannot open /dev/fuse: {e}")))?;
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={},default_permissions",
        device.as_raw_fd(),
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    if allow_other {
        data.push_str(",allow_other");
    }
    let flags = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_NOATIME;
    nix::mount::mount(
        Some(FS_NAME),
        mountpoint,
        Some(FS_TYPE),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| failed(format!("mount failed: {e}")))?;
    Ok(device.into())
}

/// What `gbo-fs unmount` found at the mountpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmounted {
    Detached,
    NothingMounted,
}

/// Lazily detaches the gbo-fs mount at `path`; refuses to touch any other
/// filesystem. Nothing mounted there is not an error (ExecStopPost runs after
/// clean stops too).
pub fn run_unmount(path: &Path) -> Result<Unmounted, DaemonError> {
    join_init_mount_namespace()?;
    let absolute: PathBuf = std::path::absolute(path).map_err(|e| DaemonError::Mountpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    match crate::daemon::mounted_filesystem(&absolute) {
        None => Ok(Unmounted::NothingMounted),
        Some(mounted) if mounted.is_gbo_fs() => {
            nix::mount::umount2(&absolute, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
                DaemonError::Mountpoint {
                    path: absolute.display().to_string(),
                    reason: format!("unmount failed: {e}"),
                }
            })?;
            Ok(Unmounted::Detached)
        }
        Some(other) => Err(DaemonError::Mountpoint {
            path: absolute.display().to_string(),
            reason: format!("holds a {} mount, not gbo-fs; left alone", other.fs_type),
        }),
    }
}

/// Moves this (single-threaded) process into PID 1's mount namespace when it
/// runs in another one: systemd gives even `+` commands a mount namespace of
/// their own when the unit uses PrivateTmp= and the like (systemd 252 does), and
/// a mount made there would vanish with the process.
fn join_init_mount_namespace() -> Result<(), DaemonError> {
    let namespace_of = |pid: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        })
    };
    let (Ok(own), Ok(init)) = (namespace_of("self"), namespace_of("1")) else {
        // Without access to PID 1's namespace, mount where we are.
        return Ok(());
    };
    if own == init {
        return Ok(());
    }
    let failed = |e: &dyn std::fmt::Display| {
        DaemonError::Setup(format!(
            "cannot join PID 1's mount namespace (/proc/1/ns/mnt): {e}"
        ))
    };
    let namespace = std::fs::File::open("/proc/1/ns/mnt").map_err(|e| failed(&e))?;
    nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| failed(&e))?;
    tracing::debug!("joined PID 1's mount namespace");
    Ok(())
}

/// Checks that a descriptor passed by systemd is the FUSE device.
pub fn is_fuse_device(fd: &OwnedFd) -> bool {
    match nix::sys::stat::fstat(fd.as_raw_fd()) {
        Ok(stat) => {
            (stat.st_mode & libc::S_IFMT) == libc::S_IFCHR
                && libc::major(stat.st_rdev) == 10
                && libc::minor(stat.st_rdev) == 229
        }
        Err(_) => false,
    }
}
