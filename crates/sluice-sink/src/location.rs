//! Teaching the Delta library to reach tables through `object_store`:
//! [`register_object_stores`] makes it open `s3://`, `gs://` and `az://`
//! (and `abfss://`) locations with the same options Sluice uses.

use std::sync::{Arc, Once};

use deltalake_core::DeltaResult;
use deltalake_core::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use object_store::path::Path;
use url::Url;

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
