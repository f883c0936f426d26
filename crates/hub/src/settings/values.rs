//! What the files set: the keys (`Values`, with their defaults), where an
//! effective value came from (`Source`), and the apps IT registers ahead
//! of time (`AppEntry`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::Config;

/// Where an effective value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Default,
    System,
    User,
    /// A command-line flag of `lockstep-hub` (only known to the running hub).
    Flag,
}

/// The user-visible knobs, with their effective values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    /// Port of `http://ADDRESS:PORT/fhircast/STU3`.
    pub port: u16,
    /// Listening address; loopback unless the hub runs with `--allow-remote`.
    pub address: IpAddr,
    /// Serve HTTPS. Carried for the TLS work; the hub does not read it yet.
    pub tls: bool,
    pub ack_timeout_ms: u64,
    pub grace_period_ms: u64,
    /// Desktop notifications from the tray app.
    pub notifications: bool,
    /// The tray app starts when the user logs in.
    pub start_at_login: bool,
    /// Web origins allowed to call the hub from a browser.
    pub allowed_origins: Vec<String>,
    pub lease_default_secs: u64,
    pub lease_max_secs: u64,
    pub token_lifetime_secs: u64,
    /// A topic other than the session's is dropped after this long without
    /// a subscriber.
    pub topic_idle_secs: u64,
    /// Size bound of the event journal in `lockstep.db` (issue 14.7): the
    /// oldest events are pruned past it.
    pub journal_max_mb: u64,
    /// Serve only the OS user who started the hub (issue 17); IT turns it
    /// off only where one hub must serve several accounts.
    pub peer_check: bool,
}

impl Default for Values {
    fn default() -> Values {
        Values {
            port: 4747,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: false,
            ack_timeout_ms: 10_000,
            grace_period_ms: 30_000,
            notifications: true,
            start_at_login: true,
            allowed_origins: Vec::new(),
            lease_default_secs: 24 * 3600,
            lease_max_secs: 7 * 24 * 3600,
            token_lifetime_secs: 8 * 3600,
            topic_idle_secs: 15 * 60,
            journal_max_mb: Config::DEFAULT_JOURNAL_MAX_MB,
            peer_check: true,
        }
    }
}

/// Every key of `Values`, in display order.
pub const KEYS: &[&str] = &[
    "port",
    "address",
    "tls",
    "ack_timeout_ms",
    "grace_period_ms",
    "notifications",
    "start_at_login",
    "allowed_origins",
    "lease_default_secs",
    "lease_max_secs",
    "token_lifetime_secs",
    "topic_idle_secs",
    "journal_max_mb",
    "peer_check",
];

/// Keys read by the tray app rather than the hub.
pub const TRAY_KEYS: &[&str] = &["notifications", "start_at_login"];

/// An app IT registers ahead of time (`[[apps]]`).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    pub client_id: String,
    pub name: String,
    /// Space-separated SMART scopes.
    pub scopes: String,
    /// Topics it may join; empty means this workstation's session.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A client secret to put in the secret store when the app is first
    /// registered (at least 32 characters). Never logged, never written by
    /// the hub.
    #[serde(default)]
    pub secret: Option<String>,
    /// `false` for a client that never sends ACKs (issue 19); unset leaves
    /// what the CLI or the dashboard chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledges: Option<bool>,
    /// A browser app (SMART App Launch with PKCE, issue 16): its exact
    /// redirect URIs; their origins are allowed for CORS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// Where the tray's "Open app" opens it (EHR launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<String>,
    /// IT approved it: the clinician is not asked (system file only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preapproved: bool,
}

impl fmt::Debug for AppEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppEntry")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("topics", &self.topics)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("acknowledges", &self.acknowledges)
            .field("redirect_uris", &self.redirect_uris)
            .field("launch_url", &self.launch_url)
            .field("preapproved", &self.preapproved)
            .finish()
    }
}
