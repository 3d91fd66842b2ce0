//! The HTTP transport to Vault as an operator configures it: which proxies and
//! which trust roots a Vault request may go through before the token is sent.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{available_or_skip, gbo_fs, run_bounded, wait_until};
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer};

const LIMIT: Duration = Duration::from_secs(30);

/// A listener posing as an HTTP proxy: it counts the connections it gets and
/// keeps what they send, answering nothing.
struct FakeProxy {
    url: String,
    connections: Arc<AtomicUsize>,
    received: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl FakeProxy {
    fn start() -> FakeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, keep) = (connections.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buffer = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buffer) {
                        keep.lock().unwrap().extend_from_slice(&buffer[..n]);
                    }
                });
            }
        });
        FakeProxy {
            url,
            connections,
            received,
        }
    }
}

#[test]
fn a_proxy_from_the_environment_never_gets_the_requests_or_token_of_a_loopback_vault() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", "sk-through-no-proxy")],
    );
    let proxy = FakeProxy::start();
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs(&server.addr(), &server.token(), dir.path());
    for variable in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        get.env(variable, &proxy.url);
    }
    get.env_remove("NO_PROXY").env_remove("no_proxy").args([
        "--vault-timeout",
        "3",
        "get",
        "gbo/llm/openai_key",
    ]);
    let output = run_bounded(get, LIMIT);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"sk-through-no-proxy");
    assert_eq!(proxy.connections.load(Ordering::SeqCst), 0);
    let received = proxy.received.lock().unwrap();
    assert!(!String::from_utf8_lossy(&received).contains(&server.token()));
}

/// Runs `openssl` with `args` in `dir`, failing the test if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Two CAs, `public-ca.pem` (which signs `server.pem` for localhost) and
/// `private-ca.pem` (which signs nothing here).
fn certificates(dir: &Path) {
    for ca in ["public-ca", "private-ca"] {
        let (key, cert, subject) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN={ca}"),
        );
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &cert,
                "-days", "2", "-subj", &subject,
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "public-ca.pem",
            "-CAkey",
            "public-ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
}

/// An HTTPS server (`openssl s_server -www`) with the public CA's certificate;
/// killed when dropped.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(dir: &Path) -> TlsServer {
        TlsServer::start_with(dir, &[])
    }

    /// With `extra` s_server options, e.g. `-Verify 1 -CAfile ca.pem` to demand a
    /// client certificate.
    fn start_with(dir: &Path, extra: &[&str]) -> TlsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let accept = format!("127.0.0.1:{port}");
        let child = Command::new("openssl")
            .current_dir(dir)
            .args([
                "s_server",
                "-accept",
                &accept,
                "-cert",
                "server.pem",
                "-key",
                "server.key",
                "-www",
                "-quiet",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let server = TlsServer { child, port };
        assert!(
            wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
                &accept
            )
            .is_ok()),
            "s_server did not listen"
        );
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_ca_bundle_is_the_only_trust_root_as_with_the_vault_cli() {
    let has_openssl = Command::new("openssl").arg("version").output().is_ok();
    if !available_or_skip(has_openssl, "GBO_FS_REQUIRE_OPENSSL", "the openssl command") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let server = TlsServer::start(dir.path());
    // The public CA stands for a root the system trusts (SSL_CERT_FILE).
    let attempt = |ca: &str| {
        let mut get = gbo_fs(
            &format!("https://localhost:{}", server.port),
            "TOKEN-CANARY",
            dir.path(),
        );
        get.env("SSL_CERT_FILE", dir.path().join("public-ca.pem"))
            .env_remove("VAULT_SKIP_VERIFY")
            .arg("--vault-cacert")
            .arg(dir.path().join(ca))
            .args(["--vault-timeout", "3", "get", "gbo/llm/openai_key"]);
        let output = run_bounded(get, LIMIT);
        assert!(!output.status.success(), "s_server is no Vault");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // With the public CA as the bundle, TLS succeeds and the request is answered
    // (by a page that is not Vault's): the server is reachable and trusted.
    let trusted = attempt("public-ca.pem");
    assert!(!trusted.contains("UnknownIssuer"), "{trusted}");
    // With the private CA as the bundle, the system's root must not count.
    let refused = attempt("private-ca.pem");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    assert!(!refused.contains("TOKEN-CANARY"));
}

#[test]
fn turning_certificate_checks_off_is_a_warning_even_without_verbose_logging() {
    let dir = tempfile::tempdir().unwrap();
    for (how, value) in [("VAULT_SKIP_VERIFY", "true"), ("--vault-skip-verify", "")] {
        let mut get = gbo_fs("https://127.0.0.1:1", "TOKEN-CANARY", dir.path());
        match how {
            "VAULT_SKIP_VERIFY" => get.env(how, value),
            flag => get.arg(flag),
        };
        get.args(["--vault-timeout", "1", "get", "gbo/llm/openai_key"]);
        let output = run_bounded(get, LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("TLS certificate verification is OFF"),
            "{how}: {stderr}"
        );
        assert!(!stderr.contains("TOKEN-CANARY"));
    }
}

#[test]
fn a_client_certificate_from_vault_client_cert_and_key_is_presented() {
    let has_openssl = Command::new("openssl").arg("version").output().is_ok();
    if !available_or_skip(has_openssl, "GBO_FS_REQUIRE_OPENSSL", "the openssl command") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    // A client certificate (X.509 v3) signed by the private CA, which the server demands.
    openssl(
        dir.path(),
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=gbo-fs",
        ],
    );
    std::fs::write(
        dir.path().join("client.cnf"),
        "extendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        dir.path(),
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "private-ca.pem",
            "-CAkey",
            "private-ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.cnf",
        ],
    );
    let server = TlsServer::start_with(dir.path(), &["-Verify", "1", "-CAfile", "private-ca.pem"]);
    let attempt = |with_certificate: bool| {
        let mut get = gbo_fs(
            &format!("https://localhost:{}", server.port),
            "TOKEN-CANARY",
            dir.path(),
        );
        get.arg("--vault-cacert")
            .arg(dir.path().join("public-ca.pem"))
            .args(["--vault-timeout", "3", "get", "gbo/llm/openai_key"]);
        if with_certificate {
            get.env("VAULT_CLIENT_CERT", dir.path().join("client.pem"))
                .env("VAULT_CLIENT_KEY", dir.path().join("client.key"));
        }
        let output = run_bounded(get, LIMIT);
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // With the certificate the TLS session is set up and answered (by a page that is
    // not Vault's); without it the server ends the handshake.
    let presented = attempt(true);
    assert!(presented.contains("not JSON"), "{presented}");
    let refused = attempt(false);
    assert!(!refused.contains("not JSON"), "{refused}");
}
