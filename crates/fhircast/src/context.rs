//! `ContextStack`: the open contexts of one topic (2-9, 2-10, 4-2-2).
//!
//! Every `*-open` not yet closed is kept, most recently opened last; the last
//! one is the current context unless it was closed. Closing the current
//! context leaves the topic with no current context (2-9): it never falls
//! back to an older one. Each open context carries its `context.versionId`
//! and its shared content. Pure logic, no I/O: the caller supplies fresh ids.

use crate::validate::{anchor_reference, parse_reference, resource_type_and_id};
use crate::{catalog, Content, Event, ResourceKey};
use serde_json::{json, Map, Value};

/// The most open contexts a topic keeps; opening one more drops the oldest
/// suspended one. A reading session has a handful of tabs, not hundreds.
pub const MAX_OPEN_CONTEXTS: usize = 64;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OpenContext {
    /// The anchor's resourceType as the resource spelled it (`DiagnosticReport`).
    pub anchor_type: String,
    pub anchor_id: String,
    /// The last `-open` message for this anchor as broadcast (minus version).
    pub open_message: Map<String, Value>,
    /// Derived open events that went with it (4.6), kept for replay.
    pub derived: Vec<Map<String, Value>>,
    pub version_id: String,
    pub content: Content,
    /// Keys of the resources the `-open` carried; they can't be deleted.
    pub original: Vec<ResourceKey>,
    pub patient_id: Option<String>,
    /// Versions this context went through, oldest first (for the dashboard).
    pub history: Vec<Version>,
}

/// One version of an open context: which event made it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub version_id: String,
    pub prior_version_id: Option<String>,
    pub event_id: String,
    pub timestamp: String,
    pub event_name: String,
}

/// Versions kept per context; the oldest go first.
const MAX_HISTORY: usize = 100;

impl Version {
    fn of(event: &Event, version_id: &str, prior: Option<String>) -> Version {
        Version {
            version_id: version_id.to_owned(),
            prior_version_id: prior,
            event_id: event.id.clone(),
            timestamp: event.timestamp.clone(),
            event_name: event.name.to_string(),
        }
    }
}

/// Serialized as is into the `contexts` table, so a restart within the
/// recovery window brings the session back exactly.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ContextStack {
    open: Vec<OpenContext>,
    /// Whether the last element of `open` is the current context.
    has_current: bool,
}

/// Why a context change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextError {
    /// The event refers to a context that is not open (409, IHE IRA).
    NotOpen(String),
    /// `context.versionId` does not match (400).
    StaleVersion { expected: String, got: String },
    /// The content bundle cannot be applied (400).
    Content(String),
}

impl std::fmt::Display for ContextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextError::NotOpen(what) => write!(f, "{what} is not an open context on this topic"),
            ContextError::StaleVersion { expected, got } => write!(
                f,
                "version mismatch: context.versionId {got:?} is not the current version {expected:?} of this context; fetch the current context and retry"
            ),
            ContextError::Content(msg) => f.write_str(msg),
        }
    }
}

/// The outcome of an accepted update.
pub struct Updated {
    pub prior_version: String,
    pub version: String,
}

fn anchor_of(event: &Event, resource_type: &str) -> Option<(String, String)> {
    let key = catalog::anchor_key(resource_type);
    let context = event.context();
    let matches = |item: &&Value| {
        item.get("resource")
            .and_then(resource_type_and_id)
            .is_some_and(|(t, _)| t.eq_ignore_ascii_case(resource_type))
    };
    let item = context
        .iter()
        .filter(|i| i["key"] == key.as_str())
        .find(matches)
        .or_else(|| context.iter().find(matches))?;
    let (t, id) = resource_type_and_id(&item["resource"])?;
    Some((t.to_owned(), id.to_owned()))
}

fn patient_of(context: &[Value]) -> Option<String> {
    context
        .iter()
        .find(|i| i["key"] == "patient")
        .and_then(|i| {
            i.get("resource")
                .and_then(resource_type_and_id)
                .or_else(|| i.get("reference").and_then(parse_reference))
                .map(|(_, id)| id.to_owned())
        })
}

impl ContextStack {
    fn position(&self, resource_type: &str, id: &str) -> Option<usize> {
        self.open
            .iter()
            .position(|c| c.anchor_type.eq_ignore_ascii_case(resource_type) && c.anchor_id == id)
    }

    /// The current context, if any.
    pub fn current(&self) -> Option<&OpenContext> {
        self.has_current.then(|| self.open.last()).flatten()
    }

    /// All open contexts, oldest first.
    pub fn open_contexts(&self) -> &[OpenContext] {
        &self.open
    }

