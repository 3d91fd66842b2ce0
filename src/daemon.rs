//! Daemon lifecycle: prepare the mountpoint (clearing a stale mount), mount
//! (or take a mount systemd passes in), tell systemd, wait for SIGTERM/SIGINT
//! or an external unmount, unmount.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cli::MountArgs;
use crate::fs::{FsConfig, SecretFs};
use crate::fuse::FuseAdapter;
use crate::settings::Settings;
use crate::vault::http::VaultHttpStore;
use crate::vault::SecretStore;

/// A lifecycle failure, naming the mountpoint or the setting involved.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{path}: {reason}")]
    Mountpoint { path: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

/// Builds the Vault store and the filesystem core for `settings`.
pub fn build_filesystem(
    settings: &Settings,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(Arc<VaultHttpStore>, Arc<SecretFs>), DaemonError> {
    let store = Arc::new(
        VaultHttpStore::new(
            settings.connection.clone(),
            &settings.prefix,
            settings.overrides.clone(),
        )
        .map_err(DaemonError::Setup)?,
    );
    let mut config = FsConfig::new(&settings.prefix);
    config.cache = settings.cache.clone();
    config.operation_timeout = settings.connection.timeout;
    config.views = settings.views.clone();
    config.vault_concurrency = settings.vault_concurrency;
    config.missing_reference = settings.missing_reference;
    if let Some(uid) = uid {
        config.uid = uid;
    }
    if let Some(gid) = gid {
        config.gid = gid;
    }
    config.given_gid = gid;
    let fs = Arc::new(SecretFs::new(store.clone() as Arc<dyn SecretStore>, config));
    Ok((store, fs))
}

/// The runtime and filesystem core for a one-shot command (`get`, `ls`,
/// `render`, `check`), with the token checked (or an AppRole login done) first.
pub fn one_shot_filesystem(settings: &Settings) -> Result<(Runtime, Arc<SecretFs>), String> {
    let runtime = runtime().map_err(|e| e.to_string())?;
    let (store, fs) = build_filesystem(settings, None, None).map_err(|e| e.to_string())?;
    crate::token::authenticate_one_shot(&store, settings.upkeep.approle.as_ref(), &runtime)?;
    Ok((runtime, fs))
}

/// A tokio runtime for the daemon and the one-shot commands. One worker: the
/// work is I/O-bound, and on a cache miss every extra worker woken (tokio wakes
/// a second one to steal each new task) is a cross-CPU wake-up on the path.
pub fn runtime() -> Result<Runtime, DaemonError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gbo-fs-worker")
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Setup(format!("cannot start the async runtime: {e}")))
}

