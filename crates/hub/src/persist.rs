//! Durability: what the hub writes to `storage`, and what comes back after
//! a crash or restart (issue 6).
//!
//! - Subscriptions come back, so apps that reconnect to their endpoints
//!   within their lease are confirmed and resynced.
//! - Open contexts come back only if the hub was down for less than the
//!   recovery window: an older context may be stale, and a stale patient
//!   must never be put back on screen. Apps of a topic whose context was
//!   discarded get a SyncError saying so when they reconnect.
//! - Every accepted event is journaled before its 2xx; the audit trail
//!   records who did what.
//!
//! Bookkeeping writes (subscriptions, contexts, audit) are queued and not
//! awaited: the writer thread commits them in order, right behind the
//! calls. Only the journal append is awaited, because it gates the 2xx.

use std::time::{Duration, SystemTime};

use fhircast::{EventKind, EventSet};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::ids::short;
use crate::state::State;
use crate::storage::{AuditRecord, OpenReport, Storage, StoredSubscription};
use crate::sync_error::sync_error_frame;
use crate::topic::{Subscription, Topic};
use crate::{Config, Hub};
use fhircast::ContextStack;

/// Opens the database in the data folder; the hub runs without durability
/// (and says so) if that is impossible.
pub(crate) fn open(config: &Config) -> Option<(Storage, OpenReport)> {
    secure_data_dir(&config.data_dir);
    if !config.persist {
        return None;
    }
    match Storage::open(&config.data_dir) {
        Ok((storage, report)) => {
            storage.set_journal_max_bytes(config.journal_max_bytes);
            match (&report.moved_aside, &report.restored_from) {
                (moved, Some((copy, apps))) => error!(
                    moved_to = moved.as_ref().map(|m| m.display().to_string()),
                    restored_from = %copy.display(),
                    apps,
                    "the database could not be used; the registered apps were restored from the verified copy"
                ),
                (Some(moved), None) => {
                    error!(moved_to = %moved.display(), "the database was unreadable and was moved aside; it held no registered app; starting empty")
                }
                (None, None) => {}
            }
            Some((storage, report))
        }
        Err(e) => {
            error!(error = %e, dir = %config.data_dir.display(), "cannot open the database: running without durable state");
            None
        }
    }
}

/// The data folder holds live endpoint ids and patient context: only its
/// owner may enter it (0700), whatever the umask made of the files inside.
pub(crate) fn secure_data_dir(dir: &std::path::Path) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        error!(dir = %dir.display(), error = %e, "cannot create the data folder");
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            error!(dir = %dir.display(), error = %e, "cannot make the data folder private (0700)");
        }
    }
}

/// What `recover` leaves for `start_background`.
pub(crate) enum Restored {
    /// A WebSocket subscription, back in the state: its lease timer is to
    /// start; the app reconnects to its endpoint.
    Subscription {
        topic: String,
        endpoint_id: String,
        lease_until: Instant,
    },
    /// A webhook subscription, to be verified again and re-admitted.
    Webhook(crate::webhook::Restore),
}

