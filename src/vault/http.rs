//! The real [`SecretStore`]: HashiCorp Vault's HTTP API through vaultrs.
//!
//! vaultrs builds the HTTP client (TLS, CA certificate, namespace, timeout) and
//! serves the KV v2 reads and lists. Endpoints vaultrs has no call for
//! (`sys/internal/ui/mounts`, `sys/seal-status`) and KV v1, whose responses vary
//! between servers, go through the same kept-alive client with a tolerant parser.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;
use tokio::sync::OnceCell;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::layout::{
    mount_from_sys_mounts, mount_from_ui_mounts, named_mount_in_sys_mounts, KvLayout, KvVersion,
    LayoutOverrides, NamedMount,
};
use super::{kv_answer, ListEntry, Secret, SecretStore, StoreError, VaultStatus};

/// Characters escaped inside one path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// Largest LIST answer accepted (a folder with many thousands of names).
const MAX_LIST_BYTES: usize = 16 << 20;

/// How to reach Vault: the `VAULT_*` settings with the Vault CLI's meanings.
#[derive(Clone)]
pub struct VaultConnection {
    /// `VAULT_ADDR`, e.g. `http://127.0.0.1:8200`.
    pub addr: String,
    /// `VAULT_TOKEN`. Never logged.
    pub token: Zeroizing<String>,
    /// `VAULT_CACERT`: PEM bundle trusted for https.
    pub ca_cert: Option<PathBuf>,
    /// `VAULT_SKIP_VERIFY`: accept any TLS certificate.
    pub skip_verify: bool,
    /// `VAULT_NAMESPACE` (Vault Enterprise / HCP).
    pub namespace: Option<String>,
    /// Longest wait for one Vault request.
    pub timeout: Duration,
    /// Largest secret accepted, in bytes of response body.
    pub max_secret_bytes: usize,
}

impl VaultConnection {
    /// A connection with the defaults: no custom CA, TLS verified, no namespace,
    /// a 5 s timeout and a 1 MiB secret cap.
    pub fn new(addr: impl Into<String>, token: Zeroizing<String>) -> VaultConnection {
        VaultConnection {
            addr: addr.into(),
            token,
            ca_cert: None,
            skip_verify: false,
            namespace: None,
            timeout: Duration::from_secs(5),
            max_secret_bytes: 1 << 20,
        }
    }
}

impl std::fmt::Debug for VaultConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConnection")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .field("ca_cert", &self.ca_cert)
            .field("skip_verify", &self.skip_verify)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Checks that `addr` is an absolute http(s) URL; the error names the value.
pub fn validate_vault_addr(addr: &str) -> Result<url::Url, String> {
    check_vault_addr(addr, "VAULT_ADDR")
}

/// [`validate_vault_addr`] for the value of `setting` (`VAULT_ADDR` or `--vault-addr`).
///
/// Credentials (`user:password@`), a query, a fragment and whitespace are refused: Vault
/// takes none of them, and credentials in the address would end up in logs. An address
/// holding credentials is never echoed.
pub fn check_vault_addr(addr: &str, setting: &str) -> Result<url::Url, String> {
    let shown = without_userinfo(addr);
    if addr.chars().any(char::is_whitespace) {
        return Err(format!(
            "{setting} {shown:?} contains whitespace; give the address alone, e.g. http://127.0.0.1:8200"
        ));
    }
    let parsed = url::Url::parse(addr)
        .map_err(|e| format!("{setting} `{shown}` is not a valid URL: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "{setting} `{shown}` must not contain credentials (`user:password@`); \
             the token comes from VAULT_TOKEN, --vault-token-file or AppRole"
        ));
    }
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{setting} `{shown}` must be an http:// or https:// URL with a host"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{setting} `{shown}` must not have a query (`?`) or fragment (`#`); \
             give scheme, host and port, e.g. http://127.0.0.1:8200"
        ));
    }
    Ok(parsed)
}

/// `addr` with anything between `scheme://` and its last `@` replaced by `***`, so an
/// error can name the address without its credentials. The last `@` anywhere, not
/// only in the authority: a password may hold an unencoded `/`, `?` or `#`.
fn without_userinfo(addr: &str) -> String {
    let (scheme, rest) = match addr.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), addr),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => addr.to_string(),
    }
}

