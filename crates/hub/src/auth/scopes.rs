//! FHIRcast SMART scopes (2-2): `fhircast/<event|*>.<read|write|*>`, with
//! the event part compared case-insensitively. Other scopes (e.g. `openid`)
//! are kept for display but grant nothing here.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// Lower-cased event name; `None` for `*`.
    event: Option<String>,
    read: bool,
    write: bool,
    original: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    entries: Vec<Entry>,
    other: Vec<String>,
}

impl Scopes {
    /// Parses a space-separated scope string. Unknown forms are kept as
    /// "other" scopes: they are not errors, they just grant no FHIRcast access.
    /// Linear in the length of `s` (a token request's `scope` can be as
    /// long as the body limit).
    pub fn parse(s: &str) -> Scopes {
        let mut scopes = Scopes::default();
        // An entry is determined by its raw text, so duplicates are found by it.
        let mut seen = std::collections::HashSet::new();
        for raw in s.split_whitespace() {
            match parse_one(raw) {
                Some(e) if seen.insert(raw) => scopes.entries.push(e),
                Some(_) => {}
                None => scopes.other.push(raw.to_owned()),
            }
        }
        scopes
    }

    fn allows(&self, event: &str, write: bool) -> bool {
        self.entries.iter().any(|e| {
            (if write { e.write } else { e.read })
                && e.event
                    .as_deref()
                    .is_none_or(|name| name.eq_ignore_ascii_case(event))
        })
    }

    /// May receive `event` (`fhircast/<event>.read`)?
    pub fn can_read(&self, event: &str) -> bool {
        self.allows(event, false)
    }

    /// May send `event` (`fhircast/<event>.write`)?
    pub fn can_write(&self, event: &str) -> bool {
        self.allows(event, true)
    }

    /// Holds any read scope at all (enough for Get Current Context).
    pub fn can_read_anything(&self) -> bool {
        self.entries.iter().any(|e| e.read)
    }

    /// What a `hub.events=*` subscription may receive under these scopes:
    /// `None` when a `fhircast/*.read` (or `*.*`) scope allows every event,
    /// else the events named by read scopes, spelled as in the scope.
    pub fn readable_events(&self) -> Option<Vec<&str>> {
        let reads = self.entries.iter().filter(|e| e.read);
        if reads.clone().any(|e| e.event.is_none()) {
            return None;
        }
        Some(
            reads
                .filter_map(|e| {
                    let rest = e.original.strip_prefix("fhircast/")?;
                    rest.rsplit_once('.').map(|(event, _)| event)
                })
                .collect(),
        )
    }

    /// The requested scopes that `self` (what the app may have) covers.
    /// No request means everything the app may have.
    pub fn grant(&self, requested: Option<&str>) -> Scopes {
        let Some(requested) = requested.filter(|r| !r.trim().is_empty()) else {
            return self.clone();
        };
        let wanted = Scopes::parse(requested);
        let entries = wanted
            .entries
            .into_iter()
            .filter(|w| {
                self.entries.iter().any(|have| {
                    (have.read || !w.read)
                        && (have.write || !w.write)
                        && match (&have.event, &w.event) {
                            (None, _) => true,
                            (Some(h), Some(w)) => h == w,
                            (Some(_), None) => false,
                        }
                })
            })
            .collect();
        Scopes {
            entries,
            other: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The scope strings, as given.
    pub fn to_vec(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| e.original.clone())
            .chain(self.other.iter().cloned())
            .collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vec().join(" "))
    }
}

fn parse_one(raw: &str) -> Option<Entry> {
    let rest = raw.strip_prefix("fhircast/")?;
    let (event, mode) = rest.rsplit_once('.')?;
    let (read, write) = match mode.to_ascii_lowercase().as_str() {
        "read" => (true, false),
        "write" => (false, true),
        "*" => (true, true),
        _ => return None,
    };
    if event.is_empty() {
        return None;
    }
    let event = (event != "*").then(|| event.to_ascii_lowercase());
    Some(Entry {
        event,
        read,
        write,
        original: raw.to_owned(),
    })
}

/// The scope a request lacks, as the 403 names it.
pub fn needed(event: &str, write: bool) -> String {
    format!("fhircast/{event}.{}", if write { "write" } else { "read" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_and_wildcards() {
        let s = Scopes::parse("openid fhircast/Patient-open.read fhircast/*.write");
        assert!(s.can_read("patient-OPEN"));
        assert!(!s.can_read("Patient-close"));
        assert!(s.can_write("DiagnosticReport-update"));
        assert!(Scopes::parse("fhircast/DiagnosticReport-update.*")
            .can_write("diagnosticreport-update"));
        assert!(!Scopes::parse("patient/*.read").can_read_anything());
    }

    #[test]
    fn grant_is_the_covered_part_of_the_request() {
        let allowed = Scopes::parse("fhircast/*.read fhircast/Patient-open.write");
        let granted = allowed.grant(Some(
            "fhircast/Patient-close.read fhircast/Patient-open.write fhircast/*.write",
        ));
        assert_eq!(
            granted.to_string(),
            "fhircast/Patient-close.read fhircast/Patient-open.write"
        );
        assert_eq!(allowed.grant(None), allowed);
    }

    #[test]
    fn readable_events_expand_a_wildcard_subscription() {
        let s =
            Scopes::parse("fhircast/Patient-open.read fhircast/Patient-close.* fhircast/*.write");
        assert_eq!(
            s.readable_events(),
            Some(vec!["Patient-open", "Patient-close"])
        );
        assert_eq!(
            Scopes::parse("openid fhircast/*.read").readable_events(),
            None
        );
        assert_eq!(Scopes::parse("fhircast/*.*").readable_events(), None);
        assert_eq!(
            Scopes::parse("fhircast/*.write").readable_events(),
            Some(vec![])
        );
    }

    #[test]
    fn parsing_a_huge_scope_string_is_linear() {
        let huge: String = (0..100_000)
            .map(|i| format!("fhircast/e{i}.read "))
            .collect();
        let started = std::time::Instant::now();
        let scopes = Scopes::parse(&huge);
        // A complexity bound, not a timing race (quadratic took minutes).
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(scopes.to_vec().len(), 100_000);
        assert_eq!(
            Scopes::parse("fhircast/a.read fhircast/a.read")
                .to_vec()
                .len(),
            1
        );
    }
}
