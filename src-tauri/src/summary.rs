//! The current context in a few words for the tray label and menu: the
//! patient's name and MRN, or "no context". Reads the Get Current Context
//! answer the hub already built (`Hub::current_context`); shows FHIR
//! resources, decides nothing about the protocol.

use serde_json::Value;

/// Longest summary shown; a panel label has little room.
const MAX_CHARS: usize = 48;

/// "DOE, John · MRN 12345", "Patient 42", or `None` for an empty context.
/// A non-Patient anchor is named after the patient: "… (ImagingStudy)".
pub fn context_summary(current: &Value) -> Option<String> {
    let entries = current["context"].as_array()?;
    let anchor = current["context.type"].as_str().unwrap_or_default();
    if anchor.is_empty() && entries.is_empty() {
        return None;
    }
    let resources = || entries.iter().map(|e| &e["resource"]);
    let patient = resources().find(|r| r["resourceType"] == "Patient");
    let mut text = match patient {
        Some(p) => patient_summary(p),
        None if !anchor.is_empty() => anchor.to_owned(),
        None => return None,
    };
    if patient.is_some() && !anchor.is_empty() && anchor != "Patient" {
        text = format!("{text} ({anchor})");
    }
    Some(shorten(&text))
}

fn patient_summary(p: &Value) -> String {
    let name = person_name(p);
    let mrn = mrn(p);
    match (name, mrn) {
        (Some(n), Some(m)) => format!("{n} · MRN {m}"),
        (Some(n), None) => n,
        (None, Some(m)) => format!("MRN {m}"),
        (None, None) => match p["id"].as_str() {
            Some(id) => format!("Patient {id}"),
            None => "Patient".to_owned(),
        },
    }
}

/// The official name if there is one, else the first: its `text`, or
/// "FAMILY, Given".
fn person_name(p: &Value) -> Option<String> {
    let names = p["name"].as_array()?;
    let name = names
        .iter()
        .find(|n| n["use"] == "official")
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

/// The identifier typed MR (HL7 v2 table 0203), else the first one.
fn mrn(p: &Value) -> Option<String> {
    let ids = p["identifier"].as_array()?;
    let is_mr = |i: &&Value| {
        i["type"]["coding"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["code"] == "MR"))
    };
    let id = ids.iter().find(is_mr).or_else(|| ids.first())?;
    id["value"].as_str().map(str::to_owned)
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_CHARS {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(MAX_CHARS - 1).collect();
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
        assert_eq!(
            context_summary(&current("Patient", vec![p])).as_deref(),
            Some("DOE, John Q · MRN 12345")
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
    fn long_names_are_cut() {
        let p = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(100)}]});
        let s = context_summary(&current("Patient", vec![p])).unwrap();
        assert_eq!(s.chars().count(), MAX_CHARS);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn odd_shapes_never_panic() {
        for v in [
            json!(null),
            json!({"context": "x"}),
            json!({"context": [1, null, {"resource": 3}]}),
            json!({"context.type": "Patient", "context": [{"resource": {"resourceType": "Patient", "name": "x", "identifier": 5}}]}),
        ] {
            let _ = context_summary(&v);
        }
    }
}
