//! The checkpoint's batch log on a real (local) object store.

use sluice_checkpoint::{BatchKind, Checkpoint, Commit, Error, SchemaLog, SourceFile};
use sluice_location::Location;

fn file(i: u64) -> SourceFile {
    SourceFile {
        location: format!("file:///in/{i:05}.csv"),
        size: i,
        last_modified_ms: 7,
        etag: None,
    }
}

fn commit(batch: u64, at: i64) -> Commit {
    Commit {
        version: 1,
        batch,
        committed_ms: at,
        table_version: Some(batch + 1),
        rows: 1,
        bytes: 1,
    }
}

#[tokio::test]
async fn plans_commits_and_a_restart_see_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let cp = Checkpoint::open(&loc, 1).await.unwrap();
    let mut state = cp.load().await.unwrap();
    assert_eq!(state.next_batch, 0);

    let plan = cp
        .plan(
            &mut state,
            BatchKind::Load,
            vec![file(1), file(2)],
            Some(0),
            10,
        )
        .await
        .unwrap();
    assert_eq!(plan.batch, 0);
    // Nothing more is planned while batch 0 is pending.
    assert!(
        cp.plan(&mut state, BatchKind::Load, vec![file(3)], None, 11)
            .await
            .is_err()
    );

    // A restart sees the pending batch, with the same plan.
    let again = Checkpoint::open(&loc, 2).await.unwrap();
    assert_eq!(again.id(), cp.id(), "the pipeline id is stable");
    let mut reloaded = again.load().await.unwrap();
    assert_eq!(reloaded.pending(), Some(&plan));

    again.commit(&mut reloaded, commit(0, 20)).await.unwrap();
    let state = again.load().await.unwrap();
    assert!(state.pending().is_none());
    assert_eq!(state.next_batch, 1);
    assert_eq!(state.files["file:///in/00001.csv"].committed_ms, Some(20));
    assert_eq!(state.files["file:///in/00002.csv"].discovered_ms, 10);
}

#[tokio::test]
async fn a_second_run_planning_the_same_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let a = Checkpoint::open(&loc, 0).await.unwrap();
    let b = Checkpoint::open(&loc, 0).await.unwrap();
    let (mut sa, mut sb) = (a.load().await.unwrap(), b.load().await.unwrap());
    a.plan(&mut sa, BatchKind::Load, vec![file(1)], None, 0)
        .await
        .unwrap();
    let err = b
        .plan(&mut sb, BatchKind::Load, vec![file(2)], None, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Busy { batch: 0, .. }), "{err}");
    assert!(err.to_string().contains("is in use"), "{err}");
}

#[tokio::test]
async fn compaction_keeps_every_file_and_drops_old_batch_records() {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let cp = Checkpoint::open(&loc, 0).await.unwrap();
    let mut state = cp.load().await.unwrap();
    for b in 0..250u64 {
        cp.plan(&mut state, BatchKind::Load, vec![file(b)], None, b as i64)
            .await
            .unwrap();
        cp.commit(&mut state, commit(b, 1000 + b as i64))
            .await
            .unwrap();
    }
    let offsets = std::fs::read_dir(dir.path().join("offsets"))
        .unwrap()
        .count();
    // Compacted after batch 199: plans from batch 99 on are kept.
    assert_eq!(offsets, 151, "plans kept after compaction");
    assert!(dir.path().join("state").exists());

    let state = cp.load().await.unwrap();
    assert_eq!(state.next_batch, 250);
    assert_eq!(state.files.len(), 250);
    assert_eq!(state.files["file:///in/00003.csv"].committed_ms, Some(1003));
    assert_eq!(state.last_commit().map(|c| c.batch), Some(249));
}

#[tokio::test]
async fn the_schema_history_is_ordered_and_kept() {
    use arrow_schema::{DataType, Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let log = SchemaLog::open(&loc).unwrap();
    assert!(log.latest().await.unwrap().is_none());
    let v0 = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
    let v1 = Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
    ]);
    log.append(v0, 0, "inferred".into(), 1).await.unwrap();
    let second = log
        .append(v1.clone(), 4, "added b".into(), 2)
        .await
        .unwrap();
    assert_eq!(second.id, 1);
    assert_eq!(log.latest().await.unwrap().unwrap().schema, v1);
    let all = log.all().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].batch, 4);
    assert!(dir.path().join("_schemas").is_dir());
}
