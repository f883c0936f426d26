//! `GET /admin/api/audit?format=ndjson|csv&since=…&until=…`: the audit
//! trail for support staff, the same export as `lockstep-hub audit export`.

use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::storage::ExportFormat;
use crate::Hub;

#[derive(Deserialize)]
pub(crate) struct Params {
    format: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

fn parse_time(s: &Option<String>) -> Result<Option<SystemTime>, String> {
    s.as_deref().map(crate::ids::parse_time).transpose()
}

pub(crate) async fn export(State(hub): State<Hub>, Query(params): Query<Params>) -> Response {
    let (format, content_type, file) = match params.format.as_deref().unwrap_or("ndjson") {
        "ndjson" => (
            ExportFormat::Ndjson,
            "application/x-ndjson",
            "lockstep-audit.ndjson",
        ),
        "csv" => (
            ExportFormat::Csv,
            "text/csv; charset=utf-8",
            "lockstep-audit.csv",
        ),
        other => {
            return super::auth::json_error(
                StatusCode::BAD_REQUEST,
                &format!("unknown format {other:?} (ndjson or csv)"),
            )
        }
    };
    let (since, until) = match (parse_time(&params.since), parse_time(&params.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return super::auth::json_error(StatusCode::BAD_REQUEST, &e),
    };
    let Some(storage) = hub.storage().cloned() else {
        return super::auth::json_error(
            StatusCode::NOT_FOUND,
            "this hub keeps no audit trail (--no-persist)",
        );
    };
    // Everything recorded before this request is in the export.
    if let Err(e) = storage.flush().await {
        return super::auth::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("export failed: {e}"),
        );
    }
    // The export reads SQLite: keep it off the async workers.
    let exported = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        storage
            .export_audit(since, until, format, &mut out)
            .map(|_| out)
    })
    .await;
    match exported {
        Ok(Ok(body)) => (
            [
                (header::CONTENT_TYPE, content_type.to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}\""),
                ),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            body,
        )
            .into_response(),
        Ok(Err(e)) => super::auth::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("export failed: {e}"),
        ),
        Err(e) => super::auth::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("export failed: {e}"),
        ),
    }
}
