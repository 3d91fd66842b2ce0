//! Owns `gbo-fs policy`: the least-privilege Vault policy (HCL) that lets gbo-fs
//! serve a KV layout, ready for `vault policy write gbo-readonly -`.
//!
//! The policy is a pure function of the [`KvLayout`]; the layout comes from
//! `--kv-mount` plus `--kv-version` (no Vault contact) or from detection.

use crate::cli::GlobalOptions;
use crate::vault::layout::{KvLayout, KvVersion};

/// The policy name the printed instructions use.
pub const POLICY_NAME: &str = "gbo-readonly";

/// The layout named by `--kv-mount` and `--kv-version` when both are given;
/// `Ok(None)` means detection is needed.
pub fn layout_from_flags(options: &GlobalOptions) -> Result<Option<KvLayout>, String> {
    let (Some(mount), Some(version)) = (&options.kv_mount, &options.kv_version) else {
        return Ok(None);
    };
    let version = KvVersion::parse(version)
        .ok_or_else(|| format!("--kv-version must be 1 or 2, not `{version}`"))?;
    let mount = mount.trim_matches('/');
    if mount.is_empty() {
        return Err("--kv-mount must name a mount, e.g. gbo or secret".into());
    }
    Ok(Some(KvLayout::for_mount(&options.prefix, mount, version)))
}

/// Joins path parts with `/`, skipping empty ones.
fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

fn rule(out: &mut String, comment: &[&str], path: &str, capabilities: &[&str]) {
    for line in comment {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    let capabilities = capabilities
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&format!(
        "path \"{path}\" {{\n  capabilities = [{capabilities}]\n}}\n\n"
    ));
}

/// The read-only policy for `layout`.
///
/// A trailing `*` in a Vault policy path is a prefix match that also matches the
/// empty string, so `gbo/*` covers the listing of `gbo/` itself (Vault adds the
/// trailing slash to every LIST); no separate rule for the folder is needed.
pub fn readonly_policy(layout: &KvLayout) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Read-only access for gbo-fs to `{}/` in the {layout}.\n\
         # Install: gbo-fs policy | vault policy write {POLICY_NAME} -\n\n",
        layout.prefix
    ));
    let mount = layout.mount.as_str();
    let base = layout.base.as_str();
    match layout.version {
        KvVersion::V1 => rule(
            &mut out,
            &["Secret values (read) and folder listings (list), the namespace folder included."],
            &format!("{}/*", join(&[mount, base])),
            &["read", "list"],
        ),
        KvVersion::V2 => {
            rule(
                &mut out,
                &["Secret values: KV v2 serves the latest version under data/."],
                &format!("{}/*", join(&[mount, "data", base])),
                &["read"],
            );
            rule(
                &mut out,
                &["Folder listings: KV v2 lists under metadata/ (the namespace folder included)."],
                &format!("{}/*", join(&[mount, "metadata", base])),
                &["list"],
            );
        }
    }
    rule(
        &mut out,
        &[
            "The token's own lookup and renewal. Vault's built-in `default` policy already",
            "grants both; they are repeated for tokens created with -no-default-policy.",
        ],
        "auth/token/lookup-self",
        &["read"],
    );
    rule(&mut out, &[], "auth/token/renew-self", &["update"]);
    out.push_str(
        "# Layout detection reads sys/internal/ui/mounts/<path>. No rule is granted for it:\n\
         # Vault answers it for any token holding a capability under the mount and documents\n\
         # that tokens should not be given it directly. The sys/mounts fallback is not granted\n\
         # either (it would reveal every mount); pass --kv-mount and --kv-version instead.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `path "..." { capabilities = [...] }` rules, without comments.
    fn rules(policy: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut lines = policy.lines();
        while let Some(line) = lines.next() {
            if let Some(path) = line
                .strip_prefix("path \"")
                .and_then(|r| r.strip_suffix("\" {"))
            {
                let caps = lines.next().unwrap().trim().to_string();
                found.push((path.to_string(), caps));
            }
        }
        found
    }

    fn caps(list: &str) -> String {
        format!("capabilities = [{list}]")
    }

    #[test]
    fn kv1_gbo_mount_grants_read_and_list_below_the_mount() {
        let policy = readonly_policy(&KvLayout::for_mount("gbo", "gbo", KvVersion::V1));
        assert_eq!(
            rules(&policy),
            [
                ("gbo/*".into(), caps("\"read\", \"list\"")),
                ("auth/token/lookup-self".into(), caps("\"read\"")),
                ("auth/token/renew-self".into(), caps("\"update\"")),
            ]
        );
        assert!(policy.contains("vault policy write gbo-readonly -"));
    }

    #[test]
    fn kv2_gbo_mount_grants_read_on_data_and_list_on_metadata() {
        let policy = readonly_policy(&KvLayout::for_mount("gbo", "gbo", KvVersion::V2));
        let found = rules(&policy);
        assert_eq!(found[0], ("gbo/data/*".into(), caps("\"read\"")));
        assert_eq!(found[1], ("gbo/metadata/*".into(), caps("\"list\"")));
        assert_eq!(found.len(), 4);
    }

    #[test]
    fn kv2_secret_mount_confines_the_rules_to_the_namespace_folder() {
        let policy = readonly_policy(&KvLayout::for_mount("gbo", "secret", KvVersion::V2));
        let found = rules(&policy);
        assert_eq!(found[0], ("secret/data/gbo/*".into(), caps("\"read\"")));
        assert_eq!(found[1], ("secret/metadata/gbo/*".into(), caps("\"list\"")));
        assert!(!policy.contains("\"secret/*\""));
    }

    #[test]
    fn kv1_folder_inside_another_mount_is_confined_too() {
        let policy = readonly_policy(&KvLayout::for_mount("gbo", "kv", KvVersion::V1));
        assert_eq!(rules(&policy)[0].0, "kv/gbo/*");
    }

    #[test]
    fn flags_give_a_layout_only_when_both_are_set() {
        let mut options = GlobalOptions {
            prefix: "gbo".into(),
            kv_mount: Some("secret/".into()),
            ..Default::default()
        };
        assert_eq!(layout_from_flags(&options), Ok(None));
        options.kv_version = Some("2".into());
        assert_eq!(
            layout_from_flags(&options),
            Ok(Some(KvLayout::for_mount("gbo", "secret", KvVersion::V2)))
        );
        options.kv_version = Some("3".into());
        assert!(layout_from_flags(&options).unwrap_err().contains("`3`"));
    }
}
