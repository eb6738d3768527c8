//! `sluice serve`, driven over loopback HTTP by a real client: uploads,
//! connector uploads, pipelines and their triggers, auth and the audit log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Case, component, read_delta};

/// The admin token `Server::start` configures (name `ops`).
pub const ADMIN: &str = "admin-token-for-tests-0001";
/// The writer token `Server::start` configures (name `loader`): it may run
/// pipeline `events`, upload to volume `landing` and to table `uploaded`.
pub const WRITER: &str = "writer-token-for-tests-0002";

/// A running `sluice serve`, stopped when dropped; what it logs goes to a
/// file ([`Server::log`]), printed if the test fails.
pub struct Server {
    child: Child,
    pub url: String,
    agent: ureq::Agent,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sluice serve's log ---\n{}", self.log());
        }
    }
}

/// The tokens `Server::start` configures, as TOML: an admin (`ops`) and a
/// writer (`loader`) granted pipeline `events`, volume `landing` and table
/// `uploaded`.
pub const TOKENS: &str = "[[tokens]]\nname = \"ops\"\ntoken_env = \"T_ADMIN\"\nrole = \"admin\"\n\n\
     [[tokens]]\nname = \"loader\"\ntoken_env = \"T_WRITER\"\nrole = \"writer\"\n\
     pipelines = [\"events\"]\nvolumes = [\"landing\"]\ntables = [\"uploaded\"]\n";

