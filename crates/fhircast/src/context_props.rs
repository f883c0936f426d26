//! Property tests of [`ContextStack`] (issue 14): open/close/update/select
//! in any order never panic, the versionId chain of every context is
//! consistent, and a refused event changes nothing at all.

use crate::{Event, EventKind, Version as Edition};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::ContextStack;

/// A small world, so that random steps often hit open contexts.
#[derive(Clone, Debug)]
enum Step {
    OpenPatient {
        patient: u8,
    },
    ClosePatient {
        patient: u8,
    },
    OpenReport {
        report: u8,
        patient: u8,
    },
    CloseReport {
        report: u8,
        patient: u8,
    },
    Update {
        report: u8,
        version: VersionChoice,
        entries: Vec<Change>,
    },
    Select {
        report: u8,
        observations: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
enum VersionChoice {
    /// The context's current versionId (what a well-behaved app sends).
    Current,
    /// One that was current once, or never was.
    Stale,
}

#[derive(Clone, Debug)]
enum Change {
    Put(u8),
    PostWithId(u8),
    PostWithoutId,
    Delete(u8),
    /// The report itself: part of the original open, never deletable.
    DeleteAnchor,
}

fn step() -> impl Strategy<Value = Step> {
    let change = prop_oneof![
        4 => (0u8..4).prop_map(Change::Put),
        2 => (0u8..4).prop_map(Change::PostWithId),
        1 => Just(Change::PostWithoutId),
        2 => (0u8..4).prop_map(Change::Delete),
        1 => Just(Change::DeleteAnchor),
    ];
    let version = prop_oneof![4 => Just(VersionChoice::Current), 1 => Just(VersionChoice::Stale)];
    prop_oneof![
        (0u8..3).prop_map(|patient| Step::OpenPatient { patient }),
        (0u8..3).prop_map(|patient| Step::ClosePatient { patient }),
        (0u8..3, 0u8..3).prop_map(|(report, patient)| Step::OpenReport { report, patient }),
        (0u8..3, 0u8..3).prop_map(|(report, patient)| Step::CloseReport { report, patient }),
        (0u8..3, version, proptest::collection::vec(change, 0..4)).prop_map(
            |(report, version, entries)| Step::Update {
                report,
                version,
                entries
            }
        ),
        (0u8..3, proptest::collection::vec(0u8..5, 1..3)).prop_map(|(report, observations)| {
            Step::Select {
                report,
                observations,
            }
        }),
    ]
}

fn patient(p: u8) -> Value {
    json!({"resourceType": "Patient", "id": format!("p{p}")})
}

fn report(r: u8, p: u8) -> Value {
    json!({"resourceType": "DiagnosticReport", "id": format!("r{r}"),
           "subject": {"reference": format!("Patient/p{p}")}})
}

fn message(id: usize, name: &str, version_id: Option<&str>, context: Value) -> Value {
    let mut event = json!({"hub.topic": "t", "hub.event": name, "context": context});
    if let Some(v) = version_id {
        event["context.versionId"] = v.into();
    }
    json!({"timestamp": "2026-01-01T08:00:00Z", "id": format!("e{id}"), "event": event})
}

fn entry(change: &Change, r: u8) -> Value {
    let observation = |o: u8| json!({"resourceType": "Observation", "id": format!("o{o}")});
    match change {
        Change::Put(o) => json!({"request": {"method": "PUT"}, "resource": observation(*o)}),
        Change::PostWithId(o) => {
            json!({"request": {"method": "POST"}, "resource": observation(*o)})
        }
        Change::PostWithoutId => json!({"request": {"method": "POST"},
                                        "resource": {"resourceType": "Observation"}}),
        Change::Delete(o) => json!({"request": {"method": "DELETE"},
                                    "fullUrl": format!("Observation/o{o}")}),
        Change::DeleteAnchor => json!({"request": {"method": "DELETE"},
                                       "fullUrl": format!("DiagnosticReport/r{r}")}),
    }
}

/// The event message for a step, as an app would publish it.
fn event_for(stack: &ContextStack, n: usize, step: &Step) -> Value {
    match step {
        Step::OpenPatient { patient: p } | Step::ClosePatient { patient: p } => {
            let name = match step {
                Step::OpenPatient { .. } => "Patient-open",
                _ => "Patient-close",
            };
            message(
                n,
                name,
                None,
                json!([{"key": "patient", "resource": patient(*p)}]),
            )
        }
        Step::OpenReport {
            report: r,
            patient: p,
        }
        | Step::CloseReport {
            report: r,
            patient: p,
        } => {
            let name = match step {
                Step::OpenReport { .. } => "DiagnosticReport-open",
                _ => "DiagnosticReport-close",
            };
            message(
                n,
                name,
                None,
                json!([{"key": "report", "resource": report(*r, *p)},
                       {"key": "patient", "resource": patient(*p)}]),
            )
        }
        Step::Update {
            report: r,
            version,
            entries,
        } => {
            let current = stack
                .open_contexts()
                .iter()
                .find(|c| c.anchor_id == format!("r{r}"))
                .map(|c| c.version_id.clone());
            let version_id = match version {
                VersionChoice::Current => current.unwrap_or_else(|| "none".to_owned()),
                VersionChoice::Stale => format!("v{}", n / 2),
            };
            let entries: Vec<Value> = entries.iter().map(|c| entry(c, *r)).collect();
            message(
                n,
                "DiagnosticReport-update",
                Some(&version_id),
                json!([{"key": "report", "reference": {"reference": format!("DiagnosticReport/r{r}")}},
                       {"key": "updates", "resource": {"resourceType": "Bundle", "type": "transaction",
                                                       "entry": entries}}]),
            )
        }
        Step::Select {
            report: r,
            observations,
        } => {
            let mut context = vec![json!({"key": "report",
                "reference": {"reference": format!("DiagnosticReport/r{r}")}})];
            context.extend(observations.iter().map(|o| {
                json!({"key": "select", "reference": {"reference": format!("Observation/o{o}")}})
            }));
            message(n, "DiagnosticReport-select", None, Value::Array(context))
        }
    }
}

/// Everything the stack holds: what a restart would restore.
fn state(stack: &ContextStack) -> Value {
    serde_json::to_value(stack).expect("the stack serializes")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_order_of_events_keeps_the_stack_consistent(steps in proptest::collection::vec(step(), 0..40)) {
        let mut stack = ContextStack::default();
        for (n, step) in steps.iter().enumerate() {
            let Ok(event) = Event::from_value(event_for(&stack, n, step), Edition::Stu3) else {
                continue; // Refused before it reaches the stack.
            };
            let before = state(&stack);
            let fresh = format!("v{n}");
            let anchor_version = |stack: &ContextStack, r: &str| {
                stack.open_contexts().iter().find(|c| c.anchor_id == r).map(|c| c.version_id.clone())
            };
            let refused = match event.name.kind() {
                EventKind::Open(t) => match stack.open(&event, &t, fresh.clone()) {
                    Ok(version) => {
                        let current = stack.current().expect("an open makes a current context");
                        prop_assert_eq!(&current.version_id, &version);
                        false
                    }
                    Err(_) => true,
                },
                EventKind::Close(t) => match stack.close(&event, &t) {
                    Ok(()) => {
                        let (_, id) = crate::validate::resource_type_and_id(&event.context()[0]["resource"]).expect("built with an id");
                        prop_assert!(stack.open_contexts().iter().all(|c| !(c.anchor_type.eq_ignore_ascii_case(&t) && c.anchor_id == id)));
                        false
                    }
                    Err(_) => true,
                },
                EventKind::Update(t) => {
                    let Step::Update { report, .. } = step else { unreachable!() };
                    let anchor = format!("r{report}");
                    let prior = anchor_version(&stack, &anchor);
                    match stack.update(&event, &t, fresh.clone()) {
                        Ok(updated) => {
                            // The chain: an update's prior is the version before it.
                            prop_assert_eq!(Some(updated.prior_version.clone()), prior);
                            prop_assert_eq!(&updated.version, &fresh);
                            prop_assert_eq!(anchor_version(&stack, &anchor), Some(fresh.clone()));
                            false
                        }
                        Err(_) => true,
                    }
                }
                EventKind::Select(t) => stack.select(&event, &t).is_err(),
                _ => unreachable!("only context events are generated"),
            };
            if refused || matches!(event.name.kind(), EventKind::Select(_)) {
                // A refused event (and any select) changes nothing.
                prop_assert_eq!(&before, &state(&stack));
            }
            for ctx in stack.open_contexts() {
                // Each context's history is a chain ending at its current version.
                prop_assert_eq!(&ctx.history.last().expect("history starts at open").version_id, &ctx.version_id);
                for pair in ctx.history.windows(2) {
                    prop_assert_eq!(pair[1].prior_version_id.as_ref(), Some(&pair[0].version_id));
                }
            }
            prop_assert!(stack.open_contexts().len() <= super::MAX_OPEN_CONTEXTS);
        }
    }
}
