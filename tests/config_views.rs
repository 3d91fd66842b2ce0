//! config.csv views through a real mount and the `render` / `check` commands.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{errno_of, fuse_available, gbo_fs, run_bounded, wait_until, written, Mount};
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer};

const SECRETS: [&str; 3] = ["sk-view-openai", "pg-view-password", "rotated-view-key"];

fn server() -> TestVaultServer {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", SECRETS[0])]);
    server.put_str(
        "secret",
        "gbo/tables",
        &[("password", SECRETS[1]), ("port", "5432")],
    );
    server
}

/// A bots directory holding the real template of `campaign-manager` plus references.
fn bots_dir(root: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/bottemplates/campaign-manager.gbai/marketing.gbot/config.csv");
    let mut text = std::fs::read(fixture).expect("shared fixture");
    text.extend_from_slice(
        b"llm-api-key, vault:gbo/llm/openai_key \r\nDatabase Password,vault:gbo/tables/password\n",
    );
    let bots = root.join("bots");
    let bot = bots.join("campaign-manager.gbai/marketing.gbot");
    std::fs::create_dir_all(&bot).unwrap();
    std::fs::write(bot.join("config.csv"), text).unwrap();
    bots
}

/// A mount whose root `config.csv` view renders a source holding `text`; the
/// source lives in the returned directory.
fn mount_config_csv(
    server: &TestVaultServer,
    text: &str,
    extra: &[&str],
) -> (tempfile::TempDir, Mount) {
    let workspace = tempfile::tempdir().unwrap();
    let source = workspace.path().join("config.csv");
    std::fs::write(&source, text).unwrap();
    let mut args = vec!["--config-csv", source.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mount = Mount::start(&server.addr(), &server.token(), &args);
    (workspace, mount)
}

fn expected_view(source: &[u8], replacements: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from_utf8(source.to_vec()).unwrap();
    for (reference, value) in replacements {
        text = text.replace(reference, value);
    }
    text.into_bytes()
}

/// Every file under `dir` (recursively) that contains one of `needles`.
fn files_containing(dir: &Path, needles: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needles));
        } else if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            if needles.iter().any(|n| text.contains(n)) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn views_through_the_mount_follow_edits_and_rotations_and_leave_no_plaintext() {
    if !fuse_available() {
        return;
    }
    let server = server();
    let workspace = tempfile::tempdir().unwrap();
    let bots = bots_dir(workspace.path());
    let source = bots.join("campaign-manager.gbai/marketing.gbot/config.csv");
    let mut mount = Mount::start(
        &server.addr(),
        &server.token(),
        &["--bots", bots.to_str().unwrap(), "--cache-ttl", "1", "-vv"],
    );
    let view = mount.path("campaign-manager.gbai/marketing.gbot/config.csv");
    let source_bytes = std::fs::read(&source).unwrap();
    let expected = expected_view(
        &source_bytes,
        &[
            ("vault:gbo/llm/openai_key", SECRETS[0]),
            ("vault:gbo/tables/password", SECRETS[1]),
        ],
    );

    let by_cat = Command::new("cat").arg(&view).output().unwrap();
    assert!(by_cat.status.success());
    assert_eq!(by_cat.stdout, expected);
    let by_dd = Command::new("dd")
        .arg(format!("if={}", view.display()))
        .args(["bs=7", "status=none"])
        .output()
        .unwrap();
    assert_eq!(
        by_dd.stdout, expected,
        "small chunked reads give the same bytes"
    );
    assert_eq!(
        std::fs::metadata(&view).unwrap().len(),
        expected.len() as u64
    );

    // A source edit shows within a second or two.
    let mut edited = source_bytes.clone();
    edited.extend_from_slice(b"new-setting,vault:gbo/tables/port\n");
    std::fs::write(&source, &edited).unwrap();
    let with_edit = expected_view(
        &edited,
        &[
            ("vault:gbo/llm/openai_key", SECRETS[0]),
            ("vault:gbo/tables/password", SECRETS[1]),
            ("vault:gbo/tables/port", "5432"),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read(&view).ok()
            == Some(with_edit.clone())),
        "edit not reflected"
    );

    // A rotation shows within the cache TTL.
    server.put_str("secret", "gbo/llm", &[("openai_key", SECRETS[2])]);
    let rotated = expected_view(
        &edited,
        &[
            ("vault:gbo/llm/openai_key", SECRETS[2]),
            ("vault:gbo/tables/password", SECRETS[1]),
            ("vault:gbo/tables/port", "5432"),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::fs::read(&view).ok() == Some(rotated.clone())
                && std::fs::metadata(&view).map(|m| m.len()).ok() == Some(rotated.len() as u64)
        }),
        "rotation not reflected"
    );

    mount.stop_with(nix::sys::signal::Signal::SIGTERM);
    let log = mount.log_text();
    for secret in SECRETS {
        assert!(!log.contains(secret), "log leaks {secret}");
    }
    assert!(
        log.lines()
            .any(|line| line.contains("TRACE") && line.contains("operation=\"lookup\"")),
        "-vv logs each file operation at trace level"
    );
    let leaks = files_containing(workspace.path(), &SECRETS);
    assert!(leaks.is_empty(), "plaintext written to disk: {leaks:?}");
    let leaks = files_containing(mount.dir.path(), &SECRETS);
    assert!(leaks.is_empty(), "plaintext written to disk: {leaks:?}");
}

