//! config.csv views: which source files are shown where (`--config-csv`, `--bots`),
//! and rendering one with its `vault:` references resolved through the cache.
//!
//! Sources are read on every open and `stat`, so an edited source shows at once
//! (within the kernel's one-second attribute TTL). No rendered byte is written
//! anywhere but to the reader.

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::command_output::io_problem;
use crate::config_csv::{
    self, find_references, referenced_paths, MissingReference, Rendered, Resolution, Unresolved,
};
use crate::fs::FsError;
use crate::vault::Secret;

/// File name of every view.
pub const VIEW_NAME: &str = "config.csv";
/// Suffix of a botserver package directory.
pub const PACKAGE_SUFFIX: &str = ".gbai";
/// Suffix of a bot directory inside a package.
pub const BOT_SUFFIX: &str = ".gbot";

/// Where config.csv sources come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// `--config-csv PATH`: shown as `MOUNTPOINT/config.csv`.
    pub config_csv: Option<PathBuf>,
    /// `--bots DIR`: every `DIR/<name>.gbai/<bot>.gbot/config.csv`.
    pub bots_dir: Option<PathBuf>,
    /// The real path of gbo-fs's own mountpoint, when mounted. No source, package or
    /// bot path may lead into it: the daemon would be waiting on itself.
    pub mountpoint: Option<PathBuf>,
    /// The mount's device number, once mounted (shared by every clone): a path
    /// reaching it another way (a bind mount) is refused too.
    pub mount_device: Arc<std::sync::OnceLock<u64>>,
}

/// Why a source path has no real path outside the mount.
#[derive(Debug)]
pub enum Unreachable {
    /// It leads into gbo-fs's own mount.
    IntoTheMount,
    /// Resolving it failed (`NotFound` when some part is missing).
    Io(std::io::Error),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::IntoTheMount => f.write_str("it leads into the gbo-fs mount itself"),
            Unreachable::Io(error) => error.fmt(f),
        }
    }
}

/// Symlinks followed at most while resolving one path (Linux's limit).
const MAX_SYMLINKS: usize = 40;

impl ConfigSources {
    /// Records the mount's device number (see [`Self::mount_device`]).
    pub fn set_mount_device(&self, device: u64) {
        let _ = self.mount_device.set(device);
    }

