//! Process hardening and access control: no core dumps, non-dumpable, memory
//! locking, and other unix users kept out of 0400 files.

mod common;

use std::process::Command;

use common::{fuse_available, Mount};
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer};

const NOBODY: &str = "65534";

fn server() -> TestVaultServer {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-hardening")]);
    server
}

fn proc_field(pid: u32, file: &str, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/{file}"))
        .to_string()
}

/// `cat PATH` as the unprivileged user nobody; returns (success, stdout, stderr).
fn cat_as_nobody(path: &std::path::Path) -> (bool, Vec<u8>, String) {
    let output = Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "cat",
        ])
        .arg(path)
        .output()
        .expect("setpriv (util-linux)");
    (
        output.status.success(),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn harden_process_turns_off_core_dumps_and_dumpability() {
    gbo_fs::hardening::harden_process(false).unwrap();
    assert!(!gbo_fs::hardening::is_dumpable());
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
    assert_eq!((soft, hard), (0, 0));
}

#[test]
fn the_daemon_runs_without_core_dumps_and_mlock_locks_its_memory() {
    if !fuse_available() {
        return;
    }
    let server = server();
    let mount = Mount::start(&server.addr(), &server.token(), &["--mlock"]);
    let pid = mount.child.as_ref().unwrap().id();
    let core = proc_field(pid, "limits", "Max core file size");
    assert!(
        core.split_whitespace().filter(|w| *w == "0").count() >= 2,
        "{core}"
    );
    let locked = proc_field(pid, "status", "VmLck:");
    let kib: u64 = locked.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(kib > 0, "--mlock locked nothing: {locked}");
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-hardening"
    );
}

#[test]
fn another_unix_user_is_denied_with_and_without_allow_other() {
    if !fuse_available() {
        return;
    }
    let server = server();
    for extra in [&[][..], &["--allow-other"][..]] {
        let mount = Mount::start(&server.addr(), &server.token(), extra);
        let (ok, stdout, stderr) = cat_as_nobody(&mount.path("gbo/llm/openai_key"));
        assert!(!ok, "{extra:?}: nobody read the secret");
        assert!(stdout.is_empty());
        assert!(stderr.contains("Permission denied"), "{extra:?}: {stderr}");
        assert_eq!(
            std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
            b"sk-hardening"
        );
    }
}

#[test]
fn allow_other_with_uid_lets_exactly_that_user_read() {
    if !fuse_available() {
        return;
    }
    let server = server();
    let mount = Mount::start(
        &server.addr(),
        &server.token(),
        &["--allow-other", "--uid", NOBODY, "--gid", NOBODY],
    );
    let (ok, stdout, stderr) = cat_as_nobody(&mount.path("gbo/llm/openai_key"));
    assert!(ok, "{stderr}");
    assert_eq!(stdout, b"sk-hardening");
}

#[test]
fn auto_unmount_leaves_no_stale_mount_after_sigkill() {
    if !fuse_available() {
        return;
    }
    let server = server();
    let mut mount = Mount::start(&server.addr(), &server.token(), &["--auto-unmount"]);
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-hardening"
    );
    mount.kill_hard();
    let canonical = std::fs::canonicalize(&mount.mountpoint).unwrap_or_default();
    let unmounted = common::wait_until(std::time::Duration::from_secs(10), || {
        !gbo_fs::daemon::is_mount_point(&canonical)
    });
    assert!(
        unmounted,
        "a SIGKILLed daemon with --auto-unmount left its mount {}; its line in \
         mountinfo: {:?}; fusermount3 processes: {:?}",
        canonical.display(),
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(&*canonical.to_string_lossy()))
            .collect::<Vec<_>>(),
        fusermount_processes(),
    );
}

#[test]
fn auto_unmount_leaves_no_dead_mount_after_sigterm_or_sigint() {
    if !fuse_available() {
        return;
    }
    let server = server();
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let mut mount = Mount::start(&server.addr(), &server.token(), &["--auto-unmount"]);
        assert_eq!(
            std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
            b"sk-hardening"
        );
        let status = mount.stop_with(signal).expect("the daemon exits");
        assert!(status.success(), "{signal}: {status}");
        let canonical = std::fs::canonicalize(&mount.mountpoint).unwrap_or_default();
        assert!(
            !gbo_fs::daemon::is_mount_point(&canonical),
            "{signal} with --auto-unmount left a dead mount at {}; log:\n{}",
            canonical.display(),
            mount.log_text()
        );
        assert!(
            !mount.log_text().contains("still in use"),
            "nothing held the mount: {}",
            mount.log_text()
        );
    }
}

/// The command lines of running fusermount3 processes, for a failure message.
fn fusermount_processes() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains("fusermount3"))
        .collect()
}
