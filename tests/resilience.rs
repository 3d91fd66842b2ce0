//! Through a real mount: kernel caching with rotation, the status file, and
//! serving cached secrets while the Vault-API test server fails in every way.

mod common;

use std::time::{Duration, Instant};

use common::{errno_of, fuse_available, wait_until, Mount};
use gbo_fs::testing::vault_server::{Fault, TestVaultConfig, TestVaultServer};

fn seeded(port: u16) -> TestVaultServer {
    let mut config = TestVaultConfig::kv2_secret_mount();
    config.port = port;
    let server = TestVaultServer::start(config).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-before")]);
    server.put_str("secret", "gbo/tables", &[("password", "pg-secret")]);
    server.put_str("secret", "gbo/cold", &[("k", "never-read")]);
    server
}

fn status(mount: &Mount) -> serde_json::Value {
    let text = std::fs::read_to_string(mount.path(".gbo-fs/status.json")).expect("status file");
    serde_json::from_str(&text).expect("status is JSON")
}

#[test]
fn warm_reads_never_reach_the_daemon_yet_a_rotation_reaches_a_long_lived_reader() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "1"]);
    let key = mount.path("gbo/llm/openai_key");
    assert_eq!(std::fs::read(&key).unwrap(), b"sk-before");
    let before = status(&mount)["reads_served"].as_u64().unwrap();
    for _ in 0..200 {
        assert_eq!(std::fs::read(&key).unwrap(), b"sk-before");
    }
    let after = status(&mount)["reads_served"].as_u64().unwrap();
    assert_eq!(
        after - before,
        1,
        "only the status read itself reached the daemon"
    );

    // A long-lived reader re-reading through one descriptor sees the rotation.
    use std::io::{Read, Seek};
    let mut reader = std::fs::File::open(&key).unwrap();
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-after-rotation")]);
    let rotated = wait_until(Duration::from_secs(10), || {
        let mut content = Vec::new();
        reader.rewind().unwrap();
        reader.read_to_end(&mut content).unwrap();
        content == b"sk-after-rotation"
    });
    assert!(rotated, "the rotation never reached the open reader");
    assert_eq!(std::fs::read(&key).unwrap(), b"sk-after-rotation");
    assert_eq!(
        std::fs::metadata(&key).unwrap().len(),
        "sk-after-rotation".len() as u64
    );
}

#[test]
fn a_reader_midway_through_a_file_when_it_rotates_reads_one_whole_value() {
    if !fuse_available() {
        return;
    }
    use std::io::Read;
    let server = seeded(0);
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "1"]);
    let key = mount.path("gbo/llm/openai_key");
    let mut reader = std::fs::File::open(&key).unwrap();
    let mut head = [0u8; 3];
    reader.read_exact(&mut head).unwrap();

    // A longer value: before, the rest of this read came from the new value.
    let rotated_value = b"sk-after-a-much-longer-rotation";
    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", "sk-after-a-much-longer-rotation")],
    );
    let new_opens_see_it = wait_until(Duration::from_secs(10), || {
        std::fs::read(&key).ok().as_deref() == Some(&rotated_value[..])
    });
    assert!(new_opens_see_it, "the rotation never reached a new open");

    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!([&head[..], &rest].concat(), b"sk-before", "one whole value");
    assert_eq!(reader.metadata().unwrap().len(), b"sk-before".len() as u64);
    assert_eq!(status(&mount)["inodes"]["retired"], 1);

    // Closed, the old file is forgotten by the kernel and leaves the daemon.
    drop(reader);
    let forgotten = wait_until(Duration::from_secs(10), || {
        status(&mount)["inodes"]["retired"] == 0
    });
    assert!(
        forgotten,
        "the retired inode was never forgotten: {}",
        status(&mount)
    );
}

