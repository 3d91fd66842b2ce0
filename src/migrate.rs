//! Owns `gbo-fs migrate`: moves the secrets of an old-style `.env` into Vault's
//! `gbo/*` paths, merging with what Vault already holds, then rewrites the `.env`.
//!
//! Two layers:
//! - planning, pure and tested without Vault: [`analyse_env`] turns the `.env`
//!   into the wanted secrets, [`plan_path`] diffs one path against Vault's current
//!   data (add missing keys; a differing key is a conflict unless `--force`);
//! - execution, [`migrate`]: reads each path, prints the plan (values masked),
//!   writes with check-and-set on KV v2, backs the `.env` up as `.env.bak` and
//!   rewrites it atomically to `VAULT_ADDR`, `VAULT_TOKEN` and the variables that
//!   are not secrets gbo-fs knows.
//!
//! Nothing here prints, logs or puts in an error a secret value or the token:
//! reports name paths, keys, variables and value lengths only.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::dotenv::DotEnv;
use crate::settings::Settings;
use crate::vault::http::{encode_path, VaultHttpStore};
use crate::vault::layout::{KvLayout, KvVersion};
use crate::vault::{render_json_value, StoreError};

/// Destination paths (below the namespace) and their keys, in the design's order.
pub const DESTINATIONS: &[(&str, &[&str])] = &[
    (
        "tables",
        &["host", "port", "database", "username", "password"],
    ),
    (
        "directory",
        &["url", "project_id", "client_id", "client_secret"],
    ),
    ("cache", &["host", "port", "password"]),
    (
        "llm",
        &[
            "openai_key",
            "anthropic_key",
            "groq_key",
            "deepseek_key",
            "mistral_key",
        ],
    ),
    ("drive", &["endpoint", "accesskey", "secret"]),
    ("encryption", &["master_key"]),
    ("email", &["host", "user", "password", "port", "from"]),
];

/// Variables copied to one key: the first non-empty one of the list wins.
const SIMPLE_FIELDS: &[(&str, &str, &[&str])] = &[
    ("directory", "url", &["DIRECTORY_URL"]),
    ("directory", "project_id", &["DIRECTORY_PROJECT_ID"]),
    (
        "directory",
        "client_id",
        &["DIRECTORY_CLIENT_ID", "ZITADEL_CLIENT_ID"],
    ),
    (
        "directory",
        "client_secret",
        &["DIRECTORY_CLIENT_SECRET", "ZITADEL_CLIENT_SECRET"],
    ),
    ("cache", "host", &["REDIS_HOST"]),
    ("cache", "port", &["REDIS_PORT"]),
    ("cache", "password", &["REDIS_PASSWORD"]),
    ("llm", "openai_key", &["OPENAI_API_KEY"]),
    ("llm", "anthropic_key", &["ANTHROPIC_API_KEY"]),
    ("llm", "groq_key", &["GROQ_API_KEY"]),
    ("llm", "deepseek_key", &["DEEPSEEK_API_KEY"]),
    ("llm", "mistral_key", &["MISTRAL_API_KEY"]),
    ("drive", "endpoint", &["DRIVE_ENDPOINT", "MINIO_ENDPOINT"]),
    (
        "drive",
        "accesskey",
        &["DRIVE_ACCESSKEY", "MINIO_ACCESS_KEY", "MINIO_ACCESSKEY"],
    ),
    (
        "drive",
        "secret",
        &["DRIVE_SECRET", "MINIO_SECRET_KEY", "MINIO_SECRET"],
    ),
    ("encryption", "master_key", &["ENCRYPTION_KEY"]),
    ("email", "host", &["SMTP_HOST"]),
    ("email", "user", &["SMTP_USER"]),
    ("email", "password", &["SMTP_PASSWORD"]),
    ("email", "port", &["SMTP_PORT"]),
    ("email", "from", &["SMTP_FROM"]),
];

/// Variables parsed as URLs rather than copied.
const URL_VARIABLES: &[&str] = &["DATABASE_URL", "REDIS_URL"];

/// Variables the rewritten `.env` sets from the resolved settings.
const VAULT_VARIABLES: &[&str] = &["VAULT_ADDR", "VAULT_TOKEN"];

const POSTGRES_DEFAULT_PORT: u16 = 5432;
const REDIS_DEFAULT_PORT: u16 = 6379;

/// `--dry-run` and `--force`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MigrateOptions {
    /// Print the plan; write neither Vault nor files.
    pub dry_run: bool,
    /// Overwrite keys whose Vault value differs from the `.env` value.
    pub force: bool,
}

/// A migration failure. Messages name variables, files, paths and keys, never values.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{file}: {variable} is not a usable URL: {reason}")]
    BadUrl {
        file: String,
        variable: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Env(#[from] crate::dotenv::DotEnvError),
    #[error("{path}: {reason}")]
    Vault { path: String, reason: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "{file} and Vault disagree on {}: {}; Vault's values were left alone and {file} \
         was not rewritten. Rerun with --force to overwrite them with the .env values, or \
         remove those variables from {file}",
        plural(.keys.len(), "key"),
        .keys.join(", ")
    )]
    ConflictsLeft { file: String, keys: Vec<String> },
}

fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

// ---------------------------------------------------------------------------------------------
// Planning: .env → wanted secrets
// ---------------------------------------------------------------------------------------------

