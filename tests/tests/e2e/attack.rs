//! `sluice serve` under attack by a caller holding a writer token: no escape
//! from a volume, no secret in anything a run leaves behind, no starvation
//! by idle connections, no exhaustion by bomb uploads, no crash on crafted
//! Arrow IPC, and the lesser holes each closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Case, S3, component, read_delta};
use crate::serve::{ADMIN, Server, TOKENS, WRITER, audit_actions};

/// What the escape attempts carry: found anywhere but in a volume, it got
/// out.
const PAYLOAD: &[u8] = b"payload-7c1e9";

/// Every way of writing `..` (and friends) in a name that a writer tried.
const TRAVERSALS: &[&str] = &[
    "%252e%252e/%252e%252e/pwned",
    ".%252e/.%252e/pwned",
    "%252e./pwned",
    "%252E%252E/pwned",
    "%2e%2e/%2e%2e/pwned",
    "..%5c..%5cpwned",
    "..%255c..%255cpwned",
    "..%2f..%2fpwned",
    "a/..%252f..%252fpwned",
    "a/%2e/pwned",
    "nul%00byte",
    "bell%07",
    "a//pwned",
];

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A configuration with volumes of every kind a writer may use, and the
/// usual two tokens (the writer granted every volume).
fn volumes_config(c: &Case, bucket: &str) -> String {
    format!(
        "state = \"state\"\nmax_upload_mib = 1\n[volumes]\nlanding = \"land\"\n\
         fileurl = \"file://{}\"\nbucket = \"s3://{bucket}/vol\"\n\n{}",
        c.path("furl").display(),
        TOKENS.replace("volumes = [\"landing\"]", "volumes = [\"*\"]")
    )
}

#[test]
fn a_writer_never_escapes_its_volume() {
    let c = Case::new();
    let s3 = S3::shared();
    let bucket = "attack-escape";
    s3.put(&c, bucket, &[("elsewhere/keep.txt", "keep")]);
    let env: Vec<(String, String)> = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = Server::start_toml(&c, &volumes_config(&c, bucket), "127.0.0.1:0", &env, None);

    for volume in ["landing", "fileurl", "bucket"] {
        for t in TRAVERSALS {
            let r = s.call(
                "PUT",
                &format!("/volumes/{volume}/{t}"),
                Some(WRITER),
                None,
                Some(PAYLOAD.to_vec()),
            );
            assert_eq!(r.status, 400, "{volume}/{t}: {}", r.body);
            assert!(
                r.body["error"].as_str().unwrap().contains("path"),
                "{}",
                r.body
            );
        }
        // An over-long segment is the caller's mistake too.
        let long = "x".repeat(300);
        let r = s.call(
            "PUT",
            &format!("/volumes/{volume}/{long}"),
            Some(WRITER),
            None,
            Some(b"x".to_vec()),
        );
        assert_eq!(r.status, 400, "{}", r.body);
        // `?` and `#` stay part of the name: two uploads, two objects.
        for (name, body) in [("q%3Fone", "one"), ("q%3Ftwo", "two"), ("h%23ash", "hash")] {
            let r = s.call(
                "PUT",
                &format!("/volumes/{volume}/in/{name}"),
                Some(WRITER),
                None,
                Some(body.as_bytes().to_vec()),
            );
            assert_eq!(r.status, 201, "{volume}/{name}: {}", r.body);
        }
    }
    // Local volumes: the named objects are there, and nothing the writer
    // sent is anywhere but inside a volume.
    for dir in ["land", "furl"] {
        let read = |n: &str| std::fs::read_to_string(c.path(&format!("{dir}/in/{n}"))).unwrap();
        assert_eq!(
            (read("q?one").as_str(), read("q?two").as_str()),
            ("one", "two")
        );
        assert_eq!(read("h#ash"), "hash");
    }
    for f in files_under(c.dir.path()) {
        let inside = f.starts_with(c.path("land")) || f.starts_with(c.path("furl"));
        if !inside && let Ok(text) = std::fs::read(&f) {
            assert!(
                !text.windows(PAYLOAD.len()).any(|w| w == PAYLOAD),
                "{} was written by a writer",
                f.display()
            );
        }
    }
    // The bucket: only keys under vol/ were written.
    let keys = c.python(&format!(
        "import boto3\n\
         s3 = boto3.client('s3', endpoint_url={:?}, aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')\n\
         for o in s3.list_objects_v2(Bucket={bucket:?}).get('Contents', []):\n    print(o['Key'])\n",
        s3.endpoint
    ));
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "elsewhere/keep.txt",
            "vol/in/h#ash",
            "vol/in/q?one",
            "vol/in/q?two"
        ]
    );
}

