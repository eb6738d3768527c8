//! Schema evolution across a stream's batches, in each of Auto Loader's
//! five modes, with files that add, drop and retype columns.

use serde_json::{Value, json};

use crate::harness::{Case, read_delta};

/// Batch 0: `id, n`. Batch 1: adds `city`, drops `n`. Batch 2: retypes `n`
/// (an integer column) with text and with a fraction.
fn files(c: &Case) {
    c.write("in/a.csv", "id,n\n1,10\n2,20\n");
}

fn more(c: &Case) {
    c.write("in/b.csv", "id,city\n3,Oslo\n");
}

fn retyped(c: &Case) {
    c.write("in/c.csv", "id,n\n4,lots\n5,2.5\n");
}

fn run(c: &Case, mode: &str) -> std::process::Output {
    c.run(&[
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
        &format!("cloudFiles.schemaEvolutionMode={mode}"),
    ])
}

fn ok(c: &Case, mode: &str) -> String {
    let out = run(c, mode);
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn columns(c: &Case) -> Vec<String> {
    read_delta(&c.path("t"))
        .schema
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n != "_metadata")
        .collect()
}

fn rows(c: &Case) -> Vec<Value> {
    read_delta(&c.path("t")).data_by("id")
}

#[test]
fn add_new_columns_adds_them_with_the_batch_and_rescues_retyped_values() {
    let c = Case::new();
    files(&c);
    ok(&c, "addNewColumns");
    more(&c);
    let out = ok(&c, "addNewColumns");
    assert!(out.contains("added column(s) city"), "{out}");
    retyped(&c);
    ok(&c, "addNewColumns");
    assert_eq!(columns(&c), ["id", "n", "_rescued_data", "city"]);
    let t = read_delta(&c.path("t"));
    assert_eq!(t.type_of("n"), "int64", "an existing column keeps its type");
    let rows = rows(&c);
    assert_eq!(
        rows[0],
        json!({"id": 1, "n": 10, "_rescued_data": null, "city": null})
    );
    assert_eq!(
        rows[2],
        json!({"id": 3, "n": null, "_rescued_data": null, "city": "Oslo"})
    );
    let rescued: Value = serde_json::from_str(rows[3]["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["n"], "lots");
    assert!(
        rescued["_file_path"]
            .as_str()
            .unwrap()
            .ends_with("/in/c.csv")
    );
    assert!(rows[4]["_rescued_data"].as_str().unwrap().contains("2.5"));
    // The schema history says what changed, batch by batch.
    let files = c.ok(&["files", "cp"]);
    assert!(
        files.contains("schema 1 (from batch 1): added column(s) city"),
        "{files}"
    );
    // Delta recorded the new column in the batch's own commit.
    let log = std::fs::read_to_string(c.path("t/_delta_log/00000000000000000001.json")).unwrap();
    assert!(
        log.contains("\"metaData\"") && log.contains("\"add\""),
        "{log}"
    );
}

#[test]
fn type_widening_adds_columns_and_refuses_to_widen_loudly() {
    let c = Case::new();
    files(&c);
    ok(&c, "addNewColumnsWithTypeWidening");
    more(&c);
    ok(&c, "addNewColumnsWithTypeWidening");
    assert_eq!(columns(&c), ["id", "n", "_rescued_data", "city"]);
    c.write("in/c.csv", "id,n\n4,2.5\n");
    let out = run(&c, "addNewColumnsWithTypeWidening");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("column 'n' widens from Int64 to Float64") && err.contains("typeWidening"),
        "{err}"
    );
    assert!(err.contains("nothing was committed"), "{err}");
    assert_eq!(rows(&c).len(), 3);
}

#[test]
fn rescue_never_changes_the_schema() {
    let c = Case::new();
    files(&c);
    ok(&c, "rescue");
    more(&c);
    retyped(&c);
    ok(&c, "rescue");
    assert_eq!(columns(&c), ["id", "n", "_rescued_data"]);
    let rows = rows(&c);
    let rescued: Value = serde_json::from_str(rows[2]["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["city"], "Oslo");
    assert!(rows[3]["_rescued_data"].as_str().unwrap().contains("lots"));
}

#[test]
fn fail_on_new_columns_names_the_file_and_column_and_commits_nothing() {
    let c = Case::new();
    files(&c);
    ok(&c, "failOnNewColumns");
    more(&c);
    let out = run(&c, "failOnNewColumns");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("in/b.csv (city)"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert_eq!(rows(&c).len(), 2);
    assert_eq!(columns(&c), ["id", "n", "_rescued_data"]);
}

#[test]
fn none_drops_new_columns_and_keeps_no_rescued_column() {
    let c = Case::new();
    files(&c);
    ok(&c, "none");
    more(&c);
    ok(&c, "none");
    assert_eq!(columns(&c), ["id", "n"]);
    let rows = rows(&c);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2], json!({"id": 3, "n": null}));
    // Without a rescued data column a value that does not fit fails the
    // batch (mode=FAILFAST), naming it.
    retyped(&c);
    let out = run(&c, "none");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot parse 'lots' as bigint"), "{err}");
}
