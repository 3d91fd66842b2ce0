//! Behaviour of the filesystem core against the in-memory store, without mounting.

use super::*;
use crate::config_csv::MissingReference;
use crate::vault::memory::MemoryStore;
use crate::views::ConfigSources;
use serde_json::json;
use std::path::PathBuf;
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

/// A filesystem with a 300 ms negative TTL whose `gbo` folder is listed (cached).
async fn fs_with_the_top_folder_listed(store: &Arc<MemoryStore>) -> SecretFs {
    let mut config = FsConfig::new("gbo");
    config.cache.negative_ttl = Duration::from_millis(300);
    let fs = SecretFs::new(store.clone(), config);
    assert_eq!(names(&fs, "gbo").await, vec!["bots", "llm", "tables"]);
    fs
}

#[tokio::test]
async fn a_secret_created_after_its_folder_was_listed_shows_once_not_found_expires() {
    let store = seeded();
    let fs = fs_with_the_top_folder_listed(&store).await;
    store.put_str("gbo/created", &[("k", "new-value")]);
    assert!(
        matches!(cat(&fs, "gbo/created/k").await, Err(FsError::NotFound)),
        "within the negative TTL the listing is believed"
    );
    let lists_before = store.lists();
    // Waits out the negative TTL: that is the behaviour under test.
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(cat(&fs, "gbo/created/k").await.unwrap(), b"new-value");
    assert_eq!(store.lists(), lists_before + 1, "one LIST of the folder");
    for absent in ["a", "b", "c"] {
        assert!(cat(&fs, &format!("gbo/{absent}/k")).await.is_err());
    }
    assert_eq!(
        store.lists(),
        lists_before + 1,
        "absent names do not list again within the negative TTL"
    );
}

