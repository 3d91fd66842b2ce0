//! Resolves the effective settings from flags, the process environment and the
//! `.env` file, in that order of precedence.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::cache::CachePolicy;
use crate::cli::GlobalOptions;
use crate::dotenv::{DotEnv, DotEnvError};
use crate::token::{AppRoleLogin, DEFAULT_APPROLE_MOUNT};
use crate::vault::http::{check_ca_bundle, check_vault_addr, VaultConnection};
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
    /// Vault requests in flight at most (`--vault-concurrency`).
    pub vault_concurrency: usize,
    /// config.csv views (`--config-csv`, `--bots`).
    pub views: crate::views::ConfigSources,
    pub missing_reference: crate::config_csv::MissingReference,
    /// Unsealing and token upkeep (`VAULT_UNSEAL_KEYS_FILE`, AppRole credentials).
    pub upkeep: crate::upkeep::UpkeepSettings,
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
    /// Why the default `./.env` could not be used (it then reads as empty).
    unusable_default: Option<&'a DotEnvError>,
}

impl Layers<'_> {
    /// The error for a needed setting found nowhere: the unusable default `.env`'s own
    /// problem if there is one (the setting may be in it), else `message`.
    fn missing(&self, message: String) -> SettingsError {
        match self.unusable_default {
            Some(problem) => SettingsError::DotEnv(problem.clone()),
            None => SettingsError::Invalid(message),
        }
    }

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

/// Reads the `.env` file: the named one must exist and parse. The default may be
/// absent; if it cannot be read or parsed, it reads as empty and its problem is
/// returned beside it, an error only once a needed setting is found nowhere else.
fn load_dotenv(options: &GlobalOptions) -> Result<(DotEnv, Option<DotEnvError>), SettingsError> {
    match &options.env_file {
        Some(path) => Ok((DotEnv::load(path, true)?, None)),
        None => match DotEnv::load(Path::new(DEFAULT_ENV_FILE), false) {
            Ok(dotenv) => Ok((dotenv, None)),
            Err(problem) => Ok((DotEnv::default(), Some(problem))),
        },
    }
}

/// Builds the settings. `environment` is the process environment (injected for tests).
pub fn resolve(
    options: &GlobalOptions,
    environment: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsError> {
    resolve_with(options, environment, TokenNeed::Required)
}

/// Builds the settings for commands that need no token (`unseal`): an unset VAULT_TOKEN
/// leaves the token empty.
pub fn resolve_without_token(
    options: &GlobalOptions,
    environment: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsError> {
    resolve_with(options, environment, TokenNeed::Optional)
}

/// Whether a missing VAULT_TOKEN (without AppRole credentials) is an error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenNeed {
    Required,
    Optional,
}

fn resolve_with(
    options: &GlobalOptions,
    environment: &dyn Fn(&str) -> Option<String>,
    token_need: TokenNeed,
) -> Result<Settings, SettingsError> {
    let (dotenv, unusable_default) = load_dotenv(options)?;
    let layers = Layers {
        environment,
        dotenv: &dotenv,
        unusable_default: unusable_default.as_ref(),
    };
    warn_if_the_dotenv_exposes_credentials(&dotenv);
    let invalid = |message: String| SettingsError::Invalid(message);

    let addr = match &options.vault_addr {
        Some(addr) => addr.clone(),
        None => layers.get("VAULT_ADDR").map(|(v, _)| v).ok_or_else(|| {
            layers.missing(format!(
                "VAULT_ADDR is not set (use --vault-addr, the environment, or {})",
                dotenv_label(options)
            ))
        })?,
    };
    let addr_setting = match options.vault_addr {
        Some(_) => "--vault-addr",
        None => "VAULT_ADDR",
    };
    check_vault_addr(&addr, addr_setting).map_err(invalid)?;

    let approle = resolve_approle(options, &layers, &dotenv)?;
    let token = match &options.vault_token_file {
        Some(path) => read_secret_file("--vault-token-file", path, "the Vault token")?,
        None => match layers.get("VAULT_TOKEN") {
            Some((token, from_env)) => {
                let token = Zeroizing::new(token);
                let source = source_name(false, from_env, &dotenv);
                check_one_line(&format!("VAULT_TOKEN from {source}"), &token)?;
                token
            }
            // AppRole login issues the token; `unseal` needs none.
            None if approle.is_some() || token_need == TokenNeed::Optional => {
                Zeroizing::new(String::new())
            }
            None => {
                return Err(layers.missing(format!(
                    "VAULT_TOKEN is not set (use --vault-token-file, the environment, or {}; \
                     or give AppRole credentials: VAULT_ROLE_ID and VAULT_SECRET_ID)",
                    dotenv_label(options)
                )))
            }
        },
    };
    let unseal_keys_file = options.unseal_keys_file.clone().or_else(|| {
        layers
            .get("VAULT_UNSEAL_KEYS_FILE")
            .map(|(v, _)| PathBuf::from(v))
    });

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

    let ca_cert = match &options.vault_cacert {
        Some(path) => Some((path.clone(), "--vault-cacert".to_string())),
        None => layers.get("VAULT_CACERT").map(|(v, from_env)| {
            let source = source_name(false, from_env, &dotenv);
            (PathBuf::from(v), format!("VAULT_CACERT from {source}"))
        }),
    };
    if let Some((path, setting)) = &ca_cert {
        check_ca_bundle(path, setting).map_err(invalid)?;
    }
    let ca_cert = ca_cert.map(|(path, _)| path);
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

    if let Some(problem) = &unusable_default {
        tracing::warn!("{problem}; the file was ignored (flags and the environment sufficed)");
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
            max_stale: Duration::from_secs(options.max_stale),
            stale_wait: timeout / 2,
            ..CachePolicy::default()
        },
        vault_concurrency: options.vault_concurrency.max(1),
        views: crate::views::ConfigSources {
            config_csv: options.config_csv.clone(),
            bots_dir: options.bots.clone(),
            // Set by the daemon once it knows where it mounts.
            mountpoint: None,
            ..crate::views::ConfigSources::default()
        },
        missing_reference: options.missing_reference,
        upkeep: crate::upkeep::UpkeepSettings {
            unseal_keys_file,
            approle,
            ..Default::default()
        },
    })
}

