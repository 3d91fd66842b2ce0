//! The pure half of the synthetic `config.csv` view: finding `vault:` references in a bot's `config.csv` and rendering the file with each reference replaced by its secret value (no I/O here).
//!
//! A bot's `config.csv` holds non-secret settings plus references such as
//! `llm-api-key,vault:gbo/llm/openai_key`. The lead wires this module to Vault
//! (fetch [`referenced_paths`] once each, then answer [`render`]'s lookups) and
//! to FUSE (serve [`Rendered::bytes`]).
//!
//! Parsing follows botserver's config.csv reader exactly: each line (split on
//! `\n`, a trailing `\r` being part of the line ending) is trimmed; blank lines
//! and lines starting with `#` are skipped; the rest is split at its FIRST comma
//! into name and value, both trimmed. A value is a reference when, trimmed of
//! ASCII whitespace, it starts with `vault:`; `vault:<path>/<key>` splits at the
//! LAST `/`, and both halves must be non-empty.
//!
//! Rendering is byte-for-byte: everything except the trimmed reference token
//! itself (whitespace around it, CRLF, a missing final newline, headers,
//! comments, spacer rows, invalid UTF-8) passes through unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use zeroize::Zeroizing;

/// The prefix that marks a value as a reference.
pub const PREFIX: &str = "vault:";
/// [`Unresolved::reason`] for a `vault:` token that is not `vault:<path>/<key>`.
pub const MALFORMED: &str = "malformed reference";
/// [`Unresolved::reason`] for a secret value that cannot be inlined in one line.
pub const LINE_BREAK: &str = "value contains a line break";
/// [`Unresolved::reason`] for a secret value botserver's parser would read back
/// shorter: it trims every value.
pub const EDGE_WHITESPACE: &str =
    "value starts or ends with whitespace, which botserver's parser would trim away";

/// One `vault:` reference found in a config.csv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// 1-based line number.
    pub line: usize,
    /// The setting name, trimmed (lossily decoded if not UTF-8).
    pub name: String,
    /// The trimmed token, e.g. `vault:gbo/llm/openai_key`.
    pub text: String,
    /// The secret path: the token after `vault:` up to its last `/`.
    pub path: String,
    /// The key within the secret: the token after its last `/`.
    pub key: String,
    /// Byte range of the token in the source.
    pub span: Range<usize>,
}

/// A value starting with `vault:` that is not `vault:<path>/<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedReference {
    /// 1-based line number.
    pub line: usize,
    /// The setting name, trimmed (lossily decoded if not UTF-8).
    pub name: String,
    /// The trimmed token, e.g. `vault:nokey`.
    pub text: String,
    /// Byte range of the token in the source.
    pub span: Range<usize>,
}

/// Finds every reference (and malformed `vault:` tokens, as `Err`) in source order.
pub fn find_references(source: &[u8]) -> Vec<Result<Reference, MalformedReference>> {
    let mut found = Vec::new();
    let mut offset = 0;
    for (index, line) in source.split(|&b| b == b'\n').enumerate() {
        if let Some(item) = parse_line(line, offset, index + 1) {
            found.push(item);
        }
        offset += line.len() + 1;
    }
    found
}

/// Parses one line (without its `\n`) starting at byte `offset` of the source.
fn parse_line(
    line: &[u8],
    offset: usize,
    number: usize,
) -> Option<Result<Reference, MalformedReference>> {
    let content = line.strip_suffix(b"\r").unwrap_or(line);
    let trimmed = trim_whitespace(content);
    if trimmed.is_empty() || trimmed[0] == b'#' {
        return None;
    }
    let comma = content.iter().position(|&b| b == b',')?;
    let value = &content[comma + 1..];
    let token = trim_whitespace(value);
    if !token.starts_with(PREFIX.as_bytes()) {
        return None;
    }
    // A value that is not valid UTF-8 is not a reference: it passes through.
    let text = std::str::from_utf8(token).ok()?;
    let start = offset + comma + 1 + leading_whitespace(value);
    let span = start..start + token.len();
    let name = String::from_utf8_lossy(trim_whitespace(&content[..comma])).into_owned();
    match split_target(&text[PREFIX.len()..]) {
        Some((path, key)) => Some(Ok(Reference {
            line: number,
            name,
            text: text.to_owned(),
            path: path.to_owned(),
            key: key.to_owned(),
            span,
        })),
        None => Some(Err(MalformedReference {
            line: number,
            name,
            text: text.to_owned(),
            span,
        })),
    }
}

