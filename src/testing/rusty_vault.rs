//! Owns the RustyVault (`rvault`) process harness: starts a real Vault-API-compatible server for integration tests, initialises, unseals and mounts KV v1 `gbo`, and talks to it over a tiny blocking HTTP/1.1 client.
//!
//! RustyVault 0.2.1 (`cargo install rusty_vault --version 0.2.1`, binary `rvault`) speaks a
//! subset of the Vault HTTP API: `sys/init`, `sys/unseal`, `sys/seal`, `sys/seal-status`,
//! `sys/mounts`, KV **v1** (read, write, delete, `LIST` method), `auth/token/lookup-self`.
//! It has no KV v2, no `sys/health`, no `sys/internal/ui/mounts`, no `renew-self`,
//! no `?list=true` (only the `LIST` verb) and its responses carry no `request_id`.
//!
//! The harness never prints the root token or the unseal keys (its `Debug` redacts them).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// How long `start`/`restart` wait for the server to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect / read / write timeout of one HTTP request.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect / read timeout of one readiness probe.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Port-clash retries of `start`.
const START_ATTEMPTS: usize = 5;
/// Key shares and threshold used by `start`.
pub const SECRET_SHARES: usize = 5;
pub const SECRET_THRESHOLD: usize = 3;

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One HTTP answer from rvault.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

impl HttpReply {
    /// The body parsed as JSON; `None` for an empty or non-JSON body (e.g. 204, bare 404).
    pub fn json(&self) -> Option<Value> {
        if self.body.trim().is_empty() {
            return None;
        }
        serde_json::from_str(&self.body).ok()
    }
}

/// A running (or killed) rvault process with its own storage in a private temp dir.
pub struct RustyVault {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    root_token: String,
    unseal_keys: Vec<String>,
}

impl fmt::Debug for RustyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustyVault")
            .field("addr", &self.addr())
            .field("dir", &self.dir)
            .field("pid", &self.child.as_ref().map(|c| c.id()))
            .field("root_token", &"<redacted>")
            .field(
                "unseal_keys",
                &format_args!("<{} redacted>", self.unseal_keys.len()),
            )
            .finish()
    }
}

