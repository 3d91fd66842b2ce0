//! The vaultrs-backed store against the Vault-API test server: mount detection for
//! both real layouts, KV v1 and v2, and how every Vault failure is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gbo_fs::fs::{FsConfig, SecretFs};
use gbo_fs::testing::vault_server::{Fault, KvVersion as TestKv, TestVaultConfig, TestVaultServer};
use gbo_fs::vault::http::{VaultConnection, VaultHttpStore};
use gbo_fs::vault::layout::{KvLayout, KvVersion, LayoutOverrides};
use gbo_fs::vault::{SecretStore, StoreError};
use zeroize::Zeroizing;

fn connection(server: &TestVaultServer) -> VaultConnection {
    VaultConnection {
        timeout: Duration::from_secs(1),
        ..VaultConnection::new(server.addr(), Zeroizing::new(server.token()))
    }
}

fn store(server: &TestVaultServer, overrides: LayoutOverrides) -> VaultHttpStore {
    VaultHttpStore::new(connection(server), "gbo", overrides).unwrap()
}

async fn value(store: &VaultHttpStore, path: &str, key: &str) -> Vec<u8> {
    let secret = store
        .read_secret(path)
        .await
        .unwrap()
        .expect("secret exists");
    secret.values.get(key).expect("key exists").to_vec()
}

#[tokio::test]
async fn botservers_kv2_secret_mount_is_detected_without_flags() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-1")]);
    let store = store(&server, LayoutOverrides::default());
    assert_eq!(
        store.layout().await.unwrap(),
        &KvLayout::for_mount("gbo", "secret", KvVersion::V2)
    );
    assert_eq!(value(&store, "gbo/llm", "openai_key").await, b"sk-1");
    let secret = store.read_secret("gbo/llm").await.unwrap().unwrap();
    assert_eq!(secret.version, Some(1));
    assert_eq!(server.count("GET", "secret/data/gbo/llm"), 2);
}

#[tokio::test]
async fn the_documented_gbo_mount_is_detected_in_both_kv_versions() {
    for (test_version, expected) in [(TestKv::V1, KvVersion::V1), (TestKv::V2, KvVersion::V2)] {
        let server = TestVaultServer::start(TestVaultConfig::gbo_mount(test_version)).unwrap();
        server.put_str("gbo", "llm", &[("openai_key", "sk-doc")]);
        server.put_str("gbo", "bots/mybot", &[("api_key", "b")]);
        let store = store(&server, LayoutOverrides::default());
        assert_eq!(
            store.layout().await.unwrap(),
            &KvLayout::for_mount("gbo", "gbo", expected)
        );
        assert_eq!(value(&store, "gbo/llm", "openai_key").await, b"sk-doc");
        let mut names: Vec<String> = store
            .list_folder("gbo")
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|e| format!("{}{}", e.name, if e.is_folder { "/" } else { "" }))
            .collect();
        names.sort();
        assert_eq!(names, vec!["bots/", "llm"], "{expected:?}");
    }
}

#[tokio::test]
async fn a_gbo_mount_wins_over_a_gbo_folder_in_secret() {
    let config = TestVaultConfig::with_mounts(vec![
        ("secret".into(), TestKv::V2),
        ("gbo".into(), TestKv::V1),
    ]);
    let server = TestVaultServer::start(config).unwrap();
    let store = store(&server, LayoutOverrides::default());
    assert_eq!(store.layout().await.unwrap().mount, "gbo");
}

#[tokio::test]
async fn sys_mounts_is_used_when_the_ui_mounts_endpoint_is_missing() {
    let mut config = TestVaultConfig::kv2_secret_mount();
    config.ui_mounts_endpoint = false;
    let server = TestVaultServer::start(config).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "via-sys-mounts")]);
    let store = store(&server, LayoutOverrides::default());
    assert_eq!(store.layout().await.unwrap().mount, "secret");
    assert_eq!(
        value(&store, "gbo/llm", "openai_key").await,
        b"via-sys-mounts"
    );
}