/// The one HTTP client every Vault request goes through, built as the Vault CLI
/// would: a CA bundle (`VAULT_CACERT`) is the only trust root, not one added to the
/// system's; proxies from the environment apply except to a loopback Vault (Go's
/// rule), so a stray `http_proxy` cannot receive the token of a local Vault; turning
/// certificate verification off is logged as a warning.
fn vault_http_client(
    connection: &VaultConnection,
    url: &url::Url,
    identity: Option<reqwest::Identity>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .timeout(connection.timeout);
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    if url.scheme() == "https" {
        if connection.skip_verify {
            tracing::warn!(
                vault = %url,
                "TLS certificate verification is OFF (VAULT_SKIP_VERIFY / --vault-skip-verify): \
                 anyone between gbo-fs and Vault can pose as Vault and receive its token"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(path) = &connection.ca_cert {
            let unusable = || {
                format!(
                    "the CA bundle `{}` could not be read as a PEM certificate bundle",
                    path.display()
                )
            };
            let bytes = std::fs::read(path).map_err(|_| unusable())?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&bytes).map_err(|_| unusable())?;
            builder = builder.tls_certs_only(certificates);
        }
    } else {
        builder = builder.tls_certs_only(Vec::new());
    }
    if is_loopback_host(url) {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the Vault HTTP client: {e}"))
}

/// Whether `url` names this machine: `localhost` or a loopback address.
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            // `localhost.` is the same name, fully qualified.
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => {
            address.is_loopback() || address.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}
/// Checks that `path`, the value of `setting` (`--vault-cacert` or `VAULT_CACERT ...`), is a
/// readable PEM bundle holding at least one certificate; the error names both and the OS error.
pub fn check_ca_bundle(path: &Path, setting: &str) -> Result<(), String> {
    let shown = path.display();
    let bytes =
        std::fs::read(path).map_err(|e| format!("{setting} `{shown}` cannot be read: {e}"))?;
    match reqwest::Certificate::from_pem_bundle(&bytes) {
        Ok(certificates) if !certificates.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "{setting} `{shown}` holds no PEM certificate \
             (expected `-----BEGIN CERTIFICATE-----` blocks)"
        )),
        Err(_) => Err(format!(
            "{setting} `{shown}` is not a valid PEM certificate bundle"
        )),
    }
}

/// One Vault API request made through the kept-alive client directly.
struct ApiRequest<'a> {
    method: &'a str,
    /// After `/v1/`.
    api_path: &'a str,
    json_body: Option<&'a Value>,
    /// Longest answer accepted.
    max_bytes: usize,
    /// Whether `X-Vault-Token` is sent (not to login endpoints).
    send_token: bool,
}

impl<'a> ApiRequest<'a> {
    /// A request with no body, sending the token.
    fn new(method: &'a str, api_path: &'a str, max_bytes: usize) -> ApiRequest<'a> {
        ApiRequest {
            method,
            api_path,
            json_body: None,
            max_bytes,
            send_token: true,
        }
    }
}

/// Vault over HTTP, for one namespace prefix.
pub struct VaultHttpStore {
    /// vaultrs client; behind a lock so a renewed or re-issued token can be swapped in.
    client: tokio::sync::RwLock<VaultClient>,
    /// The current token, for requests made outside vaultrs.
    token: std::sync::RwLock<Zeroizing<String>>,
    http: reqwest::Client,
    base_url: String,
    connection: VaultConnection,
    prefix: String,
    overrides: LayoutOverrides,
    layout: OnceCell<KvLayout>,
    /// Signalled when Vault refuses (403) a secret read or listing: the token may
    /// have been revoked, which the upkeep task then checks at once.
    refused: tokio::sync::Notify,
}