/// AppRole credentials: `--role-id` or VAULT_ROLE_ID, with `--secret-id-file` or
/// VAULT_SECRET_ID. Both or neither must be given.
fn resolve_approle(
    options: &GlobalOptions,
    layers: &Layers<'_>,
    dotenv: &DotEnv,
) -> Result<Option<AppRoleLogin>, SettingsError> {
    let role_id = match &options.role_id {
        Some(role_id) => Some((role_id.clone(), source_name(true, false, dotenv))),
        None => layers
            .get("VAULT_ROLE_ID")
            .map(|(v, from_env)| (v, source_name(false, from_env, dotenv))),
    };
    let secret_id = match &options.secret_id_file {
        Some(path) => Some((
            read_secret_file("--secret-id-file", path, "the AppRole secret_id")?,
            source_name(true, false, dotenv),
        )),
        None => layers
            .get("VAULT_SECRET_ID")
            .map(|(v, from_env)| (Zeroizing::new(v), source_name(false, from_env, dotenv))),
    };
    match (role_id, secret_id) {
        (None, None) => Ok(None),
        (Some((role_id, _)), Some((secret_id, source))) => {
            if secret_id.is_empty() {
                return Err(SettingsError::Invalid(format!(
                    "VAULT_SECRET_ID from {source} is empty"
                )));
            }
            check_one_line(&format!("VAULT_SECRET_ID from {source}"), &secret_id)?;
            let mount = options
                .approle_mount
                .as_deref()
                .unwrap_or(DEFAULT_APPROLE_MOUNT)
                .trim_matches('/')
                .to_string();
            if mount.is_empty() {
                return Err(SettingsError::Invalid(
                    "--approle-mount must name the AppRole auth mount, e.g. approle".into(),
                ));
            }
            Ok(Some(AppRoleLogin {
                mount,
                role_id,
                secret_id,
            }))
        }
        (Some((_, source)), None) => Err(layers.missing(format!(
            "VAULT_ROLE_ID is set ({source}) but VAULT_SECRET_ID is not \
             (use --secret-id-file, the environment, or the .env file)"
        ))),
        (None, Some((_, source))) => Err(layers.missing(format!(
            "VAULT_SECRET_ID is set ({source}) but VAULT_ROLE_ID is not \
             (use --role-id, the environment, or the .env file)"
        ))),
    }
}

