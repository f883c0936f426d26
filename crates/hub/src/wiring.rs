//! `Hub::new`: the hub core wired to what it needs at start, above it in
//! the dependency order. The database is opened and what it holds is
//! recovered (`persist.rs`); the core gets its recorders: durability
//! (`durability.rs`, when the hub keeps durable state) and the dashboard
//! (`admin/`), in that order.

use crate::admin::Admin;
use crate::durability::Durability;
use crate::recorder::Recorders;
use crate::state::State;
use crate::{Config, Hub};

impl Hub {
    pub fn new(config: Config) -> Self {
        let opened = crate::persist::open(&config);
        let storage = opened.as_ref().map(|(s, _)| s.clone());
        let auth = crate::auth::Auth::new(
            !config.no_auth,
            config.secret_store.clone(),
            storage.clone(),
            Some(config.data_dir.join("apps.json")),
            session_topic(&config.data_dir),
            config.token_lifetime,
        )
        .with_issuers(config.external_issuers.clone(), config.jwks_policy);
        let mut state = State::new(auth.session_topic().to_owned());
        let mut record = Recorders::default();
        if let Some((db, report)) = opened {
            let restored = crate::persist::recover(&mut state, &db, &report, &config, &auth);
            record.add(Durability::new(db, restored));
        }
        record.add(Admin::new());
        Hub::from_parts(config, auth, state, record)
    }
}

/// The session topic: kept in the data folder so apps that reconnect after
/// a restart find the same session; a fresh random one if none is stored.
fn session_topic(data_dir: &std::path::Path) -> String {
    let path = data_dir.join("session-topic");
    if let Ok(topic) = std::fs::read_to_string(&path) {
        let topic = topic.trim();
        if !topic.is_empty() {
            return topic.to_owned();
        }
    }
    let topic = crate::ids::uuid();
    let _ = std::fs::create_dir_all(data_dir).and_then(|_| std::fs::write(&path, &topic));
    topic
}
