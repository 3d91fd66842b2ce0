//! Golden tests for `gbo_fs::config_csv` over the real botserver template
//! `config.csv` files: unchanged files render byte-for-byte, and references
//! inserted into them are replaced by exactly their values and nothing else.

use std::path::PathBuf;

use gbo_fs::config_csv::{find_references, referenced_paths, render, MissingReference, Resolution};
use zeroize::Zeroizing;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/bottemplates"
);

/// Secrets the test resolver knows: (path, key, value). Values hold commas,
/// spaces and quotes, which are inlined as-is.
const SECRETS: &[(&str, &str, &str)] = &[
    ("gbo/llm", "openai_key", "sk-test-0penAI,with,commas"),
    ("gbo/tables", "password", "p@ss word; \"quoted\""),
];
/// References `vault:gbo/fixture/<rest>` resolve to `secret-<rest>`.
const FIXTURE_PATH: &str = "gbo/fixture";

fn resolve(path: &str, key: &str) -> Resolution {
    let value = match SECRETS.iter().find(|(p, k, _)| (*p, *k) == (path, key)) {
        Some((_, _, value)) => value.to_string(),
        None => match format!("{path}/{key}").strip_prefix(&format!("{FIXTURE_PATH}/")) {
            Some(rest) => format!("secret-{rest}"),
            None => return Resolution::Missing("no such key".into()),
        },
    };
    Resolution::Value(Zeroizing::new(value.into_bytes()))
}

/// The value a token must render to, computed from the token text alone.
fn expected_value(token: &str) -> Option<String> {
    if let Some((_, _, value)) = SECRETS
        .iter()
        .find(|(path, key, _)| token == format!("vault:{path}/{key}"))
    {
        return Some(value.to_string());
    }
    token
        .strip_prefix(&format!("vault:{FIXTURE_PATH}/"))
        .map(|key| format!("secret-{key}"))
}

fn never(_: &str, _: &str) -> Resolution {
    panic!("resolve must not be called for a file without references")
}

/// Every `*.gbai/*.gbot/config.csv` fixture, sorted: (name, bytes).
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for gbai in std::fs::read_dir(FIXTURES).expect("fixtures directory") {
        let gbai = gbai.unwrap().path();
        if !gbai.is_dir() || gbai.extension().is_none_or(|ext| ext != "gbai") {
            continue;
        }
        for gbot in std::fs::read_dir(&gbai).unwrap() {
            let gbot = gbot.unwrap().path();
            if !gbot.is_dir() || gbot.extension().is_none_or(|ext| ext != "gbot") {
                continue;
            }
            let config: PathBuf = gbot.join("config.csv");
            if config.is_file() {
                let name = config.strip_prefix(FIXTURES).unwrap().display().to_string();
                found.push((name, std::fs::read(&config).unwrap()));
            }
        }
    }
    found.sort();
    assert_eq!(found.len(), 16, "fixtures: {:?}", names(&found));
    found
}

fn names(fixtures: &[(String, Vec<u8>)]) -> Vec<&str> {
    fixtures.iter().map(|(name, _)| name.as_str()).collect()
}

/// A document built from literal text and reference tokens, so that the
/// source and the expected rendering are both constructed directly.
#[derive(Clone, Default)]
struct Doc(Vec<Piece>);

#[derive(Clone)]
enum Piece {
    Text(Vec<u8>),
    Ref(String),
}

impl Doc {
    fn text(mut self, text: impl AsRef<[u8]>) -> Self {
        self.0.push(Piece::Text(text.as_ref().to_vec()));
        self
    }

    fn reference(mut self, token: &str) -> Self {
        self.0.push(Piece::Ref(token.to_owned()));
        self
    }

    fn append(mut self, other: Doc) -> Self {
        self.0.extend(other.0);
        self
    }

    fn source(&self) -> Vec<u8> {
        self.render_with(|token| token.as_bytes().to_vec())
    }

    fn expected(&self, mode: MissingReference) -> Vec<u8> {
        self.render_with(|token| match (expected_value(token), mode) {
            (Some(value), _) => value.into_bytes(),
            (None, MissingReference::Empty) => Vec::new(),
            (None, _) => token.as_bytes().to_vec(),
        })
    }

    fn render_with(&self, mut token: impl FnMut(&str) -> Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text),
                Piece::Ref(t) => out.extend(token(t)),
            }
        }
        out
    }

    fn tokens(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|piece| match piece {
                Piece::Ref(token) => Some(token.as_str()),
                Piece::Text(_) => None,
            })
            .collect()
    }

    /// The same document with every `\n` in its text turned into `\r\n`.
    fn crlf(&self) -> Doc {
        Doc(self
            .0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => Piece::Text(replace(text, b"\n", b"\r\n")),
                other => other.clone(),
            })
            .collect())
    }
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Lines with references to add to a fixture (each ends with `\n`).
fn reference_lines() -> Doc {
    Doc::default()
        .text("llm-api-key,")
        .reference("vault:gbo/llm/openai_key")
        .text("\n")
        .text(" spaced , ")
        .reference("vault:gbo/llm/openai_key")
        .text("  \n")
        .text("key with spaces,")
        .reference("vault:gbo/tables/password")
        .text("\n")
        .text("# llm-api-key,vault:gbo/llm/commented\n")
        .text(",\n")
        .text("\n")
        .text("values,with,vault:gbo/llm/openai_key\n")
        .text("deep,\t")
        .reference("vault:gbo/fixture/bots/my/key")
        .text("\t\n")
}

