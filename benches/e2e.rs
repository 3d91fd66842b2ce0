//! End-to-end benchmark through a real mount (`cargo bench --bench e2e`): the
//! release gbo-fs binary against the in-process Vault-API test server, side by
//! side with the same files on a tmpfs and with direct HTTP GETs, printed as one
//! table with the Issue 5 targets as ratios (PASS/FAIL), Vault request counts,
//! daemon RSS and start-up time. Needs root and /dev/fuse; skips otherwise.
//!
//! Bounded: a watchdog kills the daemons, detaches the mounts and exits after
//! `WATCHDOG`; every mount (tmpfs and gbo-fs) is also undone by a Drop guard,
//! so a panic leaves nothing mounted.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use gbo_fs::daemon::is_mount_point;
use gbo_fs::testing::vault_server::{TestVaultConfig, TestVaultServer};
use serde_json::{Map, Value};

const BIN: &str = env!("CARGO_BIN_EXE_gbo-fs");
/// The whole run is cut off (mounts detached, daemons killed) after this.
const WATCHDOG: Duration = Duration::from_secs(170);
/// Bytes in every secret value.
const VALUE_BYTES: usize = 100;
/// Reader threads of the concurrent runs.
const THREADS: usize = 8;
/// open+read+close operations timed, single-threaded, per file system.
const SINGLE_OPS: usize = 20_000;
/// The single-thread warm reads run in this many alternating rounds per side.
const SINGLE_ROUNDS: usize = 10;
/// open+read+close operations timed per thread in each round of the 8-thread runs.
const OPS_PER_THREAD: usize = 10_000;
/// Rounds of the 8-thread runs, alternating tmpfs and gbo-fs.
const MULTI_ROUNDS: usize = 3;
/// Keys in the listed secret.
const LIST_KEYS: usize = 1_000;
/// `ls -l` runs timed per file system.
const LIST_RUNS: usize = 300;
/// Distinct pre-seeded secret paths, each read once through the mount (cache misses).
const COLD_PATHS: usize = 1_000;
/// Start-up measurements (a fresh daemon each).
const STARTUP_RUNS: usize = 5;
/// Memory phase: paths × keys per path, all read through the mount.
const MEM_PATHS: usize = 1_000;
const MEM_KEYS: usize = 100;
/// Vault-load phase: keys over paths, read by `THREADS` threads.
const LOAD_PATHS: usize = 5;
const LOAD_KEYS_PER_PATH: usize = 10;

const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------- cleanup

/// Mountpoints and daemon pids the watchdog must clean up if the run overruns.
static CLEANUP: Mutex<Vec<(PathBuf, Option<u32>)>> = Mutex::new(Vec::new());

fn register(mountpoint: &Path, pid: Option<u32>) {
    CLEANUP
        .lock()
        .unwrap()
        .push((mountpoint.to_path_buf(), pid));
}

fn unregister(mountpoint: &Path) {
    CLEANUP.lock().unwrap().retain(|(m, _)| m != mountpoint);
}

fn detach(mountpoint: &Path) {
    let _ = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH);
}

fn start_watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("e2e: watchdog: run exceeded {WATCHDOG:?}; cleaning up and exiting");
        for (mountpoint, pid) in CLEANUP.lock().unwrap().iter() {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            detach(mountpoint);
        }
        std::process::exit(2);
    });
}

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64m,mode=0755"),
        )
        .expect("mount -t tmpfs");
        register(dir.path(), None);
        Tmpfs { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        detach(self.dir.path());
        unregister(self.dir.path());
    }
}

