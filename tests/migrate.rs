//! `gbo-fs migrate` run as an operator would, against the Vault test server: what
//! lands in Vault, what the `.env` becomes, what is never written, and that no
//! secret value or token reaches stdout or stderr.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{gbo_fs, run_bounded};
use gbo_fs::testing::vault_server::{KvVersion, TestVaultConfig, TestVaultServer};
use gbo_fs::vault::http::{VaultConnection, VaultHttpStore};
use gbo_fs::vault::layout::LayoutOverrides;
use gbo_fs::vault::SecretStore;
use zeroize::Zeroizing;

const LIMIT: Duration = Duration::from_secs(30);

/// A working directory holding `.env`, and every output of `migrate` run in it.
struct Workspace {
    dir: tempfile::TempDir,
    outputs: Vec<Output>,
}

impl Workspace {
    fn with_env(contents: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), contents).unwrap();
        Workspace {
            dir,
            outputs: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env_text(&self) -> String {
        std::fs::read_to_string(self.path(".env")).unwrap()
    }

    /// Runs `gbo-fs migrate ARGS` with VAULT_ADDR/VAULT_TOKEN in the environment.
    fn migrate(&mut self, server: &TestVaultServer, args: &[&str]) -> &Output {
        let mut command = gbo_fs(&server.addr(), &server.token(), self.dir.path());
        command.arg("migrate").args(args);
        self.outputs.push(run_bounded(command, LIMIT));
        self.outputs.last().unwrap()
    }

    /// Asserts that no run printed any of `secrets` (stdout or stderr).
    fn assert_never_printed(&self, secrets: &[&str]) {
        for output in &self.outputs {
            for stream in [&output.stdout, &output.stderr] {
                let text = String::from_utf8_lossy(stream);
                for secret in secrets {
                    assert!(!text.contains(secret), "`{secret}` was printed:\n{text}");
                }
            }
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "migrate failed\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// Every key of the secret at a logical path (`gbo/llm`), as the mount shows it.
fn vault_secret(server: &TestVaultServer, logical: &str) -> Option<BTreeMap<String, String>> {
    let connection = VaultConnection {
        addr: server.addr(),
        token: Zeroizing::new(server.token()),
        ca_cert: None,
        skip_verify: false,
        namespace: None,
        timeout: Duration::from_secs(5),
        max_secret_bytes: 1 << 20,
    };
    let store = VaultHttpStore::new(connection, "gbo", LayoutOverrides::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let secret = runtime.block_on(store.read_secret(logical)).unwrap()?;
    Some(
        secret
            .values
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8(v.to_vec()).unwrap()))
            .collect(),
    )
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn writes(server: &TestVaultServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
        .count()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

const FULL_ENV: &str = "\
# botserver settings
BOT_NAME=\"My Bot\"
DATABASE_URL=postgres://gb%20user:p%40ss%3Aw%2Frd-DBSECRET@db.internal/botdb
DIRECTORY_URL=https://zitadel.example
DIRECTORY_PROJECT_ID=proj-7
ZITADEL_CLIENT_ID=client-7
ZITADEL_CLIENT_SECRET=zitadel-CLIENTSECRET
REDIS_URL=redis://:redis%2Fpw-REDISSECRET@[::1]
OPENAI_API_KEY=sk-openai-OPENAISECRET
ANTHROPIC_API_KEY=sk-ant-ANTHROPICSECRET
GROQ_API_KEY=gsk-GROQSECRET
DEEPSEEK_API_KEY=
MISTRAL_API_KEY=
MINIO_ENDPOINT=http://minio:9000
MINIO_ACCESS_KEY=minio-ACCESSKEY
MINIO_SECRET_KEY=minio-MINIOSECRET
ENCRYPTION_KEY=enc-MASTERKEYSECRET
SMTP_HOST=smtp.example
SMTP_USER=bot@example
SMTP_PASSWORD=smtp-SMTPSECRET
SMTP_PORT=587
PORT=8080
";

const FULL_ENV_SECRETS: &[&str] = &[
    "DBSECRET",
    "CLIENTSECRET",
    "REDISSECRET",
    "OPENAISECRET",
    "ANTHROPICSECRET",
    "GROQSECRET",
    "ACCESSKEY",
    "MINIOSECRET",
    "MASTERKEYSECRET",
    "SMTPSECRET",
    gbo_fs::testing::vault_server::DEFAULT_TOKEN,
];

#[test]
fn every_documented_variable_lands_in_its_design_path_and_key() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let mut workspace = Workspace::with_env(FULL_ENV);
    let output = workspace.migrate(&server, &[]);
    assert_success(output);

    assert_eq!(
        vault_secret(&server, "gbo/tables").unwrap(),
        map(&[
            ("host", "db.internal"),
            ("port", "5432"),
            ("database", "botdb"),
            ("username", "gb user"),
            ("password", "p@ss:w/rd-DBSECRET"),
        ])
    );
    assert_eq!(
        vault_secret(&server, "gbo/directory").unwrap(),
        map(&[
            ("url", "https://zitadel.example"),
            ("project_id", "proj-7"),
            ("client_id", "client-7"),
            ("client_secret", "zitadel-CLIENTSECRET"),
        ])
    );
    assert_eq!(
        vault_secret(&server, "gbo/cache").unwrap(),
        map(&[
            ("host", "::1"),
            ("port", "6379"),
            ("password", "redis/pw-REDISSECRET"),
        ])
    );
    // Empty DEEPSEEK/MISTRAL values are never written.
    assert_eq!(
        vault_secret(&server, "gbo/llm").unwrap(),
        map(&[
            ("openai_key", "sk-openai-OPENAISECRET"),
            ("anthropic_key", "sk-ant-ANTHROPICSECRET"),
            ("groq_key", "gsk-GROQSECRET"),
        ])
    );
    assert_eq!(
        vault_secret(&server, "gbo/drive").unwrap(),
        map(&[
            ("endpoint", "http://minio:9000"),
            ("accesskey", "minio-ACCESSKEY"),
            ("secret", "minio-MINIOSECRET"),
        ])
    );
    assert_eq!(
        vault_secret(&server, "gbo/encryption").unwrap(),
        map(&[("master_key", "enc-MASTERKEYSECRET")])
    );
    assert_eq!(
        vault_secret(&server, "gbo/email").unwrap(),
        map(&[
            ("host", "smtp.example"),
            ("user", "bot@example"),
            ("password", "smtp-SMTPSECRET"),
            ("port", "587"),
        ])
    );
    // KV v2 writes are new versions made with check-and-set from nothing.
    assert_eq!(server.secret_version("secret", "gbo/llm"), Some(1));
    workspace.assert_never_printed(FULL_ENV_SECRETS);
}

#[test]
fn the_env_becomes_vault_settings_plus_unrecognised_variables_and_the_old_one_a_0600_backup() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let mut workspace = Workspace::with_env(FULL_ENV);
    std::fs::set_permissions(
        workspace.path(".env"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let output = workspace.migrate(&server, &[]);
    assert_success(output);
    let report = stdout(output);
    assert!(
        report.contains("BOT_NAME, PORT"),
        "kept variables are listed: {report}"
    );

    let backup = workspace.path(".env.bak");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), FULL_ENV);
    assert_eq!(mode_of(&backup), 0o600);
    assert_eq!(mode_of(&workspace.path(".env")), 0o600);
    let lines: Vec<String> = workspace
        .env_text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            format!("VAULT_ADDR={}", server.addr()),
            format!("VAULT_TOKEN={}", server.token()),
            "BOT_NAME=\"My Bot\"".to_string(),
            "PORT=8080".to_string(),
        ]
    );
    // No temp file is left behind.
    let mut names: Vec<String> = std::fs::read_dir(workspace.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".env", ".env.bak"]);
    workspace.assert_never_printed(FULL_ENV_SECRETS);
}

