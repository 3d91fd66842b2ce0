//! Owns `TestVaultServer`: an in-process HTTP server on 127.0.0.1 that mimics HashiCorp Vault's
//! documented API (KV v1 and KV v2 secrets engines, token lookup, seal/health and mount discovery)
//! with fault injection, policy-like denials and request recording for integration tests.
//!
//! The server runs on a dedicated background thread with its own single-threaded tokio runtime,
//! so it can be used from plain `#[test]` functions and from inside other runtimes alike.
//! Stopping it (explicitly with [`TestVaultServer::stop`] or by dropping it) closes the listener
//! and every open connection, including connections held open by [`Fault::Hang`].
//!
//! Behaviour summary (paths are the URL path after `/v1/`):
//! - every request is recorded first, then faults are applied (path faults before the global
//!   fault), then the seal check, then authentication (`X-Vault-Token`), then `deny` rules,
//!   then routing;
//! - `sys/seal-status`, `sys/health`, `sys/init` and `sys/unseal` need no token and keep
//!   answering while sealed; everything else answers 503 `Vault is sealed` while sealed;
//! - `X-Vault-Namespace` is accepted and ignored;
//! - tokens: the configured one (optionally with a TTL and renewable) plus those issued by
//!   `POST auth/<mount>/login` when AppRole is configured ([`TestAppRole`]); an expired or
//!   unknown token gets 403. `auth/token/lookup-self` describes the presented token and
//!   `POST auth/token/renew-self` extends a renewable one by its TTL (counted, see
//!   [`TestVaultServer::renewals`]). The login path needs no token but obeys the seal.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The unseal key accepted by `PUT /v1/sys/unseal`.
pub const UNSEAL_KEY: &str = "test-unseal-key";
/// The token accepted by default.
pub const DEFAULT_TOKEN: &str = "test-root-token";
/// The version string reported by `sys/seal-status` and `sys/health`.
pub const VAULT_VERSION: &str = "1.15.0-gbo-test";
/// The `lease_duration` Vault reports for KV v1 reads (32 days, the default max lease TTL).
pub const KV1_LEASE_DURATION: u64 = 2_764_800;

/// Largest request body the server accepts (bigger bodies get 413).
const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;
/// How long the server waits for a request body before answering 408.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may wait for (the rest of) a request head, idle keep-alive time
/// included. Longer than reqwest's 90 s pool idle timeout so clients retire connections first.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the runtime may take to wind down after the accept loop has ended.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

const PERMISSION_DENIED_POLICY: &str = "1 error occurred:\n\t* permission denied\n\n";
const UNSUPPORTED_OPERATION: &str = "1 error occurred:\n\t* unsupported operation\n\n";
const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// Which KV secrets engine version a mount runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvVersion {
    /// KV version 1: `GET <mount>/<path>`, no versioning.
    V1,
    /// KV version 2: `GET <mount>/data/<path>`, `LIST <mount>/metadata/<path>`, versioned.
    V2,
}

impl KvVersion {
    /// The value of `options.version` Vault reports for a mount of this version.
    pub fn option_str(self) -> &'static str {
        match self {
            KvVersion::V1 => "1",
            KvVersion::V2 => "2",
        }
    }
}

/// How a [`TestVaultServer`] is set up.
#[derive(Clone, Debug)]
pub struct TestVaultConfig {
    /// The only accepted `X-Vault-Token` (default [`DEFAULT_TOKEN`]).
    pub token: String,
    /// KV mounts, e.g. `[("secret".into(), KvVersion::V2)]`; names without slashes.
    pub mounts: Vec<(String, KvVersion)>,
    /// Serve `GET /v1/sys/internal/ui/mounts/<path>` (otherwise 404 `{"errors":[]}`).
    pub ui_mounts_endpoint: bool,
    /// Serve `GET /v1/sys/mounts` (otherwise 403 permission denied).
    pub sys_mounts_endpoint: bool,
    /// 0 = any free port; a fixed port lets a test restart the server on the same address.
    pub port: u16,
    /// TTL of [`token`](Self::token); `None` = never expires (a root token: `ttl` 0).
    pub token_ttl: Option<Duration>,
    /// Whether `auth/token/renew-self` extends [`token`](Self::token) (by its TTL).
    pub token_renewable: bool,
    /// Enables the AppRole auth method: `POST auth/<mount>/login` issues tokens.
    pub approle: Option<TestAppRole>,
}

/// The AppRole auth method of a [`TestVaultServer`]: one role with one secret ID.
#[derive(Clone, Debug)]
pub struct TestAppRole {
    /// Mount path of the auth method (default `approle`).
    pub mount: String,
    pub role_id: String,
    pub secret_id: String,
    /// TTL of the tokens it issues.
    pub token_ttl: Duration,
    /// Whether the tokens it issues can be renewed.
    pub renewable: bool,
}

impl TestAppRole {
    /// A role at mount `approle` issuing renewable tokens with this TTL.
    pub fn new(role_id: &str, secret_id: &str, token_ttl: Duration) -> TestAppRole {
        TestAppRole {
            mount: "approle".to_string(),
            role_id: role_id.to_string(),
            secret_id: secret_id.to_string(),
            token_ttl,
            renewable: true,
        }
    }
}

impl TestVaultConfig {
    /// One KV v2 mount named `secret` (the layout botserver uses: `secret/data/gbo/...`).
    pub fn kv2_secret_mount() -> Self {
        Self::with_mounts(vec![("secret".to_string(), KvVersion::V2)])
    }

    /// One mount named `gbo` of the given version (the documented gbo-fs layout).
    pub fn gbo_mount(v: KvVersion) -> Self {
        Self::with_mounts(vec![("gbo".to_string(), v)])
    }