/// `source` split after its first line: (first line with its `\n`, rest).
fn split_header(source: &[u8]) -> (&[u8], &[u8]) {
    let end = source
        .iter()
        .position(|&b| b == b'\n')
        .map_or(source.len(), |at| at + 1);
    source.split_at(end)
}

/// The fixture with the reference lines appended; the last one without a final
/// newline when the fixture has none.
fn appended(source: &[u8]) -> Doc {
    let final_newline = source.ends_with(b"\n");
    let doc = Doc::default().text(source);
    let doc = if final_newline || source.is_empty() {
        doc
    } else {
        doc.text("\n")
    };
    let doc = doc
        .append(reference_lines())
        .text("last,")
        .reference("vault:gbo/tables/password");
    if final_newline {
        doc.text("\n")
    } else {
        doc
    }
}

/// The fixture with the reference lines inserted after its header.
fn inserted_after_header(source: &[u8]) -> Doc {
    let (header, rest) = split_header(source);
    Doc::default()
        .text(header)
        .append(reference_lines())
        .text(rest)
}

/// The fixture with every setting's value (after the header; not comments,
/// blank lines or `,` spacers) replaced by its own reference, keeping the
/// whitespace around the value and the line ending.
fn every_value_referenced(source: &[u8]) -> Doc {
    let mut doc = Doc::default();
    for (index, line) in source.split_inclusive(|&b| b == b'\n').enumerate() {
        let ending_len = if line.ends_with(b"\r\n") {
            2
        } else {
            usize::from(line.ends_with(b"\n"))
        };
        let (content, ending) = line.split_at(line.len() - ending_len);
        let trimmed = content.trim_ascii();
        let comma = content.iter().position(|&b| b == b',');
        let (Some(comma), false) = (comma, index == 0 || trimmed.starts_with(b"#")) else {
            doc = doc.text(line);
            continue;
        };
        if content[..comma].trim_ascii().is_empty() {
            doc = doc.text(line);
            continue;
        }
        let value = &content[comma + 1..];
        let lead = &value[..value.len() - value.trim_ascii_start().len()];
        let trail = &value[value.trim_ascii_end().len().max(lead.len())..];
        doc = doc
            .text(&content[..=comma])
            .text(lead)
            .reference(&format!("vault:{FIXTURE_PATH}/line{}", index + 1))
            .text(trail)
            .text(ending);
    }
    doc
}

/// `source` with its first line replaced by `key,value`.
fn key_value_header(source: &[u8]) -> Vec<u8> {
    let (header, rest) = split_header(source);
    let ending = if header.ends_with(b"\n") {
        &b"\n"[..]
    } else {
        b""
    };
    [&b"key,value"[..], ending, rest].concat()
}

fn assert_bytes_eq(context: &str, actual: &[u8], expected: &[u8]) {
    assert!(
        actual == expected,
        "{context}: rendered output differs\n--- actual\n{}\n--- expected\n{}",
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(expected),
    );
}

/// Renders `doc` in `mode` and checks output, references and unresolved list.
fn check(context: &str, doc: &Doc, mode: MissingReference) {
    let source = doc.source();
    let tokens = doc.tokens();

    let found: Vec<_> = find_references(&source)
        .into_iter()
        .map(|item| item.unwrap_or_else(|m| panic!("{context}: malformed {m:?}")))
        .collect();
    let found_tokens: Vec<&str> = found.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(found_tokens, tokens, "{context}: references found");
    for reference in &found {
        assert_eq!(
            &source[reference.span.clone()],
            reference.text.as_bytes(),
            "{context}"
        );
    }

    let rendered = render(&source, mode, &mut resolve);
    assert_bytes_eq(context, &rendered.bytes, &doc.expected(mode));
    let missing = tokens
        .iter()
        .filter(|t| expected_value(t).is_none())
        .count();
    assert_eq!(
        rendered.unresolved.len(),
        missing,
        "{context}: {:?}",
        rendered.unresolved
    );
    assert_eq!(rendered.is_complete(), missing == 0, "{context}");
}

