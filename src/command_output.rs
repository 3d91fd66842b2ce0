//! How one-shot commands write stdout: through fallible writes, so a closed
//! pipe ends the command with `gbo-fs: stdout: Broken pipe`, never a panic.

use std::io::Write;

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
