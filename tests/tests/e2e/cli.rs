//! The CLI surface: connectors, discover, and the summary line.

use crate::harness::Case;

#[test]
fn connectors_lists_the_files_connector_with_its_spec() {
    let c = Case::new();
    let out = c.ok(&["connectors"]);
    assert!(out.starts_with("files "), "{out}");
    assert!(out.contains("modes: full-refresh, incremental"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&c.ok(&["connectors", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "files");
    assert_eq!(
        json[0]["config_schema"]["properties"]["format"]["enum"][0],
        "csv"
    );
    assert_eq!(json[0]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn discover_prints_the_inferred_schema() {
    let c = Case::new();
    c.write("a.csv", "id,name,when\n1,a,2024-05-01\n");
    let out = c.ok(&["discover", "a.csv", "-f", "csv"]);
    assert!(out.contains("id: Int64"), "{out}");
    assert!(out.contains("when: Date32"), "{out}");
    assert!(out.contains("_metadata: Struct"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["discover", "a.csv", "-f", "csv", "--json"])).unwrap();
    assert_eq!(json["fields"][1]["name"], "name");
}

#[test]
fn ingest_ends_with_one_summary_line() {
    let c = Case::new();
    c.write("a.csv", "x\n1\n2\n");
    let out = c.ok(&["ingest", "a.csv", "-f", "csv", "-t", "./t"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let l = lines[0];
    for part in [
        "ingested 1 files",
        "2 rows",
        "6 bytes",
        " s (",
        "rows/s",
        "version 0",
    ] {
        assert!(l.contains(part), "missing {part:?} in {l}");
    }
}
