//! Unsealing from a keys file: the `gbo-fs unseal` command against RustyVault (real Shamir
//! shares) and the test server, keys-file errors, and the daemon unsealing at start and
//! whenever it finds Vault sealed. No output ever contains a key or the root token.

mod common;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::{fuse_available, gbo_fs, run_bounded, rusty_vault_or_skip, wait_until, Mount};
use gbo_fs::testing::rusty_vault::RustyVault;
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer, UNSEAL_KEY};
use gbo_fs::upkeep::UpkeepSettings;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

/// Writes `contents` to `dir/name` with `mode` from the start (never briefly world-readable).
fn write_private(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    path
}

fn key_lines(keys: &[String]) -> String {
    keys.iter()
        .enumerate()
        .map(|(i, key)| format!("VAULT_UNSEAL_KEY_{}={key}\n", i + 1))
        .collect()
}

fn run_unseal(addr: &str, token: &str, keys_file: &Path) -> (Output, String) {
    let workdir = tempfile::tempdir().unwrap();
    let mut command = gbo_fs(addr, token, workdir.path());
    command.arg("unseal").arg("--keys-file").arg(keys_file);
    let output = run_bounded(command, LIMIT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

fn assert_no_secret_in(text: &str, vault: &RustyVault) {
    for key in vault.unseal_keys() {
        assert!(!text.contains(&key), "an unseal key was printed:\n{text}");
    }
    assert!(
        !text.contains(&vault.root_token()),
        "the root token was printed:\n{text}"
    );
}

/// A RustyVault restarted (so sealed) and a private keys file in `dir` with all its keys;
/// `None` when rvault is not installed.
fn sealed_rusty_vault_and_keys_file(dir: &Path) -> Option<(RustyVault, PathBuf)> {
    let mut vault = rusty_vault_or_skip()?;
    let keys = key_lines(&vault.unseal_keys());
    let keys_file = write_private(dir, "unseal.env", &keys, 0o600);
    vault.restart().unwrap();
    assert_eq!(vault.is_sealed(), Some(true));
    Some((vault, keys_file))
}

#[test]
fn unseal_command_unseals_a_restarted_rustyvault_from_a_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some((vault, keys_file)) = sealed_rusty_vault_and_keys_file(dir.path()) else {
        return;
    };

    let (output, text) = run_unseal(&vault.addr(), &vault.root_token(), &keys_file);
    assert!(output.status.success(), "{text}");
    assert_eq!(vault.is_sealed(), Some(false));
    assert!(text.contains("unseal: 1/3 keys submitted"), "{text}");
    assert!(text.contains("unseal: 2/3 keys submitted"), "{text}");
    assert!(text.contains("is unsealed (3 keys submitted)"), "{text}");
    assert_no_secret_in(&text, &vault);

    let (output, text) = run_unseal(&vault.addr(), &vault.root_token(), &keys_file);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("already unsealed"), "{text}");
}

#[test]
fn unseal_command_reads_botservers_init_json_preferring_hex_keys() {
    let Some(mut vault) = rusty_vault_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let init = json!({
        "unseal_keys_b64": ["bm90LWEta2V5", "bm90LWEta2V5", "bm90LWEta2V5"],
        "unseal_keys_hex": vault.unseal_keys(),
        "unseal_shares": 5,
        "unseal_threshold": 3,
        "root_token": vault.root_token(),
    });
    let keys_file = write_private(dir.path(), "init.json", &init.to_string(), 0o600);
    vault.restart().unwrap();

    let (output, text) = run_unseal(&vault.addr(), &vault.root_token(), &keys_file);
    assert!(output.status.success(), "{text}");
    assert_eq!(vault.is_sealed(), Some(false));
    assert_no_secret_in(&text, &vault);
}

#[test]
fn progress_left_by_an_earlier_wrong_key_does_not_fail_a_full_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some((vault, keys_file)) = sealed_rusty_vault_and_keys_file(dir.path()) else {
        return;
    };
    let wrong_key = json!({ "key": "ab".repeat(33) });
    let reply = vault
        .request("PUT", "sys/unseal", Some(&wrong_key), false)
        .unwrap();
    assert_eq!(
        reply.status, 200,
        "an operator's wrong key is taken as progress"
    );

    let (output, text) = run_unseal(&vault.addr(), &vault.root_token(), &keys_file);
    assert!(output.status.success(), "{text}");
    assert_eq!(vault.is_sealed(), Some(false));
    assert!(text.contains("is unsealed"), "{text}");
    assert_no_secret_in(&text, &vault);
}

#[test]
fn running_out_of_keys_while_still_sealed_is_an_error() {
    let Some(mut vault) = rusty_vault_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let two_keys = &vault.unseal_keys()[..2];
    let keys_file = write_private(dir.path(), "unseal.env", &key_lines(two_keys), 0o600);
    vault.restart().unwrap();

    let (output, text) = run_unseal(&vault.addr(), &vault.root_token(), &keys_file);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("still sealed after all 2 unseal keys")
            && text.contains(&keys_file.display().to_string()),
        "{text}"
    );
    assert!(text.contains("unseal: 2/3 keys submitted"), "{text}");
    assert_eq!(vault.is_sealed(), Some(true));
    assert_no_secret_in(&text, &vault);
}

