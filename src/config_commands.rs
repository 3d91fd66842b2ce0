//! The `render` and `check` commands: config.csv views on the command line, no FUSE.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::command_output::{error_about, write_stdout};
use crate::config_csv::MissingReference;
use crate::daemon;
use crate::settings::Settings;
use crate::views;

/// Exit status of `render` when a reference cannot be resolved.
pub const UNRESOLVED_EXIT: u8 = 2;

/// `gbo-fs render PATH`: the resolved view on stdout. In `error` mode an
/// unresolvable reference prints one line per reference on stderr, nothing on
/// stdout, and exits 2; `empty` and `keep` print the view and warn.
pub fn render(settings: &Settings, source: &Path) -> Result<ExitCode, String> {
    let (runtime, fs) = daemon::one_shot_filesystem(settings)?;
    let rendered = runtime
        .block_on(fs.render_source(source))
        .map_err(|e| error_about(&source.display().to_string(), &e))?;
    for unresolved in &rendered.unresolved {
        eprintln!("{}:{unresolved}", source.display());
    }
    if settings.missing_reference == MissingReference::Error && !rendered.is_complete() {
        return Ok(ExitCode::from(UNRESOLVED_EXIT));
    }
    write_stdout(&rendered.bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// `gbo-fs check PATH | --bots DIR`: one line per reference, `ok` or the reason;
/// exits 1 if any reference fails. Never prints a value.
pub fn check(settings: &Settings, source: Option<&Path>) -> Result<ExitCode, String> {
    let sources: Vec<PathBuf> = match (source, &settings.views.bots_dir) {
        (Some(path), _) => vec![path.to_path_buf()],
        (None, Some(_)) => settings
            .views
            .packages()
            .into_iter()
            .flat_map(|(_, package)| views::bots_in(&package))
            .map(|(_, bot)| bot.join(views::VIEW_NAME))
            .collect(),
        (None, None) => return Err("check needs a config.csv path or --bots DIR".into()),
    };
    let (runtime, fs) = daemon::one_shot_filesystem(settings)?;
    let mut failures = 0;
    for source in &sources {
        let checks = runtime
            .block_on(fs.check_source(source))
            .map_err(|e| error_about(&source.display().to_string(), &e))?;
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
                source.display(),
                check.line,
                check.name,
                check.reference
            ));
        }
        write_stdout(report.as_bytes())?;
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
