//! `.env` file parsing: `KEY=VALUE` lines read into memory, never exported.
//!
//! Accepted: blank lines, `#` comments, an optional `export ` prefix, values in
//! single or double quotes, CRLF line endings. Anything else is an error naming
//! the file and line (never the line's content, which may hold a secret).

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
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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

    /// Parses `.env` text; an error is `(line number, reason)`.
    pub fn parse(text: &str) -> Result<DotEnv, (usize, &'static str)> {
        let mut values = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line
                .strip_prefix("export ")
                .map(str::trim_start)
                .unwrap_or(line);
            let (name, value) = line
                .split_once('=')
                .ok_or((index + 1, "expected NAME=VALUE"))?;
            let name = name.trim();
            if !is_variable_name(name) {
                return Err((index + 1, "variable name must be letters, digits and _"));
            }
            let value = unquote(value.trim()).ok_or((index + 1, "unterminated quote"))?;
            values.insert(name.to_string(), Zeroizing::new(value.to_string()));
        }
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

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Strips matching quotes; an unmatched opening quote is `None`. Unquoted values
/// lose a trailing ` # comment`.
fn unquote(value: &str) -> Option<&str> {
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote) {
            let end = rest.rfind(quote)?;
            return Some(&rest[..end]);
        }
    }
    Some(match value.find(" #") {
        Some(comment) => value[..comment].trim_end(),
        None => value,
    })
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

        /// Well-formed assignments always read back their value.
        #[test]
        fn assignments_read_back(name in "[A-Z_][A-Z0-9_]{0,20}", value in "[^\r\n\"'#]{0,40}") {
            let env = DotEnv::parse(&format!("{name}={value}\n")).unwrap();
            prop_assert_eq!(env.get(&name), Some(value.trim()));
        }
    }
}
