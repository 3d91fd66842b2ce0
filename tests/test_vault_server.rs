//! Integration tests for `gbo_fs::testing::vault_server`: the Vault-API test server must answer
//! like Vault's documented KV v1/v2, token, seal and mount-discovery endpoints, inject faults,
//! record requests, reuse keep-alive connections and stop promptly.

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gbo_fs::testing::vault_server::{
    Fault, KvVersion, RecordedRequest, TestAppRole, TestVaultConfig, TestVaultServer,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

/// Upper bound for any single test body.
const TEST_DEADLINE: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(fut: F) -> F::Output {
    match tokio::time::timeout(TEST_DEADLINE, fut).await {
        Ok(out) => out,
        Err(_) => panic!("test exceeded {TEST_DEADLINE:?}"),
    }
}

fn client() -> Client {
    client_with_timeout(Duration::from_secs(5))
}

fn client_with_timeout(timeout: Duration) -> Client {
    Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("build reqwest client")
}

fn start(config: TestVaultConfig) -> TestVaultServer {
    TestVaultServer::start(config).expect("start test vault server")
}

fn list_method() -> Method {
    Method::from_bytes(b"LIST").expect("LIST is a valid method token")
}

/// Sends a request with the server's token and returns (status, content-type, body text).
async fn send(
    c: &Client,
    srv: &TestVaultServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String, String) {
    let mut req = c
        .request(method, format!("{}/v1/{path}", srv.addr()))
        .header("X-Vault-Token", srv.token());
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.expect("body");
    (status, content_type, text)
}

async fn get_json(c: &Client, srv: &TestVaultServer, path: &str) -> (StatusCode, Value) {
    json_of(send(c, srv, Method::GET, path, None).await)
}

fn json_of((status, content_type, text): (StatusCode, String, String)) -> (StatusCode, Value) {
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?} for {status}: {text}"
    );
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}) for {status}: {text}"));
    (status, value)
}

// ---------------------------------------------------------------------------------------------
// KV v2 / KV v1 reads and writes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn kv2_read_has_vault_shape_and_put_bumps_version() {
    bounded(async {
        let srv = start(TestVaultConfig::kv2_secret_mount());
        let c = client();
        srv.put_str("secret", "gbo/llm", &[("api_key", "k1")]);
        let (status, v) = get_json(&c, &srv, "secret/data/gbo/llm").await;
        assert_eq!(status, StatusCode::OK);
        for key in [
            "request_id",
            "lease_id",
            "renewable",
            "lease_duration",
            "wrap_info",
            "warnings",
            "auth",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["lease_id"], "");
        assert_eq!(v["renewable"], false);
        assert_eq!(v["lease_duration"], 0);
        assert_eq!(v["data"]["data"], json!({"api_key": "k1"}));
        let meta = &v["data"]["metadata"];
        assert_eq!(meta["version"], 1);
        assert_eq!(meta["deletion_time"], "");
        assert_eq!(meta["destroyed"], false);
        assert!(meta["custom_metadata"].is_null());
        let created = meta["created_time"].as_str().expect("created_time string");
        assert!(
            created.len() == 30 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
            "created_time {created:?} is not RFC 3339 with nanoseconds"
        );

        let mut data = serde_json::Map::new();
        data.insert("api_key".into(), json!("k2"));
        data.insert("n".into(), json!(7));
        srv.put_secret("secret", "gbo/llm", data);
        let (_, v) = get_json(&c, &srv, "secret/data/gbo/llm").await;
        assert_eq!(v["data"]["data"], json!({"api_key": "k2", "n": 7}));
        assert_eq!(v["data"]["metadata"]["version"], 2);
        assert_eq!(srv.secret_version("secret", "gbo/llm"), Some(2));

        // Older versions stay readable with ?version=N.
        let (status, v) = get_json(&c, &srv, "secret/data/gbo/llm?version=1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["data"]["api_key"], "k1");

        let (status, v) = get_json(&c, &srv, "secret/metadata/gbo/llm").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["current_version"], 2);
        assert!(v["data"]["versions"]["1"].is_object());
        assert!(v["data"]["versions"]["2"].is_object());
        srv.stop();
    })
    .await;
}