    /// The given mounts with every other setting at its default.
    pub fn with_mounts(mounts: Vec<(String, KvVersion)>) -> Self {
        TestVaultConfig {
            token: DEFAULT_TOKEN.to_string(),
            mounts,
            ui_mounts_endpoint: true,
            sys_mounts_endpoint: true,
            port: 0,
            token_ttl: None,
            token_renewable: false,
            approle: None,
        }
    }
}

impl Default for TestVaultConfig {
    fn default() -> Self {
        Self::kv2_secret_mount()
    }
}

/// A misbehaviour injected into the server's answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No fault (clears a fault when set).
    None,
    /// Reply with this status and body `{"errors":["injected fault"]}` (invalid codes become 500).
    Status(u16),
    /// 200 with the truncated body `{"data": {` and `content-type: application/json`.
    MalformedJson,
    /// 200 with an HTML body and `content-type: text/html`.
    Html,
    /// Never answer: hold the connection open until the server is stopped.
    Hang,
    /// Answer normally after this delay.
    Delay(Duration),
    /// 200 with a valid KV read response whose single value (key `value`) is a string of this
    /// many bytes; KV v1 or v2 shape according to the mount the path falls in (v2 otherwise).
    HugeBody(usize),
    /// 503 `{"errors":["Vault is sealed"]}`.
    Sealed,
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method as sent, except that `GET ?list=true` is recorded as `LIST`.
    pub method: String,
    /// The percent-decoded URL path after `/v1/`, without the query (for a URL outside `/v1/`,
    /// the whole path without its leading slash).
    pub path: String,
    /// Whether this was a list operation (`LIST`, or `GET` with `?list=true`).
    pub list: bool,
}

/// One version of a secret.
#[derive(Clone, Debug)]
struct VersionRecord {
    data: Map<String, Value>,
    created_time: String,
    deletion_time: String,
    destroyed: bool,
}

impl VersionRecord {
    fn is_live(&self) -> bool {
        self.deletion_time.is_empty() && !self.destroyed
    }

    fn metadata(&self, version: u64) -> Value {
        json!({
            "created_time": self.created_time,
            "custom_metadata": null,
            "deletion_time": self.deletion_time,
            "destroyed": self.destroyed,
            "version": version,
        })
    }
}

/// A secret and its version history (KV v1 secrets only ever keep version 1).
#[derive(Clone, Debug, Default)]
struct Secret {
    versions: BTreeMap<u64, VersionRecord>,
    current_version: u64,
    created_time: String,
    updated_time: String,
}

#[derive(Debug)]
struct MountState {
    version: KvVersion,
    secrets: BTreeMap<String, Secret>,
}

/// A token the server accepts (until it expires).
#[derive(Clone, Debug)]
struct IssuedToken {
    /// `None`: never expires.
    ttl: Option<Duration>,
    expires_at: Option<Instant>,
    renewable: bool,
    /// Where it came from, as lookup-self reports it (`auth/token/root`, `auth/approle/login`).
    path: String,
    policies: Vec<String>,
}

impl IssuedToken {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }

    fn remaining_secs(&self, now: Instant) -> u64 {
        self.expires_at
            .map_or(0, |at| at.saturating_duration_since(now).as_secs())
    }
}

#[derive(Debug)]
struct State {
    config: TestVaultConfig,
    tokens: BTreeMap<String, IssuedToken>,
    renewals: u64,
    approle_logins: u64,
    mounts: BTreeMap<String, MountState>,
    global_fault: Fault,
    path_faults: Vec<(String, Fault)>,
    denies: Vec<String>,
    sealed: bool,
    requests: Vec<RecordedRequest>,
}

impl State {
    /// Whether `token` is known and not expired.
    fn accepts(&self, token: Option<&str>) -> bool {
        token
            .and_then(|t| self.tokens.get(t))
            .is_some_and(|t| t.is_live(Instant::now()))
    }

    /// Whether `api_path` is the configured AppRole login path.
    fn is_approle_login(&self, api_path: &str) -> bool {
        self.config.approle.as_ref().is_some_and(|role| {
            api_path.trim_end_matches('/') == format!("auth/{}/login", trim_slashes(&role.mount))
        })
    }

    /// The mount whose name is the longest path-component prefix of `path`, and the rest of
    /// the path after it (without a leading slash).
    fn find_mount<'p>(&self, path: &'p str) -> Option<(&str, &MountState, &'p str)> {
        self.mounts
            .iter()
            .filter_map(|(name, mount)| {
                let rest = path.strip_prefix(name.as_str())?;
                if rest.is_empty() {
                    Some((name.as_str(), mount, rest))
                } else {
                    rest.strip_prefix('/').map(|r| (name.as_str(), mount, r))
                }
            })
            .max_by_key(|(name, _, _)| name.len())
    }

    fn fault_for(&self, api_path: &str) -> Fault {
        let path_fault = self
            .path_faults
            .iter()
            .filter(|(prefix, _)| api_path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, fault)| fault.clone());
        path_fault.unwrap_or_else(|| self.global_fault.clone())
    }
}

struct Shared {
    state: Mutex<State>,
    connections: AtomicUsize,
    request_ids: AtomicU64,
}

impl Shared {
    /// Locks the state, recovering from poisoning (the state stays consistent between
    /// statements, so a panicked holder cannot leave it half-updated in a harmful way).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
        format!("00000000-0000-4000-8000-{n:012x}")
    }
}

