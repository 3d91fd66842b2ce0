//! `gbo-fs status`: Vault's health as gbo-fs sees it (reachable, sealed, KV
//! layout, token lease) plus the serving daemon's counters, read from the
//! hidden control file `MOUNTPOINT/.gbo-fs/status.json`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::command_output::to_stdout;
use crate::daemon;
use crate::fs::{CONTROL_DIR, STATUS_FILE};
use crate::settings::Settings;
use crate::vault::{SecretStore, StoreError};

/// Runs the checks and prints them; exit 0 only when Vault is reachable,
/// unsealed, the token is valid and the KV mount is found.
pub fn status(settings: &Settings, mountpoint: &Path, as_json: bool) -> Result<ExitCode, String> {
    let runtime = daemon::runtime().map_err(|e| e.to_string())?;
    let (store, _) = daemon::build_filesystem(settings, None, None).map_err(|e| e.to_string())?;
    let report = runtime.block_on(async {
        let seal = store.status().await;
        // `sealed` is only what Vault said: unknown (null) when it could not be asked.
        let (reachable, sealed, version, vault_error) = match &seal {
            Ok(s) => (true, Some(s.sealed), s.version.clone(), None),
            Err(e @ StoreError::Sealed) => (true, Some(true), None, Some(e.to_string())),
            Err(e @ StoreError::Unreachable(_)) | Err(e @ StoreError::Timeout(_)) => {
                (false, None, None, Some(e.to_string()))
            }
            Err(e) => (true, None, None, Some(e.to_string())),
        };
        let usable = reachable && sealed == Some(false);
        let token = if usable {
            // With AppRole there is no token until a login: the report shows
            // whether that login works (a refused login reads as an invalid token).
            if let Some(login) = settings.upkeep.approle.as_ref() {
                let _ = crate::token::approle_login(&store, login).await;
            }
            token_report(&store).await
        } else {
            json!({"valid": Value::Null})
        };
        let layout = if !usable {
            Value::Null
        } else if token["valid"] == false {
            // Detection with a refused token can only fail; say why instead.
            json!({"error": format!("not looked up: {}", token["error"].as_str().unwrap_or(""))})
        } else {
            kv_report(&store, &settings.prefix).await
        };
        json!({
            "vault": {
                "address": settings.connection.addr,
                "reachable": reachable,
                "sealed": sealed,
                "version": version,
                "error": vault_error,
                "kv": layout,
            },
            "token": token,
        })
    });
    let mut report = report;
    report["daemon"] = daemon_report(mountpoint, settings.connection.timeout);
    // No daemon at all is Vault-only health; a daemon that is dead or hung is not healthy.
    let healthy = report["vault"]["reachable"] == true
        && report["vault"]["sealed"] == false
        && report["token"]["valid"] == true
        && report["vault"]["kv"]["error"].is_null()
        && report["daemon"]["error"].is_null();
    report["healthy"] = json!(healthy);
    to_stdout(|out| {
        if as_json {
            writeln!(out, "{report:#}")
        } else {
            write_human(&report, mountpoint, out)
        }
    })?;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The KV mount serving the namespace, or the error that stops reads. A mount named by
/// `--kv-mount` with `--kv-version` is not looked up at detection, so one LIST of the
/// namespace checks that Vault has it.
async fn kv_report(store: &crate::vault::http::VaultHttpStore, prefix: &str) -> Value {
    let layout = match store.layout().await {
        Ok(layout) => layout,
        Err(e) => return json!({"error": e.to_string()}),
    };
    if let Err(e @ StoreError::NoSuchMount(_)) = store.list_folder(prefix).await {
        return json!({"error": e.to_string()});
    }
    json!({"mount": layout.mount, "version": layout.version.to_string(), "base": layout.base})
}

/// lookup-self: TTL, renewable flag, policies. Never the token itself.
async fn token_report(store: &crate::vault::http::VaultHttpStore) -> Value {
    match store
        .request_json("GET", "auth/token/lookup-self", None)
        .await
    {
        Ok(Some(answer)) => {
            let data = &answer["data"];
            json!({
                "valid": true,
                "ttl_secs": data.get("ttl").and_then(Value::as_u64),
                // RustyVault puts `renewable` beside `data` rather than in it.
                "renewable": data.get("renewable").or(answer.get("renewable")).and_then(Value::as_bool),
                "policies": data.get("policies").cloned().unwrap_or(Value::Null),
            })
        }
        Ok(None) => json!({"valid": true, "note": "this server has no auth/token/lookup-self"}),
        Err(e) => match crate::token::token_refusal(&e) {
            Some(refusal) => json!({"valid": false, "error": refusal}),
            None => json!({"valid": Value::Null, "error": e.to_string()}),
        },
    }
}

/// The serving daemon's counters, or `null` when no gbo-fs mount is at
/// `mountpoint` (a file planted in a plain directory is not a daemon).
/// The serving daemon's counters: `null` when no gbo-fs mount is at `mountpoint`,
/// `{"error": ...}` when one is but its daemon is dead (a stale mount) or does not
/// answer within `limit`. The mount is only touched on a thread of its own, so a
/// stopped daemon cannot hang the command.
fn daemon_report(mountpoint: &Path, limit: Duration) -> Value {
    let real = daemon::real_mountpoint(mountpoint, true);
    if !daemon::is_gbo_fs_mount(&real) {
        return Value::Null;
    }
    let file = real.join(CONTROL_DIR).join(STATUS_FILE);
    let (done, answer) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("status-read".into())
        .spawn(move || {
            let _ = done.send(std::fs::read_to_string(&file));
        });
    if let Err(error) = spawned {
        return json!({"error": format!("cannot start a thread to ask the daemon: {error}")});
    }
    let shown = real.display();
    match answer.recv_timeout(limit) {
        Ok(Ok(text)) => serde_json::from_str(&text)
            .unwrap_or_else(|_| json!({"error": format!("{STATUS_FILE} is not JSON")})),
        Ok(Err(error)) if error.raw_os_error() == Some(libc::ENOTCONN) => json!({
            "error": format!(
                "dead mount at {shown}: its daemon exited without unmounting (readers get \
                 ENOTCONN); `gbo-fs unmount {shown}` clears it"
            )
        }),
        Ok(Err(error)) => json!({"error": format!("cannot read {STATUS_FILE}: {error}")}),
        Err(_) => json!({
            "error": format!(
                "the daemon serving {shown} did not answer within {} s (stopped or hung)",
                limit.as_secs_f64()
            )
        }),
    }
}

fn write_human(report: &Value, mountpoint: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let vault = &report["vault"];
    let address = vault["address"].as_str().unwrap_or("?");
    writeln!(out, "vault      {address}")?;
    writeln!(out, "reachable  {}", vault["reachable"])?;
    let sealed = vault["sealed"]
        .as_bool()
        .map_or("unknown".into(), |sealed| sealed.to_string());
    writeln!(out, "sealed     {sealed}")?;
    if let Some(version) = vault["version"].as_str() {
        writeln!(out, "version    {version}")?;
    }
    if let Some(error) = vault["error"].as_str() {
        writeln!(out, "error      {error}")?;
    }
    if vault["kv"].is_object() {
        let kv = &vault["kv"];
        match kv["error"].as_str() {
            Some(error) => writeln!(out, "kv         {error}"),
            None => writeln!(
                out,
                "kv         mount `{}` (KV v{}){}",
                kv["mount"].as_str().unwrap_or("?"),
                kv["version"].as_str().unwrap_or("?"),
                kv["base"]
                    .as_str()
                    .filter(|b| !b.is_empty())
                    .map(|b| format!(" at `{b}`"))
                    .unwrap_or_default()
            ),
        }?;
    }
    let token = &report["token"];
    writeln!(
        out,
        "token      valid={} ttl={} renewable={} policies={}",
        token["valid"], token["ttl_secs"], token["renewable"], token["policies"]
    )?;
    let daemon = &report["daemon"];
    if daemon.is_null() {
        writeln!(out, "daemon     not serving {}", mountpoint.display())?;
    } else if let Some(error) = daemon["error"].as_str() {
        writeln!(out, "daemon     {error}")?;
    } else {
        let cache = &daemon["cache"];
        writeln!(
            out,
            "daemon     pid {} up {}s; cache {} entries, hit ratio {:.2}, {} stale serves; {} Vault requests, {} errors",
            daemon["pid"], daemon["uptime_secs"], cache["entries"],
            cache["hit_ratio"].as_f64().unwrap_or(0.0), cache["stale_serves"],
            daemon["vault_requests"], daemon["vault_errors"]
        )?;
    }
    writeln!(out, "healthy    {}", report["healthy"])
}
