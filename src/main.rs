//! The `gbo-fs` binary: parses the command line, sets up logging, runs a subcommand.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use gbo_fs::cli::{Cli, Command, GlobalOptions};
use gbo_fs::daemon;
use gbo_fs::fs::NodeType;
use gbo_fs::settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("gbo-fs: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let environment = |name: &str| std::env::var(name).ok();
    let settings = settings::resolve(&cli.global, &environment).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Mount(args) => {
            daemon::run_mount(settings, args).map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { path } => {
            let runtime = daemon::runtime().map_err(|e| e.to_string())?;
            let (_, fs) =
                daemon::build_filesystem(&settings, None, None).map_err(|e| e.to_string())?;
            let value = runtime
                .block_on(fs.read_path(&path))
                .map_err(|e| format!("{path}: {e}"))?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&value)
                .and_then(|_| stdout.flush())
                .map_err(|e| format!("stdout: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { path } => {
            let runtime = daemon::runtime().map_err(|e| e.to_string())?;
            let (_, fs) =
                daemon::build_filesystem(&settings, None, None).map_err(|e| e.to_string())?;
            let mut entries = runtime
                .block_on(fs.list_path(&path))
                .map_err(|e| format!("{}: {e}", if path.is_empty() { "/" } else { &path }))?;
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let mut stdout = std::io::stdout().lock();
            for entry in entries {
                let suffix = if entry.kind == NodeType::Directory {
                    "/"
                } else {
                    ""
                };
                writeln!(stdout, "{}{suffix}", entry.name).map_err(|e| format!("stdout: {e}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs to stderr. `-v` raises the level, RUST_LOG overrides it; HTTP and FUSE
/// internals stay at `warn` so request and reply bodies never reach a log.
fn init_logging(options: &GlobalOptions) {
    use tracing_subscriber::EnvFilter;
    let level = match options.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    for quiet in [
        "rustify",
        "vaultrs",
        "reqwest",
        "hyper",
        "hyper_util",
        "h2",
        "rustls",
        "fuser",
    ] {
        if let Ok(directive) = format!("{quiet}=warn").parse() {
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