#[tokio::test]
async fn flags_decide_when_detection_is_impossible_and_override_it_otherwise() {
    let mut config = TestVaultConfig::gbo_mount(TestKv::V1);
    config.ui_mounts_endpoint = false;
    config.sys_mounts_endpoint = false;
    let server = TestVaultServer::start(config).unwrap();
    server.put_str("gbo", "llm", &[("openai_key", "flagged")]);
    let undetectable = store(&server, LayoutOverrides::default());
    let error = undetectable.read_secret("gbo/llm").await.unwrap_err();
    assert!(
        matches!(error, StoreError::Layout(ref m) if m.contains("--kv-mount")),
        "{error}"
    );
    let flagged = store(
        &server,
        LayoutOverrides {
            mount: Some("gbo".into()),
            version: Some(KvVersion::V1),
        },
    );
    assert_eq!(value(&flagged, "gbo/llm", "openai_key").await, b"flagged");
    assert_eq!(
        server.count("GET", "sys/mounts"),
        1,
        "full flags skip detection"
    );
}

#[tokio::test]
async fn a_named_kv_mount_is_used_as_named_and_a_missing_one_is_an_error() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-named")]);
    let named = |mount: &str, version: Option<KvVersion>| {
        let overrides = LayoutOverrides {
            mount: Some(mount.into()),
            version,
        };
        store(&server, overrides)
    };
    let no_such_mount = StoreError::NoSuchMount("nosuch".into());
    // sys/mounts is readable: the missing mount is found out at detection, never swapped
    // for `secret`.
    let detected = named("nosuch", None);
    assert_eq!(detected.layout().await.unwrap_err(), no_such_mount);
    assert_eq!(
        detected.list_folder("gbo").await.unwrap_err(),
        no_such_mount
    );
    // With the version too there is no detection: Vault's "no handler for route" tells.
    for version in [KvVersion::V1, KvVersion::V2] {
        let flagged = named("nosuch", Some(version));
        assert_eq!(
            flagged.read_secret("gbo/llm").await.unwrap_err(),
            no_such_mount
        );
        assert_eq!(flagged.list_folder("gbo").await.unwrap_err(), no_such_mount);
    }
    let inside = named("secret/gbo", None).layout().await.unwrap_err();
    assert!(
        matches!(inside, StoreError::Layout(ref m) if m.contains("inside the KV mount `secret/`")),
        "{inside}"
    );
    // The real mount, named either way, reads; missing secrets in it stay "not found".
    for version in [None, Some(KvVersion::V2)] {
        let real = named("secret", version);
        assert_eq!(value(&real, "gbo/llm", "openai_key").await, b"sk-named");
        assert!(real.read_secret("gbo/nothing").await.unwrap().is_none());
        assert!(real.list_folder("gbo/nothing").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_named_kv_mount_vault_will_not_describe_is_checked_by_its_answers() {
    let mut config = TestVaultConfig::kv2_secret_mount();
    config.ui_mounts_endpoint = false;
    config.sys_mounts_endpoint = false;
    let server = TestVaultServer::start(config).unwrap();
    let store = store(
        &server,
        LayoutOverrides {
            mount: Some("nosuch".into()),
            version: None,
        },
    );
    assert_eq!(
        store.layout().await.unwrap(),
        &KvLayout::for_mount("gbo", "nosuch", KvVersion::V2)
    );
    assert_eq!(
        store.list_folder("gbo").await.unwrap_err(),
        StoreError::NoSuchMount("nosuch".into())
    );
}

#[tokio::test]
async fn missing_secrets_are_none_and_empty_folders_list_as_none() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let store = store(&server, LayoutOverrides::default());
    assert!(store.read_secret("gbo/nothing").await.unwrap().is_none());
    assert!(store.list_folder("gbo/nothing").await.unwrap().is_none());
}

#[tokio::test]
async fn every_vault_failure_maps_to_a_distinct_error_without_values() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-never-in-errors")]);
    let store = store(&server, LayoutOverrides::default());
    store.layout().await.unwrap();
    let cases = [
        (Fault::Status(500), "server"),
        (Fault::Status(502), "server"),
        (Fault::Sealed, "sealed"),
        (Fault::MalformedJson, "malformed"),
        (Fault::Html, "malformed"),
        (Fault::Hang, "timeout"),
        (Fault::HugeBody(2 << 20), "large"),
    ];
    for (fault, expected) in cases {
        server.set_fault(fault.clone());
        let started = Instant::now();
        let error = store.read_secret("gbo/llm").await.unwrap_err();
        let text = error.to_string().to_lowercase();
        assert!(
            text.contains(expected) || format!("{error:?}").to_lowercase().contains(expected),
            "{fault:?}: {error}"
        );
        assert!(!text.contains("sk-never-in-errors"));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{fault:?} took {:?}",
            started.elapsed()
        );
        assert_eq!(error.errno(), libc::EIO, "{fault:?}");
    }
    server.clear_faults();
    server.deny("secret/data/gbo/llm");
    let denied = store.read_secret("gbo/llm").await.unwrap_err();
    assert_eq!(denied, StoreError::PermissionDenied);
    assert_eq!(denied.errno(), libc::EACCES);
}

