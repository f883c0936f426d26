//! `lockstep-hub apps …`: registrations, without a running hub.

use std::path::PathBuf;
use std::process::ExitCode;

use lockstep_hub::auth::{self, SecretStore};
use lockstep_hub::storage::Storage;

use crate::args::AppsAction;

/// `lockstep-hub apps …`: works on the registry file and the secret store
/// directly. A running hub sees the change on its next start.
pub fn apps_command(
    action: AppsAction,
    data_dir: PathBuf,
    store: std::sync::Arc<dyn SecretStore>,
) -> ExitCode {
    let db = match Storage::open(&data_dir) {
        Ok((db, _)) => db,
        Err(e) => {
            eprintln!(
                "error: cannot open the database in {}: {e}",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let smart = auth::smart::Smart::new(store.clone());
    let registry =
        match auth::AppRegistry::load(Some(db.clone()), Some(data_dir.join("apps.json")), store) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    let result = match action {
        AppsAction::Add {
            name,
            scopes,
            topics,
            no_ack,
            redirect_uris,
            launch_url,
            ..
        } if !redirect_uris.is_empty() => {
            let browser = auth::smart::BrowserApp {
                redirect_uris,
                launch_url,
                preapproved: false,
            };
            browser
                .checked()
                .and_then(|browser| {
                    let app = registry.register_public(&name, &scopes, topics)?;
                    if let Err(e) = smart.save_app(&app.client_id, browser.clone()) {
                        let _ = registry.remove(&app.client_id);
                        return Err(e);
                    }
                    if no_ack {
                        registry.set_acknowledges(&app.client_id, false)?;
                    }
                    Ok((app, browser))
                })
                .map(|(app, browser)| {
                    println!("client_id:     {}", app.client_id);
                    println!("auth:          public client (SMART launch, PKCE S256; no secret)");
                    println!("redirect_uris: {}", browser.redirect_uris.join(" "));
                    println!("origins:       {}", browser.origins().join(" "));
                    if let Some(url) = &browser.launch_url {
                        println!("launch_url:    {url}");
                    }
                    println!("scopes:        {}", app.scopes.join(" "));
                    println!("topics:        {}", app.topics.join(" "));
                })
        }
        AppsAction::ForgetConsent { client_id } => match smart.app(&client_id) {
            Some(_) => smart.revoke_consent(&client_id),
            None => Err(auth::AuthError::UnknownClient),
        },
        AppsAction::Add {
            name,
            scopes,
            topics,
            jwks,
            jwks_url,
            secret,
            no_ack,
            ..
        } => {
            let jwks = match jwks.map(|p| read_jwks(&p)).transpose() {
                Ok(j) => j,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let keys = public_keys(&jwks, &jwks_url);
            let with_secret = keys.is_none() || secret;
            registry
                .register_app(&name, &scopes, topics, keys, with_secret)
                .and_then(|(mut app, secret)| {
                    if no_ack {
                        registry.set_acknowledges(&app.client_id, false)?;
                        app.acknowledges = false;
                    }
                    Ok((app, secret))
                })
                .map(|(app, secret)| {
                    println!("client_id:     {}", app.client_id);
                    if let Some(secret) = &secret {
                        println!("client_secret: {secret}");
                    }
                    if app.private_key_jwt {
                        println!("auth:          private_key_jwt (registered public keys)");
                    }
                    println!("scopes:        {}", app.scopes.join(" "));
                    println!("topics:        {}", app.topics.join(" "));
                    if !app.acknowledges {
                        println!("acks:          no (never dropped for a missing ACK)");
                    }
                    if secret.is_some() {
                        eprintln!("Keep the secret now: it is not shown again.");
                    }
                })
        }
        AppsAction::List => {
            for app in registry.list() {
                let state = if app.revoked { "revoked" } else { "active" };
                let acks = if app.acknowledges { "acks" } else { "no-ack" };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{acks}",
                    app.client_id,
                    app.name,
                    state,
                    app.scopes.join(" "),
                    app.topics.join(" ")
                );
            }
            Ok(())
        }
        AppsAction::SetAck {
            client_id,
            acknowledges,
        } => registry
            .set_acknowledges(&client_id, acknowledges)
            .map(|_| match acknowledges {
                true => println!("{client_id} acknowledges"),
                false => println!("{client_id} does not acknowledge"),
            }),
        AppsAction::Remove { client_id } => registry
            .revoke(&client_id)
            .map(|()| println!("revoked {client_id}")),
        AppsAction::SetJwks {
            client_id,
            jwks,
            jwks_url,
        } => match jwks.map(|p| read_jwks(&p)).transpose() {
            Ok(text) => match public_keys(&text, &jwks_url) {
                Some(keys) => registry
                    .set_keys(&client_id, keys)
                    .map(|()| println!("new keys for {client_id}")),
                None => Err(auth::AuthError::Invalid("give --jwks or --jwks-url".into())),
            },
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        AppsAction::RotateSecret { client_id } => {
            registry.rotate_secret(&client_id).map(|secret| {
                println!("client_secret: {secret}");
                eprintln!("Keep the secret now: it is not shown again.");
            })
        }
    };
    // The registry queues its writes; be sure they are on disk before exiting.
    if let Err(e) = db.flush().wait() {
        eprintln!("error: could not save: {e}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn public_keys<'a>(
    jwks: &'a Option<String>,
    url: &'a Option<String>,
) -> Option<auth::PublicKeys<'a>> {
    match (jwks, url) {
        (Some(text), _) => Some(auth::PublicKeys::Set(text)),
        (None, Some(url)) => Some(auth::PublicKeys::Url(url)),
        (None, None) => None,
    }
}

/// A JWK set file, read whole (public keys: no secret handling needed).
fn read_jwks(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}
