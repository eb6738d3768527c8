//! Table upkeep: `sluice optimize` compacts a stream's small files in one
//! commit that concurrent appends survive, `sluice vacuum` deletes only the
//! files no version within the retention uses, and the Delta log gets a
//! checkpoint every 100 commits. Tables are read back with Python
//! `deltalake` and DuckDB.

use std::process::Command;

use serde_json::Value;

use crate::harness::{Case, binary, read_delta, read_table, root};

/// `n` CSV files of `rows` rows each under `in/`, ids unique across them.
fn landing(c: &Case, n: usize, rows: usize) {
    for f in 0..n {
        let mut text = String::from("id,name\n");
        for r in 0..rows {
            let id = f * rows + r;
            text.push_str(&format!("{id},name-{id}\n"));
        }
        c.write(&format!("in/part-{f:04}.csv"), text);
    }
}

/// A stream that commits one micro-batch per file of `in/` into `t`, with
/// `extra` options.
fn stream_one_file_per_batch(c: &Case, extra: &[&str]) {
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
        "--trigger",
        "available-now",
        "-o",
        "maxFilesPerTrigger=1",
    ];
    args.extend_from_slice(extra);
    c.ok(&args);
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The table's history, newest first, as Python `deltalake` tells it.
fn history(c: &Case) -> Vec<Value> {
    json(&c.python(&format!(
        "import json; from deltalake import DeltaTable; print(json.dumps(DeltaTable({:?}).history(), default=str))",
        c.path("t").to_str().unwrap()
    )))
    .as_array()
    .unwrap()
    .clone()
}

#[test]
fn optimize_compacts_a_streams_small_files_and_keeps_concurrent_appends() {
    let c = Case::new();
    landing(&c, 120, 50);
    stream_one_file_per_batch(&c, &[]);
    let before = read_delta(&c.path("t"));
    assert_eq!(before.files, 120);
    assert_eq!(before.ids(), (0..6000).collect::<Vec<_>>());
    // 120 commits: the Delta log took a checkpoint at the 100th (version
    // 99), which readers open the table from.
    let checkpoints: Vec<String> = std::fs::read_dir(c.path("t/_delta_log"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".checkpoint"))
        .collect();
    assert_eq!(
        checkpoints,
        ["00000000000000000099.checkpoint.parquet"],
        "checkpoints"
    );

    // Appends land while the table is compacted; none is lost.
    for k in 0..4 {
        let mut text = String::from("id,name\n");
        for r in 0..25 {
            let id = 10_000 + k * 25 + r;
            text.push_str(&format!("{id},name-{id}\n"));
        }
        c.write(&format!("more/{k}.csv"), text);
    }
    let appends: Vec<_> = (0..4)
        .map(|k| {
            Command::new(binary())
                .args([
                    "ingest",
                    &format!("more/{k}.csv"),
                    "-f",
                    "csv",
                    "-t",
                    "./t",
                    "--mode",
                    "append",
                    // The stream's table has the rescued data column.
                    "-o",
                    "rescuedDataColumn=_rescued_data",
                ])
                .env("SLUICE_CACHE_DIR", root().join("target/test-cache"))
                .current_dir(c.dir.path())
                .spawn()
                .unwrap()
        })
        .collect();
    let out = c.ok(&["optimize", "./t", "--target-size", "1MiB", "--json"]);
    for mut a in appends {
        assert!(a.wait().unwrap().success(), "an append failed");
    }
    // An append that committed before the compaction read the table is
    // compacted with the rest; one that committed after stays as it is.
    let done = json(&out);
    assert!(done["version"].is_u64(), "{done}");
    let early = done["files_removed"].as_u64().unwrap() - 120;
    assert!(early <= 4, "{done}");
    assert_eq!(done["files_added"], 1, "{done}");
    assert_eq!(done["rows"], 6000 + 25 * early, "{done}");

    let mut want: Vec<i64> = (0..6000).collect();
    want.extend(10_000..10_100);
    let after = read_delta(&c.path("t"));
    assert_eq!(after.ids(), want, "rows lost or doubled");
    assert_eq!(
        after.files,
        1 + 4 - early,
        "the compacted file and the later appends"
    );
    assert_eq!(read_table(&c.path("t"), "delta", "duckdb").ids(), want);
    let history = history(&c);
    let ops: Vec<&str> = history
        .iter()
        .map(|h| h["operation"].as_str().unwrap_or(""))
        .collect();
    assert!(ops.contains(&"OPTIMIZE"), "{ops:?}");

    // Again: what is left small is packed, then nothing is.
    if after.files > 1 {
        let again = json(&c.ok(&["optimize", "./t", "--target-size", "1MiB", "--json"]));
        assert_eq!(again["files_removed"], after.files, "{again}");
    }
    let again = json(&c.ok(&["optimize", "./t", "--target-size", "1MiB", "--json"]));
    assert!(again["version"].is_null(), "{again}");

    // What upkeep cannot do yet says so.
    let err = c.fails(&["optimize", "./t", "--where", "day = '2026-01-01'"]);
    assert!(err.contains("not supported yet"), "{err}");
    let err = c.fails(&["optimize", "./nothing-here"]);
    assert!(err.contains("no Delta table"), "{err}");
}