/// Rebuilds subscriptions and (within the recovery window) open contexts.
pub(crate) fn recover(
    state: &mut State,
    storage: &Storage,
    report: &OpenReport,
    config: &Config,
    auth: &crate::auth::Auth,
) -> Vec<Restored> {
    let now = SystemTime::now();
    let subscriptions = storage.load_subscriptions().unwrap_or_else(|e| {
        error!(error = %e, "cannot read stored subscriptions");
        Vec::new()
    });
    let mut restored = Vec::new();
    for stored in subscriptions {
        let forget = |stored: &StoredSubscription| {
            storage.delete_subscription(&stored.endpoint_id).detach();
            if stored.callback.is_some() {
                crate::webhook::forget_secret(config.secret_store.as_ref(), &stored.endpoint_id);
            }
        };
        let Ok(left) = stored.lease_until.duration_since(now) else {
            forget(&stored);
            continue; // Lease ran out while the hub was down.
        };
        let revoked = stored
            .client_id
            .as_deref()
            .is_some_and(|c| !auth.still_allowed(c));
        let Ok(events) = EventSet::parse(&stored.events) else {
            continue;
        };
        if revoked || events.is_empty() {
            forget(&stored);
            continue;
        }
        if let Some(callback) = stored.callback.clone() {
            // Re-admitted under a new endpoint id once verified again. The
            // topic stays meanwhile, so its contexts are restored and then
            // replayed to the app; `subscriptions::mark_if_unfollowed`
            // makes it idle if the app is gone.
            state.topics.entry(stored.topic.clone()).or_default();
            storage.delete_subscription(&stored.endpoint_id).detach();
            let store = config.secret_store.as_ref();
            if let Some(r) = crate::webhook::Restore::take(stored, callback, events, left, store) {
                restored.push(Restored::Webhook(r));
            }
            continue;
        }
        let lease_until = Instant::now() + left;
        let sub = restored_subscription(&stored, events, lease_until);
        state
            .endpoints
            .insert(stored.endpoint_id.clone(), stored.topic.clone());
        state
            .followed_topic(&stored.topic)
            .subscriptions
            .insert(stored.endpoint_id.clone(), sub);
        restored.push(Restored::Subscription {
            topic: stored.topic,
            endpoint_id: stored.endpoint_id,
            lease_until,
        });
    }
    let down_for = report.last_alive.and_then(|t| now.duration_since(t).ok());
    let fresh = down_for.is_some_and(|d| d <= config.recovery_window);
    for snapshot in storage.load_context_snapshots().unwrap_or_default() {
        let (topic_id, value) = (snapshot.topic, snapshot.state);
        // A topic nobody follows (yet) keeps its contexts too, within the
        // window: the apps come back after the hub does.
        if fresh && !state.topics.contains_key(&topic_id) {
            state.topics.insert(topic_id.clone(), Topic::unfollowed());
        }
        let Some(topic) = state.topics.get_mut(&topic_id) else {
            storage.delete_contexts(&topic_id).detach();
            continue;
        };
        let Ok(mut contexts) = serde_json::from_value::<ContextStack>(value) else {
            warn!(
                topic = short(&topic_id),
                "stored context unreadable; discarded"
            );
            storage.delete_contexts(&topic_id).detach();
            continue;
        };
        if fresh {
            // Snapshots are coalesced: the events accepted after this one
            // are in the journal, applied again in order.
            match replay_tail(storage, &topic_id, snapshot.journal_seq, &mut contexts) {
                Ok(0) => {}
                Ok(n) => {
                    info!(
                        topic = short(&topic_id),
                        events = n,
                        "contexts rebuilt from the snapshot and the journal"
                    );
                    save_contexts(Some(storage), &topic_id, &contexts);
                }
                Err(why) => {
                    // Half a replay could show a patient who is no longer
                    // current: nothing rather than that.
                    error!(topic = short(&topic_id), reason = %why, "the journal after the saved context cannot be applied; context discarded");
                    storage.delete_contexts(&topic_id).detach();
                    if let Some(current) = contexts.open_contexts().last() {
                        let reason = "Lockstep restarted and could not rebuild the previous context from its journal: it was discarded rather than restored; open the current study again";
                        notify_discarded(topic, &topic_id, &current.open_message, reason);
                    }
                    continue;
                }
            }
            topic.contexts = contexts;
            continue;
        }
        storage.delete_contexts(&topic_id).detach();
        if let Some(current) = contexts.open_contexts().last() {
            let reason = match down_for {
                Some(d) => format!(
                    "Lockstep restarted after {} s down, longer than the {} s recovery window: the previous context was discarded rather than restored; open the current study again",
                    d.as_secs(),
                    config.recovery_window.as_secs()
                ),
                None => "Lockstep restarted after an unclean stop: the previous context was discarded rather than restored; open the current study again".to_owned(),
            };
            warn!(
                topic = short(&topic_id),
                "context older than the recovery window discarded"
            );
            notify_discarded(topic, &topic_id, &current.open_message, &reason);
        }
    }
    if !restored.is_empty() {
        info!(
            subscriptions = restored.len(),
            contexts_restored = fresh,
            "recovered after restart"
        );
    }
    restored
}

/// A subscription read back from the database after a restart. It counts
/// as used: its app was connected before.
fn restored_subscription(
    stored: &StoredSubscription,
    events: EventSet,
    lease_until: Instant,
) -> Subscription {
    let mut sub = Subscription::new(
        stored.endpoint_id.clone(),
        stored.topic.clone(),
        events,
        stored.subscriber_name.clone(),
        stored.client_id.clone(),
        lease_until,
    );
    sub.ever_connected = true;
    sub
}