#[tokio::test]
async fn kv2_missing_secret_is_404_with_empty_errors() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        let (status, v) = get_json(&c, &srv, "secret/data/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v, json!({"errors": []}));
        let (status, v) = get_json(&c, &srv, "secret/metadata/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v, json!({"errors": []}));
    })
    .await;
}

#[tokio::test]
async fn kv2_http_write_honours_cas() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        let write = |cas: Option<u64>, val: &str| {
            let mut body = json!({"data": {"k": val}});
            if let Some(cas) = cas {
                body["options"] = json!({"cas": cas});
            }
            body
        };
        // cas 0: must not exist yet.
        let (status, v) = json_of(
            send(
                &c,
                &srv,
                Method::POST,
                "secret/data/app",
                Some(write(Some(0), "a")),
            )
            .await,
        );
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["data"]["version"], 1);
        let (status, v) = json_of(
            send(
                &c,
                &srv,
                Method::PUT,
                "secret/data/app",
                Some(write(Some(0), "b")),
            )
            .await,
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            v,
            json!({"errors": ["check-and-set parameter did not match the current version"]})
        );
        // Stale cas is rejected, current cas is accepted.
        let (status, _) = json_of(
            send(
                &c,
                &srv,
                Method::PUT,
                "secret/data/app",
                Some(write(Some(5), "b")),
            )
            .await,
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, v) = json_of(
            send(
                &c,
                &srv,
                Method::PUT,
                "secret/data/app",
                Some(write(Some(1), "b")),
            )
            .await,
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["version"], 2);
        // No cas: unconditional write.
        let (status, v) = json_of(
            send(
                &c,
                &srv,
                Method::POST,
                "secret/data/app",
                Some(write(None, "c")),
            )
            .await,
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["version"], 3);
        let (_, v) = get_json(&c, &srv, "secret/data/app").await;
        assert_eq!(v["data"]["data"], json!({"k": "c"}));
        // A body without "data" is rejected.
        let (status, _) = json_of(
            send(
                &c,
                &srv,
                Method::POST,
                "secret/data/app",
                Some(json!({"k": "v"})),
            )
            .await,
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Malformed JSON is rejected without killing the server.
        let resp = c
            .post(format!("{}/v1/secret/data/app", srv.addr()))
            .header("X-Vault-Token", srv.token())
            .body("{not json")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn kv2_delete_soft_deletes_and_delete_secret_removes() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "a", &[("k", "v")]);
        let (status, _, _) = send(&c, &srv, Method::DELETE, "secret/data/a", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, v) = get_json(&c, &srv, "secret/data/a").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(v["data"]["metadata"]["deletion_time"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));

        srv.put_str("secret", "b", &[("k", "v")]);
        srv.delete_secret("secret", "b");
        let (status, v) = get_json(&c, &srv, "secret/data/b").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v, json!({"errors": []}));
        assert_eq!(srv.secret_version("secret", "b"), None);
    })
    .await;
}

