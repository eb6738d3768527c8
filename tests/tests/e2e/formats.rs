//! Round trips per format and option, checked value by value with Python
//! `deltalake` (and pyarrow / DuckDB for plain Parquet).

use serde_json::json;

use crate::harness::{Case, read_delta, read_table};

const TYPED_CSV: &str = "\u{feff}id,name,score,day,ts,ok\n\
# a comment line\n\
1,alice,1.5,2024-01-02,2024-01-02T10:00:00Z,true\n\
2,\"bob, \"\"jr\"\"\",2,2024-01-03,2024-01-03 11:30:00,false\n\
\n\
3,\"multi\nline\",,,,\n";

#[test]
fn csv_infers_types_and_handles_quotes_bom_comments_and_multiline_fields() {
    let c = Case::new();
    c.write("in/a.csv", TYPED_CSV);
    let out = c.ok(&[
        "ingest",
        "in/a.csv",
        "--format",
        "csv",
        "--table",
        "./t",
        "-o",
        "comment=#",
    ]);
    assert!(out.contains("ingested 1 files, 3 rows"), "{out}");
    assert!(out.contains("version 0"), "{out}");

    let t = read_delta(&c.path("t"));
    assert_eq!(t.version, Some(0));
    assert_eq!(t.type_of("id"), "int64");
    assert_eq!(t.type_of("score"), "double");
    assert_eq!(t.type_of("day"), "date32[day]");
    assert_eq!(t.type_of("ts"), "timestamp[us, tz=UTC]");
    assert_eq!(t.type_of("ok"), "bool");
    assert_eq!(
        t.data(),
        vec![
            json!({"id": 1, "name": "alice", "score": 1.5, "day": "2024-01-02", "ts": "2024-01-02 10:00:00+00:00", "ok": true}),
            json!({"id": 2, "name": "bob, \"jr\"", "score": 2.0, "day": "2024-01-03", "ts": "2024-01-03 11:30:00+00:00", "ok": false}),
            json!({"id": 3, "name": "multi\nline", "score": null, "day": null, "ts": null, "ok": null}),
        ]
    );
    // Path and name cross the component boundary dictionary-encoded; the
    // table stores plain strings.
    assert_eq!(
        t.type_of("_metadata"),
        "struct<file_path: string not null, file_name: string not null, file_size: int64 not null, file_modification_time: timestamp[us, tz=UTC] not null>"
    );
    let meta = &t.rows[0]["_metadata"];
    assert_eq!(meta["file_name"], "a.csv");
    assert_eq!(meta["file_size"], TYPED_CSV.len());
    assert!(meta["file_path"].as_str().unwrap().ends_with("/in/a.csv"));
}

#[test]
fn csv_options_delimiter_no_header_null_value_escape_and_strings_only() {
    let c = Case::new();
    c.write("a.csv", "1;NA;\"x;y\"\n2;b;\"q\\\"uote\"\n");
    c.ok(&[
        "ingest",
        "a.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "-o",
        "delimiter=;",
        "-o",
        "header=false",
        "-o",
        "nullValue=NA",
        "-o",
        "escape=\\",
        "-o",
        "inferColumnTypes=false",
    ]);
    let t = read_delta(&c.path("t"));
    assert_eq!(t.type_of("_c0"), "string");
    assert_eq!(
        t.data(),
        vec![
            json!({"_c0": "1", "_c1": null, "_c2": "x;y"}),
            json!({"_c0": "2", "_c1": "b", "_c2": "q\"uote"}),
        ]
    );
}

#[test]
fn schema_hints_override_inference() {
    let c = Case::new();
    c.write("a.csv", "id,price,code\n1,10.50,007\n2,3.25,042\n");
    c.ok(&[
        "ingest",
        "a.csv",
        "-f",
        "csv",
        "-t",
        "./t",
        "-o",
        "schemaHints=id int, price decimal(10,2), code string",
    ]);
    let t = read_delta(&c.path("t"));
    assert_eq!(t.type_of("id"), "int32");
    assert_eq!(t.type_of("price"), "decimal128(10, 2)");
    assert_eq!(t.type_of("code"), "string");
    assert_eq!(
        t.data()[0],
        json!({"id": 1, "price": "10.50", "code": "007"})
    );
}