#[test]
fn a_second_run_writes_nothing_to_vault_and_leaves_the_files_alone() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let mut workspace = Workspace::with_env(FULL_ENV);
    assert_success(workspace.migrate(&server, &[]));
    let env_after_first = std::fs::read(workspace.path(".env")).unwrap();
    let backup_after_first = std::fs::read(workspace.path(".env.bak")).unwrap();
    server.reset_counts();

    let output = workspace.migrate(&server, &[]);
    assert_success(output);
    assert!(
        stdout(output).contains("nothing to do"),
        "{}",
        stdout(output)
    );
    assert_eq!(server.count("POST", "secret/data/gbo/llm"), 0);
    assert_eq!(writes(&server), 0);
    assert_eq!(
        std::fs::read(workspace.path(".env")).unwrap(),
        env_after_first
    );
    assert_eq!(
        std::fs::read(workspace.path(".env.bak")).unwrap(),
        backup_after_first
    );
    assert!(!workspace.path(".env.bak.1").exists());
    workspace.assert_never_printed(FULL_ENV_SECRETS);
}

#[test]
fn raw_at_colon_and_slash_in_the_password_an_ipv6_host_and_explicit_ports_are_split_right() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let mut workspace = Workspace::with_env(
        "DATABASE_URL=postgresql://admin:p@ss:w/rd@[2001:db8::5]:6543/gb\n\
         REDIS_HOST=cache.internal\nREDIS_PASSWORD=r@w:pw\n",
    );
    assert_success(workspace.migrate(&server, &[]));
    assert_eq!(
        vault_secret(&server, "gbo/tables").unwrap(),
        map(&[
            ("host", "2001:db8::5"),
            ("port", "6543"),
            ("database", "gb"),
            ("username", "admin"),
            ("password", "p@ss:w/rd"),
        ])
    );
    assert_eq!(
        vault_secret(&server, "gbo/cache").unwrap(),
        map(&[
            ("host", "cache.internal"),
            ("port", "6379"),
            ("password", "r@w:pw")
        ])
    );
    workspace.assert_never_printed(&["p@ss:w/rd", "r@w:pw"]);
}

