//! Behaviour of the filesystem core against the in-memory store, without mounting.

use super::*;
use crate::vault::memory::MemoryStore;
use serde_json::json;
use std::time::Instant;

fn fs_with(store: Arc<MemoryStore>) -> SecretFs {
    let mut config = FsConfig::new("gbo");
    config.operation_timeout = Duration::from_millis(500);
    SecretFs::new(store, config)
}

fn seeded() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.put_str(
        "gbo/llm",
        &[("openai_key", "sk-openai"), ("anthropic_key", "sk-ant")],
    );
    store.put_json(
        "gbo/tables",
        json!({"host": "db", "port": 5432, "ssl": true, "opts": {"a": 1}})
            .as_object()
            .unwrap()
            .clone(),
    );
    store.put_str("gbo/bots/mybot", &[("api_key", "bot-key")]);
    store
}

async fn cat(fs: &SecretFs, path: &str) -> Result<Vec<u8>, FsError> {
    fs.read_path(path).await.map(|v| v.to_vec())
}

async fn names(fs: &SecretFs, path: &str) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list_path(path)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_secret_key_reads_as_its_exact_value_without_newline() {
    let fs = fs_with(seeded());
    assert_eq!(cat(&fs, "gbo/llm/openai_key").await.unwrap(), b"sk-openai");
    assert_eq!(
        cat(&fs, "gbo/bots/mybot/api_key").await.unwrap(),
        b"bot-key"
    );
}

#[tokio::test]
async fn numbers_bools_and_objects_read_as_compact_json() {
    let fs = fs_with(seeded());
    assert_eq!(cat(&fs, "gbo/tables/port").await.unwrap(), b"5432");
    assert_eq!(cat(&fs, "gbo/tables/ssl").await.unwrap(), b"true");
    assert_eq!(cat(&fs, "gbo/tables/opts").await.unwrap(), b"{\"a\":1}");
}

#[tokio::test]
async fn listing_the_namespace_reads_no_secret() {
    let store = seeded();
    let fs = fs_with(store.clone());
    assert_eq!(names(&fs, "").await, vec!["gbo"]);
    assert_eq!(
        store.reads() + store.lists(),
        0,
        "mounting and listing / touches nothing"
    );
    assert_eq!(names(&fs, "gbo").await, vec!["bots", "llm", "tables"]);
    // `ls -l gbo/` also looks every entry up.
    for name in ["bots", "llm", "tables"] {
        let attr = fs.resolve_path(&format!("gbo/{name}")).await.unwrap();
        assert_eq!(attr.kind, NodeType::Directory);
    }
    assert_eq!(store.reads(), 0, "no secret was read");
    assert_eq!(
        store.lists(),
        1,
        "one LIST served the listing and every lookup"
    );
}

#[tokio::test]
async fn one_vault_read_serves_every_key_of_a_path() {
    let store = seeded();
    let fs = fs_with(store.clone());
    cat(&fs, "gbo/llm/openai_key").await.unwrap();
    cat(&fs, "gbo/llm/anthropic_key").await.unwrap();
    assert_eq!(
        names(&fs, "gbo/llm").await,
        vec!["anthropic_key", "openai_key"]
    );
    assert_eq!(store.reads_of("gbo/llm"), 1);
}

#[tokio::test]
async fn a_secret_directory_shows_keys_and_sub_folders_and_the_key_wins_a_clash() {
    let store = Arc::new(MemoryStore::new());
    store.put_str("gbo/a", &[("x", "key-x"), ("plain", "p")]);
    store.put_str("gbo/a/x/deeper", &[("k", "v")]);
    store.put_str("gbo/a/sub/s", &[("k", "v")]);
    let fs = fs_with(store);
    assert_eq!(names(&fs, "gbo/a").await, vec!["plain", "sub", "x"]);
    assert_eq!(cat(&fs, "gbo/a/x").await.unwrap(), b"key-x", "the key wins");
    let sub = fs.resolve_path("gbo/a/sub").await.unwrap();
    assert_eq!(sub.kind, NodeType::Directory);
}

#[tokio::test]
async fn keys_that_are_not_valid_file_names_are_hidden() {
    let store = Arc::new(MemoryStore::new());
    let long = "k".repeat(256);
    store.put_str(
        "gbo/odd",
        &[
            ("", "e"),
            (".", "d"),
            ("..", "dd"),
            ("a/b", "s"),
            ("nul\0x", "n"),
            (&long, "l"),
            ("ok", "fine"),
        ],
    );
    let fs = fs_with(store);
    assert_eq!(names(&fs, "gbo/odd").await, vec!["ok"]);
    assert_eq!(
        cat(&fs, &format!("gbo/odd/{long}")).await,
        Err(FsError::NotFound)
    );
}

#[tokio::test]
async fn files_are_0400_and_directories_0500_owned_by_the_configured_user() {
    let mut config = FsConfig::new("gbo");
    config.uid = 1234;
    config.gid = 5678;
    let fs = SecretFs::new(seeded(), config);
    let file = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    assert_eq!(
        (file.perm, file.uid, file.gid, file.size),
        (0o400, 1234, 5678, 9)
    );
    let dir = fs.resolve_path("gbo/llm").await.unwrap();
    assert_eq!((dir.perm, dir.kind), (0o500, NodeType::Directory));
    assert_eq!(fs.getattr(ROOT_INO).await.unwrap().perm, 0o500);
}

