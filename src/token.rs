//! Owns the Vault token's lifecycle calls: checking it at start (`auth/token/lookup-self`),
//! renewing it (`auth/token/renew-self`) and obtaining one by AppRole login
//! (`auth/<mount>/login`). The daemon's schedule for them lives in [`crate::upkeep`].
//!
//! Tokens and secret IDs are never logged or put in an error; request bodies that carry a
//! secret ID and answers that carry a token are zeroized after use.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::vault::http::VaultHttpStore;
use crate::vault::StoreError;

/// Default mount path of the AppRole auth method.
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";

/// The start-up error for a token Vault does not know.
pub const INVALID_TOKEN_MESSAGE: &str =
    "the Vault token is not valid (Vault answered 403 to lookup-self)";

/// The start-up error for a token Vault cannot even parse, e.g. an empty one.
pub const MALFORMED_TOKEN_MESSAGE: &str =
    "the Vault token is not valid: empty or malformed (Vault answered 400 to lookup-self)";

/// The user's message when lookup-self refused the token: 403 (unknown, expired, revoked)
/// or 400 (empty, malformed). `None` for every other failure.
pub fn token_refusal(error: &StoreError) -> Option<&'static str> {
    match error {
        StoreError::PermissionDenied => Some(INVALID_TOKEN_MESSAGE),
        StoreError::Server(400) => Some(MALFORMED_TOKEN_MESSAGE),
        _ => None,
    }
}

/// AppRole credentials (`VAULT_ROLE_ID` + `VAULT_SECRET_ID`). `Debug` shows only the mount.
#[derive(Clone)]
pub struct AppRoleLogin {
    /// Mount path of the auth method, without slashes (default `approle`).
    pub mount: String,
    pub role_id: String,
    pub secret_id: Zeroizing<String>,
}

impl fmt::Debug for AppRoleLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRoleLogin")
            .field("mount", &self.mount)
            .field("role_id", &"<redacted>")
            .field("secret_id", &"<redacted>")
            .finish()
    }
}

impl AppRoleLogin {
    /// `auth/<mount>/login`.
    pub fn login_path(&self) -> String {
        format!("auth/{}/login", self.mount.trim_matches('/'))
    }
}

/// How long the current token lives and whether Vault will extend it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLease {
    /// Time left when Vault answered; zero means "never expires" (e.g. a root token).
    pub ttl: Duration,
    pub renewable: bool,
}

impl TokenLease {
    /// A token that never expires needs no upkeep.
    pub fn never_expires(&self) -> bool {
        self.ttl.is_zero()
    }
}

/// The lease assumed when Vault has no lookup-self (or gives no usable answer): nothing to
/// renew, nothing to warn about.
pub const UNKNOWN_LEASE: TokenLease = TokenLease {
    ttl: Duration::ZERO,
    renewable: false,
};

