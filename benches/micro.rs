//! Criterion micro-benchmarks of the in-process hot paths: a `FetchCache` hit and
//! miss, a `SecretFs` read (cached and uncached) over a `MemoryStore`, and the
//! config.csv renderer on the largest bot template with 50 references added.
//!
//! Run with `cargo bench --bench micro` (about a minute; sample counts are kept small).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use gbo_fs::cache::{CachePolicy, FetchCache};
use gbo_fs::config_csv::{self, MissingReference, Resolution};
use gbo_fs::fs::{FsConfig, SecretFs};
use gbo_fs::vault::memory::MemoryStore;
use gbo_fs::vault::{Secret, SecretStore};
use zeroize::Zeroizing;

/// Bytes in each benchmarked secret value.
const VALUE_BYTES: usize = 100;
/// References added to the config.csv fixture.
const REFERENCES: usize = 50;
/// Paths those references spread over.
const REFERENCED_PATHS: usize = 10;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn value(i: usize) -> String {
    format!("{i:0>width$}", width = VALUE_BYTES)
}

fn a_secret() -> Arc<Secret> {
    let object = (0..10)
        .map(|k| (format!("key{k}"), serde_json::Value::String(value(k))))
        .collect();
    Arc::new(Secret::from_json_object(&object))
}

fn fetch_cache(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("fetch_cache");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(2));

    let cache: FetchCache<Arc<Secret>> = FetchCache::new(CachePolicy::default());
    let secret = a_secret();
    let seed = secret.clone();
    rt.block_on(cache.get_or_fetch("gbo/llm", move || async move { Ok(Some(seed)) }))
        .unwrap();
    group.bench_function("hit", |b| {
        b.iter(|| {
            let got = rt.block_on(cache.get_or_fetch(black_box("gbo/llm"), || async {
                unreachable!("a hit never fetches")
            }));
            black_box(got.unwrap().value.is_some())
        })
    });

    // TTL 0: every lookup misses and runs the shared-fetch machinery (a spawned
    // task); the fetch itself answers at once, so this is the cache's own cost.
    let uncached: FetchCache<Arc<Secret>> = FetchCache::new(CachePolicy {
        ttl: Duration::ZERO,
        ..CachePolicy::default()
    });
    group.bench_function("miss_with_instant_fetch", |b| {
        b.iter(|| {
            let value = secret.clone();
            let got = rt.block_on(
                uncached.get_or_fetch(black_box("gbo/llm"), move || async move { Ok(Some(value)) }),
            );
            black_box(got.unwrap().value.is_some())
        })
    });
    group.finish();
}

fn secret_fs(ttl: Duration) -> Arc<SecretFs> {
    let store = Arc::new(MemoryStore::new());
    let pairs: Vec<(String, String)> = (0..10).map(|k| (format!("key{k}"), value(k))).collect();
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    store.put_str("gbo/llm", &borrowed);
    let mut config = FsConfig::new("gbo");
    config.cache.ttl = ttl;
    Arc::new(SecretFs::new(store as Arc<dyn SecretStore>, config))
}

fn secret_fs_reads(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("secret_fs_read_path");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(2));

    let cached = secret_fs(Duration::from_secs(300));
    rt.block_on(cached.read_path("gbo/llm/key3")).unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(cached.read_path(black_box("gbo/llm/key3")))
                    .unwrap(),
            )
        })
    });

    let uncached = secret_fs(Duration::ZERO);
    group.bench_function("uncached_memory_store", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(uncached.read_path(black_box("gbo/llm/key3")))
                    .unwrap(),
            )
        })
    });
    group.finish();
}

/// The largest config.csv among the shared bot templates.
fn largest_fixture() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/bottemplates");
    let mut best: Option<(u64, PathBuf)> = None;
    for package in std::fs::read_dir(root).ok()?.flatten() {
        for bot in std::fs::read_dir(package.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let candidate = bot.path().join("config.csv");
            if let Ok(meta) = std::fs::metadata(&candidate) {
                if best.as_ref().is_none_or(|(size, _)| meta.len() > *size) {
                    best = Some((meta.len(), candidate));
                }
            }
        }
    }
    best.map(|(_, path)| path)
}

/// The fixture with `REFERENCES` reference lines inserted after its header.
fn fixture_with_references() -> (String, Vec<u8>) {
    let (name, text) = match largest_fixture() {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(&path).expect("read fixture"),
        ),
        None => (
            "built-in stand-in (fixtures not found)".to_string(),
            "name,value\nBot Name,Stand-in\n".repeat(20),
        ),
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for i in 0..REFERENCES {
        let reference = format!(
            "Secret Setting {i},vault:gbo/path{}/key{i}",
            i % REFERENCED_PATHS
        );
        lines.insert(1 + i * 2 % lines.len().max(1), reference);
    }
    (name, (lines.join("\n") + "\n").into_bytes())
}

fn config_csv_render(c: &mut Criterion) {
    let (name, source) = fixture_with_references();
    eprintln!(
        "config_csv fixture: {name} ({} bytes with {REFERENCES} references)",
        source.len()
    );
    assert_eq!(
        config_csv::referenced_paths(&source).len(),
        REFERENCED_PATHS,
        "every inserted reference parses"
    );
    let mut group = c.benchmark_group("config_csv");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(2));
    group.bench_function("render_largest_fixture_50_refs", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut resolve = |_path: &str, key: &str| {
                    Resolution::Value(Zeroizing::new(format!("value-of-{key}").into_bytes()))
                };
                let rendered =
                    config_csv::render(black_box(&source), MissingReference::Error, &mut resolve);
                assert!(rendered.is_complete());
                black_box(rendered.bytes.len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500));
    targets = fetch_cache, secret_fs_reads, config_csv_render
}
criterion_main!(benches);
