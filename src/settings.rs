//! Resolves the effective settings from flags, the process environment and the
//! `.env` file, in that order of precedence.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::cache::CachePolicy;
use crate::cli::GlobalOptions;
use crate::dotenv::{DotEnv, DotEnvError};
use crate::vault::http::{validate_vault_addr, VaultConnection};
use crate::vault::layout::{KvVersion, LayoutOverrides};

/// Default `.env` location.
pub const DEFAULT_ENV_FILE: &str = ".env";

/// Default cache TTL, botserver's own (`VAULT_CACHE_TTL`).
pub const DEFAULT_CACHE_TTL_SECS: u64 = 300;

/// Everything needed to reach Vault and serve the namespace.
#[derive(Debug)]
pub struct Settings {
    pub connection: VaultConnection,
    pub prefix: String,
    pub overrides: LayoutOverrides,
    pub cache: CachePolicy,
}

/// A setting that cannot be used; the message names the setting and its source.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    DotEnv(#[from] DotEnvError),
    #[error("{0}")]
    Invalid(String),
}

/// Where a value came from, for error messages.
fn source_name(flag: bool, from_env: bool, dotenv: &DotEnv) -> String {
    match (flag, from_env, &dotenv.path) {
        (true, _, _) => "command line".into(),
        (false, true, _) => "environment".into(),
        (false, false, Some(path)) => path.display().to_string(),
        (false, false, None) => ".env".into(),
    }
}

/// Looks a variable up: process environment first, then the `.env` file.
struct Layers<'a> {
    environment: &'a dyn Fn(&str) -> Option<String>,
    dotenv: &'a DotEnv,
}

impl Layers<'_> {
    fn get(&self, name: &str) -> Option<(String, bool)> {
        (self.environment)(name)
            .map(|v| (v, true))
            .or_else(|| self.dotenv.get(name).map(|v| (v.to_string(), false)))
            .filter(|(v, _)| !v.is_empty())
    }
}

/// Parses a boolean the way the Vault CLI does (Go's strconv.ParseBool).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Reads the `.env` file: the named one must exist; the default may be absent.
pub fn load_dotenv(options: &GlobalOptions) -> Result<DotEnv, SettingsError> {
    let (path, required) = match &options.env_file {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_ENV_FILE), false),
    };
    Ok(DotEnv::load(&path, required)?)
}

