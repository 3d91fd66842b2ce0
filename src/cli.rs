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

    /// File holding the Vault token (a token on the command line would be visible in ps); without it, the token itself comes from VAULT_TOKEN (environment or .env)
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
    #[arg(long, global = true, value_name = "1|2", value_parser = ["1", "2"])]
    pub kv_version: Option<String>,

    /// Seconds a secret is cached; 0 disables the cache [env: VAULT_CACHE_TTL] [default: 300]
    #[arg(long, global = true, value_name = "SECS")]
    pub cache_ttl: Option<u64>,

    /// Secret paths kept in the cache at most (least recently used go first)
    #[arg(long, global = true, value_name = "N", default_value_t = 16_384)]
    pub cache_capacity: usize,

    /// Seconds past the TTL a cached secret is still served while Vault fails
    #[arg(long, global = true, value_name = "SECS", default_value_t = 3600)]
    pub max_stale: u64,

    /// Vault requests in flight at most
    #[arg(long, global = true, value_name = "N", default_value_t = 16)]
    pub vault_concurrency: usize,

    /// Largest secret accepted from Vault, in bytes
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_secret_bytes: usize,

    /// config.csv shown as MOUNTPOINT/config.csv with vault: references resolved
    #[arg(long, global = true, value_name = "PATH")]
    pub config_csv: Option<PathBuf>,

    /// Bot packages dir: every DIR/<name>.gbai/<bot>.gbot/config.csv is shown resolved
    #[arg(long, global = true, value_name = "DIR")]
    pub bots: Option<PathBuf>,

    /// What a config.csv view shows for an unresolvable reference: error (EIO), empty, keep
    #[arg(long, global = true, value_name = "MODE", default_value = "error")]
    pub missing_reference: crate::config_csv::MissingReference,

    /// Unseal keys file (VAULT_UNSEAL_KEY_<n>= lines or init.json, mode 0600): the daemon unseals a sealed Vault with it [env: VAULT_UNSEAL_KEYS_FILE]
    #[arg(long, global = true, value_name = "PATH")]
    pub unseal_keys_file: Option<PathBuf>,

    /// AppRole role_id: log in with AppRole instead of using VAULT_TOKEN (needs the secret_id too) [env: VAULT_ROLE_ID]
    #[arg(long, global = true, value_name = "ID")]
    pub role_id: Option<String>,

    /// File holding the AppRole secret_id; without it, the secret_id itself comes from VAULT_SECRET_ID (environment or .env)
    #[arg(long, global = true, value_name = "PATH")]
    pub secret_id_file: Option<PathBuf>,

    /// Mount path of the AppRole auth method [default: approle]
    #[arg(long, global = true, value_name = "PATH")]
    pub approle_mount: Option<String>,

    /// Lock all memory so secrets never reach swap (needs CAP_IPC_LOCK)
    #[arg(long, global = true)]
    pub mlock: bool,

    /// More log output (-v debug, -vv trace); RUST_LOG also works
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount the secrets filesystem and serve it in the foreground until SIGTERM/SIGINT
    Mount(MountArgs),
    /// Mount the FUSE device and hand it to systemd's fd store for `gbo-fs mount` (ExecStartPre=+ of mount/gbo-fs.service)
    Premount(MountArgs),
    /// Detach the gbo-fs mount at MOUNTPOINT; succeeds when nothing is mounted, refuses other filesystems
    Unmount {
        /// The gbo-fs mount point
        #[arg(default_value = "/run/gbo/secrets")]
        mountpoint: PathBuf,
    },
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
    /// Unseal a sealed Vault with the keys file, reporting progress (never a key); exit 0 once unsealed
    Unseal(UnsealArgs),
    /// Move the secrets of an old-style .env (--env-file, default ./.env) into Vault, keep it as .env.bak and rewrite it to VAULT_ADDR, VAULT_TOKEN and its other variables
    Migrate(MigrateArgs),
    /// Print the least-privilege Vault policy (HCL) for the KV layout: `gbo-fs policy | vault policy write gbo-readonly -`
    Policy,
    /// Print a shell completion script, e.g. `gbo-fs completions bash > /etc/bash_completion.d/gbo-fs`
    Completions {
        /// The shell to complete for
        shell: crate::cli_docs::Shell,
    },
    /// Print the gbo-fs(1) man page (roff), e.g. `gbo-fs man | man -l -`, or with
    /// --dir write it and one page per command (gbo-fs-mount(1), ...) into a directory
    Man {
        /// Write gbo-fs.1 and gbo-fs-COMMAND.1 here (e.g. /usr/local/share/man/man1)
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Show Vault's health, the KV layout, the token's lease and the serving daemon's counters; exit 1 if unhealthy
    Status {
        /// Mount point of the daemon to report on
        #[arg(default_value = "/run/gbo/secrets")]
        mountpoint: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print a config.csv with every vault: reference resolved; exit 2 if any is unresolvable
    Render {
        /// The config.csv source file
        path: PathBuf,
    },
    /// List every vault: reference of a config.csv, of --config-csv and of every bot under --bots (all that are given) with `ok` or why it fails; never prints values
    Check {
        /// The config.csv source file (optional with --config-csv or --bots)
        path: Option<PathBuf>,
    },
}

#[derive(Clone, Debug, Args)]
pub struct UnsealArgs {
    /// Unseal keys file (VAULT_UNSEAL_KEY_<n>= lines or init.json, mode 0600) [default: --unseal-keys-file or VAULT_UNSEAL_KEYS_FILE]
    #[arg(long, value_name = "PATH")]
    pub keys_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Args)]
pub struct MigrateArgs {
    /// Print the plan (values masked) and write nothing: neither Vault nor files
    #[arg(long)]
    pub dry_run: bool,

    /// Overwrite keys whose Vault value differs from the .env value (otherwise reported and left alone)
    #[arg(long)]
    pub force: bool,

    /// Write the token in this file into the rewritten .env, instead of the token migrate writes to Vault with (botserver needs only a read-only token: `gbo-fs policy`)
    #[arg(long, value_name = "PATH")]
    pub env_token_file: Option<std::path::PathBuf>,
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

    /// Have the kernel unmount even if the daemon is killed (needs fusermount3; lets root in too)
    #[arg(long)]
    pub auto_unmount: bool,
}
