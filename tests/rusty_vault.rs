//! Against a real Vault-API server (RustyVault): KV v1 mount `gbo` detected with
//! no flags, read through the store, the CLI and a real mount.

mod common;

use std::time::Duration;

use common::{fuse_available, gbo_fs, run_bounded, Mount};
use gbo_fs::testing::rusty_vault::RustyVault;
use gbo_fs::vault::layout::{KvLayout, KvVersion};
use gbo_fs::vault::SecretStore;
use serde_json::json;

/// Starts a seeded RustyVault, or skips when it is not installed.
fn rusty_vault() -> Option<RustyVault> {
    let vault = common::rusty_vault_or_skip()?;
    vault.put(
        "gbo/llm",
        &json!({"openai_key": "sk-real-server", "anthropic_key": "sk-ant-real"}),
    );
    vault.put("gbo/tables", &json!({"host": "pg.local", "port": 5432}));
    vault.put("gbo/bots/mybot", &json!({"api_key": "bot-real"}));
    Some(vault)
}

#[tokio::test]
async fn the_kv_v1_gbo_mount_is_detected_and_read_without_flags() {
    let Some(vault) = rusty_vault() else { return };
    let store = gbo_fs::testing::http_store(&vault.addr(), &vault.root_token());
    assert_eq!(
        store.layout().await.unwrap(),
        &KvLayout::for_mount("gbo", "gbo", KvVersion::V1)
    );
    let secret = store.read_secret("gbo/llm").await.unwrap().unwrap();
    assert_eq!(&secret.values["openai_key"][..], b"sk-real-server");
    let tables = store.read_secret("gbo/tables").await.unwrap().unwrap();
    assert_eq!(&tables.values["port"][..], b"5432");
    assert!(store.read_secret("gbo/none").await.unwrap().is_none());
    let mut names: Vec<String> = store
        .list_folder("gbo")
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["bots", "llm", "tables"]);
    assert!(!store.status().await.unwrap().sealed);
}

#[test]
fn get_and_a_real_mount_serve_rustyvault_secrets() {
    let Some(vault) = rusty_vault() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs(&vault.addr(), &vault.root_token(), dir.path());
    get.args(["get", "gbo/bots/mybot/api_key"]);
    let output = run_bounded(get, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"bot-real");

    if !fuse_available() {
        return;
    }
    let mount = Mount::start(&vault.addr(), &vault.root_token(), &[]);
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-real-server"
    );
    assert_eq!(
        std::fs::read(mount.path("gbo/tables/port")).unwrap(),
        b"5432"
    );
    let log = mount.log_text();
    assert!(
        log.contains("KV v1 mount `gbo`"),
        "the chosen layout is logged once at start:\n{log}"
    );
    assert!(!log.contains(&vault.root_token()));
}

#[test]
fn status_reports_a_healthy_rustyvault_and_a_sealed_one() {
    let Some(vault) = rusty_vault() else { return };
    let dir = tempfile::tempdir().unwrap();
    let status = |expect_ok: bool| {
        let mut command = gbo_fs(&vault.addr(), &vault.root_token(), dir.path());
        command.args(["status", "--json"]).arg(dir.path());
        let output = run_bounded(command, Duration::from_secs(30));
        assert_eq!(
            output.status.success(),
            expect_ok,
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(!output
            .stdout
            .windows(vault.root_token().len())
            .any(|w| w == vault.root_token().as_bytes()));
        report
    };
    let healthy = status(true);
    assert_eq!(healthy["vault"]["kv"]["mount"], "gbo");
    assert_eq!(healthy["vault"]["kv"]["version"], "1");
    assert_eq!(healthy["token"]["renewable"], false);
    vault.seal();
    let sealed = status(false);
    assert_eq!(sealed["vault"]["sealed"], true);
}

#[test]
fn a_kv_mount_rustyvault_does_not_have_is_an_error_naming_it() {
    let Some(vault) = rusty_vault() else { return };
    let dir = tempfile::tempdir().unwrap();
    for flags in [
        &["--kv-mount", "nosuch"][..],
        &["--kv-mount", "nosuch", "--kv-version", "1"],
    ] {
        for args in [&["ls", "gbo"][..], &["get", "gbo/llm/openai_key"]] {
            let mut command = gbo_fs(&vault.addr(), &vault.root_token(), dir.path());
            command.args(flags).args(args);
            let output = run_bounded(command, Duration::from_secs(30));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(1),
                "{flags:?} {args:?}: {stderr}"
            );
            assert!(
                stderr.contains("no KV mount `nosuch/`"),
                "{flags:?} {args:?}: {stderr}"
            );
            assert!(output.stdout.is_empty());
        }
    }
}

#[test]
fn an_empty_token_file_is_refused_naming_the_file_before_any_request() {
    let Some(vault) = rusty_vault() else { return };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "\n").unwrap();
    let mut command = gbo_fs(&vault.addr(), "unused", dir.path());
    command
        .env_remove("VAULT_TOKEN")
        .arg("--vault-token-file")
        .arg(&token_file)
        .args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(command, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // Refused when settings load; a token Vault answers 400 to is covered by
    // tests/token.rs against the test server.
    assert!(
        stderr.contains(&format!("{}: the file is empty", token_file.display())),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
