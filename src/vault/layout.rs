//! KV mount resolution: which Vault mount, KV version and base path serve the namespace.
//!
//! Two real layouts exist and both work without flags:
//! - the documented one, a KV mount named after the namespace (`gbo/llm` is
//!   `GET /v1/gbo/llm` on KV v1 or `GET /v1/gbo/data/llm` on KV v2);
//! - botserver's, the path `gbo/llm` inside the KV v2 mount `secret`
//!   (`GET /v1/secret/data/gbo/llm`).
//!
//! Detection order: `sys/internal/ui/mounts/<prefix>` (works with limited tokens),
//! then `sys/internal/ui/mounts/secret/<prefix>`, then `sys/mounts`. The flags
//! `--kv-mount` and `--kv-version` override detection; a `--kv-mount` is used as named,
//! and one that Vault says is missing or not KV is an error, never replaced.

use std::fmt;

use serde_json::Value;

/// KV secrets engine version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvVersion {
    V1,
    V2,
}

impl KvVersion {
    /// Parses `1`/`2` (also `v1`/`v2`).
    pub fn parse(text: &str) -> Option<KvVersion> {
        match text.trim().trim_start_matches(['v', 'V']) {
            "1" => Some(KvVersion::V1),
            "2" => Some(KvVersion::V2),
            _ => None,
        }
    }

    /// The version in a mount description's `options.version` (absent means 1).
    fn from_mount_json(mount: &Value) -> KvVersion {
        let version = mount
            .get("options")
            .and_then(|o| o.get("version"))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or(v.as_u64().map(|n| n.to_string()))
            });
        match version.as_deref().and_then(KvVersion::parse) {
            Some(v) => v,
            None => KvVersion::V1,
        }
    }
}

impl fmt::Display for KvVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvVersion::V1 => write!(f, "1"),
            KvVersion::V2 => write!(f, "2"),
        }
    }
}

/// Where the namespace lives: `prefix/x` is `base/x` inside `mount`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Namespace shown in the mount, e.g. `gbo`.
    pub prefix: String,
    /// KV mount name without slashes, e.g. `gbo` or `secret`.
    pub mount: String,
    pub version: KvVersion,
    /// Path inside the mount that holds the namespace: `` for a `gbo` mount, `gbo` in `secret`.
    pub base: String,
}

impl KvLayout {
    /// The layout for a known mount: the namespace is the mount itself when the
    /// names match, otherwise the folder `<prefix>` inside it.
    pub fn for_mount(prefix: &str, mount: &str, version: KvVersion) -> KvLayout {
        let mount = mount.trim_matches('/').to_string();
        let base = if mount == prefix {
            String::new()
        } else {
            prefix.to_string()
        };
        KvLayout {
            prefix: prefix.to_string(),
            mount,
            version,
            base,
        }
    }

    /// Path inside the mount for a logical path (`gbo/llm` → `llm` or `gbo/llm`).
    pub fn mount_relative(&self, logical: &str) -> String {
        let below_prefix = logical
            .strip_prefix(self.prefix.as_str())
            .map(|rest| rest.trim_start_matches('/'))
            .unwrap_or(logical);
        match (self.base.is_empty(), below_prefix.is_empty()) {
            (true, _) => below_prefix.to_string(),
            (false, true) => self.base.clone(),
            (false, false) => format!("{}/{}", self.base, below_prefix),
        }
    }

    /// API path (after `/v1/`) that reads a secret.
    pub fn read_api_path(&self, logical: &str) -> String {
        let relative = self.mount_relative(logical);
        match self.version {
            KvVersion::V1 => format!("{}/{}", self.mount, relative),
            KvVersion::V2 => format!("{}/data/{}", self.mount, relative),
        }
    }

    /// API path (after `/v1/`) that lists a folder; always ends with `/`.
    pub fn list_api_path(&self, logical: &str) -> String {
        let relative = self.mount_relative(logical);
        let folder = if relative.is_empty() {
            String::new()
        } else {
            format!("{relative}/")
        };
        match self.version {
            KvVersion::V1 => format!("{}/{}", self.mount, folder),
            KvVersion::V2 => format!("{}/metadata/{}", self.mount, folder),
        }
    }
}