#[test]
fn an_unresolvable_reference_fails_closed_with_eio_and_a_log_line_naming_it() {
    if !fuse_available() {
        return;
    }
    let server = server();
    let (workspace, mount) = mount_config_csv(
        &server,
        "name,value\nok,vault:gbo/llm/openai_key\nbroken,vault:gbo/llm/missing_key\nfake,vault:gbo/x\rINFO all good\u{1b}[2K/k\n",
        &[],
    );
    let source = workspace.path().join("config.csv");
    let error = std::fs::read(mount.path("config.csv")).unwrap_err();
    assert_eq!(errno_of(&error), libc::EIO);
    let log = mount.log_text();
    assert!(
        log.contains("config.csv")
            && log.contains("line=3")
            && log.contains("vault:gbo/llm/missing_key"),
        "{log}"
    );
    assert!(!log.contains(SECRETS[0]));
    // A reference holding a carriage return or a terminal escape is logged escaped,
    // so it cannot fake a log line.
    assert!(log.contains("line=4"), "{log}");
    assert!(!log.contains('\r') && !log.contains('\u{1b}'), "{log:?}");

    let empty = Mount::start(
        &server.addr(),
        &server.token(),
        &[
            "--config-csv",
            source.to_str().unwrap(),
            "--missing-reference",
            "empty",
        ],
    );
    assert_eq!(
        std::fs::read(empty.path("config.csv")).unwrap(),
        format!("name,value\nok,{}\nbroken,\nfake,\n", SECRETS[0]).as_bytes()
    );
}

#[test]
fn render_prints_the_view_or_exits_2_naming_each_unresolvable_reference() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "name,value\nk, vault:gbo/llm/openai_key\n").unwrap();
    let mut render = gbo_fs(&server.addr(), &server.token(), dir.path());
    render.arg("render").arg(&good);
    let output = run_bounded(render, Duration::from_secs(30));
    assert!(output.status.success());
    assert_eq!(
        output.stdout,
        format!("name,value\nk, {}\n", SECRETS[0]).as_bytes()
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "name,value\na,vault:gbo/llm/openai_key\nb,vault:gbo/nope/k\nc,vault:gbo/llm/x\n",
    )
    .unwrap();
    let mut render = gbo_fs(&server.addr(), &server.token(), dir.path());
    render.arg("render").arg(&bad);
    let output = run_bounded(render, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "fails closed: nothing printed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains("line 3") && lines[0].contains("vault:gbo/nope/k"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("line 4") && lines[1].contains("vault:gbo/llm/x"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRETS[0]));
}

#[test]
fn check_lists_every_reference_with_ok_or_a_reason_and_never_a_value() {
    let server = server();
    let workspace = tempfile::tempdir().unwrap();
    let bots = bots_dir(workspace.path());
    let broken = bots.join("broken.gbai/broken.gbot");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("config.csv"),
        "name,value\nk,vault:gbo/llm/nope\n",
    )
    .unwrap();
    let mut check = gbo_fs(&server.addr(), &server.token(), workspace.path());
    check.arg("check").arg("--bots").arg(&bots);
    let output = run_bounded(check, Duration::from_secs(30));
    assert!(!output.status.success(), "one reference fails");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("vault:gbo/llm/openai_key ok"), "{stdout}");
    assert!(stdout.contains("vault:gbo/tables/password ok"), "{stdout}");
    assert!(
        stdout.contains("broken.gbot/config.csv:2: k vault:gbo/llm/nope no such key"),
        "{stdout}"
    );
    for secret in SECRETS {
        assert!(!stdout.contains(secret));
    }

    std::fs::remove_dir_all(bots.join("broken.gbai")).unwrap();
    let mut check = gbo_fs(&server.addr(), &server.token(), workspace.path());
    check.arg("check").arg("--bots").arg(&bots);
    assert!(run_bounded(check, Duration::from_secs(30)).status.success());
}