fn dotenv_label(options: &GlobalOptions) -> String {
    options
        .env_file
        .as_deref()
        .unwrap_or(Path::new(DEFAULT_ENV_FILE))
        .display()
        .to_string()
}

/// Reads a file holding one secret (`what`: a token, a secret_id), trimmed of surrounding
/// blanks and line breaks, with a warning if others may read it. An empty file, or a
/// secret with a line break or another control character inside, is an error naming
/// `flag` and the file, never the content.
pub fn read_secret_file(
    flag: &str,
    path: &Path,
    what: &str,
) -> Result<Zeroizing<String>, SettingsError> {
    let shown = format!("{flag} {}", path.display());
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| SettingsError::Invalid(format!("{shown}: {e}")))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| SettingsError::Invalid(format!("{shown}: not UTF-8")))?;
    let secret = Zeroizing::new(text.trim().to_string());
    if secret.is_empty() {
        return Err(SettingsError::Invalid(format!(
            "{shown}: the file is empty"
        )));
    }
    check_one_line(&shown, &secret)?;
    warn_if_others_may_read(path, what);
    Ok(secret)
}

/// Warns when the `.env` holds VAULT_TOKEN or VAULT_SECRET_ID and others may read it.
fn warn_if_the_dotenv_exposes_credentials(dotenv: &DotEnv) {
    let held: Vec<&str> = ["VAULT_TOKEN", "VAULT_SECRET_ID"]
        .into_iter()
        .filter(|name| dotenv.get(name).is_some_and(|value| !value.is_empty()))
        .collect();
    if let (Some(path), false) = (&dotenv.path, held.is_empty()) {
        warn_if_others_may_read(path, &held.join(" and "));
    }
}

/// Warns (naming the file and its mode, never `what` itself) when `path`, which holds
/// `what`, is readable by group or others. Not refused, unlike an unseal keys file:
/// existing deployments may have such files.
fn warn_if_others_may_read(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o044 != 0 {
        let shown = path.display();
        tracing::warn!(
            "{shown} has mode {mode:04o}: group or others may read {what} in it; it is used \
             anyway, but should be private to its owner (chmod 600 {shown})"
        );
    }
}

