//! What a pipeline grants its component: object-store access under a list
//! of URL prefixes, and network connections to the hosts its network
//! grants admit ([`AllowList`]).
//!
//! Every location a component names is parsed as a URL, normalized, and
//! checked against the granted prefixes before any I/O. Dot segments (also
//! percent-encoded ones), backslashes and NUL bytes are refused outright, so a
//! path cannot climb out of its grant.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use sluice_sink::Location;
use url::Url;

use crate::wasm::outbound::AllowList;

/// Why access was refused.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// The location is not a URL Sluice accepts.
    #[error("'{0}' is not a valid object URL")]
    Invalid(String),
    /// The location is outside every granted prefix.
    #[error("'{location}' is outside the granted prefixes [{granted}]")]
    NotGranted {
        /// What the component asked for.
        location: String,
        /// What it may access.
        granted: String,
    },
}

/// The granted prefixes and the stores behind them.
#[derive(Clone, Default)]
pub struct Grants {
    prefixes: Vec<Url>,
    options: HashMap<String, String>,
    stores: Arc<std::sync::Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
    network: Arc<AllowList>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("prefixes", &self.list())
            .field("network", &self.network)
            .finish()
    }
}

fn suspicious(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    text.contains('\\')
        || text.contains('\0')
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%00")
        || text.split('/').any(|s| s == ".." || s == ".")
}

impl Grants {
    /// Grants access under each of `prefixes` (URLs or local paths), reached
    /// with the object-store `options`.
    pub fn new(prefixes: &[String], options: HashMap<String, String>) -> anyhow::Result<Self> {
        let mut urls = Vec::new();
        for p in prefixes {
            let url = Location::parse(p, options.clone())?.url().clone();
            urls.push(url);
        }
        Ok(Grants {
            prefixes: urls,
            options,
            stores: Default::default(),
            network: Arc::default(),
            tls: None,
        })
    }

    /// These grants, plus connections to what `network` admits
    /// (`kafka://broker-1:9092`, `tcp://*.example.com:*`, ...), secured
    /// with `tls` where a connection asks for TLS (`None`: the public
    /// roots, no client certificate).
    pub fn with_network(
        mut self,
        network: AllowList,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        self.network = Arc::new(network);
        self.tls = tls;
        self
    }

    /// The hosts a component may connect to, and the TLS settings.
    pub fn network(&self) -> (Arc<AllowList>, Option<Arc<rustls::ClientConfig>>) {
        (self.network.clone(), self.tls.clone())
    }

    /// The granted prefixes, for messages.
    pub fn list(&self) -> String {
        self.prefixes
            .iter()
            .map(Url::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks `location` and returns the store and path to reach it.
    pub fn resolve(&self, location: &str) -> Result<(Arc<dyn ObjectStore>, Path, Url), Denied> {
        if suspicious(location) {
            return Err(Denied::Invalid(location.to_string()));
        }
        let url = Url::parse(location).map_err(|_| Denied::Invalid(location.to_string()))?;
        let granted = self.prefixes.iter().any(|p| {
            p.scheme() == url.scheme()
                && p.host_str() == url.host_str()
                && p.port() == url.port()
                && under(p.path(), url.path())
        });
        if !granted {
            return Err(Denied::NotGranted {
                location: location.to_string(),
                granted: self.list(),
            });
        }
        let path =
            Path::from_url_path(url.path()).map_err(|_| Denied::Invalid(location.to_string()))?;
        let store = self
            .store_for(&url)
            .map_err(|_| Denied::Invalid(location.to_string()))?;
        Ok((store, path, url))
    }

    fn store_for(&self, url: &Url) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let key = format!("{}://{}", url.scheme(), url.authority());
        let mut stores = self
            .stores
            .lock()
            .map_err(|_| anyhow::anyhow!("store cache poisoned"))?;
        if let Some(s) = stores.get(&key) {
            return Ok(s.clone());
        }
        let root = Url::parse(&format!("{key}/"))?;
        let (store, _) = Location::parse(root.as_str(), self.options.clone())?.store()?;
        stores.insert(key, store.clone());
        Ok(store)
    }

    /// The URL of `path` in the store of `like`.
    pub fn url_of(like: &Url, path: &Path) -> String {
        let mut url = like.clone();
        url.set_path(&format!("/{}", path.as_ref()));
        url.set_query(None);
        url.to_string()
    }
}

/// Whether `path` is `prefix` itself or lies under it.
fn under(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants::new(
            &[
                "file:///data/in/".to_string(),
                "s3://b/tenant/a.csv".to_string(),
            ],
            HashMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn inside_the_grant_is_allowed() {
        let g = grants();
        assert!(g.resolve("file:///data/in/x.csv").is_ok());
        assert!(g.resolve("file:///data/in/deep/er/x.csv").is_ok());
        assert!(g.resolve("s3://b/tenant/a.csv").is_ok());
    }

    #[test]
    fn escapes_are_denied() {
        let g = grants();
        for bad in [
            "file:///data/in2/x.csv",
            "file:///data/in/../secret",
            "file:///data/in/%2e%2e/secret",
            "file:///data/in/%2E%2E/secret",
            "file:///data/in/..%2fsecret",
            "file:///data/",
            "file:///etc/passwd",
            "s3://b/tenant/a.csv.bak",
            "s3://b/tenant/",
            "s3://other/tenant/a.csv",
            "/data/in/x.csv",
            "file:///data/in\\..\\x",
        ] {
            assert!(g.resolve(bad).is_err(), "{bad} should be denied");
        }
    }
}
