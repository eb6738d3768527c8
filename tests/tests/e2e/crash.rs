//! The exactly-once crash test: a stream killed with SIGKILL at random
//! points (while planning, writing, committing and recording batches) and
//! restarted each time ends with every record in the table exactly once,
//! and every data file the log references exists.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{Case, S3, read_table_at};

/// A small deterministic generator: the seed is printed so a failing run
/// can be replayed with `SLUICE_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("SLUICE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_1234_abcd_9876);
        println!("crash test seed {seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PHASES: [&str; 4] = ["plan", "write", "commit", "mark"];

/// How one run is stopped.
enum Kill {
    /// At the `n`th time the run reaches `phase`, `delay_ms` later.
    AtPhase {
        phase: &'static str,
        n: usize,
        delay_ms: u64,
    },
    /// At a random time after the start.
    After(Duration),
}

/// What happened to one run.
enum Ended {
    /// Killed; the last protocol step it had reached, and its output.
    Killed(Option<String>, String),
    /// It finished by itself.
    Finished(std::process::Output),
}

fn run_once(c: &Case, args: &[&str], env: &[(String, String)], kill: &Kill) -> Ended {
    let mut env = env.to_vec();
    env.push(("SLUICE_LOG".into(), "sluice::phase=debug".into()));
    let mut child: Child = c
        .command(args, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let mut stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut all);
        all
    });
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let started = Instant::now();
    let mut last_phase: Option<String> = None;
    let mut seen = 0;
    let deadline = started + Duration::from_secs(120);
    let mut kill_at: Option<Instant> = match kill {
        Kill::After(d) => Some(started + *d),
        Kill::AtPhase { .. } => None,
    };
    loop {
        if let Some(at) = kill_at
            && Instant::now() >= at
        {
            child.kill().unwrap();
            child.wait().unwrap();
            let _ = reader.join();
            return Ended::Killed(last_phase, out_reader.join().unwrap());
        }
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = reader.join().unwrap();
            let stdout = out_reader.join().unwrap();
            return Ended::Finished(std::process::Output {
                status,
                stdout: stdout.into_bytes(),
                stderr: stderr.into_bytes(),
            });
        }
        assert!(Instant::now() < deadline, "a run hung");
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(line) => {
                if let Some(p) = line
                    .split("phase=")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                {
                    last_phase = Some(p.to_string());
                    if let Kill::AtPhase { phase, n, delay_ms } = kill
                        && p == *phase
                        && kill_at.is_none()
                    {
                        seen += 1;
                        if seen == *n {
                            kill_at = Some(Instant::now() + Duration::from_millis(*delay_ms));
                        }
                    }
                }
            }
            Err(_) => continue,
        }
    }
}

/// The body of input file `k`: 5 records with unique ids.
/// File `k` of a crash test's landing: ids `5k..5k+5`.
pub(crate) fn part(k: usize) -> String {
    let mut body = String::from("id,payload\n");
    for r in 0..5 {
        body.push_str(&format!("{},row {r} of file {k}\n", k * 5 + r));
    }
    body
}

