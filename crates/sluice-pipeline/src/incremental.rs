//! Options of incremental loads (Auto Loader's `cloudFiles.*` and COPY
//! INTO's copy options), and choosing the next batch of new files.
//!
//! Options go by Auto Loader's names, with or without the `cloudFiles.`
//! prefix; what is not an incremental option is a reader option and goes to
//! the connector, which validates it. Auto Loader options Sluice does not
//! implement are refused by name rather than ignored.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use globset::{Glob, GlobMatcher};

use crate::error::{Error, Result};
use crate::plan::FileRef;
use crate::schema::Evolution;
use crate::spec::Format;

/// What happens to a source file once its batch is committed and the
/// retention has passed (`cloudFiles.cleanSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanSource {
    /// Leave it.
    Off,
    /// Delete it.
    Delete,
    /// Move it under this URL prefix.
    Move(String),
}

/// Validated incremental options.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// `format`: the input format, if given as an option.
    pub format: Option<Format>,
    /// `schemaLocation`: where the schema history is kept (default: the
    /// checkpoint).
    pub schema_location: Option<String>,
    /// `schemaEvolutionMode`; `None` means the default for the case.
    pub evolution: Option<Evolution>,
    /// `includeExistingFiles`: read files that exist when the stream
    /// first starts.
    pub include_existing: bool,
    /// `maxFilesPerTrigger`.
    pub max_files: usize,
    /// `maxBytesPerTrigger` (soft: a batch always takes at least one file).
    pub max_bytes: Option<u64>,
    /// `allowOverwrites`: a file whose size or modification time changed is
    /// read again.
    pub allow_overwrites: bool,
    /// `ignoreMissingFiles`: a planned file deleted before a crashed batch
    /// is redone is left out rather than failing the batch.
    pub ignore_missing: bool,
    /// `pathGlobFilter`: only file names matching this glob.
    pub path_glob: Option<GlobMatcher>,
    /// `modifiedAfter` / `modifiedBefore`, in milliseconds since the epoch.
    pub modified_after: Option<i64>,
    /// See `modified_after`.
    pub modified_before: Option<i64>,
    /// `cleanSource`.
    pub clean_source: CleanSource,
    /// `cleanSource.retentionDuration`.
    pub clean_retention: Duration,
    /// Everything else: reader options, for the connector.
    pub reader: BTreeMap<String, String>,
}

/// The options of a stream's auto compaction ([`auto_compact`]).
pub const AUTO_COMPACT: [&str; 2] = ["autoCompact", "autoCompact.minNumFiles"];

/// Small files a stream's table may gather before auto compaction packs
/// them, as Databricks' `autoCompact.minNumFiles` defaults.
pub const AUTO_COMPACT_MIN_FILES: usize = 50;

/// A stream's auto compaction, from its options: after a commit, when the
/// table holds at least this many small files (`autoCompact.minNumFiles`,
/// default [`AUTO_COMPACT_MIN_FILES`]), they are compacted in the
/// background while the stream goes on. `None` unless `autoCompact` is
/// `true` (or `auto`).
pub fn auto_compact(options: &BTreeMap<String, String>) -> Result<Option<usize>> {
    let get = |k: &str| {
        options
            .get(k)
            .or_else(|| options.get(&format!("cloudFiles.{k}")))
    };
    let on = match get("autoCompact").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "true" || v == "auto" => true,
        Some(v) if v == "false" => false,
        Some(v) => {
            return Err(Error::Invalid(format!(
                "option autoCompact={v}: use true, auto or false"
            )));
        }
    };
    let min = match get("autoCompact.minNumFiles") {
        None => AUTO_COMPACT_MIN_FILES,
        Some(v) => v.parse().ok().filter(|n| *n >= 2).ok_or_else(|| {
            Error::Invalid(format!(
                "option autoCompact.minNumFiles={v}: use a number of files, 2 or more"
            ))
        })?,
    };
    Ok(on.then_some(min))
}

/// Auto Loader options that Sluice does not implement yet.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "useNotifications",
        "file notification mode is not implemented yet; directory listing is used",
    ),
    (
        "useManagedFileEvents",
        "file events are not implemented yet; directory listing is used",
    ),
    (
        "backfillInterval",
        "backfills belong to file notification mode, which is not implemented yet",
    ),
    ("maxFileAge", "expiring file state is not implemented yet"),
    (
        "partitionColumns",
        "reading Hive-style partition columns from paths is not implemented yet",
    ),
    (
        "useStrictGlobber",
        "globs always follow Sluice's rules (`*` stays within a path segment)",
    ),
];

fn flag(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::Invalid(format!(
            "option {key}={value}: use true or false"
        ))),
    }
}

