//! The `gbo-fs` binary: parses the command line, sets up logging, runs a subcommand.

use std::process::ExitCode;

use clap::Parser;
use gbo_fs::cli::{Cli, Command, GlobalOptions};
use gbo_fs::command_output::{error_about, to_stdout, vault_error_at, write_stdout};
use gbo_fs::daemon;
use gbo_fs::fs::NodeType;
use gbo_fs::settings;

fn main() -> ExitCode {
    // Fewer glibc malloc arenas: the worker threads would otherwise each grow
    // their own, multiplying the resident size of a small cache.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Mount(_) | Command::Premount(_));
    init_logging(&cli.global, daemon);
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("gbo-fs: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    // Every command may hold a token or secrets: no core dumps, no ptrace.
    gbo_fs::hardening::harden_process(cli.global.mlock)?;
    if let Some(result) = run_without_vault_settings(&cli) {
        return result;
    }
    let environment = |name: &str| std::env::var(name).ok();
    match &cli.command {
        Command::Unseal(args) => {
            gbo_fs::unseal::run_command(&cli.global, args.keys_file.as_deref(), &environment)?;
            return Ok(ExitCode::SUCCESS);
        }
        // Vault settings only when a source has a reference to resolve.
        Command::Render { path } => {
            return gbo_fs::config_commands::render(&cli.global, &environment, path)
        }
        Command::Check { path } => {
            return gbo_fs::config_commands::check(&cli.global, &environment, path.as_deref())
        }
        _ => {}
    }
    let settings = settings::resolve(&cli.global, &environment).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Mount(args) => {
            daemon::run_mount(settings, args).map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { mountpoint, json } => {
            gbo_fs::status_command::status(&settings, &mountpoint, json)
        }
        Command::Migrate(args) => {
            let env_file = cli
                .global
                .env_file
                .clone()
                .unwrap_or_else(|| settings::DEFAULT_ENV_FILE.into());
            let options = gbo_fs::migrate::MigrateOptions {
                dry_run: args.dry_run,
                force: args.force,
            };
            let env_token = match &args.env_token_file {
                Some(path) => Some(
                    settings::read_secret_file("--env-token-file", path, "the .env's Vault token")
                        .map_err(|e| e.to_string())?,
                ),
                None => None,
            };
            gbo_fs::migrate::run(&settings, &env_file, options, env_token)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy => {
            let runtime = daemon::runtime().map_err(|e| e.to_string())?;
            let (store, _) =
                daemon::build_filesystem(&settings, None, None).map_err(|e| e.to_string())?;
            // A refused token is reported as such, not as an undetectable KV mount.
            let approle = settings.upkeep.approle.as_ref();
            gbo_fs::token::authenticate_one_shot(&store, approle, &runtime)?;
            let layout = runtime
                .block_on(store.layout())
                .map_err(|e| vault_error_at(store.address(), &e))?;
            write_stdout(gbo_fs::policy::readonly_policy(layout).as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { .. }
        | Command::Man { .. }
        | Command::Unseal(_)
        | Command::Render { .. }
        | Command::Check { .. }
        | Command::Premount(_)
        | Command::Unmount { .. } => Ok(ExitCode::SUCCESS),
        Command::Get { path } => {
            settings.views.require_present()?;
            let (runtime, fs) = daemon::one_shot_filesystem(&settings)?;
            let value = runtime
                .block_on(fs.read_path(&path))
                .map_err(|e| error_about(&path, &e))?;
            write_stdout(&value)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { path } => {
            settings.views.require_present()?;
            let (runtime, fs) = daemon::one_shot_filesystem(&settings)?;
            let mut entries = runtime
                .block_on(fs.list_path(&path))
                .map_err(|e| error_about(if path.is_empty() { "/" } else { &path }, &e))?;
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            to_stdout(|out| {
                for entry in entries {
                    let suffix = if entry.kind == NodeType::Directory {
                        "/"
                    } else {
                        ""
                    };
                    writeln!(out, "{}{suffix}", entry.name)?;
                }
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Commands that need no Vault settings: completions, the man page, and the
/// policy when `--kv-mount` and `--kv-version` name the layout.
fn run_without_vault_settings(cli: &Cli) -> Option<Result<ExitCode, String>> {
    match &cli.command {
        Command::Completions { shell } => Some(
            to_stdout(|out| gbo_fs::cli_docs::write_completions(*shell, out))
                .map(|_| ExitCode::SUCCESS),
        ),
        Command::Premount(args) => Some(
            gbo_fs::premount::run_premount(args)
                .map(|_| ExitCode::SUCCESS)
                .map_err(|e| e.to_string()),
        ),
        Command::Unmount { mountpoint } => Some(
            gbo_fs::premount::run_unmount(mountpoint)
                .map(|outcome| {
                    if outcome == gbo_fs::premount::Unmounted::NothingMounted {
                        eprintln!("gbo-fs: {}: nothing mounted", mountpoint.display());
                    }
                    ExitCode::SUCCESS
                })
                .map_err(|e| e.to_string()),
        ),
        Command::Man { dir: None } => {
            Some(to_stdout(|out| gbo_fs::cli_docs::write_man_page(out)).map(|_| ExitCode::SUCCESS))
        }
        Command::Man { dir: Some(dir) } => Some(
            gbo_fs::cli_docs::write_man_pages(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))
                .and_then(|pages| {
                    let list: String = pages.iter().map(|p| format!("{}\n", p.display())).collect();
                    write_stdout(list.as_bytes())
                })
                .map(|_| ExitCode::SUCCESS),
        ),
        Command::Policy => match gbo_fs::policy::layout_from_flags(&cli.global) {
            Ok(Some(layout)) => Some(
                write_stdout(gbo_fs::policy::readonly_policy(&layout).as_bytes())
                    .map(|_| ExitCode::SUCCESS),
            ),
            Ok(None) => None,
            Err(message) => Some(Err(message)),
        },
        _ => None,
    }
}

/// Logs to stderr: `info` for the daemon, `warn` for one-shot commands; `-v`
/// raises the level and RUST_LOG overrides it. HTTP and FUSE internals stay at
/// `warn` so request and reply bodies never reach a log; vaultrs and rustify are
/// silenced because they log every 404 as an error (gbo-fs logs failures itself,
/// with the path).
fn init_logging(options: &GlobalOptions, daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match options.verbose {
        0 if daemon => "info",
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let clamps = [
        ("rustify", "off"),
        ("vaultrs", "off"),
        ("reqwest", "warn"),
        ("hyper", "warn"),
        ("hyper_util", "warn"),
        ("h2", "warn"),
        ("rustls", "warn"),
        ("fuser", "warn"),
    ];
    for (target, clamp) in clamps {
        if let Ok(directive) = format!("{target}={clamp}").parse() {
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