/// A running `gbo-fs mount`, stopped and unmounted on drop.
struct Daemon {
    child: Option<Child>,
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Spawns the daemon and returns once the mount is listed in mountinfo and
    /// statfs reaches it, with the time that took.
    fn start(server: &TestVaultServer, extra: &[&str]) -> (Daemon, Duration) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mountpoint = dir.path().join("secrets");
        let workdir = dir.path().join("work");
        std::fs::create_dir_all(&mountpoint).unwrap();
        std::fs::create_dir_all(&workdir).unwrap();
        let log = File::create(dir.path().join("daemon.log")).unwrap();
        let canonical = std::fs::canonicalize(&mountpoint).unwrap();
        let started = Instant::now();
        let child = Command::new(BIN)
            .current_dir(&workdir)
            .env_remove("RUST_LOG")
            .env_remove("VAULT_CACHE_TTL")
            .env("VAULT_ADDR", server.addr())
            .env("VAULT_TOKEN", server.token())
            .arg("mount")
            .arg(&mountpoint)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn gbo-fs mount");
        register(&mountpoint, Some(child.id()));
        let mut daemon = Daemon {
            child: Some(child),
            mountpoint,
            _dir: dir,
        };
        loop {
            if is_mount_point(&canonical) && nix::sys::statfs::statfs(&canonical).is_ok() {
                break;
            }
            if let Ok(Some(status)) = daemon.child.as_mut().unwrap().try_wait() {
                panic!("gbo-fs exited early with {status}: {}", daemon.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not mounted within 20 s: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        let took = started.elapsed();
        (daemon, took)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.mountpoint.join(relative)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The daemon's resident set size in bytes (VmRSS).
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    fn status(&self) -> Value {
        let text = std::fs::read_to_string(self.path(".gbo-fs/status.json")).expect("status");
        serde_json::from_str(&text).expect("status JSON")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mount_point(&self.mountpoint) {
            detach(&self.mountpoint);
        }
        unregister(&self.mountpoint);
    }
}

// ---------------------------------------------------------------- measuring

/// Latency samples of one run plus its wall time.
struct Run {
    samples: Vec<Duration>,
    wall: Duration,
}

impl Run {
    fn new(mut samples: Vec<Duration>, wall: Duration) -> Run {
        samples.sort_unstable();
        Run { samples, wall }
    }

    /// Samples interleaved with other work: ops/s counts only their own time.
    fn from_samples(samples: Vec<Duration>) -> Run {
        let busy = samples.iter().sum();
        Run::new(samples, busy)
    }

    /// One run made of several rounds: all their samples over all their time.
    fn pooled(rounds: Vec<Run>) -> Run {
        let wall = rounds.iter().map(|round| round.wall).sum();
        let samples = rounds.into_iter().flat_map(|round| round.samples).collect();
        Run::new(samples, wall)
    }

    fn percentile(&self, p: usize) -> Duration {
        let index = (self.samples.len() * p / 100).min(self.samples.len() - 1);
        self.samples[index]
    }

    fn p50(&self) -> Duration {
        self.percentile(50)
    }

    fn p99(&self) -> Duration {
        self.percentile(99)
    }

    fn ops_per_sec(&self) -> f64 {
        self.samples.len() as f64 / self.wall.as_secs_f64()
    }
}

fn value(seed: usize) -> String {
    let text = format!("value-{seed}-");
    text.repeat(VALUE_BYTES / text.len() + 1)[..VALUE_BYTES].to_string()
}

fn object(keys: impl Iterator<Item = String>) -> Map<String, Value> {
    keys.enumerate()
        .map(|(i, k)| (k, Value::String(value(i))))
        .collect()
}

/// open + read to EOF + close, like `cat`; returns the bytes read.
fn open_read_close(path: &Path, buf: &mut [u8]) -> usize {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut total = 0;
    loop {
        match file.read(&mut buf[total..]).expect("read") {
            0 => return total,
            n => total += n,
        }
    }
}

/// `ls -l`: readdir plus lstat of every entry; returns the entry count.
fn ls_l(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let meta = entry.expect("entry").metadata().expect("lstat");
        std::hint::black_box(meta.len());
        count += 1;
    }
    count
}

/// Times `ops` open+read+close of the files, cycling through them.
fn single_thread(files: &[PathBuf], ops: usize) -> Run {
    let mut buf = vec![0u8; 4096];
    let mut samples = Vec::with_capacity(ops);
    let wall = Instant::now();
    for i in 0..ops {
        let start = Instant::now();
        let n = open_read_close(&files[i % files.len()], &mut buf);
        samples.push(start.elapsed());
        assert_eq!(n, VALUE_BYTES);
    }
    Run::new(samples, wall.elapsed())
}

/// `THREADS` threads each timing `OPS_PER_THREAD` open+read+close of its own file.
fn multi_thread(files: &[PathBuf]) -> Run {
    let barrier = Barrier::new(THREADS + 1);
    let (samples, wall) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let barrier = &barrier;
                let file = &files[t % files.len()];
                scope.spawn(move || {
                    let mut buf = vec![0u8; 4096];
                    let mut samples = Vec::with_capacity(OPS_PER_THREAD);
                    barrier.wait();
                    for _ in 0..OPS_PER_THREAD {
                        let start = Instant::now();
                        let n = open_read_close(file, &mut buf);
                        samples.push(start.elapsed());
                        assert_eq!(n, VALUE_BYTES);
                    }
                    samples
                })
            })
            .collect();
        barrier.wait();
        let wall = Instant::now();
        let samples: Vec<Duration> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("reader thread"))
            .collect();
        (samples, wall.elapsed())
    });
    Run::new(samples, wall)
}