    /// Applies a `{type}-open`: a new context becomes current; re-opening a
    /// still-open anchor for the same patient resumes it with its version and
    /// content (IHE IRA suspend/resume). Returns the versionId to broadcast.
    pub fn open(
        &mut self,
        event: &Event,
        resource_type: &str,
        new_version: String,
    ) -> Result<String, ContextError> {
        let (anchor_type, anchor_id) = anchor_of(event, resource_type).ok_or_else(|| {
            ContextError::Content(format!(
                "{} has no {resource_type} resource with an id",
                event.name
            ))
        })?;
        let patient_id = patient_of(event.context());
        let mut open_message = event.message.clone();
        if let Some(ev) = open_message.get_mut("event").and_then(Value::as_object_mut) {
            ev.remove("context.versionId");
            ev.remove("context.priorVersionId");
        }
        let original: Vec<ResourceKey> = event
            .context()
            .iter()
            .filter_map(|i| i.get("resource").and_then(ResourceKey::of))
            .collect();
        let resumed = match self.position(&anchor_type, &anchor_id) {
            Some(i) if self.open[i].patient_id == patient_id => {
                let mut ctx = self.open.remove(i);
                ctx.open_message = open_message.clone();
                // Resources the re-open brings are part of the context too.
                let mut known: std::collections::HashSet<ResourceKey> =
                    ctx.original.iter().cloned().collect();
                for key in &original {
                    if known.insert(key.clone()) {
                        ctx.original.push(key.clone());
                    }
                }
                Some(ctx)
            }
            Some(i) => {
                // Same anchor id, different patient: never resume someone else's content.
                self.open.remove(i);
                None
            }
            None => None,
        };
        let history = vec![Version::of(event, &new_version, None)];
        let ctx = resumed.unwrap_or(OpenContext {
            anchor_type,
            anchor_id,
            open_message,
            derived: Vec::new(),
            version_id: new_version,
            content: Content::default(),
            original,
            patient_id,
            history,
        });
        let version = ctx.version_id.clone();
        self.open.push(ctx);
        self.has_current = true;
        if self.open.len() > MAX_OPEN_CONTEXTS {
            self.open.remove(0);
        }
        Ok(version)
    }

    /// Records the derived open events sent along with the current context.
    pub fn set_derived(&mut self, derived: Vec<Map<String, Value>>) {
        if let Some(ctx) = self.open.last_mut() {
            ctx.derived = derived;
        }
    }

    /// Applies a `{type}-close`: the matching context and its content go away;
    /// if it was current, the topic has no current context.
    pub fn close(&mut self, event: &Event, resource_type: &str) -> Result<(), ContextError> {
        let (t, id) = anchor_of(event, resource_type).ok_or_else(|| {
            ContextError::Content(format!(
                "{} has no {resource_type} resource with an id",
                event.name
            ))
        })?;
        let i = self
            .position(&t, &id)
            .ok_or_else(|| ContextError::NotOpen(format!("{t}/{id}")))?;
        let was_current = self.has_current && i + 1 == self.open.len();
        self.open.remove(i);
        if was_current {
            self.has_current = false;
        }
        Ok(())
    }

    /// Applies a `{type}-update`: checks the version, applies the bundle
    /// atomically and moves the context to a new version (2-10).
    pub fn update(
        &mut self,
        event: &Event,
        resource_type: &str,
        new_version: String,
    ) -> Result<Updated, ContextError> {
        let i = self.anchor_position(event, resource_type)?;
        let ctx = &mut self.open[i];
        let got = event.version_id.clone().unwrap_or_default();
        if got != ctx.version_id {
            return Err(ContextError::StaleVersion {
                expected: ctx.version_id.clone(),
                got,
            });
        }
        let bundle = event
            .context()
            .iter()
            .find(|i| i["key"] == "updates")
            .and_then(|i| i.get("resource"))
            .ok_or_else(|| {
                ContextError::Content(format!("{} needs an 'updates' Bundle", event.name))
            })?;
        ctx.content = ctx
            .content
            .apply(bundle, &ctx.original)
            .map_err(|e| ContextError::Content(e.0))?;
        let prior_version = std::mem::replace(&mut ctx.version_id, new_version.clone());
        if ctx.history.len() >= MAX_HISTORY {
            ctx.history.remove(0);
        }
        let entry = Version::of(event, &new_version, Some(prior_version.clone()));
        ctx.history.push(entry);
        Ok(Updated {
            prior_version,
            version: new_version,
        })
    }

    /// Checks a `{type}-select` against the anchor; returns the selected
    /// references the hub does not know (answered with 206, IHE IRA).
    pub fn select(&self, event: &Event, resource_type: &str) -> Result<Vec<String>, ContextError> {
        let ctx = &self.open[self.anchor_position(event, resource_type)?];
        // One lookup per selected reference, however many there are.
        let known: std::collections::HashSet<&ResourceKey> =
            ctx.content.keys().chain(&ctx.original).collect();
        let unknown = event
            .context()
            .iter()
            .filter(|i| i["key"] == "select")
            .filter_map(|i| i.get("reference").and_then(parse_reference))
            .map(|(t, id)| ResourceKey::new(t, id))
            .filter(|k| !known.contains(k))
            .map(|k| k.0)
            .collect();
        Ok(unknown)
    }

    fn anchor_position(&self, event: &Event, resource_type: &str) -> Result<usize, ContextError> {
        let (t, id) = anchor_reference(event.context(), resource_type).ok_or_else(|| {
            ContextError::Content(format!("{} does not name its {resource_type}", event.name))
        })?;
        self.position(t, id)
            .ok_or_else(|| ContextError::NotOpen(format!("{t}/{id}")))
    }

    /// The Get Current Context answer (2-9; checklist 86-92).
    pub fn snapshot(&self) -> Value {
        let Some(ctx) = self.current() else {
            return json!({"context.type": "", "context": []});
        };
        let mut context: Vec<Value> = ctx.open_message["event"]["context"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        context.push(json!({"key": "content", "resource": ctx.content.to_bundle(&ctx.version_id)}));
        json!({
            "context.type": ctx.anchor_type,
            "context.versionId": ctx.version_id,
            "context": context,
        })
    }
}

#[cfg(test)]
#[path = "context_props.rs"]
mod props;