#[tokio::test]
async fn kv1_read_has_vault_shape_and_http_write_replaces() {
    bounded(async {
        let srv = start(TestVaultConfig::gbo_mount(KvVersion::V1));
        let c = client();
        srv.put_str("gbo", "llm", &[("api_key", "k1")]);
        let (status, v) = get_json(&c, &srv, "gbo/llm").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"], json!({"api_key": "k1"}));
        assert_eq!(v["lease_duration"], 2_764_800);
        assert_eq!(v["lease_id"], "");
        assert_eq!(v["renewable"], false);
        assert!(v["request_id"].is_string());
        assert!(v["wrap_info"].is_null() && v["warnings"].is_null() && v["auth"].is_null());

        let (status, _, text) = send(
            &c,
            &srv,
            Method::PUT,
            "gbo/llm",
            Some(json!({"api_key": "k2"})),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(text.is_empty());
        let (_, v) = get_json(&c, &srv, "gbo/llm").await;
        assert_eq!(v["data"], json!({"api_key": "k2"}));

        let (status, v) = get_json(&c, &srv, "gbo/missing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v, json!({"errors": []}));
        // KV v2 routes do not exist on a v1 mount: "data/llm" is just a missing secret.
        let (status, _) = get_json(&c, &srv, "gbo/data/llm").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn percent_encoded_paths_are_decoded() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "gbo/my key", &[("k", "v")]);
        let (status, v) = get_json(&c, &srv, "secret/data/gbo/my%20key").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["data"]["k"], "v");
        assert_eq!(srv.count("GET", "secret/data/gbo/my key"), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// LIST
// ---------------------------------------------------------------------------------------------

fn seed_tree(srv: &TestVaultServer, mount: &str) {
    for path in [
        "gbo/llm",
        "gbo/db",
        "gbo/bots/a",
        "gbo/bots/b",
        "gbo/bots/deep/c",
        "other",
    ] {
        srv.put_str(mount, path, &[("k", "v")]);
    }
}

#[tokio::test]
async fn kv2_list_returns_sorted_immediate_children_with_folders_once() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        seed_tree(&srv, "secret");
        for path in ["secret/metadata/gbo", "secret/metadata/gbo/"] {
            let (status, v) = json_of(send(&c, &srv, list_method(), path, None).await);
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                v["data"]["keys"],
                json!(["bots/", "db", "llm"]),
                "LIST {path}"
            );
        }
        // GET ?list=true is the same operation.
        let (status, v) = get_json(&c, &srv, "secret/metadata/gbo/bots?list=true").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["keys"], json!(["a", "b", "deep/"]));
        // Mount root.
        let (_, v) = json_of(send(&c, &srv, list_method(), "secret/metadata/", None).await);
        assert_eq!(v["data"]["keys"], json!(["gbo/", "other"]));
    })
    .await;
}

#[tokio::test]
async fn list_of_empty_or_missing_folder_is_404() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        let (status, v) =
            json_of(send(&c, &srv, list_method(), "secret/metadata/gbo/", None).await);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v, json!({"errors": []}));
        seed_tree(&srv, "secret");
        // A secret is not a folder.
        let (status, _) =
            json_of(send(&c, &srv, list_method(), "secret/metadata/gbo/llm/", None).await);
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A deleted subtree lists as empty.
        for p in ["gbo/bots/a", "gbo/bots/b", "gbo/bots/deep/c"] {
            srv.delete_secret("secret", p);
        }
        let (status, _) =
            json_of(send(&c, &srv, list_method(), "secret/metadata/gbo/bots", None).await);
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn kv1_list_returns_immediate_children() {
    bounded(async {
        let srv = start(TestVaultConfig::gbo_mount(KvVersion::V1));
        let c = client();
        seed_tree(&srv, "gbo");
        let (status, v) = json_of(send(&c, &srv, list_method(), "gbo/gbo/", None).await);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["keys"], json!(["bots/", "db", "llm"]));
        let (status, v) = get_json(&c, &srv, "gbo?list=true").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["keys"], json!(["gbo/", "other"]));
        let (status, _) = json_of(send(&c, &srv, list_method(), "gbo/nothing", None).await);
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Mount discovery
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ui_mounts_reports_kv2_for_secret_layout() {
    bounded(async {
        let srv = start(TestVaultConfig::kv2_secret_mount());
        let c = client();
        let (status, v) = get_json(&c, &srv, "sys/internal/ui/mounts/secret/gbo/llm").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["path"], "secret/");
        assert_eq!(v["data"]["type"], "kv");
        assert_eq!(v["data"]["options"], json!({"version": "2"}));
        assert_eq!(v["data"]["description"], "");
        // The mount itself, with and without trailing slash.
        let (status, v) = get_json(&c, &srv, "sys/internal/ui/mounts/secret/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["path"], "secret/");
    })
    .await;
}

#[tokio::test]
async fn ui_mounts_reports_v1_for_gbo_layout_and_picks_longest_prefix() {
    bounded(async {
        let srv = start(TestVaultConfig::gbo_mount(KvVersion::V1));
        let c = client();
        let (status, v) = get_json(&c, &srv, "sys/internal/ui/mounts/gbo/llm").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["path"], "gbo/");
        assert_eq!(v["data"]["options"]["version"], "1");
        drop(srv);

        let mut config = TestVaultConfig::gbo_mount(KvVersion::V1);
        config.mounts.push(("gbo2".into(), KvVersion::V2));
        let srv = start(config);
        let (_, v) = get_json(&c, &srv, "sys/internal/ui/mounts/gbo2/x").await;
        assert_eq!(v["data"]["path"], "gbo2/");
        assert_eq!(v["data"]["options"]["version"], "2");
        let (_, v) = get_json(&c, &srv, "sys/internal/ui/mounts/gbo/x").await;
        assert_eq!(v["data"]["path"], "gbo/");
    })
    .await;
}