/// Runs `gbo-fs ARGS` in `dir` with `server`'s settings, or with no Vault
/// settings at all when `server` is `None`.
fn run_in(dir: &Path, server: Option<&TestVaultServer>, args: &[&str]) -> Output {
    let mut command = match server {
        Some(server) => gbo_fs(&server.addr(), &server.token(), dir),
        None => {
            let mut command = gbo_fs("", "", dir);
            command.env_remove("VAULT_ADDR").env_remove("VAULT_TOKEN");
            command
        }
    };
    command.args(args);
    run_bounded(command, Duration::from_secs(30))
}

#[test]
fn check_names_the_setting_of_a_malformed_reference() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let odd = written(
        dir.path(),
        "odd.csv",
        "name,value\nllm-api-key, vault:gbo \n",
    );
    let output = run_in(dir.path(), Some(&server), &["check", &odd]);
    assert_eq!(output.status.code(), Some(1), "a malformed reference fails");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{odd}:2: llm-api-key vault:gbo malformed reference\n")
    );
}

#[test]
fn check_reads_a_file_config_csv_and_bots_dir_together_and_refuses_a_missing_or_empty_bots_dir() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let bots = bots_dir(dir.path());
    let bots = bots.to_str().unwrap();
    let file = written(dir.path(), "own.csv", "name,value\nk,vault:gbo/llm/nope\n");
    let shown = written(dir.path(), "shown.csv", "s,vault:gbo/tables/port\n");
    let args = ["check", "--bots", bots, "--config-csv", &shown, &file];
    let output = run_in(dir.path(), Some(&server), &args);
    assert_eq!(output.status.code(), Some(1), "the file's reference fails");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first_two = format!(
        "{file}:2: k vault:gbo/llm/nope no such key\n{shown}:1: s vault:gbo/tables/port ok\n"
    );
    assert!(stdout.starts_with(&first_two), "{stdout}");
    assert!(
        stdout.contains("marketing.gbot/config.csv:")
            && stdout.contains("vault:gbo/llm/openai_key ok"),
        "the bots are checked too: {stdout}"
    );

    let missing = dir.path().join("no-bots");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["check", "--bots", missing],
        vec!["check", "--bots", missing, &file],
    ] {
        let output = run_in(dir.path(), Some(&server), &args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr,
            format!("gbo-fs: --bots {missing}: no such file or directory\n"),
            "{args:?}"
        );
    }

    // A bots directory with no bot in it checks nothing: an error, not silence.
    let empty = dir.path().join("empty-bots");
    std::fs::create_dir(&empty).unwrap();
    let empty = empty.to_str().unwrap();
    let output = run_in(dir.path(), Some(&server), &["check", "--bots", empty]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "gbo-fs: --bots {empty}: no bot config.csv in it \
             (expected <name>.gbai/<bot>.gbot/config.csv)\n"
        )
    );
}

