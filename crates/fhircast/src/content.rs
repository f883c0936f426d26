//! Content sharing (2-10): the resources an open anchor context has
//! accumulated through `*-update` bundles. Applying a bundle builds a new
//! `Content` and leaves the old one untouched, so an update is applied in
//! full or not at all (checklist 96, 98, 101).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::validate::{parse_reference_str, resource_type_and_id};

/// `Type/id` of a resource, the key content is stored under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ResourceKey(pub String);

impl ResourceKey {
    pub fn new(resource_type: &str, id: &str) -> Self {
        ResourceKey(format!("{resource_type}/{id}"))
    }

    /// The key of a resource object, if it has a type and id.
    pub fn of(resource: &Value) -> Option<Self> {
        resource_type_and_id(resource).map(|(t, id)| ResourceKey::new(t, id))
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    key: ResourceKey,
    full_url: Option<String>,
    resource: Value,
}

/// The shared content of one anchor, in insertion order.
/// Serializable so the hub can keep it across a restart.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Content {
    entries: Vec<Entry>,
}

/// Most resources the content of one context holds. A report with its
/// findings has tens; the cap bounds memory, the per-update copy and the
/// stored form of a context that an app keeps adding to.
pub const MAX_RESOURCES: usize = 1000;

fn unindex_url(by_url: &mut HashMap<String, Vec<usize>>, url: &str, slot: usize) {
    if let Some(list) = by_url.get_mut(url) {
        list.retain(|&j| j != slot);
        if list.is_empty() {
            by_url.remove(url);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContentError(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, ContentError> {
    Err(ContentError(msg.into()))
}

impl Content {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &ResourceKey) -> bool {
        self.entries.iter().any(|e| &e.key == key)
    }

    /// Applies an `updates` transaction Bundle. `original` holds the keys of
    /// the resources of the anchor's `-open` event: they can be replaced in
    /// content, but not deleted from the context.
    pub fn apply(&self, bundle: &Value, original: &[ResourceKey]) -> Result<Content, ContentError> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return fail("updates must be a Bundle");
        }
        match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => {}
            other => {
                return fail(format!(
                    "updates Bundle must have type \"transaction\", not {other:?}"
                ))
            }
        }
        let entries = match bundle.get("entry") {
            None => return Ok(self.clone()),
            Some(Value::Array(entries)) => entries,
            Some(_) => return fail("updates Bundle entry must be an array"),
        };
        // Slots keep the order (a deleted one becomes None); the indexes by
        // key and by fullUrl make each Bundle entry O(1), so an update costs
        // O(content + Bundle) however large either is.
        let mut slots: Vec<Option<Entry>> = self.entries.iter().cloned().map(Some).collect();
        let mut by_key: HashMap<ResourceKey, usize> = HashMap::new();
        let mut by_url: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            by_key.insert(e.key.clone(), i);
            if let Some(url) = &e.full_url {
                by_url.entry(url.clone()).or_default().push(i);
            }
        }
        let mut live = self.entries.len();
        let mut seen: HashSet<ResourceKey> = HashSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let method = entry
                .pointer("/request/method")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase);
            let full_url = entry.get("fullUrl").and_then(Value::as_str);
            let key = match method.as_deref() {
                // POST is what an AI reporting assistant documents for new
                // findings; with an id it is the same as PUT (the content is
                // keyed by Type/id), without one there is nothing to key it by.
                Some(m @ ("PUT" | "POST")) => {
                    let Some(resource) = entry.get("resource") else {
                        return fail(format!("updates entry {i}: {m} without a resource"));
                    };
                    let Some(key) = ResourceKey::of(resource) else {
                        return fail(if m == "POST" {
                            format!("updates entry {i}: POST of a resource without an id; give the resource a resourceType and an id (it is then stored like PUT)")
                        } else {
                            format!("updates entry {i}: the resource needs resourceType and id")
                        });
                    };
                    let stored = Entry {
                        key: key.clone(),
                        full_url: full_url.map(str::to_owned),
                        resource: resource.clone(),
                    };
                    let slot = match by_key.get(&key) {
                        Some(&slot) => {
                            let old_url = slots[slot].as_ref().and_then(|e| e.full_url.clone());
                            if let Some(old) = old_url {
                                unindex_url(&mut by_url, &old, slot);
                            }
                            slots[slot] = Some(stored);
                            slot
                        }
                        None => {
                            slots.push(Some(stored));
                            live += 1;
                            by_key.insert(key.clone(), slots.len() - 1);
                            slots.len() - 1
                        }
                    };
                    if let Some(url) = full_url {
                        let list = by_url.entry(url.to_owned()).or_default();
                        let at = list.partition_point(|&j| j < slot);
                        list.insert(at, slot);
                    }
                    key
                }
                Some("DELETE") => {
                    let target =
                        full_url.or_else(|| entry.pointer("/request/url").and_then(Value::as_str));
                    let Some(target) = target else {
                        return fail(format!(
                            "updates entry {i}: DELETE needs a fullUrl naming the resource"
                        ));
                    };
                    let target_key =
                        parse_reference_str(target).map(|(t, id)| ResourceKey::new(t, id));
                    // The first resource whose fullUrl or Type/id the target names.
                    let by_url_slot = by_url.get(target).and_then(|l| l.first().copied());
                    let by_key_slot = target_key.as_ref().and_then(|k| by_key.get(k).copied());
                    let position = match (by_url_slot, by_key_slot) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    match position.and_then(|p| slots[p].take().map(|e| (p, e))) {
                        Some((p, removed)) => {
                            by_key.remove(&removed.key);
                            if let Some(url) = &removed.full_url {
                                unindex_url(&mut by_url, url, p);
                            }
                            live -= 1;
                            removed.key
                        }
                        None => {
                            if target_key.as_ref().is_some_and(|k| original.contains(k)) {
                                return fail(format!(
                                    "updates entry {i}: {target} is part of the original open context and cannot be deleted"
                                ));
                            }
                            return fail(format!("updates entry {i}: {target} is not currently in the content bundle"));
                        }
                    }
                }
                Some(other) => {
                    return fail(format!(
                        "updates entry {i}: method {other} is not allowed (only PUT, POST with an id, and DELETE)"
                    ))
                }
                None => return fail(format!("updates entry {i}: request.method is missing")),
            };
            if !seen.insert(key.clone()) {
                return fail(format!("updates Bundle names {} more than once", key.0));
            }
        }
        if live > MAX_RESOURCES {
            return fail(format!(
                "this update would make the shared content hold {live} resources; the hub keeps at most {MAX_RESOURCES} per context"
            ));
        }
        Ok(Content {
            entries: slots.into_iter().flatten().collect(),
        })
    }

    /// The Get Current Context form: a `collection` Bundle, no `request`s (checklist 91).
    pub fn to_bundle(&self, id: &str) -> Value {
        let entry: Vec<Value> = self
            .entries
            .iter()
            .map(|e| match &e.full_url {
                Some(url) => json!({"fullUrl": url, "resource": e.resource}),
                None => json!({"resource": e.resource}),
            })
            .collect();
        let mut bundle = json!({"resourceType": "Bundle", "id": id, "type": "collection"});
        // FHIR JSON has no empty arrays: an empty Bundle has no `entry` at all.
        if !entry.is_empty() {
            bundle["entry"] = Value::Array(entry);
        }
        bundle
    }

    /// Resources currently in the content, as `(Type, id)` keys.
    pub fn keys(&self) -> impl Iterator<Item = &ResourceKey> {
        self.entries.iter().map(|e| &e.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(t: &str, id: &str) -> Value {
        json!({"request": {"method": "PUT"}, "resource": {"resourceType": t, "id": id}})
    }
    fn delete(url: &str) -> Value {
        json!({"fullUrl": url, "request": {"method": "DELETE"}})
    }
    fn bundle(entries: Vec<Value>) -> Value {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    }

    #[test]
    fn put_then_delete() {
        let c = Content::default()
            .apply(&bundle(vec![put("Observation", "o1")]), &[])
            .unwrap();
        assert_eq!(c.len(), 1);
        let c = c
            .apply(
                &bundle(vec![put("Observation", "o1"), put("Observation", "o2")]),
                &[],
            )
            .unwrap();
        assert_eq!(c.len(), 2);
        let c = c
            .apply(&bundle(vec![delete("Observation/o1")]), &[])
            .unwrap();
        assert_eq!(
            c.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(),
            ["Observation/o2"]
        );
    }

    #[test]
    fn failures_leave_content_unchanged() {
        let c = Content::default()
            .apply(&bundle(vec![put("Observation", "o1")]), &[])
            .unwrap();
        let original = [ResourceKey::new("DiagnosticReport", "r1")];
        let e = c
            .apply(
                &bundle(vec![
                    put("Observation", "o2"),
                    delete("DiagnosticReport/r1"),
                ]),
                &original,
            )
            .unwrap_err();
        assert!(e.0.contains("original open context"), "{e}");
        let e = c
            .apply(&bundle(vec![delete("Observation/nope")]), &original)
            .unwrap_err();
        assert!(e.0.contains("not currently in the content bundle"));
        let e = c
            .apply(
                &bundle(vec![put("Observation", "o3"), put("Observation", "o3")]),
                &[],
            )
            .unwrap_err();
        assert!(e.0.contains("more than once"));
        let e = c.apply(&bundle(vec![json!({"request": {"method": "POST"}, "resource": {"resourceType": "Observation"}})]), &[]).unwrap_err();
        assert_eq!(e.0, "updates entry 0: POST of a resource without an id; give the resource a resourceType and an id (it is then stored like PUT)");
        let e = c.apply(&bundle(vec![json!({"request": {"method": "PATCH"}, "resource": {"resourceType": "Observation", "id": "o9"}})]), &[]).unwrap_err();
        assert!(e.0.contains("method PATCH is not allowed"), "{e}");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn post_with_an_id_is_stored_like_put() {
        let post = json!({"request": {"method": "POST", "url": "Observation"}, "resource": {"resourceType": "Observation", "id": "o1", "status": "preliminary"}});
        let c = Content::default().apply(&bundle(vec![post]), &[]).unwrap();
        let replaced = c
            .apply(&bundle(vec![put("Observation", "o1")]), &[])
            .unwrap();
        assert_eq!(replaced.len(), 1);
        assert_eq!(
            replaced.to_bundle("v")["entry"][0]["resource"],
            json!({"resourceType": "Observation", "id": "o1"})
        );
    }

    #[test]
    fn an_empty_bundle_has_no_entry_array() {
        let b = Content::default().to_bundle("v1");
        assert_eq!(
            b,
            json!({"resourceType": "Bundle", "id": "v1", "type": "collection"})
        );
    }

    #[test]
    fn delete_by_full_url_follows_a_replacing_put() {
        let with_url = |id: &str, url: &str| {
            json!({"fullUrl": url, "request": {"method": "PUT"},
                   "resource": {"resourceType": "Observation", "id": id}})
        };
        let c = Content::default()
            .apply(
                &bundle(vec![
                    with_url("o1", "urn:uuid:a"),
                    with_url("o2", "urn:uuid:b"),
                ]),
                &[],
            )
            .unwrap();
        let c = c
            .apply(&bundle(vec![with_url("o1", "urn:uuid:c")]), &[])
            .unwrap();
        let e = c
            .apply(&bundle(vec![delete("urn:uuid:a")]), &[])
            .unwrap_err();
        assert!(e.0.contains("not currently in the content bundle"), "{e}");
        let c = c.apply(&bundle(vec![delete("urn:uuid:c")]), &[]).unwrap();
        assert_eq!(
            c.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(),
            ["Observation/o2"]
        );
    }

    #[test]
    fn content_is_capped_and_large_updates_stay_linear() {
        let many = |from: usize, n: usize| {
            bundle(
                (from..from + n)
                    .map(|i| put("Observation", &format!("o{i}")))
                    .collect(),
            )
        };
        let started = std::time::Instant::now();
        let c = Content::default()
            .apply(&many(0, MAX_RESOURCES), &[])
            .unwrap();
        let c = c.apply(&many(0, MAX_RESOURCES), &[]).unwrap();
        // A complexity bound, not a timing race.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(c.len(), MAX_RESOURCES);
        let e = c.apply(&many(MAX_RESOURCES, 1), &[]).unwrap_err();
        assert_eq!(
            e.0,
            "this update would make the shared content hold 1001 resources; the hub keeps at most 1000 per context"
        );
        // Making room in the same update is fine.
        let swap = bundle(vec![delete("Observation/o0"), put("Observation", "new")]);
        assert_eq!(c.apply(&swap, &[]).unwrap().len(), MAX_RESOURCES);
    }
}
