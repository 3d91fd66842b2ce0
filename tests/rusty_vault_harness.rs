//! Integration tests of the RustyVault (`rvault`) harness in `gbo_fs::testing::rusty_vault`:
//! init + unseal, KV v1 put/get/list, seal, and restart coming back sealed.
//!
//! Skipped (with a line on stderr) when no `rvault` binary is found, unless
//! `GBO_FS_REQUIRE_RVAULT=1`, in which case a missing binary fails the test.

use std::time::{Duration, Instant};

use gbo_fs::testing::rusty_vault::RustyVault;
use serde_json::json;

/// Returns `None` (after printing a skip line) when rvault is absent and not required.
fn start_or_skip(test: &str) -> Option<RustyVault> {
    if RustyVault::binary().is_none() {
        if std::env::var("GBO_FS_REQUIRE_RVAULT").as_deref() == Ok("1") {
            panic!(
                "{test}: GBO_FS_REQUIRE_RVAULT=1 but no rvault binary was found \
                 ($RVAULT_BIN, PATH, ~/.cargo/bin/rvault); run scripts/rustyvault.sh \
                 or `cargo install rusty_vault --version 0.2.1 --locked`"
            );
        }
        eprintln!("SKIP {test}: rvault not found (set RVAULT_BIN or install rusty_vault 0.2.1)");
        return None;
    }
    Some(RustyVault::start().unwrap_or_else(|e| panic!("{test}: starting rvault failed: {e}")))
}

#[test]
fn init_and_unseal_work() {
    let t0 = Instant::now();
    let Some(rv) = start_or_skip("init_and_unseal_work") else {
        return;
    };
    assert!(rv.addr().starts_with("http://127.0.0.1:"), "{}", rv.addr());
    assert_eq!(
        rv.is_sealed(),
        Some(false),
        "start() must leave rvault unsealed"
    );

    let keys = rv.unseal_keys();
    assert_eq!(keys.len(), 5);
    assert!(keys
        .iter()
        .all(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_hexdigit())));
    assert!(!rv.root_token().is_empty());

    // The root token is accepted, a wrong one is not.
    let me = rv
        .request("GET", "auth/token/lookup-self", None, true)
        .unwrap();
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json().unwrap()["data"]["policies"], json!(["root"]));
    let wrong = rv
        .request_as("GET", "auth/token/lookup-self", None, Some("not-a-token"))
        .unwrap();
    assert_eq!(wrong.status, 403);

    // The `gbo` KV v1 mount exists.
    let mounts = rv.request("GET", "sys/mounts", None, true).unwrap();
    assert_eq!(mounts.status, 200);
    assert_eq!(mounts.json().unwrap()["gbo/"]["type"], "kv");

    // Debug output never shows the secrets.
    let dbg = format!("{rv:?}");
    assert!(!dbg.contains(&rv.root_token()) && !keys.iter().any(|k| dbg.contains(k.as_str())));
    assert!(t0.elapsed() < Duration::from_secs(60));
}

#[test]
fn kv_v1_put_get_list_roundtrip() {
    let Some(rv) = start_or_skip("kv_v1_put_get_list_roundtrip") else {
        return;
    };
    rv.put("gbo/llm", &json!({"openai_key": "sk-1", "n": 5, "b": true}));
    rv.put("gbo/bots/a", &json!({"k": "1"}));
    rv.put("gbo/bots/deep/c", &json!({"k": "3"}));
    rv.put("gbo/sp ace", &json!({"k": "v"}));

    // JSON types survive the roundtrip.
    assert_eq!(
        rv.get("gbo/llm"),
        Some(json!({"openai_key": "sk-1", "n": 5, "b": true}))
    );
    assert_eq!(rv.get("gbo/sp ace"), Some(json!({"k": "v"})));
    assert_eq!(rv.get("gbo/missing"), None);

    // The raw KV v1 envelope (no request_id in rvault 0.2.1).
    let raw = rv
        .request("GET", "gbo/llm", None, true)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(raw["lease_id"], "");
    assert_eq!(raw["renewable"], false);
    assert!(raw["lease_duration"].is_u64());

    let mut top = rv.list("gbo/").unwrap();
    top.sort();
    assert_eq!(top, vec!["bots/", "llm", "sp ace"]);
    assert_eq!(rv.list("gbo/bots/").unwrap(), vec!["a", "deep/"]);
    assert_eq!(rv.list("gbo/nothing/").unwrap(), Vec::<String>::new());

    // Overwrite replaces the whole secret; delete removes it.
    rv.put("gbo/llm", &json!({"anthropic_key": "sk-2"}));
    assert_eq!(rv.get("gbo/llm"), Some(json!({"anthropic_key": "sk-2"})));
    rv.delete("gbo/llm");
    assert_eq!(rv.get("gbo/llm"), None);
}

#[test]
fn restart_comes_back_sealed_and_unseals_with_three_keys() {
    let Some(mut rv) = start_or_skip("restart_comes_back_sealed_and_unseals_with_three_keys")
    else {
        return;
    };
    rv.put("gbo/tables", &json!({"host": "db", "port": 5432}));
    let addr = rv.addr();
    let dir = rv.dir().to_path_buf();

    // Sealing works and blocks reads with 503.
    rv.seal();
    assert_eq!(rv.is_sealed(), Some(true));
    assert_eq!(
        rv.request("GET", "gbo/tables", None, true).unwrap().status,
        503
    );
    let keys = rv.unseal_keys();
    assert!(rv.unseal_with(&keys[..3]).unwrap());

    rv.restart().expect("restart");
    assert_eq!(rv.addr(), addr, "restart keeps the port");
    assert_eq!(
        rv.is_sealed(),
        Some(true),
        "a restarted rvault comes back sealed"
    );
    assert_eq!(
        rv.request("GET", "gbo/tables", None, true).unwrap().status,
        503
    );

    // Two keys are not enough, a third (different subset) unseals; a repeated key does not count.
    assert!(!rv
        .unseal_with(&[keys[4].clone(), keys[4].clone(), keys[2].clone()])
        .unwrap());
    assert_eq!(rv.is_sealed(), Some(true));
    assert!(rv.unseal_with(&[keys[0].clone()]).unwrap());
    assert_eq!(
        rv.get("gbo/tables"),
        Some(json!({"host": "db", "port": 5432}))
    );

    // kill + Drop clean up the process and the temp dir.
    rv.kill();
    assert!(!rv.is_running());
    assert!(rv.request("GET", "sys/seal-status", None, false).is_err());
    drop(rv);
    assert!(!dir.exists(), "temp dir must be removed on drop");
}