#[test]
fn without_a_cache_keys_rotating_and_vanishing_under_readers_never_give_enoent_or_stop_the_daemon()
{
    if !fuse_available() {
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let server = seeded(0);
    let values = ["first-value", "the-second-and-longer-value"];
    server.put_str("secret", "gbo/churn", &[("k", values[0]), ("t", "x")]);
    // With no cache every lookup and attribute request asks Vault, so the value
    // can change between any two steps of a lookup.
    let mut mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "0"]);
    let held = std::fs::File::open(mount.path("gbo/churn/t")).unwrap();
    let stop = AtomicBool::new(false);
    let (reads, missing, wrong) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let started = Instant::now();
            let mut round = 0;
            while started.elapsed() < Duration::from_secs(3) {
                // `k` always exists with one of two values; `t` comes and goes.
                let k = values[round % 2];
                match round % 3 {
                    0 => server.put_str("secret", "gbo/churn", &[("k", k)]),
                    _ => server.put_str("secret", "gbo/churn", &[("k", k), ("t", "x")]),
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            stop.store(true, Ordering::Relaxed);
        });
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let _ = held.metadata();
            }
        });
        for _ in 0..3 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    reads.fetch_add(1, Ordering::Relaxed);
                    match std::fs::read(mount.path("gbo/churn/k")) {
                        Ok(value) if values.iter().any(|v| v.as_bytes() == value) => {}
                        Ok(_) => drop(wrong.fetch_add(1, Ordering::Relaxed)),
                        Err(error) if errno_of(&error) == libc::ENOENT => {
                            missing.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => panic!("read failed: {error}"),
                    }
                }
            });
        }
    });
    let reads = reads.load(Ordering::Relaxed);
    assert!(reads > 100, "only {reads} reads");
    assert_eq!(
        missing.load(Ordering::Relaxed),
        0,
        "ENOENT in {reads} reads"
    );
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "a mixed or cut value in {reads} reads"
    );
    assert!(
        std::fs::read(mount.path("gbo/churn/k")).is_ok(),
        "the daemon still serves"
    );
    drop(held);
    let status = mount.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = mount.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn the_status_file_is_hidden_from_ls_and_reports_counters_without_values() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    let mount = Mount::start(&server.addr(), &server.token(), &[]);
    std::fs::read(mount.path("gbo/llm/openai_key")).unwrap();
    let names: Vec<String> = std::fs::read_dir(&mount.mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["gbo"], ".gbo-fs is not listed");
    let status = status(&mount);
    assert_eq!(status["cache"]["entries"], 1);
    assert!(status["vault_requests"].as_u64().unwrap() >= 2);
    assert!(status["uptime_secs"].is_u64());
    let text = status.to_string();
    assert!(!text.contains("sk-before") && !text.contains(&server.token()));
}

/// Reads `path` and returns the bytes or the errno, with how long it took.
fn read_timed(path: &std::path::Path) -> (Result<Vec<u8>, i32>, Duration) {
    let started = Instant::now();
    let result = std::fs::read(path).map_err(|e| errno_of(&e));
    (result, started.elapsed())
}

#[test]
fn cached_secrets_keep_being_served_through_every_vault_fault() {
    if !fuse_available() {
        return;
    }
    let faults = [
        Fault::Status(500),
        Fault::Status(503),
        Fault::MalformedJson,
        Fault::Html,
        Fault::Hang,
        Fault::Delay(Duration::from_secs(30)),
        Fault::Sealed,
    ];
    for fault in faults {
        let server = seeded(0);
        let mount = Mount::start(
            &server.addr(),
            &server.token(),
            &["--cache-ttl", "1", "--vault-timeout", "1"],
        );
        assert_eq!(
            std::fs::read(mount.path("gbo/tables/password")).unwrap(),
            b"pg-secret"
        );
        server.set_fault(fault.clone());
        // Let the cached entry expire so that serving it needs Vault.
        std::thread::sleep(Duration::from_millis(1300));
        for _ in 0..3 {
            let (cached, took) = read_timed(&mount.path("gbo/tables/password"));
            assert_eq!(
                cached,
                Ok(b"pg-secret".to_vec()),
                "{fault:?}: cached secret not served"
            );
            assert!(took < Duration::from_secs(4), "{fault:?}: took {took:?}");
        }
        let (cold, took) = read_timed(&mount.path("gbo/cold/k"));
        assert_eq!(cold, Err(libc::EIO), "{fault:?}: an uncached secret is EIO");
        assert!(took < Duration::from_secs(4), "{fault:?}: took {took:?}");
        let log = mount.log_text();
        assert!(
            log.contains("serving the last good value"),
            "{fault:?}: {log}"
        );
        assert!(!log.contains("pg-secret"));
        let stale = status(&mount)["cache"]["stale_serves"].as_u64().unwrap();
        assert!(stale >= 1, "{fault:?}: stale serves are counted");
    }
}

