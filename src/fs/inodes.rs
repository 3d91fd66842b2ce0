//! The inode table: what each inode number shows, which name leads to it, how
//! many lookups the kernel holds for it, and which value each key file shows.
//!
//! A key file's inode shows one value for its whole life ([`FileVersion`]). When
//! the value changes, the name leads to a new inode and the old one is *retired*:
//! a reader in the middle of the old one still reads one whole value (as with an
//! atomic rename), and the retired inode follows the new value later (see
//! `fs.rs`). Inodes leave the table when the kernel forgets them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::ROOT_INO;
use crate::vault::Secret;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NodeKind {
    Root,
    /// A Vault folder and/or secret at `path`. `is_secret` when Vault listed it as a secret.
    /// `has_children` unless the parent's listing showed it as a secret without a
    /// `name/` entry: such a leaf secret is never listed, its keys are all it shows.
    Folder {
        path: Arc<str>,
        is_secret: bool,
        has_children: bool,
    },
    /// One key of the secret at `path` (the path is shared with its folder's node).
    SecretFile {
        path: Arc<str>,
        key: Box<str>,
    },
    /// A botserver package directory (`<name>.gbai`).
    Package {
        dir: PathBuf,
    },
    /// A bot directory (`<bot>.gbot`) holding a config.csv.
    Bot {
        dir: PathBuf,
    },
    /// A rendered config.csv view of `source`.
    View {
        source: PathBuf,
    },
    /// The hidden control directory.
    Control,
    /// The daemon's status as JSON.
    Status,
}

impl NodeKind {
    /// The name a file's content has in its [`FileVersion`]: a key file's key, or
    /// a view's file name. None for inodes whose content is not versioned.
    pub fn version_key(&self) -> Option<&str> {
        match self {
            NodeKind::SecretFile { key, .. } => Some(key),
            NodeKind::View { .. } => Some(crate::views::VIEW_NAME),
            _ => None,
        }
    }

    fn is_directory(&self) -> bool {
        !matches!(
            self,
            NodeKind::SecretFile { .. } | NodeKind::View { .. } | NodeKind::Status
        )
    }
}

/// The content a file's inode shows, as named values it is taken from: for a
/// key file the secret (shared with the cache while it is current, so it costs
/// no copy), for a view its rendering under its file name; and when it appeared.
#[derive(Clone)]
pub(super) struct FileVersion {
    pub secret: Arc<Secret>,
    pub modified: SystemTime,
}

impl FileVersion {
    /// The value of `key` in this version (empty when the key is not in it).
    pub fn value<'a>(&'a self, key: &str) -> &'a [u8] {
        self.secret
            .values
            .get(key)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    fn shows_same(&self, key: &str, secret: &Secret) -> bool {
        self.secret.values.get(key) == secret.values.get(key)
    }
}

/// What happened to a key file's inode when it was matched against the value
/// Vault holds now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reconciled {
    /// It shows the current value.
    Current,
    /// It shows an older value and was just retired: its name now leads
    /// elsewhere (the kernel should drop the name).
    JustRetired { parent: u64, name: Box<str> },
    /// It shows an older value and was retired before.
    Retired,
}

/// One inode: what it shows, where it was found, and what the kernel holds of it.
struct Node {
    kind: Arc<NodeKind>,
    parent: u64,
    /// Shared with the parent's children map (one allocation per name).
    name: Arc<str>,
    /// Lookups the kernel holds; FORGET gives them back.
    lookups: u64,
    /// The value a key file's inode shows.
    version: Option<FileVersion>,
}

