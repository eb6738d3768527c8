//! Large files read in parallel byte ranges: the same rows as a whole-file
//! read, and a loud failure (not silent corruption) where a quoted field
//! spans a split point.

use serde_json::Value;

use crate::harness::{Case, read_delta};

#[test]
fn split_csv_and_ndjson_read_every_record_once() {
    let c = Case::new();
    let (mut csv, mut json) = (String::from("id,name,score\n"), String::new());
    for i in 0..3000 {
        csv.push_str(&format!("{i},\"name, {i}\",{}.5\n", i % 97));
        json.push_str(&format!(
            "{{\"id\": {i}, \"name\": \"n{i}\", \"tags\": [{i}]}}\n"
        ));
        if i % 500 == 0 {
            csv.push('\n');
            json.push('\n');
        }
    }
    c.write("big.csv", &csv);
    c.write("big.json", &json);
    for (file, fmt) in [("big.csv", "csv"), ("big.json", "json")] {
        // Ranges of 997 bytes: many split points, most inside a record.
        let out = c.ok(&[
            "ingest",
            file,
            "-f",
            fmt,
            "-t",
            &format!("./{fmt}_split"),
            "--split-bytes",
            "997",
            "--parallelism",
            "3",
        ]);
        assert!(out.contains("3000 rows"), "{out}");
        c.ok(&[
            "ingest",
            file,
            "-f",
            fmt,
            "-t",
            &format!("./{fmt}_whole"),
            "--split-bytes",
            "0",
        ]);
        let split = read_delta(&c.path(&format!("{fmt}_split")));
        let whole = read_delta(&c.path(&format!("{fmt}_whole")));
        assert_eq!(split.ids(), (0..3000).collect::<Vec<_>>(), "{fmt}");
        assert_eq!(split.data_by("id"), whole.data_by("id"), "{fmt}");
    }
}

#[test]
fn a_quoted_newline_across_a_split_point_fails_loudly_and_multiline_reads_it() {
    let c = Case::new();
    let mut csv = String::from("id,note\n");
    for i in 0..200 {
        csv.push_str(&format!("{i},\"line one\nline two {i}\"\n"));
    }
    c.write("notes.csv", &csv);
    let err = c.fails(&[
        "ingest",
        "notes.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "--split-bytes",
        "300",
    ]);
    assert!(err.contains("multiLine=true"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert!(!c.path("t/_delta_log").exists());

    c.ok(&[
        "ingest",
        "notes.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "--split-bytes",
        "300",
        "-o",
        "multiLine=true",
    ]);
    let t = read_delta(&c.path("t"));
    assert_eq!(t.ids(), (0..200).collect::<Vec<_>>());
    let row = t.data_by("id")[7].clone();
    assert_eq!(row["note"], Value::from("line one\nline two 7"));
}

#[test]
fn ndjson_ranges_that_end_across_a_read_buffer_boundary() {
    // Ranges of 2 MiB - 10 bytes end 10 bytes before the reader's second
    // 1 MiB buffer ends, inside a 200-byte line that continues past it.
    let c = Case::new();
    let mut json = String::new();
    for i in 0..16_000 {
        let line = format!("{{\"id\": {i}, \"pad\": \"");
        json.push_str(&line);
        json.push_str(&"x".repeat(200 - line.len() - 3));
        json.push_str("\"}\n");
    }
    assert!(json.len() > 3 << 20);
    c.write("big.json", &json);
    let out = c.ok(&[
        "ingest",
        "big.json",
        "-f",
        "json",
        "-t",
        "./t",
        "--split-bytes",
        &((2 << 20) - 10).to_string(),
    ]);
    assert!(out.contains("16000 rows"), "{out}");
    let t = read_delta(&c.path("t"));
    assert_eq!(t.ids(), (0..16_000).collect::<Vec<_>>());
}
