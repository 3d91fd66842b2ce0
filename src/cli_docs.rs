//! Owns `gbo-fs completions` and `gbo-fs man`: shell completions and a roff man
//! page, both generated from the clap definitions in [`crate::cli`].

use std::io::Write;

use clap::CommandFactory;
pub use clap_complete::Shell;

use crate::cli::Cli;

/// The name completions and the man page are written for.
const BINARY_NAME: &str = "gbo-fs";

/// Writes the completion script for `shell`. clap_complete panics when its
/// writer fails, so the script is generated in memory and then written.
pub fn write_completions(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BINARY_NAME, &mut script);
    out.write_all(&script)
}

/// Writes the man page (roff) for gbo-fs(1).
pub fn write_man_page(out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command().name(BINARY_NAME)).render(out)
}