#[test]
fn vacuum_deletes_only_what_no_version_within_the_retention_uses() {
    let c = Case::new();
    landing(&c, 6, 10);
    stream_one_file_per_batch(&c, &[]);
    c.ok(&["optimize", "./t", "--target-size", "1MiB"]);
    let compacted = read_delta(&c.path("t")).version.unwrap();
    let parquet = |c: &Case| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(c.path("t"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        parquet(&c).len(),
        7,
        "six small files and the compacted one"
    );

    // Within the default retention (7 days) every version keeps its files:
    // time travel to the version before the compaction reads them.
    let out = c.ok(&["vacuum", "./t", "--json"]);
    assert_eq!(json(&out)["files"], serde_json::json!([]));
    let old = c.python(&format!(
        "from deltalake import DeltaTable; print(DeltaTable({:?}, version={}).to_pyarrow_table().num_rows)",
        c.path("t").to_str().unwrap(),
        compacted - 1
    ));
    assert_eq!(old.trim(), "60");

    // A retention below the table's is refused unless forced.
    let err = c.fails(&["vacuum", "./t", "--retain", "0h"]);
    assert!(err.contains("--force"), "{err}");
    // A dry run lists the six files and deletes nothing.
    let dry = json(&c.ok(&[
        "vacuum",
        "./t",
        "--retain",
        "0h",
        "--force",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["files"].as_array().unwrap().len(), 6, "{dry}");
    assert_eq!(parquet(&c).len(), 7);
    // Then for real: the current version's file stays, and reads.
    let done = json(&c.ok(&["vacuum", "./t", "--retain", "0h", "--force", "--json"]));
    assert_eq!(done["files"].as_array().unwrap().len(), 6, "{done}");
    assert_eq!(parquet(&c).len(), 1);
    let t = read_delta(&c.path("t"));
    assert_eq!(t.ids(), (0..60).collect::<Vec<_>>());
    assert_eq!(read_table(&c.path("t"), "delta", "duckdb").ids().len(), 60);

    // After a replace, the replaced files go too; the new version reads.
    c.write("new.csv", "id,name\n100,a\n101,b\n");
    c.ok(&[
        "ingest",
        "new.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "-o",
        "rescuedDataColumn=_rescued_data",
    ]);
    let done = json(&c.ok(&["vacuum", "./t", "--retain", "0h", "--force", "--json"]));
    assert_eq!(done["files"].as_array().unwrap().len(), 1, "{done}");
    assert_eq!(parquet(&c).len(), 1);
    assert_eq!(read_delta(&c.path("t")).ids(), [100, 101]);
}

#[test]
fn a_stream_with_auto_compaction_keeps_its_small_files_few() {
    let c = Case::new();
    landing(&c, 120, 20);
    stream_one_file_per_batch(
        &c,
        &["-o", "autoCompact=true", "-o", "autoCompact.minNumFiles=20"],
    );
    let t = read_delta(&c.path("t"));
    assert_eq!(
        t.ids(),
        (0..2400).collect::<Vec<_>>(),
        "rows lost or doubled"
    );
    // 120 commits; every time 20 small files had gathered (while the next
    // batches went on), they were packed.
    assert!(t.files < 40, "{} data files after 120 commits", t.files);
    let compactions = history(&c)
        .iter()
        .filter(|h| h["operation"] == "OPTIMIZE")
        .count();
    assert!(compactions >= 3, "{compactions} compactions");
    assert_eq!(
        read_table(&c.path("t"), "delta", "duckdb").ids().len(),
        2400
    );

    // A bad value says what to use.
    let err = c.fails(&[
        "stream",
        "--source",
        "in",
        "--table",
        "./u",
        "--checkpoint",
        "cp2",
        "-f",
        "csv",
        "--trigger",
        "available-now",
        "-o",
        "autoCompact=sometimes",
    ]);
    assert!(err.contains("true, auto or false"), "{err}");
}
