//! Edge functions: the Spin component in `components/edge`, hosted by
//! `sluice serve` over `wasi:http`, validates pushed records and hands them
//! back to Sluice as Arrow IPC (or to a landing volume), through the
//! outbound allow-list.

use std::net::TcpListener;

use serde_json::json;

use crate::harness::{Case, component, read_delta};
use crate::serve::{ADMIN, Server, WRITER};

/// A loopback port that was free a moment ago (the server binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `[functions.NAME]` section for the edge component.
fn function(name: &str, allowed: &str, env: &str, extra: &str) -> String {
    format!(
        "[functions.{name}]\ncomponent = {:?}\nsecrets = [\"EDGE_TOKEN\"]\n\
         allowed_outbound_hosts = [{allowed}]\n{extra}\n\
         [functions.{name}.env]\nSLUICE_TOKEN = \"${{secret:EDGE_TOKEN}}\"\n{env}\n",
        component("sluice_edge").display().to_string()
    )
}

/// A server (with no backstop listing) hosting the edge component as
/// function `name`, which may reach the server itself and has `env` (TOML
/// lines) besides `SLUICE_URL` and its token.
pub fn edge_server(c: &Case, name: &str, env: &str) -> Server {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    Server::start_with(
        c,
        &format!(
            "backstop_interval = \"0s\"\n{}",
            function(
                name,
                &format!("\"{base}\""),
                &format!("SLUICE_URL = \"{base}\"\n{env}"),
                ""
            )
        ),
        &format!("127.0.0.1:{port}"),
        &[("SLUICE_SECRET_EDGE_TOKEN", WRITER)],
    )
}

fn ids(c: &Case, table: &str) -> Vec<i64> {
    read_delta(&c.path(&format!("warehouse/{table}"))).ids()
}