#[derive(Default)]
pub(super) struct InodeTable {
    nodes: HashMap<u64, Node>,
    /// Children by name, per parent inode: the inode each name leads to now.
    children: HashMap<u64, HashMap<Arc<str>, u64>>,
    /// Content a retired file is to show once the kernel asks its attributes
    /// again (see [`InodeTable::set_pending`]), with the order it was set in.
    pending: HashMap<u64, (u64, FileVersion)>,
    pending_set: u64,
    next_ino: u64,
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut table = InodeTable {
            next_ino: ROOT_INO + 1,
            ..Default::default()
        };
        table.nodes.insert(
            ROOT_INO,
            Node {
                kind: Arc::new(NodeKind::Root),
                parent: ROOT_INO,
                name: "".into(),
                lookups: 0,
                version: None,
            },
        );
        table
    }

    pub fn node(&self, ino: u64) -> Option<Arc<NodeKind>> {
        self.nodes.get(&ino).map(|node| node.kind.clone())
    }

    /// Every inode with what it shows.
    pub fn nodes(&self) -> impl Iterator<Item = (u64, &NodeKind)> {
        self.nodes.iter().map(|(ino, node)| (*ino, &*node.kind))
    }

    /// How many inodes the table holds, and how many of them are retired key files.
    pub fn counts(&self) -> (usize, usize) {
        let retired = self
            .nodes
            .iter()
            .filter(|(ino, node)| node.version.is_some() && !self.is_current(**ino))
            .count();
        (self.nodes.len(), retired)
    }

    /// The inode `name` under `parent` leads to now, if any.
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.children.get(&parent)?.get(name).copied()
    }

    /// Whether the inode's name still leads to it.
    pub fn is_current(&self, ino: u64) -> bool {
        ino == ROOT_INO
            || self
                .nodes
                .get(&ino)
                .is_some_and(|node| self.child(node.parent, &node.name) == Some(ino))
    }

    /// The inode for `name` under `parent`, shown as `kind`. An inode of the same
    /// type is kept (a folder may turn out to be a secret too); a change between
    /// file and directory gets a new inode, as the kernel cannot re-type one.
    pub fn intern(&mut self, parent: u64, name: &str, kind: NodeKind) -> u64 {
        if let Some(ino) = self.child(parent, name) {
            if let Some(existing) = self.nodes.get_mut(&ino) {
                if *existing.kind == kind {
                    return ino;
                }
                if existing.kind.is_directory() == kind.is_directory() {
                    existing.kind = Arc::new(kind);
                    existing.version = None;
                    return ino;
                }
            }
            self.retire(ino);
        }
        self.insert(parent, name, kind, None)
    }

    /// The inode for the file `name` under `parent` showing `secret`'s value of
    /// `kind.version_key()`: the one there now while it shows that same value (it
    /// then shares `secret`, so an older copy can be freed), else a new one,
    /// retiring the old. Returns the inode, the version it shows, and the inode
    /// it retired, if the kernel still holds that one.
    pub fn intern_file(
        &mut self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        secret: &Arc<Secret>,
        modified: SystemTime,
    ) -> (u64, FileVersion, Option<u64>) {
        let fresh = || FileVersion {
            secret: secret.clone(),
            modified,
        };
        let Some(key) = kind.version_key().map(str::to_owned) else {
            return (self.intern(parent, name, kind), fresh(), None);
        };
        let key = key.as_str();
        let mut retired = None;
        if let Some(ino) = self.child(parent, name) {
            if let Some(existing) = self.nodes.get_mut(&ino).filter(|n| *n.kind == kind) {
                match &mut existing.version {
                    Some(version) if version.shows_same(key, secret) => {
                        version.secret = secret.clone();
                        return (ino, version.clone(), None);
                    }
                    Some(_) => {}
                    None => {
                        existing.version = Some(fresh());
                        return (ino, fresh(), None);
                    }
                }
            }
            self.retire(ino);
            retired = self
                .nodes
                .get(&ino)
                .and_then(|node| node.version.as_ref())
                .map(|_| ino);
        }
        let version = fresh();
        let ino = self.insert(parent, name, kind, Some(version.clone()));
        (ino, version, retired)
    }

    /// The version a file's inode shows, matched against `current` (what it
    /// should show now): kept and re-shared when its value is the same, else left
    /// as it is and the inode retired. An inode with no version takes `current`'s.
    /// `pending`: for the kernel's attribute request, the pending version
    /// ([`InodeTable::pending_order`]) that was set when the request arrived,
    /// which takes effect first.
    pub fn reconcile(
        &mut self,
        ino: u64,
        key: &str,
        current: &Arc<Secret>,
        modified: SystemTime,
        pending: Option<u64>,
    ) -> (FileVersion, Reconciled) {
        let pending = match (pending, self.pending.get(&ino)) {
            (Some(order), Some((set, _))) if *set == order => {
                self.pending.remove(&ino).map(|(_, version)| version)
            }
            _ => None,
        };
        let Some(node) = self.nodes.get_mut(&ino) else {
            let version = FileVersion {
                secret: current.clone(),
                modified,
            };
            return (version, Reconciled::Retired);
        };
        if pending.is_some() {
            node.version = pending;
        }
        let version = node.version.get_or_insert_with(|| FileVersion {
            secret: current.clone(),
            modified,
        });
        if version.shows_same(key, current) {
            version.secret = current.clone();
            return (version.clone(), Reconciled::Current);
        }
        let version = version.clone();
        if !self.is_current(ino) {
            return (version, Reconciled::Retired);
        }
        let (parent, name) = (node_parent(&self.nodes, ino), self.name_of(ino));
        self.retire(ino);
        (version, Reconciled::JustRetired { parent, name })
    }

    /// The version a file's inode is to show: a pending one, else the one it
    /// shows.
    pub fn latest_version(&self, ino: u64) -> Option<FileVersion> {
        self.pending
            .get(&ino)
            .map(|(_, version)| version.clone())
            .or_else(|| self.nodes.get(&ino)?.version.clone())
    }

    /// Makes a (retired) file's inode show `version` from the next attribute
    /// request of the kernel's that arrives after this call; gbo-fs makes this
    /// call only once the kernel has dropped the inode's attributes and pages.
    /// Until then reads still get the content the inode showed, which matches the
    /// size the kernel holds, and an attribute request the daemon was already
    /// serving changes nothing (the kernel ignores its answer, as it predates the
    /// invalidation). One the kernel queued before the invalidation but the daemon
    /// reads only after this call does switch the content while the kernel keeps
    /// the old size: a rare cut read, see README Known limits.
    pub fn set_pending(&mut self, ino: u64, version: FileVersion) {
        if self.nodes.contains_key(&ino) {
            self.pending_set += 1;
            self.pending.insert(ino, (self.pending_set, version));
        }
    }

    /// Which pending version ([`InodeTable::set_pending`]) an attribute request
    /// arriving now may apply.
    pub fn pending_order(&self, ino: u64) -> Option<u64> {
        self.pending.get(&ino).map(|(order, _)| *order)
    }

    /// Drops the value an inode shows (its key was revoked or deleted): reads
    /// then go to Vault and fail as the key does. Returns the name that led to
    /// it, if it still did (the kernel should drop that name).
    pub fn revoke(&mut self, ino: u64) -> Option<(u64, Box<str>)> {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.version = None;
        }
        self.pending.remove(&ino);
        if !self.is_current(ino) {
            return None;
        }
        let name = (node_parent(&self.nodes, ino), self.name_of(ino));
        self.retire(ino);
        Some(name)
    }

    /// Counts one more lookup the kernel holds for `ino`.
    pub fn looked_up(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += 1;
        }
    }

    /// The kernel forgot `count` lookups of `ino`; at none left, the inode (and
    /// every descendant the kernel holds no lookup of) leaves the table.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups == 0 {
            self.remove(ino);
        }
    }

    fn name_of(&self, ino: u64) -> Box<str> {
        self.nodes
            .get(&ino)
            .map(|node| (*node.name).into())
            .unwrap_or_default()
    }

    /// Unlinks `ino` from its name; it stays while the kernel holds lookups of it.
    fn retire(&mut self, ino: u64) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        let held = node.lookups > 0;
        if let Some(children) = self.children.get_mut(&node.parent) {
            if children.get(&node.name) == Some(&ino) {
                children.remove(&node.name);
            }
        }
        if !held {
            self.remove(ino);
        }
    }

    fn remove(&mut self, ino: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(node) = self.nodes.remove(&ino) else {
            return;
        };
        self.pending.remove(&ino);
        if let Some(children) = self.children.get_mut(&node.parent) {
            if children.get(&node.name) == Some(&ino) {
                children.remove(&node.name);
            }
            if children.is_empty() {
                self.children.remove(&node.parent);
            }
        }
        // Children listed by readdir but never looked up go with their directory;
        // any the kernel still holds stay until it forgets them.
        let orphans: Vec<u64> = self
            .children
            .remove(&ino)
            .map(|children| children.into_values().collect())
            .unwrap_or_default();
        for child in orphans {
            if self.nodes.get(&child).is_some_and(|node| node.lookups == 0) {
                self.remove(child);
            }
        }
    }

    fn insert(
        &mut self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        version: Option<FileVersion>,
    ) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let name: Arc<str> = name.into();
        self.nodes.insert(
            ino,
            Node {
                kind: Arc::new(kind),
                parent,
                name: name.clone(),
                lookups: 0,
                version,
            },
        );
        self.children.entry(parent).or_default().insert(name, ino);
        ino
    }
}