#[tokio::test]
async fn a_name_missing_from_a_listing_vault_cannot_refresh_is_eio_not_enoent() {
    let store = seeded();
    let fs = fs_with_the_top_folder_listed(&store).await;
    assert_eq!(cat(&fs, "gbo/llm/openai_key").await.unwrap(), b"sk-openai");
    store.put_str("gbo/created", &[("k", "new-value")]);
    // Waits out the negative TTL: that is the behaviour under test.
    std::thread::sleep(Duration::from_millis(350));
    store.fail("gbo", StoreError::Sealed);
    let errors_before = fs.failed_operations.load(Ordering::Relaxed);
    for _ in 0..2 {
        let error = cat(&fs, "gbo/created/k").await.unwrap_err();
        assert_eq!(error.errno(), libc::EIO, "{error}");
    }
    assert!(
        fs.failed_operations.load(Ordering::Relaxed) > errors_before,
        "counted"
    );
    assert_eq!(
        cat(&fs, "gbo/llm/openai_key").await.unwrap(),
        b"sk-openai",
        "cached names are still served"
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

/// What `find <path>` asks of the core: open and read every directory, and look
/// up every entry. Returns the paths found below `path`, sorted.
async fn find(fs: &SecretFs, path: &str) -> Vec<String> {
    let top = fs.resolve_path(path).await.unwrap();
    let mut found = Vec::new();
    let mut dirs = vec![(top.ino, String::new())];
    while let Some((ino, prefix)) = dirs.pop() {
        fs.opendir(ino).await.unwrap();
        for entry in fs.readdir(ino).await.unwrap() {
            let attr = fs.lookup(ino, OsStr::new(&entry.name)).await.unwrap();
            let child = format!("{prefix}{}", entry.name);
            if attr.kind == NodeType::Directory {
                dirs.push((attr.ino, format!("{child}/")));
            }
            found.push(child);
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn find_over_a_folder_of_leaf_secrets_costs_one_list_and_one_read_per_secret() {
    const SECRETS: usize = 50;
    let store = Arc::new(MemoryStore::new());
    for s in 0..SECRETS {
        store.put_str(&format!("gbo/svc/app{s:02}"), &[("k1", "a"), ("k2", "b")]);
    }
    let fs = fs_with(store.clone());
    let lists_before = store.lists();
    let found = find(&fs, "gbo/svc").await;
    assert_eq!(found.len(), SECRETS * 3, "each secret and its two keys");
    assert!(found.contains(&"app07/k2".to_string()));
    assert_eq!(store.lists_of("gbo/svc"), 1, "the folder is listed once");
    let leaf_lists: usize = (0..SECRETS)
        .map(|s| store.lists_of(&format!("gbo/svc/app{s:02}")))
        .sum();
    assert_eq!(
        leaf_lists, 0,
        "a secret listed without `name/` has no children: it is never listed"
    );
    assert_eq!(
        store.lists() - lists_before,
        2,
        "gbo (to find svc) and gbo/svc"
    );
    assert_eq!(store.reads(), SECRETS, "one GET per secret");
    assert_eq!(
        fs.folders.counts().entries,
        2,
        "no negative listing takes a slot"
    );

    find(&fs, "gbo/svc").await;
    assert_eq!(
        (store.lists(), store.reads()),
        (lists_before + 2, SECRETS),
        "a second walk within the TTL asks Vault nothing"
    );
}

#[tokio::test]
async fn a_secret_that_is_also_a_folder_still_shows_its_keys_and_children() {
    let store = Arc::new(MemoryStore::new());
    store.put_str("gbo/a", &[("x", "key-x"), ("plain", "p")]);
    store.put_str("gbo/a/x/deeper", &[("k", "v")]);
    store.put_str("gbo/a/sub/s", &[("k", "v")]);
    store.put_str("gbo/a/leaf", &[("k", "v")]);
    let fs = fs_with(store.clone());
    assert_eq!(
        find(&fs, "gbo").await,
        vec![
            "a",
            "a/leaf",
            "a/leaf/k",
            "a/plain",
            "a/sub",
            "a/sub/s",
            "a/sub/s/k",
            "a/x"
        ]
    );
    assert_eq!(store.lists_of("gbo/a"), 1, "secret and folder: listed");
    assert_eq!(store.lists_of("gbo/a/sub"), 1, "a folder: listed");
    assert_eq!(
        store.lists_of("gbo/a/leaf") + store.lists_of("gbo/a/sub/s"),
        0,
        "leaf secrets: not listed"
    );
    assert_eq!(store.lists(), 3);
}

#[tokio::test]
async fn a_secret_reached_without_its_folder_listing_is_still_listed() {
    let store = seeded();
    store.put_str("gbo/llm/sub/x", &[("k", "v")]);
    // Deny LIST of the namespace folder only: whether `gbo/llm` has children is unknown.
    struct NoTopList(Arc<MemoryStore>);
    #[async_trait::async_trait]
    impl SecretStore for NoTopList {
        async fn read_secret(&self, path: &str) -> Result<Option<Secret>, StoreError> {
            self.0.read_secret(path).await
        }
        async fn list_folder(&self, path: &str) -> Result<Option<Vec<ListEntry>>, StoreError> {
            if path == "gbo" {
                return Err(StoreError::PermissionDenied);
            }
            self.0.list_folder(path).await
        }
        async fn status(&self) -> Result<crate::vault::VaultStatus, StoreError> {
            self.0.status().await
        }
        fn describe(&self) -> String {
            "no-top-list".into()
        }
    }
    let fs = SecretFs::new(Arc::new(NoTopList(store.clone())), FsConfig::new("gbo"));
    assert_eq!(
        names(&fs, "gbo/llm").await,
        vec!["anthropic_key", "openai_key", "sub"]
    );
    assert_eq!(store.lists_of("gbo/llm"), 1);
}

#[tokio::test]
async fn a_leaf_secret_that_gains_a_sub_folder_shows_it_once_its_folder_is_listed_again() {
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.cache.ttl = Duration::from_millis(200);
    let fs = SecretFs::new(store.clone(), config);
    let invalidated = Arc::new(Mutex::new(Vec::new()));
    let record = invalidated.clone();
    fs.set_invalidator(Arc::new(move |ino, _| record.lock().unwrap().push(ino)));
    assert_eq!(
        names(&fs, "gbo/llm").await,
        vec!["anthropic_key", "openai_key"]
    );
    assert_eq!(store.lists_of("gbo/llm"), 0);
    let llm = fs.resolve_path("gbo/llm").await.unwrap().ino;

    store.put_str("gbo/llm/extra", &[("k", "v")]);
    assert_eq!(
        cat(&fs, "gbo/llm/extra/k").await.unwrap(),
        b"v",
        "it opens by its path at once"
    );
    // Waits out the TTL of the `gbo` listing: that is the behaviour under test.
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        names(&fs, "gbo/llm").await,
        vec!["anthropic_key", "extra", "openai_key"]
    );
    assert!(
        invalidated
            .lock()
            .unwrap()
            .contains(&Invalidation::Inode(llm)),
        "the kernel is told to drop the entries it cached for gbo/llm"
    );
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
        Err(FsError::NameTooLong)
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

// ---- config.csv views ----

fn fs_with_views(
    store: Arc<MemoryStore>,
    sources: ConfigSources,
    mode: MissingReference,
) -> SecretFs {
    let mut config = FsConfig::new("gbo");
    config.views = sources;
    config.missing_reference = mode;
    SecretFs::new(store, config)
}

/// A filesystem whose `--config-csv` is a fresh file holding `text`.
fn fs_viewing(
    store: Arc<MemoryStore>,
    text: &str,
    mode: MissingReference,
) -> (tempfile::TempDir, PathBuf, SecretFs) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("config.csv");
    write_file(&source, text);
    let sources = ConfigSources {
        config_csv: Some(source.clone()),
        bots_dir: None,
        mountpoint: None,
        ..ConfigSources::default()
    };
    (dir, source, fs_with_views(store, sources, mode))
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn config_csv_view_substitutes_references_and_keeps_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("config.csv");
    let text = "name,value\r\n# comment,vault:gbo/llm/openai_key\r\n,\r\nllm-api-key, vault:gbo/llm/openai_key \r\nport,vault:gbo/tables/port\r\nplain,a,b";
    write_file(&source, text);
    let fs = fs_with_views(
        seeded(),
        ConfigSources {
            config_csv: Some(source),
            bots_dir: None,
            mountpoint: None,
            ..ConfigSources::default()
        },
        MissingReference::Error,
    );
    let names = names(&fs, "").await;
    assert_eq!(names, vec!["config.csv", "gbo"]);
    let expected = "name,value\r\n# comment,vault:gbo/llm/openai_key\r\n,\r\nllm-api-key, sk-openai \r\nport,5432\r\nplain,a,b";
    assert_eq!(cat(&fs, "config.csv").await.unwrap(), expected.as_bytes());
    let attr = fs.resolve_path("config.csv").await.unwrap();
    assert_eq!(
        attr.size,
        expected.len() as u64,
        "stat size equals what read returns"
    );
    assert_eq!(attr.perm, 0o400);
}

#[tokio::test]
async fn a_view_never_resolves_a_reference_that_climbs_out_of_the_namespace() {
    let store = seeded();
    store.put_str("other/s", &[("k", "outside")]);
    store.put_str("gbo/other/s", &[("k", "inside-but-not-named")]);
    let (_dir, source, fs) = fs_viewing(
        store.clone(),
        "name,value\nup,vault:gbo/../other/s/k\nempty,vault:gbo//llm/openai_key\n",
        MissingReference::Empty,
    );
    let rendered = fs.render_source(&source).await.unwrap();
    assert_eq!(&rendered.bytes[..], b"name,value\nup,\nempty,\n");
    let reasons: Vec<String> = rendered
        .unresolved
        .iter()
        .map(|u| u.reason.to_string())
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].contains("segment `..`"), "{reasons:?}");
    assert!(reasons[1].contains("segment ``"), "{reasons:?}");
    assert_eq!(store.reads(), 0, "refused before any Vault read");
}

#[tokio::test]
async fn all_references_of_a_view_cost_one_read_per_distinct_path() {
    let store = seeded();
    let (_dir, _source, fs) = fs_viewing(
        store.clone(),
        "a,vault:gbo/llm/openai_key\nb,vault:gbo/llm/anthropic_key\nc,vault:gbo/tables/host\nd,vault:gbo/llm/openai_key\n",
        MissingReference::Error,
    );
    cat(&fs, "config.csv").await.unwrap();
    assert_eq!(store.reads(), 2);
    assert_eq!(
        (store.reads_of("gbo/llm"), store.reads_of("gbo/tables")),
        (1, 1)
    );
    cat(&fs, "gbo/llm/openai_key").await.unwrap();
    assert_eq!(store.reads(), 2, "files and views share one cache");
}

#[tokio::test]
async fn each_missing_reference_mode_behaves_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("config.csv");
    write_file(
        &source,
        "ok,vault:gbo/llm/openai_key\nmissing,vault:gbo/llm/nope\n",
    );
    let sources = ConfigSources {
        config_csv: Some(source),
        bots_dir: None,
        mountpoint: None,
        ..ConfigSources::default()
    };
    let error_mode = fs_with_views(seeded(), sources.clone(), MissingReference::Error);
    let error = cat(&error_mode, "config.csv").await.unwrap_err();
    assert_eq!(error.errno(), libc::EIO, "fails closed");
    let empty = fs_with_views(seeded(), sources.clone(), MissingReference::Empty);
    assert_eq!(
        cat(&empty, "config.csv").await.unwrap(),
        b"ok,sk-openai\nmissing,\n"
    );
    let keep = fs_with_views(seeded(), sources, MissingReference::Keep);
    assert_eq!(
        cat(&keep, "config.csv").await.unwrap(),
        b"ok,sk-openai\nmissing,vault:gbo/llm/nope\n"
    );
}

#[tokio::test]
async fn denied_paths_down_vault_and_multiline_secrets_are_unresolvable() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("config.csv");
    let store = seeded();
    store.put_str("gbo/pem", &[("cert", "line1\nline2")]);
    store.fail("gbo/denied", StoreError::PermissionDenied);
    store.fail("gbo/down", StoreError::Unreachable("x".into()));
    let fs = fs_with_views(
        store,
        ConfigSources {
            config_csv: Some(source.clone()),
            bots_dir: None,
            mountpoint: None,
            ..ConfigSources::default()
        },
        MissingReference::Error,
    );
    let checks = fs
        .check_source(&source_with(&source, "a,vault:gbo/pem/cert\nb,vault:gbo/denied/k\nc,vault:gbo/down/k\nd,vault:other/x/k\ne,vault:gbo/llm/openai_key\n"))
        .await
        .unwrap();
    let problems: Vec<bool> = checks.iter().map(|c| c.problem.is_some()).collect();
    assert_eq!(problems, vec![true, true, true, true, false]);
    assert!(checks[0].problem.as_deref().unwrap().contains("line break"));
    assert!(checks[1]
        .problem
        .as_deref()
        .unwrap()
        .contains("permission denied"));
    assert!(checks[3].problem.as_deref().unwrap().contains("outside"));
    assert!(!format!("{checks:?}").contains("line1"));
}

