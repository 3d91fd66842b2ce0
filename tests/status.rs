//! `gbo-fs status`: its JSON fields and its exit codes when Vault is healthy,
//! sealed, down, or the token is invalid.

mod common;

use std::time::Duration;

use common::{fuse_available, gbo_fs, run_bounded, silent_listener, Mount};
use gbo_fs::testing::vault_server::{Fault, TestVaultConfig, TestVaultServer};
use serde_json::Value;

fn status_json(addr: &str, token: &str, mountpoint: &std::path::Path) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = gbo_fs(addr, token, dir.path());
    command
        .args(["--vault-timeout", "1", "status", "--json"])
        .arg(mountpoint);
    let output = run_bounded(command, Duration::from_secs(30));
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)));
    (output.status.code(), report)
}

#[test]
fn a_healthy_vault_reports_layout_and_token_and_exits_zero() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let (code, report) = status_json(&server.addr(), &server.token(), nowhere.path());
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["vault"]["reachable"], true);
    assert_eq!(report["vault"]["sealed"], false);
    assert_eq!(report["vault"]["address"], server.addr());
    assert_eq!(report["vault"]["version"], "1.15.0-gbo-test");
    assert_eq!(report["vault"]["kv"]["mount"], "secret");
    assert_eq!(report["vault"]["kv"]["version"], "2");
    assert_eq!(report["token"]["valid"], true);
    assert!(report["token"]["policies"].is_array());
    assert!(report["token"]["renewable"].is_boolean());
    assert!(report["daemon"].is_null(), "nothing serves that mountpoint");
    assert!(
        !report.to_string().contains(&server.token()),
        "the token is never printed"
    );
}

#[test]
fn a_status_file_planted_in_a_plain_directory_is_not_taken_for_a_daemon() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let plain = tempfile::tempdir().unwrap();
    std::fs::create_dir(plain.path().join(".gbo-fs")).unwrap();
    std::fs::write(
        plain.path().join(".gbo-fs/status.json"),
        r#"{"pid": 1, "uptime_secs": 99999, "vault_errors": 0}"#,
    )
    .unwrap();
    let (code, report) = status_json(&server.addr(), &server.token(), plain.path());
    assert_eq!(code, Some(0), "{report:#}");
    assert!(report["daemon"].is_null(), "{report:#}");
}

#[test]
fn sealed_down_and_invalid_token_each_exit_non_zero() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let (code, report) = status_json(&server.addr(), "wrong-token", nowhere.path());
    assert_eq!(code, Some(1));
    assert_eq!(report["token"]["valid"], false);
    assert!(!report.to_string().contains("wrong-token"));

    server.seal();
    let (code, report) = status_json(&server.addr(), &server.token(), nowhere.path());
    assert_eq!(code, Some(1));
    assert_eq!(
        (
            report["vault"]["reachable"].clone(),
            report["vault"]["sealed"].clone()
        ),
        (Value::Bool(true), Value::Bool(true))
    );

    let addr = server.addr();
    server.stop();
    let (code, report) = status_json(&addr, "t", nowhere.path());
    assert_eq!(code, Some(1));
    assert_eq!(report["vault"]["reachable"], false);
    assert_eq!(report["healthy"], false);
}

