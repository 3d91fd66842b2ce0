//! Through a real FUSE mount of the `gbo-fs` binary against the Vault-API test server.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{errno_of, fuse_available, Mount};
use gbo_fs::testing::vault_server::{Fault, KvVersion, TestVaultConfig, TestVaultServer};
use nix::sys::signal::Signal;

fn botserver_layout() -> TestVaultServer {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str(
        "secret",
        "gbo/llm",
        &[
            ("openai_key", "sk-openai-123"),
            ("anthropic_key", "sk-ant-456"),
        ],
    );
    server.put_secret(
        "secret",
        "gbo/tables",
        serde_json::json!({"host": "db.internal", "port": 5432, "ssl": true})
            .as_object()
            .unwrap()
            .clone(),
    );
    server.put_str("secret", "gbo/bots/mybot", &[("api_key", "bot-key-789")]);
    server
}

fn cat(path: &std::path::Path) -> std::process::Output {
    Command::new("cat").arg(path).output().expect("run cat")
}

#[test]
fn cat_prints_the_exact_value_with_botservers_kv2_secret_layout() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    let output = cat(&mount.path("gbo/llm/openai_key"));
    assert!(output.status.success());
    assert_eq!(output.stdout, b"sk-openai-123");
    assert_eq!(
        std::fs::read(mount.path("gbo/tables/port")).unwrap(),
        b"5432"
    );
    assert_eq!(
        std::fs::read(mount.path("gbo/tables/ssl")).unwrap(),
        b"true"
    );
    assert_eq!(
        std::fs::read(mount.path("gbo/bots/mybot/api_key")).unwrap(),
        b"bot-key-789"
    );
    assert!(server.count("GET", "secret/data/gbo/llm") >= 1);
}

#[test]
fn cat_works_with_the_documented_gbo_kv_mount_in_both_versions() {
    if !fuse_available() {
        return;
    }
    for version in [KvVersion::V1, KvVersion::V2] {
        let server = TestVaultServer::start(TestVaultConfig::gbo_mount(version)).unwrap();
        server.put_str("gbo", "llm", &[("openai_key", "documented-layout")]);
        let mount = Mount::start(&server.addr(), &server.token(), &[]);
        assert_eq!(
            std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
            b"documented-layout",
            "{version:?}"
        );
    }
}

#[test]
fn files_are_0400_and_directories_0500_and_listing_reads_no_secret() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    let output = Command::new("ls")
        .arg("-l")
        .arg(mount.path("gbo"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let listing = String::from_utf8_lossy(&output.stdout);
    for name in ["bots", "llm", "tables"] {
        assert!(listing.contains(name), "{listing}");
    }
    assert!(
        listing.lines().skip(1).all(|l| l.starts_with("dr-x------")),
        "{listing}"
    );
    let secret_reads: usize = server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("secret/data/"))
        .count();
    assert_eq!(secret_reads, 0, "mounting and `ls -l gbo/` read no secret");

    let file = std::fs::metadata(mount.path("gbo/llm/openai_key")).unwrap();
    assert_eq!(file.permissions().mode() & 0o7777, 0o400);
    assert_eq!(file.len(), "sk-openai-123".len() as u64);
    assert_eq!(file.uid(), nix::unistd::getuid().as_raw());
    let dir = std::fs::metadata(mount.path("gbo/llm")).unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o500);
    let mut names: Vec<String> = std::fs::read_dir(mount.path("gbo/llm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["anthropic_key", "openai_key"]);
}

#[test]
fn uid_and_gid_flags_set_the_owner() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mount = Mount::start(
        &server.addr(),
        &server.token(),
        &["--uid", "4242", "--gid", "4343"],
    );
    let meta = std::fs::metadata(mount.path("gbo/llm/openai_key")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
}

#[test]
fn every_kind_of_write_is_refused_with_erofs() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    let key = mount.path("gbo/llm/openai_key");
    let attempts: Vec<(&str, std::io::Result<()>)> = vec![
        (
            "write",
            std::fs::OpenOptions::new()
                .write(true)
                .open(&key)
                .map(|_| ()),
        ),
        ("create", std::fs::write(mount.path("gbo/llm/new"), b"x")),
        ("mkdir", std::fs::create_dir(mount.path("gbo/newdir"))),
        ("unlink", std::fs::remove_file(&key)),
        ("rmdir", std::fs::remove_dir(mount.path("gbo/bots"))),
        ("rename", std::fs::rename(&key, mount.path("gbo/llm/moved"))),
        (
            "chmod",
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)),
        ),
        (
            "symlink",
            std::os::unix::fs::symlink("/etc/passwd", mount.path("gbo/link")),
        ),
        ("link", std::fs::hard_link(&key, mount.path("gbo/llm/hard"))),
    ];
    for (what, result) in attempts {
        let error = result.expect_err(what);
        assert_eq!(errno_of(&error), libc::EROFS, "{what}: {error}");
    }
    assert_eq!(
        std::fs::read(&key).unwrap(),
        b"sk-openai-123",
        "nothing changed"
    );
}

