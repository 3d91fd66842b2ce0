//! The `gbo-fs get` / `ls` commands, settings errors and how every command
//! meets a closed stdout, run as a user would.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{
    dir_with_old_env, exit_and_output, gbo_fs, run_bounded, run_with_closed_stdout,
    silent_listener, written, BIN,
};
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer};

const LIMIT: Duration = Duration::from_secs(30);

fn seeded() -> TestVaultServer {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", "sk-cli-1"), ("anthropic_key", "sk-cli-2")],
    );
    server.put_str("secret", "gbo/bots/mybot", &[("api_key", "k")]);
    server
}

/// The lines gbo-fs printed on stderr as errors (log lines aside).
fn error_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.starts_with("gbo-fs: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn get_prints_exactly_the_value_and_ls_lists_entries() {
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs(&server.addr(), &server.token(), dir.path());
    get.args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"sk-cli-1");

    let mut ls = gbo_fs(&server.addr(), &server.token(), dir.path());
    ls.args(["ls", "gbo"]);
    let output = run_bounded(ls, LIMIT);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "bots/\nllm/\n");
    let mut ls = gbo_fs(&server.addr(), &server.token(), dir.path());
    ls.args(["ls", "gbo/llm"]);
    let output = run_bounded(ls, LIMIT);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "anthropic_key\nopenai_key\n"
    );
}

#[test]
fn get_of_a_missing_key_fails_naming_the_path() {
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs(&server.addr(), &server.token(), dir.path());
    get.args(["get", "gbo/llm/nope"]);
    let output = run_bounded(get, LIMIT);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gbo/llm/nope") && stderr.contains("no such file"),
        "{stderr}"
    );
}

#[test]
fn settings_come_from_a_dotenv_file_in_the_working_directory() {
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "# host settings\nVAULT_ADDR={}\nVAULT_TOKEN={}\nDATABASE_URL=ignored\n",
            server.addr(),
            server.token()
        ),
    )
    .unwrap();
    let mut get = std::process::Command::new(BIN);
    get.current_dir(dir.path())
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .args(["get", "gbo/bots/mybot/api_key"]);
    let output = run_bounded(get, LIMIT);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"k");
}

#[test]
fn a_malformed_env_file_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("host.env");
    std::fs::write(
        &env_file,
        "VAULT_ADDR=http://127.0.0.1:1\nthis-is-not-an-assignment\n",
    )
    .unwrap();
    let mut get = std::process::Command::new(BIN);
    get.current_dir(dir.path())
        .arg("--env-file")
        .arg(&env_file)
        .args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("host.env:2"), "{stderr}");
    assert!(!stderr.contains("this-is-not-an-assignment"), "{stderr}");
}

/// A working directory whose `./.env` sets `first_line`, then has a malformed line 2
/// holding a would-be secret.
fn workdir_with_a_malformed_dotenv(first_line: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let contents = format!("{first_line}\nhvs.MALFORMEDSECRET on a line without equals\n");
    std::fs::write(dir.path().join(".env"), contents).unwrap();
    dir
}

/// Runs `gbo-fs get gbo/llm/openai_key` in `dir` with the server's address and token
/// in the environment, after `adjust` has changed the command; returns the output
/// and its stderr.
fn get_openai_key(
    server: &TestVaultServer,
    dir: &Path,
    adjust: impl FnOnce(&mut Command),
) -> (Output, String) {
    let mut get = gbo_fs(&server.addr(), &server.token(), dir);
    adjust(&mut get);
    get.args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

#[test]
fn a_malformed_default_env_is_only_a_warning_when_flags_and_the_environment_suffice() {
    let server = seeded();
    let dir = workdir_with_a_malformed_dotenv("OTHER_TOOL_SETTING=1");
    let (output, stderr) = get_openai_key(&server, dir.path(), |_| {});
    assert!(output.status.success(), "{stderr}");
    assert_eq!(output.stdout, b"sk-cli-1");
    assert!(!stderr.contains("MALFORMEDSECRET"), "{stderr}");
    let warning = ".env:2: expected NAME=VALUE; the file was ignored";
    assert!(stderr.contains(warning), "{stderr}");
}

#[test]
fn a_malformed_default_env_is_the_error_when_a_needed_setting_would_come_from_it() {
    let server = seeded();
    let dir = workdir_with_a_malformed_dotenv(&format!("VAULT_ADDR={}", server.addr()));
    let (output, stderr) = get_openai_key(&server, dir.path(), |get| {
        get.env_remove("VAULT_ADDR");
    });
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(".env:2: expected NAME=VALUE"), "{stderr}");
    assert!(!stderr.contains("MALFORMEDSECRET"), "{stderr}");
}

