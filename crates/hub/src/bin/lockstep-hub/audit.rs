//! `lockstep-hub audit export`.

use std::process::ExitCode;

use lockstep_hub::storage::{ExportFormat, Storage};

use crate::args::AuditAction;

/// `lockstep-hub audit export`: reads the database next to a running hub
/// (SQLite WAL lets readers in while it writes).
pub fn audit_command(action: AuditAction, data_dir: &std::path::Path) -> ExitCode {
    let AuditAction::Export {
        format,
        since,
        until,
        output,
    } = action;
    let format = match format.as_str() {
        "ndjson" => ExportFormat::Ndjson,
        "csv" => ExportFormat::Csv,
        other => {
            eprintln!("error: unknown format {other:?} (ndjson or csv)");
            return ExitCode::from(2);
        }
    };
    let parse = |s: Option<String>| s.as_deref().map(lockstep_hub::ids::parse_time).transpose();
    let (since, until) = match (parse(since), parse(until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let storage = match Storage::open(data_dir) {
        Ok((storage, _)) => storage,
        Err(e) => {
            eprintln!(
                "error: cannot open the database in {}: {e}",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let result = match output {
        Some(path) => std::fs::File::create(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|mut f| {
                storage
                    .export_audit(since, until, format, &mut f)
                    .map_err(|e| e.to_string())
            }),
        None => storage
            .export_audit(since, until, format, &mut std::io::stdout().lock())
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(n) => {
            eprintln!("{n} audit records");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