/// The keys wanted at one destination path, in the design's order.
pub struct WantedSecret {
    /// Path below the namespace, e.g. `llm`.
    pub name: &'static str,
    pub values: Vec<(&'static str, Zeroizing<String>)>,
}

impl std::fmt::Debug for WantedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.values.iter().map(|(k, _)| *k).collect();
        f.debug_struct("WantedSecret")
            .field("name", &self.name)
            .field("keys", &keys)
            .finish()
    }
}

impl WantedSecret {
    /// The wanted value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a `.env` holds, sorted into secrets to migrate and variables to keep.
#[derive(Debug, Default)]
pub struct EnvAnalysis {
    /// Non-empty secrets per destination path, in the design's order.
    pub secrets: Vec<WantedSecret>,
    /// Secret variables the file sets (empty ones too); they leave the `.env`.
    pub recognised: Vec<String>,
    /// Variables that are not secrets gbo-fs knows; they stay in the `.env`.
    pub kept: Vec<String>,
    /// Remarks for the report (names only).
    pub notes: Vec<String>,
}

/// The parts of a `scheme://user:password@host:port/path?query` connection URL.
pub struct ConnectionUrl {
    pub host: String,
    pub port: Option<u16>,
    pub username: Option<Zeroizing<String>>,
    pub password: Option<Zeroizing<String>>,
    /// Percent-decoded path without its leading `/` (the database name).
    pub path: String,
    pub has_query: bool,
}

impl std::fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("path", &self.path)
            .finish()
    }
}

/// Parses a connection URL. The user information ends at the *last* `@`, so a
/// password may hold raw `@`, `:` and `/` as well as percent-encoded ones; user
/// and password are percent-decoded; `[::1]` gives host `::1`. The error reason
/// never contains the URL (it may hold a password).
pub fn parse_connection_url(text: &str, schemes: &[&str]) -> Result<ConnectionUrl, String> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| "expected scheme://host".to_string())?;
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(format!(
            "scheme must be {} (URL not shown: it may hold a password)",
            schemes.join(" or ")
        ));
    }
    let (userinfo, host_part) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let decode = |part: &str, what: &str| -> Result<Option<Zeroizing<String>>, String> {
        if part.is_empty() {
            return Ok(None);
        }
        let decoded = percent_decode_str(part)
            .decode_utf8()
            .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))?;
        Ok(Some(Zeroizing::new(decoded.into_owned())))
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => (decode(user, "user name")?, decode(password, "password")?),
            None => (decode(userinfo, "user name")?, None),
        },
    };
    // Parsed with its own (non-special) scheme: no default port is ever stripped.
    let parsed = url::Url::parse(&format!("{scheme}://{host_part}")).map_err(|e| e.to_string())?;
    let host = match parsed.host() {
        Some(url::Host::Ipv6(address)) => address.to_string(),
        Some(url::Host::Ipv4(address)) => address.to_string(),
        Some(url::Host::Domain(domain)) => {
            percent_decode_str(domain).decode_utf8_lossy().into_owned()
        }
        None => String::new(),
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    let path = percent_decode_str(parsed.path().trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| "the path is not UTF-8 once percent-decoded".to_string())?
        .into_owned();
    Ok(ConnectionUrl {
        host,
        port: parsed.port(),
        username,
        password,
        path,
        has_query: parsed.query().is_some(),
    })
}

/// Sorts the `.env` variables into wanted secrets and kept variables.
pub fn analyse_env(env: &DotEnv) -> Result<EnvAnalysis, MigrateError> {
    let file = env
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| ".env".into());
    let non_empty = |name: &str| env.get(name).filter(|v| !v.is_empty());
    // (destination index, key index) → value; BTreeMap keeps the design's order.
    let mut wanted: BTreeMap<(usize, usize), Zeroizing<String>> = BTreeMap::new();
    let mut set = |path: &str, key: &str, value: &str| {
        if value.is_empty() {
            return;
        }
        let Some(path_index) = DESTINATIONS.iter().position(|(p, _)| *p == path) else {
            return;
        };
        let Some(key_index) = DESTINATIONS[path_index].1.iter().position(|k| *k == key) else {
            return;
        };
        wanted
            .entry((path_index, key_index))
            .or_insert_with(|| Zeroizing::new(value.to_string()));
    };
    let mut notes = Vec::new();

    if let Some(text) = non_empty("DATABASE_URL") {
        let url = parse_connection_url(text, &["postgres", "postgresql"]).map_err(|reason| {
            MigrateError::BadUrl {
                file: file.clone(),
                variable: "DATABASE_URL",
                reason,
            }
        })?;
        set("tables", "host", &url.host);
        set(
            "tables",
            "port",
            &url.port.unwrap_or(POSTGRES_DEFAULT_PORT).to_string(),
        );
        set("tables", "database", &url.path);
        if let Some(user) = &url.username {
            set("tables", "username", user);
        }
        if let Some(password) = &url.password {
            set("tables", "password", password);
        }
        if url.has_query {
            notes.push(
                "DATABASE_URL has query options; gbo/tables has no key for them, so they were \
                 not migrated (they stay in the backup)"
                    .into(),
            );
        }
    }

    if let Some(text) = non_empty("REDIS_URL") {
        let url = parse_connection_url(text, &["redis", "rediss"]).map_err(|reason| {
            MigrateError::BadUrl {
                file: file.clone(),
                variable: "REDIS_URL",
                reason,
            }
        })?;
        set("cache", "host", &url.host);
        if let Some(port) = url.port {
            set("cache", "port", &port.to_string());
        }
        if let Some(password) = &url.password {
            set("cache", "password", password);
        }
        if url
            .username
            .as_ref()
            .is_some_and(|u| u.as_str() != "default" && url.password.is_some())
        {
            notes.push(
                "REDIS_URL names a user; gbo/cache has no key for it, so it was not migrated"
                    .into(),
            );
        }
    }

    for (path, key, variables) in SIMPLE_FIELDS {
        if let Some(value) = variables.iter().find_map(|v| non_empty(v)) {
            set(path, key, value);
        }
    }

    // Redis without a port: the default, as for a REDIS_URL without one.
    let cache = DESTINATIONS
        .iter()
        .position(|(p, _)| *p == "cache")
        .unwrap();
    if wanted.contains_key(&(cache, 0)) && !wanted.contains_key(&(cache, 1)) {
        wanted.insert((cache, 1), Zeroizing::new(REDIS_DEFAULT_PORT.to_string()));
    }

    let mut secrets: Vec<WantedSecret> = Vec::new();
    for ((path_index, key_index), value) in wanted {
        let (name, keys) = DESTINATIONS[path_index];
        if secrets.last().map(|s| s.name) != Some(name) {
            secrets.push(WantedSecret {
                name,
                values: Vec::new(),
            });
        }
        secrets
            .last_mut()
            .expect("pushed above")
            .values
            .push((keys[key_index], value));
    }

    let secret_variables = secret_variable_names();
    let (recognised, kept) = env
        .names()
        .into_iter()
        .filter(|name| !VAULT_VARIABLES.contains(&name.as_str()))
        .partition(|name| secret_variables.contains(name.as_str()));
    Ok(EnvAnalysis {
        secrets,
        recognised,
        kept,
        notes,
    })
}

