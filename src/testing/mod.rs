//! Test doubles shared by the test suite, the benchmarks and the demo: a Vault-API HTTP server.
pub mod rusty_vault;
pub mod vault_server;

/// A detecting Vault store for tests, with [`VaultConnection::new`]'s defaults.
///
/// [`VaultConnection::new`]: crate::vault::http::VaultConnection::new
pub fn http_store(addr: &str, token: &str) -> crate::vault::http::VaultHttpStore {
    let connection =
        crate::vault::http::VaultConnection::new(addr, zeroize::Zeroizing::new(token.to_string()));
    crate::vault::http::VaultHttpStore::new(
        connection,
        "gbo",
        crate::vault::layout::LayoutOverrides::default(),
    )
    .expect("a valid test Vault address")
}
