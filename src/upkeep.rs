//! Owns the daemon's background upkeep of its Vault connection: unsealing a sealed Vault
//! with the unseal keys file, and keeping the token alive (renewal at 2/3 of its TTL,
//! AppRole re-login, expiry warnings).
//!
//! [`start`] runs the start-up steps (a bad keys file, an invalid token or a refused AppRole
//! login stop the daemon; a Vault that is down or sealed does not) and then spawns one task
//! on the daemon's runtime. The task wakes every [`UpkeepSettings::check_interval`], or
//! earlier when the token is due for renewal, and talks to Vault through the same
//! [`VaultHttpStore`] the filesystem reads from: a renewed or re-issued token is swapped in
//! with [`VaultHttpStore::set_token`], so reads never notice. Keys are re-read from the file
//! each time Vault is found sealed and dropped (zeroized) right after.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::token::{self, AppRoleLogin, TokenLease};
use crate::unseal::{self, UnsealError, UnsealOutcome};
use crate::vault::http::VaultHttpStore;
use crate::vault::StoreError;

/// How often the task checks the seal status and the token by default.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// A token that cannot be renewed draws a warning once it has less than this left.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(10 * 60);
/// Shortest pause between two rounds, so a failing Vault is not hammered.
const MIN_PAUSE: Duration = Duration::from_secs(1);

/// What the upkeep task does; part of [`crate::settings::Settings`].
#[derive(Clone, Debug)]
pub struct UpkeepSettings {
    /// `VAULT_UNSEAL_KEYS_FILE` / `--unseal-keys-file`: unseal with these keys when sealed.
    pub unseal_keys_file: Option<PathBuf>,
    /// `VAULT_ROLE_ID` + `VAULT_SECRET_ID`: log in with AppRole instead of using VAULT_TOKEN.
    pub approle: Option<AppRoleLogin>,
    /// Pause between two checks of the seal status and the token.
    pub check_interval: Duration,
}

impl Default for UpkeepSettings {
    fn default() -> Self {
        UpkeepSettings {
            unseal_keys_file: None,
            approle: None,
            check_interval: DEFAULT_CHECK_INTERVAL,
        }
    }
}

/// Runs the start-up steps on `runtime`, then spawns the upkeep task on it.
///
/// Fails (with a message for the user) on a keys file that cannot be used, keys that do not
/// unseal Vault, a token Vault answers 403 for, or a refused AppRole login. A Vault that is
/// down or sealed only draws a warning: the task retries.
pub fn start(
    store: Arc<VaultHttpStore>,
    settings: UpkeepSettings,
    runtime: &Runtime,
) -> Result<Started, String> {
    let mut upkeep = Upkeep::new(store, settings);
    let vault_timed_out = runtime.block_on(upkeep.start_up())?;
    Ok(Started {
        task: runtime.spawn(upkeep.run()),
        vault_timed_out,
    })
}

/// The running upkeep task and what its start-up steps saw.
pub struct Started {
    pub task: JoinHandle<()>,
    /// Vault let a start-up request run into the timeout: the next request would most
    /// likely wait as long again.
    pub vault_timed_out: bool,
}

/// The token as last seen by Vault.
#[derive(Clone, Copy, Debug)]
struct TokenState {
    lease: TokenLease,
    /// When Vault answered with `lease`.
    seen_at: Instant,
    /// Whether the last renewal gave less time than the one before: the token is at its
    /// maximum TTL and will expire despite renewals.
    renewal_capped: bool,
    /// Whether the "expires soon and cannot be renewed" warning was given.
    expiry_warned: bool,
}

impl TokenState {
    fn new(lease: TokenLease) -> TokenState {
        TokenState {
            lease,
            seen_at: Instant::now(),
            renewal_capped: false,
            expiry_warned: false,
        }
    }

    fn expires_at(&self) -> Option<Instant> {
        (!self.lease.never_expires()).then(|| self.seen_at + self.lease.ttl)
    }

    /// 2/3 of the way through the TTL.
    fn renew_at(&self) -> Option<Instant> {
        (!self.lease.never_expires()).then(|| self.seen_at + self.lease.ttl * 2 / 3)
    }
}

