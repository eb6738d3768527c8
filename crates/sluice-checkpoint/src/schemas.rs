//! The schema history of a stream (`schemaLocation`): every schema it has
//! read with, in order, each with the batch that introduced it and why.

use arrow_schema::Schema;
use serde::{Deserialize, Serialize};
use sluice_location::Location;

use crate::error::{Error, Result};
use crate::store::{Dir, name};

/// One schema of the history (`_schemas/<id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaVersion {
    /// Format version of this record.
    pub version: u32,
    /// Its number: 0 for the first, then one more per change.
    pub id: u64,
    /// When it was recorded, in milliseconds since the epoch.
    pub created_ms: i64,
    /// The first batch that reads with it.
    pub batch: u64,
    /// The schema, as the connector takes it back.
    pub schema: Schema,
    /// Why it changed ("inferred", "added columns a, b", ...).
    pub reason: String,
}

/// The schema history under a `schemaLocation`.
#[derive(Clone)]
pub struct SchemaLog {
    dir: Dir,
}

impl SchemaLog {
    /// The history kept under `location` (in its `_schemas` directory, as
    /// Auto Loader keeps it).
    pub fn open(location: &Location) -> Result<Self> {
        let (store, root) = location.store()?;
        let dir = Dir {
            store,
            root,
            location: location.display(),
        }
        .child("_schemas");
        Ok(SchemaLog { dir })
    }

    /// Every schema, oldest first.
    pub async fn all(&self) -> Result<Vec<SchemaVersion>> {
        let mut out = Vec::new();
        for n in self.dir.numbers(None).await? {
            if let Some(s) = self.dir.read(&name(n)).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// The schema with number `id`.
    pub async fn get(&self, id: u64) -> Result<SchemaVersion> {
        self.dir
            .read(&name(id))
            .await?
            .ok_or_else(|| Error::Corrupt {
                path: format!("{}/{}", self.dir.location, name(id)),
                reason: "a batch reads with this schema, but it is missing".into(),
            })
    }

    /// The current schema.
    pub async fn latest(&self) -> Result<Option<SchemaVersion>> {
        match self.dir.numbers(None).await?.last() {
            Some(&n) => self.get(n).await.map(Some),
            None => Ok(None),
        }
    }

    /// Records `schema` as the next version. If a schema with that number
    /// exists already (a run that crashed before planning its batch wrote
    /// it), the existing one is returned when it is the same schema.
    pub async fn append(
        &self,
        schema: Schema,
        batch: u64,
        reason: String,
        now_ms: i64,
    ) -> Result<SchemaVersion> {
        let id = self.dir.numbers(None).await?.last().map_or(0, |n| n + 1);
        let entry = SchemaVersion {
            version: 1,
            id,
            created_ms: now_ms,
            batch,
            schema,
            reason,
        };
        if self.dir.write(&name(id), &entry, true).await? {
            return Ok(entry);
        }
        Err(Error::Busy {
            location: self.dir.location.clone(),
            batch,
        })
    }
}
