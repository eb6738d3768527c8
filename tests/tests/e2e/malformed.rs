//! Input that parsers forgive and users would not: broken CSV quoting,
//! JSON the lenient decoder would alter, pretty-printed JSON, nesting too
//! deep, file names holding glob characters, very wide files.

use serde_json::json;

use crate::harness::{Case, read_delta};

#[test]
fn broken_csv_quoting_fails_fast_or_is_rescued_never_merged() {
    let c = Case::new();
    c.write("merged.csv", "id,name\n1,\"ann\"e\n2,bob\n");
    let err = c.fails(&["ingest", "merged.csv", "-f", "csv", "-t", "./t"]);
    assert!(
        err.contains("line 2") && err.contains("closing quote"),
        "{err}"
    );
    assert!(!c.path("t/_delta_log").exists());

    // PERMISSIVE keeps the record, but none of its values: they are not
    // what the file meant. Its text and the reason are rescued.
    c.ok(&[
        "ingest",
        "merged.csv",
        "-f",
        "csv",
        "-t",
        "./p",
        "-o",
        "mode=PERMISSIVE",
    ]);
    let t = read_delta(&c.path("p"));
    let rows = t.data_by("id");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let bad = rows
        .iter()
        .find(|r| r["id"].is_null())
        .expect("the rescued record");
    assert!(bad["name"].is_null(), "{bad}");
    let rescued: serde_json::Value =
        serde_json::from_str(bad["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["_malformed_record"], "1,anne", "{rescued}");
    assert!(
        rescued["_malformed_reason"]
            .as_str()
            .unwrap()
            .contains("closing quote")
    );
    assert!(
        rows.iter().any(|r| r["id"] == 2 && r["name"] == "bob"),
        "{rows:?}"
    );

    // DROPMALFORMED drops it.
    c.ok(&[
        "ingest",
        "merged.csv",
        "-f",
        "csv",
        "-t",
        "./d",
        "-o",
        "mode=DROPMALFORMED",
    ]);
    assert_eq!(
        read_delta(&c.path("d")).data(),
        vec![json!({"id": 2, "name": "bob"})]
    );

    // An unterminated quote would swallow the rest of the file.
    c.write("open.csv", "id,name\n1,ann\n2,\"bob\n3,cy\n4,dee\n");
    let err = c.fails(&["ingest", "open.csv", "-f", "csv", "-t", "./o"]);
    assert!(
        err.contains("line 3") && err.contains("never closed"),
        "{err}"
    );
}

#[test]
fn malformed_json_past_the_sample_fails_fast_naming_the_line() {
    let c = Case::new();
    for (bad, what) in [
        ("{\"id\": 1, \"v\": [1,,2]}", "comma"),
        ("{\"id\": 1, \"v\": 012}", "leading zero"),
        ("{\"id\": 1} {\"id\": 2}", "after the record"),
        ("{\"id\": 1, \"v\": [1,]}", "trailing comma"),
    ] {
        let mut text = String::new();
        for i in 0..12_000 {
            text.push_str(&format!("{{\"id\": {i}, \"v\": [{i}]}}\n"));
        }
        text.push_str(bad);
        text.push('\n');
        c.write("big.json", &text);
        let err = c.fails(&["ingest", "big.json", "-f", "json", "-t", "./t"]);
        assert!(err.contains("line 12001"), "{what}: {err}");
        assert!(!c.path("t/_delta_log").exists(), "{what}");
    }
}

#[test]
fn pretty_printed_json_loads_with_multiline() {
    let c = Case::new();
    c.write(
        "pretty.json",
        "{\n  \"id\": 1,\n  \"tags\": [\"a\",\n    \"b\"]\n}\n{\n  \"id\": 2,\n  \"tags\": []\n}\n",
    );
    let err = c.fails(&["ingest", "pretty.json", "-f", "json", "-t", "./t"]);
    assert!(err.contains("multiLine=true"), "{err}");
    c.ok(&[
        "ingest",
        "pretty.json",
        "-f",
        "json",
        "-t",
        "./t",
        "-o",
        "multiLine=true",
    ]);
    assert_eq!(
        read_delta(&c.path("t")).data_by("id"),
        vec![
            json!({"id": 1, "tags": ["a", "b"]}),
            json!({"id": 2, "tags": []})
        ]
    );
}

#[test]
fn json_nested_too_deep_says_so() {
    let c = Case::new();
    let deep = format!("{{\"a\": {}1{}}}\n", "{\"b\": ".repeat(40), "}".repeat(40));
    c.write("deep.json", &deep);
    let err = c.fails(&["ingest", "deep.json", "-f", "json", "-t", "./t"]);
    assert!(err.contains("line 1") && err.contains("30 levels"), "{err}");
    assert!(
        !err.contains("config") && !err.contains("Arrow IPC"),
        "{err}"
    );
}

#[test]
fn a_file_named_with_glob_characters_says_how_to_escape_them() {
    let c = Case::new();
    c.write("in/[2026]_daily.csv", "id\n1\n");
    let err = c.fails(&["ingest", "in/[2026]_daily.csv", "-f", "csv", "-t", "./t"]);
    assert!(err.contains("[[]2026]_daily.csv"), "{err}");
    c.ok(&["ingest", "in/[[]2026]_daily.csv", "-f", "csv", "-t", "./t"]);
    assert_eq!(read_delta(&c.path("t")).data(), vec![json!({"id": 1})]);
}

#[test]
fn a_wide_csv_loads_in_time_linear_in_its_columns() {
    let c = Case::new();
    let cols = 20_000;
    let header: Vec<String> = (0..cols).map(|i| format!("c{i}")).collect();
    let row: Vec<String> = (0..cols).map(|i| i.to_string()).collect();
    let mut text = header.join(",");
    text.push('\n');
    for _ in 0..20 {
        text.push_str(&row.join(","));
        text.push('\n');
    }
    c.write("wide.csv", &text);
    let started = std::time::Instant::now();
    c.ok(&["ingest", "wide.csv", "-f", "csv", "-t", "./t"]);
    let took = started.elapsed();
    // Not a timing assertion: it must finish at all within the test's
    // patience (quadratic name lookups took minutes at this width).
    assert!(took < std::time::Duration::from_secs(300), "{took:?}");
    let t = read_delta(&c.path("t"));
    assert_eq!(t.rows.len(), 20);
    assert_eq!(t.rows[0]["c19999"], 19999);
}
