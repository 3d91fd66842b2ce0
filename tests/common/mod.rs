//! Shared integration-test helpers: run the `gbo-fs` binary, mount and unmount
//! with bounded waits, and skip FUSE tests where FUSE is unavailable.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gbo_fs::daemon::is_mount_point;

pub const BIN: &str = env!("CARGO_BIN_EXE_gbo-fs");

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// True when this machine can mount FUSE filesystems; otherwise the caller
/// skips (or fails, when GBO_FS_REQUIRE_FUSE=1 as in CI).
pub fn fuse_available() -> bool {
    let available = Path::new("/dev/fuse").exists() && nix::unistd::geteuid().is_root();
    available_or_skip(available, "GBO_FS_REQUIRE_FUSE", "root and /dev/fuse")
}

/// Returns `available`; when false, prints that the test skips for want of
/// `needs`, or fails the test if the environment variable `require` is 1 (CI).
pub fn available_or_skip(available: bool, require: &str, needs: &str) -> bool {
    if !available {
        assert!(
            std::env::var(require).as_deref() != Ok("1"),
            "required ({require}=1) but this machine lacks {needs}"
        );
        eprintln!("skipping: needs {needs}");
    }
    available
}

/// Starts a real RustyVault server, or skips when `rvault` is not installed
/// (fails instead when GBO_FS_REQUIRE_RVAULT=1, as in CI).
pub fn rusty_vault_or_skip() -> Option<gbo_fs::testing::rusty_vault::RustyVault> {
    use gbo_fs::testing::rusty_vault::RustyVault;
    let installed = RustyVault::binary().is_some();
    let needs = "rvault (cargo install rusty_vault --version 0.2.1)";
    available_or_skip(installed, "GBO_FS_REQUIRE_RVAULT", needs)
        .then(|| RustyVault::start().expect("start rvault"))
}

/// A `gbo-fs` command with Vault settings in its environment, run from an
/// empty working directory so no stray `.env` is read.
pub fn gbo_fs(addr: &str, token: &str, workdir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(workdir)
        .env_remove("RUST_LOG")
        .env("VAULT_ADDR", addr)
        .env("VAULT_TOKEN", token)
        .env_remove("VAULT_CACHE_TTL")
        .stdin(Stdio::null());
    command
}

/// Writes `text` to the file `name` in `dir`; returns its path as an argument.
pub fn written(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The `http://` address of a TCP listener on 127.0.0.1 that accepts every connection
/// and never answers: a Vault that hangs. It lives until the test process ends.
pub fn silent_listener() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    addr
}

/// Like [`silent_listener`], and also records the request line (`GET /v1/... HTTP/1.1`) of
/// every request it receives, so a test can tell which Vault calls were made.
pub fn silent_recording_listener() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let recorded = recorded.clone();
            // Reads the request line, then keeps the connection open without answering.
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_ok() && !line.is_empty() {
                    recorded.lock().unwrap().push(line.trim_end().to_string());
                }
                let mut rest = Vec::new();
                let _ = std::io::Read::read_to_end(&mut reader, &mut rest);
            });
        }
    });
    (addr, requests)
}

/// A folder holding an old-style `.env` with one secret variable (for `gbo-fs migrate`),
/// under the name `name`.
pub fn dir_with_old_env(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), "DATABASE_URL=postgres://u:p@db/gb\n").unwrap();
    dir
}

/// Runs `gbo-fs ARGS` (bounded to 30 s) against `addr` with `token` from `dir`: the exit
/// code and what it wrote, stdout then stderr, as text.
pub fn exit_and_output(
    addr: &str,
    token: &str,
    dir: &Path,
    args: &[&str],
) -> (Option<i32>, String) {
    let mut command = gbo_fs(addr, token, dir);
    command.args(args);
    let output = run_bounded(command, Duration::from_secs(30));
    let all = [output.stdout, output.stderr].concat();
    (
        output.status.code(),
        String::from_utf8_lossy(&all).into_owned(),
    )
}

