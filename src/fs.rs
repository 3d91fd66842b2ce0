//! The filesystem core: inodes, lookups, attributes, directory listings and reads,
//! as an async API returning `Result<_, FsError>`. No FUSE types appear here, so
//! everything is testable without mounting; `fuse.rs` only converts replies.
//!
//! Tree: the root holds the namespace directory (`gbo/`). A Vault secret
//! `gbo/a/b` is the directory `gbo/a/b/`; its keys are files in it, beside any
//! sub-folders Vault lists under `gbo/a/b/`. When a key and a sub-folder share a
//! name, the key wins. Beside the namespace, the root shows the config.csv views
//! (see `views.rs`): `config.csv` and `<name>.gbai/<bot>.gbot/config.csv`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use zeroize::Zeroizing;

use crate::cache::{CachePolicy, FetchCache};
use crate::command_output::printable;
use crate::config_csv::{MissingReference, Rendered};
use crate::source_access::SourceReader;
use crate::vault::{ListEntry, Secret, SecretBytes, SecretStore, StoreError};
use crate::views::{self, ConfigSources, FetchOutcome, ReferenceCheck, VIEW_NAME};

mod inodes;
use inodes::{FileVersion, InodeTable, NodeKind, Reconciled};

/// Inode number of the mount root.
pub const ROOT_INO: u64 = 1;

/// Hidden control directory in the root (not listed by `ls`).
pub const CONTROL_DIR: &str = ".gbo-fs";
/// Read-only daemon status inside the control directory.
pub const STATUS_FILE: &str = "status.json";

/// Distinct secret paths one config.csv view may reference (real ones use a few).
pub const MAX_VIEW_PATHS: usize = 256;

/// Longest file name a key may have (Linux NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a file operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("read-only file system")]
    ReadOnly,
    #[error("bad file handle")]
    BadHandle,
    #[error("file name too long")]
    NameTooLong,
    #[error("{path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("file operation timed out after {0:?}")]
    TimedOut(Duration),
    #[error("{file}: {count} unresolvable vault: reference(s)")]
    Unresolved { file: String, count: usize },
    #[error("{file}: {reason}")]
    Source { file: String, reason: String },
}

impl FsError {
    /// The errno the kernel gets.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotADirectory => libc::ENOTDIR,
            FsError::IsADirectory => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadHandle => libc::EBADF,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Store { source, .. } => source.errno(),
            FsError::TimedOut(_) | FsError::Unresolved { .. } | FsError::Source { .. } => libc::EIO,
        }
    }
}

/// File or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    File,
    Directory,
}

/// What `stat` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: NodeType,
    pub size: u64,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    /// Changes on every read (the status file): the kernel must not cache it.
    pub volatile: bool,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: NodeType,
}

/// Settings of the filesystem core.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Namespace shown under the root, e.g. `gbo`.
    pub prefix: String,
    pub uid: u32,
    /// Group of every file; the daemon's own unless `--gid` was given.
    pub gid: u32,
    /// The `--gid` given, if any: the only group a view owner whose uid has no
    /// user-database entry holds when its sources are read.
    pub given_gid: Option<u32>,
    /// Mode of secret files (0400).
    pub file_mode: u16,
    /// Mode of directories (0500).
    pub dir_mode: u16,
    pub cache: CachePolicy,
    /// No file operation waits longer than this for Vault.
    pub operation_timeout: Duration,
    /// Vault requests in flight at most.
    pub vault_concurrency: usize,
    /// config.csv sources shown beside the namespace.
    pub views: ConfigSources,
    /// What a view shows for a reference that cannot be resolved.
    pub missing_reference: MissingReference,
}

impl FsConfig {
    pub fn new(prefix: &str) -> FsConfig {
        FsConfig {
            prefix: prefix.to_string(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            given_gid: None,
            file_mode: 0o400,
            dir_mode: 0o500,
            cache: CachePolicy::default(),
            operation_timeout: Duration::from_secs(5),
            vault_concurrency: 16,
            views: ConfigSources::default(),
            missing_reference: MissingReference::Error,
        }
    }
}

/// Logs each distinct problem once until the path works again. It remembers at
/// most `WARNED_PROBLEMS_PER_PATH` problems of a path and `WARNED_PATHS` paths, so
/// input that keeps inventing new problems cannot grow the daemon's memory; past
/// those, new problems are not logged again.
#[derive(Default)]
struct WarnOnce {
    seen: Mutex<HashMap<String, HashSet<String>>>,
}

const WARNED_PROBLEMS_PER_PATH: usize = 100;
const WARNED_PATHS: usize = 10_000;

impl WarnOnce {
    /// True the first time `what` is reported for `path`.
    fn first(&self, path: &str, what: &str) -> bool {
        let mut seen = self.seen.lock().unwrap();
        if !seen.contains_key(path) && seen.len() >= WARNED_PATHS {
            return false;
        }
        let problems = seen.entry(path.to_string()).or_default();
        if problems.contains(what) || problems.len() >= WARNED_PROBLEMS_PER_PATH {
            return false;
        }
        problems.insert(what.to_string())
    }

    fn clear(&self, path: &str) {
        let mut seen = self.seen.lock().unwrap();
        if !seen.is_empty() {
            seen.remove(path);
        }
    }
}

/// A package's real path, resolved again (the one kept in its inode may have been
/// swapped for a link into the mount since), when the view's owner could list it:
/// a package shows its bots only then.
fn listable_package(
    views: &ConfigSources,
    reader: &SourceReader,
    package: &Path,
) -> Option<std::path::PathBuf> {
    views.real_dir(package).filter(|real| reader.may_list(real))
}

/// Bytes `[offset, offset + size)` of `content`, clipped to its end.
fn slice(content: &[u8], offset: u64, size: u32) -> SecretBytes {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(content.len());
    let end = start.saturating_add(size as usize).min(content.len());
    Zeroizing::new(content[start..end].to_vec())
}

/// Whether `name` can be shown as a file name.
pub fn is_valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= MAX_NAME_BYTES
}

/// How the kernel may cache a directory's entries (see [`SecretFs::opendir`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirCache {
    /// Cache them, keeping what it cached: they did not change since it read them.
    Keep,
    /// Cache them, dropping what it cached: they changed since it read them.
    Refill,
    /// Never cache them.
    Off,
}

/// What a Vault folder's entries were made of: its secret (whose keys are
/// files) and its listing (sub-folders and secrets).
#[derive(Clone, Default)]
struct FolderSource {
    secret: Option<Arc<Secret>>,
    listing: Option<Arc<Vec<ListEntry>>>,
}

impl FolderSource {
    /// Whether both give the same directory entries (values do not matter).
    fn same_entries(&self, other: &FolderSource) -> bool {
        let same_keys = match (&self.secret, &other.secret) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.values.keys().eq(b.values.keys()),
            _ => false,
        };
        let same_listing = match (&self.listing, &other.listing) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        same_keys && same_listing
    }
}

/// How long an inode that showed a rotated value keeps showing it: a reader in
/// the middle of it finishes with one whole value (new opens already see the new
/// one). Then it follows the rotation, for readers that keep a file open and read
/// it again.
pub const ROTATION_GRACE: Duration = Duration::from_secs(1);

