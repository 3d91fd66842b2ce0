//! A `vault:` reference or a path can never reach outside the served namespace:
//! `.`, `..` and empty segments are refused before any request, so a config.csv
//! cannot read another mount or the daemon's own token.

mod common;

use std::time::Duration;

use common::{gbo_fs, run_bounded};
use gbo_fs::testing::vault_server::{KvVersion, TestVaultConfig, TestVaultServer};

const LIMIT: Duration = Duration::from_secs(30);
const OUTSIDE_VALUE: &str = "outside-the-namespace-42";

/// The documented layout (KV v1 mount `gbo`) beside a second mount `other`.
fn server_with_a_second_mount() -> TestVaultServer {
    let server = TestVaultServer::start(TestVaultConfig::with_mounts(vec![
        ("gbo".into(), KvVersion::V1),
        ("other".into(), KvVersion::V1),
    ]))
    .unwrap();
    server.put_str("gbo", "llm", &[("openai_key", "sk-inside")]);
    server.put_str("other", "s", &[("k", OUTSIDE_VALUE)]);
    server
}

const ESCAPING: &str = "name,value\n\
    ok,vault:gbo/llm/openai_key\n\
    up,vault:gbo/../other/s/k\n\
    token,vault:gbo/../auth/token/lookup-self/id\n\
    dot,vault:gbo/./llm/openai_key\n\
    empty,vault:gbo//llm/openai_key\n\
    deep,vault:gbo/llm/../../other/s/k\n";

/// Runs `gbo-fs <command> config.csv` on [`ESCAPING`] against a fresh server.
fn run_on_the_escaping_config(command: &str) -> (TestVaultServer, std::process::Output) {
    let server = server_with_a_second_mount();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("config.csv");
    std::fs::write(&source, ESCAPING).unwrap();
    let mut run = gbo_fs(&server.addr(), &server.token(), dir.path());
    run.arg(command).arg(&source);
    let output = run_bounded(run, LIMIT);
    (server, output)
}

#[test]
fn render_refuses_dot_segments_and_never_prints_another_mount_or_the_token() {
    let (server, output) = run_on_the_escaping_config("render");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "fails closed: nothing printed");
    for line in 3..=7 {
        assert!(
            stderr.contains(&format!("line {line}")),
            "line {line} is named: {stderr}"
        );
    }
    assert!(!stderr.contains("line 2"), "the good reference is fine");
    for leaked in [OUTSIDE_VALUE, server.token().as_str()] {
        assert!(!stdout.contains(leaked) && !stderr.contains(leaked));
    }
    assert_eq!(
        server.requests_under("other/"),
        0,
        "no request left the mount"
    );
}

#[test]
fn check_names_the_dot_segment_of_each_escaping_reference() {
    let (server, output) = run_on_the_escaping_config("check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}{stderr}");
    let report = format!("{stdout}{stderr}");
    for (name, line) in [
        ("up", 3),
        ("token", 4),
        ("dot", 5),
        ("empty", 6),
        ("deep", 7),
    ] {
        let reported = report
            .lines()
            .find(|l| l.contains(&format!(":{line}:")))
            .unwrap_or_else(|| panic!("line {line} reported: {report}"));
        assert!(
            reported.contains(name) && reported.contains("segment"),
            "{reported}"
        );
    }
    assert!(!report.contains(OUTSIDE_VALUE) && !report.contains(&server.token()));
    assert_eq!(server.requests_under("other/"), 0);
}

#[test]
fn get_and_ls_refuse_dot_segments_in_the_kv2_layout_too() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-inside")]);
    server.put_str("secret", "top", &[("k", OUTSIDE_VALUE)]);
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["get", "gbo/../top/k"],
        ["get", "gbo/llm/../../top/k"],
        ["ls", "gbo/.."],
        ["ls", "gbo/../top"],
    ] {
        let mut command = gbo_fs(&server.addr(), &server.token(), dir.path());
        command.args(args);
        let output = run_bounded(command, LIMIT);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{args:?}: {stdout}");
        assert!(!stdout.contains(OUTSIDE_VALUE) && !stdout.contains("top"));
    }
    assert_eq!(server.count("GET", "secret/data/top"), 0);
}
