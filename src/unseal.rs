//! Owns unsealing: reads unseal keys from a keys file (`VAULT_UNSEAL_KEY_<n>=` lines or
//! botserver's `init.json`), refuses files that group or others may access, and submits keys
//! to `sys/unseal` one at a time until Vault reports `sealed: false` (first resetting progress
//! an earlier attempt left behind).
//!
//! Keys are held in [`Zeroizing`] buffers and never appear in a log line, an error or a
//! progress report: errors name the file, the line and the key's position, never its text.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::cli::GlobalOptions;
use crate::vault::http::VaultHttpStore;
use crate::vault::StoreError;

/// Name prefix of a key line in a keys file: `VAULT_UNSEAL_KEY_<n>=<key>`.
pub const KEY_LINE_PREFIX: &str = "VAULT_UNSEAL_KEY_";

/// Unseal keys in submission order. Zeroized on drop; `Debug` shows only how many.
pub struct UnsealKeys {
    keys: Vec<Zeroizing<String>>,
}

impl UnsealKeys {
    /// How many keys the file holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the file holds no key (never true for keys returned by the parsers).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in the order they are submitted. Do not print them.
    pub fn expose(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.as_str())
    }
}

impl fmt::Debug for UnsealKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnsealKeys(<{} redacted>)", self.keys.len())
    }
}

/// Why unsealing failed. Messages name files, lines and key positions, never key text.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("{path}: cannot read the unseal keys file: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "{path}: unseal keys file has mode {mode:04o}, so group or others may access it; \
         it must be private to its owner (run `chmod 600 {path}`)"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("{path}:{line}: expected `VAULT_UNSEAL_KEY_<n>=<key>`, a `#` comment or a blank line")]
    BadLine { path: String, line: usize },
    #[error("{path}:{line}: VAULT_UNSEAL_KEY_{number} is empty")]
    EmptyKey {
        path: String,
        line: usize,
        number: u64,
    },
    #[error("{path}:{line}: VAULT_UNSEAL_KEY_{number} is given twice")]
    DuplicateKey {
        path: String,
        line: usize,
        number: u64,
    },
    #[error("{path}: {reason}")]
    BadJson { path: String, reason: String },
    #[error("{path}: holds no unseal keys")]
    NoKeys { path: String },
    #[error("Vault at {addr}: {error}")]
    Vault { addr: String, error: StoreError },
    #[error("Vault at {addr} rejected unseal key #{position} of {path} (HTTP {status})")]
    Rejected {
        addr: String,
        path: String,
        position: usize,
        status: u16,
    },
    #[error(
        "Vault at {addr} is still sealed after all {submitted} unseal keys of {path} were \
         submitted (Vault reports {progress} of the keys it needs)"
    )]
    KeysRanOut {
        addr: String,
        path: String,
        submitted: usize,
        progress: u64,
    },
    #[error("Vault at {addr}: unexpected answer to {api_path}: {reason}")]
    Malformed {
        addr: String,
        api_path: String,
        reason: String,
    },
}

impl UnsealError {
    /// Whether Vault was just not answering (down, timing out): worth retrying later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            UnsealError::Vault {
                error: StoreError::Unreachable(_) | StoreError::Timeout(_) | StoreError::Server(_),
                ..
            }
        )
    }
}

/// Reads a keys file after checking that only its owner may access it.
pub fn load_unseal_keys(path: &Path) -> Result<UnsealKeys, UnsealError> {
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| UnsealError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(UnsealError::TooOpen { path: shown, mode });
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(unreadable)?);
    parse_unseal_keys(&shown, &bytes)
}

/// Parses a keys file's content; `path` is only used in error messages.
///
/// JSON (botserver's or Vault's `init.json`) is recognised by a leading `{`; anything else is
/// read as `VAULT_UNSEAL_KEY_<n>=<key>` lines, ordered by `n`.
pub fn parse_unseal_keys(path: &str, bytes: &[u8]) -> Result<UnsealKeys, UnsealError> {
    let text = std::str::from_utf8(bytes).map_err(|e| UnsealError::BadJson {
        path: path.to_string(),
        reason: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ),
    })?;
    let text = text.trim_start_matches('\u{feff}');
    let keys = if text.trim_start().starts_with('{') {
        parse_init_json(path, text)?
    } else {
        parse_key_lines(path, text)?
    };
    if keys.is_empty() {
        return Err(UnsealError::NoKeys {
            path: path.to_string(),
        });
    }
    Ok(UnsealKeys { keys })
}