impl StreamOptions {
    /// Splits `options` into incremental options (validated) and reader
    /// options.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut o = StreamOptions {
            format: None,
            schema_location: None,
            evolution: None,
            include_existing: true,
            max_files: 1000,
            max_bytes: None,
            allow_overwrites: false,
            ignore_missing: false,
            path_glob: None,
            modified_after: None,
            modified_before: None,
            clean_source: CleanSource::Off,
            clean_retention: Duration::from_secs(30 * 24 * 3600),
            reader: BTreeMap::new(),
        };
        let mut move_to = None;
        let mut clean = None;
        for (raw, value) in options {
            let key = raw.strip_prefix("cloudFiles.").unwrap_or(raw);
            if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
                return Err(Error::Invalid(format!(
                    "option {raw} is not supported: {why}"
                )));
            }
            match key {
                "format" => o.format = Some(value.parse()?),
                "schemaLocation" => o.schema_location = Some(value.clone()),
                "schemaEvolutionMode" => o.evolution = Some(value.parse()?),
                "includeExistingFiles" => o.include_existing = flag(raw, value)?,
                "allowOverwrites" => o.allow_overwrites = flag(raw, value)?,
                "ignoreMissingFiles" => o.ignore_missing = flag(raw, value)?,
                "validateOptions" => {
                    if !flag(raw, value)? {
                        return Err(Error::Invalid(format!(
                            "option {raw}=false is not supported: Sluice always validates options"
                        )));
                    }
                }
                "useIncrementalListing" => match value.to_ascii_lowercase().as_str() {
                    "false" | "auto" => {}
                    _ => {
                        return Err(Error::Invalid(format!(
                            "option {raw}={value} is not supported: every trigger lists the source (paginated, in one flat listing); use false or auto"
                        )));
                    }
                },
                "maxFilesPerTrigger" => {
                    o.max_files = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::Invalid(format!(
                            "option {raw}={value}: use a positive number of files"
                        ))
                    })?;
                }
                "maxBytesPerTrigger" => {
                    o.max_bytes = Some(parse_bytes(&format!("option {raw}"), value)?)
                }
                "pathGlobFilter" | "fileNamePattern" => {
                    let glob = Glob::new(value).map_err(|e| {
                        Error::Invalid(format!("option {raw}={value} is not a valid glob: {e}"))
                    })?;
                    o.path_glob = Some(glob.compile_matcher());
                }
                "modifiedAfter" => o.modified_after = Some(parse_timestamp(raw, value)?),
                "modifiedBefore" => o.modified_before = Some(parse_timestamp(raw, value)?),
                "cleanSource" => clean = Some(value.to_ascii_uppercase()),
                "cleanSource.retentionDuration" => {
                    o.clean_retention = parse_duration(value)
                        .map_err(|e| Error::Invalid(format!("option {raw}={value}: {e}")))?;
                }
                "cleanSource.moveDestination" => move_to = Some(value.clone()),
                // The engine's, read by `auto_compact`.
                k if AUTO_COMPACT.contains(&k) => {}
                _ => {
                    o.reader.insert(raw.clone(), value.clone());
                }
            }
        }
        o.clean_source = match (clean.as_deref(), move_to) {
            (None | Some("OFF"), None) => CleanSource::Off,
            (Some("DELETE"), None) => CleanSource::Delete,
            (Some("MOVE"), Some(to)) => CleanSource::Move(to),
            (Some("MOVE"), None) => {
                return Err(Error::Invalid(
                    "option cleanSource=MOVE needs cleanSource.moveDestination".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(Error::Invalid(
                    "option cleanSource.moveDestination goes with cleanSource=MOVE".into(),
                ));
            }
            (Some(other), None) => {
                return Err(Error::Invalid(format!(
                    "option cleanSource={other}: use OFF, DELETE or MOVE"
                )));
            }
        };
        Ok(o)
    }

    /// Whether `file` passes the name and modification-time filters.
    pub fn wants(&self, file: &FileRef) -> bool {
        let name = file.location.rsplit('/').next().unwrap_or(&file.location);
        self.path_glob.as_ref().is_none_or(|g| g.is_match(name))
            && self
                .modified_after
                .is_none_or(|t| file.last_modified_ms > t)
            && self
                .modified_before
                .is_none_or(|t| file.last_modified_ms < t)
    }

    /// Takes the next batch from `queue`: up to `maxFilesPerTrigger` files
    /// and, softly, `maxBytesPerTrigger` bytes (at least one file).
    pub fn next_batch(&self, queue: &mut VecDeque<FileRef>) -> Vec<FileRef> {
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        while batch.len() < self.max_files {
            if let Some(max) = self.max_bytes
                && !batch.is_empty()
                && bytes >= max
            {
                break;
            }
            let Some(f) = queue.pop_front() else { break };
            bytes += f.size;
            batch.push(f);
        }
        batch
    }
}

/// A size such as `10g`, `512m`, `128MiB`, `64kb` or `1000` (bytes).
pub fn parse_bytes(key: &str, value: &str) -> Result<u64> {
    let v = value.trim().to_ascii_lowercase();
    let v = v
        .strip_suffix("ib")
        .or_else(|| v.strip_suffix('b'))
        .unwrap_or(&v);
    let (digits, shift) = match v.chars().last() {
        Some('k') => (&v[..v.len() - 1], 10),
        Some('m') => (&v[..v.len() - 1], 20),
        Some('g') => (&v[..v.len() - 1], 30),
        Some('t') => (&v[..v.len() - 1], 40),
        _ => (v, 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{key}={value}: use a size such as 10g, 512m, 128MiB or 1048576"
            ))
        })
}