/// `bytes` without leading and trailing whitespace as Rust's `str::trim` (which
/// botserver uses) sees it: Unicode White_Space, so a no-break space or a vertical
/// tab counts, not only ASCII blanks. Trimming stops at bytes that are not UTF-8.
pub fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let rest = &bytes[leading_whitespace(bytes)..];
    &rest[..rest.len() - trailing_whitespace(rest)]
}

/// How many bytes of whitespace (as [`trim_whitespace`] sees it) `bytes` starts with.
fn leading_whitespace(bytes: &[u8]) -> usize {
    let valid = bytes.utf8_chunks().next().map_or("", |chunk| chunk.valid());
    valid.len() - valid.trim_start().len()
}

/// How many bytes of whitespace (as [`trim_whitespace`] sees it) `bytes` ends with.
fn trailing_whitespace(bytes: &[u8]) -> usize {
    match bytes.utf8_chunks().last() {
        Some(chunk) if chunk.invalid().is_empty() => {
            chunk.valid().len() - chunk.valid().trim_end().len()
        }
        _ => 0,
    }
}

/// Whether botserver would read `value` back unchanged after trimming it.
fn survives_trimming(value: &[u8]) -> bool {
    trim_whitespace(value).len() == value.len()
}

/// Splits `<path>/<key>` at the last `/`; both halves must be non-empty.
fn split_target(target: &str) -> Option<(&str, &str)> {
    let (path, key) = target.rsplit_once('/')?;
    (!path.is_empty() && !key.is_empty()).then_some((path, key))
}

/// The distinct secret paths referenced, sorted (for fetching each path once,
/// concurrently, before [`render`]).
pub fn referenced_paths(source: &[u8]) -> Vec<String> {
    find_references(source)
        .into_iter()
        .filter_map(Result::ok)
        .map(|reference| reference.path)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What to do with a reference that cannot be resolved (`--missing-reference`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MissingReference {
    /// Fail closed: the caller must not serve the rendered bytes.
    #[default]
    Error,
    /// Substitute an empty value.
    Empty,
    /// Leave the original `vault:...` text in place.
    Keep,
}

impl MissingReference {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [MissingReference; 3] = [Self::Error, Self::Empty, Self::Keep];

    /// The CLI spelling: `error`, `empty` or `keep`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Empty => "empty",
            Self::Keep => "keep",
        }
    }
}

impl fmt::Display for MissingReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `--missing-reference` spelling.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid missing-reference mode {given:?}: expected one of error, empty, keep")]
pub struct ParseMissingReferenceError {
    /// What was given.
    pub given: String,
}

impl FromStr for MissingReference {
    type Err = ParseMissingReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| ParseMissingReferenceError {
                given: s.to_owned(),
            })
    }
}

/// Why one reference could not be resolved (never contains a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// 1-based line number.
    pub line: usize,
    /// The reference token, e.g. `vault:gbo/llm/openai_key`.
    pub reference: String,
    /// E.g. `no such key`, [`MALFORMED`], [`LINE_BREAK`].
    pub reason: String,
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.reference, self.reason)
    }
}

/// The lookup result the caller supplies for each distinct (path, key).
pub enum Resolution {
    /// The secret value.
    Value(Zeroizing<Vec<u8>>),
    /// Why there is no value, e.g. "no such key", "permission denied",
    /// "Vault unreachable". Must not contain a secret.
    Missing(String),
}

impl fmt::Debug for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(value) => write!(f, "Value(<{} bytes redacted>)", value.len()),
            Self::Missing(reason) => f.debug_tuple("Missing").field(reason).finish(),
        }
    }
}

/// The rendered file and what could not be resolved.
pub struct Rendered {
    /// The rendered file. With [`MissingReference::Error`] and unresolved
    /// references these bytes must not be served.
    pub bytes: Zeroizing<Vec<u8>>,
    /// Every unresolved reference, in source order.
    pub unresolved: Vec<Unresolved>,
}

