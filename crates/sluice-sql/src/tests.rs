use super::*;

fn one(sql: &str) -> Statement {
    let mut s = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(s.len(), 1);
    s.remove(0)
}

fn err(sql: &str) -> String {
    parse(sql).unwrap_err().to_string()
}

#[test]
fn create_table_as_select_from_read_files() {
    let s = one("CREATE OR REPLACE TABLE delta.`/tmp/t` AS \
         SELECT *, CAST(n AS BIGINT) AS n2, x::INT, _metadata.file_name AS src, _metadata.* \
         FROM read_files('s3://b/in/*.csv', format => 'csv', header => true, sep => ';')");
    let Statement::CreateTableAs {
        table,
        replace,
        if_not_exists,
        select,
    } = s
    else {
        panic!("{s:?}")
    };
    assert!(replace && !if_not_exists);
    assert_eq!(
        table,
        TableName::Path {
            format: TableFormatName::Delta,
            path: "/tmp/t".into()
        }
    );
    assert_eq!(select.path, "s3://b/in/*.csv");
    assert!(!select.stream);
    assert_eq!(select.format().unwrap(), Format::Csv);
    let reader = select.reader_options();
    assert_eq!(reader["header"], "true");
    assert_eq!(reader["sep"], ";");
    assert_eq!(
        select.projection.items,
        vec![
            Item::Wildcard,
            Item::Expr {
                expr: PExpr::Cast(Box::new(PExpr::Column("n".into())), Arrow::Int64),
                alias: Some("n2".into())
            },
            Item::Expr {
                expr: PExpr::Cast(Box::new(PExpr::Column("x".into())), Arrow::Int32),
                alias: None
            },
            Item::Expr {
                expr: PExpr::Field("_metadata".into(), "file_name".into()),
                alias: Some("src".into())
            },
            Item::FieldsOf("_metadata".into()),
        ]
    );
}

#[test]
fn table_names_by_path_and_by_name() {
    let name = |sql: &str| match one(sql) {
        Statement::CreateTableAs { table, .. } => table,
        s => panic!("{s:?}"),
    };
    assert_eq!(
        name("CREATE TABLE parquet.`s3://b/out` AS SELECT * FROM read_files('/in.json')"),
        TableName::Path {
            format: TableFormatName::Parquet,
            path: "s3://b/out".into()
        }
    );
    assert_eq!(
        name("create table if not exists sales.events as select * from read_files('/in.parquet')"),
        TableName::Named(vec!["sales".into(), "events".into()])
    );
    assert!(
        err("CREATE TABLE iceberg.`/x` AS SELECT * FROM read_files('/a.csv')")
            .contains("iceberg.namespace.table")
    );
    let t = name("CREATE TABLE iceberg.shop.orders AS SELECT * FROM read_files('/a.csv')");
    assert_eq!(t, TableName::Iceberg(vec!["shop".into(), "orders".into()]));
    assert_eq!(t.format(), TableFormatName::Iceberg);
    assert_eq!(t.table(), "shop.orders");
}

#[test]
fn copy_into_with_every_clause() {
    let s = one(
        "COPY INTO delta.`/t` FROM 's3://b/landing' FILEFORMAT = JSON \
         PATTERN = '2026-*/*.json' \
         FORMAT_OPTIONS ('inferSchema' = 'true', 'multiLine' = false) \
         COPY_OPTIONS ('mergeSchema' = 'true')",
    );
    let Statement::CopyInto {
        from,
        format,
        pattern,
        files,
        format_options,
        copy_options,
        ..
    } = s
    else {
        panic!("{s:?}")
    };
    assert_eq!(from, "s3://b/landing");
    assert_eq!(format, Format::Json);
    assert_eq!(pattern.as_deref(), Some("2026-*/*.json"));
    assert!(files.is_empty());
    assert_eq!(format_options["multiLine"], "false");
    assert_eq!(copy_options["mergeSchema"], "true");

    let s = one("COPY INTO t FROM '/in' FILEFORMAT = CSV FILES = ('a.csv', 'b.csv')");
    assert!(matches!(s, Statement::CopyInto { files, .. } if files == ["a.csv", "b.csv"]));
    assert!(err("COPY INTO t FROM '/in'").contains("FILEFORMAT"));
    assert!(
        err("COPY INTO t FROM '/in' FILEFORMAT = CSV PATTERN = '*' FILES = ('a')")
            .contains("not both")
    );
    assert!(
        err("COPY INTO t FROM (SELECT * FROM '/in') FILEFORMAT = CSV")
            .contains("not supported yet")
    );
    assert!(err("COPY INTO t FROM '/in' FILEFORMAT = AVRO").contains("csv, json or parquet"));
}

