//! The token lifecycle against the test server: renewal at 2/3 of the TTL, AppRole login and
//! re-login, a clear start-up error for an invalid token, and no token in any output.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    dir_with_old_env, exit_and_output, fuse_available, gbo_fs, run_bounded, wait_until, Mount,
};
use gbo_fs::testing::vault_server::{TestAppRole, TestVaultConfig, TestVaultServer};
use gbo_fs::token::AppRoleLogin;
use gbo_fs::upkeep::UpkeepSettings;
use gbo_fs::vault::http::VaultHttpStore;
use gbo_fs::vault::SecretStore;
use zeroize::Zeroizing;

const LIMIT: Duration = Duration::from_secs(30);
const ROLE_ID: &str = "role-id-for-test";
const SECRET_ID: &str = "secret-id-never-printed";

fn server_with(config: TestVaultConfig) -> TestVaultServer {
    let server = TestVaultServer::start(config).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-token-test")]);
    server
}

/// A server whose AppRole login accepts ROLE_ID and SECRET_ID (tokens live 60 s).
fn server_accepting_the_test_approle() -> TestVaultServer {
    server_with(TestVaultConfig {
        approle: Some(TestAppRole::new(
            ROLE_ID,
            SECRET_ID,
            Duration::from_secs(60),
        )),
        ..TestVaultConfig::default()
    })
}

fn store_for(server: &TestVaultServer, token: &str) -> Arc<VaultHttpStore> {
    Arc::new(gbo_fs::testing::http_store(&server.addr(), token))
}

fn approle_login() -> AppRoleLogin {
    AppRoleLogin {
        mount: "approle".into(),
        role_id: ROLE_ID.into(),
        secret_id: Zeroizing::new(SECRET_ID.into()),
    }
}

fn read_works(runtime: &tokio::runtime::Runtime, store: &VaultHttpStore) -> bool {
    matches!(runtime.block_on(store.read_secret("gbo/llm")), Ok(Some(_)))
}

/// A server whose token lives `ttl` and is renewable, with the daemon's upkeep
/// started on a runtime of its own for a store using that token.
fn renewable_token_upkeep(
    ttl: Duration,
) -> (
    TestVaultServer,
    tokio::runtime::Runtime,
    Arc<VaultHttpStore>,
) {
    let server = server_with(TestVaultConfig {
        token_ttl: Some(ttl),
        token_renewable: true,
        ..TestVaultConfig::default()
    });
    let runtime = gbo_fs::daemon::runtime().unwrap();
    let store = store_for(&server, &server.token());
    gbo_fs::upkeep::start(store.clone(), UpkeepSettings::default(), &runtime).unwrap();
    (server, runtime, store)
}