#[test]
fn ndjson_with_nested_objects_and_lists() {
    let c = Case::new();
    c.write(
        "e.json",
        "{\"id\": 1, \"user\": {\"name\": \"a\", \"age\": 30}, \"tags\": [\"x\", \"y\"], \"v\": 1.5}\n\
         \n\
         {\"id\": 2, \"user\": {\"name\": \"b\"}, \"tags\": [], \"v\": null, \"extra\": true}\n",
    );
    let out = c.ok(&["ingest", "e.json", "-f", "json", "-t", "./t"]);
    assert!(out.contains("2 rows"), "{out}");
    let t = read_delta(&c.path("t"));
    assert_eq!(t.type_of("id"), "int64");
    assert!(
        t.type_of("user").starts_with("struct<"),
        "{}",
        t.type_of("user")
    );
    assert!(
        t.type_of("tags").starts_with("list<"),
        "{}",
        t.type_of("tags")
    );
    assert_eq!(
        t.data(),
        vec![
            json!({"id": 1, "user": {"name": "a", "age": 30}, "tags": ["x", "y"], "v": 1.5, "extra": null}),
            json!({"id": 2, "user": {"name": "b", "age": null}, "tags": [], "v": null, "extra": true}),
        ]
    );
}

#[test]
fn json_top_level_array() {
    let c = Case::new();
    c.write(
        "a.json",
        "  [\n {\"a\": 1, \"b\": \"x\"},\n {\"a\": 2, \"b\": \"y\"}\n]\n",
    );
    c.ok(&["ingest", "a.json", "-f", "json", "-t", "./t"]);
    let t = read_delta(&c.path("t"));
    assert_eq!(
        t.data(),
        vec![json!({"a": 1, "b": "x"}), json!({"a": 2, "b": "y"})]
    );
}

#[test]
fn compressed_inputs_by_extension() {
    let c = Case::new();
    c.python(
        "import gzip, os, pyarrow as pa\n\
         os.makedirs('in', exist_ok=True)\n\
         with gzip.open('in/a.csv.gz', 'wt') as f: f.write('k,v\\n1,one\\n')\n\
         with pa.CompressedOutputStream('in/b.csv.zst', 'zstd') as f: f.write(b'k,v\\n2,two\\n')\n",
    );
    let out = c.ok(&["ingest", "in", "-f", "csv", "-t", "./t"]);
    assert!(out.contains("ingested 2 files, 2 rows"), "{out}");
    let t = read_delta(&c.path("t"));
    assert_eq!(
        t.data(),
        vec![json!({"k": 1, "v": "one"}), json!({"k": 2, "v": "two"})]
    );
}

#[test]
fn parquet_input_read_through_ranges_including_sluice_own_zstd_output() {
    let c = Case::new();
    c.python(
        "import pyarrow as pa, pyarrow.parquet as pq, datetime\n\
         t = pa.table({'id': pa.array([1, 2, 3], pa.int32()), 's': ['a', None, 'c'],\n\
                       'd': [datetime.date(2024, 1, i) for i in (1, 2, 3)]})\n\
         pq.write_table(t, 'p.parquet', compression='snappy', row_group_size=2)\n",
    );
    c.ok(&["ingest", "p.parquet", "-f", "parquet", "-t", "./t1"]);
    let t1 = read_delta(&c.path("t1"));
    assert_eq!(t1.type_of("id"), "int32");
    assert_eq!(
        t1.data(),
        vec![
            json!({"id": 1, "s": "a", "d": "2024-01-01"}),
            json!({"id": 2, "s": null, "d": "2024-01-02"}),
            json!({"id": 3, "s": "c", "d": "2024-01-03"}),
        ]
    );
    // Sluice's own data files are zstd-compressed Parquet: read them back in.
    let own = std::fs::read_dir(c.path("t1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    c.ok(&[
        "ingest",
        own.to_str().unwrap(),
        "-f",
        "parquet",
        "-t",
        "./t2",
    ]);
    let t2 = read_delta(&c.path("t2"));
    // The input's own `_metadata` column wins over Sluice's.
    assert_eq!(t2.rows.len(), 3);
    assert_eq!(t2.rows, t1.rows);
}

