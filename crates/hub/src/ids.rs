//! Fresh identifiers, and timestamps written and read as ISO 8601 / RFC 3339.

use rand::Rng;

/// An endpoint id: 160 random bits from the OS-seeded CSPRNG, hex encoded.
/// Unguessable (checklist 23) and, at that size, never reused (checklist 40).
pub fn endpoint_id() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An id for an event or a context version.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Now, as an ISO 8601 UTC timestamp with milliseconds.
pub fn now() -> String {
    format_time(std::time::SystemTime::now())
}

/// A time as an ISO 8601 UTC timestamp with milliseconds.
pub fn format_time(at: std::time::SystemTime) -> String {
    let now = time::OffsetDateTime::from(at);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The first characters of an id, for logs: endpoint ids are credentials.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Reads an RFC 3339 time such as `2026-11-22T10:42:00Z`.
pub fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(std::time::SystemTime::from)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}