/// `GET auth/token/lookup-self`: the current token's lease. `Ok(None)` when the server has no
/// such endpoint (404); a 403 is `StoreError::PermissionDenied`.
pub async fn lookup_self(store: &VaultHttpStore) -> Result<Option<TokenLease>, StoreError> {
    let api_path = "auth/token/lookup-self";
    let Some(mut answer) = store.request_json("GET", api_path, None).await? else {
        return Ok(None);
    };
    let data = answer
        .get("data")
        .ok_or_else(|| StoreError::Malformed(format!("answer to {api_path} has no `data`")))?;
    let lease = TokenLease {
        ttl: Duration::from_secs(data.get("ttl").and_then(Value::as_u64).unwrap_or(0)),
        renewable: data
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    forget_token_id(&mut answer);
    Ok(Some(lease))
}

/// Wipes `data.id`, the token itself, out of a lookup-self answer before it is dropped.
fn forget_token_id(answer: &mut Value) {
    if let Some(Value::String(id)) = answer.pointer_mut("/data/id") {
        id.zeroize();
    }
}

/// `POST auth/token/renew-self`: extends the current token; returns its new lease.
pub async fn renew_self(store: &VaultHttpStore) -> Result<TokenLease, StoreError> {
    let api_path = "auth/token/renew-self";
    let mut answer = store
        .request_json("POST", api_path, Some(&json!({})))
        .await?
        .ok_or_else(|| StoreError::Malformed(format!("{api_path} not found (HTTP 404)")))?;
    let lease = lease_of_auth(&answer, api_path);
    forget_client_token(&mut answer);
    lease
}

/// `POST auth/<mount>/login` with the AppRole credentials; installs the issued token in
/// `store` and returns its lease.
pub async fn approle_login(
    store: &VaultHttpStore,
    login: &AppRoleLogin,
) -> Result<TokenLease, StoreError> {
    let api_path = login.login_path();
    let mut body = json!({
        "role_id": login.role_id.as_str(),
        "secret_id": login.secret_id.as_str(),
    });
    let answer = store
        .request_json_without_token("POST", &api_path, Some(&body))
        .await;
    if let Some(Value::String(copy)) = body.get_mut("secret_id") {
        copy.zeroize();
    }
    let mut answer =
        answer?.ok_or_else(|| StoreError::Malformed(format!("{api_path} not found (HTTP 404)")))?;
    let lease = lease_of_auth(&answer, &api_path);
    let token = answer
        .get_mut("auth")
        .and_then(|auth| auth.get_mut("client_token"))
        .map(Value::take);
    let token = match token {
        Some(Value::String(token)) if !token.is_empty() => Zeroizing::new(token),
        _ => {
            return Err(StoreError::Malformed(format!(
                "answer to {api_path} has no `auth.client_token`"
            )))
        }
    };
    let lease = lease?;
    store.set_token(token).await;
    Ok(lease)
}

/// `auth.lease_duration` and `auth.renewable` of a login or renewal answer.
fn lease_of_auth(answer: &Value, api_path: &str) -> Result<TokenLease, StoreError> {
    let auth = answer
        .get("auth")
        .filter(|auth| auth.is_object())
        .ok_or_else(|| StoreError::Malformed(format!("answer to {api_path} has no `auth`")))?;
    Ok(TokenLease {
        ttl: Duration::from_secs(
            auth.get("lease_duration")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        ),
        renewable: auth
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Wipes `auth.client_token` out of an answer before it is dropped.
fn forget_client_token(answer: &mut Value) {
    if let Some(Value::String(token)) = answer
        .get_mut("auth")
        .and_then(|auth| auth.get_mut("client_token"))
    {
        token.zeroize();
    }
}

/// Whether an error only says "Vault cannot answer right now" (down, sealed, slow).
pub fn vault_unavailable(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Unreachable(_) | StoreError::Sealed | StoreError::Timeout(_)
    )
}

/// The start-up token step of `mount` and the one-shot commands: logs in with AppRole when
/// configured, else checks the token with lookup-self.
///
/// `Ok(Ok(lease))`: the token is good (or Vault cannot tell: [`UNKNOWN_LEASE`]).
/// `Ok(Err(reason))`: Vault is down, sealed or slow; check later. `Err`: a clear message for
/// the user, e.g. [`INVALID_TOKEN_MESSAGE`] for a 403.
pub async fn authenticate_at_start(
    store: &VaultHttpStore,
    approle: Option<&AppRoleLogin>,
) -> Result<Result<TokenLease, StoreError>, String> {
    if let Some(login) = approle {
        return match approle_login(store, login).await {
            Ok(lease) => Ok(Ok(lease)),
            Err(error) if vault_unavailable(&error) => Ok(Err(error)),
            Err(error) => Err(approle_refusal(login, &error)),
        };
    }
    match check_token(store).await {
        TokenCheck::Usable(lease) => Ok(Ok(lease)),
        TokenCheck::Refused(message) => Err(message.to_string()),
        TokenCheck::Unavailable(error) => Ok(Err(error)),
    }
}

/// What lookup-self says about the current token.
#[derive(Debug)]
pub enum TokenCheck {
    /// Valid, or the server cannot tell (no lookup-self, an odd answer: [`UNKNOWN_LEASE`]).
    Usable(TokenLease),
    /// Refused (403 or 400): the message for the user.
    Refused(&'static str),
    /// Vault is down, sealed or slow: check again later.
    Unavailable(StoreError),
}

/// Checks the current token with lookup-self.
pub async fn check_token(store: &VaultHttpStore) -> TokenCheck {
    match lookup_self(store).await {
        Ok(Some(lease)) => TokenCheck::Usable(lease),
        Ok(None) => TokenCheck::Usable(UNKNOWN_LEASE),
        Err(error) if vault_unavailable(&error) => TokenCheck::Unavailable(error),
        Err(error) => match token_refusal(&error) {
            Some(message) => TokenCheck::Refused(message),
            None => {
                tracing::debug!(%error, "lookup-self gave no answer; the token is not checked");
                TokenCheck::Usable(UNKNOWN_LEASE)
            }
        },
    }
}

/// The token step of the one-shot commands (`get`, `ls`, `render`, `check`, `policy`,
/// `migrate`), inside their runtime. A refused token is an error; so is a Vault that let the
/// check time out, since the command itself would wait as long again: the error names the
/// address. Down or sealed is left to the command, which reports it at once.
pub async fn authenticate_command(
    store: &VaultHttpStore,
    approle: Option<&AppRoleLogin>,
) -> Result<(), String> {
    match authenticate_at_start(store, approle).await? {
        Err(error @ StoreError::Timeout(_)) => Err(format!("{}: {error}", store.address())),
        _ => Ok(()),
    }
}

/// [`authenticate_command`] on a one-shot command's runtime.
pub fn authenticate_one_shot(
    store: &VaultHttpStore,
    approle: Option<&AppRoleLogin>,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), String> {
    runtime.block_on(authenticate_command(store, approle))
}

/// The message for a refused AppRole login (wrong role_id/secret_id, missing auth method).
pub fn approle_refusal(login: &AppRoleLogin, error: &StoreError) -> String {
    let status = match error {
        StoreError::PermissionDenied => "HTTP 403".to_string(),
        StoreError::Server(code) => format!("HTTP {code}"),
        other => other.to_string(),
    };
    format!(
        "AppRole login at {} was refused ({status}); check VAULT_ROLE_ID, VAULT_SECRET_ID and \
         --approle-mount",
        login.login_path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approle_debug_output_redacts_the_credentials() {
        let login = AppRoleLogin {
            mount: "approle".into(),
            role_id: "role-1234".into(),
            secret_id: Zeroizing::new("secret-5678".into()),
        };
        let printed = format!("{login:?}");
        assert!(!printed.contains("role-1234") && !printed.contains("secret-5678"));
        assert_eq!(login.login_path(), "auth/approle/login");
    }

    #[test]
    fn leases_come_from_the_auth_block() {
        let answer =
            json!({"auth": {"client_token": "t", "lease_duration": 60, "renewable": true}});
        assert_eq!(
            lease_of_auth(&answer, "p").unwrap(),
            TokenLease {
                ttl: Duration::from_secs(60),
                renewable: true
            }
        );
        assert!(lease_of_auth(&json!({"auth": null}), "p").is_err());
    }

    #[test]
    fn refusal_messages_name_the_login_path_but_not_the_credentials() {
        let login = AppRoleLogin {
            mount: "/ci-approle/".into(),
            role_id: "role-1234".into(),
            secret_id: Zeroizing::new("secret-5678".into()),
        };
        let message = approle_refusal(&login, &StoreError::Server(400));
        assert!(message.contains("auth/ci-approle/login") && message.contains("HTTP 400"));
        assert!(!message.contains("role-1234") && !message.contains("secret-5678"));
    }

    #[test]
    fn the_token_is_wiped_out_of_a_lookup_self_answer() {
        let mut answer = json!({"data": {"id": "hvs.the-token", "ttl": 60, "renewable": true}});
        let id_buffer = answer["data"]["id"].as_str().unwrap().as_ptr();
        forget_token_id(&mut answer);
        assert_eq!(answer["data"]["id"], "");
        assert_eq!(answer["data"]["ttl"], 60);
        // Same allocation, now empty: wiped in place, not replaced.
        assert_eq!(answer["data"]["id"].as_str().unwrap().as_ptr(), id_buffer);
    }
}
