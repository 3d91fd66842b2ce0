//! Reading a config.csv source for a view only when the view's owner could read
//! it too: a daemon running as root must not show, say, a `config.csv` symlinked
//! to `/etc/shadow` in a bots directory its owner can write.
//!
//! The rule is the kernel's permission-bit check done for the owner (uid, primary
//! group and supplementary groups): search permission on every directory of the
//! source's real path and read permission on the file. ACLs and capabilities are
//! not consulted, so the rule can only refuse more than the kernel would, not less.
//! An owner of uid 0 may read any source.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The identity a view is shown to, with the groups it holds.
#[derive(Clone, Debug)]
pub struct SourceReader {
    uid: u32,
    groups: Vec<u32>,
}

/// The largest config.csv source read: real ones are a few KiB, and a view is
/// rendered in memory on every open and `stat`.
pub const MAX_SOURCE_BYTES: u64 = 4 << 20;

/// Permission-bit classes, as in `mode`: read and search (execute).
const READ: u32 = 0o4;
const SEARCH: u32 = 0o1;

impl SourceReader {
    /// The reader with uid `uid`, primary group `gid` and, when `uid` names a user
    /// in the user database, that user's supplementary groups.
    pub fn new(uid: u32, gid: u32) -> SourceReader {
        let mut groups = vec![gid];
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid));
        if let Ok(Some(user)) = user {
            if let Ok(name) = std::ffi::CString::new(user.name) {
                let primary = nix::unistd::Gid::from_raw(gid);
                if let Ok(list) = nix::unistd::getgrouplist(&name, primary) {
                    groups.extend(list.into_iter().map(|g| g.as_raw()));
                }
            }
        }
        groups.sort_unstable();
        groups.dedup();
        SourceReader { uid, groups }
    }

    /// Reads `path` if this reader could; otherwise `PermissionDenied` naming the
    /// file or directory that stops it.
    pub fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let file = File::open(path)?;
        let opened = file.metadata()?;
        if !opened.is_file() {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        if self.uid != 0 {
            self.check_access(path, &opened)?;
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
        Ok(bytes)
    }

    /// Checks the real path of the file just opened: read on it, search on each
    /// directory above it. The real path must still be the opened file, so a
    /// symlink swapped in between cannot pass the check for another file.
    fn check_access(&self, path: &Path, opened: &Metadata) -> std::io::Result<()> {
        let real = std::fs::canonicalize(path)?;
        let now = std::fs::metadata(&real)?;
        if (now.dev(), now.ino()) != (opened.dev(), opened.ino()) {
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

    fn running_as_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_root_only_file_behind_a_symlink_is_refused_naming_the_real_file() {
        if !running_as_root() {
            return;
        }
        let dir = scratch();
        let secret = file(dir.path(), "shadow", 0o600, 0, 0);
        let bots = dir.path().join("bots");
        std::fs::create_dir(&bots).unwrap();
        std::fs::set_permissions(&bots, std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = bots.join("config.csv");
        symlink(&secret, &link).unwrap();
        let error = SourceReader::new(OWNER, OWNER).read(&link).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        let message = error.to_string();
        assert!(
            message.contains("uid 4242") && message.contains("shadow"),
            "{message}"
        );
        assert!(!message.contains("contents of"), "never the content");
        assert_eq!(
            SourceReader::new(0, 0).read(&link).unwrap(),
            b"contents of shadow",
            "root may read anything"
        );
    }

    #[test]
    fn owner_group_and_other_bits_decide_in_the_kernels_order() {
        if !running_as_root() {
            return;
        }
        let dir = scratch();
        let reader = SourceReader::new(OWNER, OTHER_GROUP);
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
        if !running_as_root() {
            return;
        }
        let dir = scratch();
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let inside = file(&private, "config.csv", 0o644, 0, 0);
        let error = SourceReader::new(OWNER, OWNER).read(&inside).unwrap_err();
        assert!(error.to_string().contains("may not search"), "{error}");
    }

    #[test]
    fn a_source_over_the_size_limit_is_refused_and_one_at_it_is_read() {
        let dir = scratch();
        let at_limit = dir.path().join("at_limit.csv");
        let file = File::create(&at_limit).unwrap();
        file.set_len(MAX_SOURCE_BYTES).unwrap();
        assert_eq!(
            SourceReader::new(0, 0).read(&at_limit).unwrap().len() as u64,
            MAX_SOURCE_BYTES
        );
        file.set_len(MAX_SOURCE_BYTES + 1).unwrap();
        let error = SourceReader::new(0, 0).read(&at_limit).unwrap_err();
        assert!(error.to_string().contains("larger than 4 MiB"), "{error}");
    }

    #[test]
    fn a_directory_is_not_a_source() {
        let dir = scratch();
        let error = SourceReader::new(0, 0).read(dir.path()).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }
}