/// Every variable `migrate` moves into Vault.
pub fn secret_variable_names() -> BTreeSet<&'static str> {
    SIMPLE_FIELDS
        .iter()
        .flat_map(|(_, _, variables)| variables.iter().copied())
        .chain(URL_VARIABLES.iter().copied())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Planning: wanted secret × Vault's data → plan
// ---------------------------------------------------------------------------------------------

/// A JSON value that may hold secrets: every string in it is zeroized on drop.
#[derive(Default)]
pub struct SecretJson(pub Value);

impl Drop for SecretJson {
    fn drop(&mut self) {
        zeroize_strings(&mut self.0);
    }
}

fn zeroize_strings(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_strings),
        Value::Object(map) => map.values_mut().for_each(zeroize_strings),
        _ => {}
    }
}

/// What happens to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// Vault lacks the key: it is added.
    Add,
    /// Vault already holds the same value.
    Unchanged,
    /// Vault holds a different value, left alone (no `--force`).
    Conflict,
    /// Vault holds a different value, replaced (`--force`).
    Overwrite,
}

impl KeyChange {
    fn label(self) -> &'static str {
        match self {
            KeyChange::Add => "add",
            KeyChange::Unchanged => "unchanged",
            KeyChange::Conflict => "CONFLICT (Vault differs; left alone)",
            KeyChange::Overwrite => "overwrite (--force)",
        }
    }
}

/// The plan for one key: never its value, only the value's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPlan {
    pub key: &'static str,
    pub change: KeyChange,
    pub value_chars: usize,
}

/// The plan for one destination path.
pub struct PathPlan {
    /// Logical path, e.g. `gbo/llm`.
    pub logical: String,
    pub keys: Vec<KeyPlan>,
    /// The full data to write (Vault's keys plus the added/overwritten ones), if
    /// anything changes.
    pub write: Option<SecretJson>,
}

impl PathPlan {
    /// Keys left in conflict, as `path/key`.
    pub fn conflicts(&self) -> impl Iterator<Item = String> + '_ {
        self.keys
            .iter()
            .filter(|k| k.change == KeyChange::Conflict)
            .map(|k| format!("{}/{}", self.logical, k.key))
    }
}

/// Diffs one wanted secret against Vault's current data (`None`: no secret yet).
/// Vault's other keys are kept; values compare as the files show them, so a
/// number 5432 in Vault equals the `.env`'s "5432".
pub fn plan_path(
    logical: &str,
    wanted: &WantedSecret,
    existing: Option<&Map<String, Value>>,
    force: bool,
) -> PathPlan {
    let mut merged = SecretJson(Value::Object(existing.cloned().unwrap_or_default()));
    let mut keys = Vec::new();
    let mut changed = false;
    for (key, value) in &wanted.values {
        let current = existing.and_then(|data| data.get(*key));
        let change = match current {
            None => KeyChange::Add,
            Some(current) if render_json_value(current).as_slice() == value.as_bytes() => {
                KeyChange::Unchanged
            }
            Some(_) if force => KeyChange::Overwrite,
            Some(_) => KeyChange::Conflict,
        };
        if matches!(change, KeyChange::Add | KeyChange::Overwrite) {
            changed = true;
            if let Value::Object(map) = &mut merged.0 {
                if let Some(mut old) = map.insert(key.to_string(), Value::String(value.to_string()))
                {
                    zeroize_strings(&mut old);
                }
            }
        }
        keys.push(KeyPlan {
            key,
            change,
            value_chars: value.chars().count(),
        });
    }
    PathPlan {
        logical: logical.to_string(),
        keys,
        write: changed.then_some(merged),
    }
}

