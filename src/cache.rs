//! The fetch cache: an LRU of Vault answers with a TTL, shared in-flight fetches,
//! short negative caching and stale-on-error.
//!
//! One cache instance holds one kind of answer (secrets, or folder listings),
//! keyed by logical path. Concurrent misses on one key share one fetch, which
//! runs in its own task so that a caller giving up never wastes it.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;

use crate::vault::StoreError;

/// How long answers are kept and how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Keys (secret paths or folders) kept at most; the least recently used go first.
    pub capacity: usize,
    /// How long a found value is served without asking Vault again. Zero disables caching.
    pub ttl: Duration,
    /// How long a "not found" answer is kept (capped by `ttl`).
    pub negative_ttl: Duration,
    /// How long past its TTL a value may still be served while Vault fails.
    pub max_stale: Duration,
    /// How long a reader holding an expired value waits for its refresh before it
    /// is served the stale value (the refresh goes on in the background). Kept
    /// below the operation timeout so a hanging Vault never turns into EIO.
    pub stale_wait: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            capacity: 16_384,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
            max_stale: Duration::from_secs(3600),
            stale_wait: Duration::from_millis(2500),
        }
    }
}

/// Counters for status reporting and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub fetches: AtomicU64,
    /// Fetches that ended in an error (whether or not a stale value was served).
    pub failed_fetches: AtomicU64,
    pub stale_serves: AtomicU64,
}

/// A snapshot of [`CacheStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
    pub fetches: u64,
    pub failed_fetches: u64,
    pub stale_serves: u64,
}

/// What a lookup produced: the value (or `None` for "not found") and whether it
/// is a stale value served because Vault failed.
#[derive(Clone, Debug)]
pub struct Cached<V> {
    pub value: Option<V>,
    pub stale: bool,
}

type Answer<V> = Result<Option<V>, StoreError>;
type InFlight<V> = Shared<BoxFuture<'static, Answer<V>>>;
/// Called with a key whose value changed (rotated, deleted or revoked) and the
/// value it holds now (`None` when deleted or revoked).
pub type ChangeListener<V> = Arc<dyn Fn(&str, Option<&V>) + Send + Sync>;

/// First retry delay after a failed refresh; doubles per failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between refresh attempts during an outage.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Entry<V> {
    value: Option<V>,
    fetched_at: Instant,
    /// Expired ahead of its TTL (SIGHUP): asked for again, but still the
    /// last good value while Vault fails.
    expired: bool,
    /// Read since it was fetched: worth refreshing in the background.
    accessed: bool,
    /// Consecutive failed refreshes, and when the next may be tried.
    failures: u32,
    retry_after: Option<Instant>,
}

/// Whether Vault is failing right now, as the fetches of one filesystem saw it:
/// set when a fetch fails transiently or a reader gives up waiting for one,
/// cleared by any answer, and forgotten [`OUTAGE_MEMORY`] after the last failure
/// (when every path backs off, no answer may come for a while to clear it).
/// While it is on, an expired value is served at once (its refresh goes on in
/// the background) instead of each path waiting out `stale_wait` in turn.
#[derive(Debug, Default)]
pub struct Outage(Mutex<OutageState>);

#[derive(Debug, Default)]
struct OutageState {
    /// The last transient failure, until Vault answers something.
    failed_at: Option<Instant>,
    /// Whether this outage was logged (so its end is logged too).
    announced: bool,
    /// When the last outage ended: a failure soon after is the same outage
    /// flapping, not worth another pair of log lines.
    ended_at: Option<Instant>,
}

/// How long after its last failure Vault still counts as failing.
pub const OUTAGE_MEMORY: Duration = Duration::from_secs(5);

/// How long a key whose fetch failed transiently (timeout, unreachable, sealed)
/// gets that error at once, with no value to serve instead, unless some fetch got
/// an answer since: the kernel retries a failed lookup straight away (a failed
/// revalidation, then a fresh lookup), and that retry must not wait out a second
/// `--vault-timeout`.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(1);

impl Outage {
    pub fn is_on(&self) -> bool {
        self.0
            .lock()
            .unwrap()
            .failed_at
            .is_some_and(|failed| failed.elapsed() < OUTAGE_MEMORY)
    }

