//! `sluice sql`: the three statements, read back by independent readers.

use serde_json::json;

use crate::harness::{Case, read_delta, read_table};

fn inputs(c: &Case) {
    c.write(
        "in/a.csv",
        "id,amount,day\n1,2.5,2026-01-01\n2,4.0,2026-01-02\n",
    );
    c.write("in/b.csv", "id,amount,day\n3,1.0,2026-01-03\n");
}

#[test]
fn create_table_as_select_projects_casts_and_names_tables() {
    let c = Case::new();
    inputs(&c);
    let out = c.ok(&[
        "sql",
        "CREATE TABLE sales.orders AS \
         SELECT id, CAST(amount AS DECIMAL(10,2)) AS amount, _metadata.file_name AS source_file \
         FROM read_files('in', format => 'csv', header => true);",
    ]);
    assert!(out.contains("ingested 2 files, 3 rows"), "{out}");
    let t = read_delta(&c.path("warehouse/sales.db/orders"));
    assert_eq!(
        t.schema,
        [
            ("id".into(), "int64".into()),
            ("amount".into(), "decimal128(10, 2)".into()),
            ("source_file".into(), "string".into())
        ]
    );
    let mut rows = t.rows.clone();
    rows.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(
        rows[2],
        json!({"id": 3, "amount": "1.00", "source_file": "b.csv"})
    );

    // CREATE TABLE refuses an existing table; OR REPLACE replaces it;
    // IF NOT EXISTS leaves it.
    let err = c.fails(&[
        "sql",
        "CREATE TABLE sales.orders AS SELECT * FROM read_files('in/a.csv')",
    ]);
    assert!(err.contains("already exists"), "{err}");
    let out = c.ok(&[
        "sql",
        "CREATE TABLE IF NOT EXISTS sales.orders AS SELECT * FROM read_files('in/a.csv')",
    ]);
    assert!(out.contains("nothing to do"), "{out}");
    c.ok(&[
        "sql",
        "CREATE OR REPLACE TABLE sales.orders AS SELECT * FROM read_files('in/a.csv')",
    ]);
    let t = read_delta(&c.path("warehouse/sales.db/orders"));
    assert_eq!(t.rows.len(), 2);
    assert!(
        !t.schema.iter().any(|(n, _)| n == "_metadata"),
        "* leaves out _metadata, as in Databricks"
    );

    // A Parquet table by path, read by pyarrow.
    c.ok(&[
        "sql",
        "CREATE TABLE parquet.`out/p` AS SELECT id, _metadata.* FROM read_files('in', format => 'csv')",
    ]);
    let p = read_table(&c.path("out/p"), "parquet", "pyarrow");
    assert_eq!(p.rows.len(), 3);
    assert!(p.schema.iter().any(|(n, _)| n == "file_path"));
}

