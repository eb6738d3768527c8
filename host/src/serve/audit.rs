//! The audit log: who uploaded, granted, defined or ran what, and how it
//! ended. One object per entry under `<state>/audit/`, named so that a
//! listing is in time order; entries are never rewritten.

use std::sync::Arc;

use anyhow::Result;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde::{Deserialize, Serialize};

use super::events::{Event, EventLog};

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// When, RFC 3339.
    pub time: String,
    /// The token's name.
    pub principal: String,
    /// What was done: `volume.upload`, `table.upload`, `connector.upload`,
    /// `pipeline.put` (with the capabilities it grants), `pipeline.run`, ...
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// `ok`, or the refusal or error.
    pub outcome: String,
    /// Details (sizes, hashes, grants); never a secret's value.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// The audit log.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn ObjectStore>,
    root: Path,
    events: EventLog,
}

impl Audit {
    /// The log under `root`; every entry also goes to `events`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, events: EventLog) -> Self {
        Audit {
            store,
            root,
            events,
        }
    }

    /// Appends an entry. A failure to record is logged and returned: an
    /// action that cannot be audited should not pass silently.
    pub async fn record(
        &self,
        principal: &str,
        action: &str,
        target: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let now = chrono::Utc::now();
        let entry = Entry {
            time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            principal: principal.into(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
            detail,
        };
        let name = format!(
            "{:013}-{}.json",
            now.timestamp_millis(),
            uuid::Uuid::new_v4().simple()
        );
        let r = self
            .store
            .put(
                &self.root.clone().join(name),
                PutPayload::from(serde_json::to_vec(&entry)?),
            )
            .await;
        if let Err(e) = &r {
            tracing::error!("could not write the audit entry for {action} on {target}: {e}");
        }
        r?;
        self.events
            .emit(Event {
                kind: "audit".into(),
                principal: entry.principal,
                action: entry.action,
                target: entry.target,
                outcome: entry.outcome,
                detail: entry.detail.to_string(),
                ..Event::default()
            })
            .await;
        Ok(())
    }

    /// The newest `limit` entries, oldest first.
    pub async fn tail(&self, limit: usize) -> Result<Vec<Entry>> {
        let mut metas: Vec<_> = self.store.list(Some(&self.root)).try_collect().await?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        let start = metas.len().saturating_sub(limit);
        let mut out = Vec::new();
        for m in &metas[start..] {
            let bytes = self.store.get(&m.location).await?.bytes().await?;
            out.push(serde_json::from_slice(&bytes)?);
        }
        Ok(out)
    }
}