/// The round with the median throughput.
fn median_round(mut rounds: Vec<Run>) -> Run {
    rounds.sort_by(|a, b| a.ops_per_sec().total_cmp(&b.ops_per_sec()));
    rounds.swap_remove(rounds.len() / 2)
}

fn listing(dir: &Path, runs: usize) -> Run {
    let mut samples = Vec::with_capacity(runs);
    let wall = Instant::now();
    for _ in 0..runs {
        let start = Instant::now();
        let count = ls_l(dir);
        samples.push(start.elapsed());
        assert_eq!(count, LIST_KEYS);
    }
    Run::new(samples, wall.elapsed())
}

// ---------------------------------------------------------------- report

struct Report {
    rows: Vec<String>,
    targets: Vec<String>,
    facts: Vec<String>,
    failures: usize,
}

impl Report {
    fn row(&mut self, name: &str, threads: usize, run: &Run) {
        self.rows.push(format!(
            "| {name:<38} | {threads:>7} | {:>9.1} | {:>9.1} | {:>10.0} |",
            run.p50().as_secs_f64() * 1e6,
            run.p99().as_secs_f64() * 1e6,
            run.ops_per_sec()
        ));
    }

    /// A target "measured ≤ limit" (or ≥ when `at_least`), shown as a ratio.
    fn target(&mut self, name: &str, measured: f64, limit: f64, at_least: bool, unit: &str) {
        let pass = if at_least {
            measured >= limit
        } else {
            measured <= limit
        };
        if !pass {
            self.failures += 1;
        }
        let op = if at_least { ">=" } else { "<=" };
        self.targets.push(format!(
            "| {name:<52} | {:>10} | {:>10} | {} |",
            format!("{measured:.2}{unit}"),
            format!("{op} {limit}{unit}"),
            if pass { "PASS" } else { "FAIL" }
        ));
    }