impl fmt::Display for KvLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KV v{} mount `{}`", self.version, self.mount)?;
        if !self.base.is_empty() {
            write!(f, " at path `{}`", self.base)?;
        }
        Ok(())
    }
}

/// Operator overrides from `--kv-mount` and `--kv-version`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayoutOverrides {
    pub mount: Option<String>,
    pub version: Option<KvVersion>,
}

/// Reads the answer of `GET sys/internal/ui/mounts/<path>`: the KV mount holding
/// `<path>`, if the answer names one.
pub fn mount_from_ui_mounts(body: &Value) -> Option<(String, KvVersion)> {
    let data = body.get("data")?;
    let kind = data.get("type")?.as_str()?;
    if !is_kv_type(kind) {
        return None;
    }
    let path = data.get("path")?.as_str()?.trim_matches('/').to_string();
    if path.is_empty() {
        return None;
    }
    Some((path, KvVersion::from_mount_json(data)))
}

/// Reads the answer of `GET sys/mounts` and picks the mount for `prefix`:
/// a KV mount named after the prefix, else the KV mount `secret`.
pub fn mount_from_sys_mounts(body: &Value, prefix: &str) -> Option<(String, KvVersion)> {
    let kv_mount = |name: &str| match named_mount_in_sys_mounts(body, name) {
        NamedMount::Kv(version) => Some((name.to_string(), version)),
        NamedMount::NotKv(_) | NamedMount::Missing => None,
    };
    kv_mount(prefix).or_else(|| kv_mount("secret"))
}

/// What `sys/mounts` says about one mount name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamedMount {
    /// A KV secrets engine of this version.
    Kv(KvVersion),
    /// Another kind of mount (its `type`, e.g. `pki`).
    NotKv(String),
    /// Nothing is mounted at that name.
    Missing,
}

/// Looks `name` (without slashes) up in the answer of `GET sys/mounts`.
pub fn named_mount_in_sys_mounts(body: &Value, name: &str) -> NamedMount {
    let table = body.get("data").filter(|d| d.is_object()).unwrap_or(body);
    let Some(mount) = table.get(format!("{}/", name.trim_matches('/'))) else {
        return NamedMount::Missing;
    };
    match mount.get("type").and_then(Value::as_str) {
        Some(kind) if is_kv_type(kind) => NamedMount::Kv(KvVersion::from_mount_json(mount)),
        kind => NamedMount::NotKv(kind.unwrap_or("unknown").to_string()),
    }
}