    /// `path` with every symlink and `..` resolved, found with `lstat` and
    /// `readlink` alone and without ever touching the mountpoint or anything under
    /// it; the error when it leads there. Without a mount, the plain real path.
    pub fn real_path(&self, path: &Path) -> Result<PathBuf, Unreachable> {
        let Some(mount) = &self.mountpoint else {
            return std::fs::canonicalize(path).map_err(Unreachable::Io);
        };
        let absolute = match path.is_absolute() {
            true => path.to_path_buf(),
            false => std::env::current_dir().map_err(Unreachable::Io)?.join(path),
        };
        let mut pending: Vec<std::ffi::OsString> = Vec::new();
        push_components(&mut pending, &absolute);
        let mut resolved = PathBuf::from("/");
        let mut links = 0;
        while let Some(part) = pending.pop() {
            match part.to_str() {
                Some("/") => resolved = PathBuf::from("/"),
                Some(".") => {}
                Some("..") => {
                    resolved.pop();
                }
                _ => {
                    let candidate = resolved.join(&part);
                    if candidate.starts_with(mount) {
                        return Err(Unreachable::IntoTheMount);
                    }
                    let metadata =
                        std::fs::symlink_metadata(&candidate).map_err(Unreachable::Io)?;
                    if self.mount_device.get() == Some(&metadata.dev()) {
                        return Err(Unreachable::IntoTheMount);
                    }
                    if !metadata.file_type().is_symlink() {
                        resolved = candidate;
                        continue;
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Unreachable::Io(std::io::Error::from_raw_os_error(
                            libc::ELOOP,
                        )));
                    }
                    let target = std::fs::read_link(&candidate).map_err(Unreachable::Io)?;
                    push_components(&mut pending, &target);
                }
            }
        }
        Ok(resolved)
    }

    /// The real path of `path` when it is a directory outside the mount.
    pub fn real_dir(&self, path: &Path) -> Option<PathBuf> {
        self.real_path(path).ok().filter(|real| real.is_dir())
    }

    /// Whether `path` leads to a regular file outside the mount.
    fn is_file_outside_mount(&self, path: &Path) -> bool {
        self.real_path(path).is_ok_and(|real| real.is_file())
    }

    /// A bot directory's config.csv, when it is a file outside the mount.
    pub fn bot_source(&self, bot_dir: &Path) -> Option<PathBuf> {
        let source = bot_dir.join(VIEW_NAME);
        self.is_file_outside_mount(&source).then_some(source)
    }

    /// The single `--config-csv` source, when it exists now (outside the mount).
    pub fn root_view(&self) -> Option<&Path> {
        let source = self.config_csv.as_deref()?;
        self.is_file_outside_mount(source).then_some(source)
    }

    /// Packages (`<name>.gbai`) in the bots directory that hold at least one bot
    /// view, each by its real path.
    pub fn packages(&self) -> Vec<(String, PathBuf)> {
        let Some(bots_dir) = self.bots_dir.as_deref().and_then(|dir| self.real_dir(dir)) else {
            return Vec::new();
        };
        self.subdirectories_with_suffix(&bots_dir, PACKAGE_SUFFIX)
            .into_iter()
            .filter(|(_, dir)| !self.bots_in(dir).is_empty())
            .collect()
    }

    /// The package directory called `name` (its real path), if it is shown.
    pub fn package(&self, name: &str) -> Option<PathBuf> {
        if !name.ends_with(PACKAGE_SUFFIX) {
            return None;
        }
        let bots_dir = self.real_dir(self.bots_dir.as_deref()?)?;
        let dir = self.real_dir(&bots_dir.join(name))?;
        (!self.bots_in(&dir).is_empty()).then_some(dir)
    }

    /// Every bot's config.csv under `--bots`, package by package.
    pub fn bot_views(&self) -> Vec<PathBuf> {
        self.packages()
            .into_iter()
            .flat_map(|(_, package)| self.bots_in(&package))
            .map(|(_, bot)| bot.join(VIEW_NAME))
            .collect()
    }

    /// Bots (`<bot>.gbot`) in a package that have a config.csv, each by its real path.
    /// `package` must be a real path just resolved ([`Self::real_dir`]): one kept
    /// from earlier may have been swapped for a symlink since.
    pub fn bots_in(&self, package: &Path) -> Vec<(String, PathBuf)> {
        self.subdirectories_with_suffix(package, BOT_SUFFIX)
            .into_iter()
            .filter(|(_, dir)| self.bot_source(dir).is_some())
            .collect()
    }

    /// The bot directory called `name` in a package (its real path), if it has a
    /// config.csv.
    pub fn bot(&self, package: &Path, name: &str) -> Option<PathBuf> {
        if !name.ends_with(BOT_SUFFIX) {
            return None;
        }
        let dir = self.real_dir(&package.join(name))?;
        self.bot_source(&dir).map(|_| dir)
    }

    fn subdirectories_with_suffix(&self, dir: &Path, suffix: &str) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if !name.ends_with(suffix) || name.len() == suffix.len() {
                    return None;
                }
                Some((name, self.real_dir(&entry.path())?))
            })
            .collect();
        found.sort();
        found
    }

    /// For one-shot commands, which look once: an error naming `--config-csv`
    /// or `--bots` when it is missing or not a file / directory. (A mount shows
    /// them whenever they appear.)
    pub fn require_present(&self) -> Result<(), String> {
        if let Some(file) = &self.config_csv {
            require_kind(file, "--config-csv", false)?;
        }
        if let Some(dir) = &self.bots_dir {
            require_kind(dir, "--bots", true)?;
        }
        Ok(())
    }
}

fn require_kind(path: &Path, flag: &str, directory: bool) -> Result<(), String> {
    let problem = match std::fs::metadata(path) {
        Err(e) => io_problem(&e),
        Ok(found) if directory && !found.is_dir() => FsError::NotADirectory.to_string(),
        Ok(found) if !directory && found.is_dir() => FsError::IsADirectory.to_string(),
        Ok(_) => return Ok(()),
    };
    Err(format!("{flag} {}: {problem}", path.display()))
}

