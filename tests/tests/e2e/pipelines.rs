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