/// A Vault-API test server bound to 127.0.0.1. See the module documentation.
pub struct TestVaultServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    token: String,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestVaultServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestVaultServer")
            .field("addr", &self.addr)
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl TestVaultServer {
    /// Binds 127.0.0.1:<config.port> and serves on a dedicated background thread with its own
    /// tokio runtime (so it works from sync tests and from inside other runtimes). Returns once
    /// the listener is bound.
    pub fn start(config: TestVaultConfig) -> std::io::Result<TestVaultServer> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;

        let mounts = config
            .mounts
            .iter()
            .map(|(name, version)| {
                let mount = MountState {
                    version: *version,
                    secrets: BTreeMap::new(),
                };
                (trim_slashes(name).to_string(), mount)
            })
            .collect();
        let token = config.token.clone();
        let root = IssuedToken {
            ttl: config.token_ttl,
            expires_at: config.token_ttl.map(|ttl| Instant::now() + ttl),
            renewable: config.token_renewable,
            path: "auth/token/root".to_string(),
            policies: vec!["root".to_string()],
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                tokens: BTreeMap::from([(token.clone(), root)]),
                renewals: 0,
                approle_logins: 0,
                config,
                mounts,
                global_fault: Fault::None,
                path_faults: Vec::new(),
                denies: Vec::new(),
                sealed: false,
                requests: Vec::new(),
            }),
            connections: AtomicUsize::new(0),
            request_ids: AtomicU64::new(0),
        });

        let (shutdown, shutdown_rx) = watch::channel(false);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("test-vault-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(accept_loop(listener, thread_shared, shutdown_rx));
                runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
            })?;

        Ok(TestVaultServer {
            shared,
            addr,
            token,
            shutdown,
            thread: Some(thread),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The accepted token.
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Writes a secret at a mount-relative path (e.g. mount `secret`, path `gbo/llm`).
    /// KV v2 bumps the version (starting at 1) and records `created_time`; KV v1 replaces.
    ///
    /// # Panics
    /// If `mount` is not one of the configured mounts (a test-authoring error).
    pub fn put_secret(&self, mount: &str, path: &str, data: Map<String, Value>) {
        let mut state = self.shared.lock();
        let mount_name = trim_slashes(mount);
        let Some(mount_state) = state.mounts.get_mut(mount_name) else {
            drop(state);
            panic!("TestVaultServer::put_secret: mount {mount:?} is not configured");
        };
        write_secret(mount_state, trim_slashes(path), data);
    }

    /// Convenience over [`put_secret`](Self::put_secret) with string values.
    pub fn put_str(&self, mount: &str, path: &str, pairs: &[(&str, &str)]) {
        let data = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect();
        self.put_secret(mount, path, data);
    }

    /// Removes a secret with all its versions and metadata (unknown mounts/paths are ignored).
    pub fn delete_secret(&self, mount: &str, path: &str) {
        let mut state = self.shared.lock();
        if let Some(mount_state) = state.mounts.get_mut(trim_slashes(mount)) {
            mount_state.secrets.remove(trim_slashes(path));
        }
    }

    /// The current version of a secret (`None` if it does not exist).
    pub fn secret_version(&self, mount: &str, path: &str) -> Option<u64> {
        let state = self.shared.lock();
        state
            .mounts
            .get(trim_slashes(mount))
            .and_then(|m| m.secrets.get(trim_slashes(path)))
            .map(|s| s.current_version)
    }

    /// Sets the fault applied to every request (`Fault::None` clears it). Path faults win.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.lock().global_fault = fault;
    }

    /// Sets a fault for requests whose API path (after `/v1/`) starts with `api_path_prefix`,
    /// e.g. `secret/data/gbo/slow`. Replaces an earlier fault with the same prefix;
    /// `Fault::None` removes it. When several prefixes match, the longest wins.
    pub fn set_path_fault(&self, api_path_prefix: &str, fault: Fault) {
        let mut state = self.shared.lock();
        let prefix = api_path_prefix.trim_start_matches('/');
        state.path_faults.retain(|(p, _)| p != prefix);
        if fault != Fault::None {
            state.path_faults.push((prefix.to_string(), fault));
        }
    }

    /// Clears the global fault and every path fault.
    pub fn clear_faults(&self) {
        let mut state = self.shared.lock();
        state.global_fault = Fault::None;
        state.path_faults.clear();
    }

    /// Answers 403 (as a policy would) to authenticated requests whose API path starts with
    /// `api_path_prefix`.
    pub fn deny(&self, api_path_prefix: &str) {
        let mut state = self.shared.lock();
        let prefix = api_path_prefix.trim_start_matches('/').to_string();
        if !state.denies.contains(&prefix) {
            state.denies.push(prefix);
        }
    }

    /// Removes every `deny` rule.
    pub fn clear_denies(&self) {
        self.shared.lock().denies.clear();
    }

    /// Seals the server: every request except `sys/seal-status`, `sys/health`, `sys/init` and
    /// `sys/unseal` answers 503 `{"errors":["Vault is sealed"]}`.
    pub fn seal(&self) {
        self.shared.lock().sealed = true;
    }

    /// Unseals the server.
    pub fn unseal(&self) {
        self.shared.lock().sealed = false;
    }

    /// Whether the server is sealed.
    pub fn is_sealed(&self) -> bool {
        self.shared.lock().sealed
    }

    /// How many `auth/token/renew-self` requests extended a token.
    pub fn renewals(&self) -> u64 {
        self.shared.lock().renewals
    }

    /// How many AppRole logins issued a token.
    pub fn approle_logins(&self) -> u64 {
        self.shared.lock().approle_logins
    }

    /// Whether `token` is currently accepted (known and not expired).
    pub fn accepts_token(&self, token: &str) -> bool {
        self.shared.lock().accepts(Some(token))
    }

    /// Makes every token expire now (later requests with them get 403).
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for token in self.shared.lock().tokens.values_mut() {
            token.expires_at = Some(now);
        }
    }

    /// Every request since start (or the last [`reset_counts`](Self::reset_counts)), in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests had this method and API path. The path comparison is exact except
    /// that trailing slashes are ignored on both sides; `LIST` counts both `LIST` and
    /// `GET ?list=true`; the method comparison ignores ASCII case.
    pub fn count(&self, method: &str, api_path: &str) -> usize {
        let want_path = api_path.trim_start_matches('/').trim_end_matches('/');
        let want_list = method.eq_ignore_ascii_case("LIST");
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path.trim_end_matches('/') == want_path)
            .filter(|r| {
                if want_list {
                    r.list
                } else {
                    !r.list && r.method.eq_ignore_ascii_case(method)
                }
            })
            .count()
    }

    /// How many requests went to API paths starting with `prefix` (e.g. `secret/`
    /// for the KV mount, leaving out `sys/` and `auth/` checks).
    pub fn requests_under(&self, prefix: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }

    /// The number of requests recorded.
    pub fn total_requests(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Forgets the recorded requests and resets [`connections_accepted`](Self::connections_accepted).
    pub fn reset_counts(&self) {
        self.shared.lock().requests.clear();
        self.shared.connections.store(0, Ordering::SeqCst);
    }

    /// The number of TCP connections accepted (since start or the last `reset_counts`).
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection (hung ones too) and joins the thread.
    pub fn stop(mut self) {
        self.shutdown_and_join();
    }

    fn shutdown_and_join(&mut self) {
        // send_replace never fails, even when every receiver is gone.
        self.shutdown.send_replace(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("test vault server thread panicked");
            }
        }
    }
}