impl RustyVault {
    /// Path of the rvault binary: `$RVAULT_BIN`, else `rvault` on `PATH`, else
    /// `$CARGO_HOME/bin/rvault`, else `~/.cargo/bin/rvault`. `None` if absent
    /// (also when `$RVAULT_BIN` is set but names no executable file).
    pub fn binary() -> Option<PathBuf> {
        if let Some(explicit) = std::env::var_os("RVAULT_BIN").filter(|v| !v.is_empty()) {
            let p = PathBuf::from(explicit);
            return is_executable(&p).then_some(p);
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let p = dir.join("rvault");
                if is_executable(&p) {
                    return Some(p);
                }
            }
        }
        let mut candidates = Vec::new();
        if let Some(ch) = std::env::var_os("CARGO_HOME").filter(|v| !v.is_empty()) {
            candidates.push(PathBuf::from(ch).join("bin/rvault"));
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            candidates.push(PathBuf::from(home).join(".cargo/bin/rvault"));
        }
        candidates.into_iter().find(|p| is_executable(p))
    }

    /// Starts rvault on 127.0.0.1:<free port> with file storage in a fresh temp dir, polls
    /// until it answers (bounded, ~30 s), initialises (5 shares, threshold 3), unseals, and
    /// enables a KV v1 mount named `gbo`. Retries with another port on a port clash.
    pub fn start() -> io::Result<RustyVault> {
        let bin = Self::binary().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "rvault binary not found ($RVAULT_BIN, PATH, ~/.cargo/bin); \
                 install it with `cargo install rusty_vault --version 0.2.1`",
            )
        })?;
        let dir = make_temp_dir()?;
        let mut rv = RustyVault {
            child: None,
            bin,
            dir,
            port: 0,
            root_token: String::new(),
            unseal_keys: Vec::new(),
        };
        // From here on, `rv`'s Drop cleans up the dir and the child on any error.
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            rv.port = free_port()?;
            match rv.spawn_and_wait() {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                Err(e) => {
                    rv.kill();
                    // A child that exited before answering most likely lost the port race.
                    if e.kind() == io::ErrorKind::AddrInUse {
                        last_err = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        rv.init()?;
        rv.unseal()?;
        let reply = rv.request("POST", "sys/mounts/gbo", Some(&json!({"type": "kv"})), true)?;
        if reply.status != 204 && reply.status != 200 {
            return Err(other(format!(
                "enabling KV mount gbo failed: HTTP {} {}",
                reply.status, reply.body
            )));
        }
        Ok(rv)
    }

    /// `http://127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private temp dir (holds `config.hcl`, `data/`, `work/`, `rvault.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root token returned by `sys/init` (a UUID). Do not print it.
    pub fn root_token(&self) -> String {
        self.root_token.clone()
    }

    /// The 5 unseal keys (hex, 66 chars each). Do not print them.
    pub fn unseal_keys(&self) -> Vec<String> {
        self.unseal_keys.clone()
    }

    /// Whether the child process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Writes a KV v1 secret, e.g. `put("gbo/llm", &json!({"openai_key": "sk-1"}))`.
    /// Panics if the server does not answer 204/200 (the token is never in the message).
    pub fn put(&self, path: &str, json: &Value) {
        let reply = self
            .request("POST", path, Some(json), true)
            .unwrap_or_else(|e| panic!("rvault put {path}: {e}"));
        assert!(
            reply.status == 204 || reply.status == 200,
            "rvault put {path}: HTTP {} {}",
            reply.status,
            reply.body
        );
    }

    /// Reads a KV v1 secret and returns its `data` object (not the envelope);
    /// `None` if the server answers 404. Panics on any other failure (e.g. sealed: 503).
    pub fn get(&self, path: &str) -> Option<Value> {
        let reply = self
            .request("GET", path, None, true)
            .unwrap_or_else(|e| panic!("rvault get {path}: {e}"));
        match reply.status {
            404 => None,
            200 => Some(
                reply
                    .json()
                    .and_then(|mut v| v.get_mut("data").map(Value::take))
                    .unwrap_or_else(|| panic!("rvault get {path}: no data in {}", reply.body)),
            ),
            s => panic!("rvault get {path}: HTTP {s} {}", reply.body),
        }
    }

    /// `LIST /v1/<path>`: the keys (folders end in `/`). rvault answers 200 with `[]` for a
    /// missing folder (real Vault: 404). `None` only on 404 (e.g. no such mount).
    pub fn list(&self, path: &str) -> Option<Vec<String>> {
        let reply = self
            .request("LIST", path, None, true)
            .unwrap_or_else(|e| panic!("rvault list {path}: {e}"));
        match reply.status {
            404 => None,
            200 => {
                let v = reply.json().unwrap_or(Value::Null);
                let keys = v["data"]["keys"].as_array().cloned().unwrap_or_default();
                Some(
                    keys.into_iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect(),
                )
            }
            s => panic!("rvault list {path}: HTTP {s} {}", reply.body),
        }
    }

    /// Deletes a KV v1 secret (rvault answers 204 even when it did not exist).
    pub fn delete(&self, path: &str) {
        let reply = self
            .request("DELETE", path, None, true)
            .unwrap_or_else(|e| panic!("rvault delete {path}: {e}"));
        assert!(
            reply.status == 204 || reply.status == 200,
            "rvault delete {path}: HTTP {}",
            reply.status
        );
    }

    /// `PUT /v1/sys/seal` (supported by rvault 0.2.1: 204; note it does not check the token).
    /// Panics unless it answered 204/200 or 503 "already sealed".
    pub fn seal(&self) {
        let reply = self
            .request("PUT", "sys/seal", None, true)
            .unwrap_or_else(|e| panic!("rvault seal: {e}"));
        assert!(
            matches!(reply.status, 200 | 204 | 503),
            "rvault seal: HTTP {} {}",
            reply.status,
            reply.body
        );
    }

    /// `GET /v1/sys/seal-status` → `Some(true)` sealed, `Some(false)` unsealed, `None` if it
    /// does not answer that (e.g. not initialised: rvault answers 500).
    pub fn is_sealed(&self) -> Option<bool> {
        let reply = self.request("GET", "sys/seal-status", None, false).ok()?;
        if reply.status != 200 {
            return None;
        }
        reply.json()?.get("sealed")?.as_bool()
    }

    /// Sends each key to `PUT /v1/sys/unseal` until unsealed; returns `Ok(true)` if unsealed
    /// at the end. A key rvault rejects is an error.
    pub fn unseal_with(&self, keys: &[String]) -> io::Result<bool> {
        for key in keys {
            let reply = self.request("PUT", "sys/unseal", Some(&json!({ "key": key })), false)?;
            if reply.status != 200 {
                // Body never contains the key (rvault answers e.g. "unseal key is invalid").
                return Err(other(format!(
                    "unseal: HTTP {} {}",
                    reply.status, reply.body
                )));
            }
            if reply.json().and_then(|v| v["sealed"].as_bool()) == Some(false) {
                return Ok(true);
            }
        }
        Ok(self.is_sealed() == Some(false))
    }

    /// Unseals with the first 3 of the stored keys.
    pub fn unseal(&self) -> io::Result<()> {
        let keys = self.unseal_keys[..SECRET_THRESHOLD.min(self.unseal_keys.len())].to_vec();
        if self.unseal_with(&keys)? {
            Ok(())
        } else {
            Err(other("still sealed after threshold keys".into()))
        }
    }

    /// Kills the process and starts it again on the same port and storage; it comes back
    /// sealed. Polls until it answers (bounded).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let r = self.spawn_and_wait();
        if r.is_err() {
            self.kill();
        }
        r
    }

    /// Kills the process (SIGKILL) and reaps it. Storage stays for `restart`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One raw HTTP request to `/v1/<path>` (path without leading `/v1/`, e.g. `gbo/llm`,
    /// `sys/mounts`). `with_token` adds `X-Vault-Token: <root token>`. Any method name works
    /// (`LIST` included).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        with_token: bool,
    ) -> io::Result<HttpReply> {
        let token = if with_token {
            Some(self.root_token.as_str())
        } else {
            None
        };
        self.request_as(method, path, body, token)
    }

    /// Like [`request`](Self::request) with an explicit token (`None`: no token header).
    pub fn request_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> io::Result<HttpReply> {
        let path = format!(
            "/v1/{}",
            path.trim_start_matches('/').trim_start_matches("v1/")
        );
        http_request(self.port, method, &path, body, token, IO_TIMEOUT)
    }

    // ---- internals ----

    fn write_config(&self) -> io::Result<PathBuf> {
        let cfg = format!(
            "storage \"file\" {{\n  path = \"{data}\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\n\
             log_level = \"info\"\n\
             work_dir = \"{work}\"\n",
            data = hcl_escape(&self.dir.join("data")),
            work = hcl_escape(&self.dir.join("work")),
            port = self.port,
        );
        let path = self.dir.join("config.hcl");
        std::fs::write(&path, cfg)?;
        Ok(path)
    }

    /// Spawns the child with the current port and waits until `GET /v1/sys/init` answers.
    /// `AddrInUse` if the child died before answering (most likely lost the port).
    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let config = self.write_config()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rvault.log"))?;
        let child = Command::new(&self.bin)
            .arg("server")
            .arg("--config")
            .arg(&config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "rvault exited ({status}) before answering on port {}; log tail: {}",
                        self.port,
                        self.log_tail()
                    ),
                ));
            }
            // Short timeout: a foreign listener on the port may accept but never answer.
            if let Ok(reply) =
                http_request(self.port, "GET", "/v1/sys/init", None, None, POLL_TIMEOUT)
            {
                if reply.status == 200
                    && reply.json().is_some_and(|v| v.get("initialized").is_some())
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "rvault did not answer within {READY_TIMEOUT:?}; log tail: {}",
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn init(&mut self) -> io::Result<()> {
        let reply = self.request(
            "PUT",
            "sys/init",
            Some(&json!({"secret_shares": SECRET_SHARES, "secret_threshold": SECRET_THRESHOLD})),
            false,
        )?;
        if reply.status != 200 {
            return Err(other(format!(
                "sys/init: HTTP {} {}",
                reply.status, reply.body
            )));
        }
        let v = reply
            .json()
            .ok_or_else(|| other("sys/init: non-JSON answer".into()))?;
        let keys: Vec<String> = v["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let token = v["root_token"].as_str().unwrap_or_default().to_string();
        if keys.len() != SECRET_SHARES || token.is_empty() {
            return Err(other(format!(
                "sys/init: expected {SECRET_SHARES} keys and a root_token, got {} keys",
                keys.len()
            )));
        }
        self.unseal_keys = keys;
        self.root_token = token;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("rvault.log")).unwrap_or_default();
        // rvault prints its whole --help after a failure; keep the first lines about the error.
        let relevant: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("error") || l.contains("ERROR") || l.contains("WARN"))
            .collect();
        let joined = relevant.join(" | ");
        let start = joined.len().saturating_sub(600);
        let start = (start..joined.len())
            .find(|i| joined.is_char_boundary(*i))
            .unwrap_or(joined.len());
        joined[start..].to_string()
    }
}