    /// Vault is down (see `StoreError::means_vault_is_down`). The first failure of
    /// an outage is logged with its reason (the error's own text, which holds no
    /// value).
    fn failed(&self, error: &StoreError) {
        if self.failed_at(Instant::now()) {
            tracing::warn!(%error, "Vault is failing");
        }
    }

    /// Records a failure at `now`; true when it is to be announced. One resuming
    /// soon after the last ended is announced once it has gone on for
    /// [`OUTAGE_MEMORY`] past that end: a flapping Vault gives a line per 5 s.
    fn failed_at(&self, now: Instant) -> bool {
        let mut state = self.0.lock().unwrap();
        let flapping = state
            .ended_at
            .is_some_and(|ended| now.saturating_duration_since(ended) < OUTAGE_MEMORY);
        let announce = !state.announced && !flapping;
        state.announced |= announce;
        state.failed_at = Some(now);
        announce
    }

    /// Vault answered: the end of a logged outage is logged.
    fn answered(&self) {
        if self.answered_at(Instant::now()) {
            tracing::info!("Vault answers again");
        }
    }

    /// Records an answer at `now`; true when it ends an announced outage.
    fn answered_at(&self, now: Instant) -> bool {
        let mut state = self.0.lock().unwrap();
        if state.failed_at.take().is_none() {
            return false;
        }
        state.ended_at = Some(now);
        std::mem::take(&mut state.announced)
    }
}

struct Inner<V> {
    policy: CachePolicy,
    outage: Arc<Outage>,
    entries: Mutex<LruCache<String, Entry<V>>>,
    in_flight: Mutex<HashMap<String, InFlight<V>>>,
    /// Keys whose last fetch failed transiently, with when and why: for
    /// [`FAILURE_MEMORY`] they get that error at once instead of a new fetch.
    recent_failures: Mutex<HashMap<String, (Instant, StoreError)>>,
    stats: CacheStats,
    listener: std::sync::OnceLock<ChangeListener<V>>,
}

/// A TTL + LRU cache of fetched answers. Cloning shares the cache.
pub struct FetchCache<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for FetchCache<V> {
    fn clone(&self) -> Self {
        FetchCache {
            inner: self.inner.clone(),
        }
    }
}