impl Drop for TestVaultServer {
    fn drop(&mut self) {
        self.shutdown_and_join();
    }
}

// ---------------------------------------------------------------------------------------------
// Accept loop and connections
// ---------------------------------------------------------------------------------------------

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(%err, "test vault server: cannot register listener");
            return;
        }
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = wait_for_shutdown(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    // Best effort: small JSON answers should not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(err) => {
                    // E.g. EMFILE: back off briefly instead of spinning.
                    tracing::warn!(%err, "test vault server: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Dropping the tasks drops their sockets, which closes every connection, hung ones too.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
    let result = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = result {
        tracing::debug!(%err, "test vault server: connection ended with an error");
    }
}

/// Resolves once shutdown has been requested (or the server handle is gone).
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped, which also means "stop".
    let _ = shutdown.wait_for(|stop| *stop).await;
}

// ---------------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------------

type Resp = Response<Full<Bytes>>;

/// What a request asks for, independent of the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    List,
    Write,
    Delete,
    Other,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path();
    let in_api = raw_path == "/v1" || raw_path.starts_with("/v1/");
    let api_path = if in_api {
        percent_decode(raw_path.get(3..).unwrap_or("").trim_start_matches('/'))
    } else {
        percent_decode(raw_path.trim_start_matches('/'))
    };
    let list = parts.method.as_str() == "LIST"
        || (parts.method == Method::GET && query_flag(parts.uri.query(), "list"));
    let op = if list {
        Op::List
    } else {
        match parts.method {
            Method::GET | Method::HEAD => Op::Read,
            Method::POST | Method::PUT => Op::Write,
            Method::DELETE => Op::Delete,
            _ => Op::Other,
        }
    };
    let token = header_str(&parts.headers, "x-vault-token").or_else(|| {
        header_str(&parts.headers, "authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
    });

    // 1. Record; 2. faults (path faults first, then the global one).
    let fault = {
        let mut state = shared.lock();
        state.requests.push(RecordedRequest {
            method: if list {
                "LIST".to_string()
            } else {
                parts.method.as_str().to_string()
            },
            path: api_path.clone(),
            list,
        });
        state.fault_for(&api_path)
    };
    match fault {
        Fault::None => {}
        // Stopping the server aborts the connection task, which cancels a pending delay or
        // hang without ever answering (no "server stopping" reply can race the close).
        Fault::Delay(delay) => tokio::time::sleep(delay).await,
        Fault::Hang => std::future::pending::<()>().await,
        other => return Ok(fault_response(&shared, &other, &api_path)),
    }

    if !in_api {
        return Ok(no_handler(&api_path));
    }

    let seal_exempt = matches!(
        api_path.trim_end_matches('/'),
        "sys/seal-status" | "sys/health" | "sys/init" | "sys/unseal"
    );
    // 3. Seal, 4. auth, 5. deny.
    {
        let state = shared.lock();
        if state.sealed && !seal_exempt {
            return Ok(sealed_response());
        }
        let needs_token = !seal_exempt && !state.is_approle_login(&api_path);
        if needs_token && !state.accepts(token.as_deref()) {
            return Ok(errors(StatusCode::FORBIDDEN, &["permission denied"]));
        }
        if state
            .denies
            .iter()
            .any(|prefix| api_path.starts_with(prefix.as_str()))
        {
            return Ok(errors(StatusCode::FORBIDDEN, &[PERMISSION_DENIED_POLICY]));
        }
    }

    // 6. Body (only writes carry one).
    let body = if op == Op::Write {
        match read_body(body).await {
            Ok(body) => body,
            Err(resp) => return Ok(resp),
        }
    } else {
        drop(body);
        Value::Null
    };

    Ok(route(
        &shared,
        op,
        &api_path,
        parts.uri.query(),
        token.as_deref(),
        body,
    ))
}

fn route(
    shared: &Shared,
    op: Op,
    api_path: &str,
    query: Option<&str>,
    token: Option<&str>,
    body: Value,
) -> Resp {
    let path = api_path.trim_end_matches('/');
    if let Some(sys) = path.strip_prefix("sys/") {
        return route_sys(shared, op, sys, api_path, body);
    }
    if path == "auth/token/lookup-self" {
        if op != Op::Read {
            return unsupported();
        }
        return lookup_self(shared, token.unwrap_or_default());
    }
    if path == "auth/token/renew-self" {
        if op != Op::Write {
            return unsupported();
        }
        return renew_self(shared, token.unwrap_or_default());
    }
    if shared.lock().is_approle_login(path) {
        if op != Op::Write {
            return unsupported();
        }
        return approle_login(shared, &body);
    }

    let mut state = shared.lock();
    let Some((mount_name, mount, rest)) = state.find_mount(path) else {
        drop(state);
        return no_handler(api_path);
    };
    let mount_name = mount_name.to_string();
    let rest = rest.to_string();
    let version = mount.version;
    let Some(mount) = state.mounts.get_mut(&mount_name) else {
        drop(state);
        return no_handler(api_path);
    };
    let (status, payload) = match version {
        KvVersion::V1 => kv1(mount, op, &rest, body),
        KvVersion::V2 => match kv2(mount, op, &rest, query, body) {
            Some(answer) => answer,
            None => {
                drop(state);
                return no_handler(api_path);
            }
        },
    };
    drop(state);
    finish(shared, status, payload)
}