/// What the kernel should forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// An inode's attributes and cached pages.
    Inode(u64),
    /// The name `name` in the directory `parent`: its next use looks it up again.
    Entry { parent: u64, name: Box<str> },
}

/// Tells the kernel to forget what it cached (fuser's `Notifier`), then, when a
/// sender is given, reports on it that the kernel has done so.
pub type Invalidator = Arc<dyn Fn(Invalidation, Option<Invalidated>) + Send + Sync>;

/// Reports that an invalidation reached the kernel (or never will).
pub type Invalidated = tokio::sync::oneshot::Sender<()>;

/// The content a retired file is to show once its grace ends: the key of its
/// value and the named values it is taken from.
type PendingFollow = (Box<str>, Arc<Secret>);

/// Remembers when each secret path last changed, keeps inodes in step with
/// changes, and tells the kernel.
struct ChangeTracker {
    changed_at: Mutex<HashMap<String, SystemTime>>,
    latest: Mutex<Option<SystemTime>>,
    invalidator: std::sync::OnceLock<Invalidator>,
    inodes: Arc<Mutex<InodeTable>>,
    /// Retired files waiting out [`ROTATION_GRACE`] before they follow, with the
    /// latest content (and its key) they are to show.
    following: Mutex<HashMap<u64, PendingFollow>>,
}

impl ChangeTracker {
    fn new(inodes: Arc<Mutex<InodeTable>>) -> ChangeTracker {
        ChangeTracker {
            changed_at: Mutex::default(),
            latest: Mutex::default(),
            invalidator: std::sync::OnceLock::new(),
            inodes,
            following: Mutex::default(),
        }
    }

    fn tell_kernel(&self, invalidations: Vec<Invalidation>) {
        if let Some(invalidate) = self.invalidator.get() {
            for invalidation in invalidations {
                invalidate(invalidation, None);
            }
        }
    }

    /// Tells the kernel, and returns once it has done as told.
    async fn tell_kernel_and_wait(&self, invalidation: Invalidation) {
        if let Some(invalidate) = self.invalidator.get() {
            let (done, invalidated) = tokio::sync::oneshot::channel();
            invalidate(invalidation, Some(done));
            let _ = invalidated.await;
        }
    }

    /// Records a change of `path`: of a folder listing when `secret` is `None`
    /// (its directory is invalidated), else of a secret, whose value is now
    /// `secret` (`Some(None)` when deleted or revoked): its directory and every
    /// config.csv view are invalidated; each key file whose value changed is
    /// retired (its name is dropped, so the next open finds a new inode with the
    /// new value) and follows later; a revoked key's file stops showing its value
    /// at once.
    fn path_changed(self: &Arc<Self>, path: &str, secret: Option<Option<&Arc<Secret>>>) {
        let now = SystemTime::now();
        self.changed_at
            .lock()
            .unwrap()
            .insert(path.to_string(), now);
        *self.latest.lock().unwrap() = Some(now);
        let mut invalidations = Vec::new();
        let mut follow = Vec::new();
        {
            let mut table = self.inodes.lock().unwrap();
            let affected: Vec<(u64, NodeKind)> = table
                .nodes()
                .filter(|(_, kind)| match kind {
                    NodeKind::Folder { path: p, .. } | NodeKind::SecretFile { path: p, .. } => {
                        &**p == path
                    }
                    NodeKind::View { .. } => secret.is_some(),
                    _ => false,
                })
                .map(|(ino, kind)| (ino, kind.clone()))
                .collect();
            for (ino, kind) in affected {
                let NodeKind::SecretFile { key, .. } = &kind else {
                    invalidations.push(Invalidation::Inode(ino));
                    continue;
                };
                let Some(now_held) = secret else { continue };
                match now_held.filter(|s| s.values.contains_key(&**key)) {
                    Some(current) => match table.reconcile(ino, key, current, now, None).1 {
                        Reconciled::Current => {}
                        Reconciled::JustRetired { parent, name } => {
                            invalidations.push(Invalidation::Entry { parent, name });
                            follow.push((ino, key.clone(), current.clone()));
                        }
                        Reconciled::Retired => follow.push((ino, key.clone(), current.clone())),
                    },
                    None => {
                        if let Some((parent, name)) = table.revoke(ino) {
                            invalidations.push(Invalidation::Entry { parent, name });
                        }
                        invalidations.push(Invalidation::Inode(ino));
                    }
                }
            }
        }
        tracing::info!(
            path,
            kernel_notices = invalidations.len(),
            following = follow.len(),
            what = if secret.is_some() {
                "secret"
            } else {
                "folder listing"
            },
            "changed; invalidating kernel caches"
        );
        self.tell_kernel(invalidations);
        for (ino, key, current) in follow {
            self.follow_later(ino, key, current);
        }
    }

    /// After [`ROTATION_GRACE`], makes the retired file `ino` show the latest
    /// content given for it (`current`, unless a later change gives a newer one
    /// meanwhile) and drops what the kernel cached of it.
    fn follow_later(self: &Arc<Self>, ino: u64, key: Box<str>, current: Arc<Secret>) {
        let already_waiting = self
            .following
            .lock()
            .unwrap()
            .insert(ino, (key, current))
            .is_some();
        if already_waiting {
            return;
        }
        let tracker = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ROTATION_GRACE).await;
            let Some((key, latest)) = tracker.following.lock().unwrap().remove(&ino) else {
                return;
            };
            let stale = tracker
                .inodes
                .lock()
                .unwrap()
                .latest_version(ino)
                .is_some_and(|shown| shown.secret.values.get(&*key) != latest.values.get(&*key));
            if !stale {
                return;
            }
            // The kernel drops the inode's attributes and pages first; only then
            // does the new content wait for its next attribute request (see
            // `InodeTable::set_pending`).
            tracker.tell_kernel_and_wait(Invalidation::Inode(ino)).await;
            let mut table = tracker.inodes.lock().unwrap();
            let modified = tracker
                .changed_at(&current_path(&table, ino))
                .unwrap_or_else(SystemTime::now);
            let secret = latest;
            table.set_pending(ino, FileVersion { secret, modified });
        });
    }

    fn changed_at(&self, path: &str) -> Option<SystemTime> {
        self.changed_at.lock().unwrap().get(path).copied()
    }
}

/// The secret path a key file's inode shows ("" for any other inode).
fn current_path(table: &InodeTable, ino: u64) -> String {
    match table.node(ino).as_deref() {
        Some(NodeKind::SecretFile { path, .. }) => path.to_string(),
        _ => String::new(),
    }
}