fn parse_key_lines(path: &str, text: &str) -> Result<Vec<Zeroizing<String>>, UnsealError> {
    let mut numbered: Vec<(u64, Zeroizing<String>)> = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw_line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let bad_line = || UnsealError::BadLine {
            path: path.to_string(),
            line,
        };
        let (name, key) = trimmed.split_once('=').ok_or_else(bad_line)?;
        let number = name
            .trim()
            .strip_prefix(KEY_LINE_PREFIX)
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or_else(bad_line)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(UnsealError::EmptyKey {
                path: path.to_string(),
                line,
                number,
            });
        }
        if numbered.iter().any(|(n, _)| *n == number) {
            return Err(UnsealError::DuplicateKey {
                path: path.to_string(),
                line,
                number,
            });
        }
        numbered.push((number, Zeroizing::new(key.to_string())));
    }
    numbered.sort_by_key(|(number, _)| *number);
    Ok(numbered.into_iter().map(|(_, key)| key).collect())
}

/// The key lists of botserver's `init.json` (`vault operator init -format=json`) and of the
/// `sys/init` answer. Everything else in the file (the root token) is skipped unread.
#[derive(Default, Deserialize, Zeroize, ZeroizeOnDrop)]
struct InitJson {
    #[serde(default)]
    unseal_keys_hex: Vec<String>,
    #[serde(default)]
    unseal_keys_b64: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    keys_base64: Vec<String>,
}

fn parse_init_json(path: &str, text: &str) -> Result<Vec<Zeroizing<String>>, UnsealError> {
    let parsed: InitJson = serde_json::from_str(text).map_err(|e| UnsealError::BadJson {
        path: path.to_string(),
        // Only the position: serde's own message may quote the offending text.
        reason: format!(
            "not a valid init.json ({} error at line {}, column {})",
            match e.classify() {
                serde_json::error::Category::Io => "read",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "type",
                serde_json::error::Category::Eof => "unexpected end of file",
            },
            e.line(),
            e.column()
        ),
    })?;
    // Vault accepts either form in `key`; hex first, as botserver's own unseal does.
    let chosen = [
        &parsed.unseal_keys_hex,
        &parsed.unseal_keys_b64,
        &parsed.keys,
        &parsed.keys_base64,
    ]
    .into_iter()
    .find(|list| !list.is_empty());
    let Some(chosen) = chosen else {
        return Err(UnsealError::BadJson {
            path: path.to_string(),
            reason: "JSON without `unseal_keys_hex` or `unseal_keys_b64`".into(),
        });
    };
    let mut keys = Vec::with_capacity(chosen.len());
    for (index, key) in chosen.iter().enumerate() {
        let key = key.trim();
        if key.is_empty() {
            return Err(UnsealError::BadJson {
                path: path.to_string(),
                reason: format!("unseal key #{} is empty", index + 1),
            });
        }
        keys.push(Zeroizing::new(key.to_string()));
    }
    Ok(keys)
}

/// What `sys/seal-status` and `sys/unseal` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealStatus {
    pub sealed: bool,
    /// Keys submitted towards the current unseal attempt (0 once unsealed).
    pub progress: u64,
    /// Vault's `t` (the threshold) and `n` (the share count), as answered.
    pub t: Option<u64>,
    pub n: Option<u64>,
}

impl SealStatus {
    fn from_answer(body: &Value) -> Option<SealStatus> {
        Some(SealStatus {
            sealed: body.get("sealed")?.as_bool()?,
            progress: body.get("progress").and_then(Value::as_u64).unwrap_or(0),
            t: body.get("t").and_then(Value::as_u64),
            n: body.get("n").and_then(Value::as_u64),
        })
    }

    /// The number of keys needed, for display only: Vault answers `t` (threshold) <= `n`
    /// (shares), but RustyVault 0.2.1 swaps them, so the smaller of the two is the threshold
    /// either way. Unsealing itself never relies on it: it stops on `sealed: false`.
    pub fn threshold_for_display(&self) -> Option<u64> {
        match (self.t, self.n) {
            (Some(t), Some(n)) if t > 0 && n > 0 => Some(t.min(n)),
            (Some(one), None) | (None, Some(one)) if one > 0 => Some(one),
            _ => None,
        }
    }
}

