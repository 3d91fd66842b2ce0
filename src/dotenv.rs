//! `.env` file parsing: `KEY=VALUE` lines read into memory, never exported.
//!
//! Accepted: a leading UTF-8 byte order mark, blank lines, `#` comments, an
//! optional `export ` prefix, values in single or double quotes (a quoted value
//! may span lines, e.g. a PEM certificate: it ends at the first later line holding
//! its quote), CRLF line endings. Anything else, including text after a closing
//! quote other than a `# comment`, is an error naming the file and line (never
//! the line's content, which may hold a secret).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Variables read from a `.env` file. Values are zeroized on drop.
#[derive(Default)]
pub struct DotEnv {
    pub path: Option<PathBuf>,
    values: HashMap<String, Zeroizing<String>>,
}

impl std::fmt::Debug for DotEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("DotEnv")
            .field("path", &self.path)
            .field("names", &names)
            .finish()
    }
}

/// A `.env` problem, naming the file and line.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DotEnvError {
    #[error("{path}: cannot read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: String,
        line: usize,
        reason: &'static str,
    },
}

/// A `.env` text's problem: `(line number, reason)`.
pub type ParseError = (usize, &'static str);

/// One `NAME=VALUE` assignment of a `.env` text.
pub struct Assignment<'t> {
    pub name: &'t str,
    /// The value: quotes removed, line breaks inside a quoted value as `\n`.
    pub value: Zeroizing<String>,
    /// The assignment as written, from its first character (`export ` included)
    /// to the end of its last line (a trailing comment included, the line break not).
    pub source: &'t str,
}

impl DotEnv {
    /// Reads `path`. A missing file is an empty set when `required` is false.
    pub fn load(path: &Path, required: bool) -> Result<DotEnv, DotEnvError> {
        let shown = path.display().to_string();
        let text = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(DotEnv::default())
            }
            Err(e) => {
                return Err(DotEnvError::Unreadable {
                    path: shown,
                    reason: e.to_string(),
                })
            }
        };
        let text = std::str::from_utf8(&text).map_err(|e| DotEnvError::Malformed {
            path: shown.clone(),
            line: 1 + text[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            reason: "not valid UTF-8",
        })?;
        let mut dotenv = DotEnv::parse(text).map_err(|(line, reason)| DotEnvError::Malformed {
            path: shown,
            line,
            reason,
        })?;
        dotenv.path = Some(path.to_path_buf());
        Ok(dotenv)
    }

    /// Parses `.env` text; a later assignment of a name replaces an earlier one.
    pub fn parse(text: &str) -> Result<DotEnv, ParseError> {
        let values = assignments(text)?
            .into_iter()
            .map(|assignment| (assignment.name.to_string(), assignment.value))
            .collect();
        Ok(DotEnv { path: None, values })
    }

    /// The value of `name`, if the file sets it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.as_str())
    }

    /// Names the file sets, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.values.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The assignments of a `.env` text, in file order.
pub fn assignments(text: &str) -> Result<Vec<Assignment<'_>>, ParseError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = body.split_inclusive('\n').map(without_line_break).zip(1..);
    let mut found = Vec::new();
    while let Some((line, number)) = lines.next() {
        let statement = line.trim();
        if statement.is_empty() || statement.starts_with('#') {
            continue;
        }
        let assignment = statement
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(statement);
        let (name, value) = assignment
            .split_once('=')
            .ok_or((number, "expected NAME=VALUE"))?;
        let name = name.trim();
        if !is_variable_name(name) {
            return Err((number, "variable name must be letters, digits and _"));
        }
        let value = value.trim_start();
        let (value, last_line) = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let opened = &value[1..];
                let (closing_line, closing_number) = if opened.contains(quote) {
                    (opened, number)
                } else {
                    lines
                        .by_ref()
                        .find(|(line, _)| line.contains(quote))
                        .ok_or((number, "unterminated quote"))?
                };
                let closing = closing_quote(closing_line, quote)
                    .ok_or((closing_number, "text after the closing quote"))?;
                let inside =
                    &text[offset_in(text, opened)..offset_in(text, closing_line) + closing];
                (with_unix_line_breaks(inside), closing_line)
            }
            _ => {
                let unquoted = match value.find(" #") {
                    Some(comment) => &value[..comment],
                    None => value,
                };
                (Zeroizing::new(unquoted.trim_end().to_string()), line)
            }
        };
        let source_end = offset_in(text, last_line) + last_line.trim_end().len();
        found.push(Assignment {
            name,
            value,
            source: &text[offset_in(text, statement)..source_end],
        });
    }
    Ok(found)
}