impl VaultHttpStore {
    /// Builds the client. Fails on a bad address or an unreadable CA certificate;
    /// does not contact Vault.
    pub fn new(
        connection: VaultConnection,
        prefix: &str,
        overrides: LayoutOverrides,
    ) -> Result<VaultHttpStore, String> {
        let url = validate_vault_addr(&connection.addr)?;
        let mut builder = VaultClientSettingsBuilder::default();
        builder
            .address(url.as_str())
            .token(connection.token.as_str())
            .timeout(Some(connection.timeout))
            .verify(!connection.skip_verify)
            // vaultrs's own HTTP client is replaced below (`vault_http_client` reads
            // the CA bundle); empty, not unset, so vaultrs does not read
            // VAULT_CACERT/VAULT_CAPATH itself for a client it would throw away.
            .ca_certs(Vec::new())
            .namespace(connection.namespace.clone());
        let settings = builder
            .build()
            .map_err(|e| format!("invalid Vault settings: {e}"))?;
        // vaultrs takes a client certificate (mutual TLS) from VAULT_CLIENT_CERT and
        // VAULT_CLIENT_KEY; the client gbo-fs builds presents it too.
        let identity = settings.identity.clone();
        let mut client = VaultClient::new(settings)
            .map_err(|e| format!("cannot build the Vault client: {e}"))?;
        let http = vault_http_client(&connection, &url, identity)?;
        client.http = rustify::clients::reqwest::Client::new(url.as_str(), http.clone());
        Ok(VaultHttpStore {
            client: tokio::sync::RwLock::new(client),
            token: std::sync::RwLock::new(connection.token.clone()),
            http,
            base_url: connection.addr.trim_end_matches('/').to_string(),
            connection,
            prefix: prefix.to_string(),
            overrides,
            layout: OnceCell::new(),
            refused: tokio::sync::Notify::new(),
        })
    }

    /// Passes `answer` on, signalling [`Self::refused`] when Vault refused it (403).
    fn note_refusal<T>(&self, answer: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(answer, Err(StoreError::PermissionDenied)) {
            self.refused.notify_one();
        }
        answer
    }

    /// Waits until Vault refuses a secret read or listing (403) after this call, or
    /// refused one since the last wait.
    pub async fn refusal(&self) {
        self.refused.notified().await;
    }

    /// Replaces the token used for every later request (renewal, AppRole login).
    pub async fn set_token(&self, token: Zeroizing<String>) {
        self.client.write().await.set_token(token.as_str());
        *self.token.write().unwrap() = token;
    }

    /// Vault's address, as configured.
    pub fn address(&self) -> &str {
        &self.base_url
    }