#[test]
fn a_renewable_token_is_renewed_at_two_thirds_of_its_ttl_and_reads_outlive_the_ttl() {
    let ttl = Duration::from_secs(6);
    let started = Instant::now();
    let (server, runtime, store) = renewable_token_upkeep(ttl);
    assert_eq!(server.renewals(), 0, "nothing is renewed at start");

    assert!(wait_until(Duration::from_secs(20), || server.renewals() >= 1));
    // lookup-self reports whole seconds left (5 of the 6 by now, perhaps), so the first
    // renewal is due at 2/3 of that: not before about 3.3 s.
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "renewed after {:?}, well before 2/3 of the {ttl:?} TTL",
        started.elapsed()
    );
    assert!(wait_until(Duration::from_secs(40), || server.renewals() >= 3));
    assert!(started.elapsed() > ttl, "the original TTL has passed");
    assert!(
        read_works(&runtime, &store),
        "reads work past the original TTL"
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn a_passing_refusal_of_lookup_self_does_not_stop_renewal_of_a_plain_token() {
    let (server, runtime, store) = renewable_token_upkeep(Duration::from_secs(6));
    assert!(read_works(&runtime, &store));
    // A policy being edited: for a moment the token may not even look itself up.
    server.deny("auth/token/lookup-self");
    server.deny("secret/data/gbo/llm");
    assert!(!read_works(&runtime, &store), "the read is refused");
    let lookups_before = server.count("GET", "auth/token/lookup-self");
    assert!(
        wait_until(Duration::from_secs(10), || {
            server.count("GET", "auth/token/lookup-self") > lookups_before
        }),
        "the refusal made the token be checked"
    );
    server.clear_denies();
    assert!(
        wait_until(Duration::from_secs(20), || server.renewals() >= 2),
        "renewal went on after the refusal passed"
    );
    assert!(
        read_works(&runtime, &store),
        "reads work past the original TTL"
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn a_root_token_that_never_expires_needs_no_requests() {
    let server = server_with(TestVaultConfig::default());
    let runtime = gbo_fs::daemon::runtime().unwrap();
    let store = store_for(&server, &server.token());
    let settings = UpkeepSettings {
        check_interval: Duration::from_millis(100),
        ..UpkeepSettings::default()
    };
    gbo_fs::upkeep::start(store, settings, &runtime).unwrap();
    let after_start = server.total_requests();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(server.total_requests(), after_start);
    assert_eq!(server.count("GET", "auth/token/lookup-self"), 1);
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn approle_logs_in_at_start_and_again_before_a_non_renewable_token_expires() {
    let ttl = Duration::from_secs(3);
    let server = server_with(TestVaultConfig {
        approle: Some(TestAppRole {
            renewable: false,
            ..TestAppRole::new(ROLE_ID, SECRET_ID, ttl)
        }),
        ..TestVaultConfig::default()
    });
    let runtime = gbo_fs::daemon::runtime().unwrap();
    let store = store_for(&server, "");
    let settings = UpkeepSettings {
        approle: Some(approle_login()),
        ..UpkeepSettings::default()
    };
    let started = Instant::now();
    gbo_fs::upkeep::start(store.clone(), settings, &runtime).unwrap();
    assert_eq!(server.approle_logins(), 1);
    assert!(read_works(&runtime, &store));

    assert!(wait_until(Duration::from_secs(15), || {
        server.approle_logins() >= 3
    }));
    assert!(started.elapsed() > ttl);
    assert!(
        read_works(&runtime, &store),
        "reads work past the first token's TTL"
    );
    assert_eq!(server.renewals(), 0);
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn approle_logs_in_again_when_vault_refuses_to_renew_an_expired_token() {
    let server = server_with(TestVaultConfig {
        approle: Some(TestAppRole::new(ROLE_ID, SECRET_ID, Duration::from_secs(3))),
        ..TestVaultConfig::default()
    });
    let runtime = gbo_fs::daemon::runtime().unwrap();
    let store = store_for(&server, "");
    let settings = UpkeepSettings {
        approle: Some(approle_login()),
        ..UpkeepSettings::default()
    };
    gbo_fs::upkeep::start(store.clone(), settings, &runtime).unwrap();
    assert_eq!(server.approle_logins(), 1);
    server.expire_all_tokens();
    assert!(
        !read_works(&runtime, &store),
        "the expired token is refused"
    );

    assert!(wait_until(Duration::from_secs(10), || {
        server.approle_logins() >= 2
    }));
    assert!(read_works(&runtime, &store), "the new token reads again");
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn approle_logs_in_again_as_soon_as_a_read_is_refused_with_a_revoked_token() {
    // The token would be renewed only after 40 s, and the regular checks are 10
    // minutes apart: only the refused read can bring the new login.
    let server = server_accepting_the_test_approle();
    let runtime = gbo_fs::daemon::runtime().unwrap();
    let store = store_for(&server, "");
    let settings = UpkeepSettings {
        approle: Some(approle_login()),
        check_interval: Duration::from_secs(600),
        ..UpkeepSettings::default()
    };
    gbo_fs::upkeep::start(store.clone(), settings, &runtime).unwrap();
    assert_eq!(server.approle_logins(), 1);
    assert!(
        read_works(&runtime, &store),
        "reads, as after the daemon's start-up probe"
    );
    server.expire_all_tokens();
    assert!(
        !read_works(&runtime, &store),
        "the revoked token is refused"
    );

    assert!(
        wait_until(Duration::from_secs(10), || server.approle_logins() >= 2),
        "no new login after the refusal"
    );
    assert!(read_works(&runtime, &store), "the new token reads again");
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn get_with_an_invalid_token_fails_with_a_clear_message() {
    let server = server_with(TestVaultConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs(&server.addr(), "s.invalid-token-value", dir.path());
    get.args(["-vv", "get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("the Vault token is not valid (Vault answered 403 to lookup-self)"),
        "{stderr}"
    );
    assert!(!stderr.contains("s.invalid-token-value"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn status_policy_and_migrate_report_an_invalid_token_not_an_undetectable_mount() {
    let server = server_with(TestVaultConfig::default());
    let dir = dir_with_old_env(".env");
    for args in [
        &["status", "/nonexistent"][..],
        &["policy"],
        &["migrate", "--dry-run"],
        &["ls", "gbo"],
    ] {
        let (code, text) =
            exit_and_output(&server.addr(), "s.invalid-token-value", dir.path(), args);
        assert_eq!(code, Some(1), "{args:?}: {text}");
        assert!(
            text.contains("the Vault token is not valid (Vault answered 403 to lookup-self)"),
            "{args:?}: {text}"
        );
        assert!(!text.contains("cannot determine"), "{args:?}: {text}");
        assert!(!text.contains("s.invalid-token-value"), "{args:?}: {text}");
    }
}

#[test]
fn a_token_that_lookup_self_answers_400_to_is_reported_invalid() {
    use gbo_fs::testing::vault_server::Fault;
    let server = server_with(TestVaultConfig::default());
    server.set_path_fault("auth/token/lookup-self", Fault::Status(400));
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| exit_and_output(&server.addr(), "s.malformed", dir.path(), args);
    let (code, text) = run(&["get", "gbo/llm/openai_key"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("the Vault token is not valid: empty or malformed"),
        "{text}"
    );
    let (code, text) = run(&["status", "--json", "/nonexistent"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("\"valid\": false"), "{text}");
}

#[test]
fn mount_with_an_invalid_token_exits_non_zero_before_mounting() {
    let server = server_with(TestVaultConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let mut mount = gbo_fs(&server.addr(), "s.invalid-token-value", dir.path());
    mount.arg("mount").arg(dir.path().join("secrets"));
    let output = run_bounded(mount, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("the Vault token is not valid"), "{stderr}");
    assert!(!stderr.contains("s.invalid-token-value"), "{stderr}");
}

#[test]
fn get_logs_in_with_approle_and_never_prints_the_credentials_or_the_token() {
    let server = server_accepting_the_test_approle();
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs(&server.addr(), "", dir.path());
    get.env_remove("VAULT_TOKEN")
        .env("VAULT_ROLE_ID", ROLE_ID)
        .env("VAULT_SECRET_ID", SECRET_ID)
        .args(["-vv", "get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(output.stdout, b"sk-token-test");
    assert_eq!(server.approle_logins(), 1);
    for secret in [SECRET_ID, "s.approle-"] {
        assert!(!stderr.contains(secret), "{secret} printed:\n{stderr}");
    }
}

#[test]
fn a_secret_id_file_readable_by_group_is_used_with_a_warning_naming_file_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let server = server_accepting_the_test_approle();
    let dir = tempfile::tempdir().unwrap();
    let secret_id_file = dir.path().join("secret-id");
    std::fs::write(&secret_id_file, format!("{SECRET_ID}\n")).unwrap();
    std::fs::set_permissions(&secret_id_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut get = gbo_fs(&server.addr(), "", dir.path());
    get.env_remove("VAULT_TOKEN")
        .args(["--role-id", ROLE_ID, "--secret-id-file"])
        .arg(&secret_id_file)
        .args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.stdout, b"sk-token-test", "{stderr}");
    assert!(
        stderr.contains("secret-id has mode 0640: group or others may read the AppRole secret_id"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET_ID), "{stderr}");
}

#[test]
fn a_refused_approle_login_is_a_clear_error() {
    let server = server_with(TestVaultConfig {
        approle: Some(TestAppRole::new(
            ROLE_ID,
            "another-secret",
            Duration::from_secs(60),
        )),
        ..TestVaultConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut get = gbo_fs(&server.addr(), "", dir.path());
    get.env_remove("VAULT_TOKEN")
        .env("VAULT_ROLE_ID", ROLE_ID)
        .env("VAULT_SECRET_ID", SECRET_ID)
        .args(["get", "gbo/llm/openai_key"]);
    let output = run_bounded(get, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("AppRole login at auth/approle/login was refused (HTTP 400)"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET_ID), "{stderr}");
}

#[test]
fn a_mounted_daemon_keeps_reading_past_the_token_ttl_and_never_logs_the_token() {
    if !fuse_available() {
        return;
    }
    let server = server_with(TestVaultConfig {
        token: "s.daemon-token-never-logged".into(),
        token_ttl: Some(Duration::from_secs(3)),
        token_renewable: true,
        ..TestVaultConfig::default()
    });
    let mount = Mount::start(
        &server.addr(),
        &server.token(),
        &["-vv", "--cache-ttl", "0"],
    );
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(15), || {
        server.renewals() >= 2 && started.elapsed() > Duration::from_secs(4)
    }));
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-token-test"
    );
    let log = mount.log_text();
    assert!(!log.contains("s.daemon-token-never-logged"), "{log}");
}

#[test]
fn a_daemon_warns_when_its_token_expires_soon_and_cannot_be_renewed() {
    if !fuse_available() {
        return;
    }
    let server = server_with(TestVaultConfig {
        token: "s.short-lived-token".into(),
        token_ttl: Some(Duration::from_secs(120)),
        token_renewable: false,
        ..TestVaultConfig::default()
    });
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    assert!(
        wait_until(Duration::from_secs(10), || mount
            .log_text()
            .contains("is not renewable")),
        "{}",
        mount.log_text()
    );
    let log = mount.log_text();
    assert!(log.contains("the Vault token expires in"), "{log}");
    assert!(!log.contains("s.short-lived-token"), "{log}");
    assert_eq!(server.renewals(), 0);
}