#[test]
fn directories_and_globs_select_files() {
    let c = Case::new();
    c.write("in/2024-01/a.csv", "x\n1\n");
    c.write("in/2024-02/b.csv", "x\n2\n");
    c.write("in/2024-02/c.txt", "x\nnot this\n");
    c.write("in/_SUCCESS", "");
    let out = c.ok(&["ingest", "in/*/*.csv", "-f", "csv", "-t", "./t"]);
    assert!(out.contains("ingested 2 files, 2 rows"), "{out}");
    let t = read_delta(&c.path("t"));
    let names: Vec<_> = t
        .rows
        .iter()
        .map(|r| r["_metadata"]["file_name"].clone())
        .collect();
    assert_eq!(names, vec![json!("a.csv"), json!("b.csv")]);
}

#[test]
fn overwrite_replaces_and_append_adds() {
    let c = Case::new();
    c.write("a.csv", "x,y\n1,a\n");
    c.write("b.csv", "x,y\n2,b\n");
    c.ok(&["ingest", "a.csv", "-f", "csv", "-t", "./t"]);
    let out = c.ok(&[
        "ingest", "b.csv", "-f", "csv", "-t", "./t", "--mode", "append",
    ]);
    assert!(out.contains("version 1"), "{out}");
    let t = read_delta(&c.path("t"));
    assert_eq!(
        t.data(),
        vec![json!({"x": 1, "y": "a"}), json!({"x": 2, "y": "b"})]
    );

    // Create-or-replace with another schema: version 2 holds only the new data.
    c.write("c.csv", "z\nonly\n");
    c.ok(&["ingest", "c.csv", "-f", "csv", "-t", "./t"]);
    let t = read_delta(&c.path("t"));
    assert_eq!(t.version, Some(2));
    assert_eq!(t.data(), vec![json!({"z": "only"})]);
    assert_eq!(t.files, 1);
}

#[test]
fn plain_parquet_datasets_are_readable_by_pyarrow_and_duckdb() {
    let c = Case::new();
    c.write("a.csv", "x,y\n1,a\n2,b\n");
    c.ok(&[
        "ingest",
        "a.csv",
        "-f",
        "csv",
        "-t",
        "./ds",
        "--table-format",
        "parquet",
    ]);
    for reader in ["pyarrow", "duckdb"] {
        let t = read_table(&c.path("ds"), "parquet", reader);
        assert_eq!(
            t.data(),
            vec![json!({"x": 1, "y": "a"}), json!({"x": 2, "y": "b"})],
            "{reader}"
        );
    }
    // Overwrite leaves only the new files.
    c.write("b.csv", "x,y\n3,c\n");
    c.ok(&[
        "ingest",
        "b.csv",
        "-f",
        "csv",
        "-t",
        "./ds",
        "--table-format",
        "parquet",
    ]);
    let t = read_table(&c.path("ds"), "parquet", "pyarrow");
    assert_eq!(t.data(), vec![json!({"x": 3, "y": "c"})]);
}

#[test]
fn delta_data_files_are_readable_by_pyarrow_alone() {
    let c = Case::new();
    c.write("a.csv", "x,y\n1,a\n2,b\n");
    c.ok(&["ingest", "a.csv", "-f", "csv", "-t", "./t"]);
    let t = read_table(&c.path("t"), "delta", "pyarrow");
    assert_eq!(
        t.data(),
        vec![json!({"x": 1, "y": "a"}), json!({"x": 2, "y": "b"})]
    );
}

#[test]
fn many_files_in_parallel_lanes_commit_once() {
    let c = Case::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        c.write(
            &format!("in/f{i:03}.csv"),
            format!("id,v\n{i},{}\n", i * 10),
        );
        expected.push(json!({"id": i, "v": i * 10}));
    }
    let out = c.ok(&[
        "ingest",
        "in",
        "-f",
        "csv",
        "-t",
        "./t",
        "--parallelism",
        "3",
    ]);
    assert!(out.contains("ingested 40 files, 40 rows"), "{out}");
    let t = read_delta(&c.path("t"));
    assert_eq!(t.version, Some(0));
    assert_eq!(t.data_by("id"), expected);
}