/// A masked value for reports: never a character of the value, only its length.
pub fn mask(chars: usize) -> String {
    format!("****** ({})", plural(chars, "char"))
}

// ---------------------------------------------------------------------------------------------
// Planning: the rewritten .env
// ---------------------------------------------------------------------------------------------

/// The new `.env`: `VAULT_ADDR`, `VAULT_TOKEN`, then the kept variables'
/// assignments byte for byte as they were (quoting and every line of a multi-line
/// value included). Comments and secret lines are dropped; the backup keeps them.
/// `original` is parsed as [`DotEnv::parse`] does; an error is its `(line, reason)`.
pub fn rewritten_env(
    original: &str,
    kept: &BTreeSet<&str>,
    vault_addr: &str,
    vault_token: &str,
) -> Result<Zeroizing<String>, crate::dotenv::ParseError> {
    // Sized up front: a reallocation would leave an unzeroized copy behind.
    let mut text = Zeroizing::new(String::with_capacity(
        original.len() + 2 * (vault_addr.len() + vault_token.len()) + 256,
    ));
    text.push_str(
        "# Rewritten by `gbo-fs migrate`: the secrets now live in Vault (the old file is the .bak).\n",
    );
    for (name, value) in [("VAULT_ADDR", vault_addr), ("VAULT_TOKEN", vault_token)] {
        text.push_str(name);
        text.push('=');
        text.push_str(&env_quote(value));
        text.push('\n');
    }
    for assignment in crate::dotenv::assignments(original)? {
        if kept.contains(assignment.name) {
            text.push_str(assignment.source);
            text.push('\n');
        }
    }
    Ok(text)
}

/// A value as a `.env` line writes it: bare when plain, else single-quoted
/// (double-quoted when it holds a single quote).
fn env_quote(value: &str) -> Zeroizing<String> {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/@%+=,".contains(c));
    Zeroizing::new(if plain {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!("\"{value}\"")
    })
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

/// What Vault holds at one path.
struct Current {
    data: Option<SecretJson>,
    /// KV v2 check-and-set version: the current version, 0 when the path is new.
    cas: u64,
}

fn vault_error(path: &str, error: StoreError) -> MigrateError {
    MigrateError::Vault {
        path: path.to_string(),
        reason: error.to_string(),
    }
}

async fn read_current(
    store: &VaultHttpStore,
    layout: &KvLayout,
    logical: &str,
) -> Result<Current, MigrateError> {
    let api_path = encode_path(&layout.read_api_path(logical));
    let answer = store
        .request_json("GET", &api_path, None)
        .await
        .map_err(|e| vault_error(logical, e))?
        .map(SecretJson);
    let Some(mut answer) = answer else {
        let cas = match layout.version {
            KvVersion::V1 => 0,
            // A deleted latest version reads as 404 but still counts for check-and-set.
            KvVersion::V2 => {
                let metadata_path = encode_path(&format!(
                    "{}/metadata/{}",
                    layout.mount,
                    layout.mount_relative(logical)
                ));
                store
                    .request_json("GET", &metadata_path, None)
                    .await
                    .map_err(|e| vault_error(logical, e))?
                    .and_then(|m| m.pointer("/data/current_version").and_then(Value::as_u64))
                    .unwrap_or(0)
            }
        };
        return Ok(Current { data: None, cas });
    };
    let (data, cas) = match layout.version {
        KvVersion::V1 => (answer.0.get_mut("data").map(Value::take), 0),
        KvVersion::V2 => {
            let version = answer
                .0
                .pointer("/data/metadata/version")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            (answer.0.pointer_mut("/data/data").map(Value::take), version)
        }
    };
    let data = match data {
        Some(Value::Object(map)) => Some(SecretJson(Value::Object(map))),
        Some(Value::Null) | None if layout.version == KvVersion::V2 => None,
        _ => {
            return Err(MigrateError::Vault {
                path: logical.to_string(),
                reason: format!("answer to GET {api_path} has no data object"),
            })
        }
    };
    Ok(Current { data, cas })
}

async fn write_path(
    store: &VaultHttpStore,
    layout: &KvLayout,
    logical: &str,
    data: SecretJson,
    cas: u64,
) -> Result<(), MigrateError> {
    let api_path = encode_path(&layout.read_api_path(logical));
    let mut data = data;
    let data = std::mem::take(&mut data.0);
    let body = SecretJson(match layout.version {
        KvVersion::V1 => data,
        KvVersion::V2 => {
            let mut body = Map::new();
            body.insert("data".into(), data);
            body.insert("options".into(), serde_json::json!({ "cas": cas }));
            Value::Object(body)
        }
    });
    match store.request_json("POST", &api_path, Some(&body.0)).await {
        Ok(_) => Ok(()),
        Err(StoreError::Server(400)) if layout.version == KvVersion::V2 => {
            Err(MigrateError::Vault {
                path: logical.to_string(),
                reason: format!(
                    "Vault refused the write to {api_path} (HTTP 400): it changed since it was \
                     read (check-and-set version {cas}); run migrate again"
                ),
            })
        }
        Err(error) => Err(vault_error(logical, error)),
    }
}

/// Where the `.env` being migrated lives, and what it says.
pub struct EnvFile {
    /// The file's real path (symlinks resolved), so the rewrite lands on it.
    pub path: PathBuf,
    pub text: Zeroizing<String>,
    pub parsed: DotEnv,
}

impl EnvFile {
    /// Reads and parses the file; it must exist.
    pub fn load(path: &Path) -> Result<EnvFile, MigrateError> {
        let file_error = |reason: String| MigrateError::File {
            path: path.display().to_string(),
            reason,
        };
        let real = std::fs::canonicalize(path).map_err(|e| file_error(e.to_string()))?;
        let parsed = DotEnv::load(&real, true)?;
        let bytes = Zeroizing::new(std::fs::read(&real).map_err(|e| file_error(e.to_string()))?);
        let text = Zeroizing::new(
            std::str::from_utf8(&bytes)
                .map_err(|_| file_error("not valid UTF-8".into()))?
                .to_string(),
        );
        Ok(EnvFile {
            path: real,
            text,
            parsed,
        })
    }
}

/// Whether the migration completed (nothing left in conflict).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    NothingToDo,
    DryRun,
    Migrated,
}