#[test]
fn a_malformed_explicit_env_file_is_an_error_even_when_the_environment_suffices() {
    let server = seeded();
    let dir = workdir_with_a_malformed_dotenv("OTHER_TOOL_SETTING=1");
    let (output, stderr) = get_openai_key(&server, dir.path(), |get| {
        get.args(["--env-file", ".env"]);
    });
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(".env:2: expected NAME=VALUE"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn token_files_readable_by_others_are_used_with_a_warning_naming_file_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    let write_with_mode = |name: &str, contents: String, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let get_succeeds_warning_about = |adjust: &dyn Fn(&mut Command)| {
        let (output, stderr) = get_openai_key(&server, dir.path(), |get| {
            get.env_remove("VAULT_TOKEN");
            adjust(get);
        });
        assert_eq!(output.stdout, b"sk-cli-1", "{stderr}");
        assert!(!stderr.contains(&server.token()), "{stderr}");
        stderr
    };
    let dotenv = format!(
        "VAULT_ADDR={}\nVAULT_TOKEN={}\n",
        server.addr(),
        server.token()
    );
    write_with_mode(".env", dotenv, 0o666);
    let stderr = get_succeeds_warning_about(&|_| {});
    assert!(
        stderr.contains(".env has mode 0666: group or others may read VAULT_TOKEN"),
        "{stderr}"
    );

    write_with_mode(".env", format!("VAULT_ADDR={}\n", server.addr()), 0o600);
    let token_file = write_with_mode("token", server.token(), 0o644);
    let with_token_file = |get: &mut Command| {
        get.arg("--vault-token-file").arg(&token_file);
    };
    let stderr = get_succeeds_warning_about(&with_token_file);
    assert!(
        stderr.contains("token has mode 0644: group or others may read the Vault token"),
        "{stderr}"
    );
    assert!(!stderr.contains(".env has mode"), "{stderr}");

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let stderr = get_succeeds_warning_about(&with_token_file);
    assert!(
        !stderr.contains("has mode"),
        "a private file is not warned about: {stderr}"
    );
}

#[test]
fn a_bad_vault_addr_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs("localhost:8200", "t", dir.path());
    get.args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("VAULT_ADDR `localhost:8200`"), "{stderr}");
}

#[test]
fn credentials_in_vault_addr_are_refused_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let with_password = "http://user:pw-s3cret@127.0.0.1:9";
    let get = ["-vv", "get", "gbo/llm/openai_key"];
    let (code, text) = exit_and_output(with_password, "t", dir.path(), &get);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("VAULT_ADDR") && text.contains("must not contain credentials"),
        "{text}"
    );
    assert!(!text.contains("pw-s3cret"), "{text}");

    let mut flagged = std::process::Command::new(BIN);
    flagged
        .current_dir(dir.path())
        .env("VAULT_TOKEN", "t")
        .args(["--vault-addr", "https://pw-s3cret@vault.example", "ls"]);
    let output = run_bounded(flagged, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--vault-addr"), "{stderr}");
    assert!(!stderr.contains("pw-s3cret"), "{stderr}");
}

