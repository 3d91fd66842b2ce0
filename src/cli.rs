//! The command line: every subcommand and flag, with its help line.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Serve HashiCorp Vault KV secrets as read-only files.
#[derive(Debug, Parser)]
#[command(name = "gbo-fs", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand. Vault settings follow the Vault CLI's
/// variables; precedence is flag, then process environment, then the `.env` file.
#[derive(Clone, Debug, Default, Args)]
pub struct GlobalOptions {
    /// `.env` file read for VAULT_* settings (never exported); a missing default file is fine
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// Vault address, e.g. http://127.0.0.1:8200 [env: VAULT_ADDR]
    #[arg(long, global = true, value_name = "URL")]
    pub vault_addr: Option<String>,

    /// File holding the Vault token (a token on the command line would be visible in ps) [env: VAULT_TOKEN]
    #[arg(long, global = true, value_name = "PATH")]
    pub vault_token_file: Option<PathBuf>,

    /// PEM CA bundle trusted for https [env: VAULT_CACERT]
    #[arg(long, global = true, value_name = "PATH")]
    pub vault_cacert: Option<PathBuf>,

    /// Accept any TLS certificate (testing only) [env: VAULT_SKIP_VERIFY]
    #[arg(long, global = true)]
    pub vault_skip_verify: bool,

    /// Vault Enterprise / HCP namespace [env: VAULT_NAMESPACE]
    #[arg(long, global = true, value_name = "NS")]
    pub vault_namespace: Option<String>,

    /// Longest wait for Vault, in seconds; no file operation waits longer
    #[arg(long, global = true, value_name = "SECS", default_value_t = 5.0)]
    pub vault_timeout: f64,

    /// Namespace served under the mount root
    #[arg(long, global = true, value_name = "NAME", default_value = "gbo")]
    pub prefix: String,

    /// KV mount holding the namespace (overrides detection)
    #[arg(long, global = true, value_name = "NAME")]
    pub kv_mount: Option<String>,

    /// KV engine version, 1 or 2 (overrides detection)
    #[arg(long, global = true, value_name = "1|2")]
    pub kv_version: Option<String>,

    /// Seconds a secret is cached; 0 disables the cache [env: VAULT_CACHE_TTL] [default: 300]
    #[arg(long, global = true, value_name = "SECS")]
    pub cache_ttl: Option<u64>,

    /// Secret paths kept in the cache at most (least recently used go first)
    #[arg(long, global = true, value_name = "N", default_value_t = 16_384)]
    pub cache_capacity: usize,

    /// Largest secret accepted from Vault, in bytes
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_secret_bytes: usize,

    /// More log output (-v debug, -vv trace); RUST_LOG also works
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount the secrets filesystem and serve it in the foreground until SIGTERM/SIGINT
    Mount(MountArgs),
    /// Print one secret value, e.g. `gbo-fs get gbo/llm/openai_key` (no FUSE involved)
    Get {
        /// Path as it appears under the mount, e.g. gbo/llm/openai_key
        path: String,
    },
    /// List a directory as the mount shows it, e.g. `gbo-fs ls gbo/llm`
    Ls {
        /// Path as it appears under the mount; empty for the root
        #[arg(default_value = "")]
        path: String,
    },
}

#[derive(Clone, Debug, Args)]
pub struct MountArgs {
    /// Where to mount; created if missing
    #[arg(default_value = "/run/gbo/secrets")]
    pub mountpoint: PathBuf,

    /// Owner of every file and directory [default: the daemon's uid]
    #[arg(long)]
    pub uid: Option<u32>,

    /// Group of every file and directory [default: the daemon's gid]
    #[arg(long)]
    pub gid: Option<u32>,

    /// Let other users reach the mount; the kernel then enforces the 0400/0500 modes (default_permissions)
    #[arg(long)]
    pub allow_other: bool,
}