#[test]
fn vault_errors_become_enoent_eacces_and_eio() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    server.put_str("secret", "gbo/denied", &[("k", "v")]);
    server.put_str("secret", "gbo/broken", &[("k", "v")]);
    server.put_str("secret", "gbo/hanging", &[("k", "v")]);
    let mount = Mount::start(&server.addr(), &server.token(), &["--vault-timeout", "1"]);
    let names: Vec<_> = std::fs::read_dir(mount.path("gbo")).unwrap().collect();
    assert!(names.len() >= 5);
    server.deny("secret/data/gbo/denied");
    server.set_path_fault("secret/data/gbo/broken", Fault::Status(500));
    server.set_path_fault("secret/data/gbo/hanging", Fault::Hang);

    let missing = std::fs::read(mount.path("gbo/llm/no_such_key")).unwrap_err();
    assert_eq!(errno_of(&missing), libc::ENOENT);
    let denied = std::fs::read(mount.path("gbo/denied/k")).unwrap_err();
    assert_eq!(errno_of(&denied), libc::EACCES);
    let broken = std::fs::read(mount.path("gbo/broken/k")).unwrap_err();
    assert_eq!(errno_of(&broken), libc::EIO);
    let started = Instant::now();
    let hanging = std::fs::read(mount.path("gbo/hanging/k")).unwrap_err();
    assert_eq!(errno_of(&hanging), libc::EIO);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by --vault-timeout"
    );
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-openai-123"
    );
    let log = mount.log_text();
    assert!(
        log.contains("gbo/denied") && log.contains("gbo/broken"),
        "errors are logged with the path:\n{log}"
    );
}

#[test]
fn sigterm_and_sigint_unmount_cleanly_and_exit_zero() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut mount = Mount::start(&server.addr(), &server.token(), &[]);
        let status = mount.stop_with(signal).expect("exited");
        assert!(status.success(), "{signal}: {status}");
        let canonical = std::fs::canonicalize(&mount.mountpoint).unwrap();
        assert!(
            !gbo_fs::daemon::is_mount_point(&canonical),
            "{signal}: still mounted"
        );
    }
}

/// A mount whose daemon was SIGKILLed without --auto-unmount: stale (ENOTCONN).
fn stale_mount(server: &TestVaultServer) -> Mount {
    let mut killed = Mount::start(&server.addr(), &server.token(), &[]);
    killed.kill_hard();
    let stale = nix::sys::statfs::statfs(&killed.mountpoint).unwrap_err();
    assert_eq!(
        stale,
        nix::errno::Errno::ENOTCONN,
        "a SIGKILLed daemon leaves a stale mount"
    );
    killed
}

#[test]
fn a_stale_mount_left_by_a_killed_daemon_is_cleared_on_the_next_mount() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let first = stale_mount(&server);
    let dir = tempfile::tempdir().unwrap();
    let second = Mount::start_at(
        dir,
        first.mountpoint.clone(),
        &server.addr(),
        &server.token(),
        &[],
    );
    assert_eq!(
        std::fs::read(second.path("gbo/llm/openai_key")).unwrap(),
        b"sk-openai-123"
    );
    assert!(second.log_text().contains("stale mount"));
    drop(second);
    drop(first);
}

#[test]
fn gbo_fs_unmount_detaches_the_stale_mount_of_a_killed_daemon() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let killed = stale_mount(&server);
    let canonical = std::fs::canonicalize(killed.mountpoint.parent().unwrap())
        .unwrap()
        .join(killed.mountpoint.file_name().unwrap());
    assert!(gbo_fs::daemon::is_mount_point(&canonical), "left stale");
    let unmount = common::run_offline(&["unmount".as_ref(), killed.mountpoint.as_os_str()]);
    common::assert_succeeded(&unmount);
    assert!(!gbo_fs::daemon::is_mount_point(&canonical));
}

