//! The Kafka connector against a real Kafka-protocol broker (tansu on
//! loopback, produced to with kafka-python): streams exactly once, batch
//! reads, every compression, the options, and what goes wrong.

use std::collections::BTreeSet;

use serde_json::Value;

use std::time::{Duration, Instant};

use crate::harness::{Case, Kafka, S3};
use crate::serve::{ADMIN, Server};

/// The records of the Delta table at `table`, read with Python `deltalake`:
/// `(partition, offset, id, tag)`, sorted.
fn records(c: &Case, table: &str) -> Vec<(i64, i64, i64, String)> {
    let out = c.python(&format!(
        "import deltalake, json\n\
         t = deltalake.DeltaTable({table:?}).to_pyarrow_table()\n\
         rows = []\n\
         for p, o, v in zip(t['partition'].to_pylist(), t['offset'].to_pylist(), t['value'].to_pylist()):\n    \
             d = json.loads(v)\n    \
             rows.append([p, o, d['id'], d['tag']])\n\
         print(json.dumps(sorted(rows)))\n"
    ));
    let rows: Vec<(i64, i64, i64, String)> = serde_json::from_str(out.trim()).unwrap();
    rows
}

/// `ids` as a set, after checking that no record is there twice.
fn once(rows: &[(i64, i64, i64, String)]) -> BTreeSet<i64> {
    let ids: BTreeSet<i64> = rows.iter().map(|r| r.2).collect();
    assert_eq!(ids.len(), rows.len(), "a record is in the table twice");
    let positions: BTreeSet<(i64, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(
        positions.len(),
        rows.len(),
        "an offset is in the table twice"
    );
    ids
}

fn stream_args<'a>(k: &'a Kafka, topic: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "stream",
        "--connector",
        "kafka",
        "-o",
        &format!("kafka.bootstrap.servers={}", k.bootstrap),
        "-o",
        &format!("subscribe={topic}"),
        "-t",
        "./events",
        "--trigger",
        "available-now",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(c: &Case, args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.ok(&args)
}

fn fails(c: &Case, args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.fails(&args)
}

#[test]
fn a_topic_streams_into_a_delta_table_exactly_once_across_runs() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("stream-once", 3);
    k.produce(&c, "stream-once", 3, 0..3000, "gzip", "first");

    let earliest = ["-o", "startingOffsets=earliest"];
    let out = run(&c, &stream_args(k, "stream-once", &earliest));
    assert!(out.contains("3000 rows"), "{out}");
    assert_eq!(once(&records(&c, "events")), (0..3000).collect());

    // Nothing new: nothing read, nothing committed.
    let out = run(&c, &stream_args(k, "stream-once", &earliest));
    assert!(out.contains("0 batches"), "{out}");

    // New records, in another compression: only they load.
    k.produce(&c, "stream-once", 3, 3000..4000, "lz4", "second");
    let out = run(&c, &stream_args(k, "stream-once", &earliest));
    assert!(out.contains("1000 rows"), "{out}");
    let rows = records(&c, "events");
    assert_eq!(once(&rows), (0..4000).collect());
    assert_eq!(rows.iter().filter(|r| r.3 == "second").count(), 1000);
}

/// A stream whose table another stream created (a second process, a reset
/// checkpoint) starts from the table's columns, and still takes the
/// connector's batches as they come.
#[test]
fn a_new_stream_appends_to_a_table_another_stream_made() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("stream-again", 2);
    k.produce(&c, "stream-again", 2, 0..500, "none", "first");
    let earliest = ["-o", "startingOffsets=earliest"];
    run(&c, &stream_args(k, "stream-again", &earliest));
    let mut again = stream_args(k, "stream-again", &earliest);
    again.extend(["--checkpoint".to_string(), "./cp-again".to_string()]);
    let out = run(&c, &again);
    assert!(out.contains("500 rows"), "{out}");
    // Two streams, two applications: each loaded every record once.
    let mut seen = std::collections::BTreeMap::new();
    for r in records(&c, "events") {
        *seen.entry(r.2).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 500);
    assert!(seen.values().all(|&n| n == 2), "{seen:?}");
}

#[test]
fn every_compression_kafka_uses_is_read() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("codecs", 2);
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for (i, codec) in codecs.iter().enumerate() {
        k.produce(
            &c,
            "codecs",
            2,
            i as u64 * 200..(i as u64 + 1) * 200,
            codec,
            codec,
        );
    }
    // A batch load (ingest): earliest to latest, no checkpoint.
    let out = c.ok(&[
        "ingest",
        "--connector",
        "kafka",
        "-o",
        &format!("kafka.bootstrap.servers={}", k.bootstrap),
        "-o",
        "subscribe=codecs",
        "-t",
        "./events",
    ]);
    assert!(out.contains("1000 rows"), "{out}");
    let rows = records(&c, "events");
    assert_eq!(once(&rows), (0..1000).collect());
    for codec in codecs {
        assert_eq!(
            rows.iter().filter(|r| r.3 == codec).count(),
            200,
            "records compressed with {codec}"
        );
    }
}