/// How an unseal ended when it succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsealOutcome {
    /// Vault was not sealed; no key was sent.
    AlreadyUnsealed,
    /// Vault reported `sealed: false` after this many of our keys.
    Unsealed { keys_submitted: usize },
}

/// `GET sys/seal-status`.
pub async fn seal_status(store: &VaultHttpStore) -> Result<SealStatus, UnsealError> {
    let api_path = "sys/seal-status";
    let answer = store
        .request_json_without_token("GET", api_path, None)
        .await
        .map_err(|error| UnsealError::Vault {
            addr: store.address().to_string(),
            error,
        })?;
    let malformed = |reason: &str| UnsealError::Malformed {
        addr: store.address().to_string(),
        api_path: api_path.to_string(),
        reason: reason.to_string(),
    };
    let answer = answer.ok_or_else(|| malformed("not found (HTTP 404)"))?;
    SealStatus::from_answer(&answer).ok_or_else(|| malformed("no boolean `sealed`"))
}

/// Unseals Vault if it is sealed: submits `keys` one at a time until Vault answers
/// `sealed: false`. `on_progress` sees every answer to `sys/unseal` (never a key).
/// `keys_path` names the keys file in errors.
pub async fn unseal_vault(
    store: &VaultHttpStore,
    keys: &UnsealKeys,
    keys_path: &Path,
    mut on_progress: impl FnMut(&SealStatus),
) -> Result<UnsealOutcome, UnsealError> {
    let status = seal_status(store).await?;
    if !status.sealed {
        return Ok(UnsealOutcome::AlreadyUnsealed);
    }
    if status.progress == 0 {
        return submit_keys(store, keys, keys_path, &mut on_progress).await;
    }
    // Keys submitted earlier (a wrong one, an attempt given up) would be combined with ours
    // and make Vault reject them. Vault forgets them on `reset`; a server without it
    // (RustyVault 0.2.1) forgets them when the combination fails, so one more pass then
    // starts clean. A keys file that is really wrong fails the second pass too.
    reset_unseal_progress(store).await;
    match submit_keys(store, keys, keys_path, &mut on_progress).await {
        Err(UnsealError::Rejected { .. }) => {
            submit_keys(store, keys, keys_path, &mut on_progress).await
        }
        outcome => outcome,
    }
}

/// Submits `keys` one at a time until Vault answers `sealed: false`.
async fn submit_keys(
    store: &VaultHttpStore,
    keys: &UnsealKeys,
    keys_path: &Path,
    on_progress: &mut impl FnMut(&SealStatus),
) -> Result<UnsealOutcome, UnsealError> {
    let addr = store.address().to_string();
    let shown_path = keys_path.display().to_string();
    let mut progress = 0;
    for (index, key) in keys.expose().enumerate() {
        let position = index + 1;
        let mut body = json!({ "key": key });
        let answer = store
            .request_json_without_token("PUT", "sys/unseal", Some(&body))
            .await;
        if let Some(Value::String(copy)) = body.get_mut("key") {
            copy.zeroize();
        }
        let answer = match answer {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                return Err(UnsealError::Malformed {
                    addr,
                    api_path: "sys/unseal".into(),
                    reason: "not found (HTTP 404)".into(),
                })
            }
            Err(StoreError::Server(code)) => {
                // Someone else may have finished unsealing meanwhile (RustyVault then
                // answers 400 "is unsealed"); otherwise Vault refused this key (400, or
                // RustyVault's 500 for a key that is not hex).
                if matches!(
                    seal_status(store).await,
                    Ok(SealStatus { sealed: false, .. })
                ) {
                    return Ok(UnsealOutcome::Unsealed {
                        keys_submitted: position - 1,
                    });
                }
                return Err(UnsealError::Rejected {
                    addr,
                    path: shown_path,
                    position,
                    status: code,
                });
            }
            Err(error) => return Err(UnsealError::Vault { addr, error }),
        };
        let answered = SealStatus::from_answer(&answer).ok_or_else(|| UnsealError::Malformed {
            addr: addr.clone(),
            api_path: "sys/unseal".into(),
            reason: "no boolean `sealed`".into(),
        })?;
        on_progress(&answered);
        if !answered.sealed {
            return Ok(UnsealOutcome::Unsealed {
                keys_submitted: position,
            });
        }
        progress = answered.progress;
    }
    Err(UnsealError::KeysRanOut {
        addr,
        path: shown_path,
        submitted: keys.len(),
        progress,
    })
}