fn is_kv_type(kind: &str) -> bool {
    kind == "kv" || kind == "generic"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documented_gbo_mount_maps_paths_below_the_mount() {
        let layout = KvLayout::for_mount("gbo", "gbo", KvVersion::V2);
        assert_eq!(layout.read_api_path("gbo/llm"), "gbo/data/llm");
        assert_eq!(layout.list_api_path("gbo"), "gbo/metadata/");
        assert_eq!(layout.list_api_path("gbo/bots"), "gbo/metadata/bots/");
        let v1 = KvLayout::for_mount("gbo", "gbo", KvVersion::V1);
        assert_eq!(v1.read_api_path("gbo/llm"), "gbo/llm");
        assert_eq!(v1.list_api_path("gbo"), "gbo/");
    }

    #[test]
    fn botserver_secret_mount_keeps_the_prefix_as_a_folder() {
        let layout = KvLayout::for_mount("gbo", "secret", KvVersion::V2);
        assert_eq!(layout.read_api_path("gbo/llm"), "secret/data/gbo/llm");
        assert_eq!(layout.list_api_path("gbo"), "secret/metadata/gbo/");
        assert_eq!(layout.list_api_path("gbo/a/b"), "secret/metadata/gbo/a/b/");
    }

    #[test]
    fn ui_mounts_answer_names_mount_and_version() {
        let body = json!({"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}});
        assert_eq!(
            mount_from_ui_mounts(&body),
            Some(("secret".into(), KvVersion::V2))
        );
        let v1 = json!({"data": {"path": "gbo/", "type": "kv", "options": null}});
        assert_eq!(
            mount_from_ui_mounts(&v1),
            Some(("gbo".into(), KvVersion::V1))
        );
        let not_kv = json!({"data": {"path": "pki/", "type": "pki"}});
        assert_eq!(mount_from_ui_mounts(&not_kv), None);
    }

    #[test]
    fn sys_mounts_prefers_a_mount_named_after_the_prefix_then_secret() {
        let both = json!({"data": {
            "secret/": {"type": "kv", "options": {"version": "2"}},
            "gbo/": {"type": "kv", "options": {"version": "1"}},
        }});
        assert_eq!(
            mount_from_sys_mounts(&both, "gbo"),
            Some(("gbo".into(), KvVersion::V1))
        );
        let only_secret = json!({"secret/": {"type": "kv", "options": {"version": "2"}}, "sys/": {"type": "system"}});
        assert_eq!(
            mount_from_sys_mounts(&only_secret, "gbo"),
            Some(("secret".into(), KvVersion::V2))
        );
        assert_eq!(mount_from_sys_mounts(&json!({"data": {}}), "gbo"), None);
    }

    #[test]
    fn sys_mounts_tells_a_missing_mount_from_one_that_is_not_kv() {
        let mounts = json!({"data": {
            "secret/": {"type": "kv", "options": {"version": "2"}},
            "pki/": {"type": "pki"},
        }});
        assert_eq!(
            named_mount_in_sys_mounts(&mounts, "secret/"),
            NamedMount::Kv(KvVersion::V2)
        );
        assert_eq!(
            named_mount_in_sys_mounts(&mounts, "pki"),
            NamedMount::NotKv("pki".into())
        );
        assert_eq!(
            named_mount_in_sys_mounts(&mounts, "nosuch"),
            NamedMount::Missing
        );
    }

    #[test]
    fn kv_version_parses_cli_forms() {
        assert_eq!(KvVersion::parse("2"), Some(KvVersion::V2));
        assert_eq!(KvVersion::parse("v1"), Some(KvVersion::V1));
        assert_eq!(KvVersion::parse("3"), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::vault::http::encode_path;
    use proptest::prelude::*;

    proptest! {
        /// Every logical path below the prefix maps inside the mount and keeps its tail.
        #[test]
        fn logical_paths_map_inside_the_mount(tail in "[a-zA-Z0-9 _.?#%-]{1,20}(/[a-zA-Z0-9 _.-]{1,20}){0,5}") {
            for layout in [
                KvLayout::for_mount("gbo", "gbo", KvVersion::V1),
                KvLayout::for_mount("gbo", "gbo", KvVersion::V2),
                KvLayout::for_mount("gbo", "secret", KvVersion::V2),
            ] {
                let logical = format!("gbo/{tail}");
                let read = layout.read_api_path(&logical);
                let mount_prefix = format!("{}/", layout.mount);
                prop_assert!(read.starts_with(&mount_prefix));
                prop_assert!(read.ends_with(&tail));
                let list = layout.list_api_path(&logical);
                let folder = format!("{}/", tail);
                prop_assert!(list.ends_with(&folder));
                // Encoding never lets a segment escape: no raw `?`, `#` or `%` remain
                // outside escapes, and the number of segments is unchanged.
                let encoded = encode_path(&read);
                prop_assert!(!encoded.contains('?') && !encoded.contains('#'));
                prop_assert_eq!(encoded.split('/').count(), read.split('/').count());
            }
        }

        /// File-name validity matches the kernel's rules.
        #[test]
        fn valid_file_names_follow_the_kernel_rules(name in "(?s).{0,300}") {
            let valid = crate::fs::is_valid_file_name(&name);
            let expected = !name.is_empty() && name != "." && name != ".."
                && !name.contains('/') && !name.contains('\0') && name.len() <= 255;
            prop_assert_eq!(valid, expected);
        }
    }
}