#[test]
fn sealed_is_unknown_when_vault_cannot_be_asked() {
    let nowhere = tempfile::tempdir().unwrap();
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let addr = server.addr();
    server.stop();
    let silent = silent_listener();
    let not_vault = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    not_vault.set_path_fault("sys/seal-status", Fault::Status(404));
    for (case, addr, reachable) in [
        ("down", addr.as_str(), false),
        ("no answer", silent.as_str(), false),
        ("404 to seal-status", &not_vault.addr(), true),
    ] {
        let (code, report) = status_json(addr, "t", nowhere.path());
        assert_eq!(code, Some(1), "{case}: {report:#}");
        assert_eq!(report["vault"]["reachable"], reachable, "{case}");
        assert!(report["vault"]["sealed"].is_null(), "{case}: {report:#}");
        assert!(report["vault"]["error"].is_string(), "{case}: {report:#}");
        assert_eq!(report["healthy"], false, "{case}");

        let dir = tempfile::tempdir().unwrap();
        let mut human = gbo_fs(addr, "t", dir.path());
        human
            .args(["--vault-timeout", "1", "status"])
            .arg(nowhere.path());
        let output = run_bounded(human, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{case}");
        assert!(text.contains("sealed     unknown"), "{case}: {text}");
    }
}

#[test]
fn a_serving_daemon_reports_its_counters() {
    if !fuse_available() {
        return;
    }
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-status")]);
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    for _ in 0..3 {
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap();
    }
    let (code, report) = status_json(&server.addr(), &server.token(), &mount.mountpoint);
    assert_eq!(code, Some(0));
    let daemon = &report["daemon"];
    assert_eq!(daemon["pid"], mount.child.as_ref().unwrap().id());
    // Asked through a symlink to the mountpoint, the same daemon answers.
    let link = mount.dir.path().join("link-to-mount");
    std::os::unix::fs::symlink(&mount.mountpoint, &link).unwrap();
    let (_, through_link) = status_json(&server.addr(), &server.token(), &link);
    assert_eq!(through_link["daemon"]["pid"], daemon["pid"]);
    assert_eq!(daemon["cache"]["entries"], 1);
    assert!(daemon["cache"]["hit_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(daemon["cache"]["stale_serves"], 0);
    assert!(daemon["vault_requests"].as_u64().unwrap() >= 1);
    assert_eq!(daemon["vault_errors"], 0);
    assert!(daemon["uptime_secs"].is_u64());
    assert!(!report.to_string().contains("sk-status"));
}

#[test]
fn with_approle_credentials_status_logs_in_and_reports_a_valid_token() {
    use gbo_fs::testing::vault_server::TestAppRole;
    let server = TestVaultServer::start(TestVaultConfig {
        approle: Some(TestAppRole::new(
            "role-1",
            "secret-id-1",
            Duration::from_secs(600),
        )),
        ..TestVaultConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(common::BIN);
    command
        .current_dir(dir.path())
        .env_remove("VAULT_TOKEN")
        .env("VAULT_ADDR", server.addr())
        .env("VAULT_ROLE_ID", "role-1")
        .env("VAULT_SECRET_ID", "secret-id-1")
        .args(["status", "--json"])
        .arg(nowhere.path());
    let output = run_bounded(command, Duration::from_secs(30));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["token"]["valid"], true);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("secret-id-1"));
}

#[test]
fn a_dead_mount_or_a_stopped_daemon_is_unhealthy_and_never_hangs_status() {
    if !fuse_available() {
        return;
    }
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-status")]);

    // A daemon that stops answering (SIGSTOP): status gives up after --vault-timeout.
    let mut stopped = Mount::start(&server.addr(), &server.token(), &[]);
    let pid = nix::unistd::Pid::from_raw(stopped.child.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (code, report) = status_json(&server.addr(), &server.token(), &stopped.mountpoint);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["healthy"], false);
    let error = report["daemon"]["error"].as_str().unwrap();
    assert!(error.contains("did not answer within 1 s"), "{error}");
    assert_eq!(report["vault"]["reachable"], true);

    // A daemon killed without unmounting leaves a dead mount: reported as such,
    // also when asked through a symlink to the mountpoint.
    stopped.kill_hard();
    let link = stopped.dir.path().join("link-to-mount");
    std::os::unix::fs::symlink(&stopped.mountpoint, &link).unwrap();
    for asked in [&stopped.mountpoint, &link] {
        let (code, report) = status_json(&server.addr(), &server.token(), asked);
        assert_eq!(code, Some(1), "{report:#}");
        let error = report["daemon"]["error"].as_str().unwrap();
        assert!(
            error.contains("dead mount") && error.contains("gbo-fs unmount"),
            "{error}"
        );
    }
}
