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
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .env("SLUICE_CACHE_DIR", root().join("target/test-cache"));
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

    /// Runs a Python snippet with the interop venv, in the workspace.
    pub fn python(&self, code: &str) -> String {
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
    }
}

/// Reads a Delta table with Python `deltalake`.
pub fn read_delta(table: &Path) -> TableDump {
    read_table(table, "delta", "deltalake")
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = python().parent().unwrap().join("moto_server");
        assert!(
            server.exists(),
            "{} is missing (tests/setup installs it)",
            server.display()
        );
        // A watchdog runs the server and stops it once our end of its stdin
        // closes, which happens when this process ends, however it ends.
        let watchdog = "import subprocess, sys\n\
             p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
             sys.stdin.read()\n\
             p.kill()\n";
        let child = Command::new(python())
            .arg("-c")
            .arg(watchdog)
            .arg(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", server.display()));
        let s3 = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        s3
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
