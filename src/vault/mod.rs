//! The secret-store abstraction: what gbo-fs needs from Vault, behind one trait.
//!
//! Paths given to a [`SecretStore`] are *logical* paths such as `gbo/llm`: the
//! namespace prefix plus the secret's path below it. How a logical path maps to a
//! KV mount (and KV version) is the implementation's business; see [`layout`].

pub mod http;
pub mod kv_answer;
pub mod layout;
pub mod memory;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

/// A secret value, already rendered to the bytes a file shows. Zeroized on drop.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// One Vault secret: every key of one path, read in one request.
#[derive(Default)]
pub struct Secret {
    /// Key name to rendered value (see [`render_json_value`]).
    pub values: BTreeMap<String, SecretBytes>,
    /// KV v2 version number, when the engine has versions.
    pub version: Option<u64>,
    /// KV v2 `created_time` of this version, when known.
    pub created_time: Option<String>,
}

impl fmt::Debug for Secret {
    // Never print values: only the key names and the version.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .field("version", &self.version)
            .finish()
    }
}

/// Two secrets are equal when they hold the same keys and values.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.values == other.values
    }
}

impl Secret {
    /// Builds a secret from a JSON object (`.data` for KV v1, `.data.data` for KV v2).
    pub fn from_json_object(object: &serde_json::Map<String, serde_json::Value>) -> Secret {
        let values = object
            .iter()
            .map(|(key, value)| (key.clone(), render_json_value(value)))
            .collect();
        Secret {
            values,
            version: None,
            created_time: None,
        }
    }
}

/// File content for a JSON value: strings as they are, everything else compact JSON.
pub fn render_json_value(value: &serde_json::Value) -> SecretBytes {
    match value {
        serde_json::Value::String(text) => Zeroizing::new(text.as_bytes().to_vec()),
        other => Zeroizing::new(serde_json::to_vec(other).unwrap_or_default()),
    }
}

/// One entry of a Vault LIST: a secret, a folder, or (rarely) both with the same name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListEntry {
    pub name: String,
    pub is_folder: bool,
}

impl ListEntry {
    /// Parses Vault's LIST key: a trailing `/` marks a folder.
    pub fn from_vault_key(key: &str) -> ListEntry {
        match key.strip_suffix('/') {
            Some(name) => ListEntry {
                name: name.to_string(),
                is_folder: true,
            },
            None => ListEntry {
                name: key.to_string(),
                is_folder: false,
            },
        }
    }
}

/// What Vault said about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VaultStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub version: Option<String>,
}

/// Why a store operation failed. Messages never contain secret values or tokens.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Vault answered 403: the token may not read this path.
    #[error("permission denied by Vault")]
    PermissionDenied,
    /// Vault could not be reached (connection refused, DNS, TLS).
    #[error("Vault unreachable: {0}")]
    Unreachable(String),
    /// Vault is sealed.
    #[error("Vault is sealed")]
    Sealed,
    /// Vault answered with a server error.
    #[error("Vault server error (HTTP {0})")]
    Server(u16),
    /// Vault answered something that is not a well-formed KV response.
    #[error("malformed response from Vault: {0}")]
    Malformed(String),
    /// Vault did not answer within the configured timeout.
    #[error("Vault did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The secret is larger than the configured cap.
    #[error("secret larger than the {0}-byte limit")]
    TooLarge(usize),
    /// Vault has nothing mounted where the KV layout says: a wrong `--kv-mount`, or a mount
    /// disabled since it was detected.
    #[error("Vault has no KV mount `{0}/` (check --kv-mount)")]
    NoSuchMount(String),
    /// The KV mount for the namespace could not be determined.
    #[error("cannot determine the KV mount: {0}")]
    Layout(String),
    /// A logical path with a segment a URL would resolve (`..`, `.`) or collapse
    /// (empty); it is refused before any request.
    #[error("path segment `{segment}` is not allowed in `{path}`")]
    PathSegment { path: String, segment: String },
}

