//! Where a table lives: a URL plus the object-store options to reach it.
//!
//! Local paths become `file://` URLs. `s3://`, `gs://`, `az://` (and
//! `abfss://`) go through `object_store`; [`register_object_stores`] teaches
//! the Delta library to open them with the same options.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use deltalake_core::DeltaResult;
use deltalake_core::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};

/// A table or file location and the options (credentials, endpoint, ...)
/// needed to reach it.
#[derive(Debug, Clone)]
pub struct Location {
    url: Url,
    options: HashMap<String, String>,
}

impl Location {
    /// Parses a URL or a local path (relative paths are made absolute).
    pub fn parse(text: &str, options: HashMap<String, String>) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidLocation {
            location: text.to_string(),
            reason,
        };
        let url = if text.contains("://") {
            let url = Url::parse(text).map_err(|e| invalid(e.to_string()))?;
            match url.scheme() {
                "file" | "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "memory" => url,
                other => {
                    return Err(invalid(format!(
                        "unsupported scheme '{other}'; use a local path, file://, s3://, gs:// or az://"
                    )));
                }
            }
        } else {
            let path = std::path::absolute(text).map_err(|e| invalid(e.to_string()))?;
            Url::from_file_path(&path).map_err(|_| invalid("not an absolute path".into()))?
        };
        Ok(Location { url, options })
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object-store options.
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The URL without a trailing slash, for display.
    pub fn display(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }

    /// This location with `/` appended, so it names a directory.
    pub fn as_dir(&self) -> Location {
        let mut url = self.url.clone();
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Location {
            url,
            options: self.options.clone(),
        }
    }

    /// The store that holds this location, rooted at its bucket (or at `/`
    /// for local files), and the path of this location inside it.
    pub fn store(&self) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let (store, path) = object_store::parse_url_opts(&self.url, &self.options)?;
        Ok((Arc::from(store), path))
    }
}

struct Stores;

impl ObjectStoreFactory for Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)?;
        Ok((Arc::from(store), path))
    }
}

impl LogStoreFactory for Stores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Lets the Delta library open `s3://`, `gs://` and `az://` tables through
/// `object_store`, committing with its conditional put. Idempotent.
pub fn register_object_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let stores = Arc::new(Stores);
        for scheme in ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"] {
            let Ok(url) = Url::parse(&format!("{scheme}://")) else {
                continue;
            };
            object_store_factories().insert(url.clone(), stores.clone());
            logstore_factories().insert(url, stores.clone());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_urls() {
        let l = Location::parse("/tmp/t", HashMap::new()).unwrap();
        assert_eq!(l.url().as_str(), "file:///tmp/t");
        assert_eq!(l.as_dir().url().as_str(), "file:///tmp/t/");
        let rel = Location::parse("rel/t", HashMap::new()).unwrap();
        assert!(rel.url().path().ends_with("/rel/t"));
    }

    #[test]
    fn unknown_schemes_are_refused() {
        let e = Location::parse("ftp://x/y", HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("unsupported scheme 'ftp'"), "{e}");
    }
}