impl Rendered {
    /// True when every reference was replaced by its value.
    pub fn is_complete(&self) -> bool {
        self.unresolved.is_empty()
    }
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("len", &self.bytes.len())
            .field("unresolved", &self.unresolved)
            .finish()
    }
}

/// Renders `source`, replacing each reference token with its value.
///
/// `resolve(path, key)` is called once per distinct (path, key) referenced by a
/// well-formed reference, in source order of first use; never for malformed
/// tokens. An unresolvable reference (malformed, [`Resolution::Missing`], or a
/// value containing `\n`/`\r`) is listed in [`Rendered::unresolved`] and, per
/// `mode`, replaced by nothing ([`MissingReference::Empty`]) or left as is
/// ([`MissingReference::Keep`] and, though the output is then not to be served,
/// [`MissingReference::Error`]).
///
/// The output buffer is allocated once at its final size, so no reallocation
/// leaves copies of secret bytes behind.
pub fn render(
    source: &[u8],
    mode: MissingReference,
    resolve: &mut dyn FnMut(&str, &str) -> Resolution,
) -> Rendered {
    let found = find_references(source);

    let mut lookups: BTreeMap<(&str, &str), Resolution> = BTreeMap::new();
    for reference in found.iter().filter_map(|item| item.as_ref().ok()) {
        let id = (reference.path.as_str(), reference.key.as_str());
        lookups.entry(id).or_insert_with(|| resolve(id.0, id.1));
    }

    let mut unresolved = Vec::new();
    let mut pieces: Vec<(Range<usize>, &[u8])> = Vec::with_capacity(found.len());
    for item in &found {
        let (line, text, span, problem) = match item {
            Err(malformed) => (malformed.line, &malformed.text, &malformed.span, MALFORMED),
            Ok(reference) => match &lookups[&(reference.path.as_str(), reference.key.as_str())] {
                Resolution::Value(value) if value.contains(&b'\n') || value.contains(&b'\r') => {
                    (reference.line, &reference.text, &reference.span, LINE_BREAK)
                }
                Resolution::Value(value) if !survives_trimming(value) => (
                    reference.line,
                    &reference.text,
                    &reference.span,
                    EDGE_WHITESPACE,
                ),
                Resolution::Value(value) => {
                    pieces.push((reference.span.clone(), value.as_slice()));
                    continue;
                }
                Resolution::Missing(reason) => (
                    reference.line,
                    &reference.text,
                    &reference.span,
                    reason.as_str(),
                ),
            },
        };
        unresolved.push(Unresolved {
            line,
            reference: text.clone(),
            reason: problem.to_owned(),
        });
        let fallback: &[u8] = match mode {
            MissingReference::Empty => b"",
            MissingReference::Keep | MissingReference::Error => &source[span.clone()],
        };
        pieces.push((span.clone(), fallback));
    }

    let len = pieces.iter().fold(source.len(), |len, (span, with)| {
        len - span.len() + with.len()
    });
    let mut bytes = Zeroizing::new(Vec::with_capacity(len));
    let mut at = 0;
    for (span, with) in &pieces {
        bytes.extend_from_slice(&source[at..span.start]);
        bytes.extend_from_slice(with);
        at = span.end;
    }
    bytes.extend_from_slice(&source[at..]);
    debug_assert_eq!(bytes.len(), len);

    Rendered { bytes, unresolved }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(v: &str) -> Resolution {
        Resolution::Value(Zeroizing::new(v.as_bytes().to_vec()))
    }

    /// Renders with a resolver answering `secret(path/key)` for every lookup.
    fn render_all(source: &str, mode: MissingReference) -> Rendered {
        render(source.as_bytes(), mode, &mut |path, key| {
            value(&format!("S({path}|{key})"))
        })
    }

    fn text(rendered: &Rendered) -> &str {
        std::str::from_utf8(&rendered.bytes).unwrap()
    }

    fn refs(source: &str) -> Vec<Reference> {
        find_references(source.as_bytes())
            .into_iter()
            .map(|item| item.expect("well-formed"))
            .collect()
    }

    fn never(_: &str, _: &str) -> Resolution {
        panic!("resolve must not be called")
    }

    #[test]
    fn simple_reference() {
        let source = "name,value\nllm-api-key,vault:gbo/llm/openai_key\n";
        let found = refs(source);
        assert_eq!(
            found,
            vec![Reference {
                line: 2,
                name: "llm-api-key".into(),
                text: "vault:gbo/llm/openai_key".into(),
                path: "gbo/llm".into(),
                key: "openai_key".into(),
                span: 23..47,
            }]
        );
        assert_eq!(&source[found[0].span.clone()], "vault:gbo/llm/openai_key");
        let rendered = render_all(source, MissingReference::Error);
        assert!(rendered.is_complete());
        assert_eq!(
            text(&rendered),
            "name,value\nllm-api-key,S(gbo/llm|openai_key)\n"
        );
    }

    /// What botserver reads from one line: Rust's `str::trim` (Unicode), skip
    /// blank and `#` lines, split at the first comma, trim both halves.
    fn botserver_reads(line: &str) -> Option<(String, String)> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (name, value) = line.split_once(',')?;
        Some((name.trim().to_string(), value.trim().to_string()))
    }

    #[test]
    fn unicode_whitespace_is_trimmed_as_botservers_str_trim_trims_it() {
        for space in ["\u{a0}", "\u{b}", "\u{3000}", "\u{2003}", "\t \u{a0}"] {
            let line = format!("llm-api-key,{space}vault:gbo/llm/openai_key{space}");
            let (_, value) = botserver_reads(&line).unwrap();
            assert_eq!(value, "vault:gbo/llm/openai_key");
            let rendered = render_all(&format!("{line}\n"), MissingReference::Error);
            assert_eq!(
                text(&rendered),
                format!("llm-api-key,{space}S(gbo/llm|openai_key){space}\n"),
                "{space:?}"
            );
            // A comment botserver skips is skipped here too.
            let comment = format!("{space}# k,vault:gbo/nosuch/k\n");
            assert!(botserver_reads(&comment).is_none());
            assert!(find_references(comment.as_bytes()).is_empty(), "{space:?}");
        }
    }

    #[test]
    fn a_value_botservers_trim_would_shorten_fails_closed() {
        for padded in ["  padded  ", "\u{c}formfeed", "tab\u{b}", "\u{a0}nbsp"] {
            let rendered = render(
                b"name,value\nk,vault:gbo/x/k\n",
                MissingReference::Error,
                &mut |_, _| value(padded),
            );
            assert!(!rendered.is_complete(), "{padded:?}");
            assert_eq!(rendered.unresolved[0].reason, EDGE_WHITESPACE);
            assert!(!String::from_utf8_lossy(&rendered.bytes).contains(padded.trim()));
        }
        let inner = render(
            b"k,vault:gbo/x/k\n",
            MissingReference::Error,
            &mut |_, _| value("inner space kept"),
        );
        assert_eq!(text(&inner), "k,inner space kept\n");
    }

    #[test]
    fn splits_at_first_comma_only() {
        // The value is `b,vault:gbo/x/k`, which does not start with `vault:`.
        let source = "a,b,vault:gbo/x/k\n";
        assert!(find_references(source.as_bytes()).is_empty());
        let rendered = render(source.as_bytes(), MissingReference::Error, &mut never);
        assert_eq!(text(&rendered), source);
        assert!(rendered.is_complete());
    }

    #[test]
    fn reference_value_may_not_hold_commas_but_key_may_hold_vault() {
        // The name is `vault:gbo/a/b`; the value is plain.
        let source = "vault:gbo/a/b,plain\n";
        assert!(find_references(source.as_bytes()).is_empty());
        // A comma inside the token after `vault:` stays part of the token.
        let found = refs("k,vault:gbo/a,b/c\n");
        assert_eq!(found[0].path, "gbo/a,b");
        assert_eq!(found[0].key, "c");
    }

    #[test]
    fn space_after_comma_is_kept() {
        let source = "name, vault:gbo/x/k\n";
        let found = refs(source);
        assert_eq!(found[0].name, "name");
        assert_eq!(found[0].text, "vault:gbo/x/k");
        assert_eq!(found[0].span, 6..19);
        assert_eq!(
            text(&render_all(source, MissingReference::Error)),
            "name, S(gbo/x|k)\n"
        );
    }

    #[test]
    fn spaces_around_name_and_tabs_around_value_are_kept() {
        let source = "  spaced  ,\t vault:gbo/x/k \t\n";
        let found = refs(source);
        assert_eq!(found[0].name, "spaced");
        assert_eq!(
            text(&render_all(source, MissingReference::Error)),
            "  spaced  ,\t S(gbo/x|k) \t\n"
        );
    }

    #[test]
    fn key_with_spaces() {
        let source = "my key,vault:gbo/a/b\n";
        let found = refs(source);
        assert_eq!(found[0].name, "my key");
        assert_eq!(
            (found[0].path.as_str(), found[0].key.as_str()),
            ("gbo/a", "b")
        );
        assert_eq!(
            text(&render_all(source, MissingReference::Error)),
            "my key,S(gbo/a|b)\n"
        );
    }

    #[test]
    fn crlf_is_kept() {
        let source = "name,value\r\na,vault:gbo/a/b\r\nb, vault:gbo/a/c \r\nc,d\r\n";
        let found = refs(source);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].text, "vault:gbo/a/b");
        assert_eq!(found[1].text, "vault:gbo/a/c");
        assert_eq!(found[1].line, 3);
        assert_eq!(
            text(&render_all(source, MissingReference::Error)),
            "name,value\r\na,S(gbo/a|b)\r\nb, S(gbo/a|c) \r\nc,d\r\n"
        );
    }

    #[test]
    fn crlf_on_last_line_without_final_newline_and_lone_cr() {
        assert_eq!(
            text(&render_all("a,vault:gbo/a/b\r", MissingReference::Error)),
            "a,S(gbo/a|b)\r"
        );
        assert_eq!(
            text(&render_all(
                "a,vault:gbo/a/b\r\r\n",
                MissingReference::Error
            )),
            "a,S(gbo/a|b)\r\r\n"
        );
    }

    #[test]
    fn missing_final_newline_is_kept() {
        let source = "name,value\na,vault:gbo/a/b";
        assert_eq!(refs(source)[0].line, 2);
        assert_eq!(
            text(&render_all(source, MissingReference::Error)),
            "name,value\na,S(gbo/a|b)"
        );
        assert_eq!(
            text(&render_all("a,vault:gbo/a/b  ", MissingReference::Error)),
            "a,S(gbo/a|b)  "
        );
    }

    #[test]
    fn comment_lines_are_not_references() {
        for source in [
            "# x,vault:gbo/a/b\n",
            "#x,vault:gbo/a/b",
            "   # x,vault:gbo/a/b\r\n",
            "\t#,vault:gbo/a/b\n",
        ] {
            assert!(find_references(source.as_bytes()).is_empty(), "{source:?}");
            let rendered = render(source.as_bytes(), MissingReference::Error, &mut never);
            assert_eq!(text(&rendered), source);
        }
        // `#` later in the line is not a comment.
        assert_eq!(refs("x#,vault:gbo/a/b\n")[0].name, "x#");
    }

    #[test]
    fn headers_spacers_blank_and_commaless_lines_pass_through() {
        let source =
            "name,value\nkey,value\n,\n\n   \n\r\n,  \nno comma here\nvault:gbo/a/b\n# c\nx,\n";
        assert!(find_references(source.as_bytes()).is_empty());
        let rendered = render(source.as_bytes(), MissingReference::Error, &mut never);
        assert_eq!(text(&rendered), source);
        assert!(rendered.is_complete());
    }

    #[test]
    fn empty_name_is_still_a_reference() {
        let source = ",vault:gbo/a/b\n";
        assert_eq!(refs(source)[0].name, "");
        assert_eq!(
            text(&render_all(source, MissingReference::Error)),
            ",S(gbo/a|b)\n"
        );
    }

    #[test]
    fn trailing_whitespace_after_reference_is_kept() {
        let source = "a,vault:gbo/a/b   \nb,vault:gbo/a/c\t\n";
        assert_eq!(
            text(&render_all(source, MissingReference::Error)),
            "a,S(gbo/a|b)   \nb,S(gbo/a|c)\t\n"
        );
    }

    #[test]
    fn prefix_is_case_sensitive_and_unquoted() {
        for source in [
            "a,VAULT:gbo/a/b\n",
            "a,\"vault:gbo/a/b\"\n",
            "a,xvault:gbo/a/b\n",
        ] {
            assert!(find_references(source.as_bytes()).is_empty(), "{source:?}");
        }
    }

    #[test]
    fn token_may_contain_inner_spaces() {
        let found = refs("a, vault:gbo/a b/c d \n");
        assert_eq!(found[0].text, "vault:gbo/a b/c d");
        assert_eq!(
            (found[0].path.as_str(), found[0].key.as_str()),
            ("gbo/a b", "c d")
        );
    }

    #[test]
    fn splits_at_last_slash() {
        let found = refs("a,vault:gbo/bots/my/key\n");
        assert_eq!(found[0].path, "gbo/bots/my");
        assert_eq!(found[0].key, "key");
        let found = refs("a,vault:p/k\n");
        assert_eq!((found[0].path.as_str(), found[0].key.as_str()), ("p", "k"));
    }

    #[test]
    fn malformed_references() {
        let source = "a,vault:nokey\nb, vault:gbo/a/ \nc,vault:/k\nd,vault:\ne,vault:/\n";
        let found = find_references(source.as_bytes());
        let malformed: Vec<MalformedReference> =
            found.into_iter().map(|item| item.unwrap_err()).collect();
        let texts: Vec<&str> = malformed.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "vault:nokey",
                "vault:gbo/a/",
                "vault:/k",
                "vault:",
                "vault:/"
            ]
        );
        assert_eq!(malformed[1].line, 2);
        assert_eq!(&source[malformed[1].span.clone()], "vault:gbo/a/");
        assert!(referenced_paths(source.as_bytes()).is_empty());

        let keep = render(source.as_bytes(), MissingReference::Keep, &mut never);
        assert_eq!(text(&keep), source);
        assert_eq!(keep.unresolved.len(), 5);
        assert_eq!(
            keep.unresolved[0],
            Unresolved {
                line: 1,
                reference: "vault:nokey".into(),
                reason: "malformed reference".into(),
            }
        );
        let empty = render(source.as_bytes(), MissingReference::Empty, &mut never);
        assert_eq!(text(&empty), "a,\nb,  \nc,\nd,\ne,\n");
        let error = render(source.as_bytes(), MissingReference::Error, &mut never);
        assert!(!error.is_complete());
        assert_eq!(error.unresolved, keep.unresolved);
    }

    #[test]
    fn value_with_line_break_is_unresolvable() {
        for secret in ["line1\nline2", "trailing\n", "cr\rhere", "\r\n"] {
            let source = "a,vault:gbo/a/b\nc,vault:gbo/a/ok\n";
            let rendered = render(source.as_bytes(), MissingReference::Keep, &mut |_, key| {
                value(if key == "b" { secret } else { "fine" })
            });
            assert_eq!(text(&rendered), "a,vault:gbo/a/b\nc,fine\n");
            assert_eq!(
                rendered.unresolved,
                vec![Unresolved {
                    line: 1,
                    reference: "vault:gbo/a/b".into(),
                    reason: "value contains a line break".into(),
                }]
            );
            let empty = render(source.as_bytes(), MissingReference::Empty, &mut |_, key| {
                value(if key == "b" { secret } else { "fine" })
            });
            assert_eq!(text(&empty), "a,\nc,fine\n");
        }
    }

    fn missing_source_and_resolver() -> (&'static str, impl FnMut(&str, &str) -> Resolution) {
        let source =
            "name,value\nk1, vault:gbo/a/present \nk2,vault:gbo/a/absent\nk3,vault:gbo/denied/x\n";
        let resolver = |path: &str, key: &str| match (path, key) {
            ("gbo/a", "present") => value("V"),
            ("gbo/a", _) => Resolution::Missing("no such key".into()),
            _ => Resolution::Missing("permission denied".into()),
        };
        (source, resolver)
    }

    fn expected_unresolved() -> Vec<Unresolved> {
        vec![
            Unresolved {
                line: 3,
                reference: "vault:gbo/a/absent".into(),
                reason: "no such key".into(),
            },
            Unresolved {
                line: 4,
                reference: "vault:gbo/denied/x".into(),
                reason: "permission denied".into(),
            },
        ]
    }

    #[test]
    fn mode_error_reports_every_unresolved() {
        let (source, mut resolver) = missing_source_and_resolver();
        let rendered = render(source.as_bytes(), MissingReference::Error, &mut resolver);
        assert!(!rendered.is_complete());
        assert_eq!(rendered.unresolved, expected_unresolved());
        assert_eq!(
            rendered.unresolved[0].to_string(),
            "line 3: vault:gbo/a/absent: no such key"
        );
    }

    #[test]
    fn mode_empty_substitutes_nothing() {
        let (source, mut resolver) = missing_source_and_resolver();
        let rendered = render(source.as_bytes(), MissingReference::Empty, &mut resolver);
        assert_eq!(text(&rendered), "name,value\nk1, V \nk2,\nk3,\n");
        assert_eq!(rendered.unresolved, expected_unresolved());
    }

    #[test]
    fn mode_keep_leaves_reference_text() {
        let (source, mut resolver) = missing_source_and_resolver();
        let rendered = render(source.as_bytes(), MissingReference::Keep, &mut resolver);
        assert_eq!(
            text(&rendered),
            "name,value\nk1, V \nk2,vault:gbo/a/absent\nk3,vault:gbo/denied/x\n"
        );
        assert_eq!(rendered.unresolved, expected_unresolved());
    }

    #[test]
    fn mode_parsing_and_display() {
        assert_eq!(MissingReference::default(), MissingReference::Error);
        for mode in MissingReference::ALL {
            assert_eq!(mode.to_string().parse::<MissingReference>(), Ok(mode));
        }
        assert_eq!("empty".parse(), Ok(MissingReference::Empty));
        let err = "Keep".parse::<MissingReference>().unwrap_err();
        let message = err.to_string();
        for choice in ["error", "empty", "keep", "\"Keep\""] {
            assert!(message.contains(choice), "{message}");
        }
    }

    #[test]
    fn resolves_each_distinct_path_and_key_once() {
        let source =
            "a,vault:gbo/x/k\nb,vault:gbo/x/k\nc,vault:gbo/x/j\nd,vault:gbo/y/k\ne,vault:bad\n";
        let mut calls = Vec::new();
        let rendered = render(
            source.as_bytes(),
            MissingReference::Error,
            &mut |path, key| {
                calls.push(format!("{path}/{key}"));
                value(&format!("<{path}/{key}>"))
            },
        );
        assert_eq!(calls, ["gbo/x/k", "gbo/x/j", "gbo/y/k"]);
        assert_eq!(
            text(&rendered),
            "a,<gbo/x/k>\nb,<gbo/x/k>\nc,<gbo/x/j>\nd,<gbo/y/k>\ne,vault:bad\n"
        );
        assert_eq!(rendered.unresolved.len(), 1);
        assert_eq!(referenced_paths(source.as_bytes()), ["gbo/x", "gbo/y"]);
    }

    #[test]
    fn referenced_paths_sorted_and_deduplicated() {
        let source = "a,vault:gbo/z/k\n# b,vault:gbo/comment/k\nc,vault:gbo/a/k\nd,vault:gbo/z/j\n";
        assert_eq!(referenced_paths(source.as_bytes()), ["gbo/a", "gbo/z"]);
        assert!(referenced_paths(b"name,value\n").is_empty());
    }

    #[test]
    fn invalid_utf8_passes_through() {
        // Invalid bytes outside the value: still a reference, name decoded lossily.
        let source: &[u8] = b"\xff\xfe,vault:gbo/a/b\n\xc3\x28 plain,\x80\x81\n";
        let found = find_references(source);
        assert_eq!(found.len(), 1);
        let reference = found[0].as_ref().unwrap();
        assert_eq!(reference.name, "\u{fffd}\u{fffd}");
        assert_eq!(reference.span, 3..16);
        let rendered = render(source, MissingReference::Error, &mut |_, _| value("V"));
        assert_eq!(
            rendered.bytes.as_slice(),
            b"\xff\xfe,V\n\xc3\x28 plain,\x80\x81\n"
        );

        // Invalid bytes inside a `vault:` value: not a reference at all.
        let source: &[u8] = b"a,vault:gbo/\xff/b\nb,vault:gbo/a/\xc3\n";
        assert!(find_references(source).is_empty());
        let rendered = render(source, MissingReference::Error, &mut never);
        assert_eq!(rendered.bytes.as_slice(), source);
        assert!(rendered.is_complete());
    }

    #[test]
    fn empty_source() {
        let rendered = render(b"", MissingReference::Error, &mut never);
        assert!(rendered.bytes.is_empty());
        assert!(rendered.is_complete());
    }

    #[test]
    fn debug_never_shows_values() {
        let rendered = render(
            b"a,vault:gbo/a/b\n",
            MissingReference::Error,
            &mut |_, _| value("hunter2"),
        );
        let debug = format!("{rendered:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("len: 10"), "{debug}");
        let debug = format!("{:?}", value("hunter2"));
        assert!(!debug.contains("hunter2") && debug.contains('7'), "{debug}");
        let debug = format!("{:?}", Resolution::Missing("no such key".into()));
        assert_eq!(debug, "Missing(\"no such key\")");
    }

    /// Bytes biased towards the characters the parser cares about.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => prop::sample::select(b"vault:/,#\r\n \t".to_vec()),
            1 => any::<u8>(),
        ]
    }

    proptest! {
        #[test]
        fn without_vault_prefix_output_equals_input(
            source in prop::collection::vec(interesting_byte(), 0..400)
        ) {
            prop_assume!(!source.windows(PREFIX.len()).any(|w| w == PREFIX.as_bytes()));
            let mut called = false;
            let rendered = render(&source, MissingReference::Error, &mut |_, _| {
                called = true;
                Resolution::Missing("unexpected".into())
            });
            prop_assert!(!called);
            prop_assert_eq!(rendered.bytes.as_slice(), source.as_slice());
            prop_assert!(rendered.is_complete());
        }
    }

    /// A line of a generated config.csv. `Ref` lines get a unique token.
    #[derive(Clone, Debug)]
    enum Line {
        Fixed(&'static str),
        Plain(String, String),
        Ref {
            name: String,
            lead: String,
            trail: String,
        },
    }

    fn word() -> impl Strategy<Value = String> {
        // No `:`, so plain text can never contain `vault:`.
        "[a-zA-Z0-9 _.#;@=-]{0,12}"
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            prop::sample::select(vec![
                "name,value",
                "key,value",
                ",",
                "",
                "   ",
                "# Bot Identity",
                "# commented,vault:gbo/comment/key",
                "  #x, vault:gbo/comment/key2",
                "a,b,vault:gbo/second/comma",
                "no comma",
                "vault:gbo/name/only",
                "bad,vault:nokey",
            ])
            .prop_map(Line::Fixed),
            ("[a-z-]{1,10}", word()).prop_map(|(n, v)| Line::Plain(n, v)),
            ("[a-zA-Z -]{0,10}", "[ \t]{0,2}", "[ \t]{0,2}")
                .prop_map(|(name, lead, trail)| Line::Ref { name, lead, trail }),
        ]
    }

    proptest! {
        #[test]
        fn references_are_replaced_and_nothing_else(
            lines in prop::collection::vec((line(), any::<bool>()), 0..30),
            final_newline in any::<bool>(),
        ) {
            const V: &str = "s3cr3t, value";
            let mut source = String::new();
            let mut tokens = Vec::new();
            for (index, (line, crlf)) in lines.iter().enumerate() {
                match line {
                    Line::Fixed(text) => source.push_str(text),
                    Line::Plain(name, value) => source.push_str(&format!("{name},{value}")),
                    Line::Ref { name, lead, trail } => {
                        let token = format!("vault:gbo/gen/k{index}x");
                        source.push_str(&format!("{name},{lead}{token}{trail}"));
                        tokens.push(token);
                    }
                }
                if index + 1 < lines.len() || final_newline {
                    source.push_str(if *crlf { "\r\n" } else { "\n" });
                }
            }
            let mut expected = source.clone();
            for token in &tokens {
                // `k{index}x` makes each token unique and not a prefix of another.
                expected = expected.replace(token.as_str(), V);
            }
            let malformed = source.matches("bad,vault:nokey").count();

            let mut calls = 0;
            let rendered = render(source.as_bytes(), MissingReference::Keep, &mut |path, _| {
                calls += 1;
                assert_eq!(path, "gbo/gen");
                value(V)
            });
            prop_assert_eq!(calls, tokens.len());
            prop_assert_eq!(std::str::from_utf8(&rendered.bytes).unwrap(), expected.as_str());
            prop_assert_eq!(rendered.unresolved.len(), malformed);
            prop_assert!(rendered.unresolved.iter().all(|u| u.reason == MALFORMED));
        }
    }
}
