//! One rule for what a table name means, whichever face names it: a bare
//! name is a table under the warehouse, a path is a path. And `sluice
//! files` finds a table's checkpoints wherever a load kept them by default.

use crate::harness::{Case, read_delta};
use crate::serve::{ADMIN, Server};

#[test]
fn a_bare_name_is_the_same_warehouse_table_from_every_face() {
    let c = Case::new();
    c.write("in/a.csv", "id\n1\n2\n");
    c.write("more/b.csv", "id\n3\n");
    c.write("late/c.csv", "id\n4\n");

    // The command line's -t, SQL's table name and a pipeline's `table`.
    c.ok(&["ingest", "in", "-f", "csv", "-t", "events"]);
    c.ok(&[
        "sql",
        "COPY INTO events FROM 'more' FILEFORMAT = CSV FORMAT_OPTIONS ('header' = 'true')",
    ]);
    c.write(
        "late.toml",
        "mode = \"append\"\nsource = \"late/\"\nformat = \"csv\"\ntable = \"events\"\n",
    );
    c.ok(&["run", "late.toml"]);
    c.ok(&["copy-into", "events", "--from", "late", "-f", "csv"]);

    let t = read_delta(&c.path("warehouse/events"));
    assert_eq!(t.ids(), [1, 2, 3, 4, 4]);
    assert!(!c.path("events").exists(), "a bare name is never a path");

    // A path is a path, and a schema-qualified name is laid out as Spark's.
    c.ok(&["ingest", "in", "-f", "csv", "-t", "./here/events"]);
    assert_eq!(read_delta(&c.path("here/events")).ids(), [1, 2]);
    c.ok(&["ingest", "in", "-f", "csv", "-t", "sales.orders"]);
    assert_eq!(
        read_delta(&c.path("warehouse/sales.db/orders")).ids(),
        [1, 2]
    );
    let err = c.fails(&["ingest", "in", "-f", "csv", "-t", "a.b.c"]);
    assert!(err.contains("a.b.c"), "{err}");
}

#[test]
fn sluice_files_answers_for_a_streaming_table_and_for_a_served_pipeline() {
    let c = Case::new();
    c.write("in/a.csv", "id\n1\n");
    c.ok(&[
        "sql",
        "CREATE OR REFRESH STREAMING TABLE clicks AS SELECT * FROM STREAM read_files('in', format => 'csv', header => true)",
    ]);
    let out = c.ok(&["files", "clicks"]);
    assert!(out.contains("warehouse/clicks/_sluice/streaming"), "{out}");
    assert!(out.contains("committed") && out.contains("a.csv"), "{out}");

    // COPY INTO into the same table keeps its own checkpoint; both answer.
    c.write("more/b.csv", "id\n2\n");
    c.ok(&[
        "copy-into",
        "clicks",
        "--from",
        "more",
        "-f",
        "csv",
        "--copy-option",
        "mergeSchema=true",
    ]);
    let out = c.ok(&["files", "clicks", "--json"]);
    let files: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths.len(), 2, "{out}");
    assert!(paths[0].ends_with("in/a.csv") && paths[1].ends_with("more/b.csv"));

    // A pipeline `sluice serve` ran keeps its checkpoint with its table,
    // named after it: `sluice files TABLE` finds it, and `--pipeline`
    // picks it out.
    c.write("land/in/x.csv", "id\n7\n");
    let server = Server::start(&c, "");
    server.define(
        "events",
        "mode = \"stream\"\nsource = \"land/in/\"\nformat = \"csv\"\ntable = \"events\"\n",
    );
    let r = server.run_and_wait("events", ADMIN);
    assert_eq!(r.body["status"], "succeeded", "{}", r.body);
    drop(server);
    let out = c.ok(&["files", "events"]);
    assert!(out.contains("_sluice/pipelines/events"), "{out}");
    assert!(out.contains("x.csv"), "{out}");
    let out = c.ok(&["files", "events", "--pipeline", "events"]);
    assert!(out.contains("x.csv"), "{out}");
    let err = c.fails(&["files", "events", "--pipeline", "other"]);
    assert!(err.contains("pipeline 'other'"), "{err}");
    let err = c.fails(&["files", "nothing_here"]);
    assert!(err.contains("neither a checkpoint nor a table"), "{err}");
}
