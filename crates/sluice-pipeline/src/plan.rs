//! Resolving a source to the files to read.
//!
//! A source is a file, a directory (read recursively) or a glob such as
//! `s3://b/in/2024-*/*.csv`. Listing is one flat, paginated LIST under the
//! longest prefix without glob characters, never one call per directory.
//! Hidden files (names starting with `.` or `_`, such as `_SUCCESS`) are
//! skipped, as Spark does.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_location::Location;

use crate::error::{Error, Result};

pub use sluice_files_contract::FileRef;

/// A parsed source: where to list and what to keep.
#[derive(Debug, Clone)]
pub struct Source {
    text: String,
    /// The longest leading part without glob characters.
    base: Location,
    glob: Option<GlobMatcher>,
}

fn is_glob(segment: &str) -> bool {
    segment.contains(['*', '?', '[', '{'])
}

impl Source {
    /// Parses a path or URL, possibly with glob characters.
    pub fn parse(text: &str, options: HashMap<String, String>) -> Result<Self> {
        if text.trim().is_empty() {
            return Err(Error::Invalid("the source is empty".into()));
        }
        let (base_text, glob) = match text.split('/').position(is_glob) {
            None => (text.to_string(), None),
            Some(i) => {
                let parts: Vec<&str> = text.split('/').collect();
                let base = parts[..i].join("/");
                (
                    if base.is_empty() {
                        "/".to_string()
                    } else {
                        base
                    },
                    Some(()),
                )
            }
        };
        let base = Location::parse(&base_text, options)?;
        let glob = match glob {
            None => None,
            Some(()) => {
                // Match against the full URL, so the pattern is the URL form.
                let full =
                    Location::parse(text, base.options().clone()).map(|l| l.url().to_string());
                let pattern = match full {
                    Ok(u) => percent_decode(&u),
                    Err(_) => text.to_string(),
                };
                let m = GlobBuilder::new(&pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::Invalid(format!("bad glob '{text}': {e}")))?
                    .compile_matcher();
                Some(m)
            }
        };
        Ok(Source {
            text: text.to_string(),
            base,
            glob,
        })
    }

    /// The source as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The longest leading part of the source without glob characters.
    pub fn base(&self) -> &Location {
        &self.base
    }

    /// The URL prefix every file of this source is under: what a connector
    /// reading it must be granted.
    pub fn grant(&self) -> String {
        self.base.url().to_string()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is hidden below `root`: a file or directory under it whose
/// name starts with `.` or `_` (`_SUCCESS`, `_delta_log/`, `.tmp-upload`).
fn hidden(root: &Path, path: &Path) -> bool {
    let below: Vec<_> = match path.prefix_match(root) {
        Some(parts) => parts.collect(),
        None => path.parts().collect(),
    };
    below
        .iter()
        .any(|p| p.as_ref().starts_with('.') || p.as_ref().starts_with('_'))
}

/// The files `source` names, sorted by location; an error if there are none,
/// with a hint where one helps.
pub async fn plan_files(source: &Source) -> Result<Vec<FileRef>> {
    let files = list_files(source).await?;
    if files.is_empty() {
        return Err(Error::NoFiles {
            input: source.text.clone(),
            hint: no_files_hint(source).await,
        });
    }
    Ok(files)
}

/// `text` with every glob character made literal: `[2026]*.csv` becomes
/// `[[]2026][*].csv` (a class holding only that character).
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '[' | '*' | '?' | '{' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// Why a source may have matched nothing: a file whose name holds glob
/// characters read as a pattern.
async fn no_files_hint(source: &Source) -> String {
    if source.glob.is_none() {
        return String::new();
    }
    let Ok(literal) = Location::parse(&source.text, source.base.options().clone()) else {
        return String::new();
    };
    let Ok((store, path)) = literal.store() else {
        return String::new();
    };
    match store.head(&path).await {
        Ok(_) => format!(
            "; a file named exactly so exists, but '[', '*', '?' and '{{' are glob characters: to read it, write {}",
            escape_glob(&source.text)
        ),
        Err(_) => String::new(),
    }
}

/// The files `source` names now, sorted by location (none if the source
/// does not exist yet): one flat, paginated listing.
pub async fn list_files(source: &Source) -> Result<Vec<FileRef>> {
    let (store, root): (Arc<dyn ObjectStore>, Path) = source.base.store()?;
    let store_err = |error| Error::Store {
        input: source.text.clone(),
        error: Box::new(error),
    };
    let meta_to_ref = |m: object_store::ObjectMeta| {
        FileRef::whole(
            &url_for(&source.base, &m.location),
            m.size,
            m.last_modified.timestamp_millis(),
        )
    };
    let mut files = Vec::new();
    if source.glob.is_none() {
        // A single object?
        match store.head(&root).await {
            Ok(m) => return Ok(vec![meta_to_ref(m)]),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(e)),
        }
    }
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&root))
        .try_collect()
        .await
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(vec![]),
            e => Err(store_err(e)),
        })?;
    for m in listed {
        if hidden(&root, &m.location) {
            continue;
        }
        let r = meta_to_ref(m);
        if let Some(glob) = &source.glob
            && !glob.is_match(percent_decode(&r.location))
        {
            continue;
        }
        files.push(r);
    }
    files.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(files)
}