#[test]
fn a_query_fragment_or_whitespace_in_vault_addr_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "http://127.0.0.1:9?x=1",
        "http://127.0.0.1:9#frag",
        "http://127.0.0.1:9 ",
    ] {
        let mut status = gbo_fs(addr, "t", dir.path());
        status.arg("status").arg(dir.path());
        let output = run_bounded(status, LIMIT);
        assert!(!output.status.success(), "{addr:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("gbo-fs: VAULT_ADDR"),
            "{addr:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{addr:?}: no report is printed");
    }
}

/// A self-signed CA certificate (no private key anywhere), for `--vault-cacert`.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUSFSFhfuKcHBmu+Fu8e4QyFUWF9EwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZ2JvLWZzIHRlc3QgQ0EwIBcNMjYxMTI5MTQ0MDQ1WhgPMjEy
NjExMDUxNDQwNDVaMBkxFzAVBgNVBAMMDmdiby1mcyB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEQRGQQ6WqZodCc/9BQ5zTeB1cgJrZoQppA6vXjZKA
pA3b+I1uaY44VlfOFOmbZCwLwYirYxGvZVX1YKQwNPfhuKNTMFEwHQYDVR0OBBYE
FE5RLA7BPkTQnlhQSYgUa793Gz+EMB8GA1UdIwQYMBaAFE5RLA7BPkTQnlhQSYgU
a793Gz+EMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhANrPULwl
YfV0VU9JkpckSjJwp8dryByg/WSLDu9Pa6S9AiBQJHj8NIU3CMPseBRrHzJu1qpw
v3c8+x5xOyIPUwEbhw==
-----END CERTIFICATE-----
";

#[test]
fn a_ca_bundle_that_is_missing_or_not_pem_is_refused_naming_the_setting_used() {
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let mut get = gbo_fs(&server.addr(), &server.token(), dir.path());
    get.arg("--vault-cacert")
        .arg(&missing)
        .args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("--vault-cacert `{}`", missing.display()))
            && stderr.contains("No such file or directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("VAULT_CACERT"), "{stderr}");

    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "just some text\n").unwrap();
    let mut get = gbo_fs(&server.addr(), &server.token(), dir.path());
    get.env("VAULT_CACERT", &not_pem)
        .args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("VAULT_CACERT from environment")
            && stderr.contains(&not_pem.display().to_string())
            && stderr.contains("no PEM certificate"),
        "{stderr}"
    );

    let good = dir.path().join("ca.pem");
    std::fs::write(&good, TEST_CA_PEM).unwrap();
    let mut get = gbo_fs(&server.addr(), &server.token(), dir.path());
    get.env("VAULT_CACERT", &good)
        .args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.stdout, b"sk-cli-1",
        "a PEM bundle is accepted: {stderr}"
    );
}