impl Drop for RustyVault {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn hcl_escape(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

fn make_temp_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("gbo-rvault-{}-{nanos}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(other("could not create a unique temp dir".into()))
}

fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            // Keep an explicit query string intact.
            b'?' | b'=' | b'&' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Minimal blocking HTTP/1.1 client: one request per connection (`Connection: close`).
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
    timeout: Duration,
) -> io::Result<HttpReply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: application/json\r\n",
        percent_encode_path(path)
    );
    if body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", payload.len()));
    if let Some(t) = token {
        head.push_str(&format!("X-Vault-Token: {t}\r\n"));
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(payload.as_bytes());
    stream.write_all(&req)?;
    stream.flush()?;

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> io::Result<HttpReply> {
    let bad = |m: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad HTTP response: {m}"),
        )
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("non-UTF-8 header"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                content_length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("chunked body"))?;
    } else if let Some(n) = content_length {
        body.truncate(n);
    }
    Ok(HttpReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "{}"));
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        assert!(r.json().is_none());
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.json().unwrap()["a"], 1);
    }

    #[test]
    fn encodes_paths() {
        assert_eq!(
            percent_encode_path("/v1/gbo/sp ace/ü"),
            "/v1/gbo/sp%20ace/%C3%BC"
        );
        assert_eq!(
            percent_encode_path("/v1/gbo/a-b_c.d~e"),
            "/v1/gbo/a-b_c.d~e"
        );
    }

    /// A taken port makes the child exit early, reported as `AddrInUse` (which `start` retries).
    #[test]
    fn port_clash_is_reported_as_addr_in_use() {
        let Some(bin) = RustyVault::binary() else {
            eprintln!("SKIP port_clash_is_reported_as_addr_in_use: rvault not found");
            return;
        };
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut rv = RustyVault {
            child: None,
            bin,
            dir: make_temp_dir().unwrap(),
            port: taken.local_addr().unwrap().port(),
            root_token: String::new(),
            unseal_keys: Vec::new(),
        };
        let t0 = Instant::now();
        let err = rv.spawn_and_wait().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(t0.elapsed() < READY_TIMEOUT);
        let dir = rv.dir.clone();
        drop(rv);
        assert!(!dir.exists());
    }

    #[test]
    fn debug_redacts_secrets() {
        let rv = RustyVault {
            child: None,
            bin: PathBuf::from("/nonexistent"),
            dir: std::env::temp_dir().join("gbo-rvault-debug-test-never-created"),
            port: 1,
            root_token: "tok-SECRET".into(),
            unseal_keys: vec!["key-SECRET".into()],
        };
        let s = format!("{rv:?}");
        assert!(!s.contains("SECRET"), "{s}");
    }
}
