//! Owns `gbo-fs completions` and `gbo-fs man`: shell completions and roff man
//! pages, all generated from the clap definitions in [`crate::cli`].

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

/// Writes gbo-fs.1 and one page per visible command (gbo-fs-mount.1, ...) into
/// `dir`, which must exist; returns the files written, sorted.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such directory",
        ));
    }
    clap_mangen::generate_to(Cli::command().name(BINARY_NAME), dir)?;
    let mut pages: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(BINARY_NAME) && name.ends_with(".1"))
        })
        .collect();
    pages.sort();
    Ok(pages)
}
