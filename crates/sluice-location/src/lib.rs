//! Where tables, checkpoints and files live: a [`Location`] is a URL (a local
//! path becomes `file://`) plus the object-store options needed to reach it.
//!
//! A name a user supplies (a file path inside a volume, an upload's file
//! name, a table or pipeline name) becomes a location in exactly one way:
//! [`Location::child`]. It appends checked segments to the parent's URL path
//! — each percent-encoded as one segment, never formatted into a string and
//! parsed again — and then checks that the result lies under the parent.
//! So `..`, `%2e%2e` decoded twice, a backslash, `?` or `#` in a name can
//! neither climb out of the parent nor be cut off into a query or fragment.
//!
//! ```
//! use sluice_location::Location;
//! let volume = Location::parse("s3://landing/manual", Default::default()).unwrap();
//! let file = volume.child("2026/q?one.csv").unwrap();
//! assert_eq!(file.url().as_str(), "s3://landing/manual/2026/q%3Fone.csv");
//! assert!(volume.child("../x").is_err());
//! assert!(volume.child("%2e%2e/x").is_err());
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

/// The longest segment of a name: the usual file-name limit of file
/// systems.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The longest relative name [`Location::child`] takes: S3's key limit.
pub const MAX_NAME_BYTES: usize = 1024;

/// Why a location or a name was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A path or URL that Sluice cannot use.
    #[error("invalid location '{location}': {reason}")]
    InvalidLocation {
        /// What was given.
        location: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A user-supplied name that cannot name a place under its parent.
    #[error("invalid name '{}': {reason}", name.escape_debug())]
    InvalidName {
        /// What was given.
        name: String,
        /// Why it is invalid, and what to do.
        reason: String,
    },
    /// The object store could not be built for the location.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A table, checkpoint or file location and the options (credentials,
/// endpoint, ...) needed to reach it.
#[derive(Debug, Clone)]
pub struct Location {
    url: Url,
    options: HashMap<String, String>,
}

impl Location {
    /// Parses a URL or a local path (relative paths are made absolute).
    /// For paths and URLs the operator or a CLI user wrote; a name from an
    /// untrusted caller goes through [`Location::child`].
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

    /// The location of `name` under this one (taken as a directory):
    /// `name` is a relative, `/`-separated path whose every segment is
    /// checked ([`check_segment`]) and appended as one percent-encoded URL
    /// segment. The result is checked to lie under this location.
    pub fn child(&self, name: &str) -> Result<Location> {
        let invalid = |reason: String| Error::InvalidName {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("the name is empty".into()));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(invalid(format!(
                "the name is longer than {MAX_NAME_BYTES} bytes"
            )));
        }
        if name.starts_with('/') {
            return Err(invalid(
                "the name must be relative (it starts with '/')".into(),
            ));
        }
        let segments: Vec<&str> = name.split('/').collect();
        for s in &segments {
            check_segment(s).map_err(&invalid)?;
        }
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| invalid(format!("{} cannot hold names", self.display())))?
            .pop_if_empty()
            .extend(&segments);
        let child = Location {
            url,
            options: self.options.clone(),
        };
        if !self.contains(&child) {
            return Err(invalid(format!(
                "it does not stay under {}",
                self.display()
            )));
        }
        Ok(child)
    }

    /// Whether `other` is this location or lies under it (same store,
    /// and this location's path segments are a prefix of `other`'s).
    pub fn contains(&self, other: &Location) -> bool {
        let (a, b) = (&self.url, &other.url);
        if a.scheme() != b.scheme() || a.host_str() != b.host_str() || a.port() != b.port() {
            return false;
        }
        let segments = |u: &Url| -> Vec<String> {
            u.path()
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (outer, inner) = (segments(a), segments(b));
        inner.len() >= outer.len() && inner[..outer.len()] == outer[..]
    }

    /// The path of this location inside its store.
    pub fn path(&self) -> Result<Path> {
        let (_, path) = ObjectStoreScheme::parse(&self.url).map_err(object_store::Error::from)?;
        Ok(path)
    }

    /// The store that holds this location, rooted at its bucket (or at `/`
    /// for local files), and the path of this location inside it.
    pub fn store(&self) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let (store, path) = object_store::parse_url_opts(&self.url, &self.options)?;
        Ok((Arc::from(store), path))
    }
}

