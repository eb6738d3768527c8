//! Iceberg tables: a batch load creates one in the SQL catalog (a SQLite
//! file in the warehouse), appends add snapshots, a stream adds a column
//! and records each batch in its snapshot's summary, SQL names a table
//! `iceberg.namespace.table`; pyiceberg opens the same catalog file and
//! reads every table back, DuckDB reads the data files pyiceberg's scan
//! plans. A warehouse in object storage (S3, a moto server) works the
//! same, its catalog a SQLite file given with --catalog. What is not built
//! yet fails saying so. A stream killed with
//! SIGKILL at random points loses and duplicates nothing. A replace is a
//! snapshot the earlier ones survive for time travel until vacuum expires
//! them and deletes the files only they used.

use serde_json::Value;

use crate::crash::{assert_every_step_was_hit, crash, part};
use crate::harness::{
    Case, PG_PASSWORD, PG_USER, Postgres, S3, TableDump, read_iceberg, read_iceberg_at,
    read_iceberg_snapshot,
};

fn load(c: &Case, name: &str) -> TableDump {
    read_iceberg(&c.path("wh"), name, "pyiceberg")
}

/// `sluice stream` of the CSV files in `in/` into Iceberg table `table` of
/// warehouse `wh`, one file per batch, available-now, then `extra`.
fn csv_stream<'a>(table: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "stream",
        "--source",
        "in",
        "--table",
        table,
        "--table-format",
        "iceberg",
        "--warehouse",
        "wh",
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
    args
}

fn snapshots(t: &TableDump) -> Vec<Value> {
    t.raw["snapshots"].as_array().unwrap().clone()
}

#[test]
fn batch_loads_create_and_append_and_pyiceberg_and_duckdb_read_them() {
    let c = Case::new();
    c.write(
        "a.csv",
        "id,name,score,at\n1,ada,1.5,2026-01-02T03:04:05Z\n2,bob,,2026-01-03T00:00:00Z\n",
    );
    c.write(
        "b.csv",
        "id,name,score,at\n3,cy,2.25,2026-02-01T00:00:00Z\n",
    );
    let ingest = |file: &str, mode: &str| {
        c.ok(&[
            "ingest",
            file,
            "--format",
            "csv",
            "--table",
            "shop.events",
            "--table-format",
            "iceberg",
            "--warehouse",
            "wh",
            "--mode",
            mode,
        ])
    };
    ingest("a.csv", "overwrite");
    let t = load(&c, "shop.events");
    assert_eq!(t.ids(), [1, 2]);
    assert_eq!(t.type_of("id"), "int64");
    assert_eq!(t.type_of("score"), "double");
    assert!(
        t.type_of("at").starts_with("timestamp[us"),
        "{:?}",
        t.schema
    );
    let ada = t.rows.iter().find(|r| r["id"] == 1).unwrap();
    assert_eq!(ada["name"], "ada");
    assert_eq!(ada["score"], 1.5);
    // Every column has its field id, in the order the table was created.
    assert_eq!(t.raw["field_ids"]["id"], 1);
    assert_eq!(t.raw["field_ids"]["at"], 4);

    ingest("b.csv", "append");
    let t = load(&c, "shop.events");
    assert_eq!(t.ids(), [1, 2, 3]);
    let snaps = snapshots(&t);
    assert_eq!(snaps.len(), 2);
    assert!(
        snaps.iter().all(|s| s["summary"]["operation"] == "append"),
        "{snaps:?}"
    );
    // DuckDB reads the very files the table's current snapshot lists.
    let d = read_iceberg(&c.path("wh"), "shop.events", "duckdb");
    assert_eq!(d.ids(), [1, 2, 3]);
    assert_eq!(d.files, 2);

    // A replace is a new snapshot of only its files; the one before it
    // stays readable (time travel) until vacuum expires it.
    let before = t.version.unwrap();
    ingest("b.csv", "overwrite");
    let t = load(&c, "shop.events");
    assert_eq!(t.ids(), [3]);
    assert_eq!(t.files, 1);
    let ops: Vec<Value> = snapshots(&t)
        .iter()
        .map(|s| s["summary"]["operation"].clone())
        .collect();
    assert_eq!(
        ops.iter().filter(|o| *o == "overwrite").count(),
        1,
        "{ops:?}"
    );
    assert_eq!(
        read_iceberg(&c.path("wh"), "shop.events", "duckdb").ids(),
        [3]
    );
    assert_eq!(
        read_iceberg_snapshot(&c.path("wh"), "shop.events", before).ids(),
        [1, 2, 3]
    );
    let vacuum = |retain: &str, dry: bool| {
        let mut args = vec![
            "vacuum",
            "shop.events",
            "--table-format",
            "iceberg",
            "--warehouse",
            "wh",
            "--retain",
            retain,
            "--json",
        ];
        if dry {
            args.push("--dry-run");
        }
        serde_json::from_str::<Value>(&c.ok(&args)).unwrap()
    };
    // Within the retention nothing goes.
    let kept = vacuum("1h", false);
    assert_eq!(kept["snapshots_expired"], 0);
    assert_eq!(
        read_iceberg_snapshot(&c.path("wh"), "shop.events", before).ids(),
        [1, 2, 3]
    );
    let dry = vacuum("0s", true);
    assert_eq!(dry["snapshots_expired"], 2);
    let data = |v: &Value| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f.as_str().unwrap().starts_with("data/"))
            .count()
    };
    assert_eq!(data(&dry), 2, "{dry}");
    let done = vacuum("0s", false);
    assert_eq!(done["files"], dry["files"]);
    let on_disk = std::fs::read_dir(c.path("wh/shop.db/events/data"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 1);
    let t = load(&c, "shop.events");
    assert_eq!(t.ids(), [3]);
    assert_eq!(snapshots(&t).len(), 1);

    // An Iceberg table is named in its catalog, not by a path.
    let err = c.fails(&[
        "ingest",
        "a.csv",
        "--format",
        "csv",
        "--table",
        "./x",
        "--table-format",
        "iceberg",
        "--warehouse",
        "wh",
    ]);
    assert!(err.contains("named in its catalog"), "{err}");
}

