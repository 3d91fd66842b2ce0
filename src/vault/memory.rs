//! An in-memory [`SecretStore`] for tests: counts calls, injects faults and delays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{ListEntry, Secret, SecretStore, StoreError, VaultStatus};

/// Secrets held in memory, keyed by logical path (`gbo/llm`).
#[derive(Default)]
pub struct MemoryStore {
    secrets: Mutex<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    versions: Mutex<HashMap<String, u64>>,
    faults: Mutex<Vec<(String, StoreError)>>,
    delays: Mutex<Vec<(String, Duration)>>,
    sealed: Mutex<bool>,
    reads: AtomicUsize,
    lists: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    read_log: Mutex<Vec<String>>,
    list_log: Mutex<Vec<String>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Stores (or replaces) a secret; string pairs are the common case.
    pub fn put_str(&self, path: &str, pairs: &[(&str, &str)]) {
        let object = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        self.put_json(path, object);
    }

    /// Stores (or replaces) a secret with arbitrary JSON values.
    pub fn put_json(&self, path: &str, object: serde_json::Map<String, serde_json::Value>) {
        self.secrets
            .lock()
            .unwrap()
            .insert(path.to_string(), object);
        *self
            .versions
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_insert(0) += 1;
    }

    pub fn delete(&self, path: &str) {
        self.secrets.lock().unwrap().remove(path);
    }

    /// Every operation on a path starting with `prefix` fails with `error`.
    pub fn fail(&self, prefix: &str, error: StoreError) {
        self.faults
            .lock()
            .unwrap()
            .push((prefix.to_string(), error));
    }

    /// Every operation on a path starting with `prefix` waits `delay` first.
    pub fn delay(&self, prefix: &str, delay: Duration) {
        self.delays
            .lock()
            .unwrap()
            .push((prefix.to_string(), delay));
    }

    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
        self.delays.lock().unwrap().clear();
    }

    pub fn set_sealed(&self, sealed: bool) {
        *self.sealed.lock().unwrap() = sealed;
    }

    /// Number of `read_secret` calls so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Number of `read_secret` calls for one path.
    pub fn reads_of(&self, path: &str) -> usize {
        self.read_log
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    /// The most reads that were ever in progress at once.
    pub fn max_concurrent_reads(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Number of `list_folder` calls so far.
    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    /// Number of `list_folder` calls for one path.
    pub fn lists_of(&self, path: &str) -> usize {
        self.list_log
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    async fn before_operation(&self, path: &str) -> Result<(), StoreError> {
        let delay = self
            .delays
            .lock()
            .unwrap()
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, d)| *d);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if *self.sealed.lock().unwrap() {
            return Err(StoreError::Sealed);
        }
        let fault = self
            .faults
            .lock()
            .unwrap()
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, e)| e.clone());
        match fault {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn read_secret(&self, path: &str) -> Result<Option<Secret>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.read_log.lock().unwrap().push(path.to_string());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let waited = self.before_operation(path).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        waited?;
        let secrets = self.secrets.lock().unwrap();
        Ok(secrets.get(path).map(|object| {
            let mut secret = Secret::from_json_object(object);
            secret.version = self.versions.lock().unwrap().get(path).copied();
            secret
        }))
    }

    async fn list_folder(&self, path: &str) -> Result<Option<Vec<ListEntry>>, StoreError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.list_log.lock().unwrap().push(path.to_string());
        self.before_operation(path).await?;
        let folder = format!("{}/", path.trim_end_matches('/'));
        let secrets = self.secrets.lock().unwrap();
        let mut entries = BTreeSet::new();
        for full in secrets.keys() {
            if let Some(rest) = full.strip_prefix(&folder) {
                let entry = match rest.split_once('/') {
                    Some((first, _)) => ListEntry {
                        name: first.to_string(),
                        is_folder: true,
                    },
                    None => ListEntry {
                        name: rest.to_string(),
                        is_folder: false,
                    },
                };
                entries.insert(entry);
            }
        }
        Ok((!entries.is_empty()).then(|| entries.into_iter().collect()))
    }

    async fn status(&self) -> Result<VaultStatus, StoreError> {
        Ok(VaultStatus {
            initialized: true,
            sealed: *self.sealed.lock().unwrap(),
            version: Some("memory".into()),
        })
    }

    fn describe(&self) -> String {
        "in-memory test store".into()
    }
}