#[test]
fn max_offsets_per_trigger_splits_the_backlog_into_batches() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("paced", 3);
    k.produce(&c, "paced", 3, 0..900, "none", "x");
    let out = run(
        &c,
        &stream_args(
            k,
            "paced",
            &[
                "-o",
                "startingOffsets=earliest",
                "-o",
                "maxOffsetsPerTrigger=200",
            ],
        ),
    );
    let batches: Vec<u64> = out
        .lines()
        .filter(|l| l.starts_with("batch "))
        .map(|l| {
            let rows = l.split(", ").nth(1).unwrap();
            rows.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(batches.len() >= 5, "{out}");
    assert!(batches.iter().all(|&n| n <= 200), "{out}");
    assert_eq!(batches.iter().sum::<u64>(), 900, "{out}");
    assert_eq!(once(&records(&c, "events")).len(), 900);
}

#[test]
fn a_stream_starts_where_the_options_say() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("starts", 2);
    k.produce(&c, "starts", 2, 0..100, "none", "old");

    // latest (a stream's default): what was there is skipped.
    let out = run(&c, &stream_args(k, "starts", &[]));
    assert!(out.contains("0 rows"), "{out}");
    k.produce(&c, "starts", 2, 100..110, "none", "new");
    run(&c, &stream_args(k, "starts", &[]));
    let ids = once(&records(&c, "events"));
    assert_eq!(ids, (100..110).collect());

    // Offsets per partition: partition 0 from its offset 40, partition 1
    // from its start (-2).
    let c2 = Case::new();
    let start = r#"startingOffsets={"starts":{"0":40,"1":-2}}"#;
    run(&c2, &stream_args(k, "starts", &["-o", start]));
    let rows = records(&c2, "events");
    assert!(rows.iter().filter(|r| r.0 == 0).all(|r| r.1 >= 40));
    assert_eq!(rows.iter().filter(|r| r.0 == 1).count(), 55);
    assert_eq!(rows.iter().filter(|r| r.0 == 0).count(), 55 - 40);
}

#[test]
fn headers_and_spark_columns_come_as_spark_gives_them() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("columns", 1);
    k.produce(&c, "columns", 1, 0..5, "none", "x");
    c.ok(&[
        "ingest",
        "--connector",
        "kafka",
        "-o",
        &format!("kafka.bootstrap.servers={}", k.bootstrap),
        "-o",
        "subscribe=columns",
        "-o",
        "includeHeaders=true",
        "-t",
        "./events",
    ]);
    let out = c.python(
        "import deltalake, json\n\
         t = deltalake.DeltaTable('events').to_pyarrow_table()\n\
         print(json.dumps({'schema': [[f.name, str(f.type)] for f in t.schema], \
           'first': {k: (v.decode() if isinstance(v, bytes) else v) for k, v in t.sort_by('offset').to_pylist()[0].items() if k not in ('timestamp', 'headers')}, \
           'headers': [[h['key'], h['value'].decode()] for h in t.sort_by('offset').to_pylist()[0]['headers']]}))\n",
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let names: Vec<&str> = v["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "key",
            "value",
            "topic",
            "partition",
            "offset",
            "timestamp",
            "timestampType",
            "headers"
        ]
    );
    assert_eq!(v["schema"][5][1], "timestamp[us, tz=UTC]");
    assert_eq!(v["first"]["key"], "k0");
    assert_eq!(v["first"]["topic"], "columns");
    assert_eq!(v["first"]["offset"], 0);
    assert_eq!(v["headers"], serde_json::json!([["h", "0"]]));
}

#[test]
fn bad_kafka_options_and_unknown_topics_say_what_to_fix() {
    let (k, c) = (Kafka::shared(), Case::new());
    let e = fails(&c, &stream_args(k, "no-such-topic", &[]));
    assert!(e.contains("topic 'no-such-topic'"), "{e}");
    let e = fails(
        &c,
        &stream_args(k, "x", &["-o", "startingOffsets=yesterday"]),
    );
    assert!(e.contains("startingOffsets"), "{e}");
    let e = fails(&c, &stream_args(k, "x", &["-o", "subscribePattern=x.*"]));
    assert!(e.contains("only one of subscribe"), "{e}");
    // Nothing was committed by any of them.
    assert!(!c.path("events/_delta_log").exists());
}