    /// One JSON request to any Vault API path (after `/v1/`), through the same
    /// kept-alive client, token and namespace. `Ok(None)` is a 404; 204 is `Value::Null`.
    pub async fn request_json(
        &self,
        method: &str,
        api_path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, StoreError> {
        self.with_timeout(self.raw_request_with_body(ApiRequest {
            json_body: body,
            ..ApiRequest::new(method, api_path, MAX_LIST_BYTES)
        }))
        .await
    }

    /// Like [`request_json`](Self::request_json) but without `X-Vault-Token`: for login
    /// endpoints, which must not see a stale or expired token.
    pub async fn request_json_without_token(
        &self,
        method: &str,
        api_path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, StoreError> {
        self.with_timeout(self.raw_request_with_body(ApiRequest {
            json_body: body,
            send_token: false,
            ..ApiRequest::new(method, api_path, MAX_LIST_BYTES)
        }))
        .await
    }

    /// The resolved KV layout; detected on first use, retried until it succeeds.
    pub async fn layout(&self) -> Result<&KvLayout, StoreError> {
        self.layout
            .get_or_try_init(|| async {
                let layout = self.detect_layout().await?;
                tracing::info!(prefix = %self.prefix, "secrets come from {layout}");
                Ok(layout)
            })
            .await
    }

    async fn detect_layout(&self) -> Result<KvLayout, StoreError> {
        let layout = |mount: &str, version| KvLayout::for_mount(&self.prefix, mount, version);
        match (&self.overrides.mount, self.overrides.version) {
            (Some(mount), Some(version)) => Ok(layout(mount, version)),
            (Some(mount), None) => {
                let mount = mount.trim_matches('/');
                Ok(layout(mount, self.named_mount_version(mount).await?))
            }
            (None, forced_version) => {
                let (mount, version) = self.detect_mount().await?;
                Ok(layout(&mount, forced_version.unwrap_or(version)))
            }
        }
    }

    /// The KV mount holding the namespace, found without flags: a mount named after the
    /// prefix, else the `secret` mount.
    async fn detect_mount(&self) -> Result<(String, KvVersion), StoreError> {
        for probe in [self.prefix.clone(), format!("secret/{}", self.prefix)] {
            if let Some(found) = self.ui_mount(&probe).await? {
                return Ok(found);
            }
        }
        if let Some(body) = self.sys_mounts().await? {
            if let Some(found) = mount_from_sys_mounts(&body, &self.prefix) {
                return Ok(found);
            }
        }
        Err(StoreError::Layout(format!(
            "neither a KV mount `{0}/` nor a KV mount `secret/` holding `{0}/` was found \
             (sys/internal/ui/mounts and sys/mounts); pass --kv-mount and --kv-version",
            self.prefix
        )))
    }

    /// The KV version of the mount named by `--kv-mount`, which is used as named, never
    /// swapped for another: an error when Vault says it is missing or not KV. KV v2 when
    /// Vault will not say (the token may read neither mount listing).
    async fn named_mount_version(&self, mount: &str) -> Result<KvVersion, StoreError> {
        if let Some((found, version)) = self.ui_mount(mount).await? {
            if found == mount {
                return Ok(version);
            }
            return Err(StoreError::Layout(format!(
                "--kv-mount `{mount}` is not a mount but a path inside the KV mount `{found}/`"
            )));
        }
        let Some(body) = self.sys_mounts().await? else {
            return Ok(KvVersion::V2);
        };
        match named_mount_in_sys_mounts(&body, mount) {
            NamedMount::Kv(version) => Ok(version),
            NamedMount::NotKv(kind) => Err(StoreError::Layout(format!(
                "--kv-mount `{mount}` is a `{kind}` mount, not a KV secrets engine"
            ))),
            NamedMount::Missing => Err(StoreError::NoSuchMount(mount.to_string())),
        }
    }

    /// `GET sys/internal/ui/mounts/<path>`: the KV mount holding `path`; `None` when Vault
    /// does not tell (404, 403, another error status, not a KV mount).
    async fn ui_mount(&self, path: &str) -> Result<Option<(String, KvVersion)>, StoreError> {
        let api_path = format!("sys/internal/ui/mounts/{path}");
        match self.raw_request("GET", &api_path, MAX_LIST_BYTES).await {
            Ok(Some(body)) => Ok(mount_from_ui_mounts(&body)),
            Ok(None) | Err(StoreError::PermissionDenied) | Err(StoreError::Server(_)) => Ok(None),
            Err(transient) => Err(transient),
        }
    }

    /// `GET sys/mounts`; `None` when the token may not read it (or it answers an error status).
    async fn sys_mounts(&self) -> Result<Option<Value>, StoreError> {
        match self.raw_request("GET", "sys/mounts", MAX_LIST_BYTES).await {
            Ok(body) => Ok(body),
            Err(StoreError::PermissionDenied) | Err(StoreError::Server(_)) => Ok(None),
            Err(transient) => Err(transient),
        }
    }

    /// One request through the kept-alive client. `Ok(None)` is a 404.
    async fn raw_request(
        &self,
        method: &str,
        api_path: &str,
        max_bytes: usize,
    ) -> Result<Option<Value>, StoreError> {
        self.raw_request_with_body(ApiRequest::new(method, api_path, max_bytes))
            .await
    }

    async fn raw_request_with_body(
        &self,
        request: ApiRequest<'_>,
    ) -> Result<Option<Value>, StoreError> {
        let api_path = request.api_path;
        let Some(body) = self.raw_request_bytes(request).await? else {
            return Ok(None);
        };
        if body.is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|_| kv_answer::not_json(api_path))
    }

    /// One request; the body of a 2xx answer, zeroized on drop. `Ok(None)` is a 404.
    async fn raw_request_bytes(
        &self,
        request: ApiRequest<'_>,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let ApiRequest {
            method,
            api_path,
            json_body,
            max_bytes,
            send_token,
        } = request;
        let url = format!("{}/v1/{}", self.base_url, api_path);
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| StoreError::Malformed(format!("bad method {method}")))?;
        let mut request = self
            .http
            .request(method, url)
            .header("X-Vault-Request", "true")
            .timeout(self.connection.timeout);
        if send_token {
            let token = self.token.read().unwrap().clone();
            request = request.header("X-Vault-Token", token.as_str());
        }
        if let Some(json_body) = json_body {
            let encoded = Zeroizing::new(serde_json::to_vec(json_body).unwrap_or_default());
            request = request
                .header("Content-Type", "application/json")
                .body(encoded.to_vec());
        }
        if let Some(namespace) = &self.connection.namespace {
            request = request.header("X-Vault-Namespace", namespace.as_str());
        }
        let mut response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let expected = response.content_length().unwrap_or(0) as usize;
        let mut body = Zeroizing::new(Vec::with_capacity(expected.min(max_bytes)));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if body.len() + chunk.len() > max_bytes {
                return Err(StoreError::TooLarge(max_bytes));
            }
            kv_answer::append_zeroizing(&mut body, &chunk);
        }
        match status {
            200..=299 => Ok(Some(body)),
            404 => self.not_found_unless_no_mount(api_path, mentions_no_route(&body)),
            other => Err(status_error(other, &body)),
        }
    }

    /// A 404 is "not found" (`Ok(None)`), except Vault's "no handler for route" for a path
    /// in the resolved KV mount: then the mount itself is missing.
    fn not_found_unless_no_mount<T>(
        &self,
        api_path: &str,
        no_route: bool,
    ) -> Result<Option<T>, StoreError> {
        match self.layout.get() {
            Some(layout) if no_route && api_path.starts_with(&format!("{}/", layout.mount)) => {
                Err(StoreError::NoSuchMount(layout.mount.clone()))
            }
            _ => Ok(None),
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> StoreError {
        if error.is_timeout() {
            return StoreError::Timeout(self.connection.timeout);
        }
        StoreError::Unreachable(format!("{}: {}", self.base_url, root_cause(error)))
    }

    fn vaultrs_error(&self, error: ClientError) -> StoreError {
        match error {
            ClientError::APIError { code, errors } => {
                let sealed = errors.iter().any(|e| e.contains("sealed"));
                status_error(code, if sealed { b"sealed" } else { b"" })
            }
            ClientError::RestClientError { source } => {
                if let rustify::errors::ClientError::ServerResponseError { code, .. } = &source {
                    return status_error(*code, b"");
                }
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
                while let Some(current) = cause {
                    if let Some(reqwest_error) = current.downcast_ref::<reqwest::Error>() {
                        return self.transport_error(reqwest_error);
                    }
                    cause = current.source();
                }
                // Never the error's text: rustify's parse errors can carry the response body.
                StoreError::Malformed("unexpected answer from Vault".into())
            }
            ClientError::JsonParseError { .. }
            | ClientError::ResponseEmptyError
            | ClientError::ResponseDataEmptyError => {
                StoreError::Malformed("KV answer without the expected data".into())
            }
            _ => StoreError::Malformed("unexpected answer from Vault".into()),
        }
    }

    /// `Ok(None)` for any 404, however vaultrs reported it; the mapped error otherwise.
    fn not_found_or<T>(&self, error: ClientError) -> Result<Option<T>, StoreError> {
        match self.vaultrs_error(error) {
            StoreError::Server(404) => Ok(None),
            other => Err(other),
        }
    }

    async fn with_timeout<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.connection.timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.connection.timeout)),
        }
    }

    /// KV v2 read, parsed straight into zeroized values ([`kv_answer`]).
    async fn read_v2(&self, layout: &KvLayout, path: &str) -> Result<Option<Secret>, StoreError> {
        // A deleted or destroyed version answers 404 (or `data: null`): not found.
        self.read_and_parse(layout, path, kv_answer::parse_v2).await
    }

    async fn read_v1(&self, layout: &KvLayout, path: &str) -> Result<Option<Secret>, StoreError> {
        self.read_and_parse(layout, path, |body, api_path| {
            kv_answer::parse_v1(body, api_path).map(Some)
        })
        .await
    }

    /// One secret read, streamed through the kept-alive client rather than vaultrs
    /// so that a huge answer is cut off while it arrives. A secret whose values add
    /// up to more than `--max-secret-bytes` is refused; the answer itself may be
    /// larger by Vault's KV envelope and JSON escapes (twice the limit plus 64 KiB).
    async fn read_and_parse(
        &self,
        layout: &KvLayout,
        path: &str,
        parse: impl FnOnce(&[u8], &str) -> Result<Option<Secret>, StoreError>,
    ) -> Result<Option<Secret>, StoreError> {
        let api_path = encode_path(&layout.read_api_path(path));
        let limit = self.connection.max_secret_bytes;
        let answer_limit = limit.saturating_mul(2).saturating_add(64 << 10);
        let body = match self
            .raw_request_bytes(ApiRequest::new("GET", &api_path, answer_limit))
            .await
        {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(None),
            Err(StoreError::TooLarge(_)) => return Err(StoreError::TooLarge(limit)),
            Err(error) => return Err(error),
        };
        let secret = parse(&body, &api_path)?;
        let size: usize = secret
            .iter()
            .flat_map(|secret| secret.values.values())
            .map(|value| value.len())
            .sum();
        if size > limit {
            return Err(StoreError::TooLarge(limit));
        }
        Ok(secret)
    }

    async fn list(
        &self,
        layout: &KvLayout,
        path: &str,
    ) -> Result<Option<Vec<ListEntry>>, StoreError> {
        let keys = match layout.version {
            KvVersion::V2 => {
                let folder = format!("{}/", layout.mount_relative(path));
                let folder = folder.trim_start_matches('/');
                let client = self.client.read().await;
                match vaultrs::kv2::list(&*client, &layout.mount, &encode_path(folder)).await {
                    Ok(keys) => keys,
                    Err(ClientError::APIError { code: 404, errors }) => {
                        let no_route = errors.iter().any(|e| mentions_no_route(e.as_bytes()));
                        let api_path = layout.list_api_path(path);
                        return self.not_found_unless_no_mount(&api_path, no_route);
                    }
                    // A soft-deleted version answers 404 with a body: still "not found".
                    Err(error) => return self.not_found_or(error),
                }
            }
            KvVersion::V1 => {
                let api_path = encode_path(&layout.list_api_path(path));
                let Some(body) = self.raw_request("LIST", &api_path, MAX_LIST_BYTES).await? else {
                    return Ok(None);
                };
                keys_of_list_answer(&body).ok_or_else(|| {
                    StoreError::Malformed(format!("answer to LIST {api_path} has no `data.keys`"))
                })?
            }
        };
        Ok(Some(
            keys.iter().map(|k| ListEntry::from_vault_key(k)).collect(),
        ))
    }
}