/// Runs the migration of `env` into `store`, reporting to `out`.
pub async fn migrate(
    store: &VaultHttpStore,
    env: &EnvFile,
    vault_addr: &str,
    vault_token: &str,
    options: MigrateOptions,
    out: &mut dyn Write,
) -> Result<Outcome, MigrateError> {
    let shown_env = env.path.display().to_string();
    let say = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| MigrateError::File {
            path: "stdout".into(),
            reason: e.to_string(),
        })
    };
    let analysis = analyse_env(&env.parsed)?;
    if analysis.recognised.is_empty() {
        say(
            out,
            format!("nothing to do: {shown_env} holds no secret variables to migrate"),
        )?;
        return Ok(Outcome::NothingToDo);
    }

    let layout = store
        .layout()
        .await
        .map_err(|e| vault_error(store.address(), e))?
        .clone();
    say(
        out,
        format!(
            "{}migrating {shown_env} into Vault at {} ({layout})",
            if options.dry_run { "dry run: " } else { "" },
            store.address()
        ),
    )?;

    let mut plans = Vec::new();
    for wanted in &analysis.secrets {
        let logical = format!("{}/{}", layout.prefix, wanted.name);
        let current = read_current(store, &layout, &logical).await?;
        let data = current.data.as_ref().and_then(|d| d.0.as_object());
        plans.push((
            plan_path(&logical, wanted, data, options.force),
            current.cas,
        ));
    }

    for (plan, _) in &plans {
        if options.dry_run {
            for key in &plan.keys {
                say(
                    out,
                    format!(
                        "  {} {} = {}  [{}]",
                        plan.logical,
                        key.key,
                        mask(key.value_chars),
                        key.change.label()
                    ),
                )?;
            }
        } else {
            let mut groups: Vec<String> = Vec::new();
            for change in [
                KeyChange::Add,
                KeyChange::Overwrite,
                KeyChange::Unchanged,
                KeyChange::Conflict,
            ] {
                let names: Vec<&str> = plan
                    .keys
                    .iter()
                    .filter(|k| k.change == change)
                    .map(|k| k.key)
                    .collect();
                if !names.is_empty() {
                    groups.push(format!("{} {}", change.label(), names.join(", ")));
                }
            }
            say(out, format!("  {}: {}", plan.logical, groups.join("; ")))?;
        }
    }
    for note in &analysis.notes {
        say(out, format!("note: {note}"))?;
    }
    let conflicts: Vec<String> = plans.iter().flat_map(|(p, _)| p.conflicts()).collect();
    let kept: BTreeSet<&str> = analysis.kept.iter().map(String::as_str).collect();
    let kept_list = if kept.is_empty() {
        "none".to_string()
    } else {
        analysis.kept.join(", ")
    };

    if options.dry_run {
        let writes: Vec<&str> = plans
            .iter()
            .filter(|(p, _)| p.write.is_some())
            .map(|(p, _)| p.logical.as_str())
            .collect();
        say(
            out,
            format!(
                "would write: {}",
                if writes.is_empty() {
                    "nothing (Vault already holds these values)".to_string()
                } else {
                    writes.join(", ")
                }
            ),
        )?;
        say(
            out,
            format!("would keep in .env (not secrets gbo-fs knows): {kept_list}"),
        )?;
        if conflicts.is_empty() {
            say(
                out,
                format!(
                    "would back {shown_env} up as {} and rewrite it",
                    backup_path(&env.path).display()
                ),
            )?;
        } else {
            say(
                out,
                format!(
                    "would leave {shown_env} as it is: {} in conflict",
                    plural(conflicts.len(), "key")
                ),
            )?;
        }
        say(out, "dry run: nothing was written".into())?;
        return Ok(Outcome::DryRun);
    }

    let mut written = Vec::new();
    for (plan, cas) in &mut plans {
        if let Some(data) = plan.write.take() {
            write_path(store, &layout, &plan.logical, data, *cas).await?;
            written.push(plan.logical.clone());
        }
    }
    say(
        out,
        if written.is_empty() {
            "Vault: nothing to write (it already holds these values)".to_string()
        } else {
            format!("Vault: wrote {}", written.join(", "))
        },
    )?;

    if !conflicts.is_empty() {
        return Err(MigrateError::ConflictsLeft {
            file: shown_env,
            keys: conflicts,
        });
    }

    let backup = back_up(&env.path, env.text.as_bytes())?;
    say(
        out,
        format!(
            "backup: {} (mode 0600; it still holds the secrets: delete it once the bot runs from Vault)",
            backup.display()
        ),
    )?;
    let new_text =
        rewritten_env(&env.text, &kept, vault_addr, vault_token).map_err(|(line, reason)| {
            crate::dotenv::DotEnvError::Malformed {
                path: shown_env.clone(),
                line,
                reason,
            }
        })?;
    write_atomically(&env.path, new_text.as_bytes(), owner_of(&env.path))?;
    say(
        out,
        format!("rewrote {shown_env}: VAULT_ADDR, VAULT_TOKEN and the kept variables: {kept_list}"),
    )?;
    Ok(Outcome::Migrated)
}