/// Pushes the components of `path` onto `pending` so that they pop in order.
fn push_components(pending: &mut Vec<std::ffi::OsString>, path: &Path) {
    for component in path.components().rev() {
        pending.push(component.as_os_str().to_os_string());
    }
}

/// The outcome of fetching one referenced path: the secret, "none there", or why it failed.
pub type FetchOutcome = Result<Option<Arc<Secret>>, String>;

/// Fetches every distinct referenced path once, concurrently, then renders.
pub async fn render_view<F, Fut>(source: &[u8], mode: MissingReference, fetch: F) -> Rendered
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = FetchOutcome>,
{
    let fetched = fetch_all(source, fetch).await;
    config_csv::render(source, mode, &mut |path, key| {
        resolution(&fetched, path, key)
    })
}

/// One line per reference for `gbo-fs check`: where it is and whether it resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceCheck {
    pub line: usize,
    pub name: String,
    pub reference: String,
    /// `None` when the reference resolves; otherwise why not.
    pub problem: Option<String>,
}

/// Checks every reference without producing any value.
pub async fn check_view<F, Fut>(source: &[u8], fetch: F) -> Vec<ReferenceCheck>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = FetchOutcome>,
{
    let fetched = fetch_all(source, fetch).await;
    let rendered = config_csv::render(source, MissingReference::Keep, &mut |path, key| {
        resolution(&fetched, path, key)
    });
    let problems: HashMap<(usize, &str), &Unresolved> = rendered
        .unresolved
        .iter()
        .map(|u| ((u.line, u.reference.as_str()), u))
        .collect();
    find_references(source)
        .into_iter()
        .map(|found| match found {
            Ok(reference) => ReferenceCheck {
                line: reference.line,
                problem: problems
                    .get(&(reference.line, reference.text.as_str()))
                    .map(|u| u.reason.clone()),
                name: reference.name,
                reference: reference.text,
            },
            Err(malformed) => ReferenceCheck {
                line: malformed.line,
                name: malformed.name,
                problem: Some(config_csv::MALFORMED.to_string()),
                reference: malformed.text,
            },
        })
        .collect()
}

async fn fetch_all<F, Fut>(source: &[u8], fetch: F) -> HashMap<String, FetchOutcome>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = FetchOutcome>,
{
    let paths = referenced_paths(source);
    let outcomes = futures::future::join_all(paths.iter().map(|p| fetch(p.clone()))).await;
    paths.into_iter().zip(outcomes).collect()
}

