//! The current context in a few words, one set of rules for every front
//! end: the tray's label and menu, and the dashboard's Now view (issue 15:
//! the two used to format the same patient differently).
//!
//! Reads a Get Current Context answer (`{"context.type", "context": [..]}`)
//! the hub already built; shows FHIR resources, decides nothing about the
//! protocol. Resources come from apps and may lack anything or have any
//! shape: nothing here panics, and every string is cut to a bound.
//!
//! The format is the tray's: "DOE, John · MRN 12345" (family name in
//! capitals, as on a wristband, so it is not mistaken for a given name).

use serde::Serialize;
use serde_json::Value;

/// Longest one-line summary; a panel label has little room.
pub const MAX_CHARS: usize = 48;
/// Longest part (patient, study, report) shown on its own.
const MAX_PART_CHARS: usize = 120;

/// The context as people read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextSummary {
    /// One line: "DOE, John · MRN 12345", "Patient 42 (ImagingStudy)", or
    /// the anchor type when no patient is shared. At most [`MAX_CHARS`].
    pub text: String,
    /// The patient's name: "DOE, John Q", or the name's `text`.
    pub patient: Option<String>,
    /// The patient's MRN (identifier typed MR, else the first).
    pub mrn: Option<String>,
    /// The study: "CT chest · Accession A1", from its description and
    /// accession number.
    pub study: Option<String>,
    /// The report: "Chest CT report · final", from its code and status.
    pub report: Option<String>,
}

/// The summary of a Get Current Context answer, or `None` for an empty
/// context.
pub fn summarize(current: &Value) -> Option<ContextSummary> {
    let entries = current["context"].as_array()?;
    let anchor = current["context.type"].as_str().unwrap_or_default();
    if anchor.is_empty() && entries.is_empty() {
        return None;
    }
    let of_type = |kind: &str| {
        entries
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == kind)
    };
    let patient = of_type("Patient");
    let name = patient
        .and_then(person_name)
        .map(|n| cut(&n, MAX_PART_CHARS));
    let mrn = patient.and_then(mrn).map(|m| cut(&m, MAX_PART_CHARS));
    let mut text = match patient {
        Some(p) => match (&name, &mrn) {
            (Some(n), Some(m)) => format!("{n} · MRN {m}"),
            (Some(n), None) => n.clone(),
            (None, Some(m)) => format!("MRN {m}"),
            (None, None) => match p["id"].as_str() {
                Some(id) => format!("Patient {id}"),
                None => "Patient".to_owned(),
            },
        },
        None if !anchor.is_empty() => anchor.to_owned(),
        None => return None,
    };
    if patient.is_some() && !anchor.is_empty() && anchor != "Patient" {
        text = format!("{text} ({anchor})");
    }
    Some(ContextSummary {
        text: cut(&text, MAX_CHARS),
        patient: name,
        mrn,
        study: of_type("ImagingStudy").and_then(study),
        report: of_type("DiagnosticReport").and_then(report),
    })
}

/// The one-line summary alone (the tray's label).
pub fn context_summary(current: &Value) -> Option<String> {
    summarize(current).map(|s| s.text)
}

/// The official name, else the usual one, else any not marked old, else
/// the first: its `text`, or "FAMILY, Given".
fn person_name(p: &Value) -> Option<String> {
    let names = p["name"].as_array()?;
    let name = names
        .iter()
        .find(|n| n["use"] == "official")
        .or_else(|| names.iter().find(|n| n["use"] == "usual"))
        .or_else(|| names.iter().find(|n| n["use"] != "old"))
        .or_else(|| names.first())?;
    if let Some(text) = name["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return Some(text.trim().to_owned());
    }
    let family = name["family"].as_str().unwrap_or_default().trim();
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match (family.is_empty(), given.is_empty()) {
        (true, true) => None,
        (false, true) => Some(family.to_uppercase()),
        (true, false) => Some(given.join(" ")),
        (false, false) => Some(format!("{}, {}", family.to_uppercase(), given.join(" "))),
    }
}

fn has_type(id: &Value, code: &str) -> bool {
    id["type"]["coding"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["code"] == code))
}

/// The identifier typed MR (HL7 v2 table 0203), else the first one.
fn mrn(p: &Value) -> Option<String> {
    let ids = p["identifier"].as_array()?;
    let id = ids
        .iter()
        .find(|i| has_type(i, "MR"))
        .or_else(|| ids.first())?;
    id["value"].as_str().map(str::to_owned)
}

fn nonempty(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.trim().is_empty())
}

/// A CodeableConcept's text, else its first coding's display or code.
fn concept(c: &Value) -> Option<&str> {
    nonempty(&c["text"]).or_else(|| {
        c["coding"]
            .as_array()?
            .iter()
            .find_map(|c| nonempty(&c["display"]).or_else(|| nonempty(&c["code"])))
    })
}