/// Builds the settings. `environment` is the process environment (injected for tests).
pub fn resolve(
    options: &GlobalOptions,
    environment: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsError> {
    let dotenv = load_dotenv(options)?;
    let layers = Layers {
        environment,
        dotenv: &dotenv,
    };
    let invalid = |message: String| SettingsError::Invalid(message);

    let addr = match &options.vault_addr {
        Some(addr) => addr.clone(),
        None => layers.get("VAULT_ADDR").map(|(v, _)| v).ok_or_else(|| {
            invalid(format!(
                "VAULT_ADDR is not set (use --vault-addr, the environment, or {})",
                dotenv_label(options)
            ))
        })?,
    };
    validate_vault_addr(&addr).map_err(invalid)?;

    let token = match &options.vault_token_file {
        Some(path) => read_token_file(path)?,
        None => Zeroizing::new(layers.get("VAULT_TOKEN").map(|(v, _)| v).ok_or_else(|| {
            invalid(format!(
                "VAULT_TOKEN is not set (use --vault-token-file, the environment, or {})",
                dotenv_label(options)
            ))
        })?),
    };

    let skip_verify = if options.vault_skip_verify {
        true
    } else {
        match layers.get("VAULT_SKIP_VERIFY") {
            Some((text, from_env)) => parse_bool(&text).ok_or_else(|| {
                invalid(format!(
                    "VAULT_SKIP_VERIFY from {} must be true or false",
                    source_name(false, from_env, &dotenv)
                ))
            })?,
            None => false,
        }
    };

    let ca_cert = options
        .vault_cacert
        .clone()
        .or_else(|| layers.get("VAULT_CACERT").map(|(v, _)| PathBuf::from(v)));
    let namespace = options
        .vault_namespace
        .clone()
        .or_else(|| layers.get("VAULT_NAMESPACE").map(|(v, _)| v));

    let ttl_secs = match options.cache_ttl {
        Some(ttl) => ttl,
        None => match layers.get("VAULT_CACHE_TTL") {
            Some((text, from_env)) => text.trim().parse().map_err(|_| {
                invalid(format!(
                    "VAULT_CACHE_TTL from {} must be a whole number of seconds",
                    source_name(false, from_env, &dotenv)
                ))
            })?,
            None => DEFAULT_CACHE_TTL_SECS,
        },
    };

    if !(options.vault_timeout.is_finite() && options.vault_timeout > 0.0) {
        return Err(invalid(
            "--vault-timeout must be a positive number of seconds".into(),
        ));
    }
    let timeout = Duration::from_secs_f64(options.vault_timeout);

    let version = match &options.kv_version {
        Some(text) => Some(
            KvVersion::parse(text)
                .ok_or_else(|| invalid(format!("--kv-version must be 1 or 2, not `{text}`")))?,
        ),
        None => None,
    };
    if !crate::fs::is_valid_file_name(&options.prefix) {
        return Err(invalid(format!(
            "--prefix `{}` must be a single path segment",
            options.prefix
        )));
    }

    Ok(Settings {
        connection: VaultConnection {
            addr,
            token,
            ca_cert,
            skip_verify,
            namespace,
            timeout,
            max_secret_bytes: options.max_secret_bytes,
        },
        prefix: options.prefix.clone(),
        overrides: LayoutOverrides {
            mount: options.kv_mount.clone(),
            version,
        },
        cache: CachePolicy {
            capacity: options.cache_capacity.max(1),
            ttl: Duration::from_secs(ttl_secs),
            ..CachePolicy::default()
        },
    })
}

fn dotenv_label(options: &GlobalOptions) -> String {
    options
        .env_file
        .as_deref()
        .unwrap_or(Path::new(DEFAULT_ENV_FILE))
        .display()
        .to_string()
}

fn read_token_file(path: &Path) -> Result<Zeroizing<String>, SettingsError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        SettingsError::Invalid(format!("--vault-token-file {}: {e}", path.display()))
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        SettingsError::Invalid(format!("--vault-token-file {}: not UTF-8", path.display()))
    })?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn options_with_env_file(contents: &str) -> (tempfile::TempDir, GlobalOptions) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, contents).unwrap();
        let options = GlobalOptions {
            env_file: Some(path),
            vault_timeout: 5.0,
            prefix: "gbo".into(),
            cache_capacity: 100,
            max_secret_bytes: 1 << 20,
            ..Default::default()
        };
        (dir, options)
    }

    #[test]
    fn flag_beats_environment_which_beats_dotenv() {
        let (_dir, mut options) = options_with_env_file(
            "VAULT_ADDR=http://dotenv:1\nVAULT_TOKEN=from-dotenv\nVAULT_CACHE_TTL=7\n",
        );
        let only_dotenv = resolve(&options, &env_of(&[])).unwrap();
        assert_eq!(only_dotenv.connection.addr, "http://dotenv:1");
        assert_eq!(only_dotenv.connection.token.as_str(), "from-dotenv");
        assert_eq!(only_dotenv.cache.ttl, Duration::from_secs(7));

        let environment = env_of(&[("VAULT_ADDR", "http://env:2"), ("VAULT_CACHE_TTL", "9")]);
        let with_env = resolve(&options, &environment).unwrap();
        assert_eq!(with_env.connection.addr, "http://env:2");
        assert_eq!(with_env.connection.token.as_str(), "from-dotenv");
        assert_eq!(with_env.cache.ttl, Duration::from_secs(9));

        options.vault_addr = Some("http://flag:3".into());
        options.cache_ttl = Some(0);
        let with_flag = resolve(&options, &environment).unwrap();
        assert_eq!(with_flag.connection.addr, "http://flag:3");
        assert_eq!(with_flag.cache.ttl, Duration::ZERO);
    }

    #[test]
    fn default_ttl_is_botservers_300_seconds() {
        let (_dir, options) = options_with_env_file("VAULT_ADDR=http://a:1\nVAULT_TOKEN=t\n");
        assert_eq!(
            resolve(&options, &env_of(&[])).unwrap().cache.ttl,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn other_dotenv_lines_are_read_but_never_exported() {
        let (_dir, options) = options_with_env_file(
            "VAULT_ADDR=http://a:1\nVAULT_TOKEN=t\nGBO_FS_TEST_UNEXPORTED=1\n",
        );
        resolve(&options, &env_of(&[])).unwrap();
        assert!(std::env::var("GBO_FS_TEST_UNEXPORTED").is_err());
    }

    #[test]
    fn missing_address_or_token_is_a_clear_error() {
        let (_dir, options) = options_with_env_file("VAULT_TOKEN=t\n");
        let error = resolve(&options, &env_of(&[])).unwrap_err().to_string();
        assert!(error.contains("VAULT_ADDR is not set"), "{error}");
        let (_dir, options) = options_with_env_file("VAULT_ADDR=http://a:1\n");
        let error = resolve(&options, &env_of(&[])).unwrap_err().to_string();
        assert!(error.contains("VAULT_TOKEN is not set"), "{error}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let (_dir, options) = options_with_env_file("VAULT_ADDR=localhost:8200\nVAULT_TOKEN=t\n");
        let error = resolve(&options, &env_of(&[])).unwrap_err().to_string();
        assert!(error.contains("VAULT_ADDR `localhost:8200`"), "{error}");
        let (_dir, options) = options_with_env_file(
            "VAULT_ADDR=http://a:1\nVAULT_TOKEN=t\nVAULT_SKIP_VERIFY=maybe\n",
        );
        let error = resolve(&options, &env_of(&[])).unwrap_err().to_string();
        assert!(
            error.contains("VAULT_SKIP_VERIFY") && error.contains(".env"),
            "{error}"
        );
    }

    #[test]
    fn skip_verify_and_namespace_follow_the_vault_cli() {
        let (_dir, options) = options_with_env_file(
            "VAULT_ADDR=https://a:1\nVAULT_TOKEN=t\nVAULT_SKIP_VERIFY=1\nVAULT_NAMESPACE=team\n",
        );
        let settings = resolve(&options, &env_of(&[])).unwrap();
        assert!(settings.connection.skip_verify);
        assert_eq!(settings.connection.namespace.as_deref(), Some("team"));
        assert_eq!(parse_bool("False"), Some(false));
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let (dir, mut options) = options_with_env_file("VAULT_ADDR=http://a:1\n");
        let token_path = dir.path().join("token");
        std::fs::write(&token_path, "hvs.abc\n").unwrap();
        options.vault_token_file = Some(token_path);
        assert_eq!(
            resolve(&options, &env_of(&[]))
                .unwrap()
                .connection
                .token
                .as_str(),
            "hvs.abc"
        );
    }
}