#[test]
fn the_spin_component_pushes_records_into_a_table_through_sluice() {
    let c = Case::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env =
        format!("SLUICE_URL = \"{base}\"\nSLUICE_TABLE = \"uploaded\"\nREQUIRED_FIELDS = \"id\"\n");
    let config = [
        function("edge", &format!("\"{base}\""), &env, ""),
        // Names Sluice by a host name: it resolves to loopback, which only
        // an entry naming the address itself may reach.
        function(
            "by-name",
            &format!("\"http://localhost:{port}\""),
            &env.replace("127.0.0.1", "localhost"),
            "",
        ),
        function("nowhere", "", &env, ""),
        function("slow", &format!("\"{base}\""), &env, "timeout = \"1ms\""),
        function("tiny", &format!("\"{base}\""), &env, "memory_mib = 4"),
    ]
    .concat();
    let s = Server::start_with(
        &c,
        &config,
        &format!("127.0.0.1:{port}"),
        &[("SLUICE_SECRET_EDGE_TOKEN", WRITER)],
    );

    // JSON and CSV pushes, each one commit.
    let r = s.call(
        "POST",
        "/fn/edge/ingest",
        Some(ADMIN),
        Some("application/json"),
        Some(br#"[{"id": 1, "city": "Oslo", "temp": -3.5}, {"id": 2, "city": "Lima", "temp": 19.25}, {"id": 3, "city": null, "temp": 22}]"#.to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rows"], 3);
    assert_eq!(r.body["sluice"]["report"]["rows"], 3);
    let r = s.call(
        "POST",
        "/fn/edge/ingest",
        Some(ADMIN),
        Some("text/csv"),
        Some(b"id,city,temp\n4,Cape Town,18.5\n5,Quito,14\n".to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&c, "uploaded"), [1, 2, 3, 4, 5]);
    let t = read_delta(&c.path("warehouse/uploaded"));
    let cape = t.rows.iter().find(|r| r["id"] == 4).unwrap();
    assert_eq!(cape["city"], "Cape Town");
    assert_eq!(cape["temp"], 18.5);

    // Bad pushes: the component says what to fix; nothing is committed.
    let bad = |ct: &str, body: &[u8]| {
        s.call(
            "POST",
            "/fn/edge/ingest",
            Some(ADMIN),
            Some(ct),
            Some(body.to_vec()),
        )
    };
    let r = bad("application/json", br#"[{"id": 6}, {"city": "Nowhere"}]"#);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"], "record 2 lacks required field 'id'");
    let r = bad("application/json", br#"[{"id": 7, "temp": "warm"}]"#);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Sluice refused the batch"),
        "{}",
        r.body
    );
    let r = bad("text/plain", b"id\n8\n");
    assert_eq!(r.status, 415, "{}", r.body);
    let r = s.call("GET", "/fn/edge/ingest", Some(ADMIN), None, None);
    assert_eq!(r.status, 405, "{}", r.body);
    // The component sees the path as sent, still percent-encoded.
    let r = s.call("GET", "/fn/edge/in%20gest%2Fx", Some(ADMIN), None, None);
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(ids(&c, "uploaded"), [1, 2, 3, 4, 5]);

    // The caller needs a token granted the function; the writer has none.
    let r = s.call(
        "POST",
        "/fn/edge/ingest",
        None,
        Some("application/json"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let r = s.call(
        "POST",
        "/fn/edge/ingest",
        Some(WRITER),
        Some("application/json"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s.call("POST", "/fn/absent/x", Some(ADMIN), None, None);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = s.call("POST", "/fn/absent/x", None, None, None);
    assert_eq!(
        r.status, 401,
        "which functions exist is not told: {}",
        r.body
    );

    // Outbound requests go only where the allow-list says, checked after
    // DNS resolution.
    let r = bad_push(&s, "by-name");
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("DestinationIpProhibited"),
        "{}",
        r.body
    );
    let r = bad_push(&s, "nowhere");
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{}",
        r.body
    );
    assert_eq!(ids(&c, "uploaded"), [1, 2, 3, 4, 5]);

    // The uploads were audited under the edge function's token.
    let audit = s.get("/audit", ADMIN);
    let edge_uploads = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["principal"] == "loader" && e["action"] == "table.upload")
        .count();
    assert!(edge_uploads >= 2, "{}", audit.body);

    // A component that traps (here: out of memory while parsing) gets a
    // 500 and a request that outlives its time limit a 504; nothing is
    // committed, and the service goes on.
    let big: Vec<serde_json::Value> = (0..60_000)
        .map(|i| json!({"id": 1000 + i, "city": "a city with a long enough name"}))
        .collect();
    let r = s.call(
        "POST",
        "/fn/tiny/ingest",
        Some(ADMIN),
        Some("application/json"),
        Some(serde_json::to_vec(&big).unwrap()),
    );
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .starts_with("function 'tiny' failed"),
        "{}",
        r.body
    );
    assert_eq!(ids(&c, "uploaded"), [1, 2, 3, 4, 5]);
    let r = bad_push(&s, "slow");
    assert_eq!(r.status, 504, "{}", r.body);
    let r = s.call("GET", "/health", None, None, None);
    assert_eq!(r.status, 200);
    let metrics = s.get("/metrics", ADMIN);
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("sluice_function_requests_total{function=\"edge\",status=\"200\"}"),
        "{text}"
    );
}

fn bad_push(s: &Server, function: &str) -> crate::serve::Reply {
    s.call(
        "POST",
        &format!("/fn/{function}/ingest"),
        Some(ADMIN),
        Some("application/json"),
        Some(br#"{"id": 100}"#.to_vec()),
    )
}

#[test]
fn the_spin_component_lands_files_a_stream_pipeline_loads_once() {
    let c = Case::new();
    let s = edge_server(
        &c,
        "land",
        "SLUICE_VOLUME = \"landing\"\nSLUICE_PREFIX = \"edge\"\n",
    );
    let push = |body: &[u8]| {
        let r = s.call(
            "POST",
            "/fn/land/",
            Some(ADMIN),
            Some("application/x-ndjson"),
            Some(body.to_vec()),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    push(b"{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \"b\"}\n");
    // A retried push lands on the same object.
    push(b"{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \"b\"}\n");
    push(b"{\"id\": 3, \"v\": \"c\"}\n");
    let landed = std::fs::read_dir(c.path("land/edge")).unwrap().count();
    assert_eq!(landed, 2);

    let def = json!({
        "mode": "stream", "source": "land/edge/", "format": "json", "table": "events",
    });
    s.define("events", &def.to_string());
    let r = s.run_and_wait("events", WRITER);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "succeeded", "{}", r.body);
    assert_eq!(ids(&c, "events"), [1, 2, 3]);

    // The event log: as JSON, and (committed within a second or so) as a
    // Delta table an independent reader queries.
    let events = s.get("/events", ADMIN);
    assert_eq!(events.status, 200, "{}", events.body);
    let is_the_run = |e: &serde_json::Value| e["kind"] == "run" && e["target"] == "events";
    let run = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| is_the_run(e))
        .cloned();
    assert_eq!(run.expect("the run is in the event log")["rows"], 3);
    let table = c.path("state/event_log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if table.join("_delta_log").exists() {
            let rows = read_delta(&table).rows;
            let uploads = rows
                .iter()
                .filter(|e| e["action"] == "volume.upload" && e["principal"] == "loader")
                .count();
            if rows.iter().any(is_the_run) && uploads == 3 {
                let run = rows.iter().find(|e| is_the_run(e)).unwrap();
                assert_eq!(run["rows"], 3);
                assert_eq!(run["outcome"], "succeeded");
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event log table did not get the run and the uploads"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn arrow_ipc_uploads_stream_into_a_table_and_a_broken_one_commits_nothing() {
    let c = Case::new();
    let s = Server::start(&c, "");
    c.python(
        "import pyarrow as pa\n\
         t = pa.table({'id': list(range(1000)), 'v': [str(i) for i in range(1000)]})\n\
         with pa.ipc.new_stream('t.arrows', t.schema) as w:\n    \
             for b in t.to_batches(max_chunksize=100): w.write_batch(b)\n",
    );
    let body = std::fs::read(c.path("t.arrows")).unwrap();
    let upload = |query: &str, body: &[u8]| {
        s.call(
            "POST",
            &format!("/tables/uploaded/upload{query}"),
            Some(WRITER),
            Some("application/vnd.apache.arrow.stream"),
            Some(body.to_vec()),
        )
    };
    let r = upload("?preview=true", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rows"].as_array().unwrap().len(), 50);
    assert_eq!(r.body["schema"][1]["name"], "v");
    // Cut off in the middle of a batch: refused, nothing committed.
    let r = upload("", &body[..body.len() / 2]);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(!c.path("warehouse/uploaded/_delta_log").exists());
    let r = upload("", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["report"]["rows"], 1000);
    assert_eq!(ids(&c, "uploaded"), (0..1000).collect::<Vec<_>>());
    let r = upload("?option.header=false", &body);
    assert_eq!(r.status, 400, "{}", r.body);
}
