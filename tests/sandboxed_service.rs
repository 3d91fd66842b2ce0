//! The sandboxed service: `gbo-fs premount` mounts and hands the FUSE descriptor
//! to systemd, a capability-less `gbo-fs mount` in a private mount namespace
//! serves it, `gbo-fs unmount` detaches it. Once with a stand-in for systemd's
//! notify socket, once under a real systemd running mount/gbo-fs.service.

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{available_or_skip, force_unmount, fuse_available, run_bounded, wait_until, BIN};
use gbo_fs::daemon::{fs_type_in_mountinfo, is_mount_point, mounted_fs_type};
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

const LIMIT: Duration = Duration::from_secs(30);
const SECRET: &str = "sk-sandboxed-4242";

fn vault_with_llm_secret() -> TestVaultServer {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", SECRET)]);
    server
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One datagram received on the stand-in notify socket.
struct Notification {
    state: String,
    fds: Vec<OwnedFd>,
}

/// Stands in for systemd's notify socket: records every datagram with the
/// descriptors it carries, and answers BARRIER=1 by closing the barrier pipe.
struct FakeNotifySocket {
    path: PathBuf,
    received: mpsc::Receiver<Notification>,
}

impl FakeNotifySocket {
    fn bind(dir: &Path) -> FakeNotifySocket {
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (sender, received) = mpsc::channel();
        std::thread::spawn(move || loop {
            let mut buffer = [0u8; 4096];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let message = match recvmsg::<()>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(message) => message,
                Err(nix::errno::Errno::EAGAIN) => continue,
                Err(_) => return,
            };
            let mut fds = Vec::new();
            for control in message.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(raw) = control {
                    // SAFETY: the kernel just installed these descriptors for us.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            let length = message.bytes;
            let state = text(&buffer[..length]);
            if state == "BARRIER=1" {
                drop(fds);
                continue;
            }
            if sender.send(Notification { state, fds }).is_err() {
                return;
            }
        });
        FakeNotifySocket { path, received }
    }

    fn all(&self) -> Vec<Notification> {
        self.received.try_iter().collect()
    }
}

fn premount(mountpoint: &Path, notify_socket: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(["premount", "--allow-other"])
        .arg(mountpoint)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    if let Some(path) = notify_socket {
        command.env("NOTIFY_SOCKET", path);
    }
    run_bounded(command, LIMIT)
}

/// `gbo-fs mount` as the unit runs it: its own mount namespace (slave, as
/// systemd makes it), a private /tmp, a read-only root, no capabilities, and
/// the FUSE descriptor passed as fd 3 with LISTEN_FDS.
fn spawn_sandboxed_daemon(
    server: &TestVaultServer,
    mountpoint: &Path,
    device: &OwnedFd,
    log: &Path,
) -> Child {
    let script = r#"
        exec 9<"$0"                     # the binary stays reachable once /tmp is private
        mount -t tmpfs -o mode=1777 gbo-fs-private-tmp /tmp || exit 90
        mount -o remount,bind,ro / || exit 91
        export LISTEN_PID=$$
        exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs \
            /proc/self/fd/9 mount "$1" --allow-other --uid 65534 --gid 65534
    "#;
    let raw = device.as_raw_fd();
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "slave",
            "--",
            "sh",
            "-c",
            script,
            BIN,
        ])
        .arg(mountpoint)
        .env("VAULT_ADDR", server.addr())
        .env("VAULT_TOKEN", server.token())
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "gbo-fs-fuse")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    // SAFETY: dup2/fcntl are async-signal-safe; fd 3 is where LISTEN_FDS starts.
    unsafe {
        command.pre_exec(move || {
            if raw == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().expect("spawn unshare")
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

fn mount_namespace(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

#[test]
fn premount_hands_the_mount_to_systemd_and_a_capability_less_daemon_in_a_private_namespace_serves_it(
) {
    if !fuse_available() {
        return;
    }
    let server = vault_with_llm_secret();
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("secrets");
    let notify = FakeNotifySocket::bind(dir.path());

    let output = premount(&mountpoint, Some(&notify.path));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mountpoint = std::fs::canonicalize(&mountpoint).unwrap();
    assert_eq!(
        mounted_fs_type(&mountpoint).as_deref(),
        Some("fuse.gbo-fs"),
        "premount mounted in the caller's namespace"
    );
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table
        .lines()
        .find(|l| l.contains(&format!(" {} ", mountpoint.display())))
        .unwrap();
    for option in [
        "ro,",
        "nosuid",
        "nodev",
        "noexec",
        "default_permissions",
        "allow_other",
    ] {
        assert!(line.contains(option), "{option} missing: {line}");
    }

    // systemd saw: drop any old descriptor of that name, store this one.
    let mut notifications = notify.all();
    assert_eq!(
        notifications.len(),
        2,
        "{:?}",
        notifications.iter().map(|n| &n.state).collect::<Vec<_>>()
    );
    assert_eq!(
        notifications[0].state,
        "FDSTOREREMOVE=1\nFDNAME=gbo-fs-fuse"
    );
    assert!(notifications[0].fds.is_empty());
    assert_eq!(notifications[1].state, "FDSTORE=1\nFDNAME=gbo-fs-fuse");
    let device = notifications[1].fds.pop().expect("the FUSE descriptor");
    assert!(gbo_fs::premount::is_fuse_device(&device));

    let log = dir.path().join("daemon.log");
    let mut daemon = spawn_sandboxed_daemon(&server, &mountpoint, &device, &log);
    drop(device);
    let path = mountpoint.join("gbo/llm/openai_key");
    let served = wait_until(LIMIT, || std::fs::read(&path).is_ok());
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        served,
        "the mount never answered; daemon log:\n{}",
        log_text()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), SECRET);

    // The daemon serving it is sandboxed: no capability, another mount namespace.
    let pid = daemon.id();
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapBnd:"), "0000000000000000");
    assert_ne!(mount_namespace(&pid.to_string()), mount_namespace("self"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_for_exit(&mut daemon, LIMIT).expect("the daemon stops on SIGTERM");
    assert!(status.success(), "{status}; log:\n{}", log_text());
    assert!(!log_text().contains(SECRET), "the log holds the secret");

    // It could not unmount (no capability): ExecStopPost's `gbo-fs unmount` does.
    assert!(is_mount_point(&mountpoint));
    let mut unmount = Command::new(BIN);
    unmount.arg("unmount").arg(&mountpoint);
    let output = run_bounded(unmount, LIMIT);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!is_mount_point(&mountpoint));
    force_unmount(&mountpoint);
}

#[test]
fn premount_outside_systemd_refuses_and_mounts_nothing() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("secrets");
    let output = premount(&mountpoint, None);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("NOTIFY_SOCKET") && stderr.contains("ExecStartPre=+"),
        "{stderr}"
    );
    assert!(!mountpoint.exists() || !is_mount_point(&std::fs::canonicalize(&mountpoint).unwrap()));
}

#[test]
fn premount_unmounts_again_when_systemd_does_not_take_the_descriptor() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("secrets");
    let output = premount(&mountpoint, Some(&dir.path().join("no-such-socket")));
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("did not take the descriptor") && stderr.contains("secrets"),
        "{stderr}"
    );
    let mountpoint = std::fs::canonicalize(&mountpoint).unwrap();
    assert!(!is_mount_point(&mountpoint), "the mount was left behind");
}

