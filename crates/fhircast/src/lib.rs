//! FHIRcast 3.0.0 as types: event names and the event catalog, validation of
//! event messages and subscription requests, content-sharing bundles, and the
//! shapes of the frames a hub sends, and the context stack a hub keeps per
//! topic (`ContextStack`: open contexts, versions, content). No I/O: the `hub` crate does that.
//!
//! Everything here takes plain values and returns typed errors that name the
//! field at fault; the caller picks the HTTP status.

pub mod catalog;
pub mod content;
pub mod context;
pub mod event;
pub mod json;
pub mod message;
pub mod notification;
pub mod subscription;
pub mod sync_error;
pub mod validate;

pub use content::{Content, ContentError, ResourceKey};
pub use context::{ContextError, ContextStack, OpenContext, MAX_OPEN_CONTEXTS};
pub use event::{EventKind, EventName, EventSet};
pub use message::{Ack, AckStatus};
pub use subscription::{ChannelType, Mode, SubscriptionError, SubscriptionRequest};
pub use validate::{Event, ValidationError};

/// Which edition of the spec a client speaks. It only changes a few shapes
/// (discovery document, Get Current Context, how strict the catalog is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Stu2,
    Stu3,
}

impl Version {
    /// The value of `fhircastVersion` in the discovery document.
    pub fn label(self) -> &'static str {
        match self {
            Version::Stu2 => "STU2",
            Version::Stu3 => "3.0.0",
        }
    }
}
