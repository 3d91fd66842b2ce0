//! The systemd protocols gbo-fs speaks: sd_notify (states, storing a file
//! descriptor in the service's fd store, barriers) and receiving descriptors
//! through LISTEN_FDS.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

/// The name under which the FUSE device descriptor travels through the fd store.
pub const FUSE_FD_NAME: &str = "gbo-fs-fuse";

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: i32 = 3;

/// Whether NOTIFY_SOCKET names a service manager to talk to.
pub fn notify_socket_present() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Sends a state line (`READY=1`, `STOPPING=1`) to systemd when run as a
/// `Type=notify` service; does nothing otherwise.
pub fn notify(state: &str) {
    if !notify_socket_present() {
        return;
    }
    if let Err(error) = send(state, None) {
        tracing::warn!(%error, "could not notify systemd");
    }
}

/// Stores `fd` in the service's file-descriptor store under `name`, replacing
/// any descriptor stored earlier under that name, and waits until systemd has
/// taken it (so the main process, started next, receives it).
pub fn store_fd(name: &str, fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    send(&format!("FDSTOREREMOVE=1\nFDNAME={name}"), None)?;
    send(&format!("FDSTORE=1\nFDNAME={name}"), Some(fd))?;
    barrier(timeout)
}

/// sd_notify_barrier: returns once systemd has processed every message sent
/// before it (it closes the write end of a pipe it was sent).
fn barrier(timeout: Duration) -> io::Result<()> {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    send("BARRIER=1", Some(write_end.as_fd()))?;
    drop(write_end);
    let mut fds = [nix::poll::PollFd::new(
        read_end.as_fd(),
        nix::poll::PollFlags::empty(),
    )];
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis))? {
        0 => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "systemd did not confirm the notification (BARRIER=1)",
        )),
        _ => Ok(()),
    }
}

fn send(state: &str, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let socket_path = std::env::var_os("NOTIFY_SOCKET")
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "NOTIFY_SOCKET is not set"))?;
    let bytes = socket_path.as_encoded_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => UnixAddr::new_abstract(abstract_name)?,
        None => UnixAddr::new(bytes)?,
    };
    let socket = UnixDatagram::unbound()?;
    let raw = fd.map(|fd| [fd.as_raw_fd()]);
    let control: Vec<ControlMessage<'_>> = raw
        .as_ref()
        .map(|fds| vec![ControlMessage::ScmRights(fds)])
        .unwrap_or_default();
    let payload = [io::IoSlice::new(state.as_bytes())];
    sendmsg(
        socket.as_raw_fd(),
        &payload,
        &control,
        MsgFlags::empty(),
        Some(&address),
    )?;
    Ok(())
}

/// Takes the descriptor systemd passed under `name` (LISTEN_FDS/LISTEN_FDNAMES,
/// meant for this process per LISTEN_PID). Returns `None` when none was passed.
/// The LISTEN_* variables are removed so children do not inherit them.
pub fn take_listen_fd(name: &str) -> Result<Option<OwnedFd>, String> {
    let listen_pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for variable in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(variable);
    }
    let (Some(listen_pid), Some(count)) = (listen_pid, count) else {
        return Ok(None);
    };
    if listen_pid.trim() != std::process::id().to_string() {
        return Ok(None);
    }
    let count: i32 = count
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={count:?} is not a number"))?;
    let names: Vec<&str> = names.split(':').collect();
    let mut found = None;
    for index in 0..count {
        let raw = LISTEN_FDS_START + index;
        // SAFETY: systemd passed descriptors LISTEN_FDS_START.. to this process
        // (LISTEN_PID matched); each is taken over exactly once here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_cloexec(&fd)?;
        if names.get(index as usize) == Some(&name) && found.is_none() {
            found = Some(fd);
        }
        // Any other descriptor is not ours to keep: dropping closes it.
    }
    Ok(found)
}

fn set_cloexec(fd: &OwnedFd) -> Result<(), String> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(|_| ())
        .map_err(|e| format!("passed descriptor {}: {e}", fd.as_raw_fd()))
}