/// `PUT sys/unseal {"reset": true}`: forgets keys submitted earlier (a wrong key, an attempt
/// given up), which Vault would otherwise combine with ours and reject. A server that refuses
/// the reset is unsealed as it is: the error is only logged.
async fn reset_unseal_progress(store: &VaultHttpStore) {
    let reset = json!({ "reset": true });
    match store
        .request_json_without_token("PUT", "sys/unseal", Some(&reset))
        .await
    {
        Ok(_) => tracing::debug!("unseal progress left by an earlier attempt was reset"),
        Err(error) => tracing::debug!(%error, "unseal progress could not be reset"),
    }
}

/// `gbo-fs unseal [--keys-file F]`: unseals once, reporting progress on stderr (never a
/// key). The keys file is `keys_file`, else `--unseal-keys-file` / VAULT_UNSEAL_KEYS_FILE;
/// no token is needed. `Ok` when Vault ends up unsealed (also when it already was).
pub fn run_command(
    options: &GlobalOptions,
    keys_file: Option<&Path>,
    environment: &dyn Fn(&str) -> Option<String>,
) -> Result<UnsealOutcome, String> {
    let settings =
        crate::settings::resolve_without_token(options, environment).map_err(|e| e.to_string())?;
    let keys_path = keys_file
        .map(Path::to_path_buf)
        .or(settings.upkeep.unseal_keys_file)
        .ok_or(
            "no unseal keys file: use --keys-file, --unseal-keys-file or VAULT_UNSEAL_KEYS_FILE",
        )?;
    let store = VaultHttpStore::new(settings.connection, &settings.prefix, settings.overrides)?;
    let runtime = crate::daemon::runtime().map_err(|e| e.to_string())?;
    runtime.block_on(unseal_reporting_to_stderr(&store, &keys_path))
}