#[tokio::test]
async fn ui_mounts_unmatched_path_is_403_preflight_error() {
    bounded(async {
        let srv = start(TestVaultConfig::kv2_secret_mount());
        let c = client();
        let (status, v) = get_json(&c, &srv, "sys/internal/ui/mounts/gbo/llm").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            v,
            json!({"errors": ["preflight capability check returned 403, please ensure client's policies grant access to path \"gbo/llm/\""]})
        );
        // "secretx" must not match mount "secret".
        let (status, _) = get_json(&c, &srv, "sys/internal/ui/mounts/secretx/a").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test]
async fn disabled_mount_endpoints_answer_like_old_or_restricted_vault() {
    bounded(async {
        let srv = start(TestVaultConfig {
            ui_mounts_endpoint: false,
            sys_mounts_endpoint: false,
            ..TestVaultConfig::default()
        });
        let c = client();
        let (status, v) = get_json(&c, &srv, "sys/internal/ui/mounts/secret/a").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v, json!({"errors": []}));
        let (status, v) = get_json(&c, &srv, "sys/mounts").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(v, json!({"errors": ["permission denied"]}));
    })
    .await;
}

#[tokio::test]
async fn sys_mounts_lists_kv_and_builtin_mounts_in_data_and_top_level() {
    bounded(async {
        let mut config = TestVaultConfig::kv2_secret_mount();
        config.mounts.push(("legacy".into(), KvVersion::V1));
        let srv = start(config);
        let c = client();
        let (status, v) = get_json(&c, &srv, "sys/mounts").await;
        assert_eq!(status, StatusCode::OK);
        for root in [&v["data"], &v] {
            assert_eq!(root["secret/"]["type"], "kv");
            assert_eq!(root["secret/"]["options"]["version"], "2");
            assert_eq!(root["legacy/"]["options"]["version"], "1");
            assert_eq!(root["sys/"]["type"], "system");
            assert_eq!(root["cubbyhole/"]["type"], "cubbyhole");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Auth, token, deny, routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_or_wrong_token_is_403_but_sys_status_endpoints_are_open() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "a", &[("k", "v")]);
        let url = format!("{}/v1/secret/data/a", srv.addr());
        for token in [None, Some("wrong-token")] {
            let mut req = c.get(&url);
            if let Some(token) = token {
                req = req.header("X-Vault-Token", token);
            }
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status(), StatusCode::FORBIDDEN);
            let v: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
            assert_eq!(v, json!({"errors": ["permission denied"]}));
        }
        for path in ["sys/seal-status", "sys/health", "sys/init"] {
            let resp = c
                .get(format!("{}/v1/{path}", srv.addr()))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
        }
        // The namespace header is accepted and ignored.
        let resp = c
            .get(&url)
            .header("X-Vault-Token", srv.token())
            .header("X-Vault-Namespace", "team-a/")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn custom_token_is_the_only_accepted_one_and_lookup_self_echoes_it() {
    bounded(async {
        let srv = start(TestVaultConfig {
            token: "s.custom".into(),
            ..TestVaultConfig::default()
        });
        assert_eq!(srv.token(), "s.custom");
        let c = client();
        let (status, v) = get_json(&c, &srv, "auth/token/lookup-self").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["id"], "s.custom");
        assert_eq!(v["data"]["policies"], json!(["root"]));
        assert_eq!(v["data"]["ttl"], 0);
        assert_eq!(v["data"]["renewable"], false);
        assert!(v["data"]["expire_time"].is_null());
        assert_eq!(v["data"]["display_name"], "root");
        let resp = c
            .get(format!("{}/v1/auth/token/lookup-self", srv.addr()))
            .header("X-Vault-Token", "test-root-token")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test]
async fn deny_answers_policy_403_after_auth() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "gbo/private", &[("k", "v")]);
        srv.put_str("secret", "gbo/public", &[("k", "v")]);
        srv.deny("secret/data/gbo/private");
        let (status, v) = get_json(&c, &srv, "secret/data/gbo/private").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            v,
            json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]})
        );
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/public").await;
        assert_eq!(status, StatusCode::OK);
        // Without a valid token the auth error wins.
        let resp = c
            .get(format!("{}/v1/secret/data/gbo/private", srv.addr()))
            .send()
            .await
            .expect("request");
        let v: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
        assert_eq!(v, json!({"errors": ["permission denied"]}));
        srv.clear_denies();
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/private").await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn unknown_paths_are_404_no_handler() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        let (status, v) = get_json(&c, &srv, "nomount/thing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            v,
            json!({"errors": ["no handler for route \"nomount/thing\""]})
        );
        let (status, _) = get_json(&c, &srv, "secret/config/whatever").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let resp = c
            .get(format!("{}/not-v1", srv.addr()))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fault_status_replies_with_injected_status_and_errors_body() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "a", &[("k", "v")]);
        srv.set_fault(Fault::Status(502));
        let (status, v) = get_json(&c, &srv, "secret/data/a").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(v, json!({"errors": ["injected fault"]}));
        // Faults come before auth.
        let resp = c
            .get(format!("{}/v1/secret/data/a", srv.addr()))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        srv.set_fault(Fault::None);
        let (status, _) = get_json(&c, &srv, "secret/data/a").await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn fault_malformed_json_sends_truncated_json() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.set_fault(Fault::MalformedJson);
        let (status, content_type, text) = send(&c, &srv, Method::GET, "secret/data/a", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(text, "{\"data\": {");
        assert!(serde_json::from_str::<Value>(&text).is_err());
    })
    .await;
}

