//! Test doubles shared by the test suite, the benchmarks and the demo: a Vault-API HTTP server.
pub mod vault_server;
pub mod rusty_vault;