async fn unseal_reporting_to_stderr(
    store: &VaultHttpStore,
    keys_path: &Path,
) -> Result<UnsealOutcome, String> {
    let keys = load_unseal_keys(keys_path).map_err(|e| e.to_string())?;
    let addr = store.address().to_string();
    let outcome = unseal_vault(store, &keys, keys_path, |status| {
        if status.sealed {
            eprintln!("unseal: {}", progress_line(status));
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    match outcome {
        UnsealOutcome::AlreadyUnsealed => eprintln!("unseal: Vault at {addr} is already unsealed"),
        UnsealOutcome::Unsealed { keys_submitted } => eprintln!(
            "unseal: Vault at {addr} is unsealed ({keys_submitted} key{} submitted)",
            if keys_submitted == 1 { "" } else { "s" }
        ),
    }
    Ok(outcome)
}

/// One progress line, from what Vault answered: `2/3 keys submitted`, `unsealed`.
pub fn progress_line(status: &SealStatus) -> String {
    if !status.sealed {
        return "unsealed".into();
    }
    match status.threshold_for_display() {
        Some(threshold) => format!("{}/{threshold} keys submitted", status.progress),
        None => format!("{} keys submitted", status.progress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys_of(text: &str) -> Vec<String> {
        parse_unseal_keys("keys.env", text.as_bytes())
            .unwrap()
            .expose()
            .map(str::to_string)
            .collect()
    }

    fn error_of(text: &str) -> String {
        parse_unseal_keys("keys.env", text.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn key_lines_are_ordered_by_number_not_by_position() {
        let text = "# vault keys\n\nVAULT_UNSEAL_KEY_10=ten\nVAULT_UNSEAL_KEY_2=two\r\n\
                    VAULT_UNSEAL_KEY_1= one \n";
        assert_eq!(keys_of(text), vec!["one", "two", "ten"]);
    }

    #[test]
    fn a_key_is_everything_after_the_first_equals_sign_trimmed() {
        assert_eq!(keys_of("VAULT_UNSEAL_KEY_1=abc==\n"), vec!["abc=="]);
        assert_eq!(keys_of("  VAULT_UNSEAL_KEY_1 =\tq/+=x \r\n"), vec!["q/+=x"]);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line_without_its_content() {
        let error = error_of("VAULT_UNSEAL_KEY_1=a\nsecret-looking-junk\n");
        assert!(error.contains("keys.env:2"), "{error}");
        assert!(!error.contains("secret-looking-junk"), "{error}");
        let error = error_of("VAULT_UNSEAL_KEY_x=leaked\n");
        assert!(
            error.contains("keys.env:1") && !error.contains("leaked"),
            "{error}"
        );
        let error = error_of("OTHER=leaked\n");
        assert!(
            error.contains("keys.env:1") && !error.contains("leaked"),
            "{error}"
        );
    }

    #[test]
    fn empty_duplicate_and_missing_keys_are_errors() {
        assert!(error_of("VAULT_UNSEAL_KEY_1=\n").contains("keys.env:1"));
        let error = error_of("VAULT_UNSEAL_KEY_1=a\nVAULT_UNSEAL_KEY_1=b\n");
        assert!(
            error.contains("keys.env:2") && error.contains("twice"),
            "{error}"
        );
        assert!(error_of("# nothing\n\n").contains("no unseal keys"));
        assert!(error_of("").contains("no unseal keys"));
    }

    #[test]
    fn init_json_prefers_hex_keys_and_falls_back_to_base64() {
        let both =
            r#"{"unseal_keys_b64":["b1","b2"],"unseal_keys_hex":["h1","h2"],"root_token":"hvs.x"}"#;
        assert_eq!(keys_of(both), vec!["h1", "h2"]);
        let b64_only = r#" {"unseal_keys_b64":["b1"],"root_token":"hvs.x"}"#;
        assert_eq!(keys_of(b64_only), vec!["b1"]);
        let sys_init = r#"{"keys":["k1"],"root_token":"r"}"#;
        assert_eq!(keys_of(sys_init), vec!["k1"]);
    }

    #[test]
    fn broken_init_json_errors_never_quote_the_file() {
        let error = error_of(r#"{"unseal_keys_hex": "topsecretkey"}"#);
        assert!(
            error.contains("keys.env") && error.contains("line 1"),
            "{error}"
        );
        assert!(!error.contains("topsecretkey"), "{error}");
        let error = error_of(r#"{"root_token": "hvs.topsecret"}"#);
        assert!(!error.contains("topsecret"), "{error}");
        assert!(error_of("{").contains("keys.env"));
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let keys = parse_unseal_keys("f", b"VAULT_UNSEAL_KEY_1=hidden-key").unwrap();
        let printed = format!("{keys:?}");
        assert!(
            !printed.contains("hidden-key") && printed.contains('1'),
            "{printed}"
        );
    }

    #[test]
    fn files_readable_by_group_or_others_are_refused_with_a_chmod_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unseal.env");
        std::fs::write(&path, "VAULT_UNSEAL_KEY_1=k\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = load_unseal_keys(&path).unwrap_err().to_string();
            assert!(
                error.contains(&path.display().to_string())
                    && error.contains(&format!("{mode:04o}"))
                    && error.contains("chmod 600"),
                "{error}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_unseal_keys(&path).unwrap().len(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load_unseal_keys(&path).unwrap().len(), 1);
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = load_unseal_keys(Path::new("/nonexistent/unseal.env"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/unseal.env"), "{error}");
    }

    #[test]
    fn the_displayed_threshold_is_the_smaller_of_t_and_n() {
        let vault = SealStatus {
            sealed: true,
            progress: 2,
            t: Some(3),
            n: Some(5),
        };
        let rusty_vault = SealStatus {
            t: Some(5),
            n: Some(3),
            ..vault
        };
        assert_eq!(progress_line(&vault), "2/3 keys submitted");
        assert_eq!(progress_line(&rusty_vault), "2/3 keys submitted");
        let unknown = SealStatus {
            t: None,
            n: None,
            ..vault
        };
        assert_eq!(progress_line(&unknown), "2 keys submitted");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            if let Err(error) = parse_unseal_keys("f", &bytes) {
                let _ = error.to_string();
            }
        }

        #[test]
        fn arbitrary_key_lines_never_panic(text in "(VAULT_UNSEAL_KEY_[0-9]{0,3}=?[ -~]{0,12}\r?\n|#[ -~]{0,8}\n|\n|[ -~]{0,16}\n){0,8}") {
            match parse_unseal_keys("f", text.as_bytes()) {
                Ok(keys) => prop_assert!(!keys.is_empty()),
                Err(error) => prop_assert!(error.to_string().starts_with("f")),
            }
        }
    }
}