#[tokio::test]
async fn fault_html_sends_html_page() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.set_fault(Fault::Html);
        let (status, content_type, text) = send(&c, &srv, Method::GET, "secret/data/a", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(text.contains("<html>"));
    })
    .await;
}

#[tokio::test]
async fn fault_hang_never_answers_so_client_times_out() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client_with_timeout(Duration::from_secs(1));
        srv.set_fault(Fault::Hang);
        let started = Instant::now();
        let err = c
            .get(format!("{}/v1/secret/data/a", srv.addr()))
            .header("X-Vault-Token", srv.token())
            .send()
            .await
            .expect_err("a hung request must time out");
        assert!(err.is_timeout(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(srv.count("GET", "secret/data/a"), 1);
        srv.stop();
    })
    .await;
}

#[tokio::test]
async fn fault_delay_answers_normally_after_delay() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "a", &[("k", "v")]);
        srv.set_fault(Fault::Delay(Duration::from_millis(300)));
        let started = Instant::now();
        let (status, v) = get_json(&c, &srv, "secret/data/a").await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["data"]["k"], "v");
    })
    .await;
}

#[tokio::test]
async fn fault_huge_body_sends_valid_kv_response_of_requested_size() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        let size = 5 * 1024 * 1024;
        srv.set_fault(Fault::HugeBody(size));
        let (status, v) = get_json(&c, &srv, "secret/data/big").await;
        assert_eq!(status, StatusCode::OK);
        let obj = v["data"]["data"].as_object().expect("data.data object");
        assert_eq!(obj.len(), 1);
        assert_eq!(obj["value"].as_str().map(str::len), Some(size));
        assert!(v["data"]["metadata"]["version"].is_u64());

        let srv1 = start(TestVaultConfig::gbo_mount(KvVersion::V1));
        srv1.set_fault(Fault::HugeBody(10));
        let (status, v) = get_json(&c, &srv1, "gbo/big").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"], json!({"value": "xxxxxxxxxx"}));
    })
    .await;
}

