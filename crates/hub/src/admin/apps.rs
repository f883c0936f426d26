//! Registrations from the dashboard: list, register (the secret is shown
//! once, in this answer only), revoke, rotate a secret, mark an app as one
//! that never sends ACKs (`PATCH`, issue 19); browser apps (issue 16):
//! registered with `redirectUris` (a public client, no secret), their
//! consent shown and withdrawn (`/apps/{id}/consent`). Thin handlers over
//! `Hub::apps()`; the registry may touch the OS keyring, so calls run on
//! the blocking pool.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::audited;
use super::auth::json_error;
use crate::auth::AuthError;
use crate::Hub;

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/apps", get(list).post(register))
        .route("/apps/{client_id}", delete(revoke).patch(update))
        .route("/apps/{client_id}/rotate", post(rotate))
        .route(
            "/apps/{client_id}/consent",
            get(consent).delete(revoke_consent),
        )
}

fn refused(e: AuthError) -> Response {
    let status = match e {
        AuthError::UnknownClient => StatusCode::NOT_FOUND,
        AuthError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    json_error(status, &e.to_string())
}

/// Runs a registry call off the async workers.
async fn blocking<T: Send + 'static>(
    hub: Hub,
    f: impl FnOnce(&Hub) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(move || f(&hub)).await {
        Ok(r) => r.map_err(refused),
        Err(_) => Err(json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the app registry failed",
        )),
    }
}

async fn list(State(hub): State<Hub>) -> Response {
    match blocking(hub, |h| {
        let apps = h.apps().list();
        // What makes some of them browser apps, with the clinician's answer.
        let browser: serde_json::Map<String, serde_json::Value> = apps
            .iter()
            .filter_map(|a| {
                let b = h.auth().smart().app(&a.client_id)?;
                let consent = h.auth().smart().consent(&a.client_id);
                Some((
                    a.client_id.clone(),
                    json!({"redirectUris": b.redirect_uris, "launchUrl": b.launch_url,
                           "preapproved": b.preapproved, "consent": consent}),
                ))
            })
            .collect();
        Ok((apps, browser))
    })
    .await
    {
        Ok((apps, browser)) => {
            axum::Json(json!({"apps": apps, "browserApps": browser})).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct NewApp {
    name: String,
    /// Space-separated SMART scopes, e.g. `user/*.read user/*.write`.
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    topics: Vec<String>,
    /// `false`: a known client that never sends an ACK.
    #[serde(default)]
    acknowledges: Option<bool>,
    /// A browser app (SMART App Launch, PKCE): its exact redirect URIs.
    /// It gets no secret.
    #[serde(default, rename = "redirectUris")]
    redirect_uris: Vec<String>,
    /// Where the tray's "Open app" opens it (EHR launch).
    #[serde(default, rename = "launchUrl")]
    launch_url: Option<String>,
}

/// What `PATCH /apps/{client_id}` may change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppChange {
    acknowledges: bool,
}

async fn register(State(hub): State<Hub>, body: axum::body::Bytes) -> Response {
    let new: NewApp = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"name\", \"scopes\", \"topics\"}}: {e}"),
            )
        }
    };
    if new.name.trim().is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "an app needs a name");
    }
    let name = new.name.trim().to_owned();
    let scopes = new.scopes.clone();
    let registered = blocking(hub.clone(), move |h| {
        let (mut app, secret) = if new.redirect_uris.is_empty() {
            let (app, secret) = h
                .apps()
                .register(new.name.trim(), &new.scopes, new.topics)?;
            (app, Some(secret))
        } else {
            let browser = crate::auth::smart::BrowserApp {
                redirect_uris: new.redirect_uris,
                launch_url: new.launch_url,
                preapproved: false,
            };
            let app =
                h.auth()
                    .register_browser_app(new.name.trim(), &new.scopes, new.topics, browser)?;
            (app, None)
        };
        if let Some(acks) = new.acknowledges {
            h.apps().set_acknowledges(&app.client_id, acks)?;
            app.acknowledges = acks;
        }
        Ok((app, secret))
    })
    .await;
    let (detail, answer) = match registered {
        Ok((app, secret)) => (
            format!("register app {} ({name}), scopes {scopes}", app.client_id),
            (
                StatusCode::CREATED,
                axum::Json(json!({"app": app, "clientSecret": secret})),
            )
                .into_response(),
        ),
        Err(r) => (format!("register app ({name})"), r),
    };
    audited(&hub, None, detail, answer)
}

/// `{"acknowledges": false}` marks an app as one that never sends ACKs.
async fn update(
    State(hub): State<Hub>,
    Path(client_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let change: AppChange = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"acknowledges\": true|false}}: {e}"),
            )
        }
    };
    let id = client_id.clone();
    let acks = change.acknowledges;
    let answer = match blocking(hub.clone(), move |h| {
        h.apps().set_acknowledges(&id, acks)?;
        h.apps()
            .list()
            .into_iter()
            .find(|a| a.client_id == id)
            .ok_or(AuthError::UnknownClient)
    })
    .await
    {
        Ok(app) => axum::Json(json!({"app": app})).into_response(),
        Err(r) => r,
    };
    let what = if acks {
        "acknowledges"
    } else {
        "does not acknowledge"
    };
    audited(&hub, None, format!("mark app {client_id}: {what}"), answer)
}

async fn revoke(State(hub): State<Hub>, Path(client_id): Path<String>) -> Response {
    let id = client_id.clone();
    let answer = match blocking(hub.clone(), move |h| h.apps().revoke(&id)).await {
        Ok(()) => axum::Json(json!({"revoked": true})).into_response(),
        Err(r) => r,
    };
    audited(&hub, None, format!("revoke app {client_id}"), answer)
}

/// The clinician's answer for a browser app: `approved`, `denied` or
/// `null` (not asked yet).
async fn consent(State(hub): State<Hub>, Path(client_id): Path<String>) -> Response {
    match blocking(hub, move |h| {
        h.auth()
            .browser_app(&client_id)
            .ok_or(AuthError::UnknownClient)?;
        Ok(h.auth().smart().consent(&client_id))
    })
    .await
    {
        Ok(consent) => axum::Json(json!({"consent": consent})).into_response(),
        Err(r) => r,
    }
}

/// Withdraws the answer: the app's refresh tokens end and the next
/// sign-in asks the clinician again.
async fn revoke_consent(State(hub): State<Hub>, Path(client_id): Path<String>) -> Response {
    let id = client_id.clone();
    let answer = match blocking(hub.clone(), move |h| {
        h.auth().smart().app(&id).ok_or(AuthError::UnknownClient)?;
        h.auth().smart().revoke_consent(&id)
    })
    .await
    {
        Ok(()) => axum::Json(json!({"consent": null})).into_response(),
        Err(r) => r,
    };
    audited(
        &hub,
        None,
        format!("withdraw the consent of app {client_id}"),
        answer,
    )
}

async fn rotate(State(hub): State<Hub>, Path(client_id): Path<String>) -> Response {
    let id = client_id.clone();
    let answer = match blocking(hub.clone(), move |h| h.apps().rotate_secret(&id)).await {
        Ok(secret) => axum::Json(json!({"clientSecret": secret})).into_response(),
        Err(r) => r,
    };
    audited(
        &hub,
        None,
        format!("rotate the secret of app {client_id}"),
        answer,
    )
}
