//! JSON files in object storage, named so that lexical order is batch order.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A directory of JSON files.
#[derive(Clone)]
pub(crate) struct Dir {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    /// The directory's URL, for messages.
    pub location: String,
}

/// The file name of entry `n`: zero-padded so names sort as numbers do.
pub(crate) fn name(n: u64) -> String {
    format!("{n:020}.json")
}

/// The number in a file name made by [`name`].
fn number(path: &Path) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

impl Dir {
    pub fn child(&self, name: &str) -> Dir {
        Dir {
            store: self.store.clone(),
            root: self.root.clone().join(name),
            location: format!("{}/{name}", self.location.trim_end_matches('/')),
        }
    }

    fn err(&self, source: object_store::Error) -> Error {
        Error::Store {
            location: self.location.clone(),
            source: Box::new(source),
        }
    }

    /// Reads `name` as JSON; `None` if it does not exist.
    pub async fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.root.clone().join(name);
        let bytes = match self.store.get(&path).await {
            Ok(r) => r.bytes().await.map_err(|e| self.err(e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: format!("{}/{name}", self.location),
                reason: e.to_string(),
            })
    }

    /// Writes `value` as `name`. With `create`, only if `name` does not
    /// exist yet: `Ok(false)` if it does.
    pub async fn write<T: Serialize>(&self, name: &str, value: &T, create: bool) -> Result<bool> {
        let path = self.root.clone().join(name);
        let body = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
            path: format!("{}/{name}", self.location),
            reason: e.to_string(),
        })?;
        let mode = if create {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(body), mode.into())
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) if create => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Deletes `name`; a missing file is no error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.root.clone().join(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The numbers of the entries above `after`, in order. One paginated
    /// listing that starts after `after`, so old entries cost no calls.
    pub async fn numbers(&self, after: Option<u64>) -> Result<Vec<u64>> {
        let listing = match after {
            Some(n) => self
                .store
                .list_with_offset(Some(&self.root), &self.root.clone().join(name(n))),
            None => self.store.list(Some(&self.root)),
        };
        let mut out: Vec<u64> = listing
            .try_filter_map(|m| futures::future::ready(Ok(number(&m.location))))
            .try_collect()
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(vec![]),
                e => Err(self.err(e)),
            })?;
        out.retain(|n| after.is_none_or(|a| *n > a));
        out.sort_unstable();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_numbers() {
        let mut names: Vec<String> = [10u64, 9, 100, 0].iter().map(|n| name(*n)).collect();
        names.sort();
        let back: Vec<u64> = names
            .iter()
            .map(|n| number(&Path::from(n.as_str())).unwrap())
            .collect();
        assert_eq!(back, vec![0, 9, 10, 100]);
    }
}