pub struct SecretFs {
    store: Arc<dyn SecretStore>,
    config: FsConfig,
    secrets: FetchCache<Arc<Secret>>,
    folders: FetchCache<Arc<Vec<ListEntry>>>,
    inodes: Arc<Mutex<InodeTable>>,
    changes: Arc<ChangeTracker>,
    vault_permits: Arc<tokio::sync::Semaphore>,
    /// Per-inode content served to reads that come without an open handle
    /// (zero-message opens): taken at the read of offset 0, reused after it.
    read_snapshots: Mutex<HashMap<u64, Arc<SecretBytes>>>,
    /// Each view source's mtime as last read (from the opened file), so a view's
    /// attributes never stat its path on the calling thread.
    view_mtimes: Mutex<HashMap<std::path::PathBuf, SystemTime>>,
    /// Reads that reached the daemon (page-cache hits never do).
    reads_served: AtomicU64,
    /// Vault requests that failed.
    failed_operations: AtomicU64,
    handles: Mutex<HashMap<u64, Arc<SecretBytes>>>,
    /// What each Vault folder's entries were made of when the kernel last read
    /// them, so that `opendir` can tell the kernel to drop a stale listing.
    served_folders: Mutex<HashMap<u64, FolderSource>>,
    next_handle: AtomicU64,
    warnings: WarnOnce,
    key_warnings: Arc<WarnOnce>,
    /// Reads config.csv sources only where the files' owner could read them.
    source_reader: Arc<SourceReader>,
    started: SystemTime,
}

impl SecretFs {
    pub fn new(store: Arc<dyn SecretStore>, config: FsConfig) -> SecretFs {
        let outage = Arc::new(crate::cache::Outage::default());
        let secrets = FetchCache::sharing_outage(config.cache.clone(), outage.clone());
        let folders = FetchCache::sharing_outage(config.cache.clone(), outage);
        let inodes = Arc::new(Mutex::new(InodeTable::new()));
        let changes = Arc::new(ChangeTracker::new(inodes.clone()));
        let source_reader = Arc::new(SourceReader::new(config.uid, config.given_gid));
        let tracker = changes.clone();
        secrets.on_change(Arc::new(move |path: &str, now: Option<&Arc<Secret>>| {
            tracker.path_changed(path, Some(now))
        }));
        let tracker = changes.clone();
        folders.on_change(Arc::new(move |path: &str, _| {
            tracker.path_changed(path, None)
        }));
        SecretFs {
            store,
            secrets,
            folders,
            vault_permits: Arc::new(tokio::sync::Semaphore::new(config.vault_concurrency.max(1))),
            config,
            inodes,
            changes,
            read_snapshots: Mutex::new(HashMap::new()),
            view_mtimes: Mutex::new(HashMap::new()),
            reads_served: AtomicU64::new(0),
            failed_operations: AtomicU64::new(0),
            handles: Mutex::new(HashMap::new()),
            served_folders: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            warnings: WarnOnce::default(),
            key_warnings: Arc::default(),
            source_reader,
            started: SystemTime::now(),
        }
    }

    /// Sets where kernel-cache invalidations go (the daemon's fuser `Notifier`).
    pub fn set_invalidator(&self, invalidator: Invalidator) {
        let _ = self.changes.invalidator.set(invalidator);
    }

    /// Reads for an inode without an open handle (the kernel accepted zero-message
    /// opens). A key file's or view's inode always shows one content. For the
    /// status file a read at offset 0 takes a fresh snapshot and later offsets
    /// reuse it, so a reader walking it in small chunks sees one consistent content.
    pub async fn read_at(&self, ino: u64, offset: u64, size: u32) -> Result<SecretBytes, FsError> {
        let read = self.read_at_untraced(ino, offset, size).await;
        match &read {
            Ok(bytes) => tracing::trace!(ino, offset, size, returned = bytes.len(), "read"),
            Err(error) => tracing::trace!(ino, offset, size, errno = error.errno(), "read failed"),
        }
        read
    }

    async fn read_at_untraced(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
    ) -> Result<SecretBytes, FsError> {
        self.reads_served.fetch_add(1, Ordering::Relaxed);
        let node = self.node(ino)?;
        if node.version_key().is_some() {
            // A key file's or view's inode shows one content (see `file_version`):
            // no snapshot needed.
            let content = self.bounded(self.content_of_inode(ino, &node)).await?;
            return Ok(slice(&content, offset, size));
        }
        let cached = if offset == 0 {
            None
        } else {
            self.read_snapshots.lock().unwrap().get(&ino).cloned()
        };
        let content = match cached {
            Some(content) => content,
            None => Arc::new(self.bounded(self.content_of(&node)).await?),
        };
        // Keep the snapshot only while the reader has more to read: most files
        // are read whole in one request and need none.
        let mut snapshots = self.read_snapshots.lock().unwrap();
        if offset.saturating_add(u64::from(size)) < content.len() as u64 {
            snapshots.insert(ino, content.clone());
        } else {
            snapshots.remove(&ino);
        }
        drop(snapshots);
        Ok(slice(&content, offset, size))
    }

    /// Fetches, in the background, every secret that expired after being read,
    /// so readers rarely wait for Vault and rotations reach the kernel's caches.
    pub async fn refresh_expired(self: &Arc<Self>) -> usize {
        let secrets_due = self.secrets.due_for_refresh();
        let folders_due = self.folders.due_for_refresh();
        let count = secrets_due.len() + folders_due.len();
        for path in secrets_due {
            let fs = self.clone();
            tokio::spawn(async move {
                let fetch = fs.secret_fetch(&path);
                // The answer is stored (or the path backs off); no reader waits on it.
                let _ = fs.secrets.refresh(&path, fetch).await;
            });
        }
        for path in folders_due {
            let fs = self.clone();
            tokio::spawn(async move {
                let fetch = fs.listing_fetch(&path);
                let _ = fs.folders.refresh(&path, fetch).await;
            });
        }
        count
    }

    /// Opens a directory and says how the kernel may cache its entries: Vault
    /// folders are cached, and what the kernel cached is dropped when their
    /// entries differ from those it last read (a change gbo-fs may not have seen
    /// as one, e.g. once the old answer left the cache). Marks the folder as in
    /// use so the background refresher keeps it current.
    pub async fn opendir(&self, ino: u64) -> Result<DirCache, FsError> {
        let node = self.node(ino)?;
        match &*node {
            NodeKind::Folder {
                path,
                is_secret,
                has_children,
            } => {
                self.bounded(async {
                    let now = self
                        .folder_source(path, *is_secret, *has_children, true)
                        .await?;
                    // Without a cache no change is ever seen, so none could be
                    // invalidated: the kernel must ask for every listing.
                    if self.config.cache.ttl.is_zero() {
                        return Ok(DirCache::Off);
                    }
                    let served = self.served_folders.lock().unwrap().get(&ino).cloned();
                    Ok(match served {
                        Some(served) if !served.same_entries(&now) => DirCache::Refill,
                        _ => DirCache::Keep,
                    })
                })
                .await
            }
            NodeKind::SecretFile { .. } | NodeKind::View { .. } | NodeKind::Status => {
                Err(FsError::NotADirectory)
            }
            _ => Ok(DirCache::Off),
        }
    }