/// Resolves the store and runs [`migrate`] on `env_path`, reporting to stdout. The
/// rewritten `.env` gets `env_token` (`--env-token-file`) or, with a warning, the
/// token migrate writes to Vault with.
pub fn run(
    settings: &Settings,
    env_path: &Path,
    options: MigrateOptions,
    env_token: Option<Zeroizing<String>>,
) -> Result<Outcome, String> {
    // An AppRole login's token is short-lived and the daemon's own: never the .env's.
    if env_token.is_none() && settings.upkeep.approle.is_some() {
        return Err(
            "migrate logs in with AppRole, so it has no token to write into the \
             .env; pass --env-token-file with botserver's read-only token"
                .into(),
        );
    }
    let env = EnvFile::load(env_path).map_err(|e| e.to_string())?;
    let store = VaultHttpStore::new(
        settings.connection.clone(),
        &settings.prefix,
        settings.overrides.clone(),
    )?;
    let runtime = crate::daemon::runtime().map_err(|e| e.to_string())?;
    // A refused token or a Vault that does not answer is reported as such, not as a KV
    // mount that cannot be determined.
    crate::token::authenticate_one_shot(&store, settings.upkeep.approle.as_ref(), &runtime)?;
    let written_token = match &env_token {
        Some(token) => token,
        None => {
            eprintln!(
                "gbo-fs: warning: the rewritten .env gets the token migrate writes to Vault with, \
                 which can write secrets; botserver needs only read access: give it a read-only \
                 token with --env-token-file (`gbo-fs policy` prints the policy)"
            );
            &settings.connection.token
        }
    };
    let mut stdout = std::io::stdout().lock();
    runtime
        .block_on(migrate(
            &store,
            &env,
            &settings.connection.addr,
            written_token.as_str(),
            options,
            &mut stdout,
        ))
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// `<file>.bak` next to the file.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

/// Writes the backup: `<file>.bak`, or `<file>.bak.N` when an older, different
/// backup is there (it is never overwritten).
fn back_up(path: &Path, contents: &[u8]) -> Result<PathBuf, MigrateError> {
    let first = backup_path(path);
    let mut candidate = first.clone();
    for n in 1.. {
        match holds_exactly(&candidate, contents) {
            Ok(Some(true)) => return Ok(candidate),
            Ok(Some(false)) => {}
            Ok(None) => break,
            Err(e) => {
                return Err(MigrateError::File {
                    path: candidate.display().to_string(),
                    reason: e.to_string(),
                })
            }
        }
        let mut name = first.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{n}"));
        candidate = first.with_file_name(name);
    }
    write_atomically(&candidate, contents, owner_of(path))?;
    Ok(candidate)
}

/// Whether the earlier backup `path` holds exactly `contents`; `None` when there is
/// none. Anything but a regular file (a symlink to `/dev/zero`, a FIFO) is never
/// read and counts as different, and only a file of the same length is read.
fn holds_exactly(path: &Path, contents: &[u8]) -> std::io::Result<Option<bool>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_file() || metadata.len() != contents.len() as u64 {
        return Ok(Some(false));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut existing = Zeroizing::new(Vec::with_capacity(contents.len()));
    file.take(contents.len() as u64 + 1)
        .read_to_end(&mut existing)?;
    Ok(Some(existing.as_slice() == contents))
}

fn owner_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
}