#[test]
fn values_vault_already_holds_are_not_written_again() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", "sk-same-SAMESECRET"), ("other", "kept")],
    );
    server.put_str("secret", "gbo/encryption", &[("master_key", "KEYSECRET")]);
    let mut workspace = Workspace::with_env(
        "OPENAI_API_KEY=sk-same-SAMESECRET\nENCRYPTION_KEY=KEYSECRET\nLOG_LEVEL=info\n",
    );
    server.reset_counts();
    let output = workspace.migrate(&server, &[]);
    assert_success(output);
    assert!(
        stdout(output).contains("nothing to write"),
        "{}",
        stdout(output)
    );
    assert_eq!(writes(&server), 0);
    assert_eq!(server.secret_version("secret", "gbo/llm"), Some(1));
    // The secrets are safely in Vault, so the .env is still rewritten.
    assert!(!workspace.env_text().contains("OPENAI_API_KEY"));
    assert!(workspace.env_text().contains("LOG_LEVEL=info"));
    workspace.assert_never_printed(&["SAMESECRET", "KEYSECRET"]);
}

#[test]
fn conflicts_are_reported_by_path_and_key_left_alone_and_overwritten_only_with_force() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", "sk-vault-OLDSECRET"), ("custom", "kept")],
    );
    let original = "OPENAI_API_KEY=sk-env-NEWSECRET\nGROQ_API_KEY=gsk-GROQSECRET\n";
    let mut workspace = Workspace::with_env(original);

    let output = workspace.migrate(&server, &[]);
    assert!(!output.status.success(), "a conflict fails the run");
    let message = stderr(output);
    assert!(message.contains("gbo/llm/openai_key"), "{message}");
    assert!(message.contains("--force"), "{message}");
    assert!(stdout(output).contains("CONFLICT"), "{}", stdout(output));
    assert_eq!(
        vault_secret(&server, "gbo/llm").unwrap(),
        map(&[
            ("openai_key", "sk-vault-OLDSECRET"),
            ("custom", "kept"),
            ("groq_key", "gsk-GROQSECRET"),
        ]),
        "the missing key is added, the conflicting one left alone"
    );
    assert_eq!(workspace.env_text(), original, "the .env is kept as it was");
    assert!(!workspace.path(".env.bak").exists());

    let output = workspace.migrate(&server, &["--force"]);
    assert_success(output);
    assert_eq!(
        vault_secret(&server, "gbo/llm").unwrap(),
        map(&[
            ("openai_key", "sk-env-NEWSECRET"),
            ("custom", "kept"),
            ("groq_key", "gsk-GROQSECRET"),
        ])
    );
    assert_eq!(server.secret_version("secret", "gbo/llm"), Some(3));
    assert!(!workspace.env_text().contains("OPENAI_API_KEY"));
    assert_eq!(
        std::fs::read_to_string(workspace.path(".env.bak")).unwrap(),
        original
    );
    workspace.assert_never_printed(&["OLDSECRET", "NEWSECRET", "GROQSECRET"]);
}