#[tokio::test]
async fn fault_sealed_answers_503_vault_is_sealed() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.set_fault(Fault::Sealed);
        let (status, v) = get_json(&c, &srv, "secret/data/a").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v, json!({"errors": ["Vault is sealed"]}));
    })
    .await;
}

#[tokio::test]
async fn path_fault_applies_only_to_prefix_and_wins_over_global_fault() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "gbo/slow", &[("k", "v")]);
        srv.put_str("secret", "gbo/fast", &[("k", "v")]);
        srv.set_path_fault("secret/data/gbo/slow", Fault::Status(500));
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/slow").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/fast").await;
        assert_eq!(status, StatusCode::OK);

        srv.set_fault(Fault::Status(429));
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/slow").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/fast").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

        srv.clear_faults();
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/slow").await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Seal / unseal
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn seal_blocks_kv_and_reports_sealed_until_unsealed() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "a", &[("k", "v")]);
        let (_, v) = get_json(&c, &srv, "sys/seal-status").await;
        assert_eq!(
            v,
            json!({"type":"shamir","initialized":true,"sealed":false,"t":1,"n":1,"progress":0,
                   "version":"1.15.0-gbo-test","nonce":"","build_date":"2024-01-01T00:00:00Z",
                   "migration":false,"recovery_seal":false,"storage_type":"inmem"})
        );

        srv.seal();
        assert!(srv.is_sealed());
        let (status, v) = get_json(&c, &srv, "secret/data/a").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v, json!({"errors": ["Vault is sealed"]}));
        let (status, v) = get_json(&c, &srv, "sys/seal-status").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["sealed"], true);
        let (status, v) = get_json(&c, &srv, "sys/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["sealed"], true);

        srv.unseal();
        let (status, _) = get_json(&c, &srv, "secret/data/a").await;
        assert_eq!(status, StatusCode::OK);
        let (status, v) = get_json(&c, &srv, "sys/health").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["sealed"], false);
    })
    .await;
}