/// A timestamp such as `2024-01-31T12:00:00`, `2024-01-31 12:00:00`
/// (UTC), an RFC 3339 time with an offset, or a date.
fn parse_timestamp(key: &str, value: &str) -> Result<i64> {
    let v = value.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    Err(Error::Invalid(format!(
        "option {key}={value}: use a time such as 2024-01-31T12:00:00 (UTC) or 2024-01-31T12:00:00+02:00"
    )))
}

/// A duration such as `30 days`, `1 hour`, `10s`, `500ms` or `2 minutes`.
pub fn parse_duration(value: &str) -> std::result::Result<Duration, String> {
    let v = value.trim().to_ascii_lowercase();
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (number, unit) = (v[..split].trim(), v[split..].trim());
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{value}' is not a duration such as 30s, 5 minutes or 7 days"))?;
    let secs = match unit.trim_end_matches('s') {
        "m" if unit == "ms" => n / 1000.0,
        "millisecond" => n / 1000.0,
        "" | "sec" | "second" => n,
        "m" | "min" | "minute" => n * 60.0,
        "h" | "hour" => n * 3600.0,
        "d" | "day" => n * 86_400.0,
        "w" | "week" => n * 7.0 * 86_400.0,
        _ => {
            return Err(format!(
                "'{value}' has an unknown unit; use ms, s, minutes, hours, days or weeks"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("'{value}' is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<StreamOptions> {
        StreamOptions::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn file(name: &str, size: u64, mtime: i64) -> FileRef {
        FileRef::whole(&format!("s3://b/in/{name}"), size, mtime)
    }

    #[test]
    fn options_with_and_without_prefix_and_reader_options_pass_through() {
        let o = parse(&[
            ("cloudFiles.format", "csv"),
            ("maxFilesPerTrigger", "5"),
            ("cloudFiles.maxBytesPerTrigger", "10m"),
            ("cloudFiles.schemaEvolutionMode", "rescue"),
            ("header", "false"),
            ("cloudFiles.inferColumnTypes", "true"),
            ("cleanSource", "move"),
            ("cleanSource.moveDestination", "s3://b/archive/"),
            ("cleanSource.retentionDuration", "0 seconds"),
        ])
        .unwrap();
        assert_eq!(o.format, Some(Format::Csv));
        assert_eq!(o.max_files, 5);
        assert_eq!(o.max_bytes, Some(10 << 20));
        assert_eq!(o.evolution, Some(Evolution::Rescue));
        assert_eq!(o.clean_source, CleanSource::Move("s3://b/archive/".into()));
        assert_eq!(o.clean_retention, Duration::ZERO);
        assert_eq!(o.reader.len(), 2);
        assert_eq!(o.reader["cloudFiles.inferColumnTypes"], "true");
    }

    #[test]
    fn bad_and_unsupported_options_say_what_to_do() {
        for (pairs, want) in [
            (vec![("maxFilesPerTrigger", "0")], "positive number"),
            (vec![("maxBytesPerTrigger", "lots")], "10g"),
            (
                vec![("cloudFiles.useNotifications", "true")],
                "not supported",
            ),
            (vec![("cleanSource", "MOVE")], "moveDestination"),
            (vec![("cleanSource", "ARCHIVE")], "OFF, DELETE or MOVE"),
            (vec![("modifiedAfter", "yesterday")], "2024-01-31T12:00:00"),
            (vec![("includeExistingFiles", "yes")], "true or false"),
            (vec![("schemaEvolutionMode", "sometimes")], "addNewColumns"),
        ] {
            let err = parse(&pairs).unwrap_err().to_string();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn filters_and_batches() {
        let o = parse(&[
            ("pathGlobFilter", "*.csv"),
            ("modifiedAfter", "1970-01-01T00:00:01"),
            ("maxFilesPerTrigger", "3"),
            ("maxBytesPerTrigger", "100"),
        ])
        .unwrap();
        assert!(o.wants(&file("a.csv", 1, 2000)));
        assert!(!o.wants(&file("a.json", 1, 2000)));
        assert!(!o.wants(&file("a.csv", 1, 1000)), "modifiedAfter is strict");
        let mut q: VecDeque<FileRef> = [60, 60, 10, 10, 10]
            .iter()
            .enumerate()
            .map(|(i, s)| file(&format!("{i}.csv"), *s, 5000))
            .collect();
        assert_eq!(o.next_batch(&mut q).len(), 2, "soft byte limit");
        assert_eq!(o.next_batch(&mut q).len(), 3, "file limit");
        assert!(o.next_batch(&mut q).is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30 days").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_duration("10s").unwrap().as_secs(), 10);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2 minutes").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("1 hour").unwrap().as_secs(), 3600);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 fortnights").is_err());
    }
}