fn without_line_break(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// Where `part`, a slice of `text`, starts in it.
fn offset_in(text: &str, part: &str) -> usize {
    part.as_ptr() as usize - text.as_ptr() as usize
}

/// The closing quote's position in `line`: the last `quote` followed only by
/// blanks or a `# comment`.
fn closing_quote(line: &str, quote: char) -> Option<usize> {
    line.rmatch_indices(quote)
        .map(|(index, _)| index)
        .find(|index| {
            let after = line[index + 1..].trim_start();
            after.is_empty() || after.starts_with('#')
        })
}

/// `value` with each CRLF inside it as LF, in a buffer sized once (a regrown
/// buffer would leave an unwiped copy of the value behind).
fn with_unix_line_breaks(value: &str) -> Zeroizing<String> {
    let mut unix = Zeroizing::new(String::with_capacity(value.len()));
    for piece in value.split_inclusive("\r\n") {
        unix.push_str(piece.strip_suffix("\r\n").unwrap_or(piece));
        if piece.ends_with("\r\n") {
            unix.push('\n');
        }
    }
    unix
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_values_comments_quotes_export_and_crlf() {
        let text = "# comment\r\nVAULT_ADDR=http://127.0.0.1:8200\r\n\nexport VAULT_TOKEN='s.abc'\nOTHER=\"x y\"\nTRAIL=v # note\nEMPTY=\n";
        let env = DotEnv::parse(text).unwrap();
        assert_eq!(env.get("VAULT_ADDR"), Some("http://127.0.0.1:8200"));
        assert_eq!(env.get("VAULT_TOKEN"), Some("s.abc"));
        assert_eq!(env.get("OTHER"), Some("x y"));
        assert_eq!(env.get("TRAIL"), Some("v"));
        assert_eq!(env.get("EMPTY"), Some(""));
    }

    #[test]
    fn values_keep_equals_signs_after_the_first() {
        let env = DotEnv::parse("DATABASE_URL=postgres://u:p@h/db?sslmode=require&x=1").unwrap();
        assert_eq!(
            env.get("DATABASE_URL"),
            Some("postgres://u:p@h/db?sslmode=require&x=1")
        );
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_its_line_and_not_its_content() {
        let error = DotEnv::parse("A=1\nthis line has sk-secret and no equals\n").unwrap_err();
        assert_eq!(error, (2, "expected NAME=VALUE"));
        assert_eq!(DotEnv::parse("1BAD=x").unwrap_err().0, 1);
        assert_eq!(
            DotEnv::parse("\n\nA=\"open").unwrap_err(),
            (3, "unterminated quote")
        );
    }

    #[test]
    fn load_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "VAULT_ADDR=x\ngarbage-with-secret\n").unwrap();
        let message = DotEnv::load(&path, false).unwrap_err().to_string();
        assert!(message.contains(".env:2"), "{message}");
        assert!(!message.contains("garbage-with-secret"), "{message}");
    }

    #[test]
    fn a_missing_optional_file_is_empty_and_a_missing_required_one_is_an_error() {
        let missing = Path::new("/nonexistent/gbo-fs/.env");
        assert!(DotEnv::load(missing, false).unwrap().names().is_empty());
        assert!(DotEnv::load(missing, true).is_err());
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "\u{feff}VAULT_ADDR=http://a:1\r\nVAULT_TOKEN=t\r\n").unwrap();
        let env = DotEnv::load(&path, true).unwrap();
        assert_eq!(env.get("VAULT_ADDR"), Some("http://a:1"));
        assert_eq!(env.get("VAULT_TOKEN"), Some("t"));
    }

    #[test]
    fn quoted_values_may_span_lines_and_later_errors_keep_their_line_numbers() {
        let text = "VAULT_ADDR=https://vault:8200\n\
                    VAULT_CACERT_PEM=\"-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\"\r\n\
                    NOTE='two\n  lines' # comment\n\
                    AFTER=1\n\
                    broken line\n";
        assert_eq!(DotEnv::parse(text).unwrap_err(), (8, "expected NAME=VALUE"));
        let env = DotEnv::parse(text.trim_end_matches("broken line\n")).unwrap();
        assert_eq!(
            env.get("VAULT_CACERT_PEM"),
            Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")
        );
        assert_eq!(env.get("NOTE"), Some("two\n  lines"));
        assert_eq!(env.get("AFTER"), Some("1"));
        assert_eq!(
            DotEnv::parse("A=1\nB=\"never\nclosed\n").unwrap_err(),
            (2, "unterminated quote")
        );
    }

    #[test]
    fn text_after_a_closing_quote_is_an_error_naming_its_line_and_not_its_content() {
        assert_eq!(
            DotEnv::parse("A=1\nVAULT_TOKEN=\"x\" trailing\n").unwrap_err(),
            (2, "text after the closing quote")
        );
        assert_eq!(
            DotEnv::parse("CERT='a\nb' trailing\n").unwrap_err(),
            (2, "text after the closing quote")
        );
        let env = DotEnv::parse("A=\"x\" # note\nB='it's'\nC=\"say \"hi\"\"\n").unwrap();
        assert_eq!(env.get("A"), Some("x"));
        assert_eq!(env.get("B"), Some("it's"));
        assert_eq!(env.get("C"), Some("say \"hi\""));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.env");
        std::fs::write(&path, "VAULT_TOKEN=\"x\" trailing-secret\n").unwrap();
        let message = DotEnv::load(&path, true).unwrap_err().to_string();
        assert!(
            message.ends_with("t.env:1: text after the closing quote"),
            "{message}"
        );
        assert!(!message.contains("trailing-secret"), "{message}");
    }

    #[test]
    fn assignments_keep_their_source_text_including_every_line_of_a_quoted_value() {
        let text = "\u{feff}export A=1 # one\n  B=\"x\r\ny\"  \r\n";
        let sources: Vec<(&str, &str)> = assignments(text)
            .unwrap()
            .iter()
            .map(|assignment| (assignment.name, assignment.source))
            .collect();
        assert_eq!(sources, [("A", "export A=1 # one"), ("B", "B=\"x\r\ny\"")]);
    }

    #[test]
    fn debug_output_lists_names_but_never_values() {
        let env = DotEnv::parse("VAULT_TOKEN=hvs.secret-token").unwrap();
        let printed = format!("{env:?}");
        assert!(printed.contains("VAULT_TOKEN") && !printed.contains("hvs.secret-token"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary text never panics the parser, and an error names a line that exists.
        #[test]
        fn arbitrary_text_parses_or_names_an_existing_line(text in "(?s).{0,400}") {
            match DotEnv::parse(&text) {
                Ok(_) => {}
                Err((line, _)) => prop_assert!(line >= 1 && line <= text.lines().count().max(1)),
            }
        }

        /// A double-quoted value without quotes reads back unchanged, over any number of lines.
        #[test]
        fn double_quoted_values_read_back_across_lines(value in "[^\"\r]{0,80}") {
            let env = DotEnv::parse(&format!("FIRST=1\nVALUE=\"{value}\"\nLAST=2\n")).unwrap();
            prop_assert_eq!(env.get("VALUE"), Some(value.as_str()));
            prop_assert_eq!(env.get("LAST"), Some("2"));
        }

        /// Well-formed assignments always read back their value.
        #[test]
        fn assignments_read_back(name in "[A-Z_][A-Z0-9_]{0,20}", value in "[^\r\n\"'#]{0,40}") {
            let env = DotEnv::parse(&format!("{name}={value}\n")).unwrap();
            prop_assert_eq!(env.get(&name), Some(value.trim()));
        }
    }
}
