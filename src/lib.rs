//! gbo-fs: serve HashiCorp Vault KV secrets as lazily fetched, cached, read-only files.
pub mod cache;
pub mod fs;
pub mod testing;
pub mod vault;