impl StoreError {
    /// Transient errors are worth retrying and may be bridged by a stale value;
    /// a 403 is authoritative.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            StoreError::PermissionDenied | StoreError::PathSegment { .. }
        )
    }

    /// Whether the error says Vault as a whole is not answering (down, sealed,
    /// slow, a gateway error) rather than that one path failed (a 500 on it, a
    /// malformed or oversized secret): only these make an outage.
    pub fn means_vault_is_down(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable(_)
                | StoreError::Sealed
                | StoreError::Timeout(_)
                | StoreError::Server(502..=504)
        )
    }

    /// The errno a file operation returns for this error.
    pub fn errno(&self) -> i32 {
        match self {
            StoreError::PermissionDenied => libc::EACCES,
            StoreError::PathSegment { .. } => libc::EINVAL,
            _ => libc::EIO,
        }
    }
}

/// Refuses a logical path that could leave the namespace once it is a URL.
///
/// Every other character is percent-encoded on the way to Vault, but URL parsing
/// resolves `.` and `..` segments (even encoded as `%2e`), so `gbo/../auth/token/
/// lookup-self` would read the daemon's own token; an empty segment would name a
/// different path than the one written. The empty path (the mount's top) is allowed.
pub fn check_logical_path(path: &str) -> Result<(), StoreError> {
    if path.is_empty() {
        return Ok(());
    }
    match path
        .split('/')
        .find(|segment| segment.is_empty() || *segment == "." || *segment == "..")
    {
        Some(segment) => Err(StoreError::PathSegment {
            path: path.to_string(),
            segment: segment.to_string(),
        }),
        None => Ok(()),
    }
}

/// The operations gbo-fs needs from a secret store.
///
/// `Ok(None)` means "not found" (HTTP 404); it is not an error.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Reads every key of the secret at a logical path such as `gbo/llm`.
    async fn read_secret(&self, path: &str) -> Result<Option<Secret>, StoreError>;
    /// Lists the folder at a logical path such as `gbo` or `gbo/bots`.
    async fn list_folder(&self, path: &str) -> Result<Option<Vec<ListEntry>>, StoreError>;
    /// Reports seal and version status.
    async fn status(&self) -> Result<VaultStatus, StoreError>;
    /// A one-line description of where secrets come from, for logs (never the token).
    fn describe(&self) -> String;
}

#[async_trait]
impl<T: SecretStore + ?Sized> SecretStore for Arc<T> {
    async fn read_secret(&self, path: &str) -> Result<Option<Secret>, StoreError> {
        (**self).read_secret(path).await
    }
    async fn list_folder(&self, path: &str) -> Result<Option<Vec<ListEntry>>, StoreError> {
        (**self).list_folder(path).await
    }
    async fn status(&self) -> Result<VaultStatus, StoreError> {
        (**self).status().await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_render_verbatim_and_other_json_renders_compact() {
        assert_eq!(&render_json_value(&json!("a b\n"))[..], b"a b\n");
        assert_eq!(&render_json_value(&json!(5432))[..], b"5432");
        assert_eq!(&render_json_value(&json!(true))[..], b"true");
        assert_eq!(
            &render_json_value(&json!({"a": [1, 2]}))[..],
            b"{\"a\":[1,2]}"
        );
        assert_eq!(&render_json_value(&json!(null))[..], b"null");
    }

    #[test]
    fn secret_debug_output_shows_keys_but_never_values() {
        let secret =
            Secret::from_json_object(json!({"openai_key": "sk-very-secret"}).as_object().unwrap());
        let printed = format!("{secret:?}");
        assert!(printed.contains("openai_key"));
        assert!(!printed.contains("sk-very-secret"));
    }

    #[test]
    fn paths_with_dot_dot_dot_or_empty_segments_are_refused() {
        for bad in [
            "gbo/../auth/token/lookup-self",
            "gbo/llm/../../other",
            "..",
            "gbo/./llm",
            "gbo//llm",
            "gbo/llm/",
            "/gbo/llm",
        ] {
            let error = check_logical_path(bad).unwrap_err();
            assert!(matches!(error, StoreError::PathSegment { .. }), "{bad}");
            assert!(!error.is_transient());
            assert_eq!(error.errno(), libc::EINVAL);
        }
        for good in [
            "",
            "gbo",
            "gbo/llm",
            "gbo/a.b/..c",
            "gbo/...",
            "gbo/.hidden",
        ] {
            assert_eq!(check_logical_path(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn list_keys_with_trailing_slash_are_folders() {
        assert_eq!(
            ListEntry::from_vault_key("bots/"),
            ListEntry {
                name: "bots".into(),
                is_folder: true
            }
        );
        assert!(!ListEntry::from_vault_key("llm").is_folder);
    }
}
