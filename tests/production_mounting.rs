//! Production mounting: the systemd unit, the fstab mount helper's translation of
//! mount(8) arguments into gbo-fs flags (with a fake gbo-fs on PATH), shell
//! completions, the man page and `gbo-fs policy`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{gbo_fs, run_bounded, BIN};
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer};

const LIMIT: Duration = Duration::from_secs(30);

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `gbo-fs ARGS` with no Vault settings anywhere (empty working directory).
fn gbo_fs_without_vault(args: &[&str]) -> Output {
    let workdir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(workdir.path())
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .args(args);
    run_bounded(command, LIMIT)
}

// ---------------------------------------------------------------------------------------------
// systemd unit
// ---------------------------------------------------------------------------------------------

/// `(key, value)` of every setting line of the unit.
fn unit_settings() -> Vec<(String, String)> {
    std::fs::read_to_string(repo_file("mount/gbo-fs.service"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    }
    // verify checks that ExecStart= is executable: point it at the built binary.
    let unit = std::fs::read_to_string(repo_file("mount/gbo-fs.service"))
        .unwrap()
        .replace("/usr/local/bin/gbo-fs", BIN);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gbo-fs.service");
    std::fs::write(&path, unit).unwrap();
    let mut command = Command::new("systemd-analyze");
    command.args(["verify", "--man=no"]).arg(&path);
    let output = run_bounded(command, LIMIT);
    let complaints: Vec<String> = text(&output.stderr)
        .lines()
        .filter(|l| l.contains("gbo-fs.service"))
        .map(str::to_string)
        .collect();
    assert!(
        output.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}\n{}",
        output.status,
        complaints.join("\n")
    );
}

#[test]
fn systemd_unit_is_the_issues_hardened_notify_service_with_a_capability_less_daemon() {
    let settings = unit_settings();
    let get = |key: &str| {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("Type"), ["notify"]);
    assert_eq!(get("ProtectSystem"), ["strict"]);
    assert_eq!(get("PrivateTmp"), ["yes"]);
    assert_eq!(get("NoNewPrivileges"), ["yes"]);
    assert_eq!(
        get("CapabilityBoundingSet"),
        [""],
        "the daemon keeps no capability"
    );
    assert_eq!(get("RuntimeDirectory"), ["gbo"]);
    assert_eq!(get("Restart"), ["on-failure"]);
    assert_eq!(get("DeviceAllow"), ["/dev/fuse rw"]);
    assert_eq!(get("LimitCORE"), ["0"]);
    // The hand-off: premount (outside the sandbox) stores the FUSE descriptor.
    assert_eq!(get("NotifyAccess"), ["exec"]);
    assert_eq!(get("FileDescriptorStoreMax"), ["1"]);
    assert!(
        !get("SystemCallFilter").iter().any(|f| f.contains("@mount")),
        "the daemon needs no mount syscall"
    );
    let pre = get("ExecStartPre").join(" ");
    assert!(
        pre.starts_with("+/usr/local/bin/gbo-fs premount /run/gbo/secrets --allow-other"),
        "{pre}"
    );
    let post = get("ExecStopPost").join(" ");
    assert_eq!(post, "+/usr/local/bin/gbo-fs unmount /run/gbo/secrets");
    let exec = get("ExecStart").join(" ");
    assert!(
        exec.contains("--env-file /etc/gbo/.env mount /run/gbo/secrets --allow-other --uid"),
        "{exec}"
    );
    // The flags each command line uses exist: gbo-fs parses them.
    for line in [pre.as_str(), exec.as_str(), post.as_str()] {
        let mut args: Vec<&str> = line.split_whitespace().skip(1).collect();
        args.push("--help");
        let output = gbo_fs_without_vault(&args);
        assert!(output.status.success(), "{line}: {}", text(&output.stderr));
    }
}

// ---------------------------------------------------------------------------------------------
// fstab mount helper
// ---------------------------------------------------------------------------------------------

/// A fake `gbo-fs` on PATH that records its arguments and, depending on
/// FAKE_MODE, "mounts" (adds a line to the fake mountinfo), exits, or hangs.
struct FakeGboFs {
    dir: tempfile::TempDir,
}

const FAKE_GBO_FS: &str = r#"#!/bin/sh
printf '%s\n' "$@" > "$FAKE_DIR/args"
echo $$ > "$FAKE_DIR/pid"
case "$FAKE_MODE" in
    mount)
        take_next=no
        for arg in "$@"; do
            if [ "$take_next" = yes ]; then mountpoint="$arg"; take_next=done; fi
            [ "$arg" = mount ] && [ "$take_next" = no ] && take_next=yes
        done
        printf '99 1 0:99 / %s ro,nosuid,nodev - fuse gbo-fs ro,user_id=0\n' "$mountpoint" >> "$GBO_FS_MOUNTINFO"
        exec sleep 20 ;;
    exit) exit 3 ;;
    hang) exec sleep 20 ;;
