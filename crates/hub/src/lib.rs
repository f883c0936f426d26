//! Lockstep's FHIRcast hub: topics, subscriptions, delivery and the
//! HTTP/WebSocket server, without any desktop code.
//!
//! - [`Hub`] (`state.rs`) is the shared state handle: topics with their
//!   subscriptions and open contexts.
//! - `subscriptions.rs` admits, renews and ends subscriptions; `delivery.rs`
//!   fans accepted events out to per-subscriber queues; `channel.rs` runs one
//!   WebSocket; `sync_error.rs` reports subscribers that fail to follow.
//!   These are the core: it reports what happened through
//!   `recorder::Recorder`, which the durability layer (`durability.rs`,
//!   `persist.rs`, `storage`) and the dashboard (`admin`) implement;
//!   `Hub::new` (`wiring.rs`) hands them to it.
//! - [`server::app`] builds the axum router, [`server::run`] serves it until
//!   the shutdown future resolves.

mod admin;
pub mod auth;
#[doc(hidden)]
pub mod bench_support;
mod channel;
pub mod config;
mod delivery;
pub mod discovery_file;
mod durability;
mod error;
mod guard;
pub mod ids;
pub mod launch;
mod listener;
mod paths;
pub mod peer;
mod persist;
mod ratelimit;
mod recorder;
mod routes;
pub mod server;
pub mod settings;
mod state;
pub mod storage;
mod subscriptions;
pub mod summary;
mod sync_error;
mod timers;
pub mod tls;
mod topic;
mod webhook;
mod wiring;

pub use admin::ActionError;
pub use admin::SubscriberInfo;
pub use config::Config;
pub use fhircast::MAX_OPEN_CONTEXTS;
pub use state::{Hub, HubEvent};
pub use summary::{context_summary, summarize, ContextSummary};
