//! Splitting large plain-text files into byte ranges, so one big file keeps
//! every core busy, and checking afterwards that the ranges met exactly.
//!
//! A record belongs to the range that holds its first byte. A range that
//! starts mid-file begins after the first newline at or after `start - 1`.
//! That is only right where every newline ends a record; a quoted CSV field
//! spanning lines breaks it. So each range reports where its first record
//! began and where the first record after it begins, and [`verify`] requires
//! each range to stop exactly where the next one began: by induction from
//! byte 0 every range then started on a real record boundary. A mismatch
//! fails the run (nothing is committed) and says how to read the file whole.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use object_store::ObjectStoreExt;
use sluice_files_contract::RangeReport;
use sluice_pipeline::{FileRef, Format};
use sluice_sink::Location;

/// The default size of a range.
pub const DEFAULT_SPLIT_BYTES: u64 = 64 << 20;

fn compressed(location: &str) -> bool {
    let l = location.to_ascii_lowercase();
    [
        ".gz", ".gzip", ".zst", ".zstd", ".bz2", ".xz", ".lz4", ".snappy",
    ]
    .iter()
    .any(|e| l.ends_with(e))
}

/// Whether the reader options allow splitting: records must be one per line.
fn splittable_options(options: &BTreeMap<String, String>) -> bool {
    let get = |k: &str| {
        options
            .get(k)
            .or_else(|| options.get(&format!("cloudFiles.{k}")))
    };
    let multi_line = get("multiLine").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    // Comment lines would hide where a range's first record starts.
    !multi_line && get("comment").is_none()
}

/// Whether a JSON file is one top-level array (which cannot be split).
async fn is_json_array(
    file: &FileRef,
    storage: &std::collections::HashMap<String, String>,
) -> Result<bool> {
    let (store, path) = Location::parse(&file.location, storage.clone())?.store()?;
    let head = store.get_range(&path, 0..file.size.min(4096)).await?;
    Ok(head
        .iter()
        .find(|b| !(b.is_ascii_whitespace() || **b == 0xEF || **b == 0xBB || **b == 0xBF))
        == Some(&b'['))
}

/// Turns planned files into a lane's units of work (whole files, or byte
/// ranges of them), splitting large plain CSV and NDJSON files into ranges
/// of about `split_bytes`.
pub async fn units(
    files: &[FileRef],
    format: Format,
    options: &BTreeMap<String, String>,
    split_bytes: u64,
    lanes: usize,
    storage: &std::collections::HashMap<String, String>,
) -> Result<Vec<FileRef>> {
    let mut out = Vec::new();
    let format_ok = matches!(format, Format::Csv | Format::Json) && splittable_options(options);
    for f in files {
        let split = lanes > 1
            && format_ok
            && split_bytes > 0
            && f.size > split_bytes
            && !compressed(&f.location)
            && !(format == Format::Json && is_json_array(f, storage).await?);
        if !split {
            out.push(f.clone());
            continue;
        }
        let mut start = 0;
        while start < f.size {
            let end = (start + split_bytes).min(f.size);
            out.push(FileRef {
                range: Some((start, end)),
                ..f.clone()
            });
            start = end;
        }
    }
    Ok(out)
}

/// Checks that the ranges of every split file met exactly.
pub fn verify(units: &[FileRef], reports: &[RangeReport]) -> Result<()> {
    let mut by_file: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for u in units {
        if let Some(r) = u.range {
            by_file.entry(u.location.as_str()).or_default().push(r);
        }
    }
    for (location, mut ranges) in by_file {
        ranges.sort();
        let mut expected_first = 0;
        for (start, end) in ranges {
            let Some(r) = reports
                .iter()
                .find(|r| r.location == location && r.start == start && r.end == end)
            else {
                bail!(
                    "{location}: the connector did not report the end of byte range {start}..{end}"
                );
            };
            if r.first != expected_first {
                bail!(
                    "{location}: a record crosses the split point near byte {start} (a quoted field spanning lines?), \
                     so the file cannot be read in parallel ranges; read it whole with -o multiLine=true"
                );
            }
            expected_first = r.stop;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> FileRef {
        FileRef::whole("file:///x.csv", size, 0)
    }

    fn report(start: u64, end: u64, first: u64, stop: u64) -> RangeReport {
        RangeReport {
            location: "file:///x.csv".into(),
            start,
            end,
            first,
            stop,
        }
    }

    #[tokio::test]
    async fn large_plain_files_split_and_others_do_not() {
        let none = Default::default();
        let u = units(
            &[file(250)],
            Format::Csv,
            &none,
            100,
            2,
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            u.iter().map(|u| u.range).collect::<Vec<_>>(),
            vec![Some((0, 100)), Some((100, 200)), Some((200, 250))]
        );
        assert_eq!(u.iter().map(FileRef::bytes).sum::<u64>(), 250);
        let one_lane = units(
            &[file(250)],
            Format::Csv,
            &none,
            100,
            1,
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(one_lane.len(), 1);
        let multi: BTreeMap<_, _> = [("multiLine".to_string(), "true".to_string())].into();
        assert_eq!(
            units(
                &[file(250)],
                Format::Csv,
                &multi,
                100,
                2,
                &Default::default()
            )
            .await
            .unwrap()
            .len(),
            1
        );
        let mut gz = file(250);
        gz.location = "file:///x.csv.gz".into();
        assert_eq!(
            units(&[gz], Format::Csv, &none, 100, 2, &Default::default())
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn ranges_must_meet() {
        let units: Vec<FileRef> = [(0, 100), (100, 200)]
            .into_iter()
            .map(|r| FileRef {
                range: Some(r),
                ..file(200)
            })
            .collect();
        assert!(
            verify(
                &units,
                &[report(0, 100, 0, 104), report(100, 200, 104, 200)]
            )
            .is_ok()
        );
        let err = verify(
            &units,
            &[report(0, 100, 0, 130), report(100, 200, 104, 200)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("multiLine=true"), "{err}");
        assert!(verify(&units, &[report(0, 100, 0, 104)]).is_err());
    }
}