/// Replaces `target` atomically: a 0600 temp file in the same directory, given
/// `owner` when possible (root migrating a bot user's file), fsynced, renamed
/// over the target, then the directory fsynced.
pub fn write_atomically(
    target: &Path,
    contents: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<(), MigrateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_error = |path: &Path, e: std::io::Error| MigrateError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let directory = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(target.file_name().unwrap_or_default());
    temp_name.push(format!(".gbo-fs-migrate.{}.tmp", std::process::id()));
    let temp = directory.join(temp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        if let Some((uid, gid)) = owner {
            // Only root may give a file away; anyone else keeps their own files.
            match std::os::unix::fs::fchown(&file, Some(uid), Some(gid)) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                other => other?,
            }
        }
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, target)
    })();
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(file_error(target, error));
    }
    if let Ok(dir) = std::fs::File::open(&directory) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn analyse(text: &str) -> EnvAnalysis {
        analyse_env(&DotEnv::parse(text).unwrap()).unwrap()
    }

    fn wanted<'a>(analysis: &'a EnvAnalysis, name: &str) -> &'a WantedSecret {
        analysis
            .secrets
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} in {analysis:?}"))
    }

    #[test]
    fn database_url_with_percent_encoded_and_raw_special_characters_splits_correctly() {
        let url = parse_connection_url(
            "postgres://bot%40corp:p%40ss%3Aw%2Frd@db.example:6543/gb%20db",
            &["postgres"],
        )
        .unwrap();
        assert_eq!(
            url.username.as_deref().map(String::as_str),
            Some("bot@corp")
        );
        assert_eq!(
            url.password.as_deref().map(String::as_str),
            Some("p@ss:w/rd")
        );
        assert_eq!((url.host.as_str(), url.port), ("db.example", Some(6543)));
        assert_eq!(url.path, "gb db");

        let raw = parse_connection_url("postgresql://u:p@s:s/w@rd@h/db", &["postgresql"]).unwrap();
        assert_eq!(
            raw.password.as_deref().map(String::as_str),
            Some("p@s:s/w@rd")
        );
        assert_eq!(
            (raw.host.as_str(), raw.port, raw.path.as_str()),
            ("h", None, "db")
        );
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets_and_missing_ports_get_defaults() {
        let analysis =
            analyse("DATABASE_URL=postgres://u:pw@[::1]/botdb\nREDIS_URL=redis://:rpw@[fe80::2]\n");
        let tables = wanted(&analysis, "tables");
        assert_eq!(tables.get("host"), Some("::1"));
        assert_eq!(tables.get("port"), Some("5432"));
        assert_eq!(tables.get("database"), Some("botdb"));
        let cache = wanted(&analysis, "cache");
        assert_eq!(cache.get("host"), Some("fe80::2"));
        assert_eq!(cache.get("port"), Some("6379"));
        assert_eq!(cache.get("password"), Some("rpw"));
    }

    #[test]
    fn bad_urls_fail_naming_the_variable_but_not_the_value() {
        let env = DotEnv::parse("DATABASE_URL=mysql://u:hunter2@h/db").unwrap();
        let message = analyse_env(&env).unwrap_err().to_string();
        assert!(message.contains("DATABASE_URL"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let env = DotEnv::parse("REDIS_URL=redis://:hunter2@h:notaport").unwrap();
        let message = analyse_env(&env).unwrap_err().to_string();
        assert!(
            message.contains("REDIS_URL") && !message.contains("hunter2"),
            "{message}"
        );
    }

    #[test]
    fn separate_redis_and_alias_variables_fill_the_design_keys_in_order() {
        let analysis = analyse(
            "REDIS_HOST=cache\nREDIS_PASSWORD=r\nZITADEL_CLIENT_ID=zid\nDIRECTORY_CLIENT_SECRET=ds\n\
             ZITADEL_CLIENT_SECRET=zs\nMINIO_ACCESS_KEY=ak\nMINIO_SECRET=ms\nMINIO_ENDPOINT=http://m:9000\n\
             SMTP_PORT=587\nSMTP_HOST=mail\nENCRYPTION_KEY=k\n",
        );
        let cache = wanted(&analysis, "cache");
        let keys: Vec<&str> = cache.values.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["host", "port", "password"]);
        assert_eq!(cache.get("port"), Some("6379"));
        let directory = wanted(&analysis, "directory");
        assert_eq!(directory.get("client_id"), Some("zid"));
        assert_eq!(directory.get("client_secret"), Some("ds"));
        let drive = wanted(&analysis, "drive");
        assert_eq!(drive.get("accesskey"), Some("ak"));
        assert_eq!(drive.get("secret"), Some("ms"));
        let email = wanted(&analysis, "email");
        let keys: Vec<&str> = email.values.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["host", "port"]);
        assert_eq!(wanted(&analysis, "encryption").get("master_key"), Some("k"));
        let order: Vec<&str> = analysis.secrets.iter().map(|s| s.name).collect();
        assert_eq!(
            order,
            ["directory", "cache", "drive", "encryption", "email"]
        );
    }

    #[test]
    fn empty_values_are_never_wanted_but_still_leave_the_env() {
        let analysis =
            analyse("OPENAI_API_KEY=\nGROQ_API_KEY=g\nBOT_NAME=x\nVAULT_ADDR=http://v:1\n");
        assert_eq!(wanted(&analysis, "llm").values.len(), 1);
        assert_eq!(analysis.recognised, ["GROQ_API_KEY", "OPENAI_API_KEY"]);
        assert_eq!(analysis.kept, ["BOT_NAME"]);
    }

    #[test]
    fn plan_adds_missing_keys_keeps_equal_and_others_and_flags_conflicts() {
        let analysis = analyse("OPENAI_API_KEY=sk-new\nGROQ_API_KEY=gq\nMISTRAL_API_KEY=same\n");
        let existing = json!({"openai_key": "sk-old", "mistral_key": "same", "other": 7});
        let plan = plan_path(
            "gbo/llm",
            wanted(&analysis, "llm"),
            existing.as_object(),
            false,
        );
        let changes: Vec<(&str, KeyChange)> = plan.keys.iter().map(|k| (k.key, k.change)).collect();
        assert_eq!(
            changes,
            [
                ("openai_key", KeyChange::Conflict),
                ("groq_key", KeyChange::Add),
                ("mistral_key", KeyChange::Unchanged)
            ]
        );
        assert_eq!(plan.conflicts().collect::<Vec<_>>(), ["gbo/llm/openai_key"]);
        let write = plan.write.as_ref().unwrap();
        assert_eq!(
            write.0,
            json!({"openai_key": "sk-old", "groq_key": "gq", "mistral_key": "same", "other": 7})
        );

        let forced = plan_path(
            "gbo/llm",
            wanted(&analysis, "llm"),
            existing.as_object(),
            true,
        );
        assert_eq!(forced.keys[0].change, KeyChange::Overwrite);
        assert_eq!(forced.write.as_ref().unwrap().0["openai_key"], "sk-new");
        assert_eq!(forced.conflicts().count(), 0);
    }

    #[test]
    fn plan_writes_nothing_when_vault_already_holds_the_values_even_as_numbers() {
        let analysis = analyse("DATABASE_URL=postgres://u:p@h/db\n");
        let existing =
            json!({"host": "h", "port": 5432, "database": "db", "username": "u", "password": "p"});
        let plan = plan_path(
            "gbo/tables",
            wanted(&analysis, "tables"),
            existing.as_object(),
            false,
        );
        assert!(plan.write.is_none());
        assert!(plan.keys.iter().all(|k| k.change == KeyChange::Unchanged));
        let fresh = plan_path("gbo/tables", wanted(&analysis, "tables"), None, false);
        assert_eq!(
            fresh.write.as_ref().unwrap().0.as_object().unwrap().len(),
            5
        );
    }

    #[test]
    fn masks_show_only_the_length() {
        assert_eq!(mask(51), "****** (51 chars)");
        assert_eq!(mask(1), "****** (1 char)");
    }

    #[test]
    fn rewritten_env_keeps_unrecognised_lines_verbatim_and_drops_secrets_and_comments() {
        let original =
            "# OPENAI_API_KEY=sk-commented\nexport BOT_NAME=\"My Bot\"\nOPENAI_API_KEY=sk-x\n\
                        VAULT_ADDR=http://old:1\nPORT=8080 # web\n";
        let kept: BTreeSet<&str> = ["BOT_NAME", "PORT"].into_iter().collect();
        let text = rewritten_env(original, &kept, "http://127.0.0.1:8200", "hvs.abc").unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "VAULT_ADDR=http://127.0.0.1:8200",
                "VAULT_TOKEN=hvs.abc",
                "export BOT_NAME=\"My Bot\"",
                "PORT=8080 # web"
            ]
        );
        let reparsed = DotEnv::parse(&text).unwrap();
        assert_eq!(reparsed.get("BOT_NAME"), Some("My Bot"));
        assert_eq!(reparsed.get("PORT"), Some("8080"));
        assert!(!text.contains("sk-"));
    }

    #[test]
    fn rewritten_env_keeps_a_multi_line_value_byte_for_byte() {
        let certificate =
            "BOT_CA=\"-----BEGIN CERTIFICATE-----\r\n  MIIB+x==\r\n-----END CERTIFICATE-----\"";
        let original =
            format!("\u{feff}OPENAI_API_KEY='sk-\nsplit'\n{certificate} # bot's CA\nPORT=8080\n");
        let kept: BTreeSet<&str> = ["BOT_CA", "PORT"].into_iter().collect();
        let text = rewritten_env(&original, &kept, "http://a:1", "hvs.abc").unwrap();
        assert!(
            text.ends_with(&format!("{certificate} # bot's CA\nPORT=8080\n")),
            "{}",
            text.as_str()
        );
        assert!(!text.contains("sk-") && !text.contains("split"));
        assert_eq!(
            DotEnv::parse(&text).unwrap().get("BOT_CA"),
            DotEnv::parse(&original).unwrap().get("BOT_CA")
        );
    }

    #[test]
    fn odd_vault_values_are_quoted_so_they_read_back_unchanged() {
        for value in ["plain.token-1", "has space", "it's", "a#b c"] {
            let text = rewritten_env("", &BTreeSet::new(), "http://a:1", value).unwrap();
            assert_eq!(
                DotEnv::parse(&text).unwrap().get("VAULT_TOKEN"),
                Some(value)
            );
        }
    }

    #[test]
    fn atomic_write_leaves_a_0600_file_and_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(".env");
        std::fs::write(&target, "OLD=1\n").unwrap();
        write_atomically(&target, b"NEW=1\n", owner_of(&target)).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "NEW=1\n");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn an_older_different_backup_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(".env");
        std::fs::write(dir.path().join(".env.bak"), "EARLIER=1\n").unwrap();
        let backup = back_up(&target, b"NOW=1\n").unwrap();
        assert_eq!(backup, dir.path().join(".env.bak.1"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".env.bak")).unwrap(),
            "EARLIER=1\n"
        );
        assert_eq!(back_up(&target, b"NOW=1\n").unwrap(), backup);
    }

    #[test]
    fn a_planted_backup_symlink_is_never_read_or_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(".env");
        // Endless, and a device: reading it whole would exhaust memory.
        std::os::unix::fs::symlink("/dev/zero", dir.path().join(".env.bak")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "NOW=1\n").unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join(".env.bak.1")).unwrap();
        let backup = back_up(&target, b"NOW=1\n").unwrap();
        assert_eq!(backup, dir.path().join(".env.bak.2"));
        assert_eq!(std::fs::read(&backup).unwrap(), b"NOW=1\n");
        assert!(std::fs::symlink_metadata(dir.path().join(".env.bak"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
