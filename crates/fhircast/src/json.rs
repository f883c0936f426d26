//! The one way the hub turns request bytes into JSON: a linear pre-scan that
//! refuses too deep or too wide documents before anything is allocated, then
//! serde_json. The cost of any body is linear in its length and the memory
//! of the parsed value is bounded by the caps, whatever a local process sends.

use serde_json::Value;

/// Deepest nesting of objects and arrays accepted. A DiagnosticReport-update
/// of 80 Observations with components and extensions reaches 13; FHIR's deepest
/// real resources (nested Questionnaire items) stay well under 64.
pub const MAX_DEPTH: usize = 64;

/// Most object keys in one document, counted over all objects. A report
/// update Bundle with dozens of entries has a few thousand; an
/// ImagingStudy-open listing every instance of a large study some thousands
/// more. 20,000 leaves room for both and keeps the parsed value to a few MB.
pub const MAX_KEYS: usize = 20_000;

/// Why a body was refused; the text is meant for a developer's eyes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("body is not UTF-8 text: {0}")]
    NotUtf8(String),
    #[error("body is not valid JSON: {0}")]
    Invalid(String),
    #[error("JSON is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("JSON has more than {MAX_KEYS} object keys")]
    TooManyKeys,
}

/// Parses `body` as JSON within [`MAX_DEPTH`] and [`MAX_KEYS`].
pub fn parse_bounded(body: &[u8]) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(body).map_err(|e| JsonError::NotUtf8(e.to_string()))?;
    check_shape(text.as_bytes())?;
    serde_json::from_str(text).map_err(|e| JsonError::Invalid(e.to_string()))
}

/// One pass over the bytes, outside strings: brackets give the depth and
/// each `:` is one object key. Exact for valid JSON; for invalid JSON it
/// may refuse with a cap instead of a syntax error, which is equally a 400.
fn check_shape(bytes: &[u8]) -> Result<(), JsonError> {
    let mut depth = 0usize;
    let mut keys = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' => {
                keys += 1;
                if keys > MAX_KEYS {
                    return Err(JsonError::TooManyKeys);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn ordinary_json_parses() {
        let v = parse_bounded(br#"{"a": [1, {"b": "x:{[\"y"}], "c": null}"#).unwrap();
        assert_eq!(v["a"][1]["b"], "x:{[\"y");
    }

    #[test]
    fn eighty_thousand_keys_are_refused_quickly() {
        let body = format!(
            "{{{}}}",
            (0..80_000)
                .map(|i| format!("\"k{i}\":0"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let started = Instant::now();
        let e = parse_bounded(body.as_bytes()).unwrap_err();
        // A complexity bound, not a timing race: the scan stops at key 20,001.
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(e.to_string(), "JSON has more than 20000 object keys");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let body = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(
            parse_bounded(body.as_bytes()).unwrap_err().to_string(),
            "JSON is nested deeper than 64 levels"
        );
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_bounded(ok.as_bytes()).is_ok());
    }

    #[test]
    fn colons_and_brackets_inside_strings_do_not_count() {
        let body = format!("[\"{}\"]", ":[{".repeat(30_000));
        assert!(parse_bounded(body.as_bytes()).is_ok());
    }

    #[test]
    fn errors_are_readable() {
        assert!(parse_bounded(b"{not json")
            .unwrap_err()
            .to_string()
            .starts_with("body is not valid JSON"));
        assert!(parse_bounded(&[0xff])
            .unwrap_err()
            .to_string()
            .starts_with("body is not UTF-8"));
    }
}