/// What a KV handler produced: a status and, for JSON answers, either a full error body or the
/// `data` of a Vault response envelope (with its `lease_duration`).
enum Payload {
    Empty,
    Errors(Vec<String>),
    Data { data: Value, lease_duration: u64 },
}

fn finish(shared: &Shared, status: StatusCode, payload: Payload) -> Resp {
    match payload {
        Payload::Empty => empty(status),
        Payload::Errors(errs) => json_response(status, &json!({ "errors": errs })),
        Payload::Data {
            data,
            lease_duration,
        } => {
            let mut resp = envelope(shared, lease_duration, data);
            *resp.status_mut() = status;
            resp
        }
    }
}

fn not_found() -> (StatusCode, Payload) {
    (StatusCode::NOT_FOUND, Payload::Errors(Vec::new()))
}

fn bad_request(msg: &str) -> (StatusCode, Payload) {
    (
        StatusCode::BAD_REQUEST,
        Payload::Errors(vec![msg.to_string()]),
    )
}

fn kv1(mount: &mut MountState, op: Op, rest: &str, body: Value) -> (StatusCode, Payload) {
    let path = trim_slashes(rest);
    match op {
        Op::Read => match mount.secrets.get(path).and_then(latest_live) {
            Some((_, record)) => (
                StatusCode::OK,
                Payload::Data {
                    data: Value::Object(record.data.clone()),
                    lease_duration: KV1_LEASE_DURATION,
                },
            ),
            None => not_found(),
        },
        Op::List => list_keys(mount, path),
        Op::Write => match body {
            Value::Object(data) => {
                if path.is_empty() {
                    return bad_request("missing path");
                }
                write_secret(mount, path, data);
                (StatusCode::NO_CONTENT, Payload::Empty)
            }
            Value::Null => bad_request("no data provided"),
            _ => bad_request("failed to parse JSON input: request body must be a JSON object"),
        },
        Op::Delete => {
            mount.secrets.remove(path);
            (StatusCode::NO_CONTENT, Payload::Empty)
        }
        Op::Other => (
            StatusCode::METHOD_NOT_ALLOWED,
            Payload::Errors(vec![UNSUPPORTED_OPERATION.to_string()]),
        ),
    }
}

/// KV v2 routes; `None` means "no handler for this route".
fn kv2(
    mount: &mut MountState,
    op: Op,
    rest: &str,
    query: Option<&str>,
    body: Value,
) -> Option<(StatusCode, Payload)> {
    let (section, path) = match rest.split_once('/') {
        Some((section, path)) => (section, trim_slashes(path)),
        None => (rest, ""),
    };
    let unsupported = (
        StatusCode::METHOD_NOT_ALLOWED,
        Payload::Errors(vec![UNSUPPORTED_OPERATION.to_string()]),
    );
    let answer = match (section, op) {
        ("data", Op::Read) => {
            let Some(secret) = mount.secrets.get(path) else {
                return Some(not_found());
            };
            let wanted = match query_value(query, "version").map(|v| v.parse::<u64>()) {
                None | Some(Ok(0)) => secret.current_version,
                Some(Ok(v)) => v,
                Some(Err(_)) => return Some(bad_request("invalid version")),
            };
            match secret.versions.get(&wanted) {
                Some(record) if record.is_live() => (
                    StatusCode::OK,
                    Payload::Data {
                        data: json!({
                            "data": record.data,
                            "metadata": record.metadata(wanted),
                        }),
                        lease_duration: 0,
                    },
                ),
                // Deleted or destroyed: Vault answers 404 but still shows the metadata.
                Some(record) => (
                    StatusCode::NOT_FOUND,
                    Payload::Data {
                        data: json!({ "data": null, "metadata": record.metadata(wanted) }),
                        lease_duration: 0,
                    },
                ),
                None => not_found(),
            }
        }
        ("data", Op::Write) => {
            let Value::Object(mut body) = body else {
                return Some(bad_request("no data provided"));
            };
            let data = match body.remove("data") {
                Some(Value::Object(data)) => data,
                Some(Value::Null) | None => return Some(bad_request("no data provided")),
                Some(_) => return Some(bad_request("data must be a JSON object")),
            };
            if path.is_empty() {
                return Some(bad_request("missing path"));
            }
            let cas = body
                .get("options")
                .and_then(|o| o.get("cas"))
                .and_then(Value::as_u64);
            let current = mount.secrets.get(path).map_or(0, |s| s.current_version);
            if cas.is_some_and(|cas| cas != current) {
                return Some(bad_request(CAS_MISMATCH));
            }
            let (version, record) = write_secret(mount, path, data);
            (
                StatusCode::OK,
                Payload::Data {
                    data: record.metadata(version),
                    lease_duration: 0,
                },
            )
        }
        ("data", Op::Delete) => {
            let now = rfc3339(SystemTime::now());
            if let Some(secret) = mount.secrets.get_mut(path) {
                let current = secret.current_version;
                if let Some(record) = secret.versions.get_mut(&current) {
                    if record.deletion_time.is_empty() {
                        record.deletion_time = now;
                    }
                }
            }
            (StatusCode::NO_CONTENT, Payload::Empty)
        }
        ("metadata", Op::List) => list_keys(mount, path),
        ("metadata", Op::Read) => match mount.secrets.get(path) {
            Some(secret) => {
                let versions: Map<String, Value> = secret
                    .versions
                    .iter()
                    .map(|(v, r)| {
                        (
                            v.to_string(),
                            json!({
                                "created_time": r.created_time,
                                "deletion_time": r.deletion_time,
                                "destroyed": r.destroyed,
                            }),
                        )
                    })
                    .collect();
                (
                    StatusCode::OK,
                    Payload::Data {
                        data: json!({
                            "cas_required": false,
                            "created_time": secret.created_time,
                            "current_version": secret.current_version,
                            "custom_metadata": null,
                            "delete_version_after": "0s",
                            "max_versions": 0,
                            "oldest_version": secret.versions.keys().next().copied().unwrap_or(0),
                            "updated_time": secret.updated_time,
                            "versions": versions,
                        }),
                        lease_duration: 0,
                    },
                )
            }
            None => not_found(),
        },
        ("metadata", Op::Delete) => {
            mount.secrets.remove(path);
            (StatusCode::NO_CONTENT, Payload::Empty)
        }
        ("data" | "metadata", _) => unsupported,
        _ => return None,
    };
    Some(answer)
}