/// A token or secret_id goes into an HTTP header or body as is: a line break or other
/// control character in it is an error naming `what` (never the secret).
fn check_one_line(what: &str, secret: &str) -> Result<(), SettingsError> {
    if secret.chars().any(char::is_control) {
        return Err(SettingsError::Invalid(format!(
            "{what} holds a line break or another control character: it must be one line \
             holding only the secret"
        )));
    }
    Ok(())
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

    #[test]
    fn empty_or_multi_line_credential_files_are_errors_naming_the_file_only() {
        let (dir, mut options) = options_with_env_file("VAULT_ADDR=http://a:1\n");
        let file = dir.path().join("credential");
        options.vault_token_file = Some(file.clone());
        let error_for = |options: &GlobalOptions, contents: &str| {
            std::fs::write(&file, contents).unwrap();
            resolve(options, &env_of(&[])).unwrap_err().to_string()
        };
        let shown = format!("--vault-token-file {}", file.display());
        assert_eq!(
            error_for(&options, "\n"),
            format!("{shown}: the file is empty")
        );
        for contents in [
            "hvs.first\nhvs.SECOND\n",
            "hvs.first\r\nSECOND",
            "hvs.a\u{7}SECOND",
        ] {
            let error = error_for(&options, contents);
            assert!(
                error.starts_with(&shown) && error.contains("line break"),
                "{error}"
            );
            assert!(
                !error.contains("SECOND") && !error.contains("hvs."),
                "{error}"
            );
        }
        options.vault_token_file = None;
        options.role_id = Some("role".into());
        options.secret_id_file = Some(file.clone());
        let error = error_for(&options, "secret-one\nSECOND\n");
        assert!(error.starts_with("--secret-id-file"), "{error}");
        assert!(!error.contains("SECOND"), "{error}");
    }

    #[test]
    fn a_multi_line_vault_token_in_the_dotenv_is_an_error_naming_the_file() {
        let (_dir, options) =
            options_with_env_file("VAULT_ADDR=http://a:1\nVAULT_TOKEN=\"hvs.a\nSECOND\"\n");
        let error = resolve(&options, &env_of(&[])).unwrap_err().to_string();
        assert!(
            error.starts_with("VAULT_TOKEN from ") && error.contains(".env holds a line break"),
            "{error}"
        );
        assert!(!error.contains("SECOND"), "{error}");
    }

    #[test]
    fn approle_credentials_make_vault_token_optional() {
        let (_dir, options) = options_with_env_file(
            "VAULT_ADDR=http://a:1\nVAULT_ROLE_ID=role-1\nVAULT_SECRET_ID=secret-1\n",
        );
        let settings = resolve(&options, &env_of(&[])).unwrap();
        let approle = settings.upkeep.approle.expect("AppRole credentials");
        assert_eq!(approle.role_id, "role-1");
        assert_eq!(approle.secret_id.as_str(), "secret-1");
        assert_eq!(approle.mount, "approle");
        assert!(settings.connection.token.is_empty());
        let (_dir, options) = options_with_env_file("VAULT_ADDR=http://a:1\n");
        let error = resolve(&options, &env_of(&[])).unwrap_err().to_string();
        assert!(
            error.contains("VAULT_TOKEN is not set") && error.contains("VAULT_ROLE_ID"),
            "{error}"
        );
    }

    #[test]
    fn half_of_the_approle_credentials_is_an_error_naming_the_missing_half() {
        let (_dir, options) =
            options_with_env_file("VAULT_ADDR=http://a:1\nVAULT_ROLE_ID=role-1\n");
        let error = resolve(&options, &env_of(&[])).unwrap_err().to_string();
        assert!(error.contains("VAULT_SECRET_ID is not"), "{error}");
        let (_dir, options) =
            options_with_env_file("VAULT_ADDR=http://a:1\nVAULT_SECRET_ID=hidden-secret\n");
        let error = resolve(&options, &env_of(&[])).unwrap_err().to_string();
        assert!(error.contains("VAULT_ROLE_ID is not"), "{error}");
        assert!(!error.contains("hidden-secret"), "{error}");
    }

    #[test]
    fn approle_flags_beat_the_environment() {
        let (dir, mut options) = options_with_env_file("VAULT_ADDR=http://a:1\n");
        let secret_path = dir.path().join("secret-id");
        std::fs::write(&secret_path, "from-file\n").unwrap();
        options.role_id = Some("from-flag".into());
        options.secret_id_file = Some(secret_path);
        options.approle_mount = Some("/ci-approle/".into());
        let environment = env_of(&[("VAULT_ROLE_ID", "from-env"), ("VAULT_SECRET_ID", "env")]);
        let approle = resolve(&options, &environment)
            .unwrap()
            .upkeep
            .approle
            .unwrap();
        assert_eq!(approle.role_id, "from-flag");
        assert_eq!(approle.secret_id.as_str(), "from-file");
        assert_eq!(approle.mount, "ci-approle");
    }

    #[test]
    fn unseal_keys_file_follows_flag_then_environment_then_dotenv() {
        let (_dir, mut options) = options_with_env_file(
            "VAULT_ADDR=http://a:1\nVAULT_TOKEN=t\nVAULT_UNSEAL_KEYS_FILE=/dotenv/keys\n",
        );
        let keys_file = |options: &GlobalOptions, environment: &[(&str, &str)]| {
            resolve(options, &env_of(environment))
                .unwrap()
                .upkeep
                .unseal_keys_file
        };
        assert_eq!(keys_file(&options, &[]), Some("/dotenv/keys".into()));
        let environment = [("VAULT_UNSEAL_KEYS_FILE", "/env/keys")];
        assert_eq!(keys_file(&options, &environment), Some("/env/keys".into()));
        options.unseal_keys_file = Some("/flag/keys".into());
        assert_eq!(keys_file(&options, &environment), Some("/flag/keys".into()));
    }

    #[test]
    fn the_unseal_command_needs_no_token() {
        let (_dir, options) = options_with_env_file("VAULT_ADDR=http://a:1\n");
        assert!(resolve_without_token(&options, &env_of(&[])).is_ok());
    }
}