fn node_parent(nodes: &HashMap<u64, Node>, ino: u64) -> u64 {
    nodes.get(&ino).map(|node| node.parent).unwrap_or(ROOT_INO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use zeroize::Zeroizing;

    fn secret(value: &str) -> Arc<Secret> {
        let mut values = BTreeMap::new();
        values.insert("k".to_string(), Zeroizing::new(value.as_bytes().to_vec()));
        Arc::new(Secret {
            values,
            version: None,
            created_time: None,
        })
    }

    fn key_file() -> NodeKind {
        NodeKind::SecretFile {
            path: "gbo/a".into(),
            key: "k".into(),
        }
    }

    #[test]
    fn a_changed_value_gets_a_new_inode_and_the_old_one_keeps_its_value_until_forgotten() {
        let mut table = InodeTable::new();
        let now = SystemTime::now();
        let (first, _, retired) = table.intern_file(ROOT_INO, "k", key_file(), &secret("one"), now);
        assert_eq!(retired, None);
        table.looked_up(first);
        let (same, _, retired) = table.intern_file(ROOT_INO, "k", key_file(), &secret("one"), now);
        assert_eq!((same, retired), (first, None), "same value, same inode");

        let (second, _, retired) =
            table.intern_file(ROOT_INO, "k", key_file(), &secret("two"), now);
        assert_ne!(second, first);
        assert_eq!(retired, Some(first));
        assert_eq!(table.latest_version(first).unwrap().value("k"), b"one");
        assert_eq!(table.latest_version(second).unwrap().value("k"), b"two");
        assert_eq!(table.child(ROOT_INO, "k"), Some(second));
        assert_eq!(table.counts(), (3, 1));

        table.forget(first, 1);
        assert!(table.node(first).is_none());
        assert_eq!(table.counts(), (2, 0));
    }

    #[test]
    fn reconcile_retires_a_current_inode_once_and_keeps_its_old_value() {
        let mut table = InodeTable::new();
        let now = SystemTime::now();
        let (ino, _, _) = table.intern_file(ROOT_INO, "k", key_file(), &secret("one"), now);
        table.looked_up(ino);
        let (version, outcome) = table.reconcile(ino, "k", &secret("one"), now, None);
        assert_eq!(
            (version.value("k"), outcome),
            (&b"one"[..], Reconciled::Current)
        );
        let (version, outcome) = table.reconcile(ino, "k", &secret("two"), now, None);
        assert_eq!(version.value("k"), b"one");
        assert_eq!(
            outcome,
            Reconciled::JustRetired {
                parent: ROOT_INO,
                name: "k".into()
            }
        );
        let (_, outcome) = table.reconcile(ino, "k", &secret("two"), now, None);
        assert_eq!(outcome, Reconciled::Retired);
        assert_eq!(table.child(ROOT_INO, "k"), None);
    }

    #[test]
    fn forgetting_a_directory_drops_children_never_looked_up_but_not_held_ones() {
        let mut table = InodeTable::new();
        let dir = table.intern(
            ROOT_INO,
            "gbo",
            NodeKind::Folder {
                path: "gbo".into(),
                is_secret: false,
                has_children: true,
            },
        );
        table.looked_up(dir);
        let listed = table.intern(dir, "listed", NodeKind::Control);
        let (held, _, _) = table.intern_file(dir, "k", key_file(), &secret("v"), SystemTime::now());
        table.looked_up(held);
        table.looked_up(held);
        table.forget(dir, 1);
        assert!(table.node(dir).is_none());
        assert!(table.node(listed).is_none());
        assert!(table.node(held).is_some(), "the kernel still holds it");
        table.forget(held, 1);
        assert!(table.node(held).is_some(), "one lookup is still held");
        table.forget(held, 1);
        assert!(table.node(held).is_none());
        assert_eq!(table.counts(), (1, 0));
    }

    #[test]
    fn a_name_that_turns_from_directory_to_file_gets_a_new_inode() {
        let mut table = InodeTable::new();
        let folder = NodeKind::Folder {
            path: "gbo/a/k".into(),
            is_secret: false,
            has_children: true,
        };
        let dir = table.intern(ROOT_INO, "k", folder);
        let (file, _, retired) =
            table.intern_file(ROOT_INO, "k", key_file(), &secret("v"), SystemTime::now());
        assert_ne!(dir, file);
        assert_eq!(retired, None, "never looked up, so simply dropped");
        assert!(table.node(dir).is_none());
    }
}
