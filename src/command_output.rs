//! How one-shot commands report: stdout written through fallible writes (a
//! closed pipe ends the command with `gbo-fs: stdout: Broken pipe`, never a
//! panic), and errors that name the path or address the user gave exactly once.

use std::io::Write;

use crate::fs::FsError;
use crate::vault::StoreError;

/// Runs `write` on the locked stdout and flushes it. A failed write, e.g. to a
/// pipe whose reader has gone (Rust ignores SIGPIPE, so that is `EPIPE`), is
/// the error `stdout: <reason>`.
pub fn to_stdout(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    write(&mut stdout)
        .and_then(|_| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// Writes `bytes` to stdout as [`to_stdout`] does.
pub fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    to_stdout(|out| out.write_all(bytes))
}

/// `text` with control characters (a carriage return, a terminal escape) shown
/// escaped, so text taken from a config.csv cannot fake output lines or drive the
/// terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let escaped = text
        .chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect();
    std::borrow::Cow::Owned(escaped)
}

/// Why a file could not be used, worded as the other gbo-fs errors are
/// (`no such file or directory`).
pub fn io_problem(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => FsError::NotFound.to_string(),
        _ => error.to_string(),
    }
}

/// The message for `error` about `subject`, the path the user gave: prefixed
/// with that path unless the error already starts with it.
pub fn error_about(subject: &str, error: &FsError) -> String {
    let names_subject = match error {
        FsError::Store { path, .. } => path.trim_matches('/') == subject.trim_matches('/'),
        FsError::Source { file, .. } | FsError::Unresolved { file, .. } => file == subject,
        _ => false,
    };
    if names_subject {
        error.to_string()
    } else {
        format!("{subject}: {error}")
    }
}

/// The message for `error` from the Vault at `address`: prefixed with the
/// address unless the error (Vault unreachable) already names it.
pub fn vault_error_at(address: &str, error: &StoreError) -> String {
    match error {
        StoreError::Unreachable(_) => error.to_string(),
        _ => format!("{address}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_about_the_path_asked_for_names_it_once() {
        let sealed_listing = FsError::Store {
            path: "gbo".into(),
            source: StoreError::Sealed,
        };
        assert_eq!(error_about("gbo/", &sealed_listing), "gbo: Vault is sealed");
        assert_eq!(
            error_about("gbo/llm/key", &sealed_listing),
            "gbo/llm/key: gbo: Vault is sealed",
            "the secret behind a file is a second, useful path"
        );
        let unreadable = FsError::Source {
            file: "/tmp/dir".into(),
            reason: "Is a directory (os error 21)".into(),
        };
        assert_eq!(
            error_about("/tmp/dir", &unreadable),
            "/tmp/dir: Is a directory (os error 21)"
        );
        assert_eq!(
            error_about("gbo/x", &FsError::NotFound),
            "gbo/x: no such file or directory"
        );
    }
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_other_text_is_kept() {
        assert_eq!(printable("llm-api-key"), "llm-api-key");
        assert_eq!(printable("clé ünïcode"), "clé ünïcode");
        assert_eq!(
            printable("k\u{1b}[31m,vault:gbo/x\rINFO all good"),
            "k\\u{1b}[31m,vault:gbo/x\\rINFO all good"
        );
    }
}