#[test]
fn the_log_at_trace_level_never_contains_a_value_or_the_token() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    server.put_str("secret", "gbo/broken", &[("k", "broken-value-000")]);
    server.put_str("secret", "gbo/rotating", &[("k", "first-value-111")]);
    let workspace = tempfile::tempdir().unwrap();
    let csv = workspace.path().join("config.csv");
    std::fs::write(
        &csv,
        "name,value\nkey,vault:gbo/llm/openai_key\nbad,vault:gbo/llm/nope\n",
    )
    .unwrap();
    // Both ways of asking for everything: -vv and RUST_LOG=trace (all crates).
    for (flags, env) in [
        (vec!["-vv"], vec![]),
        (vec![], vec![("RUST_LOG", std::ffi::OsStr::new("trace"))]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("secrets");
        let mut args = flags.clone();
        args.extend([
            "--vault-timeout",
            "1",
            "--cache-ttl",
            "1",
            "--config-csv",
            csv.to_str().unwrap(),
        ]);
        let mut mount = Mount::start_with_env(
            dir,
            mountpoint,
            &server.addr(),
            &server.token(),
            &args,
            &env,
        );
        for path in [
            "gbo/llm/openai_key",
            "gbo/llm/anthropic_key",
            "gbo/tables/host",
            "gbo/bots/mybot/api_key",
            "gbo/rotating/k",
        ] {
            std::fs::read(mount.path(path)).unwrap();
        }
        let _ = std::fs::read(mount.path("config.csv"));
        server.put_str("secret", "gbo/rotating", &[("k", "second-value-222")]);
        common::wait_until(Duration::from_secs(10), || {
            std::fs::read(mount.path("gbo/rotating/k")).ok() == Some(b"second-value-222".to_vec())
        });
        server.set_path_fault("secret/data/gbo/broken", Fault::MalformedJson);
        let _ = std::fs::read(mount.path("gbo/broken/k"));
        let _ = std::fs::read(mount.path("gbo/llm/missing"));
        server.clear_faults();
        server.put_str("secret", "gbo/rotating", &[("k", "first-value-111")]);
        mount.stop_with(Signal::SIGTERM);
        let log = mount.log_text();
        assert!(
            log.contains("TRACE") || log.contains("DEBUG"),
            "{env:?}: log was written:\n{log}"
        );
        assert!(
            log.contains("unresolvable vault: reference"),
            "{env:?}: {log}"
        );
        for secret in [
            "sk-openai-123",
            "sk-ant-456",
            "db.internal",
            "bot-key-789",
            "broken-value-000",
            "first-value-111",
            "second-value-222",
            &server.token(),
        ] {
            assert!(
                !log.contains(secret),
                "{flags:?}{env:?}: log leaks {secret}:\n{log}"
            );
        }
    }
}

#[test]
fn a_mount_comes_up_while_vault_is_down_and_reads_fail_with_eio() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let addr = server.addr();
    let token = server.token();
    server.stop();
    let mount = Mount::start(&addr, &token, &["--vault-timeout", "1"]);
    let error = std::fs::read_dir(mount.path("gbo"))
        .and_then(|mut d| d.next().transpose())
        .unwrap_err();
    assert_eq!(errno_of(&error), libc::EIO);
}

#[test]
fn sighup_makes_the_next_read_ask_vault_and_keeps_the_last_good_value_through_an_outage() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "300"]);
    let key = mount.path("gbo/llm/openai_key");
    assert_eq!(std::fs::read(&key).unwrap(), b"sk-openai-123");
    server.put_str("secret", "gbo/llm", &[("openai_key", "after-sighup")]);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        b"sk-openai-123",
        "cached for 300 s"
    );
    let pid = nix::unistd::Pid::from_raw(mount.child.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    let fresh = common::wait_until(Duration::from_secs(10), || {
        std::fs::read(&key).ok() == Some(b"after-sighup".to_vec())
    });
    assert!(fresh, "SIGHUP did not expire the cache");

    // A reload during an outage asks Vault, which fails: the value read last is kept.
    server.set_fault(Fault::Status(503));
    let requests = server.total_requests();
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || {
        std::fs::read(&key).ok() == Some(b"after-sighup".to_vec())
            && server.total_requests() > requests
    }));
    server.clear_faults();
    assert!(mount.child.as_ref().is_some(), "the daemon keeps running");
}

#[test]
fn systemd_is_told_ready_once_the_mount_is_up() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mountpoint = dir.path().join("secrets");
    let mount = Mount::start_with_env(
        dir,
        mountpoint,
        &server.addr(),
        &server.token(),
        &[],
        &[("NOTIFY_SOCKET", socket_path.as_os_str())],
    );
    let mut buffer = [0u8; 256];
    let length = socket.recv(&mut buffer).expect("a notification");
    assert_eq!(&buffer[..length], b"READY=1");
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-openai-123"
    );
}