#[test]
fn streaming_tables_read_from_stream() {
    for sql in [
        "CREATE OR REFRESH STREAMING TABLE events AS SELECT * FROM STREAM read_files('/in', format => 'csv')",
        "create or refresh streaming table events as select * from stream(read_files('/in', format => 'csv'))",
        "CREATE STREAMING TABLE events AS SELECT * FROM STREAM read_files('/in', format => 'csv')",
    ] {
        let s = one(sql);
        let Statement::StreamingTable { table, select, .. } = s else {
            panic!("{s:?}")
        };
        assert_eq!(table, TableName::Named(vec!["events".into()]));
        assert!(select.stream, "{sql}");
        assert_eq!(select.path, "/in");
    }
    assert!(
        err("CREATE OR REFRESH STREAMING TABLE e AS SELECT * FROM read_files('/in', format => 'csv')")
            .contains("FROM STREAM")
    );
    assert!(
        err("CREATE TABLE e AS SELECT * FROM STREAM read_files('/in', format => 'csv')")
            .contains("STREAMING TABLE")
    );
}

#[test]
fn several_statements_and_clear_refusals() {
    let all = parse(
        "CREATE TABLE a AS SELECT * FROM read_files('/a.csv');\n\
         COPY INTO a FROM '/more' FILEFORMAT = CSV;\n",
    )
    .unwrap();
    assert_eq!(all.len(), 2);
    for (sql, want) in [
        ("SELECT 1", "Sluice runs"),
        (
            "CREATE TABLE t AS SELECT * FROM read_files('/a.csv') WHERE x > 1",
            "WHERE",
        ),
        (
            "CREATE TABLE t AS SELECT upper(x) FROM read_files('/a.csv')",
            "upper(x)",
        ),
        ("CREATE TABLE t AS SELECT * FROM other", "read_files"),
        (
            "CREATE TABLE t AS SELECT * FROM read_files('/a.csv') JOIN read_files('/b.csv')",
            "JOIN",
        ),
        (
            "CREATE TABLE t AS SELECT CAST(a AS VARIANT) FROM read_files('/a.csv')",
            "CAST to",
        ),
        (
            "CREATE TABLE t AS SELECT * FROM read_files('/data/in')",
            "format =>",
        ),
        ("CREATE TABLE t (a INT)", "without AS SELECT"),
        (
            "CREATE TABLE t AS SELECT * FRM read_files('/a.csv')",
            "Expected",
        ),
    ] {
        let e = match parse(sql) {
            Ok(s) => match &s[0] {
                Statement::CreateTableAs { select, .. } => select
                    .format()
                    .map(|_| String::new())
                    .unwrap_or_else(|e| e.to_string()),
                _ => String::new(),
            },
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{sql}: {e}");
    }
}

#[test]
fn streaming_tables_read_kafka_with_the_kafka_connector() {
    let s = one(
        "CREATE OR REFRESH STREAMING TABLE events AS SELECT CAST(value AS STRING) AS v, offset \
         FROM STREAM read_kafka(bootstrapServers => 'b:9092', subscribe => 'events', startingOffsets => 'earliest')",
    );
    let load = s.load().unwrap();
    let p = &load.pipeline;
    assert_eq!(p.mode, LoadMode::Stream);
    assert_eq!(p.connector.as_ref().map(|c| c.id.as_str()), Some("kafka"));
    assert_eq!(p.source, None);
    assert_eq!(p.options["kafka.bootstrap.servers"], "b:9092");
    assert_eq!(p.options["subscribe"], "events");
    assert!(
        err("CREATE TABLE t AS SELECT * FROM read_kafka('x', subscribe => 'e')")
            .contains("options only")
    );
    assert!(err("CREATE TABLE t AS SELECT * FROM read_csv('x')").contains("read_kafka"));
}

#[test]
fn auto_cdc_flows_apply_a_stream_by_key_into_a_declared_table() {
    let all = parse(
        "CREATE OR REFRESH STREAMING TABLE customers;
         CREATE FLOW customers_cdc AS AUTO CDC INTO customers
         FROM STREAM read_files('/landing/cdc', format => 'csv', header => 'true')
         KEYS (id) APPLY AS DELETE WHEN op = 'DELETE' SEQUENCE BY ts
         COLUMNS * EXCEPT (op) STORED AS SCD TYPE 2",
    )
    .unwrap();
    assert!(matches!(&all[0], Statement::DeclareStreamingTable { .. }));
    let Statement::AutoCdc { flow, apply, .. } = &all[1] else {
        panic!("{:?}", all[1])
    };
    assert_eq!(flow.as_deref(), Some("customers_cdc"));
    let load = all[1].load().unwrap();
    let p = &load.pipeline;
    assert_eq!(
        (p.mode, p.source.as_deref()),
        (LoadMode::Stream, Some("/landing/cdc"))
    );
    assert_eq!(p.apply.as_ref(), Some(apply));
    assert_eq!(apply.keys, ["id"]);
    assert_eq!((apply.sequence_by.as_str(), apply.scd_type), ("ts", 2));
    assert_eq!(apply.except_columns, ["op"]);
    assert_eq!(
        apply.delete_condition().unwrap(),
        Some(("op".into(), vec!["DELETE".into()]))
    );

    // The older spelling, an IN list, SCD type 1 by default.
    let all = parse(
        "CREATE STREAMING TABLE t; APPLY CHANGES INTO t FROM STREAM(read_files('/in', format => 'json')) \
         KEYS (a, b) SEQUENCE BY seq APPLY AS DELETE WHEN kind IN ('d', 'x')",
    )
    .unwrap();
    let Statement::AutoCdc { apply, flow, .. } = &all[1] else {
        panic!()
    };
    assert_eq!((flow, apply.scd_type, apply.keys.len()), (&None, 1, 2));
    assert_eq!(apply.delete_condition().unwrap().unwrap().1, ["d", "x"]);

    // A source's truncates.
    let truncating = parse(
        "CREATE STREAMING TABLE t; CREATE FLOW f AS AUTO CDC INTO t FROM STREAM read_files('/in', format => 'json') \
         KEYS (id) SEQUENCE BY ts APPLY AS DELETE WHEN op = 'D' APPLY AS TRUNCATE WHEN op = 'T'",
    )
    .unwrap();
    let Statement::AutoCdc { apply, .. } = &truncating[1] else {
        panic!()
    };
    assert_eq!(apply.truncate_when.as_deref(), Some("op = 'T'"));

    for (sql, want) in [
        (
            "CREATE FLOW f AS AUTO CDC INTO t FROM STREAM read_files('/in', format => 'csv') KEYS (id) SEQUENCE BY ts",
            "declare the flow's target first",
        ),
        (
            "CREATE STREAMING TABLE t; CREATE FLOW f AS AUTO CDC INTO t FROM read_files('/in', format => 'csv') KEYS (id) SEQUENCE BY ts",
            "FROM STREAM",
        ),
        (
            "CREATE STREAMING TABLE t; CREATE FLOW f AS AUTO CDC INTO t FROM STREAM read_files('/in', format => 'csv') SEQUENCE BY ts",
            "needs KEYS",
        ),
        (
            "CREATE STREAMING TABLE t; CREATE FLOW f AS AUTO CDC INTO t FROM STREAM read_files('/in', format => 'csv') KEYS (id) SEQUENCE BY ts STORED AS SCD TYPE 3",
            "SCD TYPE 1 or 2",
        ),
        (
            "CREATE STREAMING TABLE t; CREATE FLOW f AS AUTO CDC INTO t FROM STREAM read_files('/in', format => 'csv') KEYS (id) SEQUENCE BY ts TRACK HISTORY ON (a)",
            "TRACK HISTORY ON",
        ),
        (
            "CREATE STREAMING TABLE t; CREATE FLOW f AS AUTO CDC INTO t FROM STREAM read_files('/in', format => 'csv') KEYS (id) SEQUENCE BY ts APPLY AS DELETE WHEN op > 3",
            "column = 'value'",
        ),
        (
            "CREATE STREAMING TABLE t; CREATE FLOW f AS AUTO CDC INTO t FROM STREAM read_files('/in', format => 'csv') KEYS (id) SEQUENCE BY ts APPLY AS TRUNCATE WHEN op LIKE 'T%'",
            "APPLY AS TRUNCATE WHEN",
        ),
    ] {
        assert!(err(sql).contains(want), "{sql}: {}", err(sql));
    }
}

#[test]
fn a_select_list_alone_renames_and_casts() {
    let p = select_list("id, `city` AS town, CAST(temp AS DOUBLE) AS t").unwrap();
    assert_eq!(p.items.len(), 3);
    assert!(matches!(&p.items[1], Item::Expr { alias: Some(a), .. } if a == "town"));
    let e = select_list("id FROM t").unwrap_err().to_string();
    assert!(e.contains("select list"), "{e}");
    assert!(select_list("").is_err());
}