/// Settings showing the bots under `bots` to the view owner uid 4242 (no `--gid`).
fn views_owned_by_4242(bots: PathBuf) -> FsConfig {
    let mut config = FsConfig::new("gbo");
    config.uid = 4242;
    config.views = ConfigSources {
        bots_dir: Some(bots),
        ..ConfigSources::default()
    };
    config
}

/// A world-searchable scratch directory, when running as root (tests of files
/// belonging to another owner need it); `None` otherwise.
fn searchable_dir_as_root() -> Option<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(dir)
}

fn source_with(path: &Path, text: &str) -> PathBuf {
    write_file(path, text);
    path.to_path_buf()
}

#[tokio::test]
async fn a_bot_view_never_shows_a_file_its_owner_could_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let Some(dir) = searchable_dir_as_root() else {
        return; // needs files of another owner
    };
    let root_only = source_with(&dir.path().join("shadow"), "root:$6$hash:19000::\n");
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bots = dir.path().join("bots");
    let honest = source_with(
        &bots.join("good.gbai/good.gbot/config.csv"),
        "name,value\nkey,vault:gbo/bots/mybot/api_key\n",
    );
    std::fs::set_permissions(&honest, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir_all(bots.join("evil.gbai/evil.gbot")).unwrap();
    std::os::unix::fs::symlink(&root_only, bots.join("evil.gbai/evil.gbot/config.csv")).unwrap();
    let mut config = views_owned_by_4242(bots);
    config.gid = 4242;
    let fs = SecretFs::new(seeded(), config);

    assert_eq!(
        cat(&fs, "good.gbai/good.gbot/config.csv").await.unwrap(),
        b"name,value\nkey,bot-key\n"
    );
    let refused = cat(&fs, "evil.gbai/evil.gbot/config.csv")
        .await
        .unwrap_err();
    assert_eq!(refused.errno(), libc::EIO);
    let message = refused.to_string();
    assert!(
        message.contains("uid 4242") && message.contains("shadow"),
        "{message}"
    );
    assert!(!message.contains("$6$hash"));
    assert!(fs
        .resolve_path("evil.gbai/evil.gbot/config.csv")
        .await
        .is_err());
}