esac
"#;

impl FakeGboFs {
    fn new() -> FakeGboFs {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let fake = bin.join("gbo-fs");
        std::fs::write(&fake, FAKE_GBO_FS).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("mountinfo"), "").unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(
            dir.path().join("gbo.env"),
            "VAULT_ADDR=http://127.0.0.1:1\n",
        )
        .unwrap();
        FakeGboFs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The mountpoint as the helper resolves it (symlinks such as /tmp resolved).
    fn mountpoint(&self) -> String {
        std::fs::canonicalize(self.path("secrets"))
            .unwrap()
            .display()
            .to_string()
    }

    /// Runs the helper as mount(8) would: `mount.fuse.gbo-fs SOURCE MOUNTPOINT ARGS`.
    fn run_helper(&self, mode: &str, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut command = Command::new("sh");
        command
            .arg(repo_file("mount/mount.fuse.gbo-fs"))
            .arg(self.path("gbo.env"))
            .arg(self.path("secrets"))
            .args(args)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.path("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("FAKE_DIR", self.dir.path())
            .env("FAKE_MODE", mode)
            .env("GBO_FS_MOUNTINFO", self.path("mountinfo"))
            .env("GBO_FS_LOG", self.path("daemon.log"))
            .stdin(Stdio::null());
        for (key, value) in extra_env {
            command.env(key, value);
        }
        run_bounded(command, LIMIT)
    }

    /// The arguments the fake gbo-fs was started with.
    fn recorded_args(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("args"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn fake_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn fake_is_running(&self) -> bool {
        self.fake_pid().is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        })
    }
}

impl Drop for FakeGboFs {
    fn drop(&mut self) {
        if let Some(pid) = self.fake_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn mount_helper_translates_fstab_options_into_gbo_fs_flags_and_returns_once_mounted() {
    let fake = FakeGboFs::new();
    let output = fake.run_helper(
        "mount",
        &[],
        &[
            "-o",
            "rw,allow_other,uid=1234,gid=5678,_netdev,nofail,x-mount.mkdir=0755,prefix=gbo,\
             kv_mount=secret,kv_version=2,cache_ttl=60,default_permissions",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "", "every option is understood");
    let env_file = fake.path("gbo.env").display().to_string();
    let mountpoint = fake.mountpoint();
    assert_eq!(
        fake.recorded_args(),
        [
            "--env-file",
            env_file.as_str(),
            "--prefix",
            "gbo",
            "--kv-mount",
            "secret",
            "--kv-version",
            "2",
            "--cache-ttl",
            "60",
            "mount",
            mountpoint.as_str(),
            "--allow-other",
            "--uid",
            "1234",
            "--gid",
            "5678",
        ]
    );
    assert!(
        fake.fake_is_running(),
        "gbo-fs keeps serving after the helper returns"
    );
}

#[test]
fn mount_helper_resolves_user_and_group_names() {
    let fake = FakeGboFs::new();
    let output = fake.run_helper("mount", &[], &["-o", "uid=root,gid=root"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let args = fake.recorded_args();
    let tail: Vec<&str> = args
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["--uid", "0", "--gid", "0"]);
}

#[test]
fn mount_helper_fails_naming_the_mountpoint_when_gbo_fs_exits_early() {
    let fake = FakeGboFs::new();
    let started = Instant::now();
    let output = fake.run_helper("exit", &[], &["-o", "allow_other"]);
    assert!(!output.status.success());
    let message = text(&output.stderr);
    assert!(
        message.contains("exited") && message.contains(&fake.mountpoint()),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn mount_helper_gives_up_and_stops_gbo_fs_when_the_mount_never_appears() {
    let fake = FakeGboFs::new();
    let started = Instant::now();
    let output = fake.run_helper("hang", &[("GBO_FS_MOUNT_TIMEOUT", "1")], &[]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("not mounted within 1s"),
        "{}",
        text(&output.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        common::wait_until(Duration::from_secs(5), || !fake.fake_is_running()),
        "the helper stops the gbo-fs it started"
    );
}

#[test]
fn mount_helper_fake_mount_flag_starts_nothing() {
    let fake = FakeGboFs::new();
    let output = fake.run_helper("mount", &[], &["-f", "-o", "allow_other"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(fake.recorded_args().is_empty());
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct UnmountOnDrop(PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        common::force_unmount(&self.0);
    }
}

#[test]
fn mount_helper_mounts_the_real_daemon_and_umount_stops_it() {
    if !common::fuse_available() {
        return;
    }
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-helper")]);
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("gbo-fs")).unwrap();
    let env_file = dir.path().join("gbo.env");
    std::fs::write(
        &env_file,
        format!(
            "VAULT_ADDR={}\nVAULT_TOKEN={}\n",
            server.addr(),
            server.token()
        ),
    )
    .unwrap();
    let mountpoint = dir.path().join("secrets");
    std::fs::create_dir(&mountpoint).unwrap();
    let _unmount = UnmountOnDrop(mountpoint.clone());

    let mut command = Command::new("sh");
    command
        .arg(repo_file("mount/mount.fuse.gbo-fs"))
        .arg(&env_file)
        .arg(&mountpoint)
        .args(["-o", "rw,allow_other,uid=0,gid=0,_netdev"])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("GBO_FS_LOG", dir.path().join("daemon.log"))
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .stdin(Stdio::null());
    let output = run_bounded(command, LIMIT);
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "{}\nlog:\n{}",
        text(&output.stderr),
        log()
    );
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("gbo/llm/openai_key")).unwrap(),
        "sk-helper"
    );

    let status = Command::new("umount").arg(&mountpoint).status().unwrap();
    assert!(status.success());
    assert!(
        common::wait_until(Duration::from_secs(10), || log().contains("stopped")),
        "gbo-fs exits after umount; log:\n{}",
        log()
    );
}

#[test]
fn fstab_example_line_is_understood_by_the_helper() {
    let fstab = std::fs::read_to_string(repo_file("mount/fstab.example")).unwrap();
    let line = fstab
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .expect("an fstab line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 6, "{line}");
    assert_eq!(
        fields[2], "fuse.gbo-fs",
        "mount(8) then runs mount.fuse.gbo-fs"
    );
    assert!(
        repo_file("mount/mount.fuse.gbo-fs").exists(),
        "the helper is named after the type"
    );
    // This machine has no botserver user: root stands in for it.
    let options = fields[3].replace("botserver", "root");
    let fake = FakeGboFs::new();
    let output = fake.run_helper("mount", &[], &["-o", &options]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        "",
        "every option of the example is understood"
    );
    let args = fake.recorded_args();
    assert!(args.iter().any(|a| a == "--allow-other"), "{args:?}");
}

// ---------------------------------------------------------------------------------------------
// completions, man page, policy
// ---------------------------------------------------------------------------------------------

#[test]
fn completions_for_bash_zsh_and_fish_cover_the_subcommands_without_vault_settings() {
    for shell in ["bash", "zsh", "fish"] {
        let output = gbo_fs_without_vault(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        for word in ["gbo-fs", "mount", "migrate", "policy"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}

#[test]
fn man_page_is_roff_describing_the_mount_command() {
    let output = gbo_fs_without_vault(&["man"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let page = text(&output.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains(".TH gbo-fs 1"), "{page}");
    assert!(page.contains("mount"), "{page}");
    assert!(page.contains("migrate"), "{page}");
}

#[test]
fn policy_with_mount_and_version_flags_needs_no_vault() {
    let output = gbo_fs_without_vault(&["--kv-mount", "gbo", "--kv-version", "1", "policy"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let policy = text(&output.stdout);
    assert!(
        policy.contains("path \"gbo/*\" {\n  capabilities = [\"read\", \"list\"]\n}"),
        "{policy}"
    );

    let output = gbo_fs_without_vault(&["--kv-mount", "gbo", "--kv-version", "2", "policy"]);
    let policy = text(&output.stdout);
    assert!(policy.contains("path \"gbo/data/*\""), "{policy}");
    assert!(policy.contains("path \"gbo/metadata/*\""), "{policy}");
}

#[test]
fn policy_without_flags_detects_botservers_secret_mount() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let mut command = gbo_fs(&server.addr(), &server.token(), workdir.path());
    command.arg("policy");
    let output = run_bounded(command, LIMIT);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let policy = text(&output.stdout);
    assert!(
        policy.contains("path \"secret/data/gbo/*\" {\n  capabilities = [\"read\"]\n}"),
        "{policy}"
    );
    assert!(
        policy.contains("path \"secret/metadata/gbo/*\" {\n  capabilities = [\"list\"]\n}"),
        "{policy}"
    );
    assert!(!text(&output.stdout).contains(&server.token()));
}
