//! Bad input: clear one-line errors, nothing partial committed, and the
//! PERMISSIVE / DROPMALFORMED modes.

use serde_json::{Value, json};

use crate::harness::{Case, read_delta};

/// Creates table `t` at version 0 from a good file.
fn table_v0(c: &Case) {
    c.write("good.csv", "id,n\n1,10\n");
    c.ok(&["ingest", "good.csv", "-f", "csv", "-t", "./t"]);
}

fn assert_still_v0(c: &Case) {
    let t = read_delta(&c.path("t"));
    assert_eq!(
        t.version,
        Some(0),
        "the table must stay at its previous version"
    );
    assert_eq!(t.data(), vec![json!({"id": 1, "n": 10})]);
    // No data file of the failed run is referenced.
    assert_eq!(t.files, 1);
}

#[test]
fn failfast_csv_names_file_line_and_reason_and_commits_nothing() {
    let c = Case::new();
    table_v0(&c);
    let mut text = String::from("id,n\n");
    for i in 0..70_000 {
        text.push_str(&format!("{i},{i}\n"));
    }
    text.push_str("70000,oops\n");
    c.write("big.csv", &text);
    // A sample of the head infers n as bigint; the bad value is past the
    // first batch, so earlier batches were already written as files.
    let err = c.fails(&[
        "ingest",
        "big.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "-o",
        "schemaHints=n bigint",
    ]);
    assert!(err.contains("big.csv: line 70002"), "{err}");
    assert!(
        err.contains("cannot parse 'oops' as bigint for column 'n'"),
        "{err}"
    );
    assert!(err.contains("nothing was committed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_still_v0(&c);
}

#[test]
fn failfast_json_names_the_line() {
    let c = Case::new();
    table_v0(&c);
    c.write(
        "a.json",
        "{\"id\": 1, \"n\": 2}\n{\"id\": 2, \"n\": \n{\"id\": 3, \"n\": 4}\n",
    );
    // Inference is lenient about malformed lines only outside FAILFAST.
    let err = c.fails(&["ingest", "a.json", "-f", "json", "-t", "./t"]);
    assert!(err.contains("a.json: line 2"), "{err}");
    assert!(err.contains("invalid JSON"), "{err}");
    assert_still_v0(&c);

    c.write("b.json", "{\"id\": 1}\n{\"id\": \"two\"}\n");
    let err = c.fails(&[
        "ingest",
        "b.json",
        "-f",
        "json",
        "-t",
        "./t",
        "-o",
        "schemaHints=id bigint",
    ]);
    assert!(err.contains("b.json: line 2"), "{err}");
    assert_still_v0(&c);
}

#[test]
fn permissive_rescues_what_does_not_fit() {
    let c = Case::new();
    c.write("a.csv", "id,n\n1,10\n2,ten\n3,30,extra\n");
    let out = c.ok(&[
        "ingest",
        "a.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "-o",
        "mode=PERMISSIVE",
        "-o",
        "schemaHints=n bigint",
    ]);
    assert!(out.contains("3 rows"), "{out}");
    assert!(out.contains("2 rows-rescued"), "{out}");
    let t = read_delta(&c.path("t"));
    let rows = t.data_by("id");
    assert_eq!(rows[0]["_rescued_data"], Value::Null);
    assert_eq!(rows[1]["n"], Value::Null);
    let rescued: Value = serde_json::from_str(rows[1]["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["n"], "ten");
    assert!(rescued["_file_path"].as_str().unwrap().ends_with("/a.csv"));
    let rescued: Value = serde_json::from_str(rows[2]["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["_c2"], "extra");
    assert_eq!(rows[2]["n"], 30);

    // JSON: a wrong type and an unknown field are rescued; the rest loads.
    c.write(
        "a.json",
        "{\"id\": 1, \"n\": 1}\n{\"id\": 2, \"n\": \"x\", \"new\": true}\nnot json\n",
    );
    c.ok(&[
        "ingest",
        "a.json",
        "-f",
        "json",
        "-t",
        "./j",
        "-o",
        "mode=PERMISSIVE",
        "-o",
        "schemaHints=n bigint, id bigint",
    ]);
    let j = read_delta(&c.path("j"));
    assert_eq!(j.rows.len(), 3);
    let rescued: Vec<Value> = j
        .data()
        .iter()
        .filter_map(|r| {
            r["_rescued_data"]
                .as_str()
                .map(|s| serde_json::from_str(s).unwrap())
        })
        .collect();
    assert!(rescued.iter().any(|r| r["n"] == "x"), "{rescued:?}");
    assert!(
        rescued.iter().any(|r| r["_malformed_record"] == "not json"),
        "{rescued:?}"
    );
    // `new` was in the inference sample, so it is a column.
    assert!(j.data().iter().any(|r| r["new"] == true));
}

#[test]
fn permissive_rescues_fields_that_appear_after_the_inference_sample() {
    let c = Case::new();
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!("{{\"id\": {i}}}\n"));
    }
    text.push_str("{\"id\": 10000, \"late\": {\"deep\": [1, 2]}}\n");
    c.write("late.json", &text);
    c.ok(&[
        "ingest",
        "late.json",
        "-f",
        "json",
        "-t",
        "./t",
        "-o",
        "mode=PERMISSIVE",
    ]);
    let t = read_delta(&c.path("t"));
    assert_eq!(t.rows.len(), 10_001);
    let last = &t.data_by("id")[10_000];
    let rescued: Value = serde_json::from_str(last["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["late"], json!({"deep": [1, 2]}));

    // Without rescue (FAILFAST), such a field is ignored, as Spark does.
    c.ok(&["ingest", "late.json", "-f", "json", "-t", "./u"]);
    assert_eq!(read_delta(&c.path("u")).schema.len(), 2);
}

#[test]
fn dropmalformed_drops_and_reports() {
    let c = Case::new();
    c.write("a.csv", "id,n\n1,10\n2,ten\n3,30\n4\n");
    let out = c.ok(&[
        "ingest",
        "a.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "-o",
        "mode=DROPMALFORMED",
        "-o",
        "schemaHints=n bigint",
    ]);
    assert!(out.contains("2 rows,"), "{out}");
    assert!(out.contains("2 rows-dropped"), "{out}");
    let t = read_delta(&c.path("t"));
    assert_eq!(
        t.data_by("id"),
        vec![json!({"id": 1, "n": 10}), json!({"id": 3, "n": 30})]
    );
}

#[test]
fn missing_source_unknown_option_and_bad_values_fail_in_one_line() {
    let c = Case::new();
    table_v0(&c);
    let cases: &[(&[&str], &str)] = &[
        (
            &["ingest", "nope/*.csv", "-f", "csv", "-t", "./t"],
            "no files found at 'nope/*.csv'",
        ),
        (
            &[
                "ingest",
                "good.csv",
                "-f",
                "csv",
                "-t",
                "./t",
                "-o",
                "Header=true",
            ],
            "did you mean 'header'",
        ),
        (
            &[
                "ingest",
                "good.csv",
                "-f",
                "csv",
                "-t",
                "./t",
                "-o",
                "delimiter=ab",
            ],
            "must be one ASCII character",
        ),
        (
            &[
                "ingest",
                "good.csv",
                "-f",
                "csv",
                "-t",
                "./t",
                "-o",
                "mode=LOOSE",
            ],
            "FAILFAST, PERMISSIVE or DROPMALFORMED",
        ),
        (
            &[
                "ingest", "good.csv", "-f", "csv", "-t", "./t", "-o", "header",
            ],
            "must be key=value",
        ),
        (
            &[
                "ingest",
                "good.csv",
                "-f",
                "csv",
                "-t",
                "./t",
                "-o",
                "schemaHints=x blob",
            ],
            "unknown type 'blob'",
        ),
        (
            &["ingest", "good.csv", "-f", "xml", "-t", "./t"],
            "unknown format 'xml'",
        ),
        (
            &["ingest", "good.csv", "-f", "csv", "-t", "ftp://x/t"],
            "unsupported scheme 'ftp'",
        ),
    ];
    for (args, expect) in cases {
        let err = c.fails(args);
        assert!(err.contains(expect), "{args:?}: {err}");
        // One line; clap adds a usage hint below its own parse errors.
        let first = err.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{args:?}: {err}");
        assert!(
            err.trim().lines().count() <= 3,
            "{args:?}: short error expected, got {err}"
        );
    }
    assert_still_v0(&c);
}

#[test]
fn appending_another_schema_is_refused_and_leaves_the_table() {
    let c = Case::new();
    table_v0(&c);
    c.write("other.csv", "id,m\n2,x\n");
    let err = c.fails(&[
        "ingest",
        "other.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "--mode",
        "append",
    ]);
    assert!(err.contains("does not match table"), "{err}");
    assert!(err.contains("--mode overwrite"), "{err}");
    assert_still_v0(&c);
}

#[test]
fn unreadable_and_non_parquet_files() {
    let c = Case::new();
    table_v0(&c);
    c.write("fake.parquet", "this is not parquet");
    let err = c.fails(&["ingest", "fake.parquet", "-f", "parquet", "-t", "./t"]);
    assert!(
        err.contains("fake.parquet: not a readable Parquet file"),
        "{err}"
    );
    c.write("bad.csv.gz", "not gzip at all");
    let err = c.fails(&["ingest", "bad.csv.gz", "-f", "csv", "-t", "./t"]);
    assert!(err.contains("bad.csv.gz"), "{err}");
    assert_still_v0(&c);
}