#[test]
fn a_vault_that_never_answers_fails_each_command_once_naming_the_address() {
    let addr = silent_listener();
    let dir = dir_with_old_env("old.env");
    // A source with a reference: one without needs no Vault at all.
    let source = written(dir.path(), "config.csv", "key,vault:gbo/llm/x\n");
    for args in [
        &["ls", "gbo"][..],
        &["get", "gbo/llm/x"],
        &["policy"],
        &["--env-file", "old.env", "migrate", "--dry-run"],
        &["check", source.as_str()],
    ] {
        let with_timeout = [&["--vault-timeout", "1"], args].concat();
        let (code, text) = exit_and_output(&addr, "t", dir.path(), &with_timeout);
        assert_eq!(code, Some(1), "{args:?}: {text}");
        assert!(
            text.contains(&format!("{addr}: Vault did not answer within 1s")),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn a_kv_mount_vault_does_not_have_is_an_error_naming_it_never_another_mount() {
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    let run = |flags: &[&str], args: &[&str]| {
        let mut command = gbo_fs(&server.addr(), &server.token(), dir.path());
        command.args(flags).args(args);
        run_bounded(command, LIMIT)
    };
    for flags in [
        &["--kv-mount", "nosuch"][..],
        &["--kv-mount", "nosuch", "--kv-version", "2"],
        &["--kv-mount", "nosuch", "--kv-version", "1"],
    ] {
        for args in [&["ls", "gbo"][..], &["get", "gbo/llm/openai_key"]] {
            let output = run(flags, args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{flags:?} {args:?}");
            assert!(
                stderr.contains("no KV mount `nosuch/`"),
                "{flags:?} {args:?}: {stderr}"
            );
            assert!(output.stdout.is_empty(), "{flags:?} {args:?}");
        }
        let output = run(flags, &["status", "--json", "/nonexistent"]);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(output.status.code(), Some(1), "{flags:?}: {report:#}");
        assert_eq!(report["healthy"], false, "{flags:?}");
        let kv = &report["vault"]["kv"];
        assert!(
            kv["error"].as_str().unwrap().contains("`nosuch/`"),
            "{flags:?}: {kv}"
        );
        assert!(kv["mount"].is_null(), "never another mount: {kv}");
    }
    // The mount that exists, named the same ways, still reads; a missing secret in it is
    // still "no such file".
    for flags in [
        &["--kv-mount", "secret"][..],
        &["--kv-mount", "secret", "--kv-version", "2"],
    ] {
        let output = run(flags, &["get", "gbo/llm/openai_key"]);
        assert_eq!(output.stdout, b"sk-cli-1", "{flags:?}");
        let output = run(flags, &["get", "gbo/nothing/key"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no such file"), "{flags:?}: {stderr}");
    }
}

#[test]
fn the_token_never_appears_in_error_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs("http://127.0.0.1:1", "hvs.super-secret-token", dir.path());
    get.args(["-vv", "get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    assert!(!output.status.success());
    let all = [output.stdout, output.stderr].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("unreachable"), "{text}");
    assert!(!text.contains("super-secret-token"), "{text}");
}

#[test]
fn help_and_man_page_never_suggest_the_credential_variables_hold_file_paths() {
    for args in [["--help"], ["man"]] {
        let mut command = std::process::Command::new(BIN);
        command.args(args);
        let output = run_bounded(command, LIMIT);
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout).replace("\\-", "-");
        for (flag, variable) in [
            ("--vault-token-file", "VAULT_TOKEN"),
            ("--secret-id-file", "VAULT_SECRET_ID"),
        ] {
            assert!(!text.contains(&format!("[env: {variable}]")), "{text}");
            let help = text
                .rsplit(flag)
                .next()
                .and_then(|after| after.lines().find(|line| line.contains("File holding")))
                .unwrap_or_default();
            assert!(
                help.contains(&format!("itself comes from {variable}")),
                "{args:?}: {flag} help: `{help}`"
            );
        }
    }
}

#[test]
fn every_flag_has_a_help_line() {
    for args in [
        vec!["--help"],
        vec!["mount", "--help"],
        vec!["get", "--help"],
        vec!["ls", "--help"],
    ] {
        let mut command = std::process::Command::new(BIN);
        command.args(&args);
        let output = run_bounded(command, LIMIT);
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            let described = line
                .trim()
                .split_once("  ")
                .map(|(_, help)| help.trim())
                .unwrap_or("");
            assert!(
                !described.is_empty(),
                "{args:?}: undocumented flag line `{line}`"
            );
        }
    }
}

#[test]
fn a_closed_stdout_ends_every_printing_command_with_exit_1_and_one_line_not_a_panic() {
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    let reference = "name,value\nllm-key,vault:gbo/llm/openai_key\n";
    let config = &written(dir.path(), "config.csv", reference);
    let mountpoint = dir.path().to_str().unwrap();
    let commands: [&[&str]; 12] = [
        &["completions", "bash"],
        &["completions", "zsh"],
        &["completions", "fish"],
        &["man"],
        &["--kv-mount", "secret", "--kv-version", "2", "policy"],
        &["policy"],
        &["status", mountpoint],
        &["status", mountpoint, "--json"],
        &["get", "gbo/llm/openai_key"],
        &["ls", "gbo"],
        &["render", config],
        &["check", config],
    ];
    for args in commands {
        let mut command = gbo_fs(&server.addr(), &server.token(), dir.path());
        command.args(args);
        let output = run_with_closed_stdout(command, LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            error_lines(&output),
            ["gbo-fs: stdout: Broken pipe (os error 32)"],
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn errors_name_the_path_or_the_vault_address_once() {
    let nothing_listens = "http://127.0.0.1:9";
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut command = gbo_fs(nothing_listens, "t", dir.path());
        command.args(args);
        let output = run_bounded(command, LIMIT);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let errors = error_lines(&output);
        assert_eq!(errors.len(), 1, "{args:?}: {errors:?}");
        errors[0].clone()
    };

    let ls = run(&["ls", "gbo"]);
    assert!(ls.starts_with("gbo-fs: gbo: Vault unreachable: "), "{ls}");
    assert!(!ls.contains("gbo: gbo:"), "{ls}");

    let directory = dir.path().to_str().unwrap();
    let render = run(&["render", directory]);
    assert_eq!(render.matches(directory).count(), 1, "{render}");
    assert!(render.contains("is not a regular file"), "{render}");

    let policy = run(&["policy"]);
    assert_eq!(policy.matches(nothing_listens).count(), 1, "{policy}");
}

#[test]
fn ls_and_get_refuse_a_missing_config_csv_or_bots_dir_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let a_file = written(dir.path(), "plain.csv", "name,value\n");
    let cases = [
        ("--config-csv", missing, "no such file or directory"),
        ("--bots", missing, "no such file or directory"),
        ("--bots", a_file.as_str(), "not a directory"),
    ];
    for (flag, path, problem) in cases {
        for command_args in [["ls", ""], ["get", "config.csv"]] {
            let mut command = gbo_fs("http://127.0.0.1:9", "t", dir.path());
            command.arg(flag).arg(path).args(command_args);
            let output = run_bounded(command, LIMIT);
            assert_eq!(output.status.code(), Some(1), "{flag} {command_args:?}");
            assert!(output.stdout.is_empty());
            assert_eq!(
                error_lines(&output),
                [format!("gbo-fs: {flag} {path}: {problem}")]
            );
        }
    }
}

#[test]
fn man_dir_writes_every_page_the_main_page_refers_to_with_each_commands_options() {
    let dir = tempfile::tempdir().unwrap();
    let output = common::run_offline(&["man".as_ref(), "--dir".as_ref(), dir.path().as_os_str()]);
    common::assert_succeeded(&output);
    let main_page = std::fs::read_to_string(dir.path().join("gbo-fs.1")).unwrap();
    let referred: Vec<&str> = main_page
        .split("gbo\\-fs\\-")
        .skip(1)
        .filter_map(|rest| rest.split_once("(1)").map(|(name, _)| name))
        .collect();
    assert!(referred.len() >= 10, "{referred:?}");
    for name in &referred {
        let page = dir
            .path()
            .join(format!("gbo-fs-{}.1", name.replace("\\-", "-")));
        assert!(
            page.is_file(),
            "{} is referred to but missing",
            page.display()
        );
    }
    let mount_page = std::fs::read_to_string(dir.path().join("gbo-fs-mount.1")).unwrap();
    for option in ["allow\\-other", "auto\\-unmount", "uid"] {
        assert!(
            mount_page.contains(option),
            "gbo-fs-mount(1) lacks {option}"
        );
    }
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        listed.lines().any(|line| line.ends_with("gbo-fs-mount.1")),
        "{listed}"
    );

    let missing = dir.path().join("nope");
    let output = common::run_offline(&["man".as_ref(), "--dir".as_ref(), missing.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope: no such directory"));
}

#[test]
fn usage_errors_exit_2_before_anything_runs_whichever_flag_is_wrong() {
    for args in [
        &["--kv-version", "3", "ls", "gbo"][..],
        &["--missing-reference", "bogus", "render", "x.csv"],
        &["--no-such-flag", "ls"],
    ] {
        let output = common::run_offline(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("error:"),
            "{args:?}"
        );
    }
}
