//! Test doubles shared by the test suite, the benchmarks and the demo: a Vault-API HTTP server.
pub mod rusty_vault;
pub mod vault_server;