#[test]
fn an_unreachable_broker_fails_with_a_clear_error() {
    let c = Case::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = c.fails(&[
        "stream",
        "--connector",
        "kafka",
        "-o",
        &format!("kafka.bootstrap.servers=127.0.0.1:{port}"),
        "-o",
        "subscribe=events",
        "-t",
        "./events",
        "--trigger",
        "available-now",
    ]);
    assert!(e.contains("no bootstrap server answered"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn a_broker_the_cluster_advertises_must_be_granted() {
    // The broker advertises itself as `localhost`: a name the pipeline
    // does not grant (only the bootstrap address is), and one that
    // resolves to loopback, which only a literal grant may reach.
    let (k, c) = (Kafka::start(Some("localhost")), Case::new());
    k.create("advertised", 1);
    k.produce(&c, "advertised", 1, 0..3, "none", "x");
    let e = fails(
        &c,
        &stream_args(&k, "advertised", &["-o", "startingOffsets=earliest"]),
    );
    assert!(e.contains("localhost"), "{e}");
    assert!(e.contains("grant"), "{e}");
    assert!(!c.path("events/_delta_log").exists());
}

#[test]
fn sigkill_anywhere_loses_and_duplicates_no_record_of_a_topic() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("crash", 3);
    k.produce(&c, "crash", 3, 0..120_000, "lz4", "x");
    let args = stream_args(
        k,
        "crash",
        &[
            "-o",
            "startingOffsets=earliest",
            "-o",
            "maxOffsetsPerTrigger=4000",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let by_phase = crate::crash::crash(&c, &args, &[], 10, 1);
    let ids = once(&records(&c, "events"));
    assert_eq!(ids, (0..120_000).collect(), "lost records");
    crate::crash::assert_every_step_was_hit(&by_phase, 1);
}

#[test]
fn sql_and_pipeline_files_read_kafka_through_the_same_engine() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("faces", 2);
    k.produce(&c, "faces", 2, 0..50, "none", "sql");
    let table = c.path("sql_events");
    c.ok(&[
        "sql",
        &format!(
            "CREATE OR REFRESH STREAMING TABLE delta.`{}` AS \
             SELECT CAST(value AS STRING) AS v, partition, offset \
             FROM STREAM read_kafka(bootstrapServers => '{}', subscribe => 'faces', startingOffsets => 'earliest')",
            table.display(),
            k.bootstrap
        ),
    ]);
    let out = c.python(&format!(
        "import deltalake, json\n\
         t = deltalake.DeltaTable({:?}).to_pyarrow_table()\n\
         print(json.dumps([t.num_rows, [f.name for f in t.schema], str(t.schema.field('v').type), sorted(json.loads(v)['id'] for v in t['v'].to_pylist())]))\n",
        table.display().to_string()
    ));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v[0], 50);
    assert_eq!(v[1], serde_json::json!(["v", "partition", "offset"]));
    assert_eq!(v[2], "string");
    assert_eq!(v[3], serde_json::json!((0..50).collect::<Vec<_>>()));

    // The values' keys as columns, selected by name.
    let table = c.path("sql_json");
    c.ok(&[
        "sql",
        &format!(
            "CREATE OR REFRESH STREAMING TABLE delta.`{}` AS \
             SELECT id, tag \
             FROM STREAM read_kafka(bootstrapServers => '{}', subscribe => 'faces', startingOffsets => 'earliest', valueFormat => 'json')",
            table.display(),
            k.bootstrap
        ),
    ]);
    let out = c.python(&format!(
        "import deltalake, json\n\
         t = deltalake.DeltaTable({:?}).to_pyarrow_table()\n\
         print(json.dumps([[f.name for f in t.schema], str(t.schema.field('id').type), sorted(t['id'].to_pylist())]))\n",
        table.display().to_string()
    ));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v[0], serde_json::json!(["id", "tag"]));
    assert_eq!(v[1], "int64");
    assert_eq!(v[2], serde_json::json!((0..50).collect::<Vec<_>>()));

    // A pipeline file: `connector = "kafka"`, the options under [options].
    c.write(
        "faces.toml",
        format!(
            "table = \"./pipe_events\"\nmode = \"stream\"\nconnector = \"kafka\"\n\n[options]\n\"kafka.bootstrap.servers\" = \"{}\"\nsubscribe = \"faces\"\nstartingOffsets = \"earliest\"\n",
            k.bootstrap
        ),
    );
    let out = c.ok(&["run", "faces.toml"]);
    assert!(out.contains("50 rows"), "{out}");
    k.produce(&c, "faces", 2, 50..60, "zstd", "pipe");
    let out = c.ok(&["run", "faces.toml"]);
    assert!(out.contains("10 rows"), "{out}");
    assert_eq!(once(&records(&c, "pipe_events")), (0..60).collect());
}

/// AUTO CDC over a topic of change events (JSON values, flat as a CDC
/// tool's unwrapped events are): applied by key, a late event never
/// winning over a newer one, each event once across runs.
#[test]
fn an_auto_cdc_flow_applies_a_topic_of_change_events_by_key() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("people_changes", 1);
    k.produce_values(
        &c,
        "people_changes",
        &[
            Some(r#"{"id": 1, "name": "ann", "op": "c", "ts": 10}"#),
            Some(r#"{"id": 2, "name": "bob", "op": "c", "ts": 11}"#),
            Some(r#"{"id": 1, "name": "anne", "op": "u", "ts": 12}"#),
        ],
    );
    let sql = format!(
        "CREATE OR REFRESH STREAMING TABLE delta.`people`;
         CREATE FLOW people_cdc AS AUTO CDC INTO delta.`people`
         FROM STREAM read_kafka(bootstrapServers => '{}', subscribe => 'people_changes',
                                startingOffsets => 'earliest', valueFormat => 'json')
         KEYS (id) APPLY AS DELETE WHEN op = 'd' SEQUENCE BY ts
         COLUMNS * EXCEPT (op) STORED AS SCD TYPE 1",
        k.bootstrap
    );
    c.ok(&["sql", &sql]);
    k.produce_values(
        &c,
        "people_changes",
        &[
            Some(r#"{"id": 2, "op": "d", "ts": 14}"#),
            Some(r#"{"id": 1, "name": "stale", "op": "u", "ts": 9}"#),
            Some(r#"{"id": 3, "name": "cy", "op": "c", "ts": 15}"#),
        ],
    );
    c.ok(&["sql", &sql]);
    c.ok(&["sql", &sql]);
    assert_eq!(
        crate::harness::read_delta(&c.path("people")).id_name_ts(),
        [(1, "anne".into(), 12), (3, "cy".into(), 15)]
    );
}

/// Debezium's change events (`valueEnvelope => 'debezium'`): each event
/// is its row image with `__op` and `__ts_ms`, with or without the JSON
/// converter's schema wrapper; tombstones are skipped.
#[test]
fn an_auto_cdc_flow_applies_debezium_change_events() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("dbz_people", 1);
    let event = |op: &str, before: &str, after: &str, ts: u64| {
        format!(
            r#"{{"before": {before}, "after": {after}, "op": "{op}", "ts_ms": {ts}, "source": {{"db": "shop"}}}}"#
        )
    };
    let events = [
        event("r", "null", r#"{"id": 1, "name": "ann"}"#, 10),
        event("c", "null", r#"{"id": 2, "name": "bob"}"#, 11),
        event(
            "u",
            r#"{"id": 1, "name": "ann"}"#,
            r#"{"id": 1, "name": "anne"}"#,
            12,
        ),
        event("d", r#"{"id": 2, "name": "bob"}"#, "null", 13),
        format!(
            r#"{{"schema": {{"type": "struct"}}, "payload": {}}}"#,
            event("c", "null", r#"{"id": 3, "name": "cy"}"#, 14)
        ),
    ];
    let mut values: Vec<Option<&str>> = events.iter().map(|e| Some(e.as_str())).collect();
    // The tombstone Debezium writes after a delete.
    values.insert(4, None);
    k.produce_values(&c, "dbz_people", &values);
    let sql = format!(
        "CREATE OR REFRESH STREAMING TABLE delta.`people`;
         CREATE FLOW people_cdc AS AUTO CDC INTO delta.`people`
         FROM STREAM read_kafka(bootstrapServers => '{}', subscribe => 'dbz_people',
                                startingOffsets => 'earliest', valueFormat => 'json',
                                valueEnvelope => 'debezium')
         KEYS (id) APPLY AS DELETE WHEN __op = 'd' SEQUENCE BY __ts_ms
         COLUMNS * EXCEPT (__op) STORED AS SCD TYPE 1",
        k.bootstrap
    );
    c.ok(&["sql", &sql]);
    assert_eq!(
        crate::harness::read_delta(&c.path("people")).id_name_and("__ts_ms"),
        [(1, "anne".into(), 12), (3, "cy".into(), 14)]
    );
    // Not an event: the error names the record and the option.
    k.create("dbz_bad", 1);
    k.produce_values(&c, "dbz_bad", &[Some(r#"{"id": 1}"#)]);
    let e = c.fails(&[
        "sql",
        &sql.replace("dbz_people", "dbz_bad")
            .replace("`people`", "`bad`"),
    ]);
    assert!(
        e.contains("offset 0") && e.contains("not a Debezium change event"),
        "{e}"
    );
}

#[test]
fn two_processes_split_a_topics_partitions_into_one_table() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("split", 4);
    k.produce(&c, "split", 4, 0..4000, "snappy", "x");
    let args = |partitions: &str, checkpoint: &str| -> Vec<String> {
        [
            "stream",
            "--connector",
            "kafka",
            "-o",
            &format!("kafka.bootstrap.servers={}", k.bootstrap),
            "-o",
            &format!(r#"assign={{"split":[{partitions}]}}"#),
            "-o",
            "startingOffsets=earliest",
            "-o",
            "maxOffsetsPerTrigger=300",
            "-t",
            "./events",
            "--checkpoint",
            checkpoint,
            "--trigger",
            "available-now",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Each process has its own checkpoint (and so its own txn appId); both
    // commit to one table at once.
    let spawn = |a: Vec<String>| {
        c.command(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
            .output()
    };
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| spawn(args("0,1", "./cp-a")));
        let two = s.spawn(|| spawn(args("2,3", "./cp-b")));
        (one.join().unwrap().unwrap(), two.join().unwrap().unwrap())
    });
    for out in [&one, &two] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = records(&c, "events");
    assert_eq!(once(&rows), (0..4000).collect());
}

/// The newest run of pipeline `name` on `s`, as `GET /runs/{id}` shows it
/// (with its batches so far while it runs).
fn newest_run(s: &Server, name: &str) -> Value {
    let runs = s.get(&format!("/pipelines/{name}/runs?limit=1"), ADMIN);
    let Some(id) = runs.body[0]["id"].as_str() else {
        return Value::Null;
    };
    s.get(&format!("/runs/{id}"), ADMIN).body
}

/// Waits until the newest run of `name` has committed `rows` rows.
fn wait_for_rows(s: &Server, name: &str, rows: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let run = newest_run(s, name);
        if run["report"]["rows"].as_u64() == Some(rows) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} rows never committed; the newest run: {run}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_keeps_a_kafka_stream_running_and_stops_it_between_batches() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("served", 2);
    k.produce(&c, "served", 2, 0..500, "lz4", "before");
    let pipeline = format!(
        "mode = \"stream\"\nconnector = \"kafka\"\ntable = \"./events\"\ntrigger = \"continuous\"\n\
         [options]\n\"kafka.bootstrap.servers\" = \"{}\"\nsubscribe = \"served\"\nstartingOffsets = \"earliest\"\n",
        k.bootstrap
    );

    let mut s = Server::start(&c, "");
    s.define("events", &pipeline);
    // The service starts the stream by itself, reads the backlog, then
    // what arrives while it runs.
    wait_for_rows(&s, "events", 500);
    k.produce(&c, "served", 2, 500..1200, "none", "while");
    let run = wait_for_rows(&s, "events", 1200);
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(run["trigger"], "continuous", "{run}");
    assert!(run["report"]["batches"].as_u64().unwrap() >= 2, "{run}");

    // It is not run by triggers: it reads new input by itself.
    let refused = s.call("POST", "/pipelines/events/runs", Some(ADMIN), None, None);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("keeps it running"),
        "{}",
        refused.body
    );
    let listed = s.get("/pipelines", ADMIN);
    assert_eq!(listed.body[0]["trigger"], "continuous", "{}", listed.body);

    // SIGTERM: the batch in progress commits, the run ends as stopped.
    let id = run["id"].as_str().unwrap().to_string();
    assert!(s.terminate(Duration::from_secs(60)), "{}", s.log());
    let rows = once(&records(&c, "events"));
    assert_eq!(rows, (0..1200).collect());

    // Started again, the service goes on from the checkpoint: what came
    // while it was down, exactly once.
    k.produce(&c, "served", 2, 1200..1500, "zstd", "down");
    let s = Server::start(&c, "");
    let after = wait_for_rows(&s, "events", 300);
    assert_ne!(after["id"], id.as_str(), "a new run");
    let history = s.get("/pipelines/events/runs", ADMIN).body;
    let first = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("run {id} is not in the history: {history}"));
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["report"]["stopped"], true, "{first}");
    assert_eq!(once(&records(&c, "events")), (0..1500).collect());
}

#[test]
fn a_timestamp_starts_a_stream_and_a_named_group_sees_its_offsets() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("timed", 2);
    k.produce(&c, "timed", 2, 0..60, "none", "early");
    std::thread::sleep(Duration::from_millis(1500));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::thread::sleep(Duration::from_millis(500));
    k.produce(&c, "timed", 2, 60..100, "none", "late");

    let args = [
        "-o".to_string(),
        format!("startingTimestamp={since}"),
        "-o".to_string(),
        "kafka.group.id=sluice-lag".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&c, &stream_args(k, "timed", &args));
    assert_eq!(once(&records(&c, "events")), (60..100).collect());

    // Each committed batch's end offsets are the group's, as lag tools
    // read them (the stream itself resumes from its checkpoint).
    let out = c.python(&format!(
        "from kafka import KafkaAdminClient\n\
         import json\n\
         a = KafkaAdminClient(bootstrap_servers={:?})\n\
         got = a.list_group_offsets('sluice-lag')['sluice-lag']\n\
         print(json.dumps(sorted([[tp.topic, tp.partition, o.offset] for tp, o in got.items()])))\n",
        k.bootstrap
    ));
    let committed: Vec<(String, i64, i64)> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        committed,
        vec![("timed".to_string(), 0, 50), ("timed".to_string(), 1, 50)]
    );
}

#[test]
fn a_topic_that_appears_under_a_pattern_is_read_from_its_start() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("grows-a", 2);
    k.produce(&c, "grows-a", 2, 0..50, "none", "a");
    let args = [
        "stream",
        "--connector",
        "kafka",
        "-o",
        &format!("kafka.bootstrap.servers={}", k.bootstrap),
        "-o",
        "subscribePattern=grows-.*",
        "-t",
        "./events",
        "--trigger",
        "available-now",
    ];
    let out = c.ok(&args);
    assert!(out.contains("0 rows"), "a stream starts at the end: {out}");
    k.produce(&c, "grows-a", 2, 50..60, "none", "a");
    // A topic new since the last batch is read from its first record
    // (Spark's rule for partitions that appear), whatever startingOffsets said.
    k.create("grows-b", 3);
    k.produce(&c, "grows-b", 3, 60..90, "snappy", "b");
    let out = c.ok(&args);
    assert!(out.contains("40 rows"), "{out}");
    assert_eq!(once(&records(&c, "events")), (50..90).collect());
}

#[test]
fn a_recreated_topic_fails_the_stream_unless_fail_on_data_loss_is_false() {
    let c = Case::new();
    let mut k = Kafka::start(None);
    k.create("reset", 1);
    k.produce(&c, "reset", 1, 0..100, "none", "first");
    let earliest = ["-o", "startingOffsets=earliest"];
    run(&c, &stream_args(&k, "reset", &earliest));

    // The broker loses the topic; it comes back with fewer records than
    // the stream had read: the offsets it will hand out next were read
    // already, so records would be skipped without a word.
    k.restart();
    k.create("reset", 1);
    k.produce(&c, "reset", 1, 1000..1010, "none", "second");
    let e = fails(&c, &stream_args(&k, "reset", &earliest));
    assert!(
        e.contains("topic 'reset' partition 0") && e.contains("went back from 100 to 10"),
        "{e}"
    );
    assert!(e.contains("failOnDataLoss=false"), "{e}");

    // failOnDataLoss=false reads it again from its first record.
    let skip = [
        "-o",
        "startingOffsets=earliest",
        "-o",
        "failOnDataLoss=false",
    ];
    let out = run(&c, &stream_args(&k, "reset", &skip));
    assert!(out.contains("10 rows"), "{out}");
    let ids: Vec<i64> = records(&c, "events").iter().map(|r| r.2).collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a record is in the table twice");
    assert_eq!(unique, (0..100).chain(1000..1010).collect());
}

#[test]
fn a_broker_that_dies_mid_stream_loses_and_duplicates_nothing() {
    let c = Case::new();
    // Its topics live in S3 (moto), so they outlive the broker.
    let mut k = Kafka::start_on_s3(&c, S3::shared());
    k.create("dies", 3);
    k.produce(&c, "dies", 3, 0..6000, "gzip", "x");
    let args = stream_args(
        &k,
        "dies",
        &[
            "-o",
            "startingOffsets=earliest",
            "-o",
            "maxOffsetsPerTrigger=300",
        ],
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = c
        .command(&argv, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The broker goes away once a few batches are in the table.
    let log = c.path("events/_delta_log");
    let deadline = Instant::now() + Duration::from_secs(120);
    let commits = || {
        std::fs::read_dir(&log).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
            })
            .count()
        })
    };
    while commits() < 3 {
        assert!(Instant::now() < deadline, "the stream never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    k.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the stream outlived its broker");
    assert!(
        (stderr.contains(&k.bootstrap) && stderr.contains("Kafka broker"))
            || stderr.contains("no bootstrap server answered"),
        "{stderr}"
    );
    let before = once(&records(&c, "events")).len();
    assert!(before < 6000, "everything was read before the broker died");

    // Back, on the same storage: the batch in flight is redone exactly.
    k.start_again();
    run(&c, &args);
    assert_eq!(once(&records(&c, "events")), (0..6000).collect());
}

/// The table at `table` as JSON rows sorted by offset, read with Python
/// `deltalake`, with its columns' names and types.
fn json_table(c: &Case, table: &str) -> Value {
    let out = c.python(&format!(
        "import deltalake, json\n\
         t = deltalake.DeltaTable({table:?}).to_pyarrow_table()\n\
         rows = sorted(t.to_pylist(), key=lambda r: r['_metadata']['offset'])\n\
         for r in rows:\n    \
             r['_metadata'] = {{k: (v.decode() if isinstance(v, bytes) else v) for k, v in r['_metadata'].items() if k != 'timestamp'}}\n\
         print(json.dumps({{'schema': [[f.name, str(f.type)] for f in t.schema], 'rows': rows}}, default=str))\n"
    ));
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn json_values_become_columns_that_evolve_and_rescue_what_does_not_fit() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("json-evolve", 1);
    k.produce_values(
        &c,
        "json-evolve",
        &[
            Some(r#"{"id": 1, "name": "a"}"#),
            Some(r#"{"id": 2, "name": "b"}"#),
        ],
    );
    let args = stream_args(
        k,
        "json-evolve",
        &["-o", "startingOffsets=earliest", "-o", "valueFormat=json"],
    );
    let out = run(&c, &args);
    assert!(out.contains("2 rows"), "{out}");
    let t = json_table(&c, "events");
    let names: Vec<&str> = t["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "name", "_rescued_data", "_metadata"]);
    assert_eq!(t["schema"][0][1], "int64");
    assert_eq!(t["rows"][1]["name"], "b");
    assert_eq!(t["rows"][1]["_metadata"]["topic"], "json-evolve");
    assert_eq!(t["rows"][1]["_metadata"]["offset"], 1);
    assert_eq!(t["rows"][1]["_metadata"]["key"], "k1");

    // A new key adds a column (schemaEvolutionMode=addNewColumns, the
    // default); a value of the wrong type is rescued, naming its offset; a
    // tombstone is a row of nulls.
    k.produce_values(
        &c,
        "json-evolve",
        &[
            Some(r#"{"id": 3, "name": "c", "score": 1.5}"#),
            Some(r#"{"id": "four", "name": "d"}"#),
            None,
        ],
    );
    let out = run(&c, &args);
    assert!(out.contains("3 rows"), "{out}");
    assert!(out.contains("added column(s) score"), "{out}");
    let t = json_table(&c, "events");
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[2]["score"], 1.5);
    assert!(rows[0]["score"].is_null());
    assert!(rows[3]["id"].is_null());
    let rescued: Value = serde_json::from_str(rows[3]["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(
        rescued,
        serde_json::json!({"id": "four", "_topic": "json-evolve", "_partition": 0, "_offset": 3})
    );
    assert!(rows[4]["id"].is_null() && rows[4]["_rescued_data"].is_null());

    // A value that is not JSON fails the batch under FAILFAST (the
    // default), naming where it is; nothing is committed.
    k.produce_values(&c, "json-evolve", &[Some("not json"), Some(r#"{"id": 6}"#)]);
    let e = fails(&c, &args);
    assert!(
        e.contains("topic 'json-evolve' partition 0 offset 5") && e.contains("invalid JSON"),
        "{e}"
    );
    assert!(e.contains("mode=PERMISSIVE"), "{e}");
    assert_eq!(
        json_table(&c, "events")["rows"].as_array().unwrap().len(),
        5
    );

    // Rerun with PERMISSIVE: the same batch loads, the bad value rescued.
    let mut permissive = args.clone();
    permissive.extend(["-o".to_string(), "mode=PERMISSIVE".to_string()]);
    let out = run(&c, &permissive);
    assert!(out.contains("2 rows"), "{out}");
    let t = json_table(&c, "events");
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    let rescued: Value = serde_json::from_str(rows[5]["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["_malformed_record"], "not json");
    assert_eq!(rescued["_offset"], 5);
    assert_eq!(rows[6]["id"], 6);
}

#[test]
fn json_values_take_hints_drop_malformed_and_refuse_new_keys_when_told() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("json-modes", 1);
    k.produce_values(
        &c,
        "json-modes",
        &[
            Some(r#"{"id": 1, "at": "2026-01-02"}"#),
            Some("oops"),
            Some(r#"{"id": 2}"#),
        ],
    );
    // A batch read: hints over inferred types, malformed values dropped.
    let out = c.ok(&[
        "ingest",
        "--connector",
        "kafka",
        "-o",
        &format!("kafka.bootstrap.servers={}", k.bootstrap),
        "-o",
        "subscribe=json-modes",
        "-o",
        "valueFormat=json",
        "-o",
        "schemaHints=id int, at date",
        "-o",
        "mode=DROPMALFORMED",
        "-t",
        "./batch",
    ]);
    assert!(out.contains("2 rows"), "{out}");
    let t = json_table(&c, "batch");
    let schema = t["schema"].as_array().unwrap();
    assert!(schema.contains(&serde_json::json!(["id", "int32"])), "{t}");
    assert!(
        schema.contains(&serde_json::json!(["at", "date32[day]"])),
        "{t}"
    );
    assert_eq!(t["rows"][0]["at"], "2026-01-02");

    // A stream that refuses new keys fails naming them, commits nothing.
    let args = stream_args(
        k,
        "json-modes",
        &[
            "-o",
            "startingOffsets=earliest",
            "-o",
            "valueFormat=json",
            "-o",
            "mode=DROPMALFORMED",
            "-o",
            "schemaEvolutionMode=failOnNewColumns",
        ],
    );
    let out = run(&c, &args);
    assert!(out.contains("2 rows"), "{out}");
    k.produce_values(&c, "json-modes", &[Some(r#"{"id": 3, "extra": true}"#)]);
    let e = fails(&c, &args);
    assert!(e.contains("new column(s) extra"), "{e}");
    assert_eq!(
        json_table(&c, "events")["rows"].as_array().unwrap().len(),
        2
    );

    // Options that only JSON values take say so.
    let e = fails(
        &c,
        &stream_args(k, "json-modes", &["-o", "schemaHints=id int"]),
    );
    assert!(e.contains("add valueFormat=json"), "{e}");
}

#[test]
fn csv_values_become_positional_columns_typed_and_evolved_like_csv_files() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("csv-values", 1);
    k.produce_values(
        &c,
        "csv-values",
        &[
            Some("1,alice,2026-01-02,true"),
            Some(r#"2,"bob, jr",NA,false"#),
        ],
    );
    let args = stream_args(
        k,
        "csv-values",
        &[
            "-o",
            "startingOffsets=earliest",
            "-o",
            "valueFormat=csv",
            "-o",
            "nullValue=NA",
            "-o",
            "schemaHints=_c0 int",
        ],
    );
    let out = run(&c, &args);
    assert!(out.contains("2 rows"), "{out}");
    let t = json_table(&c, "events");
    let schema = t["schema"].as_array().unwrap();
    for want in [
        ["_c0", "int32"],
        ["_c1", "string"],
        ["_c2", "date32[day]"],
        ["_c3", "bool"],
    ] {
        assert!(schema.contains(&serde_json::json!(want)), "{t}");
    }
    assert_eq!(t["rows"][1]["_c1"], "bob, jr");
    assert!(t["rows"][1]["_c2"].is_null());
    assert_eq!(t["rows"][0]["_c3"], true);

    // A wider record adds a column; a field of the wrong type is rescued.
    k.produce_values(
        &c,
        "csv-values",
        &[Some("3,carol,2026-01-03,true,9.5"), Some("four,dan,,false")],
    );
    let out = run(&c, &args);
    assert!(out.contains("added column(s) _c4"), "{out}");
    let t = json_table(&c, "events");
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows[2]["_c4"], 9.5);
    let rescued: Value = serde_json::from_str(rows[3]["_rescued_data"].as_str().unwrap()).unwrap();
    assert_eq!(rescued["_c0"], "four");
    assert_eq!(rescued["_offset"], 3);

    // A value that is not one CSV record fails under FAILFAST, naming it.
    k.produce_values(&c, "csv-values", &[Some("5,\"open quote")]);
    let e = fails(&c, &args);
    assert!(
        e.contains("topic 'csv-values' partition 0 offset 4") && e.contains("malformed CSV"),
        "{e}"
    );
    assert_eq!(
        json_table(&c, "events")["rows"].as_array().unwrap().len(),
        4
    );
}

/// A topic of change events (Debezium-style: key, operation, sequence in
/// each JSON value) applied by key through a pipeline file: the planned
/// batches' runner commits through the same keyed apply as files.
#[test]
fn a_topic_of_change_events_is_applied_by_key() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("cdc", 1);
    k.produce_values(
        &c,
        "cdc",
        &[
            Some(r#"{"id": 1, "name": "a", "lsn": 10, "op": "c"}"#),
            Some(r#"{"id": 2, "name": "b", "lsn": 11, "op": "c"}"#),
            Some(r#"{"id": 1, "name": "a2", "lsn": 12, "op": "u"}"#),
        ],
    );
    c.write(
        "cdc.toml",
        format!(
            "table = \"./customers\"\nmode = \"stream\"\nconnector = \"kafka\"\n\n[options]\n\
             \"kafka.bootstrap.servers\" = \"{}\"\nsubscribe = \"cdc\"\nstartingOffsets = \"earliest\"\nvalueFormat = \"json\"\n\n\
             [apply]\nkeys = [\"id\"]\nsequence_by = \"lsn\"\ndelete_when = \"op = 'd'\"\n\
             except_columns = [\"op\", \"_rescued_data\", \"_metadata\"]\n",
            k.bootstrap
        ),
    );
    c.ok(&["run", "cdc.toml"]);
    // A delete, and a late update that must not win over lsn 12.
    k.produce_values(
        &c,
        "cdc",
        &[
            Some(r#"{"id": 2, "name": null, "lsn": 13, "op": "d"}"#),
            Some(r#"{"id": 1, "name": "stale", "lsn": 9, "op": "u"}"#),
        ],
    );
    c.ok(&["run", "cdc.toml"]);
    let t = crate::harness::read_delta(&c.path("customers"));
    let rows: Vec<(i64, &str, i64)> = t
        .rows
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["name"].as_str().unwrap(),
                r["lsn"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [(1, "a2", 12)]);
}

/// A topic streams into an Iceberg table as into a Delta one: each record
/// once across runs, read back with pyiceberg.
#[test]
fn a_topic_streams_into_an_iceberg_table_exactly_once_across_runs() {
    let (k, c) = (Kafka::shared(), Case::new());
    k.create("stream-iceberg", 2);
    k.produce(&c, "stream-iceberg", 2, 0..1000, "zstd", "first");
    let mut args = stream_args(k, "stream-iceberg", &["-o", "startingOffsets=earliest"]);
    let table = args.iter().position(|a| a == "./events").unwrap();
    args[table] = "lake.events".into();
    args.extend(
        [
            "--table-format",
            "iceberg",
            "--warehouse",
            "wh",
            "--checkpoint",
            "cp",
        ]
        .map(String::from),
    );
    let out = run(&c, &args);
    assert!(out.contains("1000 rows"), "{out}");
    k.produce(&c, "stream-iceberg", 2, 1000..1500, "none", "second");
    let out = run(&c, &args);
    assert!(out.contains("500 rows"), "{out}");
    let out = run(&c, &args);
    assert!(out.contains("0 batches"), "{out}");
    let t = crate::harness::read_iceberg(&c.path("wh"), "lake.events", "pyiceberg");
    let rows: Vec<(i64, i64, i64, String)> = t
        .rows
        .iter()
        .map(|r| {
            // The value is binary: the reader prints it as Python's b'...'.
            let text = r["value"].as_str().unwrap();
            let json = text
                .strip_prefix("b'")
                .and_then(|t| t.strip_suffix('\''))
                .unwrap_or(text);
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            (
                r["partition"].as_i64().unwrap(),
                r["offset"].as_i64().unwrap(),
                v["id"].as_i64().unwrap(),
                v["tag"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(once(&rows), (0..1500).collect());
}