#[test]
fn render_and_check_of_a_file_without_references_need_no_vault() {
    let dir = tempfile::tempdir().unwrap();
    let text = "# bot settings\r\nname,value\r\nllm-model, gpt-4o\r\n,\r\nport,5432";
    let plain = written(dir.path(), "plain.csv", text);
    let render = run_in(dir.path(), None, &["render", &plain]);
    let stderr = String::from_utf8_lossy(&render.stderr);
    assert_eq!(render.status.code(), Some(0), "{stderr}");
    assert_eq!(render.stdout, text.as_bytes(), "printed as it is");
    let check = run_in(dir.path(), None, &["check", &plain]);
    assert_eq!(check.status.code(), Some(0));
    assert!(check.stdout.is_empty() && check.stderr.is_empty());

    let server = server();
    for command in ["render", "check"] {
        run_in(dir.path(), Some(&server), &[command, &plain]);
    }
    assert_eq!(server.total_requests(), 0, "Vault is not contacted");

    let referencing = written(dir.path(), "ref.csv", "k,vault:gbo/llm/openai_key\n");
    for command in ["render", "check"] {
        let output = run_in(dir.path(), None, &[command, &referencing]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("VAULT_ADDR is not set"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn a_reader_midway_through_a_view_when_a_reference_rotates_reads_one_whole_rendering() {
    if !fuse_available() {
        return;
    }
    use std::io::Read;
    let server = server();
    let (_workspace, mount) = mount_config_csv(
        &server,
        "name,value\nllm-api-key,vault:gbo/llm/openai_key\n",
        &["--cache-ttl", "1"],
    );
    let view = mount.path("config.csv");
    let before = format!("name,value\nllm-api-key,{}\n", SECRETS[0]).into_bytes();
    let after = format!("name,value\nllm-api-key,{}-and-longer\n", SECRETS[2]).into_bytes();
    let mut reader = std::fs::File::open(&view).unwrap();
    let mut head = [0u8; 5];
    reader.read_exact(&mut head).unwrap();

    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", &format!("{}-and-longer", SECRETS[2]))],
    );
    let new_opens_see_it = wait_until(Duration::from_secs(10), || {
        std::fs::read(&view).ok().as_deref() == Some(&after[..])
    });
    assert!(new_opens_see_it, "the rotation never reached a new open");

    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!([&head[..], &rest].concat(), before, "one whole rendering");
    assert_eq!(reader.metadata().unwrap().len(), before.len() as u64);
}

/// Runs `operation` on a thread of its own and fails the test if it does not
/// finish within 20 s (a hung mount would otherwise hang the test for good).
fn within_20s<T: Send + 'static>(what: &str, operation: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(operation());
    });
    finished
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not answer within 20 s: the mount hangs"))
}

/// The sorted names in `dir`, failing the test if listing hangs.
fn names_within_20s(dir: PathBuf) -> Vec<String> {
    let mut names: Vec<String> = within_20s("ls of the mount", move || {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    });
    names.sort();
    names
}

/// A scratch directory holding `bots/<bot>/config.csv` (one reference), and the
/// paths of a mountpoint (not yet created) and of the bots directory in it.
fn workspace_with_bot(bot: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Searchable by a view owner other than root (--uid).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mountpoint = dir.path().join("secrets");
    let bots = dir.path().join("bots");
    let bot = bots.join(bot);
    std::fs::create_dir_all(&bot).unwrap();
    std::fs::write(
        bot.join("config.csv"),
        "name,value\nk,vault:gbo/llm/openai_key\n",
    )
    .unwrap();
    (dir, mountpoint, bots)
}

#[test]
fn view_paths_leading_into_the_mount_itself_are_refused_and_nothing_hangs() {
    if !fuse_available() {
        return;
    }
    let server = server();
    let (dir, mountpoint, bots) = workspace_with_bot("good.gbai/good.gbot");
    // A package that is the mount, and a bot whose config.csv is a file in it.
    std::os::unix::fs::symlink(&mountpoint, bots.join("loop.gbai")).unwrap();
    let sneaky = bots.join("sneaky.gbai/sneaky.gbot");
    std::fs::create_dir_all(&sneaky).unwrap();
    std::os::unix::fs::symlink(
        mountpoint.join("gbo/llm/openai_key"),
        sneaky.join("config.csv"),
    )
    .unwrap();
    let config_in_mount = mountpoint.join("good.gbai/good.gbot/config.csv");
    let args = [
        "--bots",
        bots.to_str().unwrap(),
        "--config-csv",
        config_in_mount.to_str().unwrap(),
    ];
    let mount = Mount::start_at(dir, mountpoint, &server.addr(), &server.token(), &args);

    assert_eq!(names_within_20s(mount.path("")), ["gbo", "good.gbai"]);
    let key = mount.path("gbo/llm/openai_key");
    assert_eq!(
        within_20s("a key file", move || std::fs::read(key).unwrap()),
        SECRETS[0].as_bytes()
    );
    let view = mount.path("good.gbai/good.gbot/config.csv");
    let rendered = within_20s("the good view", move || std::fs::read(view).unwrap());
    assert_eq!(
        rendered,
        format!("name,value\nk,{}\n", SECRETS[0]).as_bytes()
    );
    for refused in ["loop.gbai", "sneaky.gbai", "config.csv"] {
        let path = mount.path(refused);
        let found = within_20s(refused, move || std::fs::metadata(path).map(|_| ()));
        assert_eq!(errno_of(&found.unwrap_err()), libc::ENOENT, "{refused}");
    }
    assert!(
        mount
            .log_text()
            .contains("--config-csv leads into the gbo-fs mount itself"),
        "{}",
        mount.log_text()
    );
}