/// Mounts and serves until SIGTERM/SIGINT or an external unmount.
pub fn run_mount(settings: Settings, args: MountArgs) -> Result<(), DaemonError> {
    // Under the sandboxed unit, `gbo-fs premount` has mounted already and
    // systemd passes the FUSE descriptor; this process then cannot (and need
    // not) mount or unmount.
    let handed_over =
        crate::systemd::take_listen_fd(crate::systemd::FUSE_FD_NAME).map_err(DaemonError::Setup)?;
    let premounted = handed_over.is_some();
    let mountpoint = match &handed_over {
        Some(device) => handed_over_mountpoint(device, &args)?,
        None => prepare_mountpoint(&args.mountpoint)?,
    };
    if !premounted {
        warn_if_hiding_files(&mountpoint);
    }
    warn_if_owner_is_locked_out(&args);
    let mut settings = settings;
    settings.views.mountpoint = Some(real_mountpoint(&mountpoint, premounted));
    warn_if_views_lead_into_the_mount(&settings.views);
    let runtime = runtime()?;
    let (store, fs) = build_filesystem(&settings, args.uid, args.gid)?;
    let upkeep = crate::upkeep::start(store.clone(), settings.upkeep.clone(), &runtime)
        .map_err(DaemonError::Setup)?;

    // Learn the layout now so it is logged at start; a Vault that is down does
    // not stop the mount: reads fail with EIO until it answers. One that let the
    // token check time out would only make the mount wait as long again.
    let probe = runtime.block_on(async {
        if upkeep.vault_timed_out {
            return None;
        }
        Some(tokio::time::timeout(settings.connection.timeout, store.layout()).await)
    });
    match probe {
        Some(Ok(Ok(_))) => {}
        Some(Ok(Err(error))) => {
            tracing::warn!(%error, "Vault not usable yet; mounting anyway, reads fail with EIO until it is")
        }
        Some(Err(_)) | None => tracing::warn!(
            "Vault did not answer; mounting anyway, reads fail with EIO until it does"
        ),
    }

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(crate::premount::FS_NAME.into()),
        MountOption::Subtype(crate::premount::FS_NAME.into()),
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoExec,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
    ];
    if args.auto_unmount {
        config.mount_options.push(MountOption::AutoUnmount);
    }
    // default_permissions is always on, so the kernel enforces 0400/0500 for
    // every user the ACL lets in. auto_unmount needs more than `Owner`
    // (fusermount3 insists); root-and-owner is the narrowest that works.
    config.acl = match (args.allow_other, args.auto_unmount) {
        (true, _) => SessionACL::All,
        (false, true) => SessionACL::RootAndOwner,
        (false, false) => SessionACL::Owner,
    };
    let adapter = FuseAdapter::new(fs.clone(), runtime.handle().clone());
    let session = match handed_over {
        Some(device) => Session::from_fd(adapter, device, config.acl, config),
        None => Session::new(adapter, &mountpoint, &config),
    };
    let mut session = session.map_err(|e| DaemonError::Mountpoint {
        path: mountpoint.display().to_string(),
        reason: format!("mount failed: {e}"),
    })?;
    // A mount made by `premount` is detached by the unit's ExecStopPost.
    let mut unmounter = (!premounted).then(|| session.unmount_callable());
    fs.set_invalidator(kernel_invalidator(session.notifier()));
    // Known only now that the mount exists: view paths on this device are refused.
    if let Some(device) = settings
        .views
        .mountpoint
        .as_deref()
        .and_then(mounted_filesystem)
        .and_then(|m| m.device)
    {
        settings.views.set_mount_device(device);
    }
    let refresher = runtime.spawn(refresh_loop(fs.clone()));
    let mut signals = {
        let _entered = runtime.enter();
        StopSignals::listen()
    }
    .map_err(|e| DaemonError::Setup(format!("cannot watch signals: {e}")))?;
    let (ended_tx, mut ended_rx) = tokio::sync::oneshot::channel();
    let serve = std::thread::Builder::new()
        .name("gbo-fs-fuse".into())
        .spawn(move || {
            let result = session.run();
            let _ = ended_tx.send(());
            result
        })
        .map_err(|e| DaemonError::Setup(format!("cannot start the FUSE thread: {e}")))?;

    tracing::info!(mountpoint = %mountpoint.display(), vault = %store.describe(), premounted, "mounted");
    crate::systemd::notify("READY=1");

    let stop_reason = runtime.block_on(async {
        loop {
            tokio::select! {
                _ = signals.terminate.recv() => return "SIGTERM",
                _ = signals.interrupt.recv() => return "SIGINT",
                _ = &mut ended_rx => return EXTERNAL_UNMOUNT,
                _ = signals.hangup.recv() => {
                    // Sources are read on every access; dropping the cache makes
                    // the next access re-read Vault as well.
                    fs.expire_cache();
                    fs.invalidate_all();
                    tracing::info!("SIGHUP: cache expired; config.csv sources and secrets are read again (last good values still serve a Vault outage)");
                }
            }
        }
    });
    refresher.abort();
    tracing::info!(reason = stop_reason, "unmounting");
    crate::systemd::notify("STOPPING=1");
    match unmounter.as_mut() {
        Some(unmounter) if stop_reason != EXTERNAL_UNMOUNT => {
            match unmounter.unmount() {
                Err(error) => {
                    tracing::info!(%error, "unmount failed (files in use?); detaching the mount lazily");
                    lazy_unmount(&mountpoint);
                }
                // With --auto-unmount, fuser only hangs up on fusermount3's helper
                // and reports success; the mount stayed, dead (ENOTCONN).
                Ok(()) if is_mount_point(&mountpoint) => lazy_unmount(&mountpoint),
                Ok(()) => {}
            }
        }
        _ => {}
    }
    // The FUSE thread ends once the kernel drops the mount, which a lazily
    // detached one does only when its last file is closed. A premounted one
    // stays until ExecStopPost detaches it. Either way exiting closes the FUSE
    // descriptor, so readers still holding files get ENOTCONN rather than hang.
    if stop_reason == EXTERNAL_UNMOUNT {
        report_session_end(serve.join());
    } else if !premounted {
        let waited = runtime.block_on(wait_for_session_end(&mut ended_rx, &mut signals));
        match waited {
            SessionWait::Ended => report_session_end(serve.join()),
            SessionWait::StillHeld => tracing::warn!(
                "files or working directories in the mount are still in use; exiting closes \
                 their connection (they get ENOTCONN)"
            ),
            SessionWait::SignalledAgain(signal) => tracing::warn!(
                signal,
                "stopping at once; files still in use in the mount get ENOTCONN"
            ),
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("stopped");
    Ok(())
}

/// The stop reason when the mount went away without a signal (`umount`).
const EXTERNAL_UNMOUNT: &str = "external unmount";

/// How long a stop waits for the mount's files to be closed before exiting.
const SESSION_END_GRACE: Duration = Duration::from_secs(2);

/// The signals the daemon answers, registered once so a second SIGTERM/SIGINT
/// during shutdown is seen rather than ignored.
struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl StopSignals {
    /// Registers the handlers; must run inside the runtime.
    fn listen() -> io::Result<StopSignals> {
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// How the wait for the FUSE thread after an unmount ended.
enum SessionWait {
    Ended,
    /// Files in the (lazily detached) mount were still open after the grace period.
    StillHeld,
    SignalledAgain(&'static str),
}

/// Waits up to [`SESSION_END_GRACE`] for the FUSE thread to end; a second
/// SIGTERM/SIGINT ends the wait at once.
async fn wait_for_session_end(
    ended: &mut tokio::sync::oneshot::Receiver<()>,
    signals: &mut StopSignals,
) -> SessionWait {
    tokio::select! {
        _ = ended => SessionWait::Ended,
        _ = tokio::time::sleep(SESSION_END_GRACE) => SessionWait::StillHeld,
        _ = signals.terminate.recv() => SessionWait::SignalledAgain("SIGTERM"),
        _ = signals.interrupt.recv() => SessionWait::SignalledAgain("SIGINT"),
    }
}

fn report_session_end(joined: std::thread::Result<io::Result<()>>) {
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "FUSE session ended with an error"),
        Err(_) => tracing::warn!("FUSE thread panicked"),
    }
}

/// Warns when mounting at `mountpoint` hides files already in that directory.
fn warn_if_hiding_files(mountpoint: &Path) {
    let occupied = std::fs::read_dir(mountpoint).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        tracing::warn!(
            mountpoint = %mountpoint.display(),
            "the mountpoint is not empty; its files are hidden while gbo-fs is mounted"
        );
    }
}

/// Warns when `--uid` gives the files to a user the kernel will not let in:
/// without `--allow-other` only the mounting user (and root with
/// `--auto-unmount`) may enter the mount.
fn warn_if_owner_is_locked_out(args: &MountArgs) {
    let Some(uid) = args.uid else { return };
    let mounting_user = nix::unistd::geteuid().as_raw();
    if !args.allow_other && uid != mounting_user {
        tracing::warn!(
            uid,
            mounting_user,
            "--uid gives the files to a user who cannot enter the mount without --allow-other \
             (every access fails with EACCES); add --allow-other"
        );
    }
}

/// Sends kernel-cache invalidations to fuser's `Notifier` from a thread of its
/// own: a notification written from a task that the kernel is waiting on for
/// the same inode could deadlock.
fn kernel_invalidator(notifier: fuser::Notifier) -> crate::fs::Invalidator {
    use crate::fs::{Invalidated, Invalidation};
    let (sender, receiver) = std::sync::mpsc::channel::<(Invalidation, Option<Invalidated>)>();
    let spawned = std::thread::Builder::new()
        .name("gbo-fs-invalidate".into())
        .spawn(move || {
            for (invalidation, done) in receiver {
                let sent = match &invalidation {
                    Invalidation::Inode(ino) => notifier.inval_inode(fuser::INodeNo(*ino), 0, 0),
                    Invalidation::Entry { parent, name } => {
                        notifier.inval_entry(fuser::INodeNo(*parent), std::ffi::OsStr::new(&**name))
                    }
                };
                // ENOENT only means the kernel holds nothing for this inode or name.
                if let Err(error) = sent {
                    if error.raw_os_error() != Some(libc::ENOENT) {
                        tracing::debug!(?invalidation, %error, "kernel cache invalidation failed");
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no invalidation thread; rotations reach readers at the kernel TTL");
    }
    let sender = std::sync::Mutex::new(sender);
    Arc::new(move |invalidation, done| {
        let _ = sender.lock().unwrap().send((invalidation, done));
    })
}

/// Refreshes expired, recently read secrets in the background, so rotations
/// reach readers whose kernel serves the file from its page cache.
async fn refresh_loop(fs: Arc<SecretFs>) {
    let ttl = fs.config().cache.ttl;
    if ttl.is_zero() {
        return;
    }
    let period = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::time::sleep(period).await;
        fs.refresh_expired().await;
    }
}

/// Makes sure `path` is a usable, unmounted directory: creates it if missing and
/// clears a stale mount left by a killed daemon (ENOTCONN).
pub fn prepare_mountpoint(path: &Path) -> Result<PathBuf, DaemonError> {
    let shown = || path.display().to_string();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(DaemonError::Mountpoint {
                path: shown(),
                reason: "is not a directory".into(),
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(mountpoint = %shown(), "clearing a stale mount left by a daemon that died");
            lazy_unmount(path);
            std::fs::metadata(path).map_err(|e| DaemonError::Mountpoint {
                path: shown(),
                reason: format!("stale mount could not be cleared: {e}"),
            })?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).map_err(|e| DaemonError::Mountpoint {
                path: shown(),
                reason: format!("cannot create: {e}"),
            })?;
        }
        Err(e) => {
            return Err(DaemonError::Mountpoint {
                path: shown(),
                reason: e.to_string(),
            })
        }
    }
    let absolute = std::fs::canonicalize(path).map_err(|e| DaemonError::Mountpoint {
        path: shown(),
        reason: e.to_string(),
    })?;
    if is_mount_point(&absolute) {
        // A dead daemon's mount may still answer `stat` from the kernel's attribute
        // cache; `statfs` always reaches the daemon and tells the truth.
        if matches!(
            nix::sys::statfs::statfs(&absolute),
            Err(nix::errno::Errno::ENOTCONN)
        ) {
            tracing::warn!(mountpoint = %shown(), "clearing a stale mount left by a daemon that died");
            lazy_unmount(&absolute);
            if !is_mount_point(&absolute) {
                return Ok(absolute);
            }
        }
        return Err(DaemonError::Mountpoint {
            path: shown(),
            reason: "something is already mounted here; unmount it first".into(),
        });
    }
    Ok(absolute)
}

/// Whether `/proc/self/mountinfo` lists `path` as a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    mounted_fs_type(path).is_some()
}

/// The topmost mount at a path, as mountinfo lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountedFs {
    /// e.g. `fuse.gbo-fs`, `fuse`, `tmpfs`.
    pub fs_type: String,
    /// The mount's source field, e.g. `gbo-fs`.
    pub source: String,
    /// The filesystem's device number (`st_dev` of its files), from `major:minor`.
    pub device: Option<u64>,
}

impl MountedFs {
    /// A gbo-fs mount: `fuse.gbo-fs` when `premount` made it, or `fuse` with the
    /// source `gbo-fs` when the daemon did (fuser's own mount does not apply the
    /// subtype).
    pub fn is_gbo_fs(&self) -> bool {
        use crate::premount::{FS_NAME, FS_TYPE};
        self.fs_type == FS_TYPE || (self.fs_type == "fuse" && self.source == FS_NAME)
    }
}

/// Whether the topmost mount at `path` is a gbo-fs one (see [`MountedFs::is_gbo_fs`]).
pub fn is_gbo_fs_mount(path: &Path) -> bool {
    mounted_filesystem(path).is_some_and(|mounted| mounted.is_gbo_fs())
}

/// The filesystem type of the topmost mount at `path` (e.g. `fuse.gbo-fs`),
/// per `/proc/self/mountinfo`; `None` when nothing is mounted there.
pub fn mounted_fs_type(path: &Path) -> Option<String> {
    mounted_filesystem(path).map(|mounted| mounted.fs_type)
}

/// The topmost mount at `path` per `/proc/self/mountinfo`; `None` when nothing
/// is mounted there.
pub fn mounted_filesystem(path: &Path) -> Option<MountedFs> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    filesystem_in_mountinfo(&table, path)
}