#[test]
fn unmount_detaches_only_gbo_fs_mounts_and_accepts_an_empty_mountpoint() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unmount = |path: &Path| {
        let mut command = Command::new(BIN);
        command.arg("unmount").arg(path).env_remove("RUST_LOG");
        run_bounded(command, LIMIT)
    };

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = unmount(&empty);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing mounted"));

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    nix::mount::mount(
        Some("gbo-fs-test"),
        &other,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let output = unmount(&other);
    let still_mounted = is_mount_point(&other);
    let _ = nix::mount::umount2(&other, nix::mount::MntFlags::MNT_DETACH);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("other") && stderr.contains("tmpfs") && stderr.contains("left alone"),
        "{stderr}"
    );
    assert!(
        still_mounted,
        "unmount removed a filesystem that is not gbo-fs"
    );
}

// ---------------------------------------------------------------------------------------------
// Under a real systemd
// ---------------------------------------------------------------------------------------------

const SYSTEMD: &str = "/lib/systemd/systemd";

/// True when a systemd binary can be booted here; skips otherwise, or fails
/// when GBO_FS_REQUIRE_SYSTEMD=1 (as in CI).
fn systemd_available() -> bool {
    let available = Path::new(SYSTEMD).exists()
        && Command::new("unshare")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    available_or_skip(available, "GBO_FS_REQUIRE_SYSTEMD", SYSTEMD)
}

