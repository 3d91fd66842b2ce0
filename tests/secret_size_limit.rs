//! `--max-secret-bytes` bounds what a secret's values add up to, exactly, in both
//! KV versions, and the error names the configured limit.

use std::time::Duration;

use gbo_fs::testing::vault_server::{KvVersion, TestVaultConfig, TestVaultServer};
use gbo_fs::vault::http::{VaultConnection, VaultHttpStore};
use gbo_fs::vault::layout::LayoutOverrides;
use gbo_fs::vault::{SecretStore, StoreError};
use zeroize::Zeroizing;

const LIMIT: usize = 100;

/// A store reading `server` with `--max-secret-bytes 100`.
fn limited_store(server: &TestVaultServer) -> VaultHttpStore {
    let connection = VaultConnection {
        timeout: Duration::from_secs(5),
        max_secret_bytes: LIMIT,
        ..VaultConnection::new(server.addr(), Zeroizing::new(server.token()))
    };
    VaultHttpStore::new(connection, "gbo", LayoutOverrides::default()).unwrap()
}

#[tokio::test]
async fn values_adding_up_to_the_limit_are_read_and_one_byte_more_is_refused() {
    for (config, mount, base) in [
        (TestVaultConfig::gbo_mount(KvVersion::V1), "gbo", ""),
        (TestVaultConfig::kv2_secret_mount(), "secret", "gbo/"),
    ] {
        let server = TestVaultServer::start(config).unwrap();
        let exactly = "e".repeat(LIMIT);
        let halves = "h".repeat(LIMIT / 2);
        let over = "o".repeat(LIMIT + 1);
        let far_over = "f".repeat(30 * LIMIT);
        server.put_str(mount, &format!("{base}exactly"), &[("k", &exactly)]);
        server.put_str(
            mount,
            &format!("{base}halves"),
            &[("a", &halves), ("b", &halves)],
        );
        server.put_str(
            mount,
            &format!("{base}split_over"),
            &[("a", &halves), ("b", &over[..51])],
        );
        server.put_str(mount, &format!("{base}over"), &[("k", &over)]);
        server.put_str(mount, &format!("{base}far_over"), &[("k", &far_over)]);
        let store = limited_store(&server);

        let read = store.read_secret("gbo/exactly").await.unwrap().unwrap();
        assert_eq!(read.values["k"].as_slice(), exactly.as_bytes(), "{mount}");
        let read = store.read_secret("gbo/halves").await.unwrap().unwrap();
        assert_eq!(read.values.len(), 2, "{mount}");
        for path in ["gbo/split_over", "gbo/over", "gbo/far_over"] {
            let error = store.read_secret(path).await.unwrap_err();
            assert_eq!(error, StoreError::TooLarge(LIMIT), "{mount} {path}");
            assert_eq!(
                error.to_string(),
                "secret larger than the 100-byte limit",
                "the message names the configured limit"
            );
        }
    }
}