/// The filesystem type of the topmost mount at `path` in a mountinfo `table`
/// (that of `/proc/PID/mountinfo`).
pub fn fs_type_in_mountinfo(table: &str, path: &Path) -> Option<String> {
    filesystem_in_mountinfo(table, path).map(|mounted| mounted.fs_type)
}

/// The topmost mount at `path` in a mountinfo `table`.
fn filesystem_in_mountinfo(table: &str, path: &Path) -> Option<MountedFs> {
    let wanted = path.to_string_lossy();
    table
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|mount_point| unescape_mountinfo(mount_point) == wanted)
        })
        .filter_map(|line| {
            let device = line.split(' ').nth(2).and_then(|field| {
                let (major, minor) = field.split_once(':')?;
                Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
            });
            let mut fields = line.split(" - ").nth(1)?.split(' ');
            let fs_type = fields.next()?.to_string();
            let source = unescape_mountinfo(fields.next()?);
            Some(MountedFs {
                fs_type,
                source,
                device,
            })
        })
        .next_back()
}

fn unescape_mountinfo(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Detaches whatever is mounted at `path`: umount2(MNT_DETACH) as root, else fusermount3.
pub(crate) fn lazy_unmount(path: &Path) {
    if nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_ok() {
        return;
    }
    for helper in ["fusermount3", "fusermount"] {
        let status = std::process::Command::new(helper)
            .args(["-u", "-z"])
            .arg(path)
            .status();
        if matches!(status, Ok(s) if s.success()) {
            return;
        }
    }
    tracing::warn!(mountpoint = %path.display(), "could not detach the mount");
}

/// The mountpoint's real path, for refusing view paths that lead into it. For a
/// live mount (one premount made, or one `status` asks about) it is found with
/// `readlink` alone: `stat` of the mountpoint would ask its daemon, which may not
/// serve (yet, or any more). `prepare_mountpoint` already made the others real.
pub(crate) fn real_mountpoint(mountpoint: &Path, premounted: bool) -> PathBuf {
    if !premounted {
        return mountpoint.to_path_buf();
    }
    let mut path = std::path::absolute(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    for _ in 0..MAX_MOUNTPOINT_LINKS {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return path;
        };
        let parent = parent
            .canonicalize()
            .unwrap_or_else(|_| parent.to_path_buf());
        let full = parent.join(name);
        // readlink, unlike stat, never asks the daemon: a mount's root is no symlink.
        match std::fs::read_link(&full) {
            Ok(target) => path = parent.join(target),
            Err(_) => return full,
        }
    }
    path
}

/// Symlinks followed at most when resolving a live mountpoint's path.
const MAX_MOUNTPOINT_LINKS: usize = 40;

/// `--bots` or `--config-csv` inside the mount would make the daemon wait on itself:
/// they are refused (nothing shows), with a warning at start.
fn warn_if_views_lead_into_the_mount(views: &crate::views::ConfigSources) {
    let given = [
        ("--config-csv", &views.config_csv),
        ("--bots", &views.bots_dir),
    ];
    for (flag, path) in given {
        if let Some(path) = path {
            if let Err(crate::views::Unreachable::IntoTheMount) = views.real_path(path) {
                tracing::warn!(
                    path = %path.display(),
                    "{flag} leads into the gbo-fs mount itself; nothing from it is shown"
                );
            }
        }
    }
}

/// Validates a FUSE descriptor passed by systemd and names its mountpoint.
fn handed_over_mountpoint(
    device: &std::os::fd::OwnedFd,
    args: &MountArgs,
) -> Result<PathBuf, DaemonError> {
    let mountpoint =
        std::path::absolute(&args.mountpoint).map_err(|e| DaemonError::Mountpoint {
            path: args.mountpoint.display().to_string(),
            reason: e.to_string(),
        })?;
    if !crate::premount::is_fuse_device(device) {
        return Err(DaemonError::Setup(format!(
            "the descriptor systemd passed as {} is not /dev/fuse",
            crate::systemd::FUSE_FD_NAME
        )));
    }
    if args.auto_unmount {
        return Err(DaemonError::Setup(
            "--auto-unmount does not apply to a mount made by premount: the unit's ExecStopPost unmounts".into(),
        ));
    }
    Ok(mountpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_mountpoint_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("run/gbo/secrets");
        let prepared = prepare_mountpoint(&target).unwrap();
        assert!(prepared.is_dir());
    }

    #[test]
    fn a_file_is_not_a_mountpoint_and_the_error_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let error = prepare_mountpoint(&file).unwrap_err().to_string();
        assert!(
            error.contains("plain") && error.contains("not a directory"),
            "{error}"
        );
    }

    #[test]
    fn proc_root_is_a_mount_point_and_a_temp_dir_is_not() {
        assert!(is_mount_point(Path::new("/proc")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()));
    }
}