#[test]
fn a_stream_adds_columns_and_records_each_batch_in_its_snapshot() {
    let c = Case::new();
    let stream = || {
        c.ok(&[
            "stream",
            "--source",
            "in",
            "--table",
            "sluice.lake.clicks",
            "--table-format",
            "iceberg",
            "--warehouse",
            "wh",
            "--checkpoint",
            "cp",
            "-f",
            "json",
            "--trigger",
            "available-now",
            "-o",
            "maxFilesPerTrigger=1",
        ])
    };
    c.write(
        "in/1.json",
        "{\"id\": 1, \"page\": \"/\"}\n{\"id\": 2, \"page\": \"/a\"}\n",
    );
    c.write("in/2.json", "{\"id\": 3, \"page\": \"/b\"}\n");
    stream();
    // A new column: the stream adds it (addNewColumns, as Auto Loader).
    c.write(
        "in/3.json",
        "{\"id\": 4, \"page\": \"/c\", \"ms\": 12, \"tags\": [\"x\", \"y\"]}\n",
    );
    let out = stream();
    assert!(out.contains("added column(s) ms, tags"), "{out}");
    let t = load(&c, "lake.clicks");
    assert_eq!(t.ids(), [1, 2, 3, 4]);
    let four = t.rows.iter().find(|r| r["id"] == 4).unwrap();
    assert_eq!(four["ms"], 12);
    assert_eq!(four["tags"], serde_json::json!(["x", "y"]));
    assert_eq!(
        t.rows.iter().find(|r| r["id"] == 1).unwrap()["ms"],
        Value::Null
    );
    // Each batch's identity is in its snapshot's summary.
    let mut batches: Vec<String> = snapshots(&t)
        .iter()
        .filter_map(|s| {
            let summary = s["summary"].as_object()?;
            summary
                .iter()
                .find(|(k, _)| k.starts_with("sluice.batch."))
                .map(|(_, v)| v.as_str().unwrap().to_string())
        })
        .collect();
    batches.sort();
    assert_eq!(batches, ["0", "1", "2"], "{:?}", snapshots(&t));
    // Running it again adds nothing.
    stream();
    assert_eq!(load(&c, "lake.clicks").ids(), [1, 2, 3, 4]);
    // SQL names the same table iceberg.namespace.table.
    let out = c.ok(&[
        "sql",
        "--warehouse",
        "wh",
        "CREATE TABLE iceberg.lake.copy AS SELECT * FROM read_files('in/1.json', format => 'json')",
    ]);
    assert!(out.contains("ingested 1 files, 2 rows"), "{out}");
    assert_eq!(load(&c, "lake.copy").ids(), [1, 2]);
    // Vacuum expires old snapshots (the current one stays).
    let out = c.ok(&[
        "vacuum",
        "lake.clicks",
        "--table-format",
        "iceberg",
        "--warehouse",
        "wh",
        "--retain",
        "0s",
    ]);
    assert!(out.contains("expired"), "{out}");
    let t = load(&c, "lake.clicks");
    assert_eq!(snapshots(&t).len(), 1);
    assert_eq!(t.ids(), [1, 2, 3, 4]);
}

