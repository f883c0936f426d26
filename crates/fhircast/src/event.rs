//! Event names. Names compare case-insensitively everywhere (checklist 12),
//! but we keep the spelling the sender used so that echoes look familiar.

use std::fmt;
use std::hash::{Hash, Hasher};

/// An event name such as `Patient-open`, `syncerror` or
/// `org.example.transmogrify`. Equality and hashing ignore ASCII case.
#[derive(Clone, Debug)]
pub struct EventName {
    original: String,
    folded: String,
}

/// What an event does to the hub's context state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `{Resource}-open`; the resource type, lower-cased.
    Open(String),
    Close(String),
    Update(String),
    Select(String),
    SyncError,
    UserLogout,
    UserHibernate,
    HomeOpen,
    /// The STU3-draft keep-alive; only ever sent by the hub.
    Heartbeat,
    /// Proprietary (reverse-domain) names and anything else well-formed.
    Custom,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("event name is empty")]
    Empty,
    #[error(
        "event name {0:?} contains a wildcard; FHIRcast hubs do not support wildcard subscriptions"
    )]
    Wildcard(String),
    #[error("event name {0:?} contains characters that are not allowed (letters, digits, '-', '.', '_')")]
    BadCharacter(String),
}

impl EventName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.contains('*') {
            return Err(NameError::Wildcard(name.to_owned()));
        }
        if name.len() > 128
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(NameError::BadCharacter(name.to_owned()));
        }
        Ok(EventName {
            original: name.to_owned(),
            folded: name.to_ascii_lowercase(),
        })
    }

    /// The name as the client spelled it.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The lower-cased name, for comparisons and scope checks.
    pub fn folded(&self) -> &str {
        &self.folded
    }

    pub fn kind(&self) -> EventKind {
        match self.folded.as_str() {
            "syncerror" => return EventKind::SyncError,
            "userlogout" => return EventKind::UserLogout,
            "userhibernate" => return EventKind::UserHibernate,
            "home-open" => return EventKind::HomeOpen,
            "heartbeat" => return EventKind::Heartbeat,
            _ => {}
        }
        // `Resource-action` where Resource is a FHIR type name: letters only.
        // Reverse-domain names contain dots and are proprietary.
        let Some((resource, action)) = self.folded.rsplit_once('-') else {
            return EventKind::Custom;
        };
        if resource.is_empty() || !resource.bytes().all(|b| b.is_ascii_alphabetic()) {
            return EventKind::Custom;
        }
        let resource = resource.to_owned();
        match action {
            "open" => EventKind::Open(resource),
            "close" => EventKind::Close(resource),
            "update" => EventKind::Update(resource),
            "select" => EventKind::Select(resource),
            _ => EventKind::Custom,
        }
    }
}

impl PartialEq for EventName {
    fn eq(&self, other: &Self) -> bool {
        self.folded == other.folded
    }
}
impl Eq for EventName {}
impl Hash for EventName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.folded.hash(state)
    }
}
impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// The events of one subscription: a set under case-insensitive comparison
/// (checklist 11, 12) that remembers the subscriber's own spelling and order.
///
/// A bare `*` (STU2's grammar; OHIF's cast client sends it) makes the
/// wildcard set, which holds every event. Whether a path accepts it, and
/// what a token narrows it to, is the hub's decision; this type only keeps
/// it, shows it as `*` and stores it as `*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventSet(Vec<EventName>);

const WILDCARD: &str = "*";

impl EventSet {
    /// Parses `hub.events`: a comma-separated list. Linear in its length.
    pub fn parse(list: &str) -> Result<Self, NameError> {
        let mut set = EventSet::default();
        let mut seen = std::collections::HashSet::new();
        let mut wildcard = false;
        for part in list.split(',') {
            if part.trim().is_empty() {
                continue;
            }
            if part.trim() == WILDCARD {
                wildcard = true;
                continue;
            }
            let name = EventName::parse(part)?;
            if seen.insert(name.folded.clone()) {
                set.0.push(name);
            }
        }
        Ok(if wildcard { EventSet::wildcard() } else { set })
    }

    /// The set of every event.
    pub fn wildcard() -> Self {
        EventSet(vec![EventName {
            original: WILDCARD.to_owned(),
            folded: WILDCARD.to_owned(),
        }])
    }

    /// Is this the set of every event (`*`)?
    pub fn is_wildcard(&self) -> bool {
        matches!(self.0.as_slice(), [only] if only.folded == WILDCARD)
    }

    pub fn insert(&mut self, name: EventName) {
        if !self.is_wildcard() && !self.0.contains(&name) {
            self.0.push(name);
        }
    }

    /// Does the set hold this (already lower-cased) name? The wildcard holds
    /// every event but the legacy `heartbeat` keep-alive, which a subscriber
    /// gets only by asking for it by name (a `*` client never expects it).
    pub fn contains_folded(&self, folded: &str) -> bool {
        if self.is_wildcard() {
            return folded != "heartbeat";
        }
        self.0.iter().any(|n| n.folded == folded)
    }

    pub fn contains(&self, name: &EventName) -> bool {
        self.contains_folded(&name.folded)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names as the subscriber spelled them; the wildcard set yields one
    /// name, `*`.
    pub fn iter(&self) -> impl Iterator<Item = &EventName> {
        self.0.iter()
    }
}

impl fmt::Display for EventSet {
    /// The `hub.events` form: names joined by commas, as the subscriber spelled them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_case_insensitively_and_keep_spelling() {
        let a = EventName::parse("Patient-open").unwrap();
        let b = EventName::parse("patient-OPEN").unwrap();
        assert_eq!(a, b);
        assert_eq!(b.as_str(), "patient-OPEN");
        assert_eq!(a.kind(), EventKind::Open("patient".into()));
    }

    #[test]
    fn kinds() {
        let k = |s: &str| EventName::parse(s).unwrap().kind();
        assert_eq!(k("syncerror"), EventKind::SyncError);
        assert_eq!(k("home-open"), EventKind::HomeOpen);
        assert_eq!(
            k("DiagnosticReport-update"),
            EventKind::Update("diagnosticreport".into())
        );
        assert_eq!(k("org.example.patient_transmogrify"), EventKind::Custom);
        assert_eq!(
            k("com.example.researchstudy-transmogrify"),
            EventKind::Custom
        );
    }

    #[test]
    fn event_set_collapses_duplicates_and_rejects_wildcards() {
        let set = EventSet::parse("Patient-open, patient-open,Patient-close,").unwrap();
        assert_eq!(set.to_string(), "Patient-open,Patient-close");
        assert!(matches!(
            EventSet::parse("*-open"),
            Err(NameError::Wildcard(_))
        ));
        assert!(EventSet::parse("Patient open").is_err());
    }

    #[test]
    fn a_bare_star_holds_every_event_and_shows_as_star() {
        let set = EventSet::parse(" * ").unwrap();
        assert!(set.is_wildcard());
        assert!(set.contains_folded("patient-open"));
        assert!(set.contains_folded("org.example.anything"));
        assert!(set.contains_folded("syncerror"));
        assert!(!set.contains_folded("heartbeat"));
        assert_eq!(set.to_string(), "*");
        // Stored as `*`, read back as the wildcard.
        assert_eq!(EventSet::parse(&set.to_string()).unwrap(), set);
        assert_eq!(EventSet::parse("Patient-open,*").unwrap(), set);
        assert!(!EventSet::parse("Patient-open").unwrap().is_wildcard());
        assert!(EventSet::parse("*-*").is_err());
    }
}