    /// What a Vault folder's entries are made of now: its secret's keys and its
    /// listing (none when its parent showed it as a leaf secret; empty when
    /// listing it is denied and it is a secret, or `opening` it).
    async fn folder_source(
        &self,
        path: &str,
        is_secret: bool,
        has_children: bool,
        opening: bool,
    ) -> Result<FolderSource, FsError> {
        let secret = match is_secret {
            true => self.secret(path).await?,
            false => None,
        };
        let listing = match has_children {
            false => None,
            true => match self.listing(path).await {
                Ok(listing) => Some(listing),
                Err(FsError::Store {
                    source: StoreError::PermissionDenied,
                    ..
                }) if is_secret || opening => None,
                Err(other) => return Err(other),
            },
        };
        Ok(FolderSource { secret, listing })
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// Expires every cached answer (SIGHUP): each is asked for again on its next
    /// use, and the last good value is still served while Vault fails.
    pub fn expire_cache(&self) {
        self.secrets.expire_all();
        self.folders.expire_all();
    }

    /// The daemon's counters as JSON (served as `.gbo-fs/status.json`). No secret
    /// value, token or key name is included.
    pub fn status_json(&self) -> String {
        let cache = self.secrets.counts();
        let folders = self.folders.counts();
        let lookups = cache.hits + cache.misses;
        let (inodes, retired_inodes) = self.inodes.lock().unwrap().counts();
        let status = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
            "vault": self.store.describe(),
            "cache": {
                "entries": cache.entries,
                "capacity": self.config.cache.capacity,
                "ttl_secs": self.config.cache.ttl.as_secs(),
                "hits": cache.hits,
                "misses": cache.misses,
                "hit_ratio": if lookups == 0 { 0.0 } else { cache.hits as f64 / lookups as f64 },
                "stale_serves": cache.stale_serves,
            },
            "vault_requests": cache.fetches + folders.fetches,
            // Every failed Vault request, also those a stale value covered for.
            "vault_errors": cache.failed_fetches + folders.failed_fetches,
            // File operations that failed because of Vault (EIO, EACCES, ...).
            "failed_operations": self.failed_operations.load(Ordering::Relaxed),
            "reads_served": self.reads_served.load(Ordering::Relaxed),
            "inodes": { "total": inodes, "retired": retired_inodes },
        });
        format!("{status:#}\n")
    }

    /// Tells the kernel to forget everything it cached for every known inode.
    pub fn invalidate_all(&self) {
        let inodes: Vec<Invalidation> = self
            .inodes
            .lock()
            .unwrap()
            .nodes()
            .map(|(ino, _)| Invalidation::Inode(ino))
            .collect();
        self.read_snapshots.lock().unwrap().clear();
        self.changes.tell_kernel(inodes);
    }

    /// Finds `name` in the directory `parent`.
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let found = self.bounded(self.lookup_unbounded(parent, name)).await;
        trace_attr("lookup", parent, Some(name), &found);
        found
    }

    /// Attributes of an inode.
    pub async fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let attr = self
            .bounded(async {
                let node = self.node(ino)?;
                self.attr_of(ino, &node).await
            })
            .await;
        trace_attr("getattr", ino, None, &attr);
        attr
    }

    /// The entries of a directory, without `.` and `..`.
    pub async fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let entries = self.bounded(self.readdir_unbounded(ino)).await;
        match &entries {
            Ok(entries) => tracing::trace!(ino, entries = entries.len(), "readdir"),
            Err(error) => tracing::trace!(ino, errno = error.errno(), "readdir failed"),
        }
        entries
    }

    /// Opens a file for reading and takes a snapshot of its content, so that a
    /// reader sees one consistent value however it chunks its reads.
    pub async fn open(&self, ino: u64, write: bool) -> Result<u64, FsError> {
        if write {
            return Err(FsError::ReadOnly);
        }
        self.bounded(async {
            let node = self.node(ino)?;
            let content = self.content_of_inode(ino, &node).await?;
            let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
            self.handles
                .lock()
                .unwrap()
                .insert(handle, Arc::new(content));
            Ok(handle)
        })
        .await
    }

    /// Reads from an open handle.
    pub fn read(&self, handle: u64, offset: u64, size: u32) -> Result<SecretBytes, FsError> {
        let content = self
            .handles
            .lock()
            .unwrap()
            .get(&handle)
            .cloned()
            .ok_or(FsError::BadHandle)?;
        Ok(slice(&content, offset, size))
    }

    /// Closes a handle; its snapshot is zeroized once no read uses it.
    pub fn release(&self, handle: u64) {
        self.handles.lock().unwrap().remove(&handle);
    }

    /// Walks a `/`-separated path from the root with the same rules as the mount.
    pub async fn resolve_path(&self, path: &str) -> Result<Attr, FsError> {
        let mut attr = self.getattr(ROOT_INO).await?;
        for component in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if attr.kind != NodeType::Directory {
                return Err(FsError::NotADirectory);
            }
            attr = self.lookup(attr.ino, OsStr::new(component)).await?;
        }
        Ok(attr)
    }

    /// The whole content of the file at `path` (for `gbo-fs get`).
    pub async fn read_path(&self, path: &str) -> Result<SecretBytes, FsError> {
        let attr = self.resolve_path(path).await?;
        if attr.kind == NodeType::Directory {
            return Err(FsError::IsADirectory);
        }
        let node = self.node(attr.ino)?;
        self.bounded(self.content_of(&node)).await
    }

    /// The entries of the directory at `path` (for `gbo-fs ls`).
    pub async fn list_path(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let attr = self.resolve_path(path).await?;
        if attr.kind != NodeType::Directory {
            return Err(FsError::NotADirectory);
        }
        self.readdir(attr.ino).await
    }

    async fn bounded<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, FsError>>,
    ) -> Result<T, FsError> {
        let limit = self.config.operation_timeout;
        match tokio::time::timeout(limit, operation).await {
            Ok(result) => result,
            Err(_) => Err(FsError::TimedOut(limit)),
        }
    }

    fn node(&self, ino: u64) -> Result<Arc<NodeKind>, FsError> {
        self.inodes
            .lock()
            .unwrap()
            .node(ino)
            .ok_or(FsError::NotFound)
    }

    /// The inode of the file `name` under `parent` showing `current`, and the
    /// version it shows (see [`InodeTable::intern_file`]); `lookup` counts one
    /// lookup of it for the kernel. An inode it retired follows later.
    fn intern_file(
        &self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        current: &Arc<Secret>,
        lookup: bool,
    ) -> (u64, FileVersion) {
        let modified = self.modified_at(&kind);
        let key: Option<Box<str>> = kind.version_key().map(Into::into);
        let (ino, version, retired) = {
            let mut table = self.inodes.lock().unwrap();
            let interned = table.intern_file(parent, name, kind, current, modified);
            if lookup {
                table.looked_up(interned.0);
            }
            interned
        };
        if let (Some(retired), Some(key)) = (retired, key) {
            self.changes.follow_later(retired, key, current.clone());
        }
        (ino, version)
    }

    /// What a versioned file shows now, as named values: a key file's secret
    /// from the cache (so a revoked key fails, and the access keeps the secret in
    /// use for the background refresher), or a view's fresh rendering.
    async fn current_content(&self, node: &NodeKind) -> Result<Arc<Secret>, FsError> {
        match node {
            NodeKind::SecretFile { path, key } => self.secret_with_key(path, key).await,
            NodeKind::View { source } => {
                let rendered = self.render_view_content(source).await?;
                let values = std::iter::once((VIEW_NAME.to_string(), rendered)).collect();
                Ok(Arc::new(Secret {
                    values,
                    version: None,
                    created_time: None,
                }))
            }
            _ => Err(FsError::IsADirectory),
        }
    }

    /// The version the file `ino` shows, after matching it against what it
    /// should show now: an inode found showing an older content is retired,
    /// keeps showing it for its readers and follows later. `attributes`: for the
    /// kernel's attribute request, which is when a followed content takes effect.
    async fn file_version(
        &self,
        ino: u64,
        node: &NodeKind,
        attributes: bool,
    ) -> Result<FileVersion, FsError> {
        let key = node.version_key().ok_or(FsError::IsADirectory)?;
        // Only a version pending before this request arrived may take effect.
        let pending = match attributes {
            true => self.inodes.lock().unwrap().pending_order(ino),
            false => None,
        };
        let current = match self.current_content(node).await {
            Ok(current) => current,
            Err(error) => {
                self.revoke_if_gone(ino, node, &error);
                return Err(error);
            }
        };
        let modified = self.modified_at(node);
        let (version, outcome) = self
            .inodes
            .lock()
            .unwrap()
            .reconcile(ino, key, &current, modified, pending);
        match outcome {
            Reconciled::Current => {}
            Reconciled::JustRetired { parent, name } => {
                self.changes
                    .tell_kernel(vec![Invalidation::Entry { parent, name }]);
                self.changes.follow_later(ino, key.into(), current);
            }
            Reconciled::Retired => self.changes.follow_later(ino, key.into(), current),
        }
        Ok(version)
    }

    /// A key file whose key Vault says is gone (not found, or denied), or a view
    /// that cannot be rendered, stops showing what it showed: nothing kept may
    /// bring it back, even where no change was seen (past the cache, or with no
    /// cache at all).
    fn revoke_if_gone(&self, ino: u64, node: &NodeKind, error: &FsError) {
        let gone = match node {
            NodeKind::SecretFile { .. } => matches!(
                error,
                FsError::NotFound
                    | FsError::Store {
                        source: StoreError::PermissionDenied,
                        ..
                    }
            ),
            // A view that cannot be rendered fails closed; its last rendering may
            // hold a revoked value.
            NodeKind::View { .. } => true,
            _ => false,
        };
        if !gone {
            return;
        }
        let named = {
            let mut table = self.inodes.lock().unwrap();
            if table.latest_version(ino).is_none() {
                return; // Nothing shown, nothing to revoke.
            }
            table.revoke(ino)
        };
        let mut invalidations = vec![Invalidation::Inode(ino)];
        if let Some((parent, name)) = named {
            invalidations.push(Invalidation::Entry { parent, name });
        }
        self.changes.tell_kernel(invalidations);
    }

    /// The bytes the inode `ino` shows now: a key file or view its own version's.
    async fn content_of_inode(&self, ino: u64, node: &NodeKind) -> Result<SecretBytes, FsError> {
        match node.version_key() {
            Some(key) => {
                let version = self.file_version(ino, node, false).await?;
                Ok(Zeroizing::new(version.value(key).to_vec()))
            }
            None => self.content_of(node).await,
        }
    }

    /// The kernel forgot `count` lookups of `ino` (FUSE FORGET).
    pub fn forget(&self, ino: u64, count: u64) {
        tracing::trace!(ino, count, "forget");
        self.inodes.lock().unwrap().forget(ino, count);
        self.read_snapshots.lock().unwrap().remove(&ino);
        self.served_folders.lock().unwrap().remove(&ino);
    }

    fn intern(&self, parent: u64, name: &str, kind: NodeKind) -> u64 {
        self.inodes.lock().unwrap().intern(parent, name, kind)
    }

    /// Interns a child of a directory. When a Vault folder node gained or lost its
    /// children since it was last interned (its parent's listing now shows or no
    /// longer shows `name/`), its directory is reported changed, so the kernel drops
    /// the entries it cached: a leaf secret is never listed itself, so no change of
    /// its own listing would reach the kernel. `lookup` counts one lookup of it for
    /// the kernel, in the same step.
    fn intern_child(&self, parent: u64, name: &str, kind: NodeKind, lookup: bool) -> u64 {
        let (ino, flipped) = {
            let mut inodes = self.inodes.lock().unwrap();
            let flipped = match &kind {
                NodeKind::Folder {
                    path, has_children, ..
                } => {
                    let before = inodes.child(parent, name).and_then(|ino| inodes.node(ino));
                    matches!(before.as_deref(), Some(NodeKind::Folder { path: p, has_children: had, .. })
                        if p == path && had != has_children)
                    .then(|| path.clone())
                }
                _ => None,
            };
            let ino = inodes.intern(parent, name, kind);
            if lookup {
                inodes.looked_up(ino);
            }
            (ino, flipped)
        };
        if let Some(path) = flipped {
            self.changes.path_changed(&path, None);
        }
        ino
    }

    async fn lookup_unbounded(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let name = name.to_str().ok_or(FsError::NotFound)?;
        if name.len() > MAX_NAME_BYTES {
            return Err(FsError::NameTooLong);
        }
        if !is_valid_file_name(name) {
            return Err(FsError::NotFound);
        }
        let parent_node = self.node(parent)?;
        let views = &self.config.views;
        let owned_name = name.to_string();
        let kind = match &*parent_node {
            NodeKind::Root if name == self.config.prefix => NodeKind::Folder {
                path: self.config.prefix.as_str().into(),
                is_secret: false,
                has_children: true,
            },
            NodeKind::Root if name == CONTROL_DIR => NodeKind::Control,
            NodeKind::Control if name == STATUS_FILE => NodeKind::Status,
            NodeKind::Control => return Err(FsError::NotFound),
            NodeKind::Root if name == VIEW_NAME && views.config_csv.is_some() => NodeKind::View {
                source: self
                    .on_view_paths(|views, _| views.root_view().map(Path::to_path_buf))
                    .await?
                    .ok_or(FsError::NotFound)?,
            },
            NodeKind::Root if views.bots_dir.is_none() => return Err(FsError::NotFound),
            NodeKind::Root => NodeKind::Package {
                dir: self
                    .on_view_paths(move |views, _| views.package(&owned_name))
                    .await?
                    .ok_or(FsError::NotFound)?,
            },
            NodeKind::Folder {
                path, is_secret, ..
            } => self.child_of_folder(path, *is_secret, name).await?,
            NodeKind::Package { dir } => {
                let package = dir.clone();
                NodeKind::Bot {
                    dir: self
                        .on_view_paths(move |views, reader| {
                            let package = listable_package(views, reader, &package)?;
                            views.bot(&package, &owned_name)
                        })
                        .await?
                        .ok_or(FsError::NotFound)?,
                }
            }
            NodeKind::Bot { dir } if name == VIEW_NAME => {
                let bot = dir.clone();
                NodeKind::View {
                    source: self
                        .on_view_paths(move |views, _| views.bot_source(&bot))
                        .await?
                        .ok_or(FsError::NotFound)?,
                }
            }
            NodeKind::Bot { .. } => return Err(FsError::NotFound),
            NodeKind::SecretFile { .. } | NodeKind::View { .. } | NodeKind::Status => {
                return Err(FsError::NotADirectory)
            }
        };
        // The lookup is counted as the inode is found, so that no change can
        // drop it from the table before the kernel learns of it.
        match kind.version_key() {
            Some(key) => {
                let current = self.current_content(&kind).await?;
                let (ino, version) = self.intern_file(parent, name, kind.clone(), &current, true);
                Ok(self.file_attr(ino, &version, key))
            }
            None => {
                let ino = self.intern_child(parent, name, kind.clone(), true);
                let attr = self.attr_of(ino, &kind).await;
                if attr.is_err() {
                    self.forget(ino, 1);
                }
                attr
            }
        }
    }

    /// Decides what `name` inside the folder/secret `path` is: a key (which wins),
    /// a listed secret or sub-folder, or nothing.
    async fn child_of_folder(
        &self,
        path: &Arc<str>,
        is_secret: bool,
        name: &str,
    ) -> Result<NodeKind, FsError> {
        if is_secret {
            if let Some(secret) = self.secret(path).await? {
                if secret.values.contains_key(name) {
                    return Ok(NodeKind::SecretFile {
                        path: path.clone(),
                        key: name.into(),
                    });
                }
            }
        }
        let child_path = format!("{path}/{name}");
        match self.listing(path).await {
            Ok(mut entries) => {
                // A listing proves a name absent only as long as a "not found"
                // answer is believed; past that, a secret created since shows now
                // rather than when the listing expires (one LIST at most per folder
                // and negative TTL, however many absent names are looked up; none
                // while Vault is failing, so an absent name never waits on it).
                if listed(&entries, name).is_none()
                    && self
                        .folders
                        .is_older_than(path, self.folders.negative_lifetime())
                {
                    // Absence is only known from a listing Vault just gave: when it
                    // cannot give one (failing, or known to be), the name may well
                    // exist, so the answer is EIO rather than ENOENT.
                    if self.folders.vault_failing() {
                        let unconfirmed = StoreError::Unreachable(
                            "failing; a name missing from the cached listing cannot be confirmed absent"
                                .into(),
                        );
                        return Err(self.vault_failure(path, "list", unconfirmed));
                    }
                    let refreshed = self.folders.refresh(path, self.listing_fetch(path)).await;
                    if let Err(error) = refreshed {
                        return Err(self.vault_failure(path, "list", error));
                    }
                    entries = self.listing(path).await?;
                }
                let (is_secret, has_children) = listed(&entries, name).ok_or(FsError::NotFound)?;
                Ok(NodeKind::Folder {
                    path: child_path.into(),
                    is_secret,
                    has_children,
                })
            }
            // A token allowed to read but not to list still reaches its secrets.
            Err(FsError::Store {
                source: StoreError::PermissionDenied,
                ..
            }) => match self.secret(&child_path).await? {
                // Whether it has children is unknown without the listing.
                Some(_) => Ok(NodeKind::Folder {
                    path: child_path.into(),
                    is_secret: true,
                    has_children: true,
                }),
                None => Err(FsError::NotFound),
            },
            Err(other) => Err(other),
        }
    }

    async fn readdir_unbounded(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let node = self.node(ino)?;
        match &*node {
            NodeKind::Root => {
                let prefix = self.config.prefix.clone();
                let mut children = vec![(
                    prefix.clone(),
                    NodeKind::Folder {
                        path: prefix.into(),
                        is_secret: false,
                        has_children: true,
                    },
                )];
                let views = &self.config.views;
                if views.config_csv.is_some() || views.bots_dir.is_some() {
                    let (root_view, packages) = self
                        .on_view_paths(|views, _| {
                            (views.root_view().map(Path::to_path_buf), views.packages())
                        })
                        .await?;
                    if let Some(source) = root_view {
                        children.push((VIEW_NAME.to_string(), NodeKind::View { source }));
                    }
                    for (name, dir) in packages {
                        children.push((name, NodeKind::Package { dir }));
                    }
                }
                Ok(self.entries_of(ino, children))
            }
            NodeKind::Package { dir } => {
                let package = dir.clone();
                let bots = self
                    .on_view_paths(move |views, reader| {
                        listable_package(views, reader, &package)
                            .map(|package| views.bots_in(&package))
                            .unwrap_or_default()
                    })
                    .await?;
                let children = bots
                    .into_iter()
                    .map(|(name, dir)| (name, NodeKind::Bot { dir }))
                    .collect();
                Ok(self.entries_of(ino, children))
            }
            NodeKind::Control => {
                Ok(self.entries_of(ino, vec![(STATUS_FILE.to_string(), NodeKind::Status)]))
            }
            NodeKind::Bot { dir } => {
                let bot = dir.clone();
                let source = self
                    .on_view_paths(move |views, _| views.bot_source(&bot))
                    .await?;
                let children = match source {
                    Some(source) => vec![(VIEW_NAME.to_string(), NodeKind::View { source })],
                    None => Vec::new(),
                };
                Ok(self.entries_of(ino, children))
            }
            NodeKind::Folder {
                path,
                is_secret,
                has_children,
            } => {
                let mut entries = Vec::new();
                let mut names = HashSet::new();
                let source = self
                    .folder_source(path, *is_secret, *has_children, false)
                    .await?;
                self.served_folders
                    .lock()
                    .unwrap()
                    .insert(ino, source.clone());
                if let Some(secret) = &source.secret {
                    for key in secret.values.keys().filter(|k| is_valid_file_name(k)) {
                        let kind = NodeKind::SecretFile {
                            path: path.clone(),
                            key: key.as_str().into(),
                        };
                        names.insert(key.clone());
                        entries.push(DirEntry {
                            ino: self.intern_file(ino, key, kind, secret, false).0,
                            name: key.clone(),
                            kind: NodeType::File,
                        });
                    }
                }
                // A leaf secret's parent listing showed no `name/`: nothing to list.
                let listing = source.listing.unwrap_or_default();
                for entry in listing.iter() {
                    if !is_valid_file_name(&entry.name) || names.contains(&entry.name) {
                        continue;
                    }
                    let Some((child_is_secret, child_has_children)) = listed(&listing, &entry.name)
                    else {
                        continue;
                    };
                    names.insert(entry.name.clone());
                    let kind = NodeKind::Folder {
                        path: format!("{path}/{}", entry.name).into(),
                        is_secret: child_is_secret,
                        has_children: child_has_children,
                    };
                    entries.push(DirEntry {
                        ino: self.intern_child(ino, &entry.name, kind, false),
                        name: entry.name.clone(),
                        kind: NodeType::Directory,
                    });
                }
                Ok(entries)
            }
            NodeKind::SecretFile { .. } | NodeKind::View { .. } | NodeKind::Status => {
                Err(FsError::NotADirectory)
            }
        }
    }

    /// Interns named children and lists them as directory entries.
    fn entries_of(&self, parent: u64, children: Vec<(String, NodeKind)>) -> Vec<DirEntry> {
        children
            .into_iter()
            .map(|(name, kind)| {
                let node_type = match kind {
                    NodeKind::SecretFile { .. } | NodeKind::View { .. } | NodeKind::Status => {
                        NodeType::File
                    }
                    _ => NodeType::Directory,
                };
                DirEntry {
                    ino: self.intern(parent, &name, kind),
                    name,
                    kind: node_type,
                }
            })
            .collect()
    }

    async fn attr_of(&self, ino: u64, node: &NodeKind) -> Result<Attr, FsError> {
        match node {
            NodeKind::Root
            | NodeKind::Folder { .. }
            | NodeKind::Package { .. }
            | NodeKind::Bot { .. }
            | NodeKind::Control => Ok(self.make_attr(ino, NodeType::Directory, 0)),
            NodeKind::SecretFile { .. } | NodeKind::View { .. } => {
                let version = self.file_version(ino, node, true).await?;
                let key = node.version_key().unwrap_or_default();
                Ok(self.file_attr(ino, &version, key))
            }
            NodeKind::Status => {
                let size = self.content_of(node).await?.len() as u64;
                let mut attr = self.make_attr(ino, NodeType::File, size);
                attr.mtime = self.modified_at(node);
                attr.volatile = true;
                Ok(attr)
            }
        }
    }

    /// Attributes of a file showing `version`.
    fn file_attr(&self, ino: u64, version: &FileVersion, key: &str) -> Attr {
        let mut attr = self.make_attr(ino, NodeType::File, version.value(key).len() as u64);
        attr.mtime = version.modified;
        attr
    }

    /// When a file's content last changed, as far as gbo-fs saw: a new mtime makes
    /// the kernel drop pages it cached for the file.
    fn modified_at(&self, node: &NodeKind) -> SystemTime {
        let changed = match node {
            NodeKind::SecretFile { path, .. } => self.changes.changed_at(path),
            NodeKind::View { source } => {
                let source_time = self.view_mtimes.lock().unwrap().get(source).copied();
                let latest = *self.changes.latest.lock().unwrap();
                source_time.max(latest)
            }
            NodeKind::Status => Some(SystemTime::now()),
            NodeKind::Folder { path, .. } => self.changes.changed_at(path),
            _ => None,
        };
        changed.unwrap_or(self.started).max(self.started)
    }

    fn make_attr(&self, ino: u64, kind: NodeType, size: u64) -> Attr {
        let perm = match kind {
            NodeType::File => self.config.file_mode,
            NodeType::Directory => self.config.dir_mode,
        };
        Attr {
            ino,
            kind,
            size,
            perm,
            uid: self.config.uid,
            gid: self.config.gid,
            mtime: self.started,
            volatile: false,
        }
    }

    /// The secret at `path` when it holds `key`; ENOENT when either is missing.
    async fn secret_with_key(&self, path: &str, key: &str) -> Result<Arc<Secret>, FsError> {
        let secret = self.secret(path).await?.ok_or(FsError::NotFound)?;
        if secret.values.contains_key(key) {
            Ok(secret)
        } else {
            Err(FsError::NotFound)
        }
    }

    /// The bytes a file shows now.
    async fn content_of(&self, node: &NodeKind) -> Result<SecretBytes, FsError> {
        match node {
            NodeKind::SecretFile { path, key } => {
                let secret = self.secret_with_key(path, key).await?;
                Ok(Zeroizing::new(secret.values[&**key].to_vec()))
            }
            NodeKind::View { source } => self.render_view_content(source).await,
            NodeKind::Status => Ok(Zeroizing::new(self.status_json().into_bytes())),
            NodeKind::Root
            | NodeKind::Folder { .. }
            | NodeKind::Package { .. }
            | NodeKind::Bot { .. }
            | NodeKind::Control => Err(FsError::IsADirectory),
        }
    }

    /// Runs `work` (file-system calls on view paths: a bots directory, a package, a
    /// source) on a blocking thread, never on the FUSE session thread or the
    /// runtime's worker: should a path reach the mount after all (a race, a bind
    /// mount), the daemon still answers itself instead of waiting on itself.
    async fn on_view_paths<T: Send + 'static>(
        &self,
        work: impl FnOnce(&ConfigSources, &SourceReader) -> T + Send + 'static,
    ) -> Result<T, FsError> {
        let views = self.config.views.clone();
        let reader = self.source_reader.clone();
        tokio::task::spawn_blocking(move || work(&views, &reader))
            .await
            .map_err(|error| FsError::Source {
                file: "config.csv views".into(),
                reason: error.to_string(),
            })
    }

    /// Reads a config.csv source that references at most `MAX_VIEW_PATHS` secret
    /// paths: each is fetched on every rendering, so a bots-directory writer could
    /// otherwise make one `open` cost Vault thousands of requests.
    async fn read_view_source(&self, source: &Path) -> Result<Vec<u8>, FsError> {
        let bytes = self.read_source(source).await?;
        let paths = crate::config_csv::referenced_paths(&bytes).len();
        if paths > MAX_VIEW_PATHS {
            let file = source.display().to_string();
            let reason = format!(
                "references {paths} distinct secret paths; a view may reference at most {MAX_VIEW_PATHS}"
            );
            if self.warnings.first(&file, &reason) {
                tracing::warn!(file, %reason, "config.csv source refused");
            }
            return Err(FsError::Source { file, reason });
        }
        Ok(bytes)
    }

    /// Reads a config.csv source; a missing file is ENOENT, anything else names the file.
    async fn read_source(&self, source: &Path) -> Result<Vec<u8>, FsError> {
        let path = source.to_path_buf();
        let read = self
            .on_view_paths(move |views, reader| match views.real_path(&path) {
                Ok(real) => reader.read_with_mtime(&real),
                Err(views::Unreachable::Io(error)) => Err(error),
                Err(into_the_mount) => Err(std::io::Error::other(into_the_mount.to_string())),
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match read {
            Ok((bytes, modified)) => {
                if let Some(modified) = modified {
                    let mut mtimes = self.view_mtimes.lock().unwrap();
                    mtimes.insert(source.to_path_buf(), modified);
                }
                Ok(bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FsError::NotFound),
            Err(e) => {
                let file = source.display().to_string();
                if self.warnings.first(&file, &e.to_string()) {
                    tracing::warn!(
                        file = %printable(&file),
                        error = %printable(&e.to_string()),
                        "cannot read config.csv source"
                    );
                }
                Err(FsError::Source {
                    file,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Fetches one referenced secret path for a view, refusing paths outside the namespace.
    async fn fetch_for_view(&self, path: String) -> FetchOutcome {
        let inside = path
            .strip_prefix(self.config.prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        if !inside {
            return Err(format!(
                "outside the served namespace `{}`",
                self.config.prefix
            ));
        }
        self.secret(&path).await.map_err(|e| match e {
            FsError::Store { source, .. } => source.to_string(),
            other => other.to_string(),
        })
    }

    /// Renders a config.csv source with the configured missing-reference mode.
    pub async fn render_source(&self, source: &Path) -> Result<Rendered, FsError> {
        let bytes = self.read_view_source(source).await?;
        let mode = self.config.missing_reference;
        Ok(views::render_view(&bytes, mode, |path| self.fetch_for_view(path)).await)
    }

    /// Checks every reference of a config.csv source.
    pub async fn check_source(&self, source: &Path) -> Result<Vec<ReferenceCheck>, FsError> {
        let bytes = self.read_view_source(source).await?;
        Ok(views::check_view(&bytes, |path| self.fetch_for_view(path)).await)
    }

    /// The bytes of a view; fails closed (EIO) on unresolvable references in `error` mode.
    async fn render_view_content(&self, source: &Path) -> Result<SecretBytes, FsError> {
        let rendered = self.render_source(source).await?;
        let file = source.display().to_string();
        if rendered.unresolved.is_empty() {
            self.warnings.clear(&file);
        }
        for unresolved in &rendered.unresolved {
            if self.warnings.first(&file, &unresolved.to_string()) {
                // Escaped: a config.csv could otherwise fake log lines.
                tracing::warn!(
                    file = %printable(&file),
                    line = unresolved.line,
                    reference = %printable(&unresolved.reference),
                    reason = %unresolved.reason,
                    "unresolvable vault: reference"
                );
            }
        }
        if self.config.missing_reference == MissingReference::Error && !rendered.is_complete() {
            return Err(FsError::Unresolved {
                file,
                count: rendered.unresolved.len(),
            });
        }
        Ok(rendered.bytes)
    }

    /// The secret at a logical path, through the cache. `None` when Vault has none.
    pub async fn secret(&self, path: &str) -> Result<Option<Arc<Secret>>, FsError> {
        refuse_escaping_path(path)?;
        let answer = self
            .secrets
            .get_or_fetch(path, self.secret_fetch(path))
            .await;
        self.note_outcome(path, "read", answer)
    }

    /// A Vault operation on one path, run with one of the `vault_concurrency` permits.
    fn limited_fetch<T, F>(
        &self,
        path: &str,
        operation: F,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn SecretStore>, String) -> BoxFuture<'static, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let store = self.store.clone();
        let permits = self.vault_permits.clone();
        let owned = path.to_string();
        move || {
            Box::pin(async move {
                let _permit = permits.acquire_owned().await;
                operation(store, owned).await
            })
        }
    }

    /// The Vault read of one secret path.
    fn secret_fetch(
        &self,
        path: &str,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<Option<Arc<Secret>>, StoreError>> {
        // Keys are checked once per fetch, not on every (cached) access.
        let warnings = self.key_warnings.clone();
        self.limited_fetch(path, move |store, path| {
            Box::pin(async move {
                tracing::trace!(path, "Vault read");
                let secret = store.read_secret(&path).await?;
                if let Some(secret) = &secret {
                    warn_invalid_keys(&warnings, &path, secret);
                }
                Ok(secret.map(Arc::new))
            })
        })
    }

    /// The Vault LIST of one folder, sorted for binary search.
    fn listing_fetch(
        &self,
        path: &str,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<Option<Arc<Vec<ListEntry>>>, StoreError>> {
        self.limited_fetch(path, |store, path| {
            Box::pin(async move {
                tracing::trace!(path, "Vault list");
                let listing = store.list_folder(&path).await?;
                Ok(listing.map(|mut entries| {
                    entries.sort();
                    entries.dedup();
                    Arc::new(entries)
                }))
            })
        })
    }

    /// The folder listing at a logical path, through the cache. Empty when Vault has none.
    async fn listing(&self, path: &str) -> Result<Arc<Vec<ListEntry>>, FsError> {
        refuse_escaping_path(path)?;
        let answer = self
            .folders
            .get_or_fetch(path, self.listing_fetch(path))
            .await;
        Ok(self.note_outcome(path, "list", answer)?.unwrap_or_default())
    }

    /// Logs a failure once per path and kind, and a stale serve once per outage.
    fn note_outcome<V>(
        &self,
        path: &str,
        operation: &str,
        answer: Result<crate::cache::Cached<V>, StoreError>,
    ) -> Result<Option<V>, FsError> {
        match answer {
            Ok(cached) if cached.stale => {
                if self.warnings.first(path, "stale") {
                    tracing::warn!(
                        path,
                        operation,
                        "Vault failing; serving the last good value"
                    );
                }
                Ok(cached.value)
            }
            Ok(cached) => {
                self.warnings.clear(path);
                Ok(cached.value)
            }
            Err(source) => Err(self.vault_failure(path, operation, source)),
        }
    }

    /// Counts a failed Vault operation, logs it once per path and kind, and
    /// returns it as the file operation's error.
    fn vault_failure(&self, path: &str, operation: &str, source: StoreError) -> FsError {
        self.failed_operations.fetch_add(1, Ordering::Relaxed);
        if self.warnings.first(path, &format!("{operation}:{source}")) {
            tracing::warn!(path, operation, error = %source, "Vault request failed");
        }
        FsError::Store {
            path: path.to_string(),
            source,
        }
    }
}

/// Logs (at trace level) a lookup or getattr and its outcome: inode, size and
/// mtime, or the errno. Never content.
fn trace_attr(operation: &str, ino: u64, name: Option<&OsStr>, attr: &Result<Attr, FsError>) {
    match attr {
        Ok(attr) => tracing::trace!(
            operation,
            ino,
            name = ?name,
            found = attr.ino,
            size = attr.size,
        ),
        Err(error) => tracing::trace!(operation, ino, name = ?name, errno = error.errno()),
    }
}

/// Whether `name` is in a sorted listing, and if so whether it is (also) a secret
/// (`name`) and whether it is (also) a folder with children (`name/`).
fn listed(entries: &[ListEntry], name: &str) -> Option<(bool, bool)> {
    // Sorted by name, secret before folder: at most two entries match.
    let first = entries.partition_point(|e| e.name.as_str() < name);
    let matching: Vec<&ListEntry> = entries[first..entries.len().min(first + 2)]
        .iter()
        .filter(|e| e.name == name)
        .collect();
    (!matching.is_empty()).then(|| {
        (
            matching.iter().any(|e| !e.is_folder),
            matching.iter().any(|e| e.is_folder),
        )
    })
}

/// Refuses, before the cache or Vault sees it, a path that could leave the namespace.
fn refuse_escaping_path(path: &str) -> Result<(), FsError> {
    crate::vault::check_logical_path(path).map_err(|source| FsError::Store {
        path: path.to_string(),
        source,
    })
}

/// Warns once per path and key about a key that cannot be a file name.
fn warn_invalid_keys(warnings: &WarnOnce, path: &str, secret: &Secret) {
    for key in secret.values.keys().filter(|k| !is_valid_file_name(k)) {
        if warnings.first(path, key) {
            let shown: String = key.chars().take(64).collect();
            tracing::warn!(path, key = ?shown, "key is not a valid file name; it is not shown");
        }
    }
}

#[cfg(test)]
mod tests;
