//! The `render` and `check` commands: config.csv views on the command line, no
//! FUSE. Sources without a `vault:` reference need no Vault settings and no Vault.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::GlobalOptions;
use crate::command_output::{error_about, io_problem, printable, write_stdout};
use crate::config_csv::{self, MissingReference};
use crate::daemon;
use crate::settings;
use crate::source_access::SourceReader;
use crate::views::ConfigSources;

/// Exit status of `render` when a reference cannot be resolved.
pub const UNRESOLVED_EXIT: u8 = 2;

/// The process environment, as [`settings::resolve`] reads it.
pub type Environment<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `gbo-fs render PATH`: the resolved view on stdout. In `error` mode an
/// unresolvable reference prints one line per reference on stderr, nothing on
/// stdout, and exits 2; `empty` and `keep` print the view and warn. A source
/// without references is printed as it is.
pub fn render(
    options: &GlobalOptions,
    environment: Environment,
    source: &Path,
) -> Result<ExitCode, String> {
    let text = read_source(source)?;
    if !has_references(&text) {
        write_stdout(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let settings = &settings::resolve(options, environment).map_err(|e| e.to_string())?;
    let (runtime, fs) = daemon::one_shot_filesystem(settings)?;
    let rendered = runtime
        .block_on(fs.render_source(source))
        .map_err(|e| error_about(&source.display().to_string(), &e))?;
    for unresolved in &rendered.unresolved {
        eprintln!(
            "{}",
            printable(&format!("{}:{unresolved}", source.display()))
        );
    }
    if settings.missing_reference == MissingReference::Error && !rendered.is_complete() {
        return Ok(ExitCode::from(UNRESOLVED_EXIT));
    }
    write_stdout(&rendered.bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// `gbo-fs check [PATH] [--config-csv FILE] [--bots DIR]`: one line per
/// reference, `ok` or the reason; exits 1 if any reference fails. Never prints
/// a value. Sources without references print nothing and exit 0.
pub fn check(
    options: &GlobalOptions,
    environment: Environment,
    source: Option<&Path>,
) -> Result<ExitCode, String> {
    let views = ConfigSources {
        config_csv: options.config_csv.clone(),
        bots_dir: options.bots.clone(),
        mountpoint: None,
        ..ConfigSources::default()
    };
    let sources = sources_to_check(source, &views)?;
    // A source that cannot be read is one failure among the others: every source
    // is still checked and reported.
    let mut failures = 0;
    let mut unreadable = Vec::new();
    let mut with_references = Vec::new();
    for source in &sources {
        match read_source(source) {
            Ok(text) if has_references(&text) => with_references.push(source),
            Ok(_) => {}
            Err(reason) => unreadable.push(printable(&reason).into_owned() + "\n"),
        }
    }
    failures += unreadable.len();
    write_stdout(unreadable.concat().as_bytes())?;
    if with_references.is_empty() {
        return Ok(exit_for(failures));
    }
    let settings = &settings::resolve(options, environment).map_err(|e| e.to_string())?;
    let (runtime, fs) = daemon::one_shot_filesystem(settings)?;
    for source in with_references {
        let shown = source.display().to_string();
        let checks = match runtime.block_on(fs.check_source(source)) {
            Ok(checks) => checks,
            Err(error) => {
                failures += 1;
                let line = printable(&error_about(&shown, &error)).into_owned() + "\n";
                write_stdout(line.as_bytes())?;
                continue;
            }
        };
        let mut report = String::new();
        for check in checks {
            let verdict = match &check.problem {
                None => "ok",
                Some(reason) => {
                    failures += 1;
                    reason
                }
            };
            report.push_str(&format!(
                "{}:{}: {} {} {verdict}\n",
                printable(&shown),
                check.line,
                printable(&check.name),
                printable(&check.reference)
            ));
        }
        write_stdout(report.as_bytes())?;
    }
    Ok(exit_for(failures))
}

fn exit_for(failures: usize) -> ExitCode {
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every config.csv `check` reads: PATH, then `--config-csv`, then every bot's
/// under `--bots`. A `--config-csv` or `--bots` that is missing is an error, and
/// so is a `--bots` directory holding no bot (nothing would be checked).
fn sources_to_check(path: Option<&Path>, views: &ConfigSources) -> Result<Vec<PathBuf>, String> {
    if path.is_none() && *views == ConfigSources::default() {
        return Err("check needs a config.csv path, --config-csv FILE or --bots DIR".into());
    }
    views.require_present()?;
    let bot_views = views.bot_views();
    if let (Some(bots), true) = (&views.bots_dir, bot_views.is_empty()) {
        return Err(format!(
            "--bots {}: no bot config.csv in it (expected <name>.gbai/<bot>.gbot/config.csv)",
            bots.display()
        ));
    }
    Ok(path
        .map(Path::to_path_buf)
        .into_iter()
        .chain(views.config_csv.clone())
        .chain(bot_views)
        .collect())
}

/// The bytes of a config.csv source, read as the daemon reads sources (no FIFO
/// wait, regular files up to 4 MiB, nothing under /proc), or an error naming it.
fn read_source(source: &Path) -> Result<Vec<u8>, String> {
    let reader = SourceReader::new(nix::unistd::geteuid().as_raw(), None);
    reader.read(source).map_err(|e| {
        let problem = io_problem(&e);
        let shown = source.display().to_string();
        match problem.starts_with(&shown) {
            true => problem,
            false => format!("{shown}: {problem}"),
        }
    })
}

/// Whether the source has a `vault:` reference (malformed ones included).
fn has_references(text: &[u8]) -> bool {
    !config_csv::find_references(text).is_empty()
}