/// A response: status and JSON body (or text as a JSON string).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Server {
    /// Starts the server in `c` with `extra` appended to a configuration
    /// that has a `landing` volume, an admin and a writer token.
    pub fn start(c: &Case, extra: &str) -> Server {
        Server::start_with(c, extra, "127.0.0.1:0", &[])
    }

    /// [`Server::start`] listening on `listen`, with `env` set too.
    pub fn start_with(c: &Case, extra: &str, listen: &str, env: &[(&str, &str)]) -> Server {
        let config = format!(
            "state = \"state\"\nmax_upload_mib = 1\n{extra}\n[volumes]\nlanding = \"land\"\n\n{TOKENS}"
        );
        Server::start_toml(c, &config, listen, env, None)
    }

    /// Starts the server in `c` with the whole configuration `config`
    /// (which names its tokens), listening on `listen`, with `env` set and,
    /// if given, at most `max_files` open file descriptors.
    pub fn start_toml(
        c: &Case,
        config: &str,
        listen: &str,
        env: &[(&str, &str)],
        max_files: Option<u32>,
    ) -> Server {
        c.write("sluice.toml", config);
        let mut vars = vec![
            ("T_ADMIN".to_string(), ADMIN.to_string()),
            ("T_WRITER".to_string(), WRITER.to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let log = c.path(&format!("serve-{}.log", uuid_ish()));
        let args = ["serve", "--config", "sluice.toml", "--listen", listen];
        let mut cmd = match max_files {
            None => c.command(&args, &vars),
            Some(n) => {
                // The shell lowers the limit, then becomes sluice.
                let mut cmd = c.command(&[], &vars);
                let program = cmd.get_program().to_owned();
                let mut sh = std::process::Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(program)
                    .args(args)
                    .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
                    .env_remove("SLUICE_LOG")
                    .current_dir(c.dir.path());
                cmd = sh;
                cmd
            }
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "the server did not start: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Server {
            child,
            url,
            agent,
            log,
        }
    }

    /// What the server has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the server to exit, for at most
    /// `within`; whether it exited successfully.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "sluice serve did not exit within {within:?} of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a request with `token` (if any) and `body` (if any).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        let req = match token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        };
        let req = match content_type {
            Some(ct) => req.header("Content-Type", ct),
            None => req,
        };
        let mut res = self
            .agent
            .run(req.body(body.unwrap_or_default()).unwrap())
            .unwrap();
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    pub fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None, None)
    }

    /// Defines pipeline `name` from `def` (TOML or JSON) as the admin.
    pub fn define(&self, name: &str, def: &str) {
        let r = self.call(
            "PUT",
            &format!("/pipelines/{name}"),
            Some(ADMIN),
            None,
            Some(def.into()),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Uploads the test component `name` as the admin; its description.
    pub fn upload_connector(&self, name: &str) -> Value {
        self.upload_bytes(std::fs::read(component(name)).unwrap())
    }

    /// Uploads the component `wasm` as the admin; its description.
    pub fn upload_bytes(&self, wasm: Vec<u8>) -> Value {
        let r = self.call(
            "POST",
            "/connectors",
            Some(ADMIN),
            Some("application/wasm"),
            Some(wasm),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.body
    }

    /// Runs pipeline `name` with `token` and waits for the run to end.
    pub fn run_and_wait(&self, name: &str, token: &str) -> Reply {
        self.call(
            "POST",
            &format!("/pipelines/{name}/runs?wait=true"),
            Some(token),
            None,
            None,
        )
    }
}

/// A name no other server of this test process uses.
fn uuid_ish() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn audit_actions(s: &Server) -> Vec<(String, String, String)> {
    let r = s.get("/audit", ADMIN);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["principal"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn upload_a_file_preview_it_then_load_it_into_a_table() {
    let c = Case::new();
    let s = Server::start(&c, "");
    let csv = b"id,city,temp\n1,Oslo,-3.5\n2,Lima,19.25\n3,\"Cape Town, ZA\",22\n".to_vec();
    let preview = s.call(
        "POST",
        "/tables/uploaded/upload?preview=true&filename=temps.csv",
        Some(WRITER),
        Some("text/csv"),
        Some(csv.clone()),
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    let fields: Vec<(&str, &str)> = preview.body["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        &fields[..3],
        [("id", "Int64"), ("city", "Utf8"), ("temp", "Float64")]
    );
    assert_eq!(preview.body["rows"][2]["city"], "Cape Town, ZA");
    // A preview writes nothing.
    assert!(!c.path("warehouse/uploaded").exists());

    let load = s.call(
        "POST",
        "/tables/uploaded/upload?filename=temps.csv",
        Some(WRITER),
        Some("text/csv"),
        Some(csv),
    );
    assert_eq!(load.status, 200, "{}", load.body);
    assert_eq!(load.body["report"]["rows"], 3);
    let t = read_delta(&c.path("warehouse/uploaded"));
    let mut rows: Vec<(i64, String, f64)> = t
        .rows
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["city"].as_str().unwrap().to_string(),
                r["temp"].as_f64().unwrap(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    assert_eq!(
        rows,
        [
            (1, "Oslo".into(), -3.5),
            (2, "Lima".into(), 19.25),
            (3, "Cape Town, ZA".into(), 22.0)
        ]
    );
    // The staging copy is gone.
    let uploads = c.path("state/uploads");
    let left = std::fs::read_dir(&uploads)
        .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0);
    assert_eq!(left, 0);

    // A raw file into a volume, streamed to the volume's prefix.
    let put = s.call(
        "PUT",
        "/volumes/landing/2026/11/a.csv",
        Some(WRITER),
        None,
        Some(b"x\n1\n".to_vec()),
    );
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(
        std::fs::read(c.path("land/2026/11/a.csv")).unwrap(),
        b"x\n1\n"
    );
}

#[test]
fn bad_uploads_get_clear_errors_and_commit_nothing() {
    let c = Case::new();
    let s = Server::start(&c, "");
    let ok = s.call(
        "POST",
        "/tables/uploaded/upload",
        Some(WRITER),
        Some("text/csv"),
        Some(b"id\n1\n".to_vec()),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Malformed data: 422, naming the line; the table keeps version 0.
    let bad = s.call(
        "POST",
        "/tables/uploaded/upload?option.schemaHints=id%20bigint",
        Some(WRITER),
        Some("text/csv"),
        Some(b"id\n2\nnot-a-number\n".to_vec()),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.body["error"].as_str().unwrap().contains("line 3"),
        "{}",
        bad.body
    );
    assert_eq!(read_delta(&c.path("warehouse/uploaded")).rows.len(), 1);

    // Too large (the limit here is 1 MiB): 413, nothing stored.
    let big = vec![b'x'; 2 << 20];
    let r = s.call(
        "PUT",
        "/volumes/landing/big.bin",
        Some(WRITER),
        None,
        Some(big),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(!c.path("land/big.bin").exists());

    // No way to tell the format: 415.
    let r = s.call(
        "POST",
        "/tables/uploaded/upload",
        Some(WRITER),
        Some("image/png"),
        Some(b"id\n1\n".to_vec()),
    );
    assert_eq!(r.status, 415, "{}", r.body);

    // Escaping a volume: 400.
    let r = s.call(
        "PUT",
        "/volumes/landing/a/../../etc/x",
        Some(WRITER),
        None,
        Some(b"x".to_vec()),
    );
    assert!(
        r.status == 400 || r.status == 404,
        "{} {}",
        r.status,
        r.body
    );
    let r = s.call("GET", "/nowhere", Some(WRITER), None, None);
    assert_eq!(r.status, 404);
    assert!(r.body["error"].is_string());
}

#[test]
fn tokens_and_roles_are_enforced_and_audited() {
    let c = Case::new();
    let s = Server::start(&c, "");
    let r = s.call("POST", "/pipelines/events/runs", None, None, None);
    assert_eq!(r.status, 401);
    assert!(r.body["error"].as_str().unwrap().contains("Bearer"));
    let r = s.call(
        "POST",
        "/pipelines/events/runs",
        Some("wrong-token"),
        None,
        None,
    );
    assert_eq!(r.status, 401);
    // A writer may not define pipelines or upload connectors.
    let r = s.call(
        "PUT",
        "/pipelines/events",
        Some(WRITER),
        None,
        Some(b"table = \"t\"\nsource = \"land/\"\nformat = \"csv\"\n".to_vec()),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s.call(
        "POST",
        "/connectors",
        Some(WRITER),
        Some("application/wasm"),
        Some(b"\0asm\x0d\0\x01\0".to_vec()),
    );
    assert_eq!(r.status, 403);
    // Nor upload to a table or trigger a pipeline it is not granted.
    let r = s.call(
        "POST",
        "/tables/secret_table/upload",
        Some(WRITER),
        Some("text/csv"),
        Some(b"a\n1\n".to_vec()),
    );
    assert_eq!(r.status, 403);
    let r = s.call("POST", "/pipelines/other/runs", Some(WRITER), None, None);
    assert_eq!(r.status, 403);
    assert_eq!(s.get("/audit", WRITER).status, 403);
    // An unknown pipeline is a 404 for one who may run it.
    assert_eq!(
        s.call("POST", "/pipelines/nope/runs", Some(ADMIN), None, None)
            .status,
        404
    );
    let audit = audit_actions(&s);
    let refused: Vec<_> = audit
        .iter()
        .filter(|(who, _, outcome)| who == "loader" && outcome != "ok")
        .map(|(_, action, _)| action.as_str())
        .collect();
    assert!(refused.contains(&"pipeline.put"), "{audit:?}");
    assert!(refused.contains(&"connector.upload"), "{audit:?}");
    assert!(refused.contains(&"table.upload"), "{audit:?}");
    assert!(refused.contains(&"pipeline.run"), "{audit:?}");
    assert_eq!(s.call("GET", "/health", None, None, None).status, 200);
    assert_eq!(s.call("GET", "/metrics", None, None, None).status, 401);
}

#[test]
fn a_pipeline_runs_on_http_triggers_webhooks_and_its_schedule() {
    let c = Case::new();
    let s = Server::start(&c, "backstop_interval = \"0s\"");
    c.write("land/in/a.csv", "id\n1\n2\n");
    let def = "mode = \"stream\"\nsource = \"land/in/\"\nformat = \"csv\"\ntable = \"events\"\n";
    s.define("events", def);
    let r = s.run_and_wait("events", WRITER);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "succeeded");
    assert_eq!(r.body["report"]["rows"], 2);

    // A webhook with an event for a new object runs the pipeline on that
    // object alone (file notification mode: no listing); a file that came
    // without a notification waits for a listing (here, the schedule's).
    c.write("land/in/b.csv", "id\n3\n");
    c.write("land/in/quiet.csv", "id\n6\n");
    let key = c.path("land/in/b.csv");
    let event = json!({"specversion": "1.0", "type": "object.created", "source": "test", "id": "1",
                       "data": {"url": format!("file://{}", key.display())}});
    let r = s.call(
        "POST",
        "/pipelines/events/events",
        Some(WRITER),
        Some("application/json"),
        Some(event.to_string().into()),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let run = r.body["id"].as_str().unwrap().to_string();
    let done = wait_for(&s, &run);
    assert_eq!(done["report"]["rows"], 1, "{done}");
    // An event outside the source is ignored; garbage is refused.
    let other =
        json!({"Records": [{"s3": {"bucket": {"name": "elsewhere"}, "object": {"key": "x.csv"}}}]});
    let r = s.call(
        "POST",
        "/pipelines/events/events",
        Some(WRITER),
        None,
        Some(other.to_string().into()),
    );
    assert_eq!(r.body["ignored"], true, "{}", r.body);
    let r = s.call(
        "POST",
        "/pipelines/events/events",
        Some(WRITER),
        None,
        Some(b"{\"x\": 1}".to_vec()),
    );
    assert_eq!(r.status, 400);

    // A schedule (every second) picks up the next file by itself.
    let scheduled = format!("{def}schedule = \"* * * * * *\"\n");
    s.define("events", &scheduled);
    c.write("land/in/c.csv", "id\n4\n5\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = read_delta(&c.path("warehouse/events"));
        if t.rows.len() == 6 {
            assert_eq!(t.ids(), [1, 2, 3, 4, 5, 6]);
            break;
        }
        assert!(Instant::now() < deadline, "the schedule never loaded c.csv");
        std::thread::sleep(Duration::from_millis(300));
    }
    let runs = s.get("/pipelines/events/runs", WRITER);
    let triggers: Vec<&str> = runs
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert!(
        triggers.contains(&"http")
            && triggers.contains(&"webhook")
            && triggers.contains(&"schedule"),
        "{triggers:?}"
    );
    let metrics = s.call("GET", "/metrics", Some(WRITER), None, None);
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("sluice_rows_total{pipeline=\"events\"} 6"),
        "{text}"
    );
}

/// The service's `sluice_components_compiled` gauge.
fn components_compiled(s: &Server) -> u64 {
    let metrics = s.get("/metrics", ADMIN);
    let text = metrics.body.as_str().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sluice_components_compiled "))
        .unwrap_or_else(|| panic!("no sluice_components_compiled in {text}"))
        .parse()
        .unwrap()
}

/// A serverless instance starts with an empty disk: an uploaded connector
/// is compiled once, at upload, and every later instance of the service
/// loads the code it kept in the state store, checked by the engine; code
/// the engine refuses is compiled again and replaced.
#[test]
fn an_uploaded_connector_is_compiled_once_for_every_instance_of_the_service() {
    let c = Case::new();
    let instance = |cache: &str| {
        let cache = c.path(cache);
        Server::start_with(
            &c,
            "",
            "127.0.0.1:0",
            &[("SLUICE_CACHE_DIR", cache.to_str().unwrap())],
        )
    };
    let kept = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(c.path("state/connectors"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect()
    };
    let first = instance("cache-1");
    let id = first.upload_connector("sluice_sequence")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let def = format!(
        "mode = \"append\"\ntable = \"numbers\"\n[connector]\nid = \"{id}\"\nconfig = {{ count = 10, label = \"x\" }}\n"
    );
    first.define("numbers", &def);
    assert_eq!(
        first.run_and_wait("numbers", ADMIN).body["report"]["rows"],
        10
    );
    assert_eq!(
        components_compiled(&first),
        1,
        "compiled at upload, then from the cache"
    );
    let [code] = &kept()[..] else {
        panic!("one compiled form kept: {:?}", kept())
    };
    let code = code.clone();
    assert!(
        code.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(id.strip_prefix("sha256:").unwrap())
    );
    drop(first);

    // A new instance, its cache empty: the kept code, no compiling.
    let second = instance("cache-2");
    assert_eq!(
        second.run_and_wait("numbers", ADMIN).body["report"]["rows"],
        10
    );
    assert_eq!(components_compiled(&second), 0);
    let cached = c.path("cache-2").join(code.file_name().unwrap());
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        std::fs::read(&code).unwrap()
    );
    drop(second);

    // Kept code the engine refuses is compiled again, and replaced.
    std::fs::write(&code, b"\x7fELF not really").unwrap();
    let third = instance("cache-3");
    let r = third.run_and_wait("numbers", ADMIN);
    assert_eq!(r.body["report"]["rows"], 10, "{}", r.body);
    assert_eq!(components_compiled(&third), 1);
    assert!(
        third.log().contains("does not fit this engine"),
        "{}",
        third.log()
    );
    assert_eq!(
        std::fs::read(&code).unwrap(),
        std::fs::read(c.path("cache-3").join(code.file_name().unwrap())).unwrap()
    );
    drop(third);
    assert_eq!(read_delta(&c.path("warehouse/numbers")).rows.len(), 30);
}

fn wait_for(s: &Server, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get(&format!("/runs/{run}"), ADMIN);
        if r.body["ended"].is_string() {
            return r.body;
        }
        assert!(Instant::now() < deadline, "run {run} never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_uploaded_connector_is_checked_listed_and_run_with_its_secret() {
    let c = Case::new();
    c.write("secrets.env", "LABEL=from-the-secrets-file\n");
    let s = Server::start(&c, "secrets_file = \"secrets.env\"");
    // Not a component: refused, with what it is.
    let core = b"\0asm\x01\0\0\0".to_vec();
    let r = s.call(
        "POST",
        "/connectors",
        Some(ADMIN),
        Some("application/wasm"),
        Some(core),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("core WebAssembly module"),
        "{}",
        r.body
    );
    let r = s.call(
        "POST",
        "/connectors",
        Some(ADMIN),
        Some("application/wasm"),
        Some(b"\0asm\x0d\0\x01\0garbage".to_vec()),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.call(
        "POST",
        "/connectors",
        Some(ADMIN),
        Some("text/plain"),
        Some(b"hello".to_vec()),
    );
    assert_eq!(r.status, 415);

    let info = s.upload_connector("sluice_sequence");
    let id = info["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"));
    let imports: Vec<&str> = info["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        imports.iter().any(|i| i.starts_with("sluice:connector/")),
        "{imports:?}"
    );

    let list = s.get("/connectors", WRITER);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connector"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"files") && names.contains(&"sequence"),
        "{names:?}"
    );

    let def = format!(
        "mode = \"replace\"\ntable = \"numbers\"\n[connector]\nid = \"{id}\"\nconfig = {{ count = 25000, label = \"${{secret:LABEL}}\" }}\n[grants]\nsecrets = [\"LABEL\"]\n"
    );
    s.define("numbers", &def);
    let r = s.run_and_wait("numbers", ADMIN);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["report"]["rows"], 25000);
    let t = read_delta(&c.path("warehouse/numbers"));
    assert_eq!(t.rows.len(), 25000);
    assert!(t.rows.iter().all(|r| r["label"] == "from-the-secrets-file"));
    assert_eq!(t.ids(), (0..25000).collect::<Vec<_>>());

    // The secret's value is nowhere in the service's state or audit log.
    let mut stack = vec![c.path("state")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                assert!(
                    !text.contains("from-the-secrets-file"),
                    "{} holds the secret",
                    e.path().display()
                );
            }
        }
    }
    // A pipeline that uses a secret it does not list is refused.
    let sneaky = format!(
        "table = \"t2\"\n[connector]\nid = \"{id}\"\nconfig = {{ count = 1, label = \"${{secret:LABEL}}\" }}\n"
    );
    let r = s.call(
        "PUT",
        "/pipelines/sneaky",
        Some(ADMIN),
        None,
        Some(sneaky.into()),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let audit = audit_actions(&s);
    assert!(
        audit
            .iter()
            .any(|(_, a, o)| a == "connector.upload" && o == "ok")
    );
    assert!(
        audit
            .iter()
            .any(|(_, a, o)| a == "pipeline.put" && o == "ok")
    );
}