/// The files among `objects` (URLs, as an object-store notification names
/// them) that `source` covers and that exist, found by looking each one up
/// rather than listing the source: file notification mode. An object
/// outside the source, hidden (`_`, `.`) or gone is left out.
pub async fn notified_files(source: &Source, objects: &[String]) -> Result<Vec<FileRef>> {
    let (store, root): (Arc<dyn ObjectStore>, Path) = source.base.store()?;
    let base = source.base.url();
    let mut files = Vec::new();
    for object in objects {
        let Ok(url) = url::Url::parse(object) else {
            continue;
        };
        if url.scheme() != base.scheme() || url.host_str() != base.host_str() {
            continue;
        }
        let Ok(path) = Path::from_url_path(url.path().trim_start_matches('/')) else {
            continue;
        };
        if path.prefix_match(&root).is_none() || hidden(&root, &path) {
            continue;
        }
        let location = url_for(&source.base, &path);
        if let Some(glob) = &source.glob
            && !glob.is_match(percent_decode(&location))
        {
            continue;
        }
        match store.head(&path).await {
            Ok(m) => files.push(FileRef::whole(
                &location,
                m.size,
                m.last_modified.timestamp_millis(),
            )),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => {
                return Err(Error::Store {
                    input: object.clone(),
                    error: Box::new(error),
                });
            }
        }
    }
    files.sort_by(|a, b| a.location.cmp(&b.location));
    files.dedup_by(|a, b| a.location == b.location);
    Ok(files)
}

fn url_for(base: &Location, path: &Path) -> String {
    let mut url = base.url().clone();
    url.set_path(&format!("/{}", path.as_ref()));
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &std::path::Path, name: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[tokio::test]
    async fn files_directories_and_globs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for n in [
            "a.csv",
            "b.csv",
            "c.json",
            "sub/d.csv",
            "_SUCCESS",
            ".hidden.csv",
            "_delta_log/00.json",
            ".staging/e.csv",
        ] {
            touch(d, n);
        }
        let plan = |s: String| async move {
            plan_files(&Source::parse(&s, HashMap::new()).unwrap()).await
        };
        let all = plan(d.display().to_string()).await.unwrap();
        assert_eq!(all.len(), 4, "{all:?}");
        let csv = plan(format!("{}/*.csv", d.display())).await.unwrap();
        assert_eq!(csv.len(), 2);
        assert!(csv[0].location.ends_with("/a.csv"));
        let deep = plan(format!("{}/**/*.csv", d.display())).await.unwrap();
        assert_eq!(deep.len(), 3);
        let one = plan(format!("{}/c.json", d.display())).await.unwrap();
        assert_eq!(one[0].size, 1);
        let none = plan(format!("{}/nothing", d.display())).await.unwrap_err();
        assert!(none.to_string().contains("no files found"), "{none}");
        // A name holding glob characters: matched as a pattern, with a hint,
        // and read once escaped.
        touch(d, "[2026]_daily.csv");
        let e = plan(format!("{}/[2026]_daily.csv", d.display()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("[[]2026]_daily.csv"), "{e}");
        let escaped = plan(format!("{}/[[]2026]_daily.csv", d.display()))
            .await
            .unwrap();
        assert_eq!(escaped.len(), 1);
    }

    #[tokio::test]
    async fn notified_objects_are_looked_up_not_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for n in [
            "in/a.csv",
            "in/b json.csv",
            "in/c.txt",
            "in/_tmp.csv",
            "out/x.csv",
        ] {
            touch(d, n);
        }
        let url = |n: &str| url::Url::from_file_path(d.join(n)).unwrap().to_string();
        let source = Source::parse(&format!("{}/in/*.csv", d.display()), HashMap::new()).unwrap();
        let objects = [
            url("in/a.csv"),
            url("in/a.csv"),
            url("in/b json.csv"),
            url("in/c.txt"),
            url("in/_tmp.csv"),
            url("in/gone.csv"),
            url("out/x.csv"),
            "s3://elsewhere/in/a.csv".to_string(),
            "not a url".to_string(),
        ];
        let files = notified_files(&source, &objects).await.unwrap();
        let names: Vec<&str> = files
            .iter()
            .map(|f| f.location.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["a.csv", "b%20json.csv"]);
        assert_eq!(files[0].size, 1);
    }
}