/// Where the token stands.
#[derive(Clone, Copy, Debug)]
enum TokenStatus {
    /// Not checked yet (Vault was down or sealed).
    Unknown,
    /// Vault answered 403 to lookup-self; reported once, not retried.
    Invalid,
    Known(TokenState),
}

struct Upkeep {
    store: Arc<VaultHttpStore>,
    settings: UpkeepSettings,
    token: TokenStatus,
    /// The last unseal or login failure logged, so a persisting one is not repeated.
    last_failure: Option<String>,
}

impl Upkeep {
    fn new(store: Arc<VaultHttpStore>, settings: UpkeepSettings) -> Upkeep {
        Upkeep {
            store,
            settings,
            token: TokenStatus::Unknown,
            last_failure: None,
        }
    }

    /// Unseals (when configured) and checks the token; returns whether Vault let a
    /// request time out.
    async fn start_up(&mut self) -> Result<bool, String> {
        if let Some(path) = &self.settings.unseal_keys_file {
            // A bad file is a configuration error: report it now, not at the first seal.
            let keys = unseal::load_unseal_keys(path).map_err(|e| e.to_string())?;
            match unseal::unseal_vault(&self.store, &keys, path, log_progress).await {
                Ok(outcome) => log_outcome(outcome, &self.store),
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "cannot check the seal yet; retrying in the background");
                    let timed_out = matches!(
                        error,
                        UnsealError::Vault {
                            error: StoreError::Timeout(_),
                            ..
                        }
                    );
                    return Ok(timed_out);
                }
                Err(error) => return Err(error.to_string()),
            }
        }
        let approle = self.settings.approle.as_ref();
        let mut timed_out = false;
        match token::authenticate_at_start(&self.store, approle).await? {
            Ok(lease) => self.token = TokenStatus::Known(TokenState::new(lease)),
            Err(error) => {
                tracing::debug!(%error, "token check postponed until Vault answers");
                tracing::warn!("cannot check the Vault token yet; retrying in the background");
                self.token = TokenStatus::Unknown;
                timed_out = matches!(error, StoreError::Timeout(_));
            }
        }
        if let TokenStatus::Known(state) = self.token {
            tracing::debug!(
                ttl_secs = state.lease.ttl.as_secs(),
                renewable = state.lease.renewable,
                "Vault token checked"
            );
        }
        Ok(timed_out)
    }

    async fn run(mut self) {
        loop {
            let pause = self.round().await;
            let store = self.store.clone();
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                // A 403 on a read may mean the token was revoked: check it now, not
                // at the next renewal, so an AppRole daemon logs in again at once.
                _ = store.refusal() => {
                    tokio::time::sleep(MIN_PAUSE.min(pause)).await;
                    self.check_token_after_refusal().await;
                }
            }
        }
    }

    /// After Vault refused a read: is the token itself still valid? A refused
    /// lookup-self means it is not (revoked, expired): AppRole logs in again; a plain
    /// token is reported once per refusal spell, and renewal goes on as before. A
    /// valid token means a policy denied that path.
    async fn check_token_after_refusal(&mut self) {
        if matches!(self.token, TokenStatus::Invalid) {
            return;
        }
        match token::check_token(&self.store).await {
            token::TokenCheck::Refused(refusal) if self.settings.approle.is_some() => {
                tracing::warn!("{refusal}; logging in with AppRole again");
                self.acquire_token().await;
            }
            // Logged once, but not taken as final: a refusal may be passing (a
            // policy being edited), and renewal must go on if the token works again.
            token::TokenCheck::Refused(refusal) => {
                let message = format!("{refusal}; reads fail until gbo-fs gets a new token");
                if self.last_failure.as_deref() != Some(message.as_str()) {
                    tracing::error!("{message}");
                    self.last_failure = Some(message);
                }
            }
            token::TokenCheck::Usable(_) => self.last_failure = None,
            token::TokenCheck::Unavailable(_) => {}
        }
    }

    /// One round of checks; returns how long to wait before the next one.
    async fn round(&mut self) -> Duration {
        let interval = self.settings.check_interval;
        if self.settings.unseal_keys_file.is_some() && !self.ensure_unsealed().await {
            return interval.max(MIN_PAUSE);
        }
        self.maintain_token().await;
        let now = Instant::now();
        let pause = match self.next_token_deadline() {
            Some(deadline) => deadline.saturating_duration_since(now).min(interval),
            None => interval,
        };
        pause.max(MIN_PAUSE.min(interval))
    }

    /// Unseals Vault if it is sealed. `false` when Vault is down or stays sealed.
    async fn ensure_unsealed(&mut self) -> bool {
        let Some(path) = self.settings.unseal_keys_file.clone() else {
            return true;
        };
        match unseal::seal_status(&self.store).await {
            Ok(status) if !status.sealed => return true,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "seal status unavailable");
                return false;
            }
        }
        if self.last_failure.is_none() {
            tracing::warn!(
                vault = %self.store.address(),
                keys_file = %path.display(),
                "Vault is sealed; unsealing"
            );
        }
        let result = match unseal::load_unseal_keys(&path) {
            Ok(keys) => unseal::unseal_vault(&self.store, &keys, &path, log_progress).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(outcome) => {
                log_outcome(outcome, &self.store);
                self.last_failure = None;
                true
            }
            Err(error) => {
                self.report_failure(&error);
                false
            }
        }
    }

    /// Renews, re-issues or checks the token as its state requires.
    async fn maintain_token(&mut self) {
        let state = match self.token {
            TokenStatus::Invalid => return,
            TokenStatus::Unknown => {
                self.acquire_token().await;
                return;
            }
            TokenStatus::Known(state) => state,
        };
        let (Some(renew_at), Some(expires_at)) = (state.renew_at(), state.expires_at()) else {
            return;
        };
        let now = Instant::now();
        let approle = self.settings.approle.is_some();
        if now >= expires_at && (approle || !state.lease.renewable) {
            if approle {
                tracing::info!("Vault token expired; logging in with AppRole again");
                self.acquire_token().await;
            } else if !state.expiry_warned {
                tracing::error!(
                    "the Vault token has expired and cannot be renewed; reads fail until \
                     gbo-fs gets a new token"
                );
                self.mark_expiry_warned();
            }
            return;
        }
        if now >= renew_at {
            if state.lease.renewable {
                self.renew(state).await;
                return;
            }
            if approle {
                self.acquire_token().await;
                return;
            }
        }
        let doomed = !state.lease.renewable || state.renewal_capped;
        if !approle
            && doomed
            && !state.expiry_warned
            && expires_at.saturating_duration_since(now) <= EXPIRY_WARNING
        {
            let left = expires_at.saturating_duration_since(now).as_secs();
            if state.lease.renewable {
                tracing::warn!(
                    "the Vault token reaches its maximum TTL in {left} s and cannot be renewed \
                     past it; reads fail after that unless gbo-fs gets a new token"
                );
            } else {
                tracing::warn!(
                    "the Vault token expires in {left} s and is not renewable; reads fail after \
                     that unless gbo-fs gets a new token"
                );
            }
            self.mark_expiry_warned();
        }
    }

    async fn renew(&mut self, previous: TokenState) {
        match token::renew_self(&self.store).await {
            Ok(lease) => {
                tracing::debug!(ttl_secs = lease.ttl.as_secs(), "Vault token renewed");
                let mut renewed = TokenState::new(lease);
                // A renewal that no longer extends the token means it hit its maximum TTL.
                let capped = lease.ttl < previous.lease.ttl;
                if capped && self.settings.approle.is_some() {
                    tracing::info!(
                        "Vault token reached its maximum TTL; logging in with AppRole again"
                    );
                    self.token = TokenStatus::Known(renewed);
                    self.acquire_token().await;
                    return;
                }
                renewed.renewal_capped = capped;
                renewed.expiry_warned = capped && previous.expiry_warned;
                self.token = TokenStatus::Known(renewed);
            }
            Err(StoreError::PermissionDenied) if self.settings.approle.is_some() => {
                tracing::info!(
                    "Vault refused to renew the token (403); logging in with AppRole again"
                );
                self.acquire_token().await;
            }
            Err(StoreError::PermissionDenied) => {
                tracing::error!(
                    "Vault refused to renew the token (403); it is no longer valid and reads \
                     fail until gbo-fs gets a new token"
                );
                self.token = TokenStatus::Invalid;
            }
            Err(error) if token::vault_unavailable(&error) => {
                tracing::debug!(%error, "token renewal postponed");
            }
            Err(error) => {
                // E.g. a token Vault says is not renewable after all: stop trying.
                tracing::warn!(%error, "token renewal failed; the token is left as it is");
                let mut unrenewable = previous;
                unrenewable.lease.renewable = false;
                self.token = TokenStatus::Known(unrenewable);
            }
        }
    }

    /// Logs in with AppRole, or looks the configured token up.
    async fn acquire_token(&mut self) {
        if let Some(login) = self.settings.approle.clone() {
            match token::approle_login(&self.store, &login).await {
                Ok(lease) => {
                    tracing::info!(
                        ttl_secs = lease.ttl.as_secs(),
                        renewable = lease.renewable,
                        "logged in to Vault with AppRole"
                    );
                    self.token = TokenStatus::Known(TokenState::new(lease));
                    self.last_failure = None;
                }
                Err(error) if token::vault_unavailable(&error) => {
                    tracing::debug!(%error, "AppRole login postponed");
                }
                Err(error) => {
                    let message = token::approle_refusal(&login, &error);
                    if self.last_failure.as_deref() != Some(message.as_str()) {
                        tracing::error!(
                            "{message}; retrying every {:?}",
                            self.settings.check_interval
                        );
                        self.last_failure = Some(message);
                    }
                }
            }
            return;
        }
        match token::check_token(&self.store).await {
            token::TokenCheck::Usable(lease) => {
                self.token = TokenStatus::Known(TokenState::new(lease))
            }
            token::TokenCheck::Refused(refusal) => {
                tracing::error!("{refusal}; reads fail until gbo-fs gets a new token");
                self.token = TokenStatus::Invalid;
            }
            token::TokenCheck::Unavailable(error) => {
                tracing::debug!(%error, "token check postponed");
            }
        }
    }

    fn mark_expiry_warned(&mut self) {
        if let TokenStatus::Known(state) = &mut self.token {
            state.expiry_warned = true;
        }
    }

    /// When the token next needs attention, if ever.
    fn next_token_deadline(&self) -> Option<Instant> {
        match self.token {
            TokenStatus::Known(state) => {
                if state.lease.renewable || self.settings.approle.is_some() {
                    state.renew_at()
                } else if !state.expiry_warned {
                    state
                        .expires_at()
                        .map(|at| at.checked_sub(EXPIRY_WARNING).unwrap_or(state.seen_at))
                } else {
                    None
                }
            }
            TokenStatus::Unknown | TokenStatus::Invalid => None,
        }
    }

    fn report_failure(&mut self, error: &UnsealError) {
        let message = error.to_string();
        if self.last_failure.as_deref() == Some(message.as_str()) {
            return;
        }
        if error.is_transient() {
            tracing::warn!("cannot unseal Vault yet: {message}");
        } else {
            tracing::error!(
                "cannot unseal Vault: {message}; retrying every {:?}",
                self.settings.check_interval
            );
        }
        self.last_failure = Some(message);
    }
}

fn log_progress(status: &unseal::SealStatus) {
    tracing::info!("unseal: {}", unseal::progress_line(status));
}

fn log_outcome(outcome: UnsealOutcome, store: &VaultHttpStore) {
    match outcome {
        UnsealOutcome::AlreadyUnsealed => {
            tracing::debug!(vault = %store.address(), "Vault is unsealed")
        }
        UnsealOutcome::Unsealed { keys_submitted } => {
            tracing::info!(vault = %store.address(), keys_submitted, "Vault unsealed")
        }
    }
}
