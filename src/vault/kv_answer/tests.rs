use super::*;
use proptest::prelude::*;
use serde_json::json;

fn v2_answer(data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "request_id": "r",
        "data": {"data": data, "metadata": {"version": 3, "created_time": "2026-11-29T00:00:00Z"}},
    }))
    .unwrap()
}

fn text(bytes: &SecretBytes) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn v2_values_metadata_and_escapes_come_out_as_files_show_them() {
    let body = br#"{"data": {"data": {
        "pem": "-----BEGIN KEY-----\nabc\/def\n-----END KEY-----\n",
        "quote": "say \"hi\" \\ \t tab",
        "accents": "caf\u00e9 \ud83d\ude00",
        "port": 5432,
        "tls": true,
        "nothing": null,
        "pool": { "min" : 1 , "max": [2, 3], "name": "a b" }
    }, "metadata": {"version": 7, "created_time": "t"}}}"#;
    let secret = parse_v2(body, "secret/data/gbo/db").unwrap().unwrap();
    assert_eq!(
        text(&secret.values["pem"]),
        "-----BEGIN KEY-----\nabc/def\n-----END KEY-----\n"
    );
    assert_eq!(text(&secret.values["quote"]), "say \"hi\" \\ \t tab");
    assert_eq!(text(&secret.values["accents"]), "café 😀");
    assert_eq!(text(&secret.values["port"]), "5432");
    assert_eq!(text(&secret.values["tls"]), "true");
    assert_eq!(text(&secret.values["nothing"]), "null");
    assert_eq!(
        text(&secret.values["pool"]),
        r#"{"min":1,"max":[2,3],"name":"a b"}"#
    );
    assert_eq!(secret.version, Some(7));
    assert_eq!(secret.created_time.as_deref(), Some("t"));
}

#[test]
fn v2_deleted_version_is_not_found_and_a_missing_envelope_is_malformed() {
    let deleted = br#"{"data": {"data": null, "metadata": {"deletion_time": "x"}}}"#;
    assert!(parse_v2(deleted, "p").unwrap().is_none());
    let no_inner = br#"{"data": {"metadata": {}}}"#;
    assert!(parse_v2(no_inner, "p").unwrap().is_none());
    for body in [
        &br#"{"errors": []}"#[..],
        br#"{"data": "x"}"#,
        b"",
        b"<html>",
    ] {
        let error = parse_v2(body, "secret/data/gbo/llm").unwrap_err();
        assert!(matches!(error, StoreError::Malformed(_)), "{error:?}");
        assert!(error.to_string().contains("secret/data/gbo/llm"), "{error}");
    }
}

#[test]
fn v1_reads_data_and_rejects_an_answer_without_it() {
    let secret = parse_v1(br#"{"data": {"k": "v", "n": 1.5}}"#, "gbo/x").unwrap();
    assert_eq!(text(&secret.values["k"]), "v");
    assert_eq!(text(&secret.values["n"]), "1.5");
    assert_eq!(secret.version, None);
    assert!(matches!(
        parse_v1(br#"{"data": null}"#, "gbo/x"),
        Err(StoreError::Malformed(_))
    ));
}

#[test]
fn an_unreadable_value_is_malformed_and_the_error_never_quotes_it() {
    // A lone surrogate: valid to skip over, not a string anyone can show.
    let body = br#"{"data": {"data": {"k": "sk-live-very-secret\ud800"}}}"#;
    let error = parse_v2(body, "secret/data/gbo/llm").unwrap_err();
    let shown = error.to_string();
    assert!(matches!(error, StoreError::Malformed(_)), "{shown}");
    assert!(!shown.contains("sk-live"), "{shown}");
    let truncated = br#"{"data": {"data": {"k": "sk-live-very-secret"#;
    let shown = parse_v2(truncated, "p").unwrap_err().to_string();
    assert!(!shown.contains("sk-live"), "{shown}");
}

#[test]
fn append_zeroizing_keeps_every_byte_in_order() {
    let mut buffer = Zeroizing::new(Vec::with_capacity(1));
    let mut expected = Vec::new();
    for i in 0..200u8 {
        let chunk = vec![i; i as usize % 7 + 1];
        append_zeroizing(&mut buffer, &chunk);
        expected.extend_from_slice(&chunk);
    }
    assert_eq!(&buffer[..], &expected[..]);
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever Vault sends, a value reads back as what serde_json makes of it:
    /// strings verbatim, anything else the same JSON (compact, same meaning).
    #[test]
    fn values_read_back_as_serde_json_reads_them(
        values in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 1..5),
        pretty in any::<bool>(),
    ) {
        let data = serde_json::Value::Object(values.clone().into_iter().collect());
        let envelope = json!({"data": {"data": data}});
        let body = if pretty {
            serde_json::to_vec_pretty(&envelope).unwrap()
        } else {
            serde_json::to_vec(&envelope).unwrap()
        };
        let secret = parse_v2(&body, "p").unwrap().unwrap();
        prop_assert_eq!(secret.values.len(), values.len());
        for (key, value) in &values {
            let shown = &secret.values[key];
            match value {
                serde_json::Value::String(s) => prop_assert_eq!(&shown[..], s.as_bytes()),
                other => {
                    prop_assert!(!shown.contains(&b'\n'));
                    let reread: serde_json::Value = serde_json::from_slice(shown).unwrap();
                    prop_assert_eq!(&reread, other);
                }
            }
        }
    }

    /// Escapes of every kind, including `\u` escapes and surrogate pairs.
    #[test]
    fn unicode_escapes_decode_like_serde_json(text in any::<String>()) {
        let escaped: String = text
            .encode_utf16()
            .map(|unit| format!("\\u{unit:04x}"))
            .collect();
        let body = format!(r#"{{"data": {{"data": {{"k": "{escaped}"}}}}}}"#);
        let secret = parse_v2(body.as_bytes(), "p").unwrap().unwrap();
        prop_assert_eq!(&secret.values["k"][..], text.as_bytes());
    }
}

#[test]
fn values_of_the_test_server_answer_match_the_memory_store_rendering() {
    let data = json!({"a": "x y\n", "b": 5432, "c": {"z": [1, 2]}});
    let body = v2_answer(data.clone());
    let parsed = parse_v2(&body, "p").unwrap().unwrap();
    let expected = Secret::from_json_object(data.as_object().unwrap());
    assert_eq!(parsed.values, expected.values);
    assert_eq!(parsed.version, Some(3));
}