#[tokio::test]
async fn a_view_owner_given_only_by_uid_does_not_read_with_the_daemons_group() {
    use std::os::unix::fs::PermissionsExt;
    let Some(dir) = searchable_dir_as_root() else {
        return; // needs files of another owner
    };
    // root:root 0640: readable by the daemon's group (root's), not by uid 4242.
    let root_group = source_with(
        &dir.path().join("root_group.csv"),
        "name,value
x,ROOT-GROUP-ONLY
",
    );
    std::fs::set_permissions(&root_group, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&root_group, Some(0), Some(0)).unwrap();
    let bots = dir.path().join("bots");
    std::fs::create_dir_all(bots.join("a.gbai/b.gbot")).unwrap();
    std::os::unix::fs::symlink(&root_group, bots.join("a.gbai/b.gbot/config.csv")).unwrap();
    // As `mount --uid 4242` without --gid builds it: files keep the daemon's gid.
    let config = views_owned_by_4242(bots);
    let fs = SecretFs::new(seeded(), config);
    let refused = cat(&fs, "a.gbai/b.gbot/config.csv").await.unwrap_err();
    assert_eq!(refused.errno(), libc::EIO);
    assert!(!refused.to_string().contains("ROOT-GROUP-ONLY"));
}

#[tokio::test]
async fn bot_packages_appear_with_their_own_gbot_names_and_track_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let bots = dir.path().to_path_buf();
    write_file(
        &bots.join("campaign-manager.gbai/marketing.gbot/config.csv"),
        "name,value\nkey,vault:gbo/bots/mybot/api_key\n",
    );
    write_file(
        &bots.join("campaign-manager.gbai/marketing.gbot/other.txt"),
        "not shown",
    );
    let fs = fs_with_views(
        seeded(),
        ConfigSources {
            config_csv: None,
            bots_dir: Some(bots.clone()),
            mountpoint: None,
            ..ConfigSources::default()
        },
        MissingReference::Error,
    );
    assert_eq!(names(&fs, "").await, vec!["campaign-manager.gbai", "gbo"]);
    assert_eq!(
        names(&fs, "campaign-manager.gbai").await,
        vec!["marketing.gbot"]
    );
    assert_eq!(
        names(&fs, "campaign-manager.gbai/marketing.gbot").await,
        vec!["config.csv"]
    );
    assert_eq!(
        cat(&fs, "campaign-manager.gbai/marketing.gbot/config.csv")
            .await
            .unwrap(),
        b"name,value\nkey,bot-key\n"
    );
    let package = fs.resolve_path("campaign-manager.gbai").await.unwrap();
    assert_eq!((package.kind, package.perm), (NodeType::Directory, 0o500));

    write_file(
        &bots.join("sales.gbai/sales.gbot/config.csv"),
        "name,value\n",
    );
    assert_eq!(
        names(&fs, "").await,
        vec!["campaign-manager.gbai", "gbo", "sales.gbai"]
    );
    std::fs::remove_dir_all(bots.join("campaign-manager.gbai")).unwrap();
    assert_eq!(names(&fs, "").await, vec!["gbo", "sales.gbai"]);
    assert_eq!(
        fs.resolve_path("campaign-manager.gbai/marketing.gbot/config.csv")
            .await
            .unwrap_err(),
        FsError::NotFound
    );
}

#[tokio::test]
async fn a_view_reflects_source_edits_and_rotations_and_open_handles_keep_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("config.csv");
    write_file(&source, "k,vault:gbo/llm/openai_key\n");
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.cache.ttl = Duration::from_millis(50);
    config.views = ConfigSources {
        config_csv: Some(source.clone()),
        bots_dir: None,
        mountpoint: None,
        ..ConfigSources::default()
    };
    let fs = SecretFs::new(store.clone(), config);
    let attr = fs.resolve_path("config.csv").await.unwrap();
    let handle = fs.open(attr.ino, false).await.unwrap();

    write_file(&source, "edited,vault:gbo/llm/openai_key\n");
    assert_eq!(cat(&fs, "config.csv").await.unwrap(), b"edited,sk-openai\n");
    store.put_str("gbo/llm", &[("openai_key", "rotated")]);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(cat(&fs, "config.csv").await.unwrap(), b"edited,rotated\n");
    assert_eq!(
        fs.resolve_path("config.csv").await.unwrap().size,
        b"edited,rotated\n".len() as u64
    );
    assert_eq!(
        fs.getattr(attr.ino).await.unwrap().size,
        b"k,sk-openai\n".len() as u64,
        "the first inode keeps its content for readers midway (for ROTATION_GRACE)"
    );

    let mut snapshot = Vec::new();
    for offset in (0..100).step_by(7) {
        snapshot.extend_from_slice(&fs.read(handle, offset, 7).unwrap());
    }
    assert_eq!(
        snapshot, b"k,sk-openai\n",
        "the reader that opened first sees one snapshot"
    );
}

