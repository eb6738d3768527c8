//! Exactly-once commits: the txn check, schema evolution, concurrent
//! writers, and settling a commit whose outcome was lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use sluice_sink::{Location, Outcome, SchemaChange, TableFormat, Target, Txn, WriteOptions};

fn schema(extra: bool) -> SchemaRef {
    let mut fields = vec![Field::new("id", DataType::Int64, true)];
    if extra {
        fields.push(Field::new("note", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

fn batch(schema: &SchemaRef, ids: std::ops::Range<i64>) -> RecordBatch {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(ids.clone()))];
    if schema.fields().len() > 1 {
        columns.push(Arc::new(StringArray::from_iter_values(
            ids.map(|i| format!("n{i}")),
        )));
    }
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

async fn commit(
    target: &Target,
    schema: &SchemaRef,
    ids: std::ops::Range<i64>,
    app: &str,
    n: i64,
    change: SchemaChange,
) -> sluice_sink::Result<Outcome> {
    let mut lane = target.lane(schema.clone())?;
    lane.write(batch(schema, ids)).await?;
    let written = lane.finish().await?;
    let txn = Txn {
        app_id: app.into(),
        version: n,
    };
    Ok(target
        .commit_once(schema, vec![written], &txn, change)
        .await?
        .outcome)
}

fn local(dir: &tempfile::TempDir) -> Target {
    let location = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
    Target::new(location, TableFormat::Delta, WriteOptions::default())
}

async fn rows(target: &Target) -> usize {
    let table = sluice_sink::delta::load(target.location())
        .await
        .unwrap()
        .unwrap();
    let snapshot = table.snapshot().unwrap();
    snapshot
        .log_data()
        .iter()
        .map(|f| f.num_records().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn a_batch_commits_once_whatever_the_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(&dir);
    let s = schema(false);
    let first = commit(&target, &s, 0..10, "app", 0, SchemaChange::None).await;
    assert_eq!(first.unwrap(), Outcome::Committed { version: 0 });
    // A retry of batch 0 (say after a crash before its commit was recorded)
    // writes files but commits nothing.
    let again = commit(&target, &s, 0..10, "app", 0, SchemaChange::None).await;
    assert_eq!(again.unwrap(), Outcome::AlreadyCommitted { version: None });
    let next = commit(&target, &s, 10..20, "app", 1, SchemaChange::None).await;
    assert_eq!(next.unwrap(), Outcome::Committed { version: 1 });
    // Another application's batch 0 is its own.
    let other = commit(&target, &s, 20..25, "other", 0, SchemaChange::None).await;
    assert_eq!(other.unwrap(), Outcome::Committed { version: 2 });
    assert_eq!(rows(&target).await, 25);
    let txn = sluice_sink::delta::txn_version(target.location(), "app").await;
    assert_eq!(txn.unwrap(), Some(1));
}

#[tokio::test]
async fn new_columns_are_added_in_the_batch_commit_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(&dir);
    commit(&target, &schema(false), 0..3, "app", 0, SchemaChange::None)
        .await
        .unwrap();
    let wide = schema(true);
    let refused = commit(&target, &wide, 3..6, "app", 1, SchemaChange::None).await;
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("column(s) note are not in the table"), "{err}");
    let added = commit(&target, &wide, 3..6, "app", 1, SchemaChange::AddColumns).await;
    assert_eq!(added.unwrap(), Outcome::Committed { version: 1 });
    let stored = target.schema().await.unwrap().unwrap();
    let names: Vec<&str> = stored.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "note"]);
    // A narrower batch (a nullable column missing) still appends.
    let narrow = commit(&target, &schema(false), 6..8, "app", 2, SchemaChange::None).await;
    assert_eq!(narrow.unwrap(), Outcome::Committed { version: 2 });
    assert_eq!(rows(&target).await, 8);
}