#[test]
fn check_reports_every_source_even_past_one_it_cannot_read_and_escapes_control_characters() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let bots = dir.path().join("bots");
    let big = bots.join("a.gbai/a.gbot");
    std::fs::create_dir_all(&big).unwrap();
    let file = std::fs::File::create(big.join("config.csv")).unwrap();
    file.set_len(5 << 20).unwrap();
    let bad = bots.join("z.gbai/z.gbot");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("config.csv"),
        "name,value\nk\u{1b}[31m,vault:gbo/x\rINFO all good/k\nllm,vault:gbo/llm/openai_key\n",
    )
    .unwrap();
    let output = run_in(
        dir.path(),
        Some(&server),
        &["check", "--bots", bots.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("a.gbai/a.gbot/config.csv") && stdout.contains("larger than 4 MiB"),
        "{stdout}"
    );
    assert!(
        stdout.contains("z.gbai/z.gbot/config.csv:3: llm vault:gbo/llm/openai_key ok"),
        "the source after the unreadable one is checked: {stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\r'),
        "control characters reach the terminal: {stdout:?}"
    );
    assert!(stdout.contains("k\\u{1b}[31m"), "{stdout}");
    assert!(!stdout.contains(SECRETS[0]));
}

#[test]
fn a_bind_mount_of_the_mount_or_a_package_swapped_for_a_link_into_it_hangs_nothing() {
    if !fuse_available() {
        return;
    }
    let server = server();
    let (dir, mountpoint, bots) = workspace_with_bot("pkg.gbai/b.gbot");
    let bind = dir.path().join("bind");
    std::fs::create_dir_all(&bind).unwrap();
    // The view owner is not root, as in production: sources and listings are
    // opened on the thread that holds the owner's identity.
    let args = [
        "--bots",
        bots.to_str().unwrap(),
        "--uid",
        "65534",
        "--allow-other",
    ];
    let mount = Mount::start_at(dir, mountpoint, &server.addr(), &server.token(), &args);
    let bound = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&mount.mountpoint)
        .arg(&bind)
        .status()
        .unwrap();
    assert!(bound.success(), "mount --bind");
    /// Detaches the bind mount however the test ends.
    struct Unbind(PathBuf);
    impl Drop for Unbind {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unbind = Unbind(bind.clone());

    // A package that is the mount reached through the bind mount.
    std::os::unix::fs::symlink(&bind, bots.join("evil.gbai")).unwrap();
    assert_eq!(names_within_20s(mount.path("")), ["gbo", "pkg.gbai"]);

    // A package looked up, then swapped for a link to a bot inside the mount (old.gbai
    // is the same package, renamed): listing it again through a descriptor opened
    // before answers, and another view read meanwhile is not held up.
    let package = std::fs::File::open(mount.path("pkg.gbai")).unwrap();
    assert_eq!(names_within_20s(mount.path("pkg.gbai")), ["b.gbot"]);
    std::fs::rename(bots.join("pkg.gbai"), bots.join("old.gbai")).unwrap();
    std::os::unix::fs::symlink(
        mount.mountpoint.join("old.gbai/b.gbot"),
        bots.join("pkg.gbai"),
    )
    .unwrap();
    let held = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&package)
    );
    let by_name = mount.path("pkg.gbai");
    let lister = std::thread::spawn(move || {
        let _ = std::fs::read_dir(by_name).map(|e| e.count());
        std::fs::read_dir(held).map(|e| e.count())
    });
    std::thread::sleep(Duration::from_millis(200));
    let other_view = mount.path("old.gbai/b.gbot/config.csv");
    let rendered = within_20s("another view", move || std::fs::read(other_view));
    assert_eq!(
        rendered.unwrap(),
        format!("name,value\nk,{}\n", SECRETS[0]).as_bytes()
    );
    let listed = within_20s("ls of the swapped package", move || lister.join().unwrap());
    assert!(matches!(listed, Ok(0) | Err(_)), "{listed:?}");
    let key = mount.path("gbo/llm/openai_key");
    assert_eq!(
        within_20s("a key file", move || std::fs::read(key).unwrap()),
        SECRETS[0].as_bytes()
    );
    drop(package);
    // The swapped package was refused before any open followed it into the mount
    // (that open would have held the owner's thread until its 5 s timeout).
    assert!(
        !mount.log_text().contains("takes over"),
        "{}",
        mount.log_text()
    );
}