#[tokio::test]
async fn a_missing_or_unreadable_source_is_enoent_or_eio_and_the_rest_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("config.csv");
    let fs = fs_with_views(
        seeded(),
        ConfigSources {
            config_csv: Some(source.clone()),
            bots_dir: None,
            mountpoint: None,
            ..ConfigSources::default()
        },
        MissingReference::Error,
    );
    assert_eq!(
        names(&fs, "").await,
        vec!["gbo"],
        "absent source, absent view"
    );
    std::fs::create_dir(&source).unwrap();
    let error = fs.render_source(&source).await.unwrap_err();
    assert_eq!(error.errno(), libc::EIO);
    assert!(error.to_string().contains("config.csv"));
    assert_eq!(cat(&fs, "gbo/llm/openai_key").await.unwrap(), b"sk-openai");
}

#[tokio::test]
async fn a_huge_config_csv_with_invalid_utf8_renders_completely() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("config.csv");
    let mut text = b"name,value\n\xff\xfe,\xc3(\n".to_vec();
    for i in 0..100_000 {
        text.extend_from_slice(format!("setting-{i},value-{i}\n").as_bytes());
    }
    text.extend_from_slice(b"key,vault:gbo/llm/openai_key\n");
    std::fs::write(&source, &text).unwrap();
    let fs = fs_with_views(
        seeded(),
        ConfigSources {
            config_csv: Some(source),
            bots_dir: None,
            mountpoint: None,
            ..ConfigSources::default()
        },
        MissingReference::Error,
    );
    let rendered = cat(&fs, "config.csv").await.unwrap();
    let expected = [
        &text[..text.len() - "vault:gbo/llm/openai_key\n".len()],
        b"sk-openai\n",
    ]
    .concat();
    assert_eq!(rendered, expected);
}

#[tokio::test]
async fn vault_concurrency_caps_requests_in_flight() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..24 {
        store.put_str(&format!("gbo/p{i}"), &[("k", "v")]);
    }
    store.delay("gbo/p", Duration::from_millis(30));
    let mut config = FsConfig::new("gbo");
    config.vault_concurrency = 4;
    let fs = Arc::new(SecretFs::new(store.clone(), config));
    let readers: Vec<_> = (0..24)
        .map(|i| {
            let fs = fs.clone();
            tokio::spawn(async move { fs.secret(&format!("gbo/p{i}")).await })
        })
        .collect();
    for reader in readers {
        assert!(reader.await.unwrap().unwrap().is_some());
    }
    assert_eq!(store.reads(), 24);
    assert_eq!(
        store.max_concurrent_reads(),
        4,
        "never more than --vault-concurrency at once"
    );
}

/// A filesystem whose kernel invalidations are recorded, with `gbo/llm` looked up.
async fn fs_recording_invalidations(
    store: &Arc<MemoryStore>,
) -> (Arc<SecretFs>, Arc<Mutex<Vec<Invalidation>>>) {
    let fs = Arc::new(fs_with(store.clone()));
    let told = Arc::new(Mutex::new(Vec::new()));
    let sink = told.clone();
    fs.set_invalidator(Arc::new(move |invalidation, _| {
        sink.lock().unwrap().push(invalidation)
    }));
    (fs, told)
}

