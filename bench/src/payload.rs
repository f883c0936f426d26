//! Event bodies, event ids and timestamps.
//!
//! Every event id has the form `lsb<run>-<phase><seq>-<send_ns>`: the run marker lets a
//! subscriber find the id in a frame with one substring search (no JSON parse), the phase says
//! whether the event is measured, and `send_ns` (nanoseconds since the generator's base
//! instant) gives the delivery latency without any shared send-time map.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Event phase, encoded as the first character after the run marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Content-sharing setup (`DiagnosticReport-open`).
    Open,
    /// Warm-up: delivered and ACKed, not measured.
    Warmup,
    /// Measured.
    Measured,
}

impl Phase {
    pub fn as_byte(self) -> u8 {
        match self {
            Phase::Open => b'o',
            Phase::Warmup => b'w',
            Phase::Measured => b'm',
        }
    }

    pub fn from_byte(b: u8) -> Option<Phase> {
        match b {
            b'o' => Some(Phase::Open),
            b'w' => Some(Phase::Warmup),
            b'm' => Some(Phase::Measured),
            _ => None,
        }
    }
}

/// An event id parsed back out of a received frame.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedId<'a> {
    /// The whole id, as it must be echoed in the ACK.
    pub id: &'a str,
    pub phase: Phase,
    pub seq: u64,
    pub send_ns: u64,
}

/// Writes an event id into `out` (cleared first).
pub fn write_id(out: &mut String, run: &str, phase: Phase, seq: u64, send_ns: u64) {
    out.clear();
    let _ = write!(out, "lsb{run}-{}{seq}-{send_ns}", phase.as_byte() as char);
}

/// The string a subscriber searches for: an opening quote followed by the id prefix.
pub fn marker(run: &str) -> String {
    format!("\"lsb{run}-")
}

/// Parses the id that starts right after `marker` at byte offset `pos` of `text`
/// (`pos` is the offset of the marker's opening quote).
pub fn parse_id_at(text: &str, pos: usize, marker_len: usize) -> Option<ParsedId<'_>> {
    let bytes = text.as_bytes();
    let id_start = pos + 1;
    let mut i = pos + marker_len;
    let phase = Phase::from_byte(*bytes.get(i)?)?;
    i += 1;
    let (seq, next) = parse_u64(bytes, i)?;
    if bytes.get(next) != Some(&b'-') {
        return None;
    }
    let (send_ns, end) = parse_u64(bytes, next + 1)?;
    if bytes.get(end) != Some(&b'"') {
        return None;
    }
    Some(ParsedId {
        id: &text[id_start..end],
        phase,
        seq,
        send_ns,
    })
}

fn parse_u64(bytes: &[u8], start: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = start;
    while let Some(&c) = bytes.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        i += 1;
    }
    (i > start).then_some((v, i))
}

/// Finds `"context.versionId"` in a frame and returns its string value.
pub fn find_version_id(frame: &[u8], finder: &memchr::memmem::Finder<'_>) -> Option<String> {
    let pos = finder.find(frame)?;
    let mut i = pos + finder.needle().len();
    while matches!(frame.get(i), Some(b' ' | b'\t' | b'\n' | b'\r' | b':')) {
        i += 1;
    }
    if frame.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = memchr::memchr(b'"', &frame[start..])?;
    std::str::from_utf8(&frame[start..start + len])
        .ok()
        .map(str::to_owned)
}

/// Current UTC time as ISO 8601 with microseconds, e.g. `2025-01-02T03:04:05.123456Z`.
pub fn iso_now(out: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    out.clear();
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        now.subsec_micros()
    );
}

/// Howard Hinnant's days-since-epoch → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

const DIV_OPEN: &str = r#"<div xmlns=\"http://www.w3.org/1999/xhtml\">"#;
const DIV_CLOSE: &str = "</div>";
/// Length of a typical id and timestamp, used to size the padding.
const TYPICAL_ID: &str = "lsb000000-m1000000-10000000000";
const TYPICAL_TS: &str = "2025-01-01T00:00:00.000000Z";

/// Builds event bodies of a fixed approximate size.
pub struct Bodies {
    /// Padding characters for a Patient's `text.div` or an Observation's `valueString`.
    pad: String,
    patients: u64,
    content_sharing: bool,
}

impl Bodies {
    pub fn new(payload_bytes: usize, patients: u64, content_sharing: bool) -> Bodies {
        let mut b = Bodies {
            pad: String::new(),
            patients,
            content_sharing,
        };
        // Size of an event with a one-character pad, i.e. everything but the padding.
        b.pad = "x".to_owned();
        let mut probe = String::new();
        if content_sharing {
            b.update(&mut probe, TYPICAL_ID, TYPICAL_TS, "topic", "1", 1);
        } else {
            b.patient_open(&mut probe, TYPICAL_ID, TYPICAL_TS, "topic", 1);
        }
        let overhead = probe.len() - 1;
        b.pad = if payload_bytes > overhead + 1 {
            "x".repeat(payload_bytes - overhead)
        } else {
            String::new()
        };
        b
    }