#[test]
fn copy_into_and_streaming_tables_load_only_new_files() {
    let c = Case::new();
    inputs(&c);
    let file = c.write(
        "pipeline.sql",
        "-- load the landing zone, twice: the second run loads nothing\n\
         COPY INTO delta.`t_copy` FROM 'in' FILEFORMAT = CSV \
           FORMAT_OPTIONS ('header' = 'true') COPY_OPTIONS ('mergeSchema' = 'true');\n\
         COPY INTO delta.`t_copy` FROM 'in' FILEFORMAT = CSV;\n\
         CREATE OR REFRESH STREAMING TABLE events AS \
           SELECT id, day, _metadata.file_path AS path FROM STREAM read_files('in', format => 'csv', maxFilesPerTrigger => 1);\n",
    );
    let out = c.ok(&["sql", "-f", file.to_str().unwrap()]);
    assert!(out.contains("copied 2 files, 3 rows"), "{out}");
    assert!(out.contains("copied 0 files, 0 rows"), "{out}");
    assert!(
        out.contains("refreshed streaming table events: 2 new files"),
        "{out}"
    );
    c.write("in/c.csv", "id,amount,day\n4,9.5,2026-01-04\n");
    let out = c.ok(&[
        "sql",
        "CREATE OR REFRESH STREAMING TABLE events AS SELECT id, day, _metadata.file_path AS path \
         FROM STREAM(read_files('in', format => 'csv'))",
    ]);
    assert!(out.contains("1 new files"), "{out}");
    let t = read_delta(&c.path("warehouse/events"));
    assert_eq!(t.rows.len(), 4);
    assert_eq!(t.type_of("day"), "date32[day]");
    assert!(
        c.path("warehouse/events/_sluice/streaming/metadata.json")
            .exists()
    );
    assert_eq!(read_delta(&c.path("t_copy")).rows.len(), 3);

    let err = c.fails(&[
        "sql",
        "CREATE STREAMING TABLE events AS SELECT * FROM STREAM read_files('in', format => 'csv')",
    ]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn unsupported_sql_says_so_and_changes_nothing() {
    let c = Case::new();
    inputs(&c);
    for (sql, want) in [
        (
            "CREATE TABLE t AS SELECT * FROM read_files('in', format => 'csv') WHERE id > 1",
            "not supported yet: WHERE",
        ),
        (
            "CREATE TABLE t AS SELECT lower(day) FROM read_files('in', format => 'csv')",
            "lower(day)",
        ),
        ("DROP TABLE t", "not supported yet"),
        (
            "CREATE TABLE t AS SELECT nope FROM read_files('in', format => 'csv')",
            "'nope' is not in the input",
        ),
        (
            "CREATE TABLE t AS SELECT CAST(amount AS DATE) AS d FROM read_files('in', format => 'csv')",
            "CAST(amount AS Date32)",
        ),
        (
            "CREATE TABLE t AS SELECT * FROM read_files('in', format => 'xml')",
            "unknown format 'xml'",
        ),
        (
            "CREATE TABLE t AS SELECT * FROM read_files('in', format => 'csv', hedaer => true)",
            "header",
        ),
        (
            "CREATE TABLE t AS SELECT * FROM read_files('in', format => 'csv'",
            "Expected",
        ),
    ] {
        let err = c.fails(&["sql", sql]);
        assert!(err.contains(want), "{sql}: {err}");
    }
    assert!(!c.path("warehouse/t/_delta_log").exists());
}

/// `CREATE FLOW ... AS AUTO CDC INTO` as Databricks writes it: a stream of
/// change files applied by key to a declared streaming table, once per new
/// file, a late change never winning over a newer one.
#[test]
fn an_auto_cdc_flow_applies_change_files_by_key() {
    let c = Case::new();
    c.write(
        "cdc/1.csv",
        "id,name,ts,op\n1,ann,10,U\n2,bob,11,U\n1,anne,12,U\n3,cy,13,U\n",
    );
    let sql = "CREATE OR REFRESH STREAMING TABLE delta.`people`;
        CREATE FLOW people_cdc AS AUTO CDC INTO delta.`people`
        FROM STREAM read_files('cdc', format => 'csv', header => 'true')
        KEYS (id) APPLY AS DELETE WHEN op = 'D' SEQUENCE BY ts
        COLUMNS * EXCEPT (op) STORED AS SCD TYPE 1";
    let out = c.ok(&["sql", sql]);
    assert!(out.contains("flow people_cdc: applied"), "{out}");
    c.write("cdc/2.csv", "id,name,ts,op\n2,,14,D\n1,stale,9,U\n");
    c.ok(&["sql", sql]);
    assert_eq!(
        read_delta(&c.path("people")).id_name_ts(),
        [(1, "anne".into(), 12), (3, "cy".into(), 13)]
    );
    let e = c.fails(&[
        "sql",
        "CREATE FLOW f AS AUTO CDC INTO delta.`x` FROM STREAM read_files('cdc', format => 'csv') KEYS (id) SEQUENCE BY ts",
    ]);
    assert!(
        e.contains("CREATE OR REFRESH STREAMING TABLE delta.`x`"),
        "{e}"
    );
}