/// Makes the cache fetch `gbo/llm` again and waits for its change to be handled.
async fn refetch(fs: &SecretFs) {
    fs.expire_cache();
    fs.secret("gbo/llm").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reader_midway_through_a_rotated_key_keeps_its_value_while_new_lookups_see_the_new_one() {
    let store = seeded();
    let (fs, told) = fs_recording_invalidations(&store).await;
    let old = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    let unchanged = fs.resolve_path("gbo/llm/anthropic_key").await.unwrap();
    let head = fs.read_at(old.ino, 0, 3).await.unwrap().to_vec();

    store.put_str(
        "gbo/llm",
        &[
            ("openai_key", "sk-rotated-and-longer"),
            ("anthropic_key", "sk-ant"),
        ],
    );
    refetch(&fs).await;
    let new = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    assert_ne!(new.ino, old.ino, "the name leads to a new inode");
    assert_eq!(new.size, "sk-rotated-and-longer".len() as u64);
    assert_eq!(
        fs.resolve_path("gbo/llm/anthropic_key").await.unwrap().ino,
        unchanged.ino,
        "an unchanged key keeps its inode"
    );

    // The old inode still shows the whole old value, however it is read.
    let tail = fs.read_at(old.ino, 3, 4096).await.unwrap().to_vec();
    assert_eq!([head, tail].concat(), b"sk-openai");
    assert_eq!(fs.getattr(old.ino).await.unwrap().size, 9);
    let llm = fs.resolve_path("gbo/llm").await.unwrap().ino;
    let before_grace = told.lock().unwrap().clone();
    assert!(before_grace.contains(&Invalidation::Entry {
        parent: llm,
        name: "openai_key".into()
    }));
    assert!(!before_grace.contains(&Invalidation::Inode(old.ino)));
    assert!(!before_grace.contains(&Invalidation::Inode(unchanged.ino)));

    // After the grace, a reader keeping the old file open sees the rotation too,
    // from the kernel's next attribute request on: a read already past its
    // attribute check still gets the old value, never new bytes cut to 9.
    tokio::time::sleep(ROTATION_GRACE + Duration::from_millis(10)).await;
    assert!(told.lock().unwrap().contains(&Invalidation::Inode(old.ino)));
    assert_eq!(
        fs.read_at(old.ino, 0, 4096).await.unwrap().as_slice(),
        b"sk-openai"
    );
    assert_eq!(fs.getattr(old.ino).await.unwrap().size, 21);
    assert_eq!(
        fs.read_at(old.ino, 0, 4096).await.unwrap().as_slice(),
        b"sk-rotated-and-longer"
    );
    let status: serde_json::Value = serde_json::from_str(&fs.status_json()).unwrap();
    assert_eq!(status["inodes"]["retired"], 1);
    fs.forget(old.ino, 1);
    let status: serde_json::Value = serde_json::from_str(&fs.status_json()).unwrap();
    assert_eq!(
        status["inodes"]["retired"], 0,
        "forgotten inodes leave the table"
    );
}

#[tokio::test(start_paused = true)]
async fn a_revoked_key_stops_showing_at_once_even_to_a_reader_midway() {
    let store = seeded();
    let (fs, told) = fs_recording_invalidations(&store).await;
    let old = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    fs.read_at(old.ino, 0, 3).await.unwrap();
    store.put_str("gbo/llm", &[("anthropic_key", "sk-ant")]);
    refetch(&fs).await;
    assert!(told.lock().unwrap().contains(&Invalidation::Inode(old.ino)));
    assert_eq!(
        fs.read_at(old.ino, 3, 4096).await.unwrap_err(),
        FsError::NotFound
    );
    assert_eq!(
        fs.resolve_path("gbo/llm/openai_key").await.unwrap_err(),
        FsError::NotFound
    );
}

#[tokio::test]
async fn a_value_changed_without_a_change_event_still_gets_a_new_inode() {
    // With no cache at all, no change is ever seen as such: each lookup compares
    // the value its inode shows with Vault's.
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.cache.ttl = Duration::ZERO;
    let fs = SecretFs::new(store.clone(), config);
    let old = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    store.put_str("gbo/llm", &[("openai_key", "sk-second")]);
    assert_eq!(
        fs.getattr(old.ino).await.unwrap().size,
        9,
        "the old inode keeps its size"
    );
    let new = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    assert_ne!(new.ino, old.ino);
    assert_eq!(new.size, 9);
    assert_eq!(
        fs.read_at(new.ino, 0, 64).await.unwrap().as_slice(),
        b"sk-second"
    );
    assert_eq!(
        fs.read_at(old.ino, 0, 64).await.unwrap().as_slice(),
        b"sk-openai"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retired_inode_follows_the_latest_of_several_rotations_within_the_grace() {
    let store = seeded();
    let (fs, _told) = fs_recording_invalidations(&store).await;
    let first = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    store.put_str("gbo/llm", &[("openai_key", "second")]);
    refetch(&fs).await;
    let second = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    store.put_str("gbo/llm", &[("openai_key", "third-value")]);
    refetch(&fs).await;
    let third = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    assert!(first.ino != second.ino && second.ino != third.ino);
    assert_eq!(
        fs.read_at(first.ino, 0, 64).await.unwrap().as_slice(),
        b"sk-openai"
    );
    tokio::time::sleep(ROTATION_GRACE + Duration::from_millis(10)).await;
    for ino in [first.ino, second.ino, third.ino] {
        assert_eq!(fs.getattr(ino).await.unwrap().size, 11);
        assert_eq!(
            fs.read_at(ino, 0, 64).await.unwrap().as_slice(),
            b"third-value",
            "inode {ino} follows to the latest value"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_attribute_request_already_on_its_way_when_a_retired_file_follows_keeps_the_old_size() {
    // The kernel ignores the answer to a request it sent before an invalidation:
    // if that answer switched the content, the kernel would keep the old size and
    // cut the new value to it. Only requests arriving after the follow switch.
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.operation_timeout = Duration::from_secs(30);
    let fs = Arc::new(SecretFs::new(store.clone(), config));
    fs.set_invalidator(Arc::new(|_, _| {}));
    let old = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    store.put_str("gbo/llm", &[("openai_key", "sk-rotated-and-longer")]);
    refetch(&fs).await;

    // A slow Vault: an attribute request arriving now waits 2 s on it, past the
    // 1 s grace at which the old inode follows the rotation.
    store.delay("gbo/llm", Duration::from_secs(2));
    fs.expire_cache();
    let early = tokio::spawn({
        let fs = fs.clone();
        async move { fs.getattr(old.ino).await }
    });
    tokio::time::sleep(ROTATION_GRACE + Duration::from_millis(100)).await;
    assert_eq!(
        early.await.unwrap().unwrap().size,
        9,
        "arrived before the follow"
    );
    let late = fs.getattr(old.ino).await.unwrap();
    assert_eq!(late.size, 21, "arrived after the follow");
    assert_eq!(
        fs.read_at(old.ino, 0, 64).await.unwrap().as_slice(),
        b"sk-rotated-and-longer"
    );
}

#[tokio::test]
async fn a_key_seen_gone_never_shows_its_old_value_again_even_without_a_cache() {
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.cache.ttl = Duration::ZERO;
    let fs = SecretFs::new(store.clone(), config);
    let old = fs.resolve_path("gbo/llm/openai_key").await.unwrap();
    store.delete("gbo/llm");
    assert_eq!(fs.getattr(old.ino).await.unwrap_err(), FsError::NotFound);
    store.put_str("gbo/llm", &[("openai_key", "sk-recreated")]);
    assert_eq!(
        fs.read_at(old.ino, 0, 64).await.unwrap().as_slice(),
        b"sk-recreated",
        "not the value from before the deletion"
    );
    assert_eq!(fs.getattr(old.ino).await.unwrap().size, 12);
}

#[tokio::test]
async fn a_view_that_failed_closed_never_shows_its_earlier_rendering_again() {
    let store = seeded();
    let (_dir, _source, fs) = fs_viewing(
        store.clone(),
        "k,vault:gbo/llm/openai_key\n",
        MissingReference::Error,
    );
    let view = fs.resolve_path("config.csv").await.unwrap();
    assert_eq!(
        fs.read_at(view.ino, 0, 64).await.unwrap().as_slice(),
        b"k,sk-openai\n"
    );
    store.fail("gbo/llm", StoreError::PermissionDenied);
    fs.expire_cache();
    assert_eq!(
        fs.read_at(view.ino, 0, 64).await.unwrap_err().errno(),
        libc::EIO
    );
    store.clear_faults();
    store.put_str("gbo/llm", &[("openai_key", "sk-granted-again")]);
    assert_eq!(
        fs.read_at(view.ino, 0, 64).await.unwrap().as_slice(),
        b"k,sk-granted-again\n",
        "not the rendering from before the denial"
    );
}

#[tokio::test]
async fn without_a_cache_the_kernel_may_not_cache_directory_listings() {
    for (ttl, kernel_may_cache) in [
        (Duration::ZERO, DirCache::Off),
        (Duration::from_secs(1), DirCache::Keep),
    ] {
        let mut config = FsConfig::new("gbo");
        config.cache.ttl = ttl;
        let fs = SecretFs::new(seeded(), config);
        let folder = fs.resolve_path("gbo/llm").await.unwrap();
        assert_eq!(
            fs.opendir(folder.ino).await.unwrap(),
            kernel_may_cache,
            "{ttl:?}"
        );
    }
}

#[tokio::test]
async fn a_secret_deleted_and_created_again_invalidates_its_directory_both_times() {
    let store = seeded();
    let (fs, told) = fs_recording_invalidations(&store).await;
    let folder = fs.resolve_path("gbo/llm").await.unwrap().ino;
    names(&fs, "gbo/llm").await;
    store.delete("gbo/llm");
    fs.expire_cache();
    assert!(fs.secret("gbo/llm").await.unwrap().is_none());
    assert!(told.lock().unwrap().contains(&Invalidation::Inode(folder)));
    told.lock().unwrap().clear();
    store.put_str("gbo/llm", &[("openai_key", "sk-again")]);
    fs.expire_cache();
    assert!(fs.secret("gbo/llm").await.unwrap().is_some());
    assert!(
        told.lock().unwrap().contains(&Invalidation::Inode(folder)),
        "the kernel drops the empty listing it cached"
    );
}

#[tokio::test]
async fn a_directory_whose_entries_changed_unseen_is_dropped_from_the_kernel_cache_at_open() {
    // With room for one secret, a change while the secret is out of the cache is
    // not seen as a change; opening the directory still finds its entries differ
    // from those the kernel last read.
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.cache.capacity = 1;
    let fs = SecretFs::new(store.clone(), config);
    let folder = fs.resolve_path("gbo/llm").await.unwrap().ino;
    assert_eq!(fs.opendir(folder).await.unwrap(), DirCache::Keep);
    assert_eq!(
        names(&fs, "gbo/llm").await,
        vec!["anthropic_key", "openai_key"]
    );
    assert_eq!(
        fs.opendir(folder).await.unwrap(),
        DirCache::Keep,
        "unchanged"
    );

    cat(&fs, "gbo/tables/host").await.unwrap();
    store.put_str("gbo/llm", &[("openai_key", "sk-openai"), ("added", "x")]);
    assert_eq!(fs.opendir(folder).await.unwrap(), DirCache::Refill);
    assert_eq!(names(&fs, "gbo/llm").await, vec!["added", "openai_key"]);
    assert_eq!(
        fs.opendir(folder).await.unwrap(),
        DirCache::Keep,
        "read again"
    );
}

#[tokio::test]
async fn a_view_referencing_more_paths_than_the_limit_fails_without_asking_vault() {
    let dir = tempfile::tempdir().unwrap();
    let lines = |paths: usize| {
        let mut text = String::from("name,value\n");
        for p in 0..paths {
            text.push_str(&format!("key{p},vault:gbo/flood/p{p}/k\n"));
        }
        text
    };
    let store = Arc::new(MemoryStore::new());
    for p in 0..MAX_VIEW_PATHS {
        store.put_str(&format!("gbo/flood/p{p}"), &[("k", "v")]);
    }
    let flood = source_with(&dir.path().join("flood.csv"), &lines(MAX_VIEW_PATHS + 1));
    let mut config = FsConfig::new("gbo");
    config.views = ConfigSources {
        config_csv: Some(flood.clone()),
        bots_dir: None,
        mountpoint: None,
        ..ConfigSources::default()
    };
    let fs = SecretFs::new(store.clone(), config);
    let refused = cat(&fs, "config.csv").await.unwrap_err();
    assert_eq!(refused.errno(), libc::EIO);
    let message = refused.to_string();
    assert!(
        message.contains("flood.csv") && message.contains("257 distinct secret paths"),
        "{message}"
    );
    assert_eq!(store.reads(), 0, "no Vault request for a refused view");

    write_file(&flood, &lines(MAX_VIEW_PATHS));
    let rendered = cat(&fs, "config.csv").await.unwrap();
    assert!(String::from_utf8(rendered).unwrap().contains("key255,v"));
    assert_eq!(store.reads(), MAX_VIEW_PATHS, "one read per path");
}

#[test]
fn problems_that_keep_changing_are_remembered_only_up_to_a_bound() {
    let warnings = WarnOnce::default();
    let logged = (0..WARNED_PROBLEMS_PER_PATH * 3)
        .filter(|n| warnings.first("/bots/a.gbai/b.gbot/config.csv", &format!("missing p{n}")))
        .count();
    assert_eq!(logged, WARNED_PROBLEMS_PER_PATH);
    assert!(
        !warnings.first("/bots/a.gbai/b.gbot/config.csv", "missing p0"),
        "seen"
    );
    let paths_logged = (0..WARNED_PATHS + 50)
        .filter(|n| warnings.first(&format!("/bots/{n}.csv"), "bad"))
        .count();
    assert_eq!(paths_logged, WARNED_PATHS - 1, "one path was already held");
    let held: usize = warnings
        .seen
        .lock()
        .unwrap()
        .values()
        .map(HashSet::len)
        .sum();
    assert!(held <= WARNED_PROBLEMS_PER_PATH + WARNED_PATHS);
}

#[tokio::test]
async fn bots_in_a_package_its_owner_cannot_list_are_not_shown() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        return; // needs directories of another owner
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hidden = dir.path().join("root-only");
    source_with(
        &hidden.join("hidden-project.gbot/config.csv"),
        "name,value\nkey,plain\n",
    );
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
    let bots = dir.path().join("bots");
    source_with(
        &bots.join("good.gbai/good.gbot/config.csv"),
        "name,value\nkey,plain\n",
    );
    std::os::unix::fs::symlink(&hidden, bots.join("evil.gbai")).unwrap();
    let mut config = views_owned_by_4242(bots);
    config.given_gid = Some(4242);
    let fs = SecretFs::new(seeded(), config);
    assert!(names(&fs, "evil.gbai").await.is_empty());
    assert!(fs
        .resolve_path("evil.gbai/hidden-project.gbot")
        .await
        .is_err());
    assert_eq!(names(&fs, "good.gbai").await, ["good.gbot"]);
}

#[tokio::test]
async fn failed_refreshes_count_as_vault_errors_even_when_a_stale_value_covers_them() {
    let store = seeded();
    let mut config = FsConfig::new("gbo");
    config.operation_timeout = Duration::from_millis(500);
    config.cache.ttl = Duration::from_millis(50);
    let fs = SecretFs::new(store.clone(), config);
    assert_eq!(cat(&fs, "gbo/llm/openai_key").await.unwrap(), b"sk-openai");
    let errors = |fs: &SecretFs| -> u64 {
        let status: serde_json::Value = serde_json::from_str(&fs.status_json()).unwrap();
        status["vault_errors"].as_u64().unwrap()
    };
    assert_eq!(errors(&fs), 0);
    store.fail("gbo", StoreError::Sealed);
    // Waits out the TTL: that is the behaviour under test.
    std::thread::sleep(Duration::from_millis(80));
    for _ in 0..3 {
        assert_eq!(
            cat(&fs, "gbo/llm/openai_key").await.unwrap(),
            b"sk-openai",
            "stale"
        );
    }
    assert!(
        errors(&fs) >= 1,
        "an outage covered by stale values still shows in the errors"
    );
    let status: serde_json::Value = serde_json::from_str(&fs.status_json()).unwrap();
    assert_eq!(status["failed_operations"], 0, "no reader saw an error");
}

#[tokio::test]
async fn the_kernels_immediate_retry_of_a_failed_lookup_gets_the_error_without_a_second_wait() {
    let store = seeded();
    let fs = fs_with(store.clone());
    store.fail("gbo/llm", StoreError::Timeout(Duration::from_millis(500)));
    let first = cat(&fs, "gbo/llm/openai_key").await.unwrap_err();
    assert_eq!(first.errno(), libc::EIO);
    let reads = store.reads_of("gbo/llm");
    assert_eq!(reads, 1);
    // The kernel retries at once (a failed revalidation, then a fresh lookup):
    // answered from the remembered failure, no second Vault request to wait on.
    let retried = cat(&fs, "gbo/llm/openai_key").await.unwrap_err();
    assert_eq!(retried.errno(), libc::EIO);
    assert_eq!(store.reads_of("gbo/llm"), reads, "no new request");
    // Waits out the failure memory: that is the behaviour under test.
    store.clear_faults();
    std::thread::sleep(crate::cache::FAILURE_MEMORY + Duration::from_millis(50));
    assert_eq!(cat(&fs, "gbo/llm/openai_key").await.unwrap(), b"sk-openai");
    assert_eq!(store.reads_of("gbo/llm"), reads + 1);
}

#[tokio::test]
async fn one_paths_server_error_is_no_outage_and_its_retry_asks_vault_again() {
    let store = seeded();
    let fs = fs_with(store.clone());
    store.fail("gbo/llm", StoreError::Server(500));
    assert_eq!(
        cat(&fs, "gbo/llm/openai_key").await.unwrap_err().errno(),
        libc::EIO
    );
    let reads = store.reads_of("gbo/llm");
    assert_eq!(
        cat(&fs, "gbo/llm/openai_key").await.unwrap_err().errno(),
        libc::EIO
    );
    assert_eq!(
        store.reads_of("gbo/llm"),
        reads + 1,
        "asked again: Vault itself answers"
    );
    assert!(
        !fs.secrets.vault_failing(),
        "one path's 500 is not an outage"
    );
    assert_eq!(cat(&fs, "gbo/tables/host").await.unwrap(), b"db");
}
