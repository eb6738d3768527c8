//! Sources and tables in a real S3-compatible server (moto on loopback),
//! through object_store's S3 backend with conditional-put commits.

use serde_json::json;

use crate::harness::{Case, S3, read_delta, read_table_at};

#[test]
fn s3_source_into_s3_delta_table_and_append() {
    let s3 = S3::start();
    let c = Case::new();
    s3.put(
        &c,
        "lake",
        &[
            ("in/2026-01/a.csv", "id,name\n1,a\n2,b\n"),
            ("in/2026-02/b.csv", "id,name\n3,c\n"),
            ("in/other.txt", "x"),
        ],
    );
    let env = s3.env();
    let out = c.run_env(
        &[
            "ingest",
            "s3://lake/in/*/*.csv",
            "-f",
            "csv",
            "-t",
            "s3://lake/tables/t",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ingested 2 files, 3 rows"), "{stdout}");
    assert!(
        stdout.contains("into s3://lake/tables/t, version 0"),
        "{stdout}"
    );

    let storage: Vec<(String, String)> = env
        .iter()
        .cloned()
        .chain([("AWS_S3_ALLOW_UNSAFE_RENAME".into(), "true".into())])
        .collect();
    let t = read_table_at("s3://lake/tables/t", "delta", "deltalake", &storage);
    assert_eq!(
        t.data_by("id"),
        vec![
            json!({"id": 1, "name": "a"}),
            json!({"id": 2, "name": "b"}),
            json!({"id": 3, "name": "c"})
        ]
    );
    assert_eq!(
        t.rows[0]["_metadata"]["file_path"],
        "s3://lake/in/2026-01/a.csv"
    );

    // A second commit goes through S3's conditional put as version 1.
    s3.put(&c, "lake", &[("more/c.csv", "id,name\n4,d\n")]);
    let out = c.run_env(
        &[
            "ingest",
            "s3://lake/more/c.csv",
            "-f",
            "csv",
            "-t",
            "s3://lake/tables/t",
            "--mode",
            "append",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = read_table_at("s3://lake/tables/t", "delta", "deltalake", &storage);
    assert_eq!(t.version, Some(1));
    assert_eq!(t.rows.len(), 4);
}

#[test]
fn s3_source_into_a_local_table_and_clear_errors() {
    let s3 = S3::start();
    let c = Case::new();
    s3.put(
        &c,
        "landing",
        &[("events.json", "{\"a\": 1}\n{\"a\": 2}\n")],
    );
    let env = s3.env();
    let out = c.run_env(
        &[
            "ingest",
            "s3://landing/events.json",
            "-f",
            "json",
            "-t",
            "./local",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read_delta(&c.path("local")).data_by("a"),
        vec![json!({"a": 1}), json!({"a": 2})]
    );

    let out = c.run_env(
        &[
            "ingest",
            "s3://landing/nothing/*.json",
            "-f",
            "json",
            "-t",
            "./t",
        ],
        &env,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no files found at 's3://landing/nothing/*.json'")
    );
    let out = c.run_env(
        &[
            "ingest",
            "s3://no-such-bucket/x.json",
            "-f",
            "json",
            "-t",
            "./t",
        ],
        &env,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("no-such-bucket"),
        "{err}"
    );
}

#[test]
fn s3_stream_and_copy_into_load_each_file_once() {
    let s3 = S3::start();
    let c = Case::new();
    s3.put(
        &c,
        "lake",
        &[
            ("landing/a.csv", "id,name\n1,a\n2,b\n"),
            ("landing/b.csv", "id,name\n3,c\n"),
        ],
    );
    let env = s3.env();
    let storage: Vec<(String, String)> = env
        .iter()
        .cloned()
        .chain([("AWS_S3_ALLOW_UNSAFE_RENAME".into(), "true".into())])
        .collect();
    let stream = [
        "stream",
        "--source",
        "s3://lake/landing/",
        "--table",
        "s3://lake/tables/events",
        "--checkpoint",
        "s3://lake/checkpoints/events",
        "-f",
        "csv",
        "--trigger",
        "available-now",
        "-o",
        "maxFilesPerTrigger=1",
    ];
    let out = c.ok_env(&stream, &env);
    assert!(out.contains("stream: 2 batches, 2 files, 3 rows"), "{out}");
    // Replayed from its checkpoint: nothing new, the table unchanged.
    let out = c.ok_env(&stream, &env);
    assert!(out.contains("stream: 0 batches"), "{out}");
    let t = read_table_at("s3://lake/tables/events", "delta", "deltalake", &storage);
    assert_eq!(t.version, Some(1));
    assert_eq!(t.rows.len(), 3);
    s3.put(&c, "lake", &[("landing/c.csv", "id,name\n4,d\n")]);
    let out = c.ok_env(&stream, &env);
    assert!(out.contains("batch 2: 1 files"), "{out}");
    let states = c.ok_env(&["files", "s3://lake/checkpoints/events", "--json"], &env);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&states)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let copy = [
        "copy-into",
        "s3://lake/tables/copied",
        "--from",
        "s3://lake/landing",
        "--format",
        "csv",
    ];
    let out = c.ok_env(&copy, &env);
    assert!(out.contains("copied 3 files, 4 rows"), "{out}");
    let out = c.ok_env(&copy, &env);
    assert!(out.contains("copied 0 files"), "{out}");
    let t = read_table_at("s3://lake/tables/copied", "delta", "deltalake", &storage);
    assert_eq!(t.version, Some(0));
    assert_eq!(t.rows.len(), 4);
}