/// Runs the stream until at least `kills` SIGKILLs landed, then once more
/// to the end; returns the kills by the protocol step they interrupted.
/// A kill between a batch's table commit and its commit record shows in
/// the next run, which finds the batch already in the table: those count as
/// kills in `mark`, whatever step the log had shown last.
///
/// It kills at least `kills` times, and goes on (up to twice as many)
/// until every step was hit `each` times: how long a step lasts depends on
/// the machine, so a fixed count of kills may miss a short one.
pub(crate) fn crash(
    c: &Case,
    args: &[&str],
    env: &[(String, String)],
    kills: usize,
    each: usize,
) -> BTreeMap<String, usize> {
    let mut rng = Rng::new();
    let mut by_phase = BTreeMap::new();
    let mut killed = 0;
    let mut runs = 0;
    let every_step_hit = |by: &BTreeMap<String, usize>| {
        PHASES
            .iter()
            .all(|p| by.get(*p).copied().unwrap_or(0) >= each)
    };
    while killed < kills || (killed < 2 * kills && !every_step_hit(&by_phase)) {
        runs += 1;
        assert!(runs < 60 * kills, "too many runs without enough kills");
        let kill = if rng.below(4) == 0 {
            Kill::After(Duration::from_millis(30 + rng.below(400)))
        } else {
            let phase = PHASES[rng.below(4) as usize];
            // Planning and recording a commit are quick: kill as soon as
            // they start. Writing a small local file takes a few
            // milliseconds (its read no longer waits on another thread).
            let delay_ms = match phase {
                "mark" | "plan" => 0,
                "write" => rng.below(3),
                _ => rng.below(8),
            };
            Kill::AtPhase {
                phase,
                n: 1 + rng.below(2) as usize,
                delay_ms,
            }
        };
        let ended = run_once(c, args, env, &kill);
        let stdout = match &ended {
            Ended::Killed(_, out) => out.clone(),
            Ended::Finished(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        };
        let replays = stdout.matches("already in the table").count();
        if replays > 0 {
            *by_phase.entry("mark".into()).or_insert(0) += replays;
        }
        match ended {
            Ended::Killed(phase, _) => {
                killed += 1;
                let phase = phase.unwrap_or_else(|| "start".into());
                if phase != "mark" {
                    *by_phase.entry(phase).or_insert(0) += 1;
                }
            }
            Ended::Finished(out) => {
                assert!(
                    out.status.success(),
                    "a run failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    !String::from_utf8_lossy(&out.stdout).contains("stream: 0 batches"),
                    "every file was loaded after {killed} kills; the test needs more batches"
                );
            }
        }
    }
    println!("{killed} kills by the step they interrupted: {by_phase:?}");
    let out = c.command(args, env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    by_phase
}

fn assert_exactly_once(ids: &mut Vec<i64>, files: usize) {
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(total, ids.len(), "duplicated records");
    assert_eq!(
        *ids,
        (0..(files * 5) as i64).collect::<Vec<_>>(),
        "lost records"
    );
}

pub(crate) fn assert_every_step_was_hit(by_phase: &BTreeMap<String, usize>, each: usize) {
    for p in PHASES {
        assert!(
            by_phase.get(p).copied().unwrap_or(0) >= each,
            "fewer than {each} kills while in '{p}': {by_phase:?}"
        );
    }
}

#[test]
fn sigkill_anywhere_loses_and_duplicates_nothing_on_local_files() {
    let c = Case::new();
    let args = [
        "stream",
        "--source",
        "in",
        "--table",
        "./t",
        "--checkpoint",
        "cp",
        "-f",
        "csv",
        "--trigger",
        "available-now",
        "-o",
        "maxFilesPerTrigger=1",
        "--parallelism",
        "1",
    ];
    for k in 0..300 {
        c.write(&format!("in/part-{k:04}.csv"), part(k));
    }
    let by_phase = crash(&c, &args, &[], 60, 5);
    let t = crate::harness::read_delta(&c.path("t"));
    let mut ids = t.ids();
    assert_exactly_once(&mut ids, 300);
    // Every data file the log references exists (orphans of killed
    // attempts may exist too; they are never referenced).
    let missing = c.python(
        "from deltalake import DeltaTable\nimport os\n\
         print(sum(not os.path.exists(u.removeprefix('file://')) for u in DeltaTable('t').file_uris()))",
    );
    assert_eq!(missing.trim(), "0");
    // The checkpoint agrees: every file committed once.
    let states = c.ok(&["files", "cp", "--json"]);
    let states: serde_json::Value = serde_json::from_str(&states).unwrap();
    let states = states.as_array().unwrap();
    assert_eq!(states.len(), 300);
    assert!(states.iter().all(|s| s["status"] == "committed"));
    assert_every_step_was_hit(&by_phase, 5);
}

#[test]
fn sigkill_anywhere_loses_and_duplicates_nothing_on_s3() {
    let s3 = S3::start();
    let c = Case::new();
    s3.put(&c, "lake", &[]);
    let env = s3.env();
    let args = [
        "stream",
        "--source",
        "s3://lake/in/",
        "--table",
        "s3://lake/t",
        "--checkpoint",
        "s3://lake/cp",
        "-f",
        "csv",
        "--trigger",
        "available-now",
        "-o",
        "maxFilesPerTrigger=1",
        "--parallelism",
        "1",
    ];
    let files = 40;
    let objects: Vec<(String, String)> = (0..files)
        .map(|k| (format!("in/part-{k:04}.csv"), part(k)))
        .collect();
    let refs: Vec<(&str, &str)> = objects
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    s3.put(&c, "lake", &refs);
    let by_phase = crash(&c, &args, &env, 16, 1);
    let storage: Vec<(String, String)> = env
        .iter()
        .cloned()
        .chain([("AWS_S3_ALLOW_UNSAFE_RENAME".into(), "true".into())])
        .collect();
    let t = read_table_at("s3://lake/t", "delta", "deltalake", &storage);
    let mut ids = t.ids();
    assert_exactly_once(&mut ids, files);
    let missing = c.python(&format!(
        "import boto3\nfrom deltalake import DeltaTable\n\
         opts = {{'AWS_ENDPOINT_URL': {ep:?}, 'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_REGION': 'us-east-1', 'AWS_ALLOW_HTTP': 'true'}}\n\
         s3 = boto3.client('s3', endpoint_url={ep:?}, aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')\n\
         missing = 0\n\
         for u in DeltaTable('s3://lake/t', storage_options=opts).file_uris():\n\
         \x20   key = u.removeprefix('s3://lake/')\n\
         \x20   try:\n\
         \x20       s3.head_object(Bucket='lake', Key=key)\n\
         \x20   except Exception:\n\
         \x20       missing += 1\n\
         print(missing)\n",
        ep = s3.endpoint
    ));
    assert_eq!(missing.trim(), "0");
    assert_every_step_was_hit(&by_phase, 1);
}