#[test]
fn odd_names_deep_paths_and_long_names_fail_cleanly_and_the_daemon_keeps_serving() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    server.put_str(
        "secret",
        "gbo/odd",
        &[("with space", "s"), ("ünïcødé", "u"), ("a?b#c", "q")],
    );
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    assert_eq!(
        std::fs::read(mount.path("gbo/odd/with space")).unwrap(),
        b"s"
    );
    assert_eq!(std::fs::read(mount.path("gbo/odd/ünïcødé")).unwrap(), b"u");
    assert_eq!(std::fs::read(mount.path("gbo/odd/a?b#c")).unwrap(), b"q");
    let deep = format!("gbo/{}", vec!["d"; 200].join("/"));
    assert_eq!(
        errno_of(&std::fs::read(mount.path(&deep)).unwrap_err()),
        libc::ENOENT
    );
    let long = format!("gbo/{}", "n".repeat(255));
    assert_eq!(
        errno_of(&std::fs::read(mount.path(&long)).unwrap_err()),
        libc::ENOENT
    );
    let too_long = format!("gbo/{}", "n".repeat(300));
    assert_eq!(
        errno_of(&std::fs::read(mount.path(&too_long)).unwrap_err()),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-openai-123"
    );
}

#[test]
fn prefix_serves_another_namespace() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    server.put_str("secret", "other/app", &[("k", "other-namespace")]);
    let mount = Mount::start(&server.addr(), &server.token(), &["--prefix", "other"]);
    assert_eq!(
        std::fs::read(mount.path("other/app/k")).unwrap(),
        b"other-namespace"
    );
    assert_eq!(
        errno_of(&std::fs::read_dir(mount.path("gbo")).unwrap_err()),
        libc::ENOENT
    );
}

#[test]
fn the_mount_is_read_only_nosuid_nodev_noexec_with_default_permissions() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    let mountpoint = std::fs::canonicalize(&mount.mountpoint).unwrap();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mountpoint.to_str().unwrap()))
        .expect("the mount is listed");
    let options: Vec<&str> = line.split(' ').nth(5).unwrap().split(',').collect();
    for wanted in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(options.contains(&wanted), "{wanted} missing: {line}");
    }
    assert!(line.contains("default_permissions"), "{line}");
    assert!(!line.contains("allow_other"), "{line}");
}

#[test]
fn extended_attributes_are_unsupported_and_asking_logs_no_warning() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    let file = std::ffi::CString::new(
        mount
            .path("gbo/llm/openai_key")
            .as_os_str()
            .as_encoded_bytes(),
    )
    .unwrap();
    let name = std::ffi::CString::new("security.selinux").unwrap();
    let mut buffer = [0u8; 64];
    for _ in 0..2 {
        // SAFETY: valid C strings and a buffer of the stated length.
        let got = unsafe {
            libc::getxattr(
                file.as_ptr(),
                name.as_ptr(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        assert_eq!(got, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EOPNOTSUPP)
        );
        // SAFETY: as above.
        let listed =
            unsafe { libc::listxattr(file.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
        assert_eq!(listed, -1);
    }
    let log = mount.log_text();
    assert!(!log.contains("Not Implemented"), "{log}");
}

#[test]
fn a_key_that_cannot_be_a_file_name_is_hidden_and_warned_about_once_without_its_value() {
    if !fuse_available() {
        return;
    }
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str(
        "secret",
        "gbo/odd",
        &[("a/b", "hidden-odd-value"), ("ok", "fine")],
    );
    // TTL 0: every access fetches again.
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "0"]);
    for _ in 0..3 {
        let names: Vec<String> = std::fs::read_dir(mount.path("gbo/odd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["ok"]);
        assert_eq!(std::fs::read(mount.path("gbo/odd/ok")).unwrap(), b"fine");
    }
    assert!(server.count("GET", "secret/data/gbo/odd") >= 3);
    let log = mount.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("not a valid file name"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("gbo/odd") && warnings[0].contains("a/b"));
    assert!(!log.contains("hidden-odd-value"));
}

/// A process kept alive for a test, killed when the test ends (even on failure).
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_exits_zero_and_unmounts_while_a_process_holds_a_file_and_its_cwd_in_the_mount() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mut mount = Mount::start(&server.addr(), &server.token(), &[]);
    let mountpoint = std::fs::canonicalize(&mount.mountpoint).unwrap();
    // A shell in the mount with a secret on its stdin, then `sleep` in its place.
    let holder = Command::new("sh")
        .args(["-c", "exec sleep 60 < gbo/llm/openai_key"])
        .current_dir(&mountpoint)
        .spawn()
        .expect("spawn holder");
    let holder = Holder(holder);
    let comm = format!("/proc/{}/comm", holder.0.id());
    assert!(common::wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&comm).is_ok_and(|name| name.trim() == "sleep")
    }));

    let status = mount.stop_within(Signal::SIGTERM, Duration::from_secs(20));
    let log = mount.log_text();
    let status = status.unwrap_or_else(|| panic!("still running 20 s after SIGTERM; log:\n{log}"));
    assert!(status.success(), "{status}; log:\n{log}");
    assert!(
        !gbo_fs::daemon::is_mount_point(&mountpoint),
        "still in mountinfo; log:\n{log}"
    );
    assert!(log.contains("still in use"), "{log}");
}