    fn fact(&mut self, text: String) {
        self.facts.push(text);
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown cpu".into());
    format!("nproc {cores}, kernel {}, {cpu}", kernel.trim())
}

/// Requests to the KV mount (the daemon's periodic seal/token checks excluded).
fn kv_requests(server: &TestVaultServer) -> usize {
    server.requests_under("secret/")
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The logical path of the `p`th secret read cold (one key, `value`).
fn cold_secret(p: usize) -> String {
    format!("gbo/cold/p{p:03}")
}

/// Puts the `COLD_PATHS` cold-read secrets into `server`'s KV v2 mount `secret`.
fn seed_cold_secrets(server: &TestVaultServer) {
    for p in 0..COLD_PATHS {
        server.put_secret(
            "secret",
            &cold_secret(p),
            object(std::iter::once("value".to_string())),
        );
    }
}

/// The two references a cold read is compared with: a direct GET of the same
/// secret by a kept-alive reqwest client, and the same GET through the daemon's
/// own Vault client (`VaultHttpStore`) in process, without FUSE.
struct ColdReferences {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    store: gbo_fs::vault::http::VaultHttpStore,
    addr: String,
    token: String,
}

impl ColdReferences {
    fn new(server: &TestVaultServer) -> ColdReferences {
        use gbo_fs::vault::http::{VaultConnection, VaultHttpStore};
        use gbo_fs::vault::layout::{KvVersion, LayoutOverrides};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = VaultHttpStore::new(
            VaultConnection::new(server.addr(), zeroize::Zeroizing::new(server.token())),
            "gbo",
            LayoutOverrides {
                mount: Some("secret".into()),
                version: Some(KvVersion::V2),
            },
        )
        .expect("VaultHttpStore");
        ColdReferences {
            runtime,
            client: reqwest::Client::new(),
            store,
            addr: server.addr(),
            token: server.token(),
        }
    }

    /// Times one GET of `gbo/cold/pNNN` by the kept-alive reqwest client.
    fn direct_get(&self, p: usize) -> Duration {
        let url = format!("{}/v1/secret/data/{}", self.addr, cold_secret(p));
        self.runtime.block_on(async {
            let start = Instant::now();
            let response = self
                .client
                .get(url)
                .header("X-Vault-Token", &self.token)
                .send()
                .await
                .expect("GET");
            assert!(response.status().is_success());
            let body = response.bytes().await.expect("body");
            let took = start.elapsed();
            assert!(body.len() > VALUE_BYTES);
            took
        })
    }

    /// Times one read of `gbo/cold/pNNN` through `VaultHttpStore::read_secret`.
    fn store_get(&self, p: usize) -> Duration {
        use gbo_fs::vault::SecretStore;
        let path = cold_secret(p);
        self.runtime.block_on(async {
            let start = Instant::now();
            let secret = self.store.read_secret(&path).await;
            let took = start.elapsed();
            assert!(secret.expect("read_secret").is_some());
            took
        })
    }
}

// ---------------------------------------------------------------- main

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    println!("gbo-fs e2e benchmark (cargo bench --bench e2e)");
    println!("machine: {}", machine());
    let fuse = Path::new("/dev/fuse").exists() && nix::unistd::geteuid().is_root();
    if !fuse {
        println!("skipped: needs root and /dev/fuse");
        return;
    }
    start_watchdog();
    let run_started = Instant::now();
    let mut report = Report {
        rows: Vec::new(),
        targets: Vec::new(),
        facts: Vec::new(),
        failures: 0,
    };

    // Vault with every data set the phases use.
    let server = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).expect("server");
    let warm_keys: Vec<String> = (0..THREADS).map(|t| format!("k{t}")).collect();
    server.put_secret("secret", "gbo/warm", object(warm_keys.iter().cloned()));
    server.put_secret(
        "secret",
        "gbo/big",
        object((0..LIST_KEYS).map(|i| format!("key{i:04}"))),
    );
    seed_cold_secrets(&server);
    for p in 0..LOAD_PATHS {
        server.put_secret(
            "secret",
            &format!("gbo/load/p{p}"),
            object((0..LOAD_KEYS_PER_PATH).map(|k| format!("k{k}"))),
        );
    }
    for p in 0..MEM_PATHS {
        server.put_secret(
            "secret",
            &format!("gbo/mem/p{p:04}"),
            object((0..MEM_KEYS).map(|k| format!("k{k:03}"))),
        );
    }

    // The same files on a tmpfs.
    let tmpfs = Tmpfs::mount();
    std::fs::create_dir_all(tmpfs.path("gbo/warm")).unwrap();
    std::fs::create_dir_all(tmpfs.path("gbo/big")).unwrap();
    for (i, key) in warm_keys.iter().enumerate() {
        std::fs::write(tmpfs.path(&format!("gbo/warm/{key}")), value(i)).unwrap();
    }
    for i in 0..LIST_KEYS {
        std::fs::write(tmpfs.path(&format!("gbo/big/key{i:04}")), value(i)).unwrap();
    }