#[tokio::test]
async fn concurrent_pipelines_both_commit_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(&dir);
    commit(&target, &schema(false), 0..1, "seed", 0, SchemaChange::None)
        .await
        .unwrap();
    let run = |app: &'static str, base: i64| {
        let target = target.clone();
        tokio::spawn(async move {
            let s = schema(false);
            for n in 0..15 {
                let from = base + n * 10;
                let out = commit(&target, &s, from..from + 10, app, n, SchemaChange::None).await;
                assert!(
                    matches!(out, Ok(Outcome::Committed { .. })),
                    "{app} batch {n}: {out:?}"
                );
            }
        })
    };
    let (a, b) = (run("a", 1_000), run("b", 2_000));
    a.await.unwrap();
    b.await.unwrap();
    assert_eq!(rows(&target).await, 1 + 2 * 15 * 10);
    let table = sluice_sink::delta::load(target.location())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        table.version(),
        Some(30),
        "one version per batch, none lost"
    );
}

/// An in-memory store shared by every handle, whose next commit to the log
/// succeeds but reports a failure, as a timed-out PUT would.
#[derive(Debug)]
struct LosesAnOutcome {
    inner: InMemory,
    armed: AtomicBool,
}

impl std::fmt::Display for LosesAnOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LosesAnOutcome")
    }
}

#[async_trait::async_trait]
impl ObjectStore for LosesAnOutcome {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        let is_commit = location.as_ref().contains("_delta_log/")
            && location.as_ref().ends_with(".json")
            && !location.as_ref().contains("_last_checkpoint");
        if is_commit && self.armed.swap(false, Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "LosesAnOutcome",
                source: "the connection dropped after the request was sent".into(),
            });
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn lossy_store() -> &'static Arc<LosesAnOutcome> {
    static STORE: OnceLock<Arc<LosesAnOutcome>> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = Arc::new(LosesAnOutcome {
            inner: InMemory::new(),
            armed: AtomicBool::new(false),
        });
        struct Factory(Arc<LosesAnOutcome>);
        impl deltalake_core::logstore::ObjectStoreFactory for Factory {
            fn parse_url_opts(
                &self,
                url: &url::Url,
                _: &deltalake_core::logstore::StorageConfig,
            ) -> deltalake_core::DeltaResult<(deltalake_core::logstore::ObjectStoreRef, Path)>
            {
                Ok((self.0.clone(), Path::from_url_path(url.path())?))
            }
        }
        let url = url::Url::parse("memory://").unwrap();
        deltalake_core::logstore::object_store_factories()
            .insert(url, Arc::new(Factory(store.clone())));
        store
    })
}

#[tokio::test]
async fn a_commit_whose_outcome_was_lost_is_settled_from_the_log() {
    let store = lossy_store();
    let location = Location::parse("memory:///lost/t", Default::default()).unwrap();
    let target = Target::new(location, TableFormat::Delta, WriteOptions::default());
    let s = schema(false);
    commit(&target, &s, 0..5, "app", 0, SchemaChange::None)
        .await
        .unwrap();
    // The log entry of batch 1 lands, but the writer hears an error: it
    // must find its own commit in the log, not commit again or fail.
    store.armed.store(true, Ordering::SeqCst);
    let settled = commit(&target, &s, 5..10, "app", 1, SchemaChange::None).await;
    assert_eq!(settled.unwrap(), Outcome::Committed { version: 1 });
    assert!(!store.armed.load(Ordering::SeqCst), "the fault fired");
    let retried = commit(&target, &s, 5..10, "app", 1, SchemaChange::None).await;
    assert_eq!(
        retried.unwrap(),
        Outcome::AlreadyCommitted { version: None }
    );
    assert_eq!(rows(&target).await, 10);
}

#[tokio::test]
async fn two_pipelines_creating_the_table_at_once_both_commit_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let target = local(&dir);
        let (a, b) = (target.clone(), target.clone());
        let s = schema(false);
        let (s1, s2) = (s.clone(), s.clone());
        let first =
            tokio::spawn(async move { commit(&a, &s1, 0..5, "a", 0, SchemaChange::None).await });
        let second =
            tokio::spawn(async move { commit(&b, &s2, 5..10, "b", 0, SchemaChange::None).await });
        let mut versions = vec![
            first.await.unwrap().unwrap(),
            second.await.unwrap().unwrap(),
        ];
        versions.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            versions,
            [
                Outcome::Committed { version: 0 },
                Outcome::Committed { version: 1 }
            ]
        );
        assert_eq!(rows(&target).await, 10);
        // Version 1 appended; it did not create the table a second time.
        let log = std::fs::read_to_string(dir.path().join("_delta_log/00000000000000000001.json"))
            .unwrap();
        assert!(!log.contains("\"metaData\""), "{log}");
    }
}