#[tokio::test]
async fn http_unseal_requires_the_test_unseal_key() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.seal();
        let (status, _) = json_of(
            send(
                &c,
                &srv,
                Method::PUT,
                "sys/unseal",
                Some(json!({"key": "nope"})),
            )
            .await,
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(srv.is_sealed());
        let (status, v) = json_of(
            send(
                &c,
                &srv,
                Method::PUT,
                "sys/unseal",
                Some(json!({"key": "test-unseal-key"})),
            )
            .await,
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["sealed"], false);
        assert_eq!(v["type"], "shamir");
        assert!(!srv.is_sealed());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Request recording
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_are_recorded_in_order_and_counted() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "gbo/llm", &[("k", "v")]);
        get_json(&c, &srv, "secret/data/gbo/llm").await;
        get_json(&c, &srv, "secret/data/gbo/llm").await;
        send(&c, &srv, list_method(), "secret/metadata/gbo/", None).await;
        get_json(&c, &srv, "secret/metadata/gbo?list=true").await;
        srv.set_fault(Fault::Status(500));
        get_json(&c, &srv, "secret/data/gbo/llm").await; // faulted requests are recorded too
        srv.clear_faults();

        assert_eq!(srv.total_requests(), 5);
        assert_eq!(srv.count("GET", "secret/data/gbo/llm"), 3);
        assert_eq!(srv.count("LIST", "secret/metadata/gbo"), 2);
        assert_eq!(srv.count("GET", "secret/metadata/gbo"), 0);
        assert_eq!(srv.count("POST", "secret/data/gbo/llm"), 0);
        let reqs = srv.requests();
        assert_eq!(
            reqs[2],
            RecordedRequest {
                method: "LIST".into(),
                path: "secret/metadata/gbo/".into(),
                list: true
            }
        );
        assert_eq!(
            reqs[3],
            RecordedRequest {
                method: "LIST".into(),
                path: "secret/metadata/gbo".into(),
                list: true
            }
        );
        assert_eq!(
            reqs[0],
            RecordedRequest {
                method: "GET".into(),
                path: "secret/data/gbo/llm".into(),
                list: false
            }
        );

        srv.reset_counts();
        assert_eq!(srv.total_requests(), 0);
        assert_eq!(srv.connections_accepted(), 0);
        get_json(&c, &srv, "secret/data/gbo/llm").await;
        assert_eq!(srv.count("GET", "secret/data/gbo/llm"), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Connections, keep-alive, lifecycle
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keep_alive_reuses_one_connection_for_sequential_requests() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        srv.put_str("secret", "a", &[("k", "v")]);
        for _ in 0..5 {
            let (status, _) = get_json(&c, &srv, "secret/data/a").await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(srv.total_requests(), 5);
        assert_eq!(srv.connections_accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn stop_closes_hung_connections_promptly_and_restart_on_same_port_works() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let port = srv.port();
        srv.set_fault(Fault::Hang);
        // A client without its own timeout: only the server closing the socket can end it.
        let c = client_with_timeout(Duration::from_secs(20));
        let url = format!("{}/v1/secret/data/a", srv.addr());
        let token = srv.token();
        let hung = tokio::spawn({
            let c = c.clone();
            async move { c.get(url).header("X-Vault-Token", token).send().await }
        });
        // Wait until the server has the request in hand.
        let deadline = Instant::now() + Duration::from_secs(5);
        while srv.total_requests() == 0 {
            assert!(
                Instant::now() < deadline,
                "request never reached the server"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        srv.stop();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "stop took {:?}",
            started.elapsed()
        );
        let result = tokio::time::timeout(Duration::from_secs(3), hung)
            .await
            .expect("hung request must end once the server stops")
            .expect("join");
        let err = result.expect_err("a stopped server cannot answer");
        assert!(
            !err.is_timeout(),
            "connection should be closed, not timed out: {err}"
        );

        let srv = start(TestVaultConfig {
            port,
            ..TestVaultConfig::default()
        });
        assert_eq!(srv.port(), port);
        srv.put_str("secret", "a", &[("k", "v")]);
        let (status, _) = get_json(&client(), &srv, "secret/data/a").await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
}

/// A plain `#[test]` without any runtime: the server brings its own, and speaks HTTP/1.1
/// keep-alive on the wire.
#[test]
fn works_from_sync_test_over_raw_http11_keep_alive() {
    let srv = start(TestVaultConfig::default());
    srv.put_str("secret", "a", &[("k", "v")]);
    let mut stream = TcpStream::connect(("127.0.0.1", srv.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    for _ in 0..2 {
        let request = format!(
            "GET /v1/secret/data/a HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: {}\r\n\r\n",
            srv.token()
        );
        stream.write_all(request.as_bytes()).expect("write");
        let response = read_one_response(&mut stream);
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        assert!(response.contains("\"data\":{\"k\":\"v\"}"), "{response}");
    }
    assert_eq!(srv.connections_accepted(), 1);
    drop(stream);
    srv.stop();
}

/// Reads one response with a content-length body from a keep-alive stream.
fn read_one_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length header");
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
            }
        }
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn start_on_a_busy_port_fails_with_io_error() {
    let srv = start(TestVaultConfig::default());
    let config = TestVaultConfig {
        port: srv.port(),
        ..TestVaultConfig::default()
    };
    let err = TestVaultServer::start(config).expect_err("port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

/// Sends `method path` with an explicit token (`None`: no token header).
async fn send_as(
    c: &Client,
    srv: &TestVaultServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = c.request(method, format!("{}/v1/{path}", srv.addr()));
    if let Some(token) = token {
        req = req.header("X-Vault-Token", token);
    }
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn renew_self_extends_a_renewable_token_and_counts_renewals() {
    bounded(async {
        let srv = start(TestVaultConfig {
            token_ttl: Some(Duration::from_secs(60)),
            token_renewable: true,
            ..TestVaultConfig::default()
        });
        let c = client();
        let (status, v) = get_json(&c, &srv, "auth/token/lookup-self").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["renewable"], true);
        assert_eq!(v["data"]["creation_ttl"], 60);
        assert!(v["data"]["ttl"].as_u64().unwrap() <= 60);
        assert!(v["data"]["expire_time"].is_string());
        let token = srv.token();
        let (status, v) = send_as(
            &c,
            &srv,
            Method::POST,
            "auth/token/renew-self",
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["auth"]["lease_duration"], 60);
        assert_eq!(v["auth"]["renewable"], true);
        assert_eq!(v["auth"]["client_token"], token.as_str());
        assert_eq!(srv.renewals(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_root_token_cannot_be_renewed() {
    bounded(async {
        let srv = start(TestVaultConfig::default());
        let c = client();
        let token = srv.token();
        let (status, _) = send_as(
            &c,
            &srv,
            Method::POST,
            "auth/token/renew-self",
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(srv.renewals(), 0);
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_gets_403() {
    bounded(async {
        let srv = start(TestVaultConfig {
            token_ttl: Some(Duration::from_millis(300)),
            ..TestVaultConfig::default()
        });
        srv.put_str("secret", "gbo/llm", &[("k", "v")]);
        let c = client();
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/llm").await;
        assert_eq!(status, StatusCode::OK);
        let deadline = Instant::now() + Duration::from_secs(5);
        while srv.accepts_token(&srv.token()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, _) = get_json(&c, &srv, "secret/data/gbo/llm").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test]
async fn approle_login_issues_tokens_the_server_accepts_until_they_expire() {
    bounded(async {
        let srv = start(TestVaultConfig {
            approle: Some(TestAppRole::new(
                "role-1",
                "secret-1",
                Duration::from_secs(30),
            )),
            ..TestVaultConfig::default()
        });
        srv.put_str("secret", "gbo/llm", &[("k", "v")]);
        let c = client();
        let login = json!({"role_id": "role-1", "secret_id": "secret-1"});
        let (status, v) = send_as(
            &c,
            &srv,
            Method::POST,
            "auth/approle/login",
            None,
            Some(login),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["auth"]["lease_duration"], 30);
        assert_eq!(v["auth"]["renewable"], true);
        let issued = v["auth"]["client_token"].as_str().unwrap().to_string();
        assert!(srv.accepts_token(&issued));
        assert_eq!(srv.approle_logins(), 1);
        let (status, v) = send_as(
            &c,
            &srv,
            Method::GET,
            "secret/data/gbo/llm",
            Some(&issued),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let (status, v) = send_as(
            &c,
            &srv,
            Method::GET,
            "auth/token/lookup-self",
            Some(&issued),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["data"]["path"], "auth/approle/login");

        srv.expire_all_tokens();
        let (status, _) = send_as(
            &c,
            &srv,
            Method::GET,
            "secret/data/gbo/llm",
            Some(&issued),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test]
async fn approle_login_refuses_wrong_credentials_and_obeys_the_seal() {
    bounded(async {
        let srv = start(TestVaultConfig {
            approle: Some(TestAppRole::new(
                "role-1",
                "secret-1",
                Duration::from_secs(30),
            )),
            ..TestVaultConfig::default()
        });
        let c = client();
        let wrong = json!({"role_id": "role-1", "secret_id": "nope"});
        let (status, _) = send_as(
            &c,
            &srv,
            Method::POST,
            "auth/approle/login",
            None,
            Some(wrong),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(srv.approle_logins(), 0);
        srv.seal();
        let right = json!({"role_id": "role-1", "secret_id": "secret-1"});
        let (status, _) = send_as(
            &c,
            &srv,
            Method::POST,
            "auth/approle/login",
            None,
            Some(right),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    })
    .await;
}