/// The secret the tests plant: characters that JSON escapes and URLs
/// encode, so every form it may take is looked for.
const SECRET: &str = "hunter2\"s3cr/t?k=v&x";

/// The forms `SECRET` may take in text.
fn secret_forms() -> Vec<String> {
    vec![
        SECRET.to_string(),
        serde_json::to_string(SECRET)
            .unwrap()
            .trim_matches('"')
            .to_string(),
        "hunter2%22s3cr%2Ft%3Fk%3Dv%26x".to_string(),
        "hunter2".to_string(),
    ]
}

fn assert_no_secret(what: &str, text: &str) {
    for form in secret_forms() {
        assert!(
            !text.contains(&form),
            "{what} holds the secret ({form}):\n{text}"
        );
    }
}

#[test]
fn a_secret_planted_in_a_connector_error_never_leaves_the_run() {
    let c = Case::new();
    let s = Server::start_with(&c, "", "127.0.0.1:0", &[("SLUICE_SECRET_TOKEN", SECRET)]);
    let id = s.upload_connector("sluice_misbehave")["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The connector logs its config, asks the host for a URL carrying the
    // secret (the denial quotes it) and fails quoting the config raw,
    // JSON-escaped and percent-encoded.
    let def = format!(
        "mode = \"append\"\ntable = \"leaky\"\n[connector]\nid = \"{id}\"\n\
         config = {{ do = \"leak\", token = \"${{secret:TOKEN}}\", target = \"s3://elsewhere/x\" }}\n\
         [grants]\nsecrets = [\"TOKEN\"]\n"
    );
    s.define("events", &def);
    let r = s.run_and_wait("events", WRITER);
    assert_eq!(r.body["status"], "failed", "{}", r.body);
    let error = r.body["error"].as_str().unwrap().to_string();
    // The error is there, told with the reference in place of the value.
    assert!(error.contains("leaking"), "{error}");
    assert!(error.contains("${secret:TOKEN}"), "{error}");
    assert_no_secret("the run's answer", &r.body.to_string());
    let run = r.body["id"].as_str().unwrap().to_string();

    for (path, token) in [
        ("/pipelines".to_string(), WRITER),
        ("/pipelines/events".to_string(), WRITER),
        ("/pipelines/events/runs".to_string(), WRITER),
        (format!("/runs/{run}"), WRITER),
        ("/events".to_string(), ADMIN),
        ("/audit".to_string(), ADMIN),
        ("/metrics".to_string(), ADMIN),
    ] {
        let r = s.get(&path, token);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_no_secret(&path, &r.body.to_string());
    }
    // The event log table, once committed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let p = c.path("state/event_log/_delta_log");
        if p.exists() {
            let t = read_delta(&c.path("state/event_log"));
            if t.rows.iter().any(|r| r["kind"] == "run") {
                break t;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the run never reached the event log"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let rows = serde_json::to_string(&events.rows).unwrap();
    assert!(rows.contains("${secret:TOKEN}"), "{rows}");
    assert_no_secret("the event log", &rows);
    // Every file the service keeps, and its log (the connector's own log
    // line and the host's denial among it).
    for f in files_under(&c.path("state")) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        assert_no_secret(&f.display().to_string(), &text);
    }
    let log = s.log();
    assert!(log.contains("my config is"), "{log}");
    assert_no_secret("the server's log", &log);
}

#[test]
fn idle_connections_do_not_starve_health() {
    let c = Case::new();
    let config = format!(
        "state = \"state\"\nheader_read_timeout = \"60s\"\nmax_connections = 100\n\n{TOKENS}"
    );
    // 400 idle connections against a process that may hold 256 files.
    let s = Server::start_toml(&c, &config, "127.0.0.1:0", &[], Some(256));
    let addr = s.url.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let started = Instant::now();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    // And the service goes on.
    assert_eq!(s.call("GET", "/health", None, None, None).status, 200);
}

#[test]
fn a_silent_client_is_cut_off_after_the_header_timeout() {
    let c = Case::new();
    let config = format!(
        "state = \"state\"\nheader_read_timeout = \"1s\"\nbody_idle_timeout = \"1s\"\n\
         [volumes]\nlanding = \"land\"\n\n{TOKENS}"
    );
    let s = Server::start_toml(&c, &config, "127.0.0.1:0", &[], None);
    let addr = s.url.trim_start_matches("http://").to_string();
    // Half a request line, then nothing: closed.
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /hea").unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // A body that stops coming: the upload fails, nothing is stored.
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(
        format!(
            "PUT /volumes/landing/slow.csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITER}\r\nContent-Length: 100\r\n\r\nid\n1\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(!c.path("land/slow.csv").exists());
}

/// A gzip file of `header` then `body_bytes` bytes of `fill` (no newline),
/// made by Python's zlib in the case's directory.
fn gzip_of(c: &Case, name: &str, header: &str, fill: &str, body_bytes: u64) -> Vec<u8> {
    c.python(&format!(
        "import zlib\n\
         z = zlib.compressobj(9, zlib.DEFLATED, 31)\n\
         out = open({name:?}, 'wb')\n\
         out.write(z.compress({header:?}.encode()))\n\
         chunk = ({fill:?} * (1 << 20))[: 1 << 20].encode()\n\
         for _ in range({} >> 20):\n    out.write(z.compress(chunk))\n\
         out.write(z.flush())\n",
        body_bytes
    ));
    std::fs::read(c.path(name)).unwrap()
}

/// The peak resident memory of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        >> 10
}

#[test]
fn concurrent_bomb_uploads_stay_under_the_memory_budget() {
    let c = Case::new();
    let config = format!(
        "state = \"state\"\nmax_upload_mib = 8\nmax_upload_decompressed_mib = 100000\n\
         connector_memory_budget_mib = 256\nconnector_slot_wait = \"5s\"\n\n{}",
        TOKENS.replace("tables = [\"uploaded\"]", "tables = [\"*\"]")
    );
    let s = Server::start_toml(&c, &config, "127.0.0.1:0", &[], None);
    // One endless line: ~1.5 GB of "a" in ~1.5 MiB of gzip.
    let bomb = gzip_of(&c, "bomb.csv.gz", "x\n", "a", 1500 << 20);
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let uploads: Vec<_> = (0..6)
            .map(|i| {
                let (s, bomb) = (&s, bomb.clone());
                scope.spawn(move || {
                    s.call(
                        "POST",
                        &format!("/tables/bomb{i}/upload?filename=bomb.csv.gz"),
                        Some(WRITER),
                        Some("text/csv"),
                        Some(bomb),
                    )
                    .status
                })
            })
            .collect();
        uploads.into_iter().map(|u| u.join().unwrap()).collect()
    });
    for st in &statuses {
        assert!([422, 503].contains(st), "{statuses:?}");
    }
    let peak = peak_rss_mib(s.pid());
    assert!(peak < 256 + 512, "peak RSS {peak} MiB");
    assert_eq!(s.call("GET", "/health", None, None, None).status, 200);
    for i in 0..6 {
        assert!(!c.path(&format!("warehouse/bomb{i}/_delta_log")).exists());
    }
}

#[test]
fn a_compressed_upload_expands_only_so_far() {
    let c = Case::new();
    let config = format!(
        "state = \"state\"\nmax_upload_decompressed_mib = 8\n\n{}",
        TOKENS.replace("tables = [\"uploaded\"]", "tables = [\"*\"]")
    );
    let s = Server::start_toml(&c, &config, "127.0.0.1:0", &[], None);
    // ~64 MiB of rows in a gzip of a few hundred KiB.
    let rows = gzip_of(&c, "rows.csv.gz", "id\n", "1\n", 64 << 20);
    let r = s.call(
        "POST",
        "/tables/expand/upload?filename=rows.csv.gz",
        Some(WRITER),
        Some("text/csv"),
        Some(rows),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("maxDecompressedBytes"),
        "{}",
        r.body
    );
    assert!(!c.path("warehouse/expand/_delta_log").exists());
}

#[test]
fn every_connector_slot_busy_answers_503_with_retry_after() {
    let c = Case::new();
    let config =
        format!("state = \"state\"\nconnector_slots = 1\nconnector_slot_wait = \"1s\"\n\n{TOKENS}");
    let s = Server::start_toml(&c, &config, "127.0.0.1:0", &[], None);
    // A connector that spins holds the only slot (until its call deadline).
    let info = s.upload_connector("sluice_misbehave");
    let id = info["id"].as_str().unwrap();
    s.define(
        "events",
        &format!("mode = \"append\"\ntable = \"spin\"\n[connector]\nid = \"{id}\"\nconfig = {{ do = \"loop\" }}\n"),
    );
    let r = s.call("POST", "/pipelines/events/runs", Some(WRITER), None, None);
    assert_eq!(r.status, 202, "{}", r.body);
    std::thread::sleep(Duration::from_millis(500));
    let r = s.call(
        "POST",
        "/tables/uploaded/upload?filename=a.csv",
        Some(WRITER),
        Some("text/csv"),
        Some(b"id\n1\n".to_vec()),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("slot"),
        "{}",
        r.body
    );
}

/// `sluice serve` with the usual tokens and `extra`, and its log.
fn server(c: &Case, extra: &str) -> Server {
    Server::start(c, extra)
}

#[test]
fn table_names_never_climb_out_of_the_warehouse_or_nest() {
    let c = Case::new();
    let s = Server::start_toml(
        &c,
        &format!(
            "state = \"state\"\n\n{}",
            TOKENS.replace("tables = [\"uploaded\"]", "tables = [\"*\"]")
        ),
        "127.0.0.1:0",
        &[],
        None,
    );
    let upload = |table: &str| {
        s.call(
            "POST",
            &format!("/tables/{table}/upload?filename=a.csv"),
            Some(WRITER),
            Some("text/csv"),
            Some(b"id\n1\n".to_vec()),
        )
    };
    for bad in ["x..y", ".hidden", "a.b.c", "..%2Fx", "x%00y", "%2e%2e"] {
        let r = upload(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let mut made: Vec<String> = std::fs::read_dir(c.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with("serve-") && n != "sluice.toml")
        .collect();
    made.sort();
    assert_eq!(made, ["state"], "created beside the warehouse: {made:?}");
    assert_eq!(upload("t1").status, 200);
    assert_eq!(upload("t1.nested").status, 200);
    assert_eq!(read_delta(&c.path("warehouse/t1")).rows.len(), 1);
    assert_eq!(read_delta(&c.path("warehouse/t1.db/nested")).rows.len(), 1);
    assert!(!c.path("warehouse/t1/nested").exists());
}

#[test]
fn error_bodies_show_no_server_path() {
    let c = Case::new();
    let s = server(&c, "");
    let root = c.dir.path().canonicalize().unwrap().display().to_string();
    let r = s.call(
        "POST",
        "/tables/uploaded/upload?filename=bad.csv",
        Some(WRITER),
        Some("text/csv"),
        Some(b"id,x\n1,2\n3,4,5\n".to_vec()),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let text = r.body.to_string();
    assert!(text.contains("bad.csv"), "{text}");
    assert!(!text.contains(&root), "{text}");
    let r = s.call(
        "POST",
        &format!("/tables/uploaded/upload?filename={}", "f".repeat(300)),
        Some(WRITER),
        Some("text/csv"),
        Some(b"id\n1\n".to_vec()),
    );
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn crashes_leave_neither_lost_runs_nor_staged_files() {
    let c = Case::new();
    // A staged upload a killed process left behind an hour ago.
    let stale = c.write("state/uploads/dead/x.csv", "id\n1\n");
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = c.write("state/uploads/live/y.csv", "id\n1\n");
    let wasm = std::fs::read(component("sluice_misbehave")).unwrap();
    let run = {
        let s = server(&c, "");
        assert!(!stale.exists(), "a stale staged upload was kept");
        assert!(fresh.exists(), "a fresh staged upload was swept");
        let r = s.call(
            "POST",
            "/connectors",
            Some(ADMIN),
            Some("application/wasm"),
            Some(wasm),
        );
        let id = r.body["id"].as_str().unwrap().to_string();
        s.define(
            "events",
            &format!("mode = \"append\"\ntable = \"spin\"\n[connector]\nid = \"{id}\"\nconfig = {{ do = \"loop\" }}\n"),
        );
        let r = s.call("POST", "/pipelines/events/runs", Some(WRITER), None, None);
        assert_eq!(r.status, 202, "{}", r.body);
        let run = r.body["id"].as_str().unwrap().to_string();
        std::thread::sleep(Duration::from_millis(500));
        let history = s.get("/pipelines/events/runs", WRITER);
        assert_eq!(history.body[0]["status"], "running", "{}", history.body);
        run
        // Dropping the server kills it (SIGKILL) mid-run.
    };
    let s = server(&c, "");
    let history = s.get("/pipelines/events/runs", WRITER);
    let record = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run.as_str())
        .unwrap_or_else(|| panic!("run {run} vanished: {}", history.body))
        .clone();
    assert_eq!(record["status"], "interrupted", "{record}");
    assert!(record["ended"].is_string(), "{record}");
}

#[test]
fn refusals_are_audited_and_schedules_and_metrics_checked() {
    let c = Case::new();
    let s = server(&c, "");
    // A webhook for a pipeline the writer is not granted: refused, audited.
    let r = s.call(
        "POST",
        "/pipelines/secret-ops/events",
        Some(WRITER),
        None,
        Some(b"{}".to_vec()),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        audit_actions(&s)
            .iter()
            .any(|(who, a, o)| who == "loader" && a == "pipeline.run" && o != "ok"),
        "{:?}",
        audit_actions(&s)
    );
    // Cron: five or six fields, never a year.
    let def = |schedule: &str| {
        format!(
            "mode = \"append\"\nsource = \"land/\"\nformat = \"csv\"\ntable = \"t\"\nschedule = \"{schedule}\"\n"
        )
    };
    let put = |name: &str, schedule: &str| {
        s.call(
            "PUT",
            &format!("/pipelines/{name}"),
            Some(ADMIN),
            None,
            Some(def(schedule).into()),
        )
    };
    assert_eq!(put("events", "0 0 12 * * * 2030").status, 400);
    assert_eq!(put("events", "0 0 12 * * *").status, 200);
    assert_eq!(put("secret-ops", "*/5 * * * *").status, 200);
    // Metrics name only what the token is granted.
    c.write("land/a.csv", "id\n1\n");
    assert_eq!(s.run_and_wait("secret-ops", ADMIN).status, 200);
    let admin = s.get("/metrics", ADMIN).body.to_string();
    assert!(admin.contains("secret-ops"), "{admin}");
    let writer = s.get("/metrics", WRITER);
    assert_eq!(writer.status, 200);
    let writer: &str = writer.body.as_str().unwrap();
    assert!(!writer.contains("secret-ops"), "{writer}");
    assert!(writer.contains("sluice_http_requests"), "{writer}");
}

#[test]
fn an_allow_list_may_not_name_the_unspecified_address() {
    let c = Case::new();
    c.write("fn.wasm", std::fs::read(component("sluice_edge")).unwrap());
    c.write(
        "sluice.toml",
        format!(
            "state = \"state\"\n[functions.f]\ncomponent = \"fn.wasm\"\nallowed_outbound_hosts = [\"http://0.0.0.0:8080\"]\n\n{TOKENS}"
        ),
    );
    let out = c.run_env(
        &[
            "serve",
            "--config",
            "sluice.toml",
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("T_ADMIN".into(), ADMIN.into()),
            ("T_WRITER".into(), WRITER.into()),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unspecified address"), "{err}");
}

/// A valid Arrow IPC stream (pyarrow) of an int8 column with a null, then
/// crafted: `width7` makes the Int 7 bits wide; `huge` and `negative` make a
/// length of the batch claim 2^40 or -5 (each candidate spot is tried until
/// pyarrow itself refuses the result, so the craft hit a real field).
fn crafted_ipc(c: &Case, which: &str) -> Vec<u8> {
    c.python(&format!(
        r#"
import pyarrow as pa, struct
t = pa.table({{'i': pa.array([1, None, 3], pa.int8())}})
sink = pa.BufferOutputStream()
with pa.ipc.new_stream(sink, t.schema) as w:
    w.write_table(t)
good = bytes(sink.getvalue().to_pybytes())
schema_end = 8 + struct.unpack('<I', good[4:8])[0]
which = {which:?}
if which == 'width7':
    old, new, size, start, end = 8, 7, 4, 8, schema_end
else:
    old, new, size, start, end = 3, (1 << 40) if which == 'huge' else -5, 8, schema_end, len(good)
fmt = '<i' if size == 4 else '<q'
for at in range(start, end - size + 1):
    if struct.unpack(fmt, good[at:at + size])[0] != old:
        continue
    b = bytearray(good)
    b[at:at + size] = struct.pack(fmt, new)
    try:
        pa.ipc.open_stream(bytes(b)).read_all().validate(full=True)
    except Exception:
        open('crafted.arrows', 'wb').write(b)
        break
else:
    raise SystemExit('no spot to craft')
"#
    ));
    std::fs::read(c.path("crafted.arrows")).unwrap()
}

#[test]
fn crafted_arrow_ipc_uploads_are_refused_and_audited() {
    let c = Case::new();
    let s = server(&c, "");
    for which in ["width7", "huge", "negative"] {
        let r = s.call(
            "POST",
            "/tables/uploaded/upload",
            Some(WRITER),
            Some("application/vnd.apache.arrow.stream"),
            Some(crafted_ipc(&c, which)),
        );
        assert_eq!(r.status, 422, "{which}: {}", r.body);
        assert!(
            error_of(&r.body).contains("Arrow IPC"),
            "{which}: {}",
            r.body
        );
    }
    assert_eq!(s.call("GET", "/health", None, None, None).status, 200);
    let refused = audit_actions(&s)
        .into_iter()
        .filter(|(who, a, o)| who == "loader" && a == "table.upload" && o != "ok")
        .count();
    assert_eq!(refused, 3, "{:?}", audit_actions(&s));
    assert!(!c.path("warehouse/uploaded/_delta_log").exists());
}

/// Reads a JSON body's `error`.
fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}
