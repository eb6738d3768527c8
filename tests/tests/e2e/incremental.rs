//! Streams (Auto Loader) and COPY INTO: each file loaded once, however many
//! times they run, with the options users of Auto Loader rely on.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Case, read_delta};

/// Writes `n` CSV files `in/f{k}.csv` from `first`, two rows each with ids
/// `10k` and `10k+1`.
fn csv_files(c: &Case, dir: &str, first: usize, n: usize) {
    for k in first..first + n {
        c.write(
            &format!("{dir}/f{k:03}.csv"),
            format!("id,name\n{},a{k}\n{},b{k}\n", 10 * k, 10 * k + 1),
        );
    }
}

fn ids(c: &Case, table: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = read_delta(&c.path(table))
        .rows
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

fn expected(files: std::ops::Range<usize>) -> Vec<i64> {
    files
        .flat_map(|k| [10 * k as i64, 10 * k as i64 + 1])
        .collect()
}

fn stream(c: &Case, extra: &[&str]) -> String {
    let mut args = vec![
        "stream",
        "--source",
        "in",
        "--table",
        "./t",
        "--checkpoint",
        "cp",
        "--format",
        "csv",
        "--trigger",
        "available-now",
    ];
    args.extend_from_slice(extra);
    c.ok(&args)
}

fn file_states(c: &Case, location: &str) -> Vec<Value> {
    let out = c.ok(&["files", location, "--json"]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn available_now_loads_the_backlog_in_batches_and_then_only_new_files() {
    let c = Case::new();
    csv_files(&c, "in", 0, 7);
    let out = stream(&c, &["-o", "cloudFiles.maxFilesPerTrigger=3"]);
    assert!(out.contains("batch 0: 3 files"), "{out}");
    assert!(out.contains("batch 2: 1 files"), "{out}");
    assert!(out.contains("stream: 3 batches, 7 files, 14 rows"), "{out}");
    assert_eq!(ids(&c, "t"), expected(0..7));
    let version = read_delta(&c.path("t")).version;

    // Nothing new: nothing loaded, the table stays as it is.
    let out = stream(&c, &[]);
    assert!(out.contains("stream: 0 batches"), "{out}");
    assert_eq!(read_delta(&c.path("t")).version, version);

    csv_files(&c, "in", 7, 2);
    let out = stream(&c, &[]);
    assert!(out.contains("batch 3: 2 files"), "{out}");
    assert_eq!(ids(&c, "t"), expected(0..9));

    // cloud_files_state: every file, its batch and its commit time.
    let states = file_states(&c, "cp");
    assert_eq!(states.len(), 9);
    assert!(states.iter().all(|s| s["status"] == "committed"));
    assert!(states.iter().all(|s| s["commit_time"].is_string()));
    let f8 = states
        .iter()
        .find(|s| s["path"].as_str().unwrap().ends_with("/in/f008.csv"))
        .unwrap();
    assert_eq!(f8["batch_id"], 3);
    let size = std::fs::metadata(c.path("in/f008.csv")).unwrap().len();
    assert_eq!(f8["size"], size);

    // Each batch is one Delta version carrying the stream's txn.
    let log = std::fs::read_to_string(c.path("t/_delta_log/00000000000000000003.json")).unwrap();
    assert!(log.contains("\"txn\":{\"appId\":\"sluice-"), "{log}");
    assert!(log.contains("\"version\":3"), "{log}");
}

#[test]
fn a_batch_committed_but_not_recorded_is_not_loaded_again() {
    let c = Case::new();
    csv_files(&c, "in", 0, 4);
    stream(&c, &["-o", "maxFilesPerTrigger=2"]);
    let before = read_delta(&c.path("t"));
    // As if the process died between the table commit and commits/1.
    std::fs::remove_file(c.path("cp/commits/00000000000000000001.json")).unwrap();
    let out = stream(&c, &[]);
    assert!(out.contains("batch 1: already in the table"), "{out}");
    let after = read_delta(&c.path("t"));
    assert_eq!(after.version, before.version, "no new table version");
    assert_eq!(ids(&c, "t"), expected(0..4));

    // As if it died after writing the plan, before committing: the batch is
    // redone with the same files, then the stream goes on.
    csv_files(&c, "in", 4, 1);
    let plan = serde_json::json!({
        "version": 1, "batch": 2, "planned_ms": 1, "kind": "load", "schema_id": 0,
        "files": [{
            "location": format!("file://{}", c.path("in/f004.csv").display()),
            "size": std::fs::metadata(c.path("in/f004.csv")).unwrap().len(),
            "last_modified_ms": 0
        }]
    });
    c.write("cp/offsets/00000000000000000002.json", plan.to_string());
    let out = stream(&c, &[]);
    assert!(out.contains("batch 2: 1 files"), "{out}");
    assert!(out.contains("stream: 1 batches"), "{out}");
    assert_eq!(ids(&c, "t"), expected(0..5));
}

#[test]
fn existing_files_name_and_time_filters() {
    let c = Case::new();
    csv_files(&c, "in", 0, 3);
    let out = stream(&c, &["-o", "includeExistingFiles=false"]);
    assert!(out.contains("recorded 3 existing files as seen"), "{out}");
    assert!(!c.path("t/_delta_log").exists(), "nothing read, no table");
    csv_files(&c, "in", 3, 2);
    c.write("in/notes.txt", "not,csv\n");
    c.write("in/.f099.csv.tmp", "id,name\n99,partial\n");
    c.write("in/_SUCCESS", "");
    let out = stream(&c, &["-o", "pathGlobFilter=*.csv"]);
    assert!(out.contains("batch 1: 2 files"), "{out}");
    assert_eq!(ids(&c, "t"), expected(3..5));
    let skipped: Vec<Value> = file_states(&c, "cp")
        .into_iter()
        .filter(|s| s["status"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 3);

    // modifiedAfter: files last changed before the time are left alone.
    let c = Case::new();
    csv_files(&c, "in", 0, 2);
    let out = stream(&c, &["-o", "modifiedAfter=2999-01-01T00:00:00"]);
    assert!(out.contains("stream: 0 batches"), "{out}");
}

#[test]
fn overwritten_files_are_read_again_only_with_allow_overwrites() {
    let c = Case::new();
    csv_files(&c, "in", 0, 2);
    stream(&c, &[]);
    std::thread::sleep(Duration::from_millis(20));
    c.write(
        "in/f000.csv",
        "id,name\n100,changed\n101,changed\n102,changed\n",
    );
    let out = stream(&c, &[]);
    assert!(out.contains("stream: 0 batches"), "{out}");
    let out = stream(&c, &["-o", "cloudFiles.allowOverwrites=true"]);
    assert!(out.contains("batch 1: 1 files"), "{out}");
    let mut want = expected(0..2);
    want.extend([100, 101, 102]);
    want.sort();
    assert_eq!(ids(&c, "t"), want);
}

#[test]
fn clean_source_deletes_or_moves_committed_files() {
    let c = Case::new();
    csv_files(&c, "in", 0, 3);
    let out = stream(
        &c,
        &[
            "-o",
            "cleanSource=DELETE",
            "-o",
            "cleanSource.retentionDuration=0 seconds",
        ],
    );
    assert!(out.contains("3 files"), "{out}");
    assert!(!c.path("in/f000.csv").exists(), "deleted after commit");
    assert_eq!(ids(&c, "t"), expected(0..3));
    assert!(
        file_states(&c, "cp")
            .iter()
            .all(|s| s["status"] == "cleaned")
    );

    let c = Case::new();
    csv_files(&c, "in/2026/01", 0, 2);
    stream(
        &c,
        &[
            "-o",
            "cleanSource=MOVE",
            "-o",
            "cleanSource.moveDestination=archive",
            "-o",
            "cleanSource.retentionDuration=0s",
        ],
    );
    assert!(!c.path("in/2026/01/f000.csv").exists());
    assert!(
        c.path("archive/2026/01/f000.csv").exists(),
        "moved, path kept"
    );
    // A long retention leaves files where they are.
    csv_files(&c, "in", 5, 1);
    stream(&c, &["-o", "cleanSource=DELETE"]);
    assert!(c.path("in/f005.csv").exists());

    let err = c.fails(&[
        "stream",
        "--source",
        "in",
        "--table",
        "./t",
        "--checkpoint",
        "cp2",
        "-f",
        "csv",
        "--trigger",
        "available-now",
        "-o",
        "cleanSource=MOVE",
        "-o",
        "cleanSource.moveDestination=in/archive",
    ]);
    assert!(err.contains("inside the source"), "{err}");
}

#[test]
fn continuous_and_interval_streams_pick_up_new_files_and_stop_on_sigterm() {
    for trigger in ["continuous", "every=200ms"] {
        let c = Case::new();
        csv_files(&c, "in", 0, 1);
        let child = c
            .command(
                &[
                    "stream",
                    "--source",
                    "in",
                    "--table",
                    "./t",
                    "--checkpoint",
                    "cp",
                    "-f",
                    "csv",
                    "--trigger",
                    trigger,
                    "--poll-interval",
                    "100ms",
                ],
                &[],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let committed = |c: &Case| {
            if !c.path("cp/metadata.json").exists() {
                return 0;
            }
            file_states(c, "cp")
                .iter()
                .filter(|s| s["status"] == "committed")
                .count()
        };
        while committed(&c) < 1 {
            assert!(
                Instant::now() < deadline,
                "{trigger}: the first file never landed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        csv_files(&c, "in", 1, 2);
        while committed(&c) < 3 {
            assert!(
                Instant::now() < deadline,
                "{trigger}: new files never landed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{trigger}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("(stopped by a signal)"), "{stdout}");
        assert_eq!(ids(&c, "t"), expected(0..3), "{trigger}");
    }
}

#[test]
fn a_malformed_file_fails_its_batch_and_the_rerun_after_a_fix_loads_it_once() {
    let c = Case::new();
    csv_files(&c, "in", 0, 2);
    c.write("in/f002.csv", "id,name\n20\n");
    let err = c.fails(&[
        "stream",
        "--source",
        "in",
        "--table",
        "./t",
        "--checkpoint",
        "cp",
        "-f",
        "csv",
        "--trigger",
        "available-now",
        "-o",
        "maxFilesPerTrigger=2",
    ]);
    assert!(err.contains("f002.csv") && err.contains("line 2"), "{err}");
    assert!(err.contains("batch 1 was not committed"), "{err}");
    assert_eq!(
        ids(&c, "t"),
        expected(0..2),
        "batch 0 stays, batch 1 is not in"
    );
    // The pending batch keeps failing until the file is fixed.
    c.fails(&[
        "stream",
        "--source",
        "in",
        "--table",
        "./t",
        "--checkpoint",
        "cp",
        "-f",
        "csv",
        "--trigger",
        "available-now",
    ]);
    c.write("in/f002.csv", "id,name\n20,x\n21,y\n");
    stream(&c, &[]);
    assert_eq!(ids(&c, "t"), expected(0..3));
}

#[test]
fn bad_options_are_refused_before_anything_runs() {
    let c = Case::new();
    csv_files(&c, "in", 0, 1);
    for (extra, want) in [
        (vec!["-o", "maxFilesPerTrigger=lots"], "positive number"),
        (
            vec!["-o", "cloudFiles.useNotifications=true"],
            "not supported",
        ),
        (vec!["-o", "schemaEvolutionMode=sometimes"], "addNewColumns"),
        (vec!["-o", "headr=true"], "header"),
        (
            vec!["--trigger", "hourly"],
            "available-now, every=10s or continuous",
        ),
        (
            vec!["--table-format", "parquet"],
            "need a Delta or Iceberg table",
        ),
    ] {
        let mut args = vec![
            "stream",
            "--source",
            "in",
            "--table",
            "./t",
            "--checkpoint",
            "cp",
            "-f",
            "csv",
        ];
        if !extra.contains(&"--trigger") {
            args.extend(["--trigger", "available-now"]);
        }
        args.extend(extra.iter().copied());
        let err = c.fails(&args);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    assert!(!c.path("t/_delta_log").exists());
}

#[test]
fn copy_into_loads_each_file_once_even_if_it_changes() {
    let c = Case::new();
    csv_files(&c, "landing", 0, 3);
    let copy = |extra: &[&str]| {
        let mut args = vec!["copy-into", "./t", "--from", "landing", "--format", "csv"];
        args.extend_from_slice(extra);
        c.ok(&args)
    };
    let out = copy(&[]);
    assert!(out.contains("copied 3 files, 6 rows"), "{out}");
    let version = read_delta(&c.path("t")).version;
    let out = copy(&[]);
    assert!(out.contains("copied 0 files, 0 rows"), "{out}");
    assert!(out.contains("3 files were loaded before"), "{out}");
    assert_eq!(read_delta(&c.path("t")).version, version, "idempotent");

    // A loaded file that changed is still skipped (COPY INTO semantics).
    c.write("landing/f000.csv", "id,name\n500,changed\n");
    assert!(copy(&[]).contains("copied 0 files"));
    csv_files(&c, "landing", 3, 2);
    let out = copy(&["--pattern", "f00[4-9].csv"]);
    assert!(out.contains("copied 1 files"), "{out}");
    let out = copy(&["--files", "f003.csv"]);
    assert!(out.contains("copied 1 files"), "{out}");
    assert_eq!(ids(&c, "t"), expected(0..5));
    let out = copy(&["--files", "f001.csv", "--copy-option", "force=true"]);
    assert!(out.contains("copied 1 files, 2 rows"), "{out}");
    assert_eq!(ids(&c, "t").len(), 12, "force loads again");

    // The load history is kept with the table.
    let history = file_states(&c, "./t");
    assert_eq!(history.len(), 5);
    assert!(c.path("t/_sluice/copy_into/metadata.json").exists());

    // New columns need mergeSchema.
    c.write("landing/g.csv", "id,name,extra\n900,n,e\n");
    let err = c.fails(&[
        "copy-into",
        "./t",
        "--from",
        "landing",
        "--format",
        "csv",
        "--files",
        "g.csv",
    ]);
    assert!(
        err.contains("extra") && err.contains("mergeSchema"),
        "{err}"
    );
    let out = copy(&["--files", "g.csv", "--copy-option", "mergeSchema=true"]);
    assert!(out.contains("copied 1 files, 1 rows"), "{out}");
    let t = read_delta(&c.path("t"));
    assert_eq!(t.type_of("extra"), "string");

    for (extra, want) in [
        (vec!["--copy-option", "bogus=true"], "mergeSchema or force"),
        (vec!["--files", "missing.csv"], "do not exist"),
        (
            vec!["--format-option", "maxFilesPerTrigger=2"],
            "not a COPY INTO format option",
        ),
    ] {
        let mut args = vec!["copy-into", "./t", "--from", "landing", "--format", "csv"];
        args.extend(extra.iter().copied());
        let err = c.fails(&args);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
}
