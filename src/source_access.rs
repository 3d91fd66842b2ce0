//! Reading a config.csv source for a view only when the view's owner could read
//! it too: a daemon running as root must not show, say, a `config.csv` symlinked
//! to `/etc/shadow` in a bots directory its owner can write.
//!
//! Two checks, both must pass:
//! - The kernel's own: a root daemon opens a source for an owner other than root
//!   on a thread that holds the owner's file-system identity (fsuid, fsgid and the
//!   owner's groups, set with raw per-thread syscalls), so modes, ACLs and security
//!   modules all apply as they would to the owner.
//! - The permission bits, checked here for the owner on every directory of the real
//!   path and on the file; a refusal names the file or directory that stops it.
//!
//! The owner's groups are what the user database says of the uid (primary and
//! supplementary); a uid with no entry holds only the `--gid` given, if any, never
//! the daemon's own group. Sources are opened without blocking (a FIFO cannot hang
//! a thread) and must be regular files outside the kernel's pseudo file systems
//! (`/proc`, `/sys`, ...). An owner of uid 0 may read any such source.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The identity a view is shown to, with the groups it holds.
#[derive(Debug)]
pub struct SourceReader {
    uid: u32,
    /// The file-system group the owner opens with, when it has one.
    primary_gid: Option<u32>,
    groups: Vec<u32>,
    /// Opens sources as the owner; started at the first source a root daemon
    /// reads for an owner other than root.
    owner_opener: OnceLock<Result<OwnerOpener, String>>,
}

/// The largest config.csv source read: real ones are a few KiB, and a view is
/// rendered in memory on every open and `stat`.
pub const MAX_SOURCE_BYTES: u64 = 4 << 20;

/// How long a source's open may take on the owner's thread (a hung network file
/// system) before the view fails; the thread is one, so nothing piles up.
const OWNER_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The group a uid with no user-database entry and no `--gid` opens with.
const NO_GROUP: u32 = 65534;

/// Permission-bit classes, as in `mode`: read and search (execute).
const READ: u32 = 0o4;
const SEARCH: u32 = 0o1;

/// Pseudo file systems whose files are kernel interfaces, never a bot's config.
const PSEUDO_FILE_SYSTEMS: [libc::__fsword_t; 8] = [
    libc::PROC_SUPER_MAGIC,
    libc::SYSFS_MAGIC,
    libc::DEBUGFS_MAGIC,
    libc::TRACEFS_MAGIC,
    libc::SECURITYFS_MAGIC,
    libc::CGROUP_SUPER_MAGIC,
    libc::CGROUP2_SUPER_MAGIC,
    libc::BPF_FS_MAGIC,
];