#[test]
fn isatty_and_fsync_on_secrets_answer_enotty_and_success_and_log_no_warning() {
    use std::os::fd::AsRawFd;
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    let key = mount.path("gbo/llm/openai_key");
    // Python's open() asks isatty() (ioctl TCGETS) of every file it opens.
    let script = format!("assert open({:?}).read() == 'sk-openai-123'", key);
    match Command::new("python3").args(["-c", &script]).output() {
        Ok(output) => common::assert_succeeded(&output),
        Err(error) => eprintln!("python3 part skipped: {error}"),
    }
    let file = std::fs::File::open(&key).unwrap();
    let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: an open descriptor and a termios-sized buffer, as TCGETS expects.
    let got = unsafe { libc::ioctl(file.as_raw_fd(), libc::TCGETS, termios.as_mut_ptr()) };
    assert_eq!(got, -1);
    assert_eq!(errno_of(&std::io::Error::last_os_error()), libc::ENOTTY);
    file.sync_all().expect("fsync of a secret");
    std::fs::File::open(mount.path("gbo/llm"))
        .unwrap()
        .sync_all()
        .expect("fsync of a folder");
    let log = mount.log_text();
    assert!(!log.contains("Not Implemented"), "{log}");
}

#[test]
fn uid_without_allow_other_warns_that_the_user_is_locked_out() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let locked_out = Mount::start(&server.addr(), &server.token(), &["--uid", "4242"]);
    let log = locked_out.log_text();
    assert!(
        log.contains("WARN") && log.contains("add --allow-other"),
        "{log}"
    );
    let with_allow_other = Mount::start(
        &server.addr(),
        &server.token(),
        &["--uid", "4242", "--allow-other"],
    );
    assert!(!with_allow_other.log_text().contains("add --allow-other"));
    let plain = Mount::start(&server.addr(), &server.token(), &[]);
    assert!(!plain.log_text().contains("add --allow-other"));
}

#[test]
fn mounting_over_a_non_empty_directory_warns_naming_it() {
    if !fuse_available() {
        return;
    }
    let server = botserver_layout();
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("occupied");
    std::fs::create_dir(&mountpoint).unwrap();
    std::fs::write(mountpoint.join("notes.txt"), "hidden while mounted").unwrap();
    let over_files = Mount::start_at(dir, mountpoint, &server.addr(), &server.token(), &[]);
    let log = over_files.log_text();
    let shown = std::fs::canonicalize(&over_files.mountpoint).unwrap();
    assert!(
        log.contains("not empty") && log.contains(&*shown.to_string_lossy()),
        "{log}"
    );
    let empty = Mount::start(&server.addr(), &server.token(), &[]);
    assert!(!empty.log_text().contains("not empty"));
}

#[test]
fn a_vault_that_never_answers_gets_a_mount_without_a_layout_probe_and_reads_fail_with_eio() {
    if !fuse_available() {
        return;
    }
    let (addr, requests) = common::silent_recording_listener();
    let mount = Mount::start(&addr, "never-checked", &["--vault-timeout", "1"]);
    let before_any_read = requests.lock().unwrap().clone();
    assert!(
        before_any_read.iter().any(|r| r.contains("lookup-self")),
        "{before_any_read:?}"
    );
    assert!(
        !before_any_read.iter().any(|r| r.contains("/sys/")),
        "the timed-out token check was followed by a layout probe: {before_any_read:?}"
    );
    let error = std::fs::read_dir(mount.path("gbo"))
        .and_then(|mut d| d.next().transpose())
        .unwrap_err();
    assert_eq!(errno_of(&error), libc::EIO);
}
