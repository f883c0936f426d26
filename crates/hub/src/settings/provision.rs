//! The `[[apps]]` of the settings files into a hub's registry (and, for
//! browser apps, its SMART table): at every start, never overwriting a
//! secret the CLI rotated, never reviving a revoked app.

use super::Settings;

impl Settings {
    /// `provision_apps` into a running hub, with what happened in the log.
    pub fn provision_into(&self, hub: &crate::Hub) {
        let (notes, mut warnings) = self.provision_apps(hub.apps());
        for app in self.apps.iter().filter(|a| !a.redirect_uris.is_empty()) {
            let browser = crate::auth::smart::BrowserApp {
                redirect_uris: app.redirect_uris.clone(),
                launch_url: app.launch_url.clone(),
                preapproved: app.preapproved,
            };
            if hub.auth().smart().app(&app.client_id).as_ref() != Some(&browser) {
                if let Err(e) = hub.auth().smart().save_app(&app.client_id, browser) {
                    warnings.push(format!("app {} from a settings file: {e}", app.client_id));
                }
            }
        }
        notes.iter().for_each(|n| tracing::info!("{n}"));
        warnings.iter().for_each(|w| tracing::warn!("{w}"));
    }

    /// Registers the `[[apps]]` in `registry` (see `AppRegistry::provision`).
    /// Returns what to tell the admin: `(info, warnings)`. Secrets are never
    /// part of either.
    pub fn provision_apps(
        &self,
        registry: &crate::auth::AppRegistry,
    ) -> (Vec<String>, Vec<String>) {
        use crate::auth::Provisioned;
        let (mut info, mut warn) = (Vec::new(), Vec::new());
        for app in &self.apps {
            let id = &app.client_id;
            let result = registry.provision(
                id,
                &app.name,
                &app.scopes,
                app.topics.clone(),
                app.secret.as_deref(),
            );
            match result {
                Ok(Provisioned::Added { secret_stored }) => {
                    info.push(format!("registered app {id} ({}) from a settings file", app.name));
                    if !secret_stored && app.redirect_uris.is_empty() {
                        warn.push(format!(
                            "app {id} has no client secret yet: run `lockstep-hub apps rotate-secret {id}`"
                        ));
                    }
                }
                Ok(Provisioned::Updated { .. }) => {
                    info.push(format!("updated app {id} from a settings file"))
                }
                Ok(Provisioned::Unchanged { secret_stored }) => {
                    if app.secret.is_some() && !secret_stored {
                        warn.push(format!(
                            "a settings file still holds the client secret of app {id}, which is in the secret store already: remove it from the file"
                        ));
                    }
                }
                Ok(Provisioned::Revoked) => warn.push(format!(
                    "app {id} is listed in a settings file but was revoked on this machine; left revoked"
                )),
                Err(e) => warn.push(format!("app {id} from a settings file: {e}")),
            }
            if let Some(acks) = app.acknowledges {
                match registry.set_acknowledges(id, acks) {
                    Ok(true) if acks => info.push(format!("app {id} acknowledges (settings file)")),
                    Ok(true) => info.push(format!(
                        "app {id} does not acknowledge (settings file): never dropped for a missing ACK"
                    )),
                    Ok(false) => {}
                    Err(e) => warn.push(format!("app {id} from a settings file: {e}")),
                }
            }
        }
        (info, warn)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::files;
    use super::*;

    #[test]
    fn apps_are_provisioned_once_with_their_secret() {
        use crate::auth::{AppRegistry, MemoryStore};
        let secret = "k".repeat(43);
        let f = files(
            Some(&format!(
                "[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\nsecret = \"{secret}\"\n\n[[apps]]\nclient_id = \"dict\"\nname = \"Dictation\"\nscopes = \"fhircast/*.write\"\n"
            )),
            None,
        );
        let s = Settings::load(&f.layout).unwrap();
        let registry =
            AppRegistry::load(None, None, std::sync::Arc::new(MemoryStore::default())).unwrap();
        let (info, warn) = s.provision_apps(&registry);
        assert_eq!(info.len(), 2);
        assert_eq!(warn.len(), 1, "{warn:?}");
        assert!(warn[0].contains("rotate-secret dict"));
        assert!(!format!("{info:?}{warn:?}").contains(&secret));
        assert!(registry.authenticate("ris", &secret).is_ok());
        assert!(registry.authenticate("dict", "anything").is_err());

        // Second start: nothing new; the file should lose its secret.
        let (info, warn) = s.provision_apps(&registry);
        assert!(info.is_empty());
        assert!(
            warn.iter().any(|w| w.contains("remove it from the file")),
            "{warn:?}"
        );
        // A rotated secret is not overwritten by the file's.
        let rotated = registry.rotate_secret("ris").unwrap();
        s.provision_apps(&registry);
        assert!(registry.authenticate("ris", &rotated).is_ok());
        assert!(registry.authenticate("ris", &secret).is_err());
        // A revoked app stays revoked.
        registry.revoke("ris").unwrap();
        let (_, warn) = s.provision_apps(&registry);
        assert!(warn.iter().any(|w| w.contains("left revoked")));
        assert!(registry.authenticate("ris", &rotated).is_err());
    }

    /// Issue 19: `acknowledges = false` in `[[apps]]` marks the app; an
    /// entry without the key leaves what the CLI or the dashboard chose.
    #[test]
    fn apps_acknowledges_round_trip() {
        use crate::auth::{AppRegistry, MemoryStore};
        let f = files(
            Some("[[apps]]\nclient_id = \"ohif\"\nname = \"OHIF\"\nscopes = \"fhircast/*.read\"\nacknowledges = false\n\n[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\n"),
            None,
        );
        let s = Settings::load(&f.layout).unwrap();
        assert_eq!(s.apps[0].acknowledges, Some(false));
        assert_eq!(s.apps[1].acknowledges, None);
        let registry =
            AppRegistry::load(None, None, std::sync::Arc::new(MemoryStore::default())).unwrap();
        let (info, _) = s.provision_apps(&registry);
        assert!(
            info.iter().any(|i| i.contains("ohif does not acknowledge")),
            "{info:?}"
        );
        assert!(!registry.acknowledges("ohif"));
        assert!(registry.acknowledges("ris"));
        // Set elsewhere (CLI, dashboard): the entry without the key keeps it.
        registry.set_acknowledges("ris", false).unwrap();
        let (info, _) = s.provision_apps(&registry);
        assert!(info.is_empty(), "{info:?}");
        assert!(!registry.acknowledges("ris"));
        // A value that is not a boolean is a file error with its line.
        let bad = files(
            Some("[[apps]]\nclient_id = \"o\"\nname = \"O\"\nscopes = \"fhircast/*.read\"\nacknowledges = \"no\"\n"),
            None,
        );
        let e = Settings::load(&bad.layout).unwrap_err().to_string();
        assert!(e.contains("line 5"), "{e}");
    }
}
