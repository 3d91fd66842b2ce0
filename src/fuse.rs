//! The fuser adapter: hands each kernel request to the filesystem core on the
//! tokio runtime and converts its answer into a reply or an errno. Nothing else.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, IoctlFlags, LockOwner, OpenAccMode, OpenFlags, PollEvents, PollFlags, PollNotifier,
    ReplyAttr, ReplyBmap, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use tokio::runtime::Handle;

use crate::fs::{Attr, DirCache, FsError, NodeType, SecretFs, ROOT_INO};

/// How long the kernel may keep a name or attributes before asking again. Each
/// time it asks, a changed size or mtime makes it drop the file's cached pages
/// (FUSE_AUTO_INVAL_DATA); a rotation seen by the cache also invalidates at once
/// through the `Notifier`.
const KERNEL_TTL: Duration = Duration::from_secs(1);

/// The FUSE face of a [`SecretFs`].
pub struct FuseAdapter {
    fs: Arc<SecretFs>,
    runtime: Handle,
    /// The kernel accepted zero-message opens: `open` answers ENOSYS once and
    /// the kernel then serves warm reads from its page cache without asking us.
    no_open: std::sync::atomic::AtomicBool,
}

impl FuseAdapter {
    pub fn new(fs: Arc<SecretFs>, runtime: Handle) -> FuseAdapter {
        FuseAdapter {
            fs,
            runtime,
            no_open: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Runs one core operation. It is polled once right here, so an answer the
    /// cache already holds is sent without a hand-off to another thread; an
    /// operation that has to wait (for Vault, or a file) continues as a task of
    /// its own, so a slow Vault read never blocks the kernel channel.
    fn spawn<F, Fut>(&self, operation: F)
    where
        F: FnOnce(Arc<SecretFs>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let _runtime_context = self.runtime.enter();
        let mut task = Box::pin(operation(self.fs.clone()));
        // The task re-registers its real waker when the runtime polls it next.
        let waker = futures::task::noop_waker();
        let mut context = std::task::Context::from_waker(&waker);
        if task.as_mut().poll(&mut context).is_pending() {
            self.runtime.spawn(task);
        }
    }
}

/// The kernel TTL for an inode's name and attributes.
fn ttl_of(attr: &Attr) -> Duration {
    if attr.volatile {
        Duration::ZERO
    } else {
        KERNEL_TTL
    }
}

fn errno(error: &FsError) -> Errno {
    Errno::from_i32(error.errno())
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.mtime,
        crtime: attr.mtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: if attr.kind == NodeType::Directory {
            2
        } else {
            1
        },
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: NodeType) -> FileType {
    match kind {
        NodeType::File => FileType::RegularFile,
        NodeType::Directory => FileType::Directory,
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Without PARALLEL_DIROPS the kernel serializes lookups in one directory:
        // readers of different secrets in a folder would queue behind one slow
        // Vault answer, each then waiting a timeout of its own.
        let wanted = fuser::InitFlags::FUSE_AUTO_INVAL_DATA
            | fuser::InitFlags::FUSE_NO_OPEN_SUPPORT
            | fuser::InitFlags::FUSE_PARALLEL_DIROPS;
        let unsupported = config
            .add_capabilities(wanted)
            .err()
            .unwrap_or(fuser::InitFlags::empty());
        let no_open = !unsupported.contains(fuser::InitFlags::FUSE_NO_OPEN_SUPPORT);
        self.no_open
            .store(no_open, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(no_open, "kernel capabilities negotiated");
        Ok(())
    }
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_os_string();
        self.spawn(move |fs| async move {
            match fs.lookup(parent.0, &name).await {
                Ok(attr) => reply.entry(&ttl_of(&attr), &file_attr(&attr), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(move |fs| async move {
            match fs.getattr(ino.0).await {
                Ok(attr) => reply.attr(&ttl_of(&attr), &file_attr(&attr)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        if !write && self.no_open.load(std::sync::atomic::Ordering::Relaxed) {
            return reply.error(Errno::ENOSYS);
        }
        self.spawn(move |fs| async move {
            match fs.open(ino.0, write).await {
                Ok(handle) => reply.opened(FileHandle(handle), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if fh.0 != 0 {
            return match self.fs.read(fh.0, offset, size) {
                Ok(bytes) => reply.data(&bytes),
                Err(e) => reply.error(errno(&e)),
            };
        }
        self.spawn(move |fs| async move {
            match fs.read_at(ino.0, offset, size).await {
                Ok(bytes) => reply.data(&bytes),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    /// Unimplemented on purpose: the kernel then stops sending FLUSH on every close.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(move |fs| async move {
            // Vault folders may be cached by the kernel: gbo-fs invalidates them
            // when a refresh finds their entries changed.
            let flags = match fs.opendir(ino.0).await {
                Ok(DirCache::Keep) => FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                Ok(DirCache::Refill) => FopenFlags::FOPEN_CACHE_DIR,
                Ok(DirCache::Off) => FopenFlags::empty(),
                Err(e) => return reply.error(errno(&e)),
            };
            reply.opened(FileHandle(0), flags)
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.spawn(move |fs| async move {
            let entries = match fs.readdir(ino.0).await {
                Ok(entries) => entries,
                Err(e) => return reply.error(errno(&e)),
            };
            let parent = if ino.0 == ROOT_INO { ROOT_INO } else { ino.0 };
            let dots = [(ino.0, ".".to_string()), (parent, "..".to_string())];
            let all = dots
                .into_iter()
                .map(|(i, n)| (i, n, FileType::Directory))
                .chain(
                    entries
                        .into_iter()
                        .map(|e| (e.ino, e.name, file_type(e.kind))),
                );
            for (index, (entry_ino, name, kind)) in all.enumerate().skip(offset as usize) {
                if reply.add(INodeNo(entry_ino), index as u64 + 1, kind, &name) {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS);
        } else {
            reply.ok();
        }
    }

    // Everything that would change the tree is refused: the mount is read-only.

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    // No extended attributes. ENOSYS makes the kernel stop asking (and answer
    // EOPNOTSUPP itself); answered here so fuser logs no "not implemented" warning.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    // Requests ordinary readers send (Python's isatty check, fsync, SEEK_DATA,
    // poll), answered here so fuser logs no "not implemented" warning. File
    // locks never arrive: without FUSE_POSIX_LOCKS the kernel handles them.

    /// No file here is a terminal: ENOTTY is what isatty() expects.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// Nothing to sync on a read-only filesystem.
    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fsync(req, ino, fh, datasync, reply);
    }

    /// ENOSYS: the kernel then answers SEEK_DATA/SEEK_HOLE itself from then on.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// ENOSYS: the kernel then reports every file as always readable.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// No blocks to map: gbo-fs is not backed by a block device.
    fn bmap(&self, _req: &Request, _ino: INodeNo, _blocksize: u32, _idx: u64, reply: ReplyBmap) {
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    /// The destination would be a file here, and nothing here is writable.
    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}