#[test]
fn a_dry_run_shows_the_plan_masked_and_writes_neither_vault_nor_files() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-vault-OLDSECRET")]);
    let mut workspace = Workspace::with_env(FULL_ENV);
    server.reset_counts();

    let output = workspace.migrate(&server, &["--dry-run"]);
    assert_success(output);
    let plan = stdout(output);
    let openai_length = "sk-openai-OPENAISECRET".len();
    assert!(
        plan.contains(&format!(
            "gbo/llm openai_key = ****** ({openai_length} chars)"
        )),
        "{plan}"
    );
    assert!(plan.contains("CONFLICT"), "{plan}");
    assert!(plan.contains("gbo/tables password = ******"), "{plan}");
    assert!(plan.contains("nothing was written"), "{plan}");
    assert_eq!(server.count("POST", "secret/data/gbo/tables"), 0);
    assert_eq!(writes(&server), 0);
    assert_eq!(workspace.env_text(), FULL_ENV);
    assert!(!workspace.path(".env.bak").exists());
    workspace.assert_never_printed(FULL_ENV_SECRETS);
    workspace.assert_never_printed(&["OLDSECRET"]);
}

#[test]
fn kv1_mounts_are_merged_with_a_plain_write_and_a_second_run_is_a_no_op() {
    let server = TestVaultServer::start(TestVaultConfig::gbo_mount(KvVersion::V1)).unwrap();
    server.put_str("gbo", "llm", &[("custom", "kept")]);
    let mut workspace = Workspace::with_env("OPENAI_API_KEY=sk-KV1SECRET\n");
    assert_success(workspace.migrate(&server, &[]));
    assert_eq!(
        vault_secret(&server, "gbo/llm").unwrap(),
        map(&[("custom", "kept"), ("openai_key", "sk-KV1SECRET")])
    );
    assert_eq!(server.count("POST", "gbo/llm"), 1);

    // Vault already holds the value: a run on the old file writes nothing.
    std::fs::write(workspace.path(".env"), "OPENAI_API_KEY=sk-KV1SECRET\n").unwrap();
    server.reset_counts();
    assert_success(workspace.migrate(&server, &[]));
    assert_eq!(writes(&server), 0);
    workspace.assert_never_printed(&["KV1SECRET"]);
}

#[test]
fn a_soft_deleted_kv2_secret_is_rewritten_with_check_and_set_at_its_current_version() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-gone")]);
    let connection = VaultConnection {
        addr: server.addr(),
        token: Zeroizing::new(server.token()),
        ca_cert: None,
        skip_verify: false,
        namespace: None,
        timeout: Duration::from_secs(5),
        max_secret_bytes: 1 << 20,
    };
    let store = VaultHttpStore::new(connection, "gbo", LayoutOverrides::default()).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(store.request_json("DELETE", "secret/data/gbo/llm", None))
        .unwrap();

    let mut workspace = Workspace::with_env("GROQ_API_KEY=gsk-AFTERDELETE\n");
    assert_success(workspace.migrate(&server, &[]));
    assert_eq!(server.secret_version("secret", "gbo/llm"), Some(2));
    assert_eq!(
        vault_secret(&server, "gbo/llm").unwrap(),
        map(&[("groq_key", "gsk-AFTERDELETE")])
    );
    workspace.assert_never_printed(&["AFTERDELETE"]);
}

#[test]
fn vault_address_and_token_may_come_from_the_migrated_env_file_itself() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let env_dir = tempfile::tempdir().unwrap();
    let env_path = env_dir.path().join("bot.env");
    let original = format!(
        "VAULT_ADDR={}\nVAULT_TOKEN={}\nOPENAI_API_KEY=sk-FROMFILE\nexport BOT_NAME=b\n",
        server.addr(),
        server.token()
    );
    std::fs::write(&env_path, &original).unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let mut command = gbo_fs(&server.addr(), &server.token(), workdir.path());
    command
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .arg("migrate")
        .arg("--env-file")
        .arg(&env_path);
    let output = run_bounded(command, LIMIT);
    assert_success(&output);
    assert_eq!(
        vault_secret(&server, "gbo/llm").unwrap(),
        map(&[("openai_key", "sk-FROMFILE")])
    );
    assert_eq!(
        std::fs::read_to_string(env_dir.path().join("bot.env.bak")).unwrap(),
        original
    );
    let rewritten = std::fs::read_to_string(&env_path).unwrap();
    assert!(rewritten.contains(&format!("VAULT_ADDR={}\n", server.addr())));
    assert!(rewritten.contains(&format!("VAULT_TOKEN={}\n", server.token())));
    assert!(rewritten.contains("export BOT_NAME=b\n"));
    assert!(!rewritten.contains("sk-FROMFILE"));
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(!text.contains("sk-FROMFILE") && !text.contains(&server.token()));
    }
}