#[async_trait]
impl SecretStore for VaultHttpStore {
    async fn read_secret(&self, path: &str) -> Result<Option<Secret>, StoreError> {
        super::check_logical_path(path)?;
        let read = self
            .with_timeout(async {
                let layout = self.layout().await?;
                match layout.version {
                    KvVersion::V2 => self.read_v2(layout, path).await,
                    KvVersion::V1 => self.read_v1(layout, path).await,
                }
            })
            .await;
        self.note_refusal(read)
    }

    async fn list_folder(&self, path: &str) -> Result<Option<Vec<ListEntry>>, StoreError> {
        super::check_logical_path(path)?;
        let listed = self
            .with_timeout(async {
                let layout = self.layout().await?;
                self.list(layout, path).await
            })
            .await;
        self.note_refusal(listed)
    }

    async fn status(&self) -> Result<VaultStatus, StoreError> {
        self.with_timeout(async {
            let body = self
                .raw_request("GET", "sys/seal-status", MAX_LIST_BYTES)
                .await?
                .ok_or_else(|| {
                    StoreError::Malformed("sys/seal-status not found (HTTP 404)".into())
                })?;
            let sealed = body.get("sealed").and_then(Value::as_bool).ok_or_else(|| {
                StoreError::Malformed("answer to sys/seal-status has no boolean `sealed`".into())
            })?;
            Ok(VaultStatus {
                initialized: body
                    .get("initialized")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                sealed,
                version: body
                    .get("version")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .await
    }

    fn describe(&self) -> String {
        match self.layout.get() {
            Some(layout) => format!("Vault at {} ({layout})", self.base_url),
            None => format!("Vault at {}", self.base_url),
        }
    }
}

/// Maps an HTTP error status to a store error; `body` only decides "sealed".
fn status_error(status: u16, body: &[u8]) -> StoreError {
    let mentions_sealed = body.windows(6).any(|w| w == b"sealed");
    match status {
        403 => StoreError::PermissionDenied,
        503 if mentions_sealed => StoreError::Sealed,
        other => StoreError::Server(other),
    }
}

/// Whether an error body says nothing is mounted there: Vault's "no handler for route",
/// RustyVault's "Router mount not found". A missing secret's body is empty or `{"errors":[]}`.
fn mentions_no_route(body: &[u8]) -> bool {
    [&b"no handler for route"[..], b"Router mount not found"]
        .iter()
        .any(|marker| body.windows(marker.len()).any(|w| w == *marker))
}

/// `data.keys` of a LIST answer.
fn keys_of_list_answer(body: &Value) -> Option<Vec<String>> {
    let keys = body.get("data")?.get("keys")?.as_array()?;
    Some(
        keys.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    )
}

/// Percent-encodes each `/`-separated segment of a path.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The innermost cause of a transport error, e.g. "Connection refused (os error 111)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_http_urls_and_errors_name_them() {
        assert!(validate_vault_addr("http://127.0.0.1:8200").is_ok());
        assert!(validate_vault_addr("https://vault.example:8200/").is_ok());
        let error = validate_vault_addr("127.0.0.1:8200").unwrap_err();
        assert!(error.contains("127.0.0.1:8200"), "{error}");
        assert!(validate_vault_addr("ftp://host").is_err());
        assert!(validate_vault_addr("not a url").is_err());
    }

    #[test]
    fn loopback_vaults_are_recognised_in_every_spelling() {
        for addr in [
            "http://127.0.0.1:8200",
            "http://127.1.2.3:8200",
            "http://localhost:8200",
            "http://LocalHost.:8200",
            "http://vault.localhost:8200",
            "http://[::1]:8200",
            "http://[::ffff:127.0.0.1]:8200",
            "http://2130706433:8200",
        ] {
            assert!(is_loopback_host(&url::Url::parse(addr).unwrap()), "{addr}");
        }
        for addr in [
            "http://192.0.2.2:8200",
            "http://vault.example:8200",
            "http://localhost.example:8200",
            "http://[::ffff:192.0.2.2]:8200",
        ] {
            assert!(!is_loopback_host(&url::Url::parse(addr).unwrap()), "{addr}");
        }
    }

    #[test]
    fn credentials_in_the_address_are_refused_without_being_echoed() {
        for addr in [
            "http://user:pw-s3cret@127.0.0.1:9",
            "https://pw-s3cret@vault.example",
            "http://user:pw-s3cret@[::1",
            "http://user:pw#s3cret@127.0.0.1:9",
            "https://u:pw?s3cret@vault.example",
            "http://user:pw/s3cret@127.0.0.1:9",
            "user:pw-s3cret@127.0.0.1:9",
        ] {
            let error = check_vault_addr(addr, "--vault-addr").unwrap_err();
            assert!(error.starts_with("--vault-addr"), "{error}");
            assert!(!error.contains("pw-s3cret"), "{error}");
        }
        let error = validate_vault_addr("http://user:pw-s3cret@127.0.0.1:9").unwrap_err();
        assert!(
            error.contains("VAULT_ADDR") && error.contains("credentials"),
            "{error}"
        );
    }

    #[test]
    fn a_query_fragment_or_whitespace_in_the_address_is_refused() {
        for addr in [
            "http://127.0.0.1:8200?x=1",
            "http://127.0.0.1:8200/?",
            "http://127.0.0.1:8200#frag",
            "http://127.0.0.1:8200 ",
            " http://127.0.0.1:8200",
            "http://127.0.0.1:\t8200",
            "http://127.0.0.1:8200\n",
        ] {
            let error = validate_vault_addr(addr).unwrap_err();
            assert!(error.starts_with("VAULT_ADDR"), "{addr:?}: {error}");
        }
        assert!(validate_vault_addr("http://127.0.0.1:8200/vault/").is_ok());
    }

    #[test]
    fn path_segments_are_percent_encoded_but_slashes_kept() {
        assert_eq!(encode_path("gbo/my bot/a?b#c"), "gbo/my%20bot/a%3Fb%23c");
        assert_eq!(encode_path("gbo/llm"), "gbo/llm");
    }

    #[test]
    fn status_errors_distinguish_denied_sealed_and_server_errors() {
        assert_eq!(status_error(403, b""), StoreError::PermissionDenied);
        assert_eq!(
            status_error(503, b"{\"errors\":[\"Vault is sealed\"]}"),
            StoreError::Sealed
        );
        assert_eq!(status_error(503, b""), StoreError::Server(503));
        assert_eq!(status_error(500, b""), StoreError::Server(500));
    }

    #[test]
    fn connection_debug_output_redacts_the_token() {
        let connection = VaultConnection {
            addr: "http://127.0.0.1:1".into(),
            token: Zeroizing::new("hvs.topsecret".into()),
            ca_cert: None,
            skip_verify: false,
            namespace: None,
            timeout: Duration::from_secs(1),
            max_secret_bytes: 1 << 20,
        };
        assert!(!format!("{connection:?}").contains("topsecret"));
    }
}
