//! The host's functions for a connector compiled for the machine instead of
//! `wasm32-wasip2` (feature `native`): a measuring instrument, not a second
//! runtime. It prices the sandbox: the same connector code, built natively
//! with the same profile, reading the same bytes, shows what running as a
//! component costs (`tests/bench`'s native comparison).
//!
//! Same names and signatures as the WIT `host` interface's bindings, so a
//! connector compiles unchanged. Locations are local: `file://` URLs or
//! paths. Nothing is granted or checked, and the counters stay in the
//! process ([`counters`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

pub use crate::bindings::sluice::connector0_1_0::host::Level;
use crate::{Error, ObjectMeta};

thread_local! {
    static COUNTERS: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
    /// The file `get_range` read last, kept open: one `open` per file, as
    /// the host's object store keeps its handles.
    static OPEN: RefCell<Option<(String, File)>> = const { RefCell::new(None) };
}

/// The counters the connector has added to on this thread.
pub fn counters() -> BTreeMap<String, u64> {
    COUNTERS.with(|c| c.borrow().clone())
}

/// Writes a line to standard error.
pub fn log(level: Level, message: &str) {
    eprintln!("{level:?}: {message}");
}

/// Adds `delta` to the counter `name`.
pub fn count(name: &str, delta: u64) {
    COUNTERS.with(|c| *c.borrow_mut().entry(name.to_string()).or_default() += delta);
}

/// Objects under the local directory `prefix`, in lexical order, one page
/// at a time.
pub fn list_objects(
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<ObjectMeta>, Error> {
    let mut found = Vec::new();
    walk(&path_of(prefix), &mut found)?;
    let mut metas = found
        .iter()
        .map(|p| meta(p))
        .collect::<Result<Vec<_>, _>>()?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(metas
        .into_iter()
        .filter(|m| after.is_none_or(|a| m.location.as_str() > a))
        .take(limit as usize)
        .collect())
}

/// Metadata of the local file at `location`.
pub fn head(location: &str) -> Result<ObjectMeta, Error> {
    meta(&path_of(location))
}

/// `length` bytes of the local file at `location` from byte `start`; fewer
/// only at its end.
pub fn get_range(location: &str, start: u64, length: u64) -> Result<Vec<u8>, Error> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        if open.as_ref().is_none_or(|(at, _)| at != location) {
            let file = File::open(path_of(location)).map_err(|e| io(location, e))?;
            *open = Some((location.to_string(), file));
        }
        let file = &open.as_ref().expect("opened above").1;
        let mut buf = vec![0; length as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], start + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(io(location, e)),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    })
}

fn path_of(location: &str) -> PathBuf {
    PathBuf::from(location.strip_prefix("file://").unwrap_or(location))
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    for entry in entries {
        let path = entry.map_err(|e| io(&dir.display().to_string(), e))?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else {
            found.push(path);
        }
    }
    Ok(())
}

fn meta(path: &Path) -> Result<ObjectMeta, Error> {
    let location = format!("file://{}", path.display());
    let m = std::fs::metadata(path).map_err(|e| io(&location, e))?;
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    Ok(ObjectMeta {
        location,
        size: m.len(),
        last_modified_ms: modified,
        etag: None,
    })
}

fn io(location: &str, e: std::io::Error) -> Error {
    Error::Io(format!("{location}: {e}"))
}