/// Runs a one-shot command with a time bound.
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    command.stdout(Stdio::piped());
    finish_bounded(command, limit)
}

/// Runs a one-shot command, with a time bound, whose stdout is a pipe nobody
/// reads: its read end is closed before the command starts, so every write
/// fails as it does after `| head -1` has exited. The output holds stderr only.
pub fn run_with_closed_stdout(mut command: Command, limit: Duration) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    command.stdout(writer);
    finish_bounded(command, limit)
}

fn finish_bounded(mut command: Command, limit: Duration) -> Output {
    command.stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn gbo-fs");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `gbo-fs mount`, unmounted and stopped on drop.
pub struct Mount {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub mountpoint: PathBuf,
    pub log: PathBuf,
}

impl Mount {
    /// Starts `gbo-fs mount` with `extra` arguments and waits until mounted.
    pub fn start(addr: &str, token: &str, extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let mountpoint = dir.path().join("secrets");
        Mount::start_at(dir, mountpoint, addr, token, extra)
    }

    pub fn start_at(
        dir: tempfile::TempDir,
        mountpoint: PathBuf,
        addr: &str,
        token: &str,
        extra: &[&str],
    ) -> Mount {
        Mount::start_with_env(dir, mountpoint, addr, token, extra, &[])
    }

    /// Like [`Mount::start_at`], with extra environment variables for the daemon.
    pub fn start_with_env(
        dir: tempfile::TempDir,
        mountpoint: PathBuf,
        addr: &str,
        token: &str,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Mount {
        let log = dir.path().join("daemon.log");
        let workdir = dir.path().join("work");
        std::fs::create_dir_all(&workdir).unwrap();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = gbo_fs(addr, token, &workdir);
        command.envs(env.iter().copied());
        command
            .arg("mount")
            .arg(&mountpoint)
            .args(extra)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child = command.spawn().expect("spawn gbo-fs mount");
        let mut mount = Mount {
            child: Some(child),
            dir,
            mountpoint,
            log,
        };
        mount.wait_mounted();
        mount
    }

    fn wait_mounted(&mut self) {
        let mountpoint = self.mountpoint.clone();
        let child = self.child.as_mut().unwrap();
        let mounted = wait_until(Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("gbo-fs exited early with {status}");
            }
            // statfs reaches the daemon: a stale mount from an earlier daemon fails it.
            nix::sys::statfs::statfs(&mountpoint).is_ok()
                && is_mount_point(&std::fs::canonicalize(&mountpoint).unwrap_or_default())
        });
        assert!(
            mounted,
            "not mounted within 20 s; log:\n{}",
            self.log_text()
        );
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.mountpoint.join(relative)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal and waits (up to 10 s) for the daemon to exit: its exit status,
    /// or `None` when it had to be killed.
    pub fn stop_with(
        &mut self,
        signal: nix::sys::signal::Signal,
    ) -> Option<std::process::ExitStatus> {
        self.stop_within(signal, Duration::from_secs(10))
    }

    /// Sends a signal and waits up to `limit` for the daemon to exit: its exit status,
    /// or `None` when it was still running (it is then killed).
    pub fn stop_within(
        &mut self,
        signal: nix::sys::signal::Signal,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let mut status = None;
        wait_until(limit, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Simulates a crash: SIGKILL, leaving the mount behind.
    pub fn kill_hard(&mut self) {
        self.stop_with(nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM);
        force_unmount(&self.mountpoint);
    }
}

/// Clears any mount left at `path` (tests never leave one behind).
pub fn force_unmount(path: &Path) {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        if !is_mount_point(&canonical) {
            return;
        }
    }
    let _ = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(path)
        .stderr(Stdio::null())
        .status();
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
}

/// The errno of an io::Error.
pub fn errno_of(error: &std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(0)
}

/// Runs the binary with `args` only (no Vault settings), unbounded: for commands
/// that never wait on anything.
pub fn run_offline<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(BIN).args(args).output().expect("run gbo-fs")
}

/// Asserts the command exited 0, showing its stderr otherwise.
pub fn assert_succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