    /// The hub.events list subscribers ask for.
    pub fn events(&self) -> &'static str {
        if self.content_sharing {
            "DiagnosticReport-open,DiagnosticReport-update,DiagnosticReport-close"
        } else {
            "Patient-open,Patient-close"
        }
    }

    /// `Patient-open` for patient `p-(seq mod patients)`.
    pub fn patient_open(&self, out: &mut String, id: &str, ts: &str, topic: &str, seq: u64) {
        let n = seq % self.patients;
        out.clear();
        out.reserve(300 + self.pad.len());
        let _ = write!(
            out,
            r#"{{"timestamp":"{ts}","id":"{id}","event":{{"hub.topic":"{topic}","hub.event":"Patient-open","context":[{{"key":"patient","resource":{{"resourceType":"Patient","id":"p-{n}","identifier":[{{"system":"urn:mrn","value":"{n}"}}]"#
        );
        if !self.pad.is_empty() {
            out.push_str(r#","text":{"status":"generated","div":""#);
            out.push_str(DIV_OPEN);
            out.push_str(&self.pad);
            out.push_str(DIV_CLOSE);
            out.push_str("\"}");
        }
        out.push_str("}}]}}");
    }

    /// `DiagnosticReport-open` of report `r-1` for patient `p-1` (content sharing anchor).
    pub fn report_open(&self, out: &mut String, id: &str, ts: &str, topic: &str) {
        out.clear();
        let _ = write!(
            out,
            r#"{{"timestamp":"{ts}","id":"{id}","event":{{"hub.topic":"{topic}","hub.event":"DiagnosticReport-open","context":[{{"key":"report","resource":{{"resourceType":"DiagnosticReport","id":"r-1","status":"preliminary","code":{{"text":"fhircast-load report"}},"identifier":[{{"system":"urn:accession","value":"acc-1"}}],"subject":{{"reference":"Patient/p-1"}}}}}},{{"key":"patient","resource":{{"resourceType":"Patient","id":"p-1","identifier":[{{"system":"urn:mrn","value":"1"}}]}}}}]}}}}"#
        );
    }

    /// `DiagnosticReport-update` carrying one Observation (`o-(seq mod 4)`) padded to size.
    pub fn update(
        &self,
        out: &mut String,
        id: &str,
        ts: &str,
        topic: &str,
        version: &str,
        seq: u64,
    ) {
        let obs = seq % 4;
        out.clear();
        out.reserve(700 + self.pad.len());
        let _ = write!(
            out,
            r#"{{"timestamp":"{ts}","id":"{id}","event":{{"hub.topic":"{topic}","hub.event":"DiagnosticReport-update","context.versionId":"{version}","context":[{{"key":"report","reference":{{"reference":"DiagnosticReport/r-1"}}}},{{"key":"patient","reference":{{"reference":"Patient/p-1"}}}},{{"key":"updates","resource":{{"resourceType":"Bundle","id":"b-{seq}","type":"transaction","entry":[{{"fullUrl":"Observation/o-{obs}","resource":{{"resourceType":"Observation","id":"o-{obs}","status":"preliminary","code":{{"text":"fhircast-load finding"}},"subject":{{"reference":"Patient/p-1"}},"valueString":""#
        );
        out.push_str(&self.pad);
        let _ = write!(
            out,
            r#""}},"request":{{"method":"PUT","url":"Observation/o-{obs}"}}}}]}}}}]}}}}"#
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trip() {
        let mut id = String::new();
        write_id(&mut id, "abc123", Phase::Measured, 42, 987_654_321);
        let frame = format!(r#"{{"timestamp":"x","id":"{id}","event":{{}}}}"#);
        let m = marker("abc123");
        let pos = frame.find(&m).unwrap();
        let p = parse_id_at(&frame, pos, m.len()).unwrap();
        assert_eq!(p.id, id);
        assert_eq!(p.phase, Phase::Measured);
        assert_eq!(p.seq, 42);
        assert_eq!(p.send_ns, 987_654_321);
    }

    #[test]
    fn bodies_are_json_of_requested_size() {
        for cs in [false, true] {
            let b = Bodies::new(1024, 8, cs);
            let mut s = String::new();
            if cs {
                b.update(&mut s, TYPICAL_ID, TYPICAL_TS, "topic", "1", 3);
            } else {
                b.patient_open(&mut s, TYPICAL_ID, TYPICAL_TS, "topic", 3);
            }
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            assert!(v["event"]["context"].is_array());
            assert!((1000..1100).contains(&s.len()), "{} bytes", s.len());
            b.report_open(&mut s, TYPICAL_ID, TYPICAL_TS, "topic");
            serde_json::from_str::<serde_json::Value>(&s).unwrap();
        }
    }

    #[test]
    fn version_id_is_found() {
        let f = br#"{"event":{"context.priorVersionId":"a","context.versionId" : "v-7"}}"#;
        let finder = memchr::memmem::Finder::new("\"context.versionId\"");
        assert_eq!(find_version_id(f, &finder).as_deref(), Some("v-7"));
    }

    #[test]
    fn iso_timestamp_shape() {
        let mut s = String::new();
        iso_now(&mut s);
        assert_eq!(s.len(), 27);
        assert!(s.ends_with('Z'));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