impl SourceReader {
    /// The reader with uid `uid`. Its groups: when `uid` names a user in the user
    /// database, that user's primary and supplementary groups; otherwise only
    /// `gid` (the `--gid` given), if any.
    pub fn new(uid: u32, gid: Option<u32>) -> SourceReader {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid));
        let (primary_gid, mut groups) = match user {
            Ok(Some(user)) => {
                let primary = user.gid;
                let supplementary = std::ffi::CString::new(user.name)
                    .ok()
                    .and_then(|name| nix::unistd::getgrouplist(&name, primary).ok())
                    .unwrap_or_default();
                let mut groups: Vec<u32> = supplementary.into_iter().map(|g| g.as_raw()).collect();
                groups.push(primary.as_raw());
                (Some(primary.as_raw()), groups)
            }
            _ => (gid, gid.into_iter().collect()),
        };
        groups.sort_unstable();
        groups.dedup();
        SourceReader {
            uid,
            primary_gid,
            groups,
            owner_opener: OnceLock::new(),
        }
    }

    /// Reads `path` if this reader could; otherwise `PermissionDenied` naming the
    /// file or directory that stops it.
    pub fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.read_with_mtime(path).map(|(bytes, _)| bytes)
    }

    /// [`Self::read`], with the file's mtime as the opened file had it.
    pub fn read_with_mtime(
        &self,
        path: &Path,
    ) -> std::io::Result<(Vec<u8>, Option<std::time::SystemTime>)> {
        let file = match self.open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(self.explain_denial(path, error))
            }
            Err(error) => return Err(error),
        };
        let opened = file.metadata()?;
        if !opened.is_file() {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        refuse_pseudo_file_system(&file, path)?;
        if self.uid != 0 {
            self.check_access(path, Some(&opened))?;
        }
        let too_large = || {
            std::io::Error::other(format!(
                "{} is larger than {} MiB",
                path.display(),
                MAX_SOURCE_BYTES >> 20
            ))
        };
        if opened.len() > MAX_SOURCE_BYTES {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(opened.len() as usize);
        // A file that grows while it is read stops at the limit too.
        file.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_SOURCE_BYTES {
            return Err(too_large());
        }
        Ok((bytes, opened.modified().ok()))
    }

    /// Whether the owner could list the directory `dir` (read it, and search every
    /// directory above it): the bots of a package are shown only then, so a symlink
    /// to a directory the owner may not list reveals no names.
    pub fn may_list(&self, dir: &Path) -> bool {
        self.open(dir)
            .and_then(|opened| opened.metadata())
            .is_ok_and(|metadata| metadata.is_dir())
    }

    /// Opens `path` as the owner would: on the owner's thread when the daemon is
    /// root and the owner is not; as the daemon otherwise.
    fn open(&self, path: &Path) -> std::io::Result<File> {
        if self.uid == 0 || !nix::unistd::geteuid().is_root() {
            return open_without_blocking(path);
        }
        let opener = self.owner_opener.get_or_init(|| {
            OwnerOpener::start(self.uid, self.primary_gid.unwrap_or(NO_GROUP), &self.groups)
        });
        match opener {
            Ok(opener) => opener.open(path),
            Err(reason) => Err(std::io::Error::other(format!(
                "cannot read {} as the view's owner (uid {}): {reason}",
                path.display(),
                self.uid
            ))),
        }
    }

    /// The kernel refused the owner: the permission bits name what stops it, or
    /// else something beyond them does (an ACL, a security module).
    fn explain_denial(&self, path: &Path, error: std::io::Error) -> std::io::Error {
        match self.check_access(path, None) {
            Err(named) if named.kind() == std::io::ErrorKind::PermissionDenied => named,
            _ => std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the view's owner (uid {}) may not read {} ({error}; an ACL or a security \
                     module refuses it)",
                    self.uid,
                    path.display()
                ),
            ),
        }
    }

    /// Checks the real path of the file: read on it, search on each directory
    /// above it. When the file was `opened`, its real path must still be that
    /// file, so a symlink swapped in between cannot pass the check for another.
    fn check_access(&self, path: &Path, opened: Option<&Metadata>) -> std::io::Result<()> {
        let real = std::fs::canonicalize(path)?;
        let now = std::fs::metadata(&real)?;
        if opened.is_some_and(|opened| (now.dev(), now.ino()) != (opened.dev(), opened.ino())) {
            return Err(std::io::Error::other(format!(
                "{} changed while it was opened",
                path.display()
            )));
        }
        self.require(&real, &now, READ, "read")?;
        for directory in real.ancestors().skip(1) {
            let metadata = std::fs::metadata(directory)?;
            self.require(directory, &metadata, SEARCH, "search")?;
        }
        Ok(())
    }

    fn require(
        &self,
        path: &Path,
        metadata: &Metadata,
        permission: u32,
        verb: &str,
    ) -> std::io::Result<()> {
        if self.permits(metadata, permission) {
            return Ok(());
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the view's owner (uid {}) may not {verb} {} (mode {:04o}, owner {}:{})",
                self.uid,
                path.display(),
                metadata.mode() & 0o7777,
                metadata.uid(),
                metadata.gid()
            ),
        ))
    }

    /// The owner class decides if it matches, then the group class, then others.
    fn permits(&self, metadata: &Metadata, permission: u32) -> bool {
        let mode = metadata.mode();
        if metadata.uid() == self.uid {
            mode & (permission << 6) != 0
        } else if self.groups.binary_search(&metadata.gid()).is_ok() {
            mode & (permission << 3) != 0
        } else {
            mode & permission != 0
        }
    }
}