#[tokio::test]
async fn a_wrong_token_is_permission_denied() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let mut bad = connection(&server);
    bad.token = Zeroizing::new("not-the-token".into());
    let store = VaultHttpStore::new(
        bad,
        "gbo",
        LayoutOverrides {
            mount: Some("secret".into()),
            version: Some(KvVersion::V2),
        },
    )
    .unwrap();
    assert_eq!(
        store.read_secret("gbo/llm").await.unwrap_err(),
        StoreError::PermissionDenied
    );
}

#[tokio::test]
async fn an_unreachable_vault_is_reported_as_unreachable_with_its_address() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let connection = connection(&server);
    server.stop();
    let store = VaultHttpStore::new(connection.clone(), "gbo", LayoutOverrides::default()).unwrap();
    let error = store.read_secret("gbo/llm").await.unwrap_err();
    assert!(
        matches!(error, StoreError::Unreachable(ref m) if m.contains(&connection.addr)),
        "{error}"
    );
}

#[tokio::test]
async fn one_kept_alive_connection_serves_many_requests_and_each_path_is_read_once() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    for p in 0..5 {
        server.put_str(
            "secret",
            &format!("gbo/p{p}"),
            &[("a", "1"), ("b", "2"), ("c", "3")],
        );
    }
    let store = Arc::new(store(&server, LayoutOverrides::default()));
    let fs = Arc::new(SecretFs::new(store, FsConfig::new("gbo")));
    let mut readers = Vec::new();
    for t in 0..8 {
        let fs = fs.clone();
        readers.push(tokio::spawn(async move {
            for p in 0..5 {
                for key in ["a", "b", "c"] {
                    fs.read_path(&format!("gbo/p{}/{key}", (p + t) % 5))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for reader in readers {
        reader.await.unwrap();
    }
    for p in 0..5 {
        assert_eq!(
            server.count("GET", &format!("secret/data/gbo/p{p}")),
            1,
            "p{p}"
        );
    }
    assert_eq!(server.count("LIST", "secret/metadata/gbo"), 1);
    assert!(
        server.connections_accepted() <= 8,
        "{} connections",
        server.connections_accepted()
    );
}

#[tokio::test]
async fn seal_status_is_reported() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let store = store(&server, LayoutOverrides::default());
    assert!(!store.status().await.unwrap().sealed);
    server.seal();
    assert!(store.status().await.unwrap().sealed);
    assert_eq!(
        store.read_secret("gbo/llm").await.unwrap_err(),
        StoreError::Sealed
    );
}

#[tokio::test]
async fn a_soft_deleted_kv2_secret_reads_as_not_found() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/old", &[("k", "v")]);
    let client = reqwest::Client::new();
    let response = client
        .delete(format!("{}/v1/secret/data/gbo/old", server.addr()))
        .header("X-Vault-Token", server.token())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let store = store(&server, LayoutOverrides::default());
    assert!(store.read_secret("gbo/old").await.unwrap().is_none());
}