/// Immediate children of folder `folder` (no trailing slash; empty = mount root), sorted;
/// deeper secrets yield their first segment with a trailing slash, once.
fn list_keys(mount: &MountState, folder: &str) -> (StatusCode, Payload) {
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let keys: BTreeSet<String> = mount
        .secrets
        .range(prefix.clone()..)
        .take_while(|(path, _)| path.starts_with(prefix.as_str()))
        .filter_map(|(path, _)| {
            let remainder = &path[prefix.len()..];
            match remainder.split_once('/') {
                _ if remainder.is_empty() => None,
                Some((dir, _)) => Some(format!("{dir}/")),
                None => Some(remainder.to_string()),
            }
        })
        .collect();
    if keys.is_empty() {
        return not_found();
    }
    (
        StatusCode::OK,
        Payload::Data {
            data: json!({ "keys": keys }),
            lease_duration: 0,
        },
    )
}

fn latest_live(secret: &Secret) -> Option<(u64, &VersionRecord)> {
    secret
        .versions
        .get(&secret.current_version)
        .filter(|r| r.is_live())
        .map(|r| (secret.current_version, r))
}

/// Stores a new version (KV v2) or replaces the secret (KV v1); returns the new version.
fn write_secret(
    mount: &mut MountState,
    path: &str,
    data: Map<String, Value>,
) -> (u64, VersionRecord) {
    let now = rfc3339(SystemTime::now());
    let secret = mount.secrets.entry(path.to_string()).or_default();
    if secret.created_time.is_empty() {
        secret.created_time = now.clone();
    }
    secret.updated_time = now.clone();
    let record = VersionRecord {
        data,
        created_time: now,
        deletion_time: String::new(),
        destroyed: false,
    };
    let version = match mount.version {
        KvVersion::V1 => {
            secret.versions.clear();
            1
        }
        KvVersion::V2 => secret.current_version + 1,
    };
    secret.current_version = version;
    secret.versions.insert(version, record.clone());
    (version, record)
}