/// Opens a source for reading without blocking (a FIFO returns at once) and
/// without taking a terminal.
fn open_without_blocking(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

fn refuse_pseudo_file_system(file: &File, path: &Path) -> std::io::Result<()> {
    let stats = nix::sys::statfs::fstatfs(file).map_err(std::io::Error::from)?;
    let kind = stats.filesystem_type().0;
    if PSEUDO_FILE_SYSTEMS.contains(&kind) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is a kernel interface (file system type {kind:#x}), not a config.csv",
                path.display()
            ),
        ));
    }
    Ok(())
}

type OpenRequest = (PathBuf, mpsc::SyncSender<std::io::Result<File>>);

/// A thread that holds a view owner's file-system identity and opens sources for it.
#[derive(Debug)]
struct OwnerOpener {
    requests: Mutex<mpsc::Sender<OpenRequest>>,
}

impl OwnerOpener {
    fn start(uid: u32, gid: u32, groups: &[u32]) -> Result<OwnerOpener, String> {
        let (requests, incoming) = mpsc::channel::<OpenRequest>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let groups = groups.to_vec();
        std::thread::Builder::new()
            .name("gbo-fs-source".into())
            .spawn(move || {
                let taken = take_file_system_identity(uid, gid, &groups);
                let ok = taken.is_ok();
                let _ = ready_tx.send(taken);
                if ok {
                    for (path, reply) in incoming {
                        let _ = reply.send(open_without_blocking(&path));
                    }
                }
            })
            .map_err(|e| format!("cannot start its thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(OwnerOpener {
                requests: Mutex::new(requests),
            }),
            Ok(Err(error)) => Err(format!("cannot take its identity: {error}")),
            Err(_) => Err("its thread ended".into()),
        }
    }

    fn open(&self, path: &Path) -> std::io::Result<File> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .lock()
            .unwrap()
            .send((path.to_path_buf(), reply))
            .map_err(|_| std::io::Error::other("the source thread ended"))?;
        answer.recv_timeout(OWNER_OPEN_TIMEOUT).unwrap_or_else(|_| {
            tracing::warn!(
                path = %crate::command_output::printable(&path.display().to_string()),
                "opening a view path as its owner takes over {} s; views wait behind it",
                OWNER_OPEN_TIMEOUT.as_secs()
            );
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "opening {} took over {} s",
                    path.display(),
                    OWNER_OPEN_TIMEOUT.as_secs()
                ),
            ))
        })
    }
}

