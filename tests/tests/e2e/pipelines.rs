//! Pipeline files (`sluice run`): the same TOML/JSON `sluice serve` takes.

use crate::harness::{Case, read_delta};

#[test]
fn a_stream_pipeline_file_loads_only_new_files_each_run() {
    let c = Case::new();
    c.write("in/a.csv", "id,name\n1,a\n2,b\n");
    c.write(
        "events.toml",
        "mode = \"stream\"\nsource = \"in/\"\nformat = \"csv\"\ntable = \"events\"\n",
    );
    let out = c.ok(&["run", "events.toml"]);
    assert!(out.contains("1 files, 2 rows"), "{out}");
    c.write("in/b.csv", "id,name\n3,c\n");
    let out = c.ok(&["run", "events.toml", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["rows"], 1);
    assert_eq!(report["version"], 1);
    // A bare table name lives under the warehouse root; the checkpoint is
    // kept with the table, named after the pipeline.
    let t = read_delta(&c.path("warehouse/events"));
    assert_eq!(t.ids(), [1, 2, 3]);
    assert!(c.path("warehouse/events/_sluice/pipelines/events").is_dir());
}

#[test]
fn replace_append_and_copy_into_pipelines_in_json() {
    let c = Case::new();
    c.write("in/a.csv", "id\n1\n2\n");
    c.write(
        "p.json",
        r#"{"mode": "copy_into", "source": "in/", "format": "csv", "table": "out/t"}"#,
    );
    c.ok(&["run", "p.json"]);
    let again: serde_json::Value =
        serde_json::from_str(&c.ok(&["run", "p.json", "--json"])).unwrap();
    assert_eq!(again["rows"], 0);
    assert_eq!(again["skipped_files"], 1);
    c.write(
        "a.json",
        r#"{"mode": "append", "source": "in/", "format": "csv", "table": "out/t"}"#,
    );
    c.ok(&["run", "a.json"]);
    assert_eq!(read_delta(&c.path("out/t")).rows.len(), 4);
    c.write(
        "r.json",
        r#"{"mode": "replace", "source": "in/", "format": "csv", "table": "out/t"}"#,
    );
    c.ok(&["run", "r.json"]);
    assert_eq!(read_delta(&c.path("out/t")).rows.len(), 2);
}

#[test]
fn a_bad_pipeline_file_says_what_to_fix() {
    let c = Case::new();
    c.write(
        "typo.toml",
        "table = \"t\"\nsource = \"in/\"\nformat = \"csv\"\nmod = \"append\"\n",
    );
    let err = c.fails(&["run", "typo.toml"]);
    assert!(err.contains("unknown field `mod`"), "{err}");
    c.write("nosource.toml", "table = \"t\"\n");
    assert!(
        c.fails(&["run", "nosource.toml"])
            .contains("give a `source`")
    );
    c.write(
        "secret.toml",
        "table = \"t\"\n[connector]\nid = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\nconfig = { token = \"${secret:TOKEN}\" }\n",
    );
    let err = c.fails(&["run", "secret.toml"]);
    assert!(err.contains("[grants] secrets does not list"), "{err}");
}

/// `[apply]` (AUTO CDC): each batch of change files is applied by key, as
/// SCD type 1 (the current row) and type 2 (every version); a late change
/// never overwrites a newer one; the tables read back with Python
/// `deltalake`.
#[test]
fn a_stream_of_changes_is_applied_by_key_as_scd_type_1_and_2() {
    let c = Case::new();
    let pipeline = |name: &str, scd: u8| {
        format!(
            "mode = \"stream\"\nsource = \"changes/\"\nformat = \"csv\"\ntable = \"{name}\"\n\
             [options]\ninferColumnTypes = \"true\"\n\
             [apply]\nkeys = [\"id\"]\nsequence_by = \"ts\"\nscd_type = {scd}\n\
             delete_when = \"op = 'DELETE'\"\nexcept_columns = [\"op\", \"_rescued_data\"]\n"
        )
    };
    c.write("current.toml", pipeline("current", 1));
    c.write("history.toml", pipeline("history", 2));
    let run_both = || {
        for p in ["current.toml", "history.toml"] {
            c.ok(&["run", p]);
        }
    };
    c.write(
        "changes/1.csv",
        "id,name,ts,op\n1,a,1,UPSERT\n2,b,1,UPSERT\n1,a2,3,UPSERT\n3,c,1,UPSERT\n",
    );
    run_both();
    // A late update of 1 (2 < 3), a delete of 2, an update of 3.
    c.write(
        "changes/2.csv",
        "id,name,ts,op\n1,late,2,UPSERT\n2,,4,DELETE\n3,c2,5,UPSERT\n",
    );
    run_both();
    run_both();

    let current = read_delta(&c.path("warehouse/current"));
    assert_eq!(
        current.id_name_ts(),
        [(1, "a2".into(), 3), (3, "c2".into(), 5)]
    );
    assert!(current.rows.iter().all(|r| r.get("op").is_none()));

    let history = read_delta(&c.path("warehouse/history"));
    let mut versions: Vec<(i64, String, i64, Option<i64>)> = history
        .rows
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["name"].as_str().unwrap_or_default().to_string(),
                r["__START_AT"].as_i64().unwrap(),
                r["__END_AT"].as_i64(),
            )
        })
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        [
            (1, "a".into(), 1, Some(2)),
            (1, "a2".into(), 3, None),
            (1, "late".into(), 2, Some(3)),
            (2, "b".into(), 1, Some(4)),
            (3, "c".into(), 1, Some(5)),
            (3, "c2".into(), 5, None),
        ]
    );
}

#[test]
fn apply_needs_a_stream_and_its_columns() {
    let c = Case::new();
    c.write("changes/1.csv", "id,name,ts\n1,a,1\n");
    c.write(
        "p.toml",
        "mode = \"append\"\nsource = \"changes/\"\nformat = \"csv\"\ntable = \"t\"\n[apply]\nkeys = [\"id\"]\nsequence_by = \"ts\"\n",
    );
    let e = c.fails(&["run", "p.toml"]);
    assert!(e.contains("mode = \"stream\""), "{e}");
    c.write(
        "p.toml",
        "mode = \"stream\"\nsource = \"changes/\"\nformat = \"csv\"\ntable = \"t\"\n[apply]\nkeys = [\"customer\"]\nsequence_by = \"ts\"\n",
    );
    let e = c.fails(&["run", "p.toml"]);
    assert!(e.contains("no column 'customer'"), "{e}");
    assert!(!c.path("warehouse/t/_delta_log").exists());
}