/// Queues a SyncError for each syncerror subscriber of a topic whose
/// context was discarded; it is sent right after their next confirmation.
fn notify_discarded(
    topic: &mut Topic,
    topic_id: &str,
    open: &serde_json::Map<String, Value>,
    reason: &str,
) {
    let event_id = fhircast::notification::id(open).unwrap_or("unknown");
    let event_name = fhircast::notification::event_name(open).unwrap_or("unknown");
    for sub in topic
        .subscriptions
        .values_mut()
        .filter(|s| s.events.contains_folded("syncerror"))
    {
        let (_, frame) =
            sync_error_frame(topic_id, event_id, event_name, &sub.display_name(), reason);
        sub.notice = Some(frame);
    }
}

/// The stored form of a subscription.
pub(crate) fn stored(sub: &Subscription) -> StoredSubscription {
    let left = sub.lease_until.saturating_duration_since(Instant::now());
    StoredSubscription {
        endpoint_id: sub.endpoint_id.clone(),
        topic: sub.topic.clone(),
        events: sub.events.to_string(),
        subscriber_name: sub.name.clone(),
        client_id: sub.client_id.clone(),
        lease_until: SystemTime::now() + left,
        created_at: SystemTime::now(),
        callback: sub.webhook.as_ref().map(|h| h.callback.clone()),
    }
}

/// The longest journal tail applied to a snapshot: snapshots are written
/// at least every `SNAPSHOT_EVERY_EVENTS` changes, so a longer one means
/// something else went wrong.
const MAX_REPLAY: usize = 100 * crate::storage::SNAPSHOT_EVERY_EVENTS as usize;

/// Applies `topic`'s journal rows after `after_seq` to `contexts`, as the
/// publish did (with the versionIds it handed out); returns how many.
fn replay_tail(
    storage: &Storage,
    topic: &str,
    after_seq: u64,
    contexts: &mut ContextStack,
) -> Result<usize, String> {
    let tail = storage
        .journal_tail(topic, after_seq, MAX_REPLAY + 1)
        .map_err(|e| e.to_string())?;
    if tail.len() > MAX_REPLAY {
        return Err(format!("more than {MAX_REPLAY} events after the snapshot"));
    }
    for entry in &tail {
        replay(contexts, &entry.message_json)
            .map_err(|e| format!("journal seq {} ({}): {e}", entry.seq, entry.event_name))?;
    }
    Ok(tail.len())
}