/// Gives the calling thread, and only it, the file-system identity of `uid`:
/// raw syscalls, since the C library's wrappers would change every thread.
/// Leaving fsuid 0 also drops the file-system capabilities (DAC override).
fn take_file_system_identity(uid: u32, gid: u32, groups: &[u32]) -> std::io::Result<()> {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: plain syscalls on this thread's credentials; `groups` outlives the call.
    let set = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // setfsgid/setfsuid answer the previous id and never fail: an invalid id
    // (-1) only asks, which confirms the change.
    // SAFETY: as above.
    let (fsgid, fsuid) = unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
        (
            libc::syscall(libc::SYS_setfsgid, u32::MAX),
            libc::syscall(libc::SYS_setfsuid, u32::MAX),
        )
    };
    if (fsuid, fsgid) != (i64::from(uid), i64::from(gid)) {
        return Err(std::io::Error::other(format!(
            "fsuid {fsuid}, fsgid {fsgid} after asking for {uid}, {gid}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink, PermissionsExt};
    use std::path::PathBuf;

    const OWNER: u32 = 4242;
    const OTHER_GROUP: u32 = 4343;

    /// A world-searchable scratch directory (tempdir makes 0700 ones).
    fn scratch() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn file(dir: &Path, name: &str, mode: u32, uid: u32, gid: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("contents of {name}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(&path, Some(uid), Some(gid)).unwrap();
        path
    }

    /// Asserts that `reader` is refused `path` with a message naming `named` and
    /// never the content; returns the message.
    fn refused_naming(reader: &SourceReader, path: &Path, named: &str) -> String {
        let error = reader.read(path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        let message = error.to_string();
        assert!(message.contains(named), "{message}");
        assert!(!message.contains("contents of"), "never the content");
        message
    }

    /// A scratch directory when running as root (files of other owners need it).
    fn scratch_as_root() -> Option<tempfile::TempDir> {
        running_as_root().then(scratch)
    }

    fn running_as_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_root_only_file_behind_a_symlink_is_refused_naming_the_real_file() {
        let Some(dir) = scratch_as_root() else {
            return;
        };
        let secret = file(dir.path(), "shadow", 0o600, 0, 0);
        let bots = dir.path().join("bots");
        std::fs::create_dir(&bots).unwrap();
        std::fs::set_permissions(&bots, std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = bots.join("config.csv");
        symlink(&secret, &link).unwrap();
        let message = refused_naming(&SourceReader::new(OWNER, Some(OWNER)), &link, "shadow");
        assert!(message.contains("uid 4242"), "{message}");
        assert_eq!(
            SourceReader::new(0, None).read(&link).unwrap(),
            b"contents of shadow",
            "root may read anything"
        );
    }

    #[test]
    fn owner_group_and_other_bits_decide_in_the_kernels_order() {
        let Some(dir) = scratch_as_root() else {
            return;
        };
        let reader = SourceReader::new(OWNER, Some(OTHER_GROUP));
        let readable = [
            file(dir.path(), "mine", 0o400, OWNER, 0),
            file(dir.path(), "group", 0o040, 0, OTHER_GROUP),
            file(dir.path(), "world", 0o604, 0, 0),
        ];
        for path in &readable {
            assert!(reader.read(path).is_ok(), "{}", path.display());
        }
        let refused = [
            // The owner class matches and denies, although others may read.
            file(dir.path(), "mine_but_no_read", 0o044, OWNER, OTHER_GROUP),
            file(dir.path(), "other_group", 0o640, 0, 0),
            file(dir.path(), "nobody", 0o000, 0, 0),
        ];
        for path in &refused {
            let error = reader.read(path).unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        }
    }

    #[test]
    fn a_world_readable_file_in_a_private_directory_is_refused() {
        let Some(dir) = scratch_as_root() else {
            return;
        };
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let inside = file(&private, "config.csv", 0o644, 0, 0);
        let error = SourceReader::new(OWNER, Some(OWNER))
            .read(&inside)
            .unwrap_err();
        assert!(error.to_string().contains("may not search"), "{error}");
    }

    #[test]
    fn a_source_over_the_size_limit_is_refused_and_one_at_it_is_read() {
        let dir = scratch();
        let at_limit = dir.path().join("at_limit.csv");
        let file = File::create(&at_limit).unwrap();
        file.set_len(MAX_SOURCE_BYTES).unwrap();
        assert_eq!(
            SourceReader::new(0, None).read(&at_limit).unwrap().len() as u64,
            MAX_SOURCE_BYTES
        );
        file.set_len(MAX_SOURCE_BYTES + 1).unwrap();
        let error = SourceReader::new(0, None).read(&at_limit).unwrap_err();
        assert!(error.to_string().contains("larger than 4 MiB"), "{error}");
    }

    #[test]
    fn a_directory_is_not_a_source() {
        let dir = scratch();
        let error = SourceReader::new(0, None).read(dir.path()).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn an_owner_with_no_user_entry_and_no_gid_does_not_hold_the_daemons_group() {
        let Some(dir) = scratch_as_root() else {
            return;
        };
        // root:root 0640, like /etc/sudoers.d files or a root-group .env.
        let root_group_file = file(dir.path(), "root_group", 0o640, 0, 0);
        let error = SourceReader::new(OWNER, None)
            .read(&root_group_file)
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("root_group"), "{error}");
    }

    /// Sets a POSIX access ACL (the kernel's xattr format) giving `denied_uid`
    /// no permission on a file whose mode lets everyone read.
    fn deny_by_acl(path: &Path, denied_uid: u32) {
        const USER_OBJ: u16 = 0x01;
        const USER: u16 = 0x02;
        const GROUP_OBJ: u16 = 0x04;
        const MASK: u16 = 0x10;
        const OTHER: u16 = 0x20;
        let entries: [(u16, u16, u32); 5] = [
            (USER_OBJ, 6, u32::MAX),
            (USER, 0, denied_uid),
            (GROUP_OBJ, 4, u32::MAX),
            (MASK, 4, u32::MAX),
            (OTHER, 4, u32::MAX),
        ];
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C strings and a buffer of the given length.
        let set = unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"system.posix_acl_access".as_ptr(),
                acl.as_ptr().cast(),
                acl.len(),
                0,
            )
        };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    }

    #[test]
    fn an_acl_that_denies_the_owner_is_honoured() {
        let Some(dir) = scratch_as_root() else {
            return;
        };
        let denied = file(dir.path(), "acl_denied.csv", 0o644, 0, 0);
        deny_by_acl(&denied, OWNER);
        let owner = SourceReader::new(OWNER, Some(OWNER));
        let message = refused_naming(&owner, &denied, "acl_denied.csv");
        assert!(message.contains("ACL"), "{message}");
        let other_user = SourceReader::new(OWNER + 1, Some(OWNER + 1));
        assert_eq!(
            other_user.read(&denied).unwrap(),
            b"contents of acl_denied.csv"
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once_instead_of_blocking_a_thread() {
        let dir = scratch();
        let fifo = dir.path().join("config.csv");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        let (done, finished) = mpsc::channel();
        for uid in [0, OWNER] {
            let (fifo, done) = (fifo.clone(), done.clone());
            std::thread::spawn(move || {
                let _ = done.send(SourceReader::new(uid, Some(uid)).read(&fifo));
            });
        }
        for _ in 0..2 {
            let read = finished.recv_timeout(Duration::from_secs(10));
            let error = read.expect("no FIFO read may block").unwrap_err();
            assert!(error.to_string().contains("not a regular file"), "{error}");
        }
    }

    #[test]
    fn kernel_interface_files_are_refused_even_for_root() {
        let dir = scratch();
        let link = dir.path().join("config.csv");
        symlink("/proc/self/maps", &link).unwrap();
        for uid in [0, OWNER] {
            let error = SourceReader::new(uid, Some(uid)).read(&link).unwrap_err();
            assert!(error.to_string().contains("kernel interface"), "{error}");
        }
    }

    #[test]
    fn a_directory_is_listable_only_where_the_owner_could_list_it() {
        let Some(dir) = scratch_as_root() else {
            return;
        };
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let owner = SourceReader::new(OWNER, Some(OWNER));
        assert!(!owner.may_list(&private));
        assert!(owner.may_list(&open));
        assert!(
            SourceReader::new(0, None).may_list(&private),
            "root lists anything"
        );
        let plain_file = file(dir.path(), "plain", 0o644, 0, 0);
        assert!(!owner.may_list(&plain_file), "a file is not a directory");
    }
}