#[test]
fn a_killed_vault_restarted_sealed_is_bridged_and_reads_recover_after_unseal() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    let port = server.port();
    let mount = Mount::start(
        &server.addr(),
        &server.token(),
        &["--cache-ttl", "1", "--vault-timeout", "1"],
    );
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-before"
    );
    server.stop();
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        read_timed(&mount.path("gbo/llm/openai_key")).0,
        Ok(b"sk-before".to_vec())
    );
    assert_eq!(read_timed(&mount.path("gbo/cold/k")).0, Err(libc::EIO));

    let restarted = seeded(port);
    restarted.seal();
    assert_eq!(
        read_timed(&mount.path("gbo/llm/openai_key")).0,
        Ok(b"sk-before".to_vec())
    );
    restarted.put_str("secret", "gbo/llm", &[("openai_key", "sk-after-restart")]);
    restarted.unseal();
    let recovered = wait_until(Duration::from_secs(90), || {
        std::fs::read(mount.path("gbo/llm/openai_key")).ok() == Some(b"sk-after-restart".to_vec())
    });
    assert!(recovered, "reads did not recover after Vault came back");
    assert_eq!(
        std::fs::read(mount.path("gbo/cold/k")).unwrap(),
        b"never-read"
    );
    // The outage is logged once with its reason, and so is its end.
    let log = mount.log_text();
    let failing: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Vault is failing"))
        .collect();
    assert!(!failing.is_empty(), "{log}");
    assert!(
        failing[0].contains("error="),
        "the reason is given: {}",
        failing[0]
    );
    assert!(log.contains("Vault answers again"), "{log}");
}

#[test]
fn a_revoked_secret_is_never_served_from_the_cache() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "1"]);
    assert_eq!(
        std::fs::read(mount.path("gbo/llm/openai_key")).unwrap(),
        b"sk-before"
    );
    server.deny("secret/data/gbo/llm");
    let denied = wait_until(
        Duration::from_secs(10),
        || matches!(std::fs::read(mount.path("gbo/llm/openai_key")), Err(e) if errno_of(&e) == libc::EACCES),
    );
    assert!(denied, "a 403 must drop the cached value");
    server.clear_denies();
    server.delete_secret("secret", "gbo/llm");
    let gone = wait_until(
        Duration::from_secs(10),
        || matches!(std::fs::read(mount.path("gbo/llm/openai_key")), Err(e) if errno_of(&e) == libc::ENOENT),
    );
    assert!(gone, "a 404 must drop the cached value");
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn kernel_cached_listings_follow_secrets_added_and_removed_in_vault() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "1"]);
    let folder = mount.path("gbo");
    assert_eq!(names_in(&folder), vec!["cold", "llm", "tables"]);
    for _ in 0..20 {
        assert_eq!(names_in(&folder), vec!["cold", "llm", "tables"]);
    }
    server.put_str("secret", "gbo/added", &[("k", "v")]);
    let appeared = wait_until(Duration::from_secs(10), || {
        names_in(&folder).contains(&"added".to_string())
    });
    assert!(appeared, "a new secret never showed in the cached listing");
    server.delete_secret("secret", "gbo/cold");
    let vanished = wait_until(Duration::from_secs(10), || {
        !names_in(&folder).contains(&"cold".to_string())
    });
    assert!(vanished, "a deleted secret stayed in the cached listing");

    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", "sk-before"), ("new_key", "n")],
    );
    let key_added = wait_until(Duration::from_secs(10), || {
        names_in(&mount.path("gbo/llm")) == vec!["new_key".to_string(), "openai_key".to_string()]
    });
    assert!(key_added, "a key added to a secret never showed");
}

#[test]
fn a_secret_deleted_and_created_again_while_its_directory_is_held_lists_its_keys_again() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    server.put_str("secret", "gbo/again", &[("k1", "v1")]);
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "1"]);
    let dir = mount.path("gbo/again");
    assert_eq!(names_in(&dir), vec!["k1"]);
    // As a shell whose working directory it is, listing it (`ls .`).
    let held = std::fs::File::open(&dir).unwrap();
    let through_held = std::path::PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&held)
    ));
    server.delete_secret("secret", "gbo/again");
    let emptied = wait_until(Duration::from_secs(10), || {
        names_in(&through_held).is_empty()
    });
    assert!(emptied, "the deleted secret's keys stayed listed");
    server.put_str("secret", "gbo/again", &[("k1", "v2")]);
    let listed = wait_until(Duration::from_secs(10), || {
        names_in(&dir) == vec!["k1"] && names_in(&through_held) == vec!["k1"]
    });
    assert!(listed, "the secret created again stayed empty in ls");
    assert_eq!(std::fs::read(dir.join("k1")).unwrap(), b"v2");
    drop(held);
}