/// One journaled (broadcast) event applied to a context stack again.
pub(crate) fn replay(contexts: &mut ContextStack, message_json: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(message_json).map_err(|e| e.to_string())?;
    // The journal holds what was broadcast, accepted once already: the
    // relaxed edition's rules, so an STU2 path's event replays too.
    let mut event = fhircast::Event::from_value(value, fhircast::Version::Stu2).map_err(|e| e.0)?;
    if event.name.folded() == "userlogout" {
        *contexts = ContextStack::default();
        return Ok(());
    }
    let broadcast_version = || {
        event
            .event()
            .get("context.versionId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or("no context.versionId in the journaled event")
    };
    match event.name.kind() {
        EventKind::Open(resource) => {
            let version = broadcast_version()?;
            contexts
                .open(&event, &resource, version)
                .map_err(|e| e.to_string())?;
            contexts.set_derived(fhircast::notification::derived_opens(
                &event,
                &resource,
                crate::ids::uuid,
            ));
        }
        EventKind::Close(resource) => contexts
            .close(&event, &resource)
            .map_err(|e| e.to_string())?,
        EventKind::Update(resource) => {
            let version = broadcast_version()?;
            // The request carried the prior version; the broadcast, both.
            event.version_id = event
                .event()
                .get("context.priorVersionId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            contexts
                .update(&event, &resource, version)
                .map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    Ok(())
}

/// After a publish changed a topic's contexts: saves them if a snapshot is
/// due (`Storage::snapshot_due`), else leaves the change to the journal
/// until the next one. `journal_bytes`: the size of the change's journal row.
pub(crate) fn save_contexts_coalesced(
    storage: Option<&Storage>,
    topic_id: &str,
    contexts: &ContextStack,
    journal_bytes: usize,
) {
    if storage.is_some_and(|s| s.snapshot_due(topic_id, journal_bytes)) {
        save_contexts(storage, topic_id, contexts);
    }
}

/// Saves a topic's open contexts after a change.
pub(crate) fn save_contexts(storage: Option<&Storage>, topic_id: &str, contexts: &ContextStack) {
    if let Some(storage) = storage {
        // Straight to text: building a `Value` first cost most of a publish
        // with many open contexts (docs/PERFORMANCE.md).
        match serde_json::to_string(contexts) {
            Ok(json) => {
                storage.save_contexts_json(topic_id, json).detach();
            }
            Err(e) => error!(error = %e, "cannot serialize contexts"),
        }
    }
}

/// An audit record about a request on `topic` by `caller`.
pub(crate) fn record(
    action: crate::storage::AuditAction,
    topic: &str,
    caller: Option<&crate::auth::Principal>,
) -> AuditRecord {
    let mut r = AuditRecord::new(action, "");
    r.topic = Some(topic.to_owned());
    if let Some(c) = caller {
        r.client_id = Some(c.client_id.clone());
        r.token_subject = Some(c.client_id.clone());
        r.subscriber_name = Some(c.app_name.clone());
    }
    r
}

/// "401 the access token has expired" and the like.
pub(crate) fn outcome(e: &crate::error::ApiError) -> String {
    format!("{} {}", e.status.as_u16(), e.message)
}

/// How often the hub notes that it is alive (the recovery window is
/// measured from the last note).
const ALIVE_EVERY: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Hub {
    /// Records an audit entry; nothing without a database.
    pub(crate) fn audit(&self, record: AuditRecord) {
        if let Some(storage) = self.storage() {
            storage.audit(record);
        }
    }

    /// Starts what a running hub does in the background: lease timers of
    /// restored subscriptions, the alive note, audit and journal retention.
    pub(crate) fn start_background(&self) {
        self.sweep_idle_topics();
        for r in self.take_restored() {
            match r {
                Restored::Subscription {
                    topic,
                    endpoint_id,
                    lease_until,
                } => self.watch_lease(topic, endpoint_id, lease_until, 0),
                Restored::Webhook(w) => {
                    let hub = self.clone();
                    self.tasks().spawn(hub.restore_webhook(w));
                }
            }
        }
        let Some(storage) = self.storage().cloned() else {
            return;
        };
        let hub = self.clone();
        tokio::spawn(async move {
            let mut alive = tokio::time::interval(ALIVE_EVERY);
            // `lockstep-hub apps remove` in another process takes effect within a second.
            let mut registrations = tokio::time::interval(Duration::from_secs(1));
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            let mut snapshots = tokio::time::interval(crate::storage::SNAPSHOT_EVERY);
            loop {
                tokio::select! {
                    _ = snapshots.tick() => hub.save_overdue_snapshots(&storage),
                    _ = alive.tick() => { storage.mark_alive(SystemTime::now()).detach(); }
                    _ = prune.tick() => {
                        let cutoff = SystemTime::now() - hub.config().audit_retention;
                        storage.prune_audit(cutoff).detach();
                        storage.prune_journal(cutoff).detach();
                    }
                    _ = registrations.tick() => { hub.apps().refresh(); }
                    _ = hub.shutdown_token().cancelled() => return,
                }
            }
        });
    }

    /// Saves the contexts of topics whose changes since their snapshot are
    /// [`crate::storage::SNAPSHOT_EVERY`] old (coalesced snapshots).
    fn save_overdue_snapshots(&self, storage: &Storage) {
        let due = storage.overdue_snapshots();
        if due.is_empty() {
            return;
        }
        let state = self.lock();
        for topic_id in due {
            if let Some(topic) = state.topics.get(&topic_id) {
                save_contexts(Some(storage), &topic_id, &topic.contexts);
            }
        }
    }

    /// At shutdown: note the time and wait until everything is on disk.
    pub(crate) async fn flush_storage(&self) {
        if let Some(storage) = self.storage() {
            // The journal tails become snapshots: a clean start replays nothing.
            for topic_id in storage.overdue_snapshots_all() {
                let state = self.lock();
                if let Some(topic) = state.topics.get(&topic_id) {
                    save_contexts(Some(storage), &topic_id, &topic.contexts);
                }
            }
            storage.mark_alive(SystemTime::now()).detach();
            if let Err(e) = storage.flush().await {
                error!(error = %e, "could not flush the database at shutdown");
            }
        }
    }
}