#[tokio::test]
async fn missing_paths_and_keys_are_enoent() {
    let fs = fs_with(seeded());
    for path in ["gbo/nope", "gbo/llm/nope", "other", "gbo/llm/openai_key/x"] {
        let error = fs.resolve_path(path).await.unwrap_err();
        assert!(
            matches!(error.errno(), libc::ENOENT | libc::ENOTDIR),
            "{path}: {error:?}"
        );
    }
}

#[tokio::test]
async fn vault_denial_is_eacces_and_server_errors_are_eio() {
    let store = seeded();
    store.fail("gbo/llm", StoreError::PermissionDenied);
    store.fail("gbo/tables", StoreError::Server(500));
    let fs = fs_with(store);
    let denied = cat(&fs, "gbo/llm/openai_key").await.unwrap_err();
    assert_eq!(denied.errno(), libc::EACCES);
    let broken = cat(&fs, "gbo/tables/host").await.unwrap_err();
    assert_eq!(broken.errno(), libc::EIO);
    assert!(
        !broken.to_string().contains("db"),
        "errors name the path, never a value"
    );
    assert!(broken.to_string().contains("gbo/tables"));
}

#[tokio::test]
async fn a_hanging_vault_fails_the_operation_with_eio_at_the_timeout() {
    let store = seeded();
    store.delay("gbo/llm", Duration::from_secs(30));
    let fs = fs_with(store);
    let started = Instant::now();
    let error = cat(&fs, "gbo/llm/openai_key").await.unwrap_err();
    assert_eq!(error.errno(), libc::EIO);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the operation timeout"
    );
}

#[tokio::test]
async fn a_slow_vault_read_does_not_stall_reads_of_cached_secrets() {
    let store = seeded();
    let fs = Arc::new(fs_with(store.clone()));
    cat(&fs, "gbo/tables/host").await.unwrap();
    store.delay("gbo/llm", Duration::from_millis(400));
    let slow = {
        let fs = fs.clone();
        tokio::spawn(async move { cat(&fs, "gbo/llm/openai_key").await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(cat(&fs, "gbo/tables/host").await.unwrap(), b"db");
    assert!(
        !slow.is_finished(),
        "the cached read finished while the slow one was still waiting"
    );
    assert_eq!(slow.await.unwrap().unwrap(), b"sk-openai");
}

#[tokio::test]
async fn concurrent_readers_of_one_path_cost_one_vault_read() {
    let store = seeded();
    store.delay("gbo/llm", Duration::from_millis(50));
    let fs = Arc::new(fs_with(store.clone()));
    let readers: Vec<_> = (0..16)
        .map(|i| {
            let fs = fs.clone();
            let key = if i % 2 == 0 {
                "openai_key"
            } else {
                "anthropic_key"
            };
            tokio::spawn(async move { cat(&fs, &format!("gbo/llm/{key}")).await })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap().unwrap();
    }
    assert_eq!(store.reads_of("gbo/llm"), 1);
}

#[tokio::test]
async fn opening_for_write_is_erofs() {
    let fs = fs_with(seeded());
    let attr = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    assert_eq!(
        fs.open(attr.ino, true).await.unwrap_err().errno(),
        libc::EROFS
    );
}

#[tokio::test]
async fn an_open_handle_keeps_one_snapshot_while_the_secret_rotates() {
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.cache.ttl = Duration::ZERO;
    let fs = SecretFs::new(store.clone(), config);
    let attr = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    let handle = fs.open(attr.ino, false).await.unwrap();
    let first = fs.read(handle, 0, 3).unwrap().to_vec();
    store.put_str("gbo/llm", &[("openai_key", "ROTATED-VALUE")]);
    let rest = fs.read(handle, 3, 100).unwrap().to_vec();
    assert_eq!([first, rest].concat(), b"sk-openai");
    fs.release(handle);
    assert_eq!(fs.read(handle, 0, 1).unwrap_err(), FsError::BadHandle);
    assert_eq!(
        cat(&fs, "gbo/llm/openai_key").await.unwrap(),
        b"ROTATED-VALUE"
    );
}

#[tokio::test]
async fn zero_ttl_reads_vault_on_every_access() {
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.cache.ttl = Duration::ZERO;
    let fs = SecretFs::new(store.clone(), config);
    cat(&fs, "gbo/llm/openai_key").await.unwrap();
    let before = store.reads_of("gbo/llm");
    cat(&fs, "gbo/llm/openai_key").await.unwrap();
    assert!(store.reads_of("gbo/llm") > before);
}

#[tokio::test]
async fn a_token_without_list_permission_still_reaches_its_secrets() {
    let store = seeded();
    // Deny LIST only, as a read-only policy without `list` does.
    struct NoList(Arc<MemoryStore>);
    #[async_trait::async_trait]
    impl SecretStore for NoList {
        async fn read_secret(&self, path: &str) -> Result<Option<Secret>, StoreError> {
            self.0.read_secret(path).await
        }
        async fn list_folder(&self, _: &str) -> Result<Option<Vec<ListEntry>>, StoreError> {
            Err(StoreError::PermissionDenied)
        }
        async fn status(&self) -> Result<crate::vault::VaultStatus, StoreError> {
            self.0.status().await
        }
        fn describe(&self) -> String {
            "no-list".into()
        }
    }
    let fs = SecretFs::new(Arc::new(NoList(store)), FsConfig::new("gbo"));
    assert_eq!(cat(&fs, "gbo/llm/openai_key").await.unwrap(), b"sk-openai");
    assert_eq!(
        fs.list_path("gbo").await.unwrap_err().errno(),
        libc::EACCES,
        "listing itself stays denied"
    );
}