#[test]
fn sigkill_anywhere_in_an_iceberg_stream_loses_and_duplicates_nothing() {
    let c = Case::new();
    let args = csv_stream("crash.t", &["--parallelism", "1"]);
    for k in 0..150 {
        c.write(&format!("in/part-{k:04}.csv"), part(k));
    }
    let by_phase = crash(&c, &args, &[], 30, 3);
    let t = load(&c, "crash.t");
    let mut ids = t.ids();
    let total = ids.len();
    ids.dedup();
    assert_eq!(total, ids.len(), "duplicated records");
    assert_eq!(ids, (0..750).collect::<Vec<_>>(), "lost records");
    assert_every_step_was_hit(&by_phase, 3);
}

#[test]
fn served_pipelines_and_uploads_write_iceberg_tables() {
    use crate::serve::{ADMIN, Server, WRITER};
    let c = Case::new();
    c.write("land/in/a.csv", "id,name\n1,ada\n2,bob\n");
    let s = Server::start(&c, "");
    s.define(
        "events",
        "mode = \"stream\"\nsource = \"land/in/\"\nformat = \"csv\"\ntable = \"lake.events\"\ntable_format = \"iceberg\"\n",
    );
    let r = s.run_and_wait("events", ADMIN);
    assert_eq!(r.status, 200, "{}", r.body);
    let t = read_iceberg(&c.path("warehouse"), "lake.events", "pyiceberg");
    assert_eq!(t.ids(), [1, 2]);

    let upload = |query: &str| {
        s.call(
            "POST",
            &format!("/tables/uploaded/upload?filename=b.csv{query}"),
            Some(WRITER),
            Some("text/csv"),
            Some(b"id,name\n3,cy\n".to_vec()),
        )
    };
    let r = upload("&table_format=iceberg");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = upload("&table_format=iceberg");
    assert_eq!(r.status, 200, "{}", r.body);
    let t = read_iceberg(&c.path("warehouse"), "default.uploaded", "pyiceberg");
    assert_eq!(t.ids(), [3, 3]);
    let r = upload("&table_format=orc");
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn an_iceberg_warehouse_in_s3_with_its_catalog_in_a_local_file() {
    let s3 = S3::shared();
    let c = Case::new();
    s3.put(&c, "ice", &[("landing/a.csv", "id,name\n1,ada\n2,bob\n")]);
    let catalog = format!("sqlite://{}", c.path("catalog.db").display());
    let args = |table: &str| {
        vec![
            "stream".to_string(),
            "--source".into(),
            "s3://ice/landing/".into(),
            "-f".into(),
            "csv".into(),
            "--table".into(),
            table.into(),
            "--table-format".into(),
            "iceberg".into(),
            "--warehouse".into(),
            "s3://ice/wh".into(),
            "--catalog".into(),
            catalog.clone(),
            "--checkpoint".into(),
            "s3://ice/cp".into(),
            "--trigger".into(),
            "available-now".into(),
        ]
    };
    let run = |table: &str| {
        let a = args(table);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        c.ok_env(&a, &s3.env())
    };
    run("shop.events");
    s3.put(&c, "ice", &[("landing/b.csv", "id,name\n3,cy\n")]);
    run("shop.events");
    let props = [
        ("s3.endpoint", s3.endpoint.as_str()),
        ("s3.access-key-id", "testing"),
        ("s3.secret-access-key", "testing"),
        ("s3.region", "us-east-1"),
    ];
    let t = read_iceberg_at(
        "s3://ice/wh",
        Some(c.path("catalog.db").as_os_str()),
        "shop.events",
        "pyiceberg",
        &props,
    );
    assert_eq!(t.ids(), [1, 2, 3]);
    assert_eq!(snapshots(&t).len(), 2);
    // Metadata, manifests and data all went to the bucket, under the
    // table's place in the warehouse.
    let keys = c.python(&format!(
        "import boto3\n\
         s3 = boto3.client('s3', endpoint_url={:?}, aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')\n\
         keys = [o['Key'] for o in s3.list_objects_v2(Bucket='ice', Prefix='wh/')['Contents']]\n\
         print(sorted({{k.split('/')[3] for k in keys}}), sum(k.endswith('.metadata.json') for k in keys))",
        s3.endpoint
    ));
    assert_eq!(keys.trim(), "['data', 'metadata'] 3", "{keys}");
    // A warehouse in object storage has no default catalog: it says so.
    let err = c.fails(&[
        "ingest",
        "x.csv",
        "-f",
        "csv",
        "--table",
        "t",
        "--table-format",
        "iceberg",
        "--warehouse",
        "s3://ice/wh",
    ]);
    assert!(err.contains("--catalog"), "{err}");
}

#[test]
fn a_postgresql_catalog_holds_the_tables_and_its_password_stays_out_of_errors() {
    let pg = Postgres::shared();
    let db = pg.database("icecat");
    let c = Case::new();
    c.write("a.csv", "id,name\n1,ada\n2,bob\n");
    let catalog = format!(
        "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{db}",
        pg.port
    );
    let ingest = |mode: &str| {
        c.ok(&[
            "ingest",
            "a.csv",
            "-f",
            "csv",
            "--table",
            "shop.events",
            "--table-format",
            "iceberg",
            "--warehouse",
            "wh",
            "--catalog",
            &catalog,
            "--mode",
            mode,
        ])
    };
    ingest("overwrite");
    ingest("append");
    ingest("overwrite");
    // The catalog's rows are in PostgreSQL, in the layout pyiceberg's
    // SQLAlchemy catalog reads.
    let rows = pg.sql(
        &db,
        "SELECT catalog_name, table_namespace, table_name FROM iceberg_tables",
    );
    assert_eq!(rows, "sluice|shop|events");
    let alchemy = format!(
        "postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{db}",
        pg.port
    );
    let t = read_iceberg_at(
        c.path("wh").to_str().unwrap(),
        Some(std::ffi::OsStr::new(&alchemy)),
        "shop.events",
        "pyiceberg",
        &[],
    );
    assert_eq!(t.ids(), [1, 2]);
    assert_eq!(snapshots(&t).len(), 3);
    // A catalog that refuses the password: the error names the catalog,
    // never the password.
    let wrong = catalog.replace(PG_PASSWORD, "not-the-password");
    let err = c.fails(&[
        "ingest",
        "a.csv",
        "-f",
        "csv",
        "--table",
        "shop.events",
        "--table-format",
        "iceberg",
        "--warehouse",
        "wh",
        "--catalog",
        &wrong,
    ]);
    assert!(err.contains("password"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[test]
fn optimize_compacts_a_streams_files_and_keeps_concurrent_appends() {
    let c = Case::new();
    for f in 0..40 {
        let mut body = String::from("id,name\n");
        for r in 0..5 {
            body.push_str(&format!("{},n\n", f * 5 + r));
        }
        c.write(&format!("in/p{f:03}.csv"), body);
    }
    c.ok(&csv_stream("lake.t", &[]));
    assert_eq!(load(&c, "lake.t").files, 40);
    for i in 0..3 {
        c.write(
            &format!("extra{i}.csv"),
            format!("id,name\n{},x\n", 1000 + i),
        );
    }
    // Three appends race the compaction: it rebases onto them (or they
    // onto it); none is lost.
    let appends: Vec<_> = (0..3)
        .map(|i| {
            let file = format!("extra{i}.csv");
            c.command(
                &[
                    "ingest",
                    &file,
                    "-f",
                    "csv",
                    "--table",
                    "lake.t",
                    "--table-format",
                    "iceberg",
                    "--warehouse",
                    "wh",
                    "--mode",
                    "append",
                ],
                &[],
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    let out = c.ok(&[
        "optimize",
        "lake.t",
        "--table-format",
        "iceberg",
        "--warehouse",
        "wh",
        "--json",
    ]);
    for mut a in appends {
        assert!(a.wait().unwrap().success());
    }
    let done: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(done["files_removed"], 40, "{done}");
    assert_eq!(done["files_added"], 1, "{done}");
    let t = load(&c, "lake.t");
    let mut want: Vec<i64> = (0..200).collect();
    want.extend([1000, 1001, 1002]);
    assert_eq!(t.ids(), want);
    assert_eq!(t.files, 4, "one compacted file and the three appends");
    assert!(
        snapshots(&t)
            .iter()
            .any(|s| s["summary"]["operation"] == "replace")
    );
    assert_eq!(read_iceberg(&c.path("wh"), "lake.t", "duckdb").ids(), want);
}

#[test]
fn an_iceberg_stream_compacts_itself_with_auto_compaction() {
    let c = Case::new();
    for f in 0..30 {
        c.write(&format!("in/p{f:03}.csv"), format!("id,name\n{f},n\n"));
    }
    c.ok(&csv_stream(
        "lake.auto",
        &["-o", "autoCompact=true", "-o", "autoCompact.minNumFiles=10"],
    ));
    let t = load(&c, "lake.auto");
    assert_eq!(t.ids(), (0..30).collect::<Vec<_>>());
    assert!(t.files < 20, "{} data files", t.files);
    assert!(
        snapshots(&t)
            .iter()
            .any(|s| s["summary"]["operation"] == "replace")
    );
}