/// Checks one segment of a user-supplied name: not empty, not `.` or `..`,
/// at most [`MAX_SEGMENT_BYTES`], without control characters or
/// backslashes, and not one that percent-decodes to any of those or to a
/// `/` (a name such as `%2e%2e` is refused rather than stored literally:
/// whoever decodes it once more would read `..`). Returns why it is refused.
pub fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("it has an empty segment ('//', or a '/' at the end)".into());
    }
    if segment.len() > MAX_SEGMENT_BYTES {
        return Err(format!(
            "a segment is longer than {MAX_SEGMENT_BYTES} bytes"
        ));
    }
    let bad = |s: &str| s == "." || s == ".." || s.chars().any(|c| c.is_control() || c == '\\');
    if bad(segment) {
        return Err(
            "segments may not be '.' or '..' nor hold a backslash or control characters".into(),
        );
    }
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    if decoded != segment && (bad(&decoded) || decoded.contains('/')) {
        return Err(
            "a segment percent-decodes to '.', '..', '/', a backslash or a control character; write the characters themselves"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Location {
        Location::parse(text, HashMap::new()).unwrap()
    }

    #[test]
    fn local_paths_become_file_urls() {
        let l = at("/tmp/t");
        assert_eq!(l.url().as_str(), "file:///tmp/t");
        assert_eq!(l.as_dir().url().as_str(), "file:///tmp/t/");
        let rel = at("rel/t");
        assert!(rel.url().path().ends_with("/rel/t"));
    }

    #[test]
    fn unknown_schemes_are_refused() {
        let e = Location::parse("ftp://x/y", HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("unsupported scheme 'ftp'"), "{e}");
    }

    #[test]
    fn children_stay_under_their_parent() {
        for parent in [
            "file:///srv/land",
            "file:///srv/land/",
            "s3://b/land",
            "/srv/land",
        ] {
            let p = at(parent);
            let c = p.child("a/b c.csv").unwrap();
            assert!(p.contains(&c), "{parent}");
            assert!(c.url().path().ends_with("/land/a/b%20c.csv"), "{}", c.url());
            assert_eq!(
                c.path().unwrap().as_ref().rsplit('/').next(),
                Some("b c.csv")
            );
        }
    }

    #[test]
    fn query_and_fragment_characters_stay_in_the_name() {
        let p = at("s3://b/land");
        let one = p.child("q?one").unwrap();
        let two = p.child("q?two").unwrap();
        assert_ne!(one.path().unwrap(), two.path().unwrap());
        assert_eq!(one.path().unwrap().as_ref(), "land/q?one");
        assert_eq!(p.child("a#b").unwrap().path().unwrap().as_ref(), "land/a#b");
        assert_eq!(
            p.child("100%.csv").unwrap().path().unwrap().as_ref(),
            "land/100%.csv"
        );
    }

    #[test]
    fn traversal_in_every_encoding_is_refused() {
        let p = at("file:///srv/land");
        for bad in [
            "..",
            "../x",
            "a/../../x",
            ".",
            "./x",
            "%2e%2e/x",
            "%2E%2E/%2e%2e/x",
            ".%2e/x",
            "%2e./x",
            "..%5cx",
            "..\\x",
            "a\\..\\..\\x",
            "a%2f..%2f..%2fx",
            "/etc/passwd",
            "",
            "a//b",
            "a/",
            "nul\0byte",
            "bell\u{7}",
            "del\u{7f}",
            &"x".repeat(MAX_SEGMENT_BYTES + 1),
            &"x/".repeat(MAX_NAME_BYTES / 2 + 1),
        ] {
            let e = p.child(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidName { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_name_decoded_twice_is_literal_not_a_climb() {
        // `%252e%252e` arrives decoded once as `%2e%2e`, which is refused;
        // encoded three times it is a literal name that stays put.
        let p = at("file:///srv/land");
        let c = p.child("%252e%252e").unwrap();
        assert_eq!(c.path().unwrap().as_ref(), "srv/land/%252e%252e");
    }

    #[test]
    fn containment_compares_whole_segments() {
        let p = at("s3://b/land");
        assert!(!p.contains(&at("s3://b/landing/x")));
        assert!(!p.contains(&at("s3://other/land/x")));
        assert!(!p.contains(&at("file:///land/x")));
        assert!(p.contains(&at("s3://b/land/")));
    }
}