#[test]
fn fixtures_cover_the_real_shapes() {
    let fixtures = fixtures();
    let any = |f: &dyn Fn(&[u8]) -> bool| fixtures.iter().any(|(_, bytes)| f(bytes));
    let has_line =
        |bytes: &[u8], pred: &dyn Fn(&[u8]) -> bool| bytes.split(|&b| b == b'\n').any(pred);
    assert!(
        any(&|b| b.starts_with(b"name,value\n")),
        "name,value header"
    );
    assert!(any(&|b| b.starts_with(b"key,value\n")), "key,value header");
    assert!(any(&|b| !b.ends_with(b"\n")), "missing final newline");
    assert!(any(&|b| has_line(b, &|l| l == b",")), "`,` spacer rows");
    assert!(
        any(&|b| has_line(b, &|l| l.starts_with(b"#"))),
        "# comments"
    );
    assert!(any(&|b| has_line(b, &|l| l.is_empty())), "blank lines");
    assert!(
        any(&|b| has_line(b, &|l| l.ends_with(b","))),
        "empty values"
    );
    assert!(
        any(&|b| has_line(b, &|l| l.contains(&b' ')
            && l.split(|&c| c == b',').count() > 2)),
        "values with commas"
    );
    assert!(
        any(&|b| has_line(b, &|l| l.windows(2).any(|w| w == b", "))),
        "space after comma"
    );
}

#[test]
fn fixtures_render_unchanged() {
    for (name, source) in fixtures() {
        assert!(find_references(&source).is_empty(), "{name}");
        assert!(referenced_paths(&source).is_empty(), "{name}");
        for mode in MissingReference::ALL {
            let rendered = render(&source, mode, &mut never);
            assert_bytes_eq(&name, &rendered.bytes, &source);
            assert!(rendered.is_complete(), "{name}");
        }
        // The CRLF and `key,value` header variants are unchanged too.
        let crlf = replace(&source, b"\n", b"\r\n");
        assert_bytes_eq(
            &name,
            &render(&crlf, MissingReference::Error, &mut never).bytes,
            &crlf,
        );
        let header = key_value_header(&source);
        assert_bytes_eq(
            &name,
            &render(&header, MissingReference::Error, &mut never).bytes,
            &header,
        );
    }
}

#[test]
fn fixtures_with_appended_references() {
    for (name, source) in fixtures() {
        let doc = appended(&source);
        check(&format!("{name} appended"), &doc, MissingReference::Error);
        check(
            &format!("{name} appended, CRLF"),
            &doc.crlf(),
            MissingReference::Error,
        );
        assert_eq!(
            referenced_paths(&doc.source()),
            ["gbo/fixture/bots/my", "gbo/llm", "gbo/tables"],
            "{name}"
        );
    }
}

#[test]
fn fixtures_with_references_after_header() {
    for (name, source) in fixtures() {
        let doc = inserted_after_header(&source);
        check(&format!("{name} inserted"), &doc, MissingReference::Error);
        check(
            &format!("{name} inserted, CRLF"),
            &doc.crlf(),
            MissingReference::Error,
        );
        let keyed = inserted_after_header(&key_value_header(&source));
        assert!(keyed.source().starts_with(b"key,value"), "{name}");
        check(
            &format!("{name} inserted, key,value header"),
            &keyed,
            MissingReference::Error,
        );
    }
}

#[test]
fn fixtures_with_every_value_referenced() {
    let mut total = 0;
    for (name, source) in fixtures() {
        let doc = every_value_referenced(&source);
        total += doc.tokens().len();
        check(
            &format!("{name} every value"),
            &doc,
            MissingReference::Error,
        );
        check(
            &format!("{name} every value, CRLF"),
            &doc.crlf(),
            MissingReference::Error,
        );
        let keyed = every_value_referenced(&key_value_header(&source));
        check(
            &format!("{name} every value, key,value header"),
            &keyed,
            MissingReference::Error,
        );
    }
    assert!(total > 150, "only {total} settings referenced");
}

#[test]
fn fixtures_with_missing_references_per_mode() {
    for (name, source) in fixtures() {
        let doc = inserted_after_header(&source);
        let doc = if source.ends_with(b"\n") {
            doc
        } else {
            doc.text("\n")
        };
        let doc = doc
            .text("absent, ")
            .reference("vault:gbo/llm/absent")
            .text(" \n")
            .append(appended(b""));
        for mode in [MissingReference::Empty, MissingReference::Keep] {
            check(&format!("{name} missing, {mode}"), &doc, mode);
            check(&format!("{name} missing, {mode}, CRLF"), &doc.crlf(), mode);
        }
        let rendered = render(&doc.source(), MissingReference::Error, &mut resolve);
        assert!(!rendered.is_complete(), "{name}");
        let unresolved: Vec<String> = rendered.unresolved.iter().map(|u| u.to_string()).collect();
        let line = doc
            .source()
            .split(|&b| b == b'\n')
            .position(|l| l.starts_with(b"absent,"))
            .unwrap()
            + 1;
        assert_eq!(
            unresolved,
            [format!("line {line}: vault:gbo/llm/absent: no such key")],
            "{name}"
        );
    }
}