#[test]
fn without_a_cache_ls_shows_keys_added_since_the_last_ls() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "0"]);
    let dir = mount.path("gbo/llm");
    assert_eq!(names_in(&dir), vec!["openai_key"]);
    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", "sk-before"), ("new_key", "n")],
    );
    let listed = wait_until(Duration::from_secs(10), || {
        names_in(&dir) == vec!["new_key", "openai_key"]
    });
    assert!(listed, "ls kept the listing from before");
}

#[test]
fn ls_shows_a_change_made_while_the_secret_was_out_of_a_full_cache() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    let mount = Mount::start(
        &server.addr(),
        &server.token(),
        &["--cache-ttl", "1", "--cache-capacity", "1"],
    );
    let dir = mount.path("gbo/llm");
    assert_eq!(names_in(&dir), vec!["openai_key"]);
    // Reading another secret pushes gbo/llm out of the one-entry cache, so its
    // next answer is not compared with the last: no change is seen as such.
    std::fs::read(mount.path("gbo/tables/password")).unwrap();
    server.put_str(
        "secret",
        "gbo/llm",
        &[("openai_key", "sk-before"), ("new_key", "n")],
    );
    let listed = wait_until(Duration::from_secs(10), || {
        std::fs::read(mount.path("gbo/tables/password")).unwrap();
        names_in(&dir) == vec!["new_key", "openai_key"]
    });
    assert!(
        listed,
        "ls kept the listing the kernel cached: {:?}",
        names_in(&dir)
    );
}

#[test]
fn a_reader_that_only_preads_an_open_file_still_sees_a_rotation() {
    if !fuse_available() {
        return;
    }
    use std::os::unix::fs::FileExt;
    let server = seeded(0);
    let mount = Mount::start(&server.addr(), &server.token(), &["--cache-ttl", "1"]);
    let file = std::fs::File::open(mount.path("gbo/llm/openai_key")).unwrap();
    let pread = |file: &std::fs::File| {
        let mut buffer = [0u8; 64];
        let length = file.read_at(&mut buffer, 0).unwrap();
        buffer[..length].to_vec()
    };
    assert_eq!(pread(&file), b"sk-before");
    // Nothing but pread from now on: no stat, no open, no lookup. The kernel still
    // revalidates attributes on reads once they expire (FUSE_AUTO_INVAL_DATA), which
    // keeps the secret "in use" for the background refresher.
    server.put_str("secret", "gbo/llm", &[("openai_key", "sk-rotated-quietly")]);
    let rotated = wait_until(Duration::from_secs(15), || {
        pread(&file) == b"sk-rotated-quietly"
    });
    assert!(rotated, "the rotation never reached a pread-only reader");
}

#[test]
fn readers_of_different_secrets_in_one_folder_share_one_hanging_listing_not_queue() {
    if !fuse_available() {
        return;
    }
    let server = seeded(0);
    for i in 0..8 {
        server.put_str("secret", &format!("gbo/many/s{i}"), &[("k", "v")]);
    }
    let mount = Mount::start(&server.addr(), &server.token(), &["--vault-timeout", "1"]);
    server.set_path_fault("secret/metadata/gbo/many", Fault::Hang);
    let errors: Vec<i32> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..8)
            .map(|i| {
                let path = mount.path(&format!("gbo/many/s{i}/k"));
                scope.spawn(move || errno_of(&std::fs::read(path).unwrap_err()))
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(errors.iter().all(|&e| e == libc::EIO), "{errors:?}");
    // Lookups in one directory run in parallel (FUSE_PARALLEL_DIROPS) and join
    // one LIST; serialized, each would have started a LIST of its own in turn.
    let lists = server.requests_under("secret/metadata/gbo/many");
    assert!(lists < 8, "{lists} LISTs for 8 concurrent readers");
    server.clear_faults();
}