impl<V: Clone + PartialEq + Send + Sync + 'static> FetchCache<V> {
    pub fn new(policy: CachePolicy) -> FetchCache<V> {
        FetchCache::sharing_outage(policy, Arc::default())
    }

    /// A cache that learns of and reports Vault outages through `outage`, shared
    /// with the other caches of the same filesystem.
    pub fn sharing_outage(policy: CachePolicy, outage: Arc<Outage>) -> FetchCache<V> {
        let capacity = NonZeroUsize::new(policy.capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        FetchCache {
            inner: Arc::new(Inner {
                policy,
                outage,
                entries: Mutex::new(LruCache::new(capacity)),
                in_flight: Mutex::new(HashMap::new()),
                recent_failures: Mutex::new(HashMap::new()),
                stats: CacheStats::default(),
                listener: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Registers the one listener told about changed keys (set once).
    pub fn on_change(&self, listener: ChangeListener<V>) {
        let _ = self.inner.listener.set(listener);
    }

    /// Returns the cached answer for `key`, or runs `fetch` (shared with any
    /// concurrent caller for the same key) and caches what it returns.
    ///
    /// When the fetch fails with a transient error and an expired value younger
    /// than `max_stale` is held, that value is returned with `stale: true`; while
    /// the key is backing off after failures, the stale value is returned at once
    /// without asking Vault. A permission error drops the held value: a revoked
    /// secret is never served.
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<Cached<V>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer<V>> + Send + 'static,
    {
        let inner = &self.inner;
        let mut refresh_in_background = false;
        let stale_candidate = {
            let mut entries = inner.entries.lock().unwrap();
            match entries.get_mut(key) {
                Some(entry) if self.is_fresh(entry) => {
                    entry.accessed = true;
                    inner.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Cached {
                        value: entry.value.clone(),
                        stale: false,
                    });
                }
                Some(entry) => {
                    entry.accessed = true;
                    let stale = entry.value.clone().filter(|_| {
                        entry.fetched_at.elapsed() < inner.policy.ttl + inner.policy.max_stale
                    });
                    let backing_off = entry.retry_after.is_some_and(|t| Instant::now() < t);
                    match &stale {
                        Some(value) if backing_off => {
                            inner.stats.stale_serves.fetch_add(1, Ordering::Relaxed);
                            return Ok(Cached {
                                value: Some(value.clone()),
                                stale: true,
                            });
                        }
                        Some(_) if inner.outage.is_on() => refresh_in_background = true,
                        _ => {}
                    }
                    stale
                }
                None => None,
            }
        };
        if refresh_in_background {
            // The fetch is a task of its own; it stores its answer when it ends.
            drop(self.join_or_start_fetch(key, fetch));
            inner.stats.stale_serves.fetch_add(1, Ordering::Relaxed);
            return Ok(Cached {
                value: stale_candidate,
                stale: true,
            });
        }
        inner.stats.misses.fetch_add(1, Ordering::Relaxed);
        if stale_candidate.is_none() {
            if let Some(error) = inner.recent_failure(key) {
                return Err(error);
            }
        }
        let shared = self.join_or_start_fetch(key, fetch);
        let answer = match &stale_candidate {
            Some(_) => tokio::time::timeout(inner.policy.stale_wait, shared)
                .await
                .unwrap_or_else(|_| {
                    let error = StoreError::Timeout(inner.policy.stale_wait);
                    inner.outage.failed(&error);
                    Err(error)
                }),
            None => shared.await,
        };
        match answer {
            Ok(value) => Ok(Cached {
                value,
                stale: false,
            }),
            Err(error) if error.is_transient() && stale_candidate.is_some() => {
                inner.stats.stale_serves.fetch_add(1, Ordering::Relaxed);
                Ok(Cached {
                    value: stale_candidate,
                    stale: true,
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Keys whose value has expired, was read since it was fetched, and is not
    /// backing off: the background refresher fetches these before readers wait.
    pub fn due_for_refresh(&self) -> Vec<String> {
        let now = Instant::now();
        let entries = self.inner.entries.lock().unwrap();
        let in_flight = self.inner.in_flight.lock().unwrap();
        entries
            .iter()
            .filter(|(key, entry)| {
                entry.accessed
                    && entry.value.is_some()
                    && (entry.expired || entry.fetched_at.elapsed() >= self.inner.policy.ttl)
                    && entry.retry_after.is_none_or(|t| now >= t)
                    && !in_flight.contains_key(key.as_str())
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Fetches `key` again now (sharing an in-flight fetch), stores the answer
    /// and returns it.
    pub async fn refresh<F, Fut>(&self, key: &str, fetch: F) -> Answer<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer<V>> + Send + 'static,
    {
        self.join_or_start_fetch(key, fetch).await
    }

    fn join_or_start_fetch<F, Fut>(&self, key: &str, fetch: F) -> InFlight<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer<V>> + Send + 'static,
    {
        let mut in_flight = self.inner.in_flight.lock().unwrap();
        if let Some(shared) = in_flight.get(key) {
            return shared.clone();
        }
        let inner = self.inner.clone();
        let owned_key = key.to_string();
        let work = fetch();
        let task = tokio::spawn(async move {
            inner.stats.fetches.fetch_add(1, Ordering::Relaxed);
            let answer = work.await;
            if answer.is_err() {
                inner.stats.failed_fetches.fetch_add(1, Ordering::Relaxed);
            }
            inner.remember_failure(&owned_key, &answer);
            let changed = inner.store_answer(&owned_key, &answer);
            inner.in_flight.lock().unwrap().remove(&owned_key);
            if changed {
                if let Some(listener) = inner.listener.get() {
                    let now = answer.as_ref().ok().and_then(|value| value.as_ref());
                    listener(&owned_key, now);
                }
            }
            answer
        });
        let shared = async move {
            task.await
                .unwrap_or_else(|_| Err(StoreError::Malformed("fetch task failed".into())))
        }
        .boxed()
        .shared();
        in_flight.insert(key.to_string(), shared.clone());
        shared
    }

    fn is_fresh(&self, entry: &Entry<V>) -> bool {
        let policy = &self.inner.policy;
        let lifetime = match entry.value {
            Some(_) => policy.ttl,
            None => self.negative_lifetime(),
        };
        !entry.expired && entry.fetched_at.elapsed() < lifetime
    }

    /// Whether the answer held for `key` was fetched at least `age` ago (or was
    /// expired early); false when none is held.
    pub fn is_older_than(&self, key: &str, age: Duration) -> bool {
        self.inner
            .entries
            .lock()
            .unwrap()
            .peek(key)
            .is_some_and(|entry| entry.expired || entry.fetched_at.elapsed() >= age)
    }

    /// Whether Vault is known to be failing (see [`Outage`]).
    pub fn vault_failing(&self) -> bool {
        self.inner.outage.is_on()
    }

    /// How long a "not found" answer is believed.
    pub fn negative_lifetime(&self) -> Duration {
        let policy = &self.inner.policy;
        policy.negative_ttl.min(policy.ttl)
    }

    /// Expires every entry now (SIGHUP): each is fetched again on its next use,
    /// and a value is still served stale if that fetch fails, as after its TTL.
    pub fn expire_all(&self) {
        for (_, entry) in self.inner.entries.lock().unwrap().iter_mut() {
            entry.expired = true;
        }
    }

    /// Current counters.
    pub fn counts(&self) -> CacheCounts {
        let stats = &self.inner.stats;
        CacheCounts {
            entries: self.inner.entries.lock().unwrap().len(),
            hits: stats.hits.load(Ordering::Relaxed),
            misses: stats.misses.load(Ordering::Relaxed),
            fetches: stats.fetches.load(Ordering::Relaxed),
            failed_fetches: stats.failed_fetches.load(Ordering::Relaxed),
            stale_serves: stats.stale_serves.load(Ordering::Relaxed),
        }
    }
}

impl<V> Inner<V> {
    /// The transient error `key`'s fetch failed with less than [`FAILURE_MEMORY`]
    /// ago, while Vault still counts as failing: once any fetch gets an answer,
    /// Vault is back and every key is asked again.
    fn recent_failure(&self, key: &str) -> Option<StoreError> {
        if !self.outage.is_on() {
            return None;
        }
        let failures = self.recent_failures.lock().unwrap();
        let (at, error) = failures.get(key)?;
        (at.elapsed() < FAILURE_MEMORY).then(|| error.clone())
    }

    /// Records a transient failure of `key`'s fetch, forgets it on any answer, and
    /// drops failures older than [`FAILURE_MEMORY`] so the map stays small.
    fn remember_failure(&self, key: &str, answer: &Answer<V>) {
        let mut failures = self.recent_failures.lock().unwrap();
        failures.retain(|_, (at, _)| at.elapsed() < FAILURE_MEMORY);
        match answer {
            Err(error) if error.means_vault_is_down() => {
                failures.insert(key.to_string(), (Instant::now(), error.clone()));
            }
            _ => {
                failures.remove(key);
            }
        }
    }
}

impl<V: Clone + PartialEq> Inner<V> {
    /// Stores a fetch's answer; true when a previously held value changed.
    fn store_answer(&self, key: &str, answer: &Answer<V>) -> bool {
        let mut entries = self.entries.lock().unwrap();
        // `Some(None)`: the key was known to be absent (not found).
        let previous: Option<Option<V>> = entries.peek(key).map(|e| e.value.clone());
        match answer {
            Err(error) if error.means_vault_is_down() => self.outage.failed(error),
            _ => self.outage.answered(),
        }
        match answer {
            Ok(value) => {
                if self.policy.ttl.is_zero() {
                    entries.pop(key);
                } else {
                    entries.put(
                        key.to_string(),
                        Entry {
                            value: value.clone(),
                            fetched_at: Instant::now(),
                            expired: false,
                            accessed: false,
                            failures: 0,
                            retry_after: None,
                        },
                    );
                }
                // Absent to present is a change too (a secret deleted and
                // created again); a first answer, or one after eviction, is not.
                previous.is_some_and(|previous| previous != *value)
            }
            Err(error) if !error.is_transient() => {
                entries.pop(key);
                previous.flatten().is_some()
            }
            Err(_) => {
                if let Some(entry) = entries.peek_mut(key) {
                    entry.failures = entry.failures.saturating_add(1);
                    entry.retry_after = Some(Instant::now() + backoff_delay(entry.failures));
                }
                false
            }
        }
    }
}

/// Exponential backoff with jitter: about `BASE_BACKOFF * 2^(failures-1)`, capped
/// at `MAX_BACKOFF`, scaled by a random factor in [0.5, 1.5).
pub fn backoff_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let nominal = BASE_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    nominal.mul_f64(0.5 + jitter_fraction())
}

/// A cheap pseudo-random fraction in [0, 1) for jitter (not for cryptography).
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn policy(ttl_ms: u64) -> CachePolicy {
        CachePolicy {
            capacity: 2,
            ttl: Duration::from_millis(ttl_ms),
            negative_ttl: Duration::from_millis(ttl_ms),
            max_stale: Duration::from_secs(60),
            stale_wait: Duration::from_secs(5),
        }
    }

    async fn fetch_counted(
        cache: &FetchCache<u32>,
        key: &str,
        calls: &Arc<AtomicUsize>,
        answer: Answer<u32>,
    ) -> Result<Cached<u32>, StoreError> {
        let calls = calls.clone();
        cache
            .get_or_fetch(key, move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                answer
            })
            .await
    }

    #[tokio::test]
    async fn a_cached_value_is_served_without_fetching_again() {
        let cache = FetchCache::new(policy(60_000));
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let got = fetch_counted(&cache, "gbo/llm", &calls, Ok(Some(7)))
                .await
                .unwrap();
            assert_eq!(got.value, Some(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.counts().hits, 2);
    }

    #[tokio::test]
    async fn zero_ttl_fetches_every_time() {
        let cache = FetchCache::new(policy(0));
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            fetch_counted(&cache, "k", &calls, Ok(Some(1)))
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(cache.counts().entries, 0);
    }

    #[tokio::test]
    async fn least_recently_used_key_is_evicted_at_capacity() {
        let cache = FetchCache::new(policy(60_000));
        let calls = Arc::new(AtomicUsize::new(0));
        fetch_counted(&cache, "a", &calls, Ok(Some(1)))
            .await
            .unwrap();
        fetch_counted(&cache, "b", &calls, Ok(Some(2)))
            .await
            .unwrap();
        fetch_counted(&cache, "a", &calls, Ok(Some(1)))
            .await
            .unwrap();
        fetch_counted(&cache, "c", &calls, Ok(Some(3)))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        fetch_counted(&cache, "a", &calls, Ok(Some(1)))
            .await
            .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "a was recently used and kept"
        );
        fetch_counted(&cache, "b", &calls, Ok(Some(2)))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4, "b was evicted");
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let cache = FetchCache::new(policy(60_000));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("gbo/llm", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Some(9))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().value, Some(9));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_fetch_whose_caller_gave_up_still_finishes_and_is_cached() {
        let cache = FetchCache::new(policy(60_000));
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            cache.get_or_fetch("k", move || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Some(4))
            }),
        )
        .await;
        assert!(gave_up.is_err(), "the caller gave up first");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = fetch_counted(&cache, "k", &calls, Ok(Some(5)))
            .await
            .unwrap();
        assert_eq!(got.value, Some(4), "the abandoned fetch was cached");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(cache.due_for_refresh().is_empty());
    }

    #[tokio::test]
    async fn not_found_is_cached_for_the_negative_ttl() {
        let cache = FetchCache::new(CachePolicy {
            negative_ttl: Duration::from_millis(30),
            ..policy(60_000)
        });
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            fetch_counted(&cache, "x", &calls, Ok(None))
                .await
                .unwrap()
                .value,
            None
        );
        fetch_counted(&cache, "x", &calls, Ok(None)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        fetch_counted(&cache, "x", &calls, Ok(None)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn expired_value_is_served_stale_when_the_refresh_fails_transiently() {
        let cache = FetchCache::new(policy(10));
        let calls = Arc::new(AtomicUsize::new(0));
        fetch_counted(&cache, "k", &calls, Ok(Some(5)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let got = fetch_counted(&cache, "k", &calls, Err(StoreError::Server(500)))
            .await
            .unwrap();
        assert_eq!(got.value, Some(5));
        assert!(got.stale);
        assert_eq!(cache.counts().stale_serves, 1);
    }

    #[tokio::test]
    async fn expiring_everything_fetches_again_and_keeps_the_last_good_value_for_an_outage() {
        let cache = FetchCache::new(policy(60_000));
        let calls = Arc::new(AtomicUsize::new(0));
        let first = fetch_counted(&cache, "k", &calls, Ok(Some(1)))
            .await
            .unwrap();
        assert_eq!(first.value, Some(1));
        cache.expire_all();
        let refetched = fetch_counted(&cache, "k", &calls, Ok(Some(2)))
            .await
            .unwrap();
        assert_eq!(
            (refetched.value, calls.load(Ordering::SeqCst)),
            (Some(2), 2)
        );

        cache.expire_all();
        let outage = fetch_counted(&cache, "k", &calls, Err(StoreError::Sealed))
            .await
            .unwrap();
        assert_eq!((outage.value, outage.stale), (Some(2), true));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "it did ask Vault");
    }

    #[tokio::test]
    async fn permission_denied_drops_the_cached_value() {
        let cache = FetchCache::new(policy(10));
        let calls = Arc::new(AtomicUsize::new(0));
        fetch_counted(&cache, "k", &calls, Ok(Some(5)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let denied = fetch_counted(&cache, "k", &calls, Err(StoreError::PermissionDenied)).await;
        assert_eq!(denied.unwrap_err(), StoreError::PermissionDenied);
        let after = fetch_counted(&cache, "k", &calls, Err(StoreError::Server(500))).await;
        assert!(after.is_err(), "no stale value may survive a 403");
    }

    #[tokio::test]
    async fn during_an_outage_the_stale_value_is_served_at_once_while_backing_off() {
        let cache = FetchCache::new(policy(10));
        let calls = Arc::new(AtomicUsize::new(0));
        fetch_counted(&cache, "k", &calls, Ok(Some(5)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        fetch_counted(&cache, "k", &calls, Err(StoreError::Sealed))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        for _ in 0..10 {
            let got = fetch_counted(&cache, "k", &calls, Err(StoreError::Sealed))
                .await
                .unwrap();
            assert!(got.stale);
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "no request storm while backing off"
        );
        assert!(
            cache.due_for_refresh().is_empty(),
            "not due while backing off"
        );
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_is_capped() {
        for failures in 1..30 {
            let delay = backoff_delay(failures);
            let nominal = BASE_BACKOFF
                .saturating_mul(1 << (failures - 1).min(16))
                .min(MAX_BACKOFF);
            assert!(
                delay >= nominal.mul_f64(0.5) && delay < nominal.mul_f64(1.5),
                "{failures}: {delay:?}"
            );
        }
        assert!(backoff_delay(40) <= MAX_BACKOFF.mul_f64(1.5));
    }

    /// Changes the cache reported: each key with the value it holds now.
    type Changes = Arc<Mutex<Vec<(String, Option<u32>)>>>;

    /// Records every change the cache reports.
    fn recorded_changes(cache: &FetchCache<u32>) -> Changes {
        let changed = Arc::new(Mutex::new(Vec::new()));
        let sink = changed.clone();
        cache.on_change(Arc::new(move |key: &str, now: Option<&u32>| {
            sink.lock().unwrap().push((key.to_string(), now.copied()))
        }));
        changed
    }

    #[tokio::test]
    async fn a_changed_or_revoked_value_notifies_the_listener_and_an_equal_one_does_not() {
        let cache = FetchCache::new(policy(10));
        let changed = recorded_changes(&cache);
        let calls = Arc::new(AtomicUsize::new(0));
        fetch_counted(&cache, "k", &calls, Ok(Some(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        fetch_counted(&cache, "k", &calls, Ok(Some(1)))
            .await
            .unwrap();
        assert!(changed.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(20)).await;
        fetch_counted(&cache, "k", &calls, Ok(Some(2)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = fetch_counted(&cache, "k", &calls, Err(StoreError::PermissionDenied)).await;
        assert_eq!(
            *changed.lock().unwrap(),
            vec![("k".to_string(), Some(2)), ("k".to_string(), None)]
        );
    }

    #[tokio::test]
    async fn a_key_deleted_and_created_again_notifies_both_changes_but_a_first_answer_does_not() {
        let cache = FetchCache::new(policy(10));
        let changed = recorded_changes(&cache);
        let calls = Arc::new(AtomicUsize::new(0));
        for answer in [Some(1), None, Some(3)] {
            fetch_counted(&cache, "k", &calls, Ok(answer))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fetch_counted(&cache, "first", &calls, Ok(None))
            .await
            .unwrap();
        assert_eq!(
            *changed.lock().unwrap(),
            vec![("k".to_string(), None), ("k".to_string(), Some(3))]
        );
    }

    #[tokio::test]
    async fn only_expired_keys_that_were_read_are_due_for_background_refresh() {
        let cache = FetchCache::new(policy(10));
        let calls = Arc::new(AtomicUsize::new(0));
        fetch_counted(&cache, "read", &calls, Ok(Some(1)))
            .await
            .unwrap();
        fetch_counted(&cache, "idle", &calls, Ok(Some(1)))
            .await
            .unwrap();
        fetch_counted(&cache, "read", &calls, Ok(Some(1)))
            .await
            .unwrap();
        assert!(cache.due_for_refresh().is_empty(), "nothing expired yet");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(cache.due_for_refresh(), vec!["read".to_string()]);
        let _ = cache.refresh("read", || async { Ok(Some(3)) }).await;
        assert!(cache.due_for_refresh().is_empty());
        let got = fetch_counted(&cache, "read", &calls, Ok(Some(9)))
            .await
            .unwrap();
        assert_eq!(
            got.value,
            Some(3),
            "the refreshed value is served from the cache"
        );
    }

    #[tokio::test]
    async fn a_hanging_refresh_serves_the_stale_value_after_the_stale_wait() {
        let cache = FetchCache::new(CachePolicy {
            stale_wait: Duration::from_millis(50),
            ..policy(10)
        });
        let calls = Arc::new(AtomicUsize::new(0));
        fetch_counted(&cache, "k", &calls, Ok(Some(5)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        let got = cache
            .get_or_fetch("k", || async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Some(6))
            })
            .await
            .unwrap();
        assert_eq!((got.value, got.stale), (Some(5), true));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "served without waiting for Vault"
        );
    }

    #[tokio::test]
    async fn once_vault_is_known_to_fail_other_expired_values_are_served_without_waiting() {
        let outage = Arc::new(Outage::default());
        let cache = FetchCache::sharing_outage(
            CachePolicy {
                stale_wait: Duration::from_millis(50),
                ..policy(10)
            },
            outage.clone(),
        );
        let calls = Arc::new(AtomicUsize::new(0));
        for key in ["a", "b"] {
            fetch_counted(&cache, key, &calls, Ok(Some(1)))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let hanging = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Some(2))
        };
        // The first expired read waits stale_wait, then serves stale: now an outage.
        let a = cache.get_or_fetch("a", hanging).await.unwrap();
        assert_eq!((a.value, a.stale), (Some(1), true));
        assert!(outage.is_on());
        // Another expired key is served at once (the future completes on its
        // first poll), its refresh started in the background.
        let b = cache
            .get_or_fetch("b", hanging)
            .now_or_never()
            .expect("served without waiting")
            .unwrap();
        assert_eq!((b.value, b.stale), (Some(1), true));
        assert!(cache.inner.in_flight.lock().unwrap().contains_key("b"));
        // Any answer ends the outage.
        fetch_counted(&cache, "c", &calls, Ok(None)).await.unwrap();
        assert!(!outage.is_on());
    }

    #[tokio::test]
    async fn past_max_stale_a_failing_refresh_is_an_error_again() {
        let cache = FetchCache::new(CachePolicy {
            max_stale: Duration::from_millis(20),
            ..policy(10)
        });
        let calls = Arc::new(AtomicUsize::new(0));
        fetch_counted(&cache, "k", &calls, Ok(Some(5)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let outcome = fetch_counted(&cache, "k", &calls, Err(StoreError::Server(500))).await;
        assert_eq!(outcome.unwrap_err(), StoreError::Server(500));
    }

    #[test]
    fn an_outage_is_announced_once_and_a_flapping_one_again_after_the_memory() {
        let outage = Outage::default();
        let t0 = Instant::now();
        let at = |secs: f64| t0 + Duration::from_secs_f64(secs);
        assert!(outage.failed_at(at(0.0)), "the first failure is announced");
        assert!(!outage.failed_at(at(0.5)), "once");
        assert!(outage.answered_at(at(1.0)), "its end is announced");
        assert!(!outage.answered_at(at(1.1)), "once");
        // Down again within the memory: not announced yet, nor its quick end.
        assert!(!outage.failed_at(at(2.0)));
        assert!(!outage.answered_at(at(2.5)));
        // Down again and staying down: announced once the memory has passed.
        assert!(!outage.failed_at(at(3.0)));
        assert!(
            !outage.failed_at(at(7.0)),
            "still within 5 s of the end at 2.5 s"
        );
        assert!(outage.failed_at(at(7.6)), "announced after the memory");
        assert!(outage.answered_at(at(9.0)));
    }
}