#[test]
fn an_unparsable_url_fails_naming_the_variable_and_file_and_writes_nothing() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let original = "DATABASE_URL=mysql://root:hunter2-URLSECRET@db/x\nOPENAI_API_KEY=sk-x\n";
    let mut workspace = Workspace::with_env(original);
    let output = workspace.migrate(&server, &[]);
    assert!(!output.status.success());
    let message = stderr(output);
    assert!(
        message.contains("DATABASE_URL") && message.contains(".env"),
        "{message}"
    );
    assert_eq!(writes(&server), 0);
    assert_eq!(workspace.env_text(), original);
    workspace.assert_never_printed(&["URLSECRET"]);
}

#[test]
fn a_multi_line_quoted_certificate_survives_the_rewrite_byte_for_byte() {
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let certificate = "BOT_CA_PEM=\"-----BEGIN CERTIFICATE-----\r\nMIIBkTCB+wIJAKHHIG==\r\n-----END CERTIFICATE-----\"";
    let original =
        format!("\u{feff}OPENAI_API_KEY='sk-MULTI\nLINESECRET'\n{certificate}\nPORT=8080\n");
    let mut workspace = Workspace::with_env(&original);
    assert_success(workspace.migrate(&server, &[]));
    assert_eq!(
        vault_secret(&server, "gbo/llm").unwrap(),
        map(&[("openai_key", "sk-MULTI\nLINESECRET")])
    );
    let rewritten = workspace.env_text();
    assert!(
        rewritten.ends_with(&format!("{certificate}\nPORT=8080\n")),
        "{rewritten}"
    );
    assert!(!rewritten.contains("MULTI"), "{rewritten}");
    workspace.assert_never_printed(&["MULTI", "LINESECRET"]);
}

#[test]
fn the_rewritten_env_holds_the_read_only_token_given_or_the_writers_with_a_warning() {
    const WARNING: &str = "warning: the rewritten .env gets the token migrate writes to Vault with";
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).unwrap();
    let mut workspace = Workspace::with_env(FULL_ENV);
    let reader_token = workspace.path("reader.token");
    std::fs::write(&reader_token, "hvs.read-only-READERTOKEN\n").unwrap();
    std::fs::set_permissions(&reader_token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = workspace.migrate(
        &server,
        &["--env-token-file", reader_token.to_str().unwrap()],
    );
    assert_success(output);
    assert!(!stderr(output).contains(WARNING), "{}", stderr(output));
    let env = workspace.env_text();
    assert!(
        env.contains("VAULT_TOKEN=hvs.read-only-READERTOKEN"),
        "{env}"
    );
    assert!(
        !env.contains(&server.token()),
        "the writer's token stays out of the .env"
    );
    workspace.assert_never_printed(&["READERTOKEN", &server.token()]);

    let mut without = Workspace::with_env(FULL_ENV);
    let output = without.migrate(&server, &[]);
    assert_success(output);
    assert!(stderr(output).contains(WARNING), "{}", stderr(output));
    assert!(without
        .env_text()
        .contains(&format!("VAULT_TOKEN={}", server.token())));
}

#[test]
fn with_approle_and_no_env_token_file_migrate_refuses_before_writing_anything() {
    let server = TestVaultServer::start(TestVaultConfig {
        approle: Some(gbo_fs::testing::vault_server::TestAppRole::new(
            "role-migrate",
            "secret-id-MIGRATE",
            Duration::from_secs(60),
        )),
        ..TestVaultConfig::kv2_secret_mount()
    })
    .unwrap();
    let workspace = Workspace::with_env(FULL_ENV);
    let mut command = gbo_fs(&server.addr(), "", workspace.dir.path());
    command
        .env_remove("VAULT_TOKEN")
        .env("VAULT_ROLE_ID", "role-migrate")
        .env("VAULT_SECRET_ID", "secret-id-MIGRATE")
        .arg("migrate");
    let output = run_bounded(command, LIMIT);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--env-token-file"),
        "{}",
        stderr(&output)
    );
    assert_eq!(writes(&server), 0, "nothing written to Vault");
    assert_eq!(workspace.env_text(), FULL_ENV, "the .env is untouched");
    assert!(!stderr(&output).contains("secret-id-MIGRATE"));
}