    // Start-up: spawn → listed in mountinfo and statfs answers (Vault already up).
    let mut startups: Vec<Duration> = (0..STARTUP_RUNS)
        .map(|_| Daemon::start(&server, &[]).1)
        .collect();
    startups.sort_unstable();
    let startup_median = startups[startups.len() / 2];

    server.reset_counts();
    let (daemon, _) = Daemon::start(&server, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = daemon.rss_bytes();
    let startup_requests = server.total_requests();

    // Warm reads, 1 thread.
    let fuse_files: Vec<PathBuf> = warm_keys
        .iter()
        .map(|k| daemon.path(&format!("gbo/warm/{k}")))
        .collect();
    let tmpfs_files: Vec<PathBuf> = warm_keys
        .iter()
        .map(|k| tmpfs.path(&format!("gbo/warm/{k}")))
        .collect();
    single_thread(&fuse_files, 100);
    single_thread(&tmpfs_files, 100);
    let requests_before_warm = kv_requests(&server);
    let served_before = daemon.status()["reads_served"].as_u64().unwrap_or(0);
    // Short rounds alternate between the two, each side first in turn, so that
    // drift on the host (frequency, neighbours) reaches both; samples are pooled.
    let (mut tmpfs_rounds, mut fuse_rounds) = (Vec::new(), Vec::new());
    for round in 0..SINGLE_ROUNDS {
        let ops = SINGLE_OPS / SINGLE_ROUNDS;
        if round % 2 == 0 {
            tmpfs_rounds.push(single_thread(&tmpfs_files, ops));
            fuse_rounds.push(single_thread(&fuse_files, ops));
        } else {
            fuse_rounds.push(single_thread(&fuse_files, ops));
            tmpfs_rounds.push(single_thread(&tmpfs_files, ops));
        }
    }
    let tmpfs_1 = Run::pooled(tmpfs_rounds);
    let fuse_1 = Run::pooled(fuse_rounds);
    // Rounds alternate between the two so that a burst of load from elsewhere on
    // the host hits both; each side reports its median round.
    let (mut tmpfs_rounds, mut fuse_rounds) = (Vec::new(), Vec::new());
    for _ in 0..MULTI_ROUNDS {
        tmpfs_rounds.push(multi_thread(&tmpfs_files));
        fuse_rounds.push(multi_thread(&fuse_files));
    }
    let tmpfs_8 = median_round(tmpfs_rounds);
    let fuse_8 = median_round(fuse_rounds);
    let served_during_warm = daemon.status()["reads_served"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(served_before + 1);
    let warm_requests = kv_requests(&server) - requests_before_warm;
    let warm_ops = SINGLE_OPS + MULTI_ROUNDS * THREADS * OPS_PER_THREAD;

    // ls -l of 1,000 keys (warmed once first).
    let fuse_big = daemon.path("gbo/big");
    let tmpfs_big = tmpfs.path("gbo/big");
    assert_eq!(ls_l(&fuse_big), LIST_KEYS);
    ls_l(&tmpfs_big);
    let requests_before_list = kv_requests(&server);
    let tmpfs_ls = listing(&tmpfs_big, LIST_RUNS);
    let fuse_ls = listing(&fuse_big, LIST_RUNS);
    let list_requests = kv_requests(&server) - requests_before_list;

    // First read of each key of the listed secret: the secret is in the daemon's
    // cache but the page cache is empty, so the kernel sends READ (the FUSE round
    // trip without Vault).
    let mut buf = vec![0u8; 4096];
    let mut hit_samples = Vec::new();
    let hit_wall = Instant::now();
    for i in 0..LIST_KEYS {
        let path = fuse_big.join(format!("key{i:04}"));
        let start = Instant::now();
        let n = open_read_close(&path, &mut buf);
        hit_samples.push(start.elapsed());
        assert_eq!(n, VALUE_BYTES);
    }
    let daemon_hit = Run::new(hit_samples, hit_wall.elapsed());

    // Cold reads, interleaved with the two references so that all three see the
    // same scheduling (on a VM the GET alone varies 25-80 µs with where its
    // threads happen to run): per pre-seeded path, one read through the mount (a
    // cache miss, default TTL), one direct GET by a kept-alive reqwest client, and
    // one GET through the daemon's own Vault client in process, in rotating order.
    // The references read a twin server holding the same secrets, so every count
    // taken from `server` stays the daemon's own.
    let twin = TestVaultServer::start(TestVaultConfig::kv2_secret_mount()).expect("twin server");
    seed_cold_secrets(&twin);
    let references = ColdReferences::new(&twin);
    open_read_close(&daemon.path(&format!("{}/value", cold_secret(0))), &mut buf);
    references.direct_get(0);
    references.store_get(0);
    let cold_gets_before = kv_requests(&server);
    let (mut cold_samples, mut http_samples, mut store_samples) =
        (Vec::new(), Vec::new(), Vec::new());
    for p in 1..COLD_PATHS {
        for step in 0..3 {
            match (p + step) % 3 {
                0 => {
                    let path = daemon.path(&format!("{}/value", cold_secret(p)));
                    let start = Instant::now();
                    let n = open_read_close(&path, &mut buf);
                    cold_samples.push(start.elapsed());
                    assert_eq!(n, VALUE_BYTES);
                }
                1 => http_samples.push(references.direct_get(p)),
                _ => store_samples.push(references.store_get(p)),
            }
        }
    }
    let cold = Run::from_samples(cold_samples);
    let http = Run::from_samples(http_samples);
    let store_only = Run::from_samples(store_samples);
    let cold_requests = kv_requests(&server) - cold_gets_before;
    let cold_gets: usize = (1..COLD_PATHS)
        .map(|p| server.count("GET", &format!("secret/data/{}", cold_secret(p))))
        .sum();
    let reference_gets = twin.requests_under("secret/");
    drop(references);
    drop(twin);

    // ls -l of a folder of COLD_PATHS secrets (sub-directories), all listed above.
    let requests_before_folder = kv_requests(&server);
    let fuse_folder_ls = listing(&daemon.path("gbo/cold"), 30);
    let folder_requests = kv_requests(&server) - requests_before_folder;

    // Vault load: THREADS readers × every key of LOAD_PATHS paths.
    let load_before = kv_requests(&server);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let mut buf = vec![0u8; 4096];
                let listed = std::fs::read_dir(daemon.path("gbo/load")).unwrap().count();
                assert_eq!(listed, LOAD_PATHS);
                for p in 0..LOAD_PATHS {
                    for k in 0..LOAD_KEYS_PER_PATH {
                        let path = daemon.path(&format!("gbo/load/p{p}/k{k}"));
                        assert_eq!(open_read_close(&path, &mut buf), VALUE_BYTES);
                    }
                }
            });
        }
    });
    let load_gets: usize = (0..LOAD_PATHS)
        .map(|p| server.count("GET", &format!("secret/data/gbo/load/p{p}")))
        .sum();
    let load_lists = server.count("LIST", "secret/metadata/gbo/load");
    let load_requests = kv_requests(&server) - load_before;
    let daemon_requests = server.total_requests();
    let daemon_kv_requests = kv_requests(&server);
    let daemon_connections = server.connections_accepted();

    drop(daemon);

    // Memory: a fresh daemon, MEM_PATHS × MEM_KEYS values all read through it.
    let (mem_daemon, _) = Daemon::start(&server, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let mem_idle_rss = mem_daemon.rss_bytes();
    let mem_started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let mem_daemon = &mem_daemon;
            scope.spawn(move || {
                let mut buf = vec![0u8; 4096];
                for p in (t..MEM_PATHS).step_by(THREADS) {
                    for k in 0..MEM_KEYS {
                        let path = mem_daemon.path(&format!("gbo/mem/p{p:04}/k{k:03}"));
                        assert_eq!(open_read_close(&path, &mut buf), VALUE_BYTES);
                    }
                }
            });
        }
    });
    let mem_took = mem_started.elapsed();
    let mem_rss = mem_daemon.rss_bytes();
    let mem_entries = mem_daemon.status()["cache"]["entries"]
        .as_u64()
        .unwrap_or(0);
    drop(mem_daemon);
    drop(tmpfs);

    // ------------------------------------------------------------ the table
    report.row("tmpfs warm open+read+close", 1, &tmpfs_1);
    report.row("gbo-fs warm open+read+close", 1, &fuse_1);
    report.row("tmpfs warm open+read+close", THREADS, &tmpfs_8);
    report.row("gbo-fs warm open+read+close", THREADS, &fuse_8);
    report.row("gbo-fs page-cache miss, daemon hit", 1, &daemon_hit);
    report.row("gbo-fs cold read (cache miss, 1 GET)", 1, &cold);
    report.row("gbo-fs Vault client alone (no FUSE)", 1, &store_only);
    report.row("direct HTTP GET (reqwest, kept alive)", 1, &http);
    report.row("gbo-fs ls -l, folder of 1,000 secrets", 1, &fuse_folder_ls);
    report.row("tmpfs ls -l, 1,000 entries", 1, &tmpfs_ls);
    report.row("gbo-fs ls -l, 1,000 entries (warm)", 1, &fuse_ls);

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    report.target(
        "warm read p50, 1 thread: gbo-fs / tmpfs",
        ratio(fuse_1.p50(), tmpfs_1.p50()),
        1.5,
        false,
        "x",
    );
    report.target(
        &format!("warm read throughput, {THREADS} threads: gbo-fs / tmpfs"),
        fuse_8.ops_per_sec() / tmpfs_8.ops_per_sec(),
        0.5,
        true,
        "x",
    );
    report.target(
        "ls -l 1,000 entries p50: gbo-fs / tmpfs",
        ratio(fuse_ls.p50(), tmpfs_ls.p50()),
        2.0,
        false,
        "x",
    );
    report.target(
        "cold read p50: gbo-fs / direct HTTP GET",
        ratio(cold.p50(), http.p50()),
        1.3,
        false,
        "x",
    );
    report.target(
        "idle daemon RSS / 16 MiB",
        idle_rss as f64 / (16.0 * MIB),
        1.0,
        false,
        "x",
    );
    report.target(
        "RSS with 100k cached keys / 64 MiB",
        mem_rss as f64 / (64.0 * MIB),
        1.0,
        false,
        "x",
    );
    report.target(
        "start-up median / 100 ms",
        startup_median.as_secs_f64() / 0.1,
        1.0,
        false,
        "x",
    );
    report.target(
        &format!("Vault GETs for {THREADS} readers over {LOAD_PATHS} paths / {LOAD_PATHS}"),
        load_gets as f64 / LOAD_PATHS as f64,
        1.0,
        false,
        "x",
    );

    report.target(
        "Vault LISTs, 8 threads list+read one folder / 1",
        load_lists as f64,
        1.0,
        false,
        "x",
    );
    report.target(
        "daemon TCP connections to Vault / 4",
        daemon_connections as f64 / 4.0,
        1.0,
        false,
        "x",
    );
    report.fact(format!(
        "warm phase: {warm_ops} open+read+close on gbo-fs -> {warm_requests} KV requests, \
         {served_during_warm} reads reached the daemon (page cache served the rest)"
    ));
    report.fact(format!(
        "ls -l phase: {} listings -> {list_requests} KV requests",
        LIST_RUNS + 1
    ));
    report.fact(format!(
        "cold phase: {} distinct paths read once -> {cold_gets} GETs of them, {cold_requests} KV requests in all",
        COLD_PATHS - 1
    ));
    report.fact(format!(
        "folder ls -l phase: 30 listings of gbo/cold ({} secrets) -> {folder_requests} KV requests",
        COLD_PATHS
    ));
    report.fact(format!(
        "load phase: {THREADS} threads x {} keys over {LOAD_PATHS} paths -> {load_gets} GETs, \
         {load_lists} LIST of the folder, {load_requests} KV requests in all",
        LOAD_PATHS * LOAD_KEYS_PER_PATH
    ));
    report.fact(format!(
        "daemon total: {daemon_requests} Vault requests ({daemon_kv_requests} to the KV mount, \
         {startup_requests} at start-up) over {daemon_connections} TCP connection(s)"
    ));
    report.fact(format!(
        "RSS: idle {:.1} MiB (second daemon idle {:.1} MiB); after reading {} keys of {VALUE_BYTES} B \
         ({MEM_PATHS} paths x {MEM_KEYS}) in {:.1} s: {:.1} MiB, cache entries {mem_entries}",
        idle_rss as f64 / MIB,
        mem_idle_rss as f64 / MIB,
        MEM_PATHS * MEM_KEYS,
        mem_took.as_secs_f64(),
        mem_rss as f64 / MIB
    ));
    report.fact(format!(
        "start-up (spawn -> in mountinfo and statfs ok), {STARTUP_RUNS} runs: min {:.1} ms, \
         median {:.1} ms, max {:.1} ms",
        startups[0].as_secs_f64() * 1e3,
        startup_median.as_secs_f64() * 1e3,
        startups[startups.len() - 1].as_secs_f64() * 1e3
    ));
    report.fact(format!(
        "cold reads: pre-seeded distinct paths, each read once through the mount with the \
         default cache TTL, interleaved with the direct GET and the in-process client \
         (GET /v1/secret/data/gbo/cold/pNNN of a twin server: {reference_gets} requests); \
         values {VALUE_BYTES} B"
    ));
    // One bare FUSE round trip: a page-cache miss the daemon answers from memory,
    // less the same read served by the page cache.
    let round_trip = daemon_hit.p50().saturating_sub(fuse_1.p50());
    report.fact(format!(
        "cold-read floor: a cold read waits for at least one FUSE round trip around its GET \
         (the LOOKUP that learns the key exists); one round trip here is {:.1} µs against a \
         {:.1} µs GET, so no daemon on this transport can do better than {:.2}x on this \
         machine (gbo-fs: {:.2}x, the GET plus {:.1} µs)",
        us(round_trip),
        us(http.p50()),
        ratio(http.p50() + round_trip, http.p50()),
        ratio(cold.p50(), http.p50()),
        us(cold.p50().saturating_sub(http.p50()))
    ));

    println!();
    println!(
        "| {:<38} | {:>7} | {:>9} | {:>9} | {:>10} |",
        "operation", "threads", "p50 µs", "p99 µs", "ops/s"
    );
    println!(
        "|{:-<40}|{:-<9}|{:-<11}|{:-<11}|{:-<12}|",
        "", "", "", "", ""
    );
    for row in &report.rows {
        println!("{row}");
    }
    println!();
    println!(
        "| {:<52} | {:>10} | {:>10} | result |",
        "target", "measured", "target"
    );
    println!("|{:-<54}|{:-<12}|{:-<12}|--------|", "", "", "");
    for target in &report.targets {
        println!("{target}");
    }
    println!();
    for fact in &report.facts {
        println!("- {fact}");
    }
    println!(
        "- listing p99: tmpfs {:.0} µs, gbo-fs {:.0} µs (runs past the 1 s kernel TTL look every entry up again)",
        us(tmpfs_ls.p99()),
        us(fuse_ls.p99())
    );
    println!(
        "\n{} of {} targets failed; run took {:.1} s",
        report.failures,
        report.targets.len(),
        run_started.elapsed().as_secs_f64()
    );
    drop(server);
}
