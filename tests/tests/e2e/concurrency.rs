//! Two pipelines writing to one table at once: Delta's optimistic
//! concurrency serializes their commits, and none is lost.

use crate::harness::{Case, read_delta};

#[test]
fn two_streams_into_one_table_commit_every_batch() {
    let c = Case::new();
    for (dir, base) in [("in_a", 0), ("in_b", 100_000)] {
        for k in 0..25 {
            let id = base + k;
            c.write(
                &format!("{dir}/f{k:03}.csv"),
                format!("id,src\n{id},{dir}\n"),
            );
        }
    }
    let spawn = |dir: &str, cp: &str| {
        c.command(
            &[
                "stream",
                "--source",
                dir,
                "--table",
                "./t",
                "--checkpoint",
                cp,
                "-f",
                "csv",
                "--trigger",
                "available-now",
                "-o",
                "maxFilesPerTrigger=1",
                "--parallelism",
                "1",
            ],
            &[],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (spawn("in_a", "cp_a"), spawn("in_b", "cp_b"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("stream: 25 batches, 25 files, 25 rows"),
            "{stdout}"
        );
    }
    let t = read_delta(&c.path("t"));
    let ids = t.ids();
    let want: Vec<i64> = (0..25).chain(100_000..100_025).collect();
    assert_eq!(ids, want);
    // One version per batch, in one linear history: 50 commits, none lost.
    assert_eq!(t.version, Some(49));
    let logs = std::fs::read_dir(c.path("t/_delta_log"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".json")
        })
        .count();
    assert_eq!(logs, 50);
}