fn route_sys(shared: &Shared, op: Op, sys: &str, api_path: &str, body: Value) -> Resp {
    match sys {
        "seal-status" => match op {
            Op::Read => json_response(StatusCode::OK, &seal_status(shared.lock().sealed)),
            _ => unsupported(),
        },
        "health" => match op {
            Op::Read => {
                let sealed = shared.lock().sealed;
                let status = if sealed {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                json_response(
                    status,
                    &json!({
                        "initialized": true,
                        "sealed": sealed,
                        "standby": false,
                        "performance_standby": false,
                        "replication_performance_mode": "disabled",
                        "replication_dr_mode": "disabled",
                        "server_time_utc": now,
                        "version": VAULT_VERSION,
                        "cluster_name": "gbo-test-cluster",
                        "cluster_id": "00000000-0000-4000-8000-000000000000",
                    }),
                )
            }
            _ => unsupported(),
        },
        "init" => match op {
            Op::Read => json_response(StatusCode::OK, &json!({ "initialized": true })),
            _ => unsupported(),
        },
        "unseal" => match op {
            Op::Write => {
                let key = body.get("key").and_then(Value::as_str);
                let reset = body.get("reset").and_then(Value::as_bool).unwrap_or(false);
                let mut state = shared.lock();
                match key {
                    Some(UNSEAL_KEY) => state.sealed = false,
                    Some(_) => {
                        drop(state);
                        return errors(
                            StatusCode::BAD_REQUEST,
                            &["Error unsealing: cipher: message authentication failed"],
                        );
                    }
                    None if reset => {}
                    None => {
                        drop(state);
                        return errors(
                            StatusCode::BAD_REQUEST,
                            &["'key' must be specified in request body as JSON, or 'reset' set to true"],
                        );
                    }
                }
                let sealed = state.sealed;
                drop(state);
                json_response(StatusCode::OK, &seal_status(sealed))
            }
            _ => unsupported(),
        },
        "seal" => match op {
            Op::Write => {
                shared.lock().sealed = true;
                empty(StatusCode::NO_CONTENT)
            }
            _ => unsupported(),
        },
        "mounts" => {
            let state = shared.lock();
            if !state.config.sys_mounts_endpoint {
                drop(state);
                return errors(StatusCode::FORBIDDEN, &["permission denied"]);
            }
            if op != Op::Read {
                drop(state);
                return unsupported();
            }
            let mut mounts = Map::new();
            for (name, mount) in &state.mounts {
                mounts.insert(format!("{name}/"), mount_info(name, mount.version));
            }
            drop(state);
            mounts.insert(
                "sys/".to_string(),
                builtin_mount(
                    "system",
                    "system endpoints used for control, policy and debugging",
                    false,
                ),
            );
            mounts.insert(
                "cubbyhole/".to_string(),
                builtin_mount("cubbyhole", "per-token private secret storage", true),
            );
            mounts.insert(
                "identity/".to_string(),
                builtin_mount("identity", "identity store", false),
            );
            let mut body = envelope_value(shared, 0, Value::Object(mounts.clone()));
            if let Value::Object(top) = &mut body {
                for (k, v) in mounts {
                    top.insert(k, v);
                }
            }
            json_response(StatusCode::OK, &body)
        }
        _ => {
            let Some(ui_path) = sys
                .strip_prefix("internal/ui/mounts")
                .filter(|r| r.is_empty() || r.starts_with('/'))
            else {
                return no_handler(api_path);
            };
            let ui_path = trim_slashes(ui_path);
            let state = shared.lock();
            if !state.config.ui_mounts_endpoint {
                drop(state);
                return errors(StatusCode::NOT_FOUND, &[]);
            }
            if op != Op::Read {
                drop(state);
                return unsupported();
            }
            if ui_path.is_empty() {
                let secret: Map<String, Value> = state
                    .mounts
                    .iter()
                    .map(|(name, m)| (format!("{name}/"), mount_info(name, m.version)))
                    .collect();
                drop(state);
                return envelope(shared, 0, json!({ "auth": {}, "secret": secret }));
            }
            let found = state
                .find_mount(ui_path)
                .map(|(name, mount, _)| (name.to_string(), mount.version));
            drop(state);
            match found {
                Some((name, version)) => {
                    let mut info = mount_info(&name, version);
                    if let Value::Object(map) = &mut info {
                        map.insert("path".to_string(), Value::String(format!("{name}/")));
                    }
                    envelope(shared, 0, info)
                }
                None => errors(
                    StatusCode::FORBIDDEN,
                    &[&format!(
                        "preflight capability check returned 403, please ensure client's policies grant access to path \"{ui_path}/\""
                    )],
                ),
            }
        }
    }
}

fn lookup_self(shared: &Shared, token: &str) -> Resp {
    let Some(issued) = shared.lock().tokens.get(token).cloned() else {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    };
    let now = Instant::now();
    let expire_time = issued
        .expires_at
        .map(|at| rfc3339(SystemTime::now() + at.saturating_duration_since(now)));
    envelope(
        shared,
        0,
        json!({
            "accessor": "test-accessor",
            "creation_time": 1_704_067_200u64,
            "creation_ttl": issued.ttl.map_or(0, |ttl| ttl.as_secs()),
            "display_name": if issued.path == "auth/token/root" { "root" } else { "approle" },
            "entity_id": "",
            "expire_time": expire_time,
            "explicit_max_ttl": 0,
            "id": token,
            "meta": null,
            "num_uses": 0,
            "orphan": true,
            "path": issued.path,
            "policies": issued.policies,
            "renewable": issued.renewable,
            "ttl": issued.remaining_secs(now),
            "type": "service",
        }),
    )
}

fn renew_self(shared: &Shared, token: &str) -> Resp {
    let mut state = shared.lock();
    let Some(issued) = state.tokens.get_mut(token) else {
        drop(state);
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    };
    let (Some(ttl), true) = (issued.ttl, issued.renewable) else {
        drop(state);
        return errors(StatusCode::BAD_REQUEST, &["lease is not renewable"]);
    };
    issued.expires_at = Some(Instant::now() + ttl);
    let policies = issued.policies.clone();
    state.renewals += 1;
    drop(state);
    auth_response(shared, token, ttl, true, &policies)
}

fn approle_login(shared: &Shared, body: &Value) -> Resp {
    let mut state = shared.lock();
    let Some(role) = state.config.approle.clone() else {
        drop(state);
        return no_handler("auth/approle/login");
    };
    let role_id = body.get("role_id").and_then(Value::as_str);
    let secret_id = body.get("secret_id").and_then(Value::as_str);
    if role_id != Some(role.role_id.as_str()) {
        drop(state);
        return errors(StatusCode::BAD_REQUEST, &["invalid role ID"]);
    }
    if secret_id != Some(role.secret_id.as_str()) {
        drop(state);
        return errors(StatusCode::BAD_REQUEST, &["invalid secret id"]);
    }
    state.approle_logins += 1;
    let token = format!("s.approle-{:08}", state.approle_logins);
    let policies = vec!["default".to_string(), "gbo-readonly".to_string()];
    state.tokens.insert(
        token.clone(),
        IssuedToken {
            ttl: Some(role.token_ttl),
            expires_at: Some(Instant::now() + role.token_ttl),
            renewable: role.renewable,
            path: format!("auth/{}/login", trim_slashes(&role.mount)),
            policies: policies.clone(),
        },
    );
    drop(state);
    auth_response(shared, &token, role.token_ttl, role.renewable, &policies)
}

/// A login or renewal answer: `auth` filled, `data` null.
fn auth_response(
    shared: &Shared,
    token: &str,
    ttl: Duration,
    renewable: bool,
    policies: &[String],
) -> Resp {
    let mut body = envelope_value(shared, 0, Value::Null);
    if let Value::Object(top) = &mut body {
        top.insert(
            "auth".to_string(),
            json!({
                "client_token": token,
                "accessor": "test-accessor",
                "policies": policies,
                "token_policies": policies,
                "metadata": null,
                "lease_duration": ttl.as_secs(),
                "renewable": renewable,
                "entity_id": "",
                "token_type": "service",
                "orphan": true,
            }),
        );
    }
    json_response(StatusCode::OK, &body)
}

fn seal_status(sealed: bool) -> Value {
    json!({
        "type": "shamir",
        "initialized": true,
        "sealed": sealed,
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "version": VAULT_VERSION,
        "build_date": "2024-01-01T00:00:00Z",
        "migration": false,
        "recovery_seal": false,
        "storage_type": "inmem",
    })
}

fn mount_info(name: &str, version: KvVersion) -> Value {
    let hash = fnv1a(name.as_bytes());
    json!({
        "accessor": format!("kv_{:08x}", hash as u32),
        "config": { "default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0 },
        "description": "",
        "external_entropy_access": false,
        "local": false,
        "options": { "version": version.option_str() },
        "plugin_version": "",
        "running_plugin_version": "v0.16.1+builtin",
        "running_sha256": "",
        "seal_wrap": false,
        "type": "kv",
        "uuid": uuid_from_hash(hash),
    })
}

fn builtin_mount(kind: &str, description: &str, local: bool) -> Value {
    let hash = fnv1a(kind.as_bytes());
    json!({
        "accessor": format!("{kind}_{:08x}", hash as u32),
        "config": { "default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0 },
        "description": description,
        "external_entropy_access": false,
        "local": local,
        "options": null,
        "plugin_version": "",
        "running_plugin_version": format!("v{VAULT_VERSION}+builtin.vault"),
        "running_sha256": "",
        "seal_wrap": false,
        "type": kind,
        "uuid": uuid_from_hash(hash),
    })
}

fn fault_response(shared: &Shared, fault: &Fault, api_path: &str) -> Resp {
    match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            errors(status, &["injected fault"])
        }
        Fault::MalformedJson => with_body(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(b"{\"data\": {"),
        ),
        Fault::Html => with_body(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(
                b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
                  <body><h1>Corporate proxy</h1><p>Please sign in to continue.</p></body></html>\n",
            ),
        ),
        Fault::HugeBody(len) => {
            let version = {
                let state = shared.lock();
                state
                    .find_mount(api_path.trim_end_matches('/'))
                    .map_or(KvVersion::V2, |(_, m, _)| m.version)
            };
            let value = Value::String("x".repeat(*len));
            let mut data = Map::new();
            data.insert("value".to_string(), value);
            match version {
                KvVersion::V1 => envelope(shared, KV1_LEASE_DURATION, Value::Object(data)),
                KvVersion::V2 => {
                    let record = VersionRecord {
                        data,
                        created_time: rfc3339(SystemTime::now()),
                        deletion_time: String::new(),
                        destroyed: false,
                    };
                    envelope(
                        shared,
                        0,
                        json!({ "data": record.data, "metadata": record.metadata(1) }),
                    )
                }
            }
        }
        Fault::Sealed => sealed_response(),
        // Handled by the caller before dispatching here.
        Fault::None | Fault::Hang | Fault::Delay(_) => errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            &["unexpected fault dispatch"],
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Response helpers
// ---------------------------------------------------------------------------------------------

fn envelope_value(shared: &Shared, lease_duration: u64, data: Value) -> Value {
    json!({
        "request_id": shared.next_request_id(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": lease_duration,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
    })
}

fn envelope(shared: &Shared, lease_duration: u64, data: Value) -> Resp {
    json_response(
        StatusCode::OK,
        &envelope_value(shared, lease_duration, data),
    )
}

fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json_response(status: StatusCode, value: &Value) -> Resp {
    // Serializing a `Value` cannot fail (all map keys are strings).
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    with_body(status, "application/json", Bytes::from(body))
}

fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn errors(status: StatusCode, messages: &[&str]) -> Resp {
    json_response(status, &json!({ "errors": messages }))
}

fn sealed_response() -> Resp {
    errors(StatusCode::SERVICE_UNAVAILABLE, &["Vault is sealed"])
}

fn unsupported() -> Resp {
    errors(StatusCode::METHOD_NOT_ALLOWED, &[UNSUPPORTED_OPERATION])
}

fn no_handler(api_path: &str) -> Resp {
    errors(
        StatusCode::NOT_FOUND,
        &[&format!("no handler for route \"{api_path}\"")],
    )
}

/// Reads a request body as JSON: empty → `Null`; too big → 413; too slow → 408; bad → 400.
async fn read_body(body: Incoming) -> Result<Value, Resp> {
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_REQUEST_BODY).collect(),
    )
    .await;
    let bytes = match collected {
        Err(_elapsed) => {
            return Err(errors(
                StatusCode::REQUEST_TIMEOUT,
                &["timed out reading request body"],
            ))
        }
        Ok(Err(err)) => {
            let status = if err.is::<http_body_util::LengthLimitError>() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return Err(errors(
                status,
                &[&format!("failed to read request body: {err}")],
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        errors(
            StatusCode::BAD_REQUEST,
            &[&format!("failed to parse JSON input: {err}")],
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

fn trim_slashes(s: &str) -> &str {
    s.trim_matches('/')
}

fn header_str(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Vault's boolean parsing for query flags (`true`, `1`, `t`, ... case-insensitively).
fn query_flag(query: Option<&str>, name: &str) -> bool {
    query_value(query, name)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "t" | "true"))
}

/// Decodes `%XX` escapes (invalid escapes are kept verbatim; invalid UTF-8 is replaced).
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'%'), Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn uuid_from_hash(hash: u64) -> String {
    let hi = (hash >> 32) as u32;
    let lo = hash & 0xffff_ffff_ffff;
    format!("{hi:08x}-0000-4000-8000-{lo:012x}")
}

/// Formats a time like Vault does: `2024-01-01T00:00:00.123456789Z` (UTC).
fn rfc3339(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        since_epoch.subsec_nanos()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, restricted to dates on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_704_067_200, 5);
        assert_eq!(rfc3339(t), "2024-01-01T00:00:00.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(rfc3339(leap), "2000-02-29T23:59:59.000000000Z");
    }

    #[test]
    fn percent_decode_handles_escapes_and_garbage() {
        assert_eq!(percent_decode("gbo/my%20key"), "gbo/my key");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
    }

    #[test]
    fn query_flags_follow_vault_bool_parsing() {
        assert!(query_flag(Some("list=true"), "list"));
        assert!(query_flag(Some("a=b&list=1"), "list"));
        assert!(!query_flag(Some("list=false"), "list"));
        assert!(!query_flag(None, "list"));
    }
}
