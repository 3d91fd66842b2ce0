//! gbo-fs: serve HashiCorp Vault KV secrets as lazily fetched, cached, read-only files.
pub mod cache;
pub mod cli;
pub mod config_csv;
pub mod daemon;
pub mod dotenv;
pub mod fs;
pub mod fuse;
pub mod settings;
pub mod testing;
pub mod vault;