fn study(s: &Value) -> Option<String> {
    let description = s["description"].as_str().filter(|d| !d.trim().is_empty());
    let accession = s["identifier"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| has_type(i, "ACSN")))
        .and_then(|i| i["value"].as_str());
    let text = match (description, accession) {
        (Some(d), Some(a)) => format!("{} · Accession {a}", d.trim()),
        (Some(d), None) => d.trim().to_owned(),
        (None, Some(a)) => format!("Accession {a}"),
        (None, None) => format!("Study {}", s["id"].as_str()?),
    };
    Some(cut(&text, MAX_PART_CHARS))
}

fn report(r: &Value) -> Option<String> {
    let what = concept(&r["code"])
        .map(str::to_owned)
        .or_else(|| r["id"].as_str().map(|id| format!("Report {id}")))
        .unwrap_or_else(|| "Report".to_owned());
    let text = match r["status"].as_str() {
        Some(status) => format!("{what} · {status}"),
        None => what,
    };
    Some(cut(&text, MAX_PART_CHARS))
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn current(kind: &str, resources: Vec<Value>) -> Value {
        let context: Vec<Value> = resources
            .into_iter()
            .map(|r| json!({"key": "x", "resource": r}))
            .collect();
        json!({"context.type": kind, "context": context})
    }

    #[test]
    fn empty_context_is_none() {
        assert_eq!(
            context_summary(&json!({"context.type": "", "context": []})),
            None
        );
        assert_eq!(context_summary(&json!({})), None);
    }

    #[test]
    fn patient_with_name_and_typed_mrn() {
        let p = json!({"resourceType": "Patient", "id": "p1",
            "name": [{"use": "nickname", "given": ["Jo"]}, {"use": "official", "family": "Doe", "given": ["John", "Q"]}],
            "identifier": [{"system": "urn:other", "value": "X9"},
                           {"type": {"coding": [{"code": "MR"}]}, "value": "12345"}]});
        let s = summarize(&current("Patient", vec![p])).unwrap();
        assert_eq!(s.text, "DOE, John Q · MRN 12345");
        assert_eq!(s.patient.as_deref(), Some("DOE, John Q"));
        assert_eq!(s.mrn.as_deref(), Some("12345"));
        assert_eq!((s.study, s.report), (None, None));
    }

    #[test]
    fn usual_name_before_an_old_one() {
        let p = json!({"resourceType": "Patient",
            "name": [{"use": "old", "family": "Smith"}, {"use": "usual", "family": "Doe", "given": ["Jane"]}]});
        assert_eq!(
            context_summary(&current("Patient", vec![p])).as_deref(),
            Some("DOE, Jane")
        );
    }

    #[test]
    fn name_text_and_first_identifier() {
        let p = json!({"resourceType": "Patient", "name": [{"text": "Jane Roe"}],
            "identifier": [{"value": "777"}]});
        assert_eq!(
            context_summary(&current("Patient", vec![p])).as_deref(),
            Some("Jane Roe · MRN 777")
        );
    }

    #[test]
    fn bare_patient_and_study_anchor() {
        let p = json!({"resourceType": "Patient", "id": "42"});
        let study = json!({"resourceType": "ImagingStudy", "id": "s"});
        assert_eq!(
            context_summary(&current("ImagingStudy", vec![study.clone(), p])).as_deref(),
            Some("Patient 42 (ImagingStudy)")
        );
        assert_eq!(
            context_summary(&current("Encounter", vec![study])).as_deref(),
            Some("Encounter")
        );
    }

    #[test]
    fn study_and_report() {
        let study = json!({"resourceType": "ImagingStudy", "id": "s1", "description": "CT chest",
            "identifier": [{"type": {"coding": [{"code": "ACSN"}]}, "value": "A7"}]});
        let report = json!({"resourceType": "DiagnosticReport", "id": "r1", "status": "final",
            "code": {"coding": [{"code": "x", "display": "CT chest report"}]}});
        let s = summarize(&current("DiagnosticReport", vec![report, study])).unwrap();
        assert_eq!(s.study.as_deref(), Some("CT chest · Accession A7"));
        assert_eq!(s.report.as_deref(), Some("CT chest report · final"));
        let bare = json!({"resourceType": "ImagingStudy", "id": "s2"});
        let s = summarize(&current("ImagingStudy", vec![bare])).unwrap();
        assert_eq!(s.study.as_deref(), Some("Study s2"));
    }

    #[test]
    fn long_names_are_cut() {
        let p = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(10_000)}]});
        let s = summarize(&current("Patient", vec![p])).unwrap();
        assert_eq!(s.text.chars().count(), MAX_CHARS);
        assert!(s.text.ends_with('…'));
        assert_eq!(s.patient.unwrap().chars().count(), MAX_PART_CHARS);
    }

    #[test]
    fn odd_shapes_never_panic() {
        for v in [
            json!(null),
            json!({"context": "x"}),
            json!({"context": [1, null, {"resource": 3}]}),
            json!({"context.type": "Patient", "context": [{"resource": {"resourceType": "Patient", "name": "x", "identifier": 5}}]}),
            json!({"context.type": "ImagingStudy", "context": [{"resource": {"resourceType": "ImagingStudy", "identifier": [1], "description": 3}},
                {"resource": {"resourceType": "DiagnosticReport", "code": {"coding": [null, 2]}, "status": 1}}]}),
        ] {
            let _ = summarize(&v);
        }
    }
}