#[test]
fn a_keys_file_readable_by_others_is_refused_naming_path_and_mode() {
    let server = TestVaultServer::start(TestVaultConfig::default()).unwrap();
    server.seal();
    let dir = tempfile::tempdir().unwrap();
    let keys_file = write_private(
        dir.path(),
        "unseal.env",
        &format!("VAULT_UNSEAL_KEY_1={UNSEAL_KEY}\n"),
        0o644,
    );
    let (output, text) = run_unseal(&server.addr(), &server.token(), &keys_file);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&keys_file.display().to_string())
            && text.contains("0644")
            && text.contains("chmod 600"),
        "{text}"
    );
    assert!(server.is_sealed());
    assert!(!text.contains(UNSEAL_KEY), "{text}");
}

#[test]
fn a_bad_line_is_reported_by_file_and_line_without_its_content() {
    let server = TestVaultServer::start(TestVaultConfig::default()).unwrap();
    server.seal();
    let dir = tempfile::tempdir().unwrap();
    let keys_file = write_private(
        dir.path(),
        "unseal.env",
        &format!("# keys\nVAULT_UNSEAL_KEY_1={UNSEAL_KEY}\nUNSEAL_KEY_TWO=leaky-value\n"),
        0o600,
    );
    let (output, text) = run_unseal(&server.addr(), &server.token(), &keys_file);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&format!("{}:3", keys_file.display())),
        "{text}"
    );
    assert!(
        !text.contains("leaky-value") && !text.contains(UNSEAL_KEY),
        "{text}"
    );
    assert!(server.is_sealed());
}

#[test]
fn a_key_vault_rejects_is_named_by_position_and_needs_no_token() {
    let server = TestVaultServer::start(TestVaultConfig::default()).unwrap();
    server.seal();
    let dir = tempfile::tempdir().unwrap();
    let keys_file = write_private(
        dir.path(),
        "unseal.env",
        "VAULT_UNSEAL_KEY_1=wrong-key-material\n",
        0o600,
    );
    let workdir = tempfile::tempdir().unwrap();
    let mut command = gbo_fs(&server.addr(), "", workdir.path());
    command
        .env_remove("VAULT_TOKEN")
        .arg("unseal")
        .arg("--keys-file")
        .arg(&keys_file);
    let output = run_bounded(command, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("rejected unseal key #1") && stderr.contains("HTTP 400"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-key-material"), "{stderr}");
}

#[test]
fn the_keys_file_may_come_from_the_dotenv_file() {
    let server = TestVaultServer::start(TestVaultConfig::default()).unwrap();
    server.seal();
    let dir = tempfile::tempdir().unwrap();
    let keys_file = write_private(
        dir.path(),
        "unseal.env",
        &format!("VAULT_UNSEAL_KEY_1={UNSEAL_KEY}\n"),
        0o600,
    );
    let workdir = tempfile::tempdir().unwrap();
    std::fs::write(
        workdir.path().join(".env"),
        format!("VAULT_UNSEAL_KEYS_FILE={}\n", keys_file.display()),
    )
    .unwrap();
    let mut command = gbo_fs(&server.addr(), &server.token(), workdir.path());
    command.arg("unseal");
    let output = run_bounded(command, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!server.is_sealed());
    assert!(stderr.contains("unsealed"), "{stderr}");
}

#[test]
fn the_upkeep_task_unseals_vault_whenever_it_finds_it_sealed() {
    let server = TestVaultServer::start(TestVaultConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys_file = write_private(
        dir.path(),
        "unseal.env",
        &format!("VAULT_UNSEAL_KEY_1={UNSEAL_KEY}\n"),
        0o600,
    );
    let store = Arc::new(gbo_fs::testing::http_store(&server.addr(), &server.token()));
    let runtime = gbo_fs::daemon::runtime().unwrap();
    server.seal();
    let settings = UpkeepSettings {
        unseal_keys_file: Some(keys_file),
        check_interval: Duration::from_millis(200),
        ..UpkeepSettings::default()
    };
    gbo_fs::upkeep::start(store, settings, &runtime).unwrap();
    assert!(!server.is_sealed(), "start-up unseals a sealed Vault");

    for _ in 0..2 {
        server.seal();
        assert!(
            wait_until(Duration::from_secs(10), || !server.is_sealed()),
            "Vault sealed again was not unsealed by the background check"
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn a_daemon_started_against_a_sealed_rustyvault_unseals_it_and_serves_secrets() {
    if !fuse_available() {
        return;
    }
    let Some(mut vault) = rusty_vault_or_skip() else {
        return;
    };
    vault.put("gbo/llm", &json!({"openai_key": "sk-after-unseal"}));
    let dir = tempfile::tempdir().unwrap();
    let keys_file = write_private(
        dir.path(),
        "unseal.env",
        &key_lines(&vault.unseal_keys()),
        0o600,
    );
    vault.restart().unwrap();
    assert_eq!(vault.is_sealed(), Some(true));

    let keys_arg = keys_file.display().to_string();
    let mount = Mount::start(
        &vault.addr(),
        &vault.root_token(),
        &["-vv", "--unseal-keys-file", &keys_arg],
    );
    assert_eq!(vault.is_sealed(), Some(false));
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-after-unseal"
    );
    let log = mount.log_text();
    assert!(log.contains("Vault unsealed"), "{log}");
    assert_no_secret_in(&log, &vault);
}