/// A systemd booted as PID 1 of fresh PID, mount, UTS and IPC namespaces, in
/// cgroups of its own, starting only the units the test writes. Killed (with
/// everything it started) and its cgroups removed on drop.
struct BootedSystemd {
    launcher: Child,
    cgroup: String,
    dir: PathBuf,
}

impl BootedSystemd {
    /// Boots systemd with the shipped unit (paths adapted) plus `extra_units`
    /// (name, text), starting `gbo-test.target`.
    fn boot(dir: &Path, server: &TestVaultServer, extra_units: &[(&str, String)]) -> BootedSystemd {
        let units = dir.join("units");
        std::fs::create_dir_all(units.join("gbo-fs.service.d")).unwrap();
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("mount/gbo-fs.service"),
        )
        .unwrap()
        .replace("/usr/local/bin/gbo-fs", "/run/gbo-test/gbo-fs")
        .replace("/etc/gbo/.env", "/run/gbo-test/.env")
        .replace("--uid 1000 --gid 1000", "--uid 65534 --gid 65534");
        std::fs::write(units.join("gbo-fs.service"), shipped).unwrap();
        // Test-only: start nothing of the host's boot (no sysinit, no tmpfiles)
        // and keep the daemon's output in a file.
        std::fs::write(
            units.join("gbo-fs.service.d/test.conf"),
            format!(
                "[Unit]\nDefaultDependencies=no\n[Service]\nStandardOutput=append:{}\nStandardError=inherit\n",
                dir.join("gbo-fs.log").display()
            ),
        )
        .unwrap();
        for (name, text) in extra_units {
            std::fs::write(units.join(name), text).unwrap();
        }
        std::fs::write(
            dir.join(".env"),
            format!(
                "VAULT_ADDR={}\nVAULT_TOKEN={}\n",
                server.addr(),
                server.token()
            ),
        )
        .unwrap();
        let cgroup = format!("gbo-fs-test-{}", std::process::id());
        let script = r#"
            set -e
            for hierarchy in /sys/fs/cgroup/*/; do
                mkdir -p "$hierarchy$CGROUP" 2>/dev/null && echo 0 > "$hierarchy$CGROUP/cgroup.procs" 2>/dev/null || true
            done
            mount -t tmpfs -o mode=0755 gbo-test-run /run
            mkdir -p /run/gbo-test
            cp "$BIN" /run/gbo-test/gbo-fs
            install -m 0600 "$DIR/.env" /run/gbo-test/.env
            mount -t tmpfs -o mode=0755 gbo-test-units /etc/systemd/system
            cp -r "$DIR/units/." /etc/systemd/system/
            for unit in sysinit.target basic.target network-online.target \
                        systemd-tmpfiles-setup.service systemd-tmpfiles-clean.timer; do
                ln -sf /dev/null "/etc/systemd/system/$unit"
            done
            exec "$SYSTEMD" --system --unit=gbo-test.target --log-target=null --show-status=no
        "#;
        let launcher = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--propagation",
                "private",
                "--uts",
                "--ipc",
                "--mount-proc",
                "sh",
                "-c",
                script,
            ])
            .env("CGROUP", &cgroup)
            .env("BIN", BIN)
            .env("DIR", dir)
            .env("SYSTEMD", SYSTEMD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("boot.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn unshare");
        BootedSystemd {
            launcher,
            cgroup,
            dir: dir.to_path_buf(),
        }
    }

    /// systemd's PID as seen from here (the launcher's child).
    fn pid(&self) -> Option<u32> {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.launcher.id()))
                .ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// Runs `command` inside systemd's namespaces.
    fn run(&self, command: &[&str]) -> std::process::Output {
        let pid = self.pid().expect("systemd is running").to_string();
        let mut nsenter = Command::new("nsenter");
        nsenter
            .args(["-t", &pid, "-m", "-p", "-u", "-i", "--"])
            .args(command);
        run_bounded(nsenter, LIMIT)
    }

    fn property(&self, unit: &str, name: &str) -> String {
        let output = self.run(&["systemctl", "show", "-p", name, "--value", unit]);
        text(&output.stdout).trim().to_string()
    }

    fn mounted_in_systemds_namespace(&self, path: &str) -> Option<String> {
        let pid = self.pid()?;
        let table = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
        fs_type_in_mountinfo(&table, Path::new(path))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gbo-fs.log")).unwrap_or_default()
    }
}

impl Drop for BootedSystemd {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // Killing PID 1 of a PID namespace kills every process in it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.launcher.kill();
        let _ = wait_for_exit(&mut self.launcher, LIMIT);
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for hierarchy in hierarchies.flatten() {
            let root = hierarchy.path().join(&self.cgroup);
            if root.is_dir() {
                // Emptied by the kill above; removed deepest first (rmdir only).
                wait_until(Duration::from_secs(5), || {
                    remove_cgroup_tree(&root);
                    !root.exists()
                });
            }
        }
    }
}

fn remove_cgroup_tree(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

#[test]
fn shipped_unit_under_systemd_is_sandboxed_yet_a_sandboxed_botserver_reads_its_secret_and_a_crash_is_recovered(
) {
    if !fuse_available() || !systemd_available() {
        return;
    }
    let server = vault_with_llm_secret();
    let dir = tempfile::tempdir().unwrap();
    let consumer_output = dir.path().join("botserver.out");
    // botserver as the README's unit would have it: another user, sandboxed too.
    let botserver = format!(
        "[Unit]\nDefaultDependencies=no\nRequires=gbo-fs.service\nAfter=gbo-fs.service\n\
         [Service]\nType=oneshot\nUser=nobody\nProtectSystem=strict\nPrivateTmp=yes\n\
         StandardOutput=file:{}\nStandardError=inherit\n\
         ExecStart=/bin/cat /run/gbo/secrets/gbo/llm/openai_key\n",
        consumer_output.display()
    );
    let target =
        "[Unit]\nDefaultDependencies=no\nRequires=botserver.service\nAfter=botserver.service\n"
            .to_string();
    let systemd = BootedSystemd::boot(
        dir.path(),
        &server,
        &[
            ("botserver.service", botserver),
            ("gbo-test.target", target),
        ],
    );
    let boot_log = || std::fs::read_to_string(dir.path().join("boot.log")).unwrap_or_default();
    let read_by_botserver = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&consumer_output).is_ok_and(|s| !s.is_empty())
    });
    assert!(
        read_by_botserver,
        "botserver.service never read the secret\nboot: {}\ngbo-fs: {}\nunits: {}",
        boot_log(),
        systemd.log(),
        text(
            &systemd
                .run(&["systemctl", "status", "--no-pager", "gbo-fs", "botserver"])
                .stdout
        )
    );
    assert_eq!(std::fs::read_to_string(&consumer_output).unwrap(), SECRET);

    // The mount lives in the host's (here: systemd's) namespace, the daemon in
    // a sandbox of its own with no capability.
    assert_eq!(
        systemd
            .mounted_in_systemds_namespace("/run/gbo/secrets")
            .as_deref(),
        Some("fuse.gbo-fs")
    );
    assert_eq!(systemd.property("gbo-fs", "ActiveState"), "active");
    let main_pid_in_namespace = systemd.property("gbo-fs", "MainPID");
    let daemon_pid = find_pid_by_cmdline("--env-file /run/gbo-test/.env").expect("the daemon runs");
    assert_ne!(main_pid_in_namespace, "0");
    assert_eq!(status_field(daemon_pid, "CapEff:"), "0000000000000000");
    let systemd_pid = systemd.pid().unwrap().to_string();
    assert_ne!(
        mount_namespace(&daemon_pid.to_string()),
        mount_namespace(&systemd_pid),
        "the daemon runs in a mount namespace of its own (ProtectSystem=, PrivateTmp=)"
    );

    // A crash: systemd restarts it (Restart=on-failure), the stale mount is
    // detached by ExecStopPost and a fresh one serves again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = wait_until(Duration::from_secs(30), || {
        find_pid_by_cmdline("--env-file /run/gbo-test/.env").is_some_and(|pid| pid != daemon_pid)
            && systemd.property("gbo-fs", "ActiveState") == "active"
    });
    assert!(restarted, "not restarted; gbo-fs log:\n{}", systemd.log());
    let reread = systemd.run(&["cat", "/run/gbo/secrets/gbo/llm/openai_key"]);
    assert_eq!(text(&reread.stdout), SECRET, "{}", text(&reread.stderr));

    // A clean stop leaves no mount behind.
    let stop = systemd.run(&["systemctl", "stop", "gbo-fs"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert_eq!(
        systemd.mounted_in_systemds_namespace("/run/gbo/secrets"),
        None
    );
    assert_eq!(systemd.property("gbo-fs", "ActiveState"), "inactive");
    assert!(
        !systemd.log().contains(SECRET),
        "the daemon's log holds the secret"
    );
}

/// The PID (as seen here) of the process whose command line contains `needle`.
fn find_pid_by_cmdline(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| text(&cmdline).replace('\0', " ").contains(needle))
        })
}