fn resolution(fetched: &HashMap<String, FetchOutcome>, path: &str, key: &str) -> Resolution {
    match fetched.get(path) {
        Some(Ok(Some(secret))) => match secret.values.get(key) {
            Some(value) => Resolution::Value(Zeroizing::new(value.to_vec())),
            None => Resolution::Missing("no such key".into()),
        },
        Some(Ok(None)) => Resolution::Missing("no such secret path".into()),
        Some(Err(reason)) => Resolution::Missing(reason.clone()),
        None => Resolution::Missing("not fetched".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn secret(pairs: &[(&str, &str)]) -> Arc<Secret> {
        let object = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        Arc::new(Secret::from_json_object(&object))
    }

    #[tokio::test]
    async fn each_distinct_path_is_fetched_once_for_many_references() {
        let source = b"name,value\na,vault:gbo/llm/openai_key\nb,vault:gbo/llm/anthropic_key\nc,vault:gbo/tables/host\nd,vault:gbo/llm/openai_key\n";
        let calls = AtomicUsize::new(0);
        let rendered = render_view(source, MissingReference::Error, |path| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok(Some(match path.as_str() {
                    "gbo/llm" => secret(&[("openai_key", "O"), ("anthropic_key", "A")]),
                    _ => secret(&[("host", "H")]),
                }))
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(&rendered.bytes[..], b"name,value\na,O\nb,A\nc,H\nd,O\n");
    }

    #[tokio::test]
    async fn check_reports_ok_and_reasons_without_values() {
        let source = b"a,vault:gbo/llm/openai_key\nb,vault:gbo/llm/missing\nc,vault:gbo/gone/k\nd,vault:bad\ne,vault:gbo/denied/k\n";
        let checks = check_view(source, |path| async move {
            match path.as_str() {
                "gbo/llm" => Ok(Some(secret(&[("openai_key", "sk-value")]))),
                "gbo/denied" => Err("permission denied by Vault".to_string()),
                _ => Ok(None),
            }
        })
        .await;
        let problems: Vec<Option<&str>> = checks.iter().map(|c| c.problem.as_deref()).collect();
        assert_eq!(
            problems,
            vec![
                None,
                Some("no such key"),
                Some("no such secret path"),
                Some(config_csv::MALFORMED),
                Some("permission denied by Vault")
            ]
        );
        assert!(!format!("{checks:?}").contains("sk-value"));
    }

    #[test]
    fn only_packages_with_bot_config_files_are_shown() {
        let dir = tempfile::tempdir().unwrap();
        let bots = dir.path();
        std::fs::create_dir_all(bots.join("sales.gbai/sales.gbot")).unwrap();
        std::fs::write(
            bots.join("sales.gbai/sales.gbot/config.csv"),
            "name,value\n",
        )
        .unwrap();
        std::fs::create_dir_all(bots.join("campaign-manager.gbai/marketing.gbot")).unwrap();
        std::fs::write(
            bots.join("campaign-manager.gbai/marketing.gbot/config.csv"),
            "",
        )
        .unwrap();
        std::fs::create_dir_all(bots.join("empty.gbai/x.gbot")).unwrap();
        std::fs::create_dir_all(bots.join("notapackage")).unwrap();
        let sources = ConfigSources {
            config_csv: None,
            bots_dir: Some(bots.to_path_buf()),
            mountpoint: None,
            ..ConfigSources::default()
        };
        let names: Vec<String> = sources.packages().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["campaign-manager.gbai", "sales.gbai"]);
        let package = sources.package("campaign-manager.gbai").unwrap();
        assert_eq!(sources.bots_in(&package)[0].0, "marketing.gbot");
        assert!(sources.package("empty.gbai").is_none());
        assert!(sources.bot(&package, "other.gbot").is_none());
    }

    #[test]
    fn real_paths_resolve_symlinks_and_dotdot_but_never_step_into_the_mount() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let mount = root.join("secrets");
        let sources = ConfigSources {
            mountpoint: Some(mount.clone()),
            ..ConfigSources::default()
        };
        std::fs::create_dir_all(root.join("bots/real.gbai")).unwrap();
        std::fs::create_dir_all(root.join("secrets2")).unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
            root.join(name)
        };
        // Relative links and `..` resolve as the kernel would.
        let relative = link("bots/../bots/./real.gbai", "relative");
        assert_eq!(
            sources.real_path(&relative).unwrap(),
            root.join("bots/real.gbai")
        );
        // Into the mount, directly, through `..` or through a chain of links: refused,
        // and the mountpoint (absent here) is never even looked at.
        for (target, name) in [
            ("secrets", "direct"),
            ("bots/../secrets/gbo/llm/key", "dotdot"),
            ("direct", "chained"),
        ] {
            let path = link(target, name);
            assert!(
                matches!(sources.real_path(&path), Err(Unreachable::IntoTheMount)),
                "{name}"
            );
        }
        // A sibling whose name merely starts the same is not the mount.
        assert_eq!(
            sources.real_path(&root.join("secrets2")).unwrap(),
            root.join("secrets2")
        );
        // A loop ends with ELOOP, a missing part with NotFound.
        link("loop_b", "loop_a");
        link("loop_a", "loop_b");
        match sources.real_path(&root.join("loop_a")) {
            Err(Unreachable::Io(error)) => assert_eq!(error.raw_os_error(), Some(libc::ELOOP)),
            other => panic!("{other:?}"),
        }
        match sources.real_path(&root.join("bots/missing.gbai")) {
            Err(Unreachable::Io(error)) => assert_eq!(error.kind(), std::io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }
}
