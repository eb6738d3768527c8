use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, StringArray};
use arrow_schema::DataType;

use super::*;

fn spec(scd: Scd) -> KeyedApply {
    KeyedApply {
        keys: vec!["id".into()],
        sequence: "ts".into(),
        scd,
        delete_when: None,
        except: vec![],
        truncate_when: None,
        unchanged_column: None,
    }
}

/// Changes `(id, name, ts, delete)`.
fn changes(rows: &[(i64, &str, i64, bool)]) -> Changes {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap();
    Changes {
        rows: batch,
        deletes: BooleanArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>()),
        truncated: false,
        truncates: vec![],
        unchanged: HashMap::new(),
    }
}

/// A table and its tombstones, merged batch after batch.
struct Table {
    spec: KeyedApply,
    rows: RecordBatch,
    tombstones: RecordBatch,
}

impl Table {
    fn new(scd: Scd) -> Self {
        let spec = spec(scd);
        let schema = changes(&[]).rows.schema();
        Table {
            rows: RecordBatch::new_empty(spec.table_schema(&schema).unwrap()),
            tombstones: RecordBatch::new_empty(spec.tombstones(&schema).unwrap()),
            spec,
        }
    }

    fn apply(&mut self, batch: &[(i64, &str, i64, bool)]) -> MergeCounts {
        let merged = self
            .spec
            .merge(&self.rows, &changes(batch), &self.tombstones)
            .unwrap();
        self.rows = merged.rows;
        self.tombstones = merged.tombstones;
        merged.counts
    }

    /// Rows as `(id, name, ts)`, sorted.
    fn current(&self) -> Vec<(i64, String, i64)> {
        let r = &self.rows;
        let mut out: Vec<_> = (0..r.num_rows())
            .map(|i| {
                (
                    r.column(0).as_primitive::<Int64Type>().value(i),
                    r.column(1).as_string::<i32>().value(i).to_string(),
                    r.column(2).as_primitive::<Int64Type>().value(i),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// SCD 2 rows as `(id, name, start, end)`, sorted.
    fn history(&self) -> Vec<(i64, String, i64, Option<i64>)> {
        let r = &self.rows;
        let start = r
            .column_by_name(START_AT)
            .unwrap()
            .as_primitive::<Int64Type>();
        let end = r
            .column_by_name(END_AT)
            .unwrap()
            .as_primitive::<Int64Type>();
        let mut out: Vec<_> = (0..r.num_rows())
            .map(|i| {
                (
                    r.column(0).as_primitive::<Int64Type>().value(i),
                    r.column(1).as_string::<i32>().value(i).to_string(),
                    start.value(i),
                    end.is_valid(i).then(|| end.value(i)),
                )
            })
            .collect();
        out.sort();
        out
    }
}

fn rows(v: &[(i64, &str, i64)]) -> Vec<(i64, String, i64)> {
    v.iter().map(|(a, b, c)| (*a, b.to_string(), *c)).collect()
}

fn versions(v: &[(i64, &str, i64, Option<i64>)]) -> Vec<(i64, String, i64, Option<i64>)> {
    v.iter()
        .map(|(a, b, c, d)| (*a, b.to_string(), *c, *d))
        .collect()
}

#[test]
fn scd1_keeps_the_newest_row_per_key() {
    let mut t = Table::new(Scd::One);
    let c = t.apply(&[
        (1, "a", 1, false),
        (2, "b", 1, false),
        (1, "a2", 3, false),
        (1, "a1", 2, false),
    ]);
    assert_eq!(t.current(), rows(&[(1, "a2", 3), (2, "b", 1)]));
    assert_eq!((c.upserted, c.ignored), (2, 2));
    // An update, a delete, an insert; key 2 is kept as it was.
    let c = t.apply(&[(1, "a4", 4, false), (2, "", 5, true), (3, "c", 1, false)]);
    assert_eq!(t.current(), rows(&[(1, "a4", 4), (3, "c", 1)]));
    assert_eq!((c.upserted, c.deleted, c.ignored), (2, 1, 0));
}

#[test]
fn scd1_never_lets_a_late_change_overwrite_a_newer_one() {
    let mut t = Table::new(Scd::One);
    t.apply(&[(1, "new", 10, false), (2, "b", 1, false)]);
    t.apply(&[(2, "", 10, true)]);
    // Older than the stored row, and older than the delete.
    let c = t.apply(&[(1, "old", 5, false), (2, "resurrected", 7, false)]);
    assert_eq!(t.current(), rows(&[(1, "new", 10)]));
    assert_eq!(c.ignored, 2);
    // Newer than the delete: the key is back, and its tombstone gone.
    t.apply(&[(2, "back", 11, false)]);
    assert_eq!(t.current(), rows(&[(1, "new", 10), (2, "back", 11)]));
    assert_eq!(t.tombstones.num_rows(), 0);
}

#[test]
fn a_batch_applied_twice_changes_nothing_the_second_time() {
    let batch = [
        (1, "a", 1, false),
        (2, "b", 2, false),
        (1, "a2", 3, false),
        (2, "", 4, true),
    ];
    for scd in [Scd::One, Scd::Two] {
        let mut t = Table::new(scd);
        t.apply(&batch);
        let (rows, tombs) = (t.rows.clone(), t.tombstones.clone());
        let c = t.apply(&batch);
        assert_eq!(t.rows, rows, "{scd:?}");
        assert_eq!(t.tombstones, tombs, "{scd:?}");
        assert_eq!((c.upserted, c.deleted), (0, 0), "{scd:?}");
    }
}

#[test]
fn scd2_keeps_every_version_and_a_delete_ends_the_current_one() {
    let mut t = Table::new(Scd::Two);
    t.apply(&[(1, "a", 1, false), (2, "b", 1, false), (1, "a2", 3, false)]);
    assert_eq!(
        t.history(),
        versions(&[(1, "a", 1, Some(3)), (1, "a2", 3, None), (2, "b", 1, None)])
    );
    let c = t.apply(&[(2, "", 5, true), (1, "a3", 6, false)]);
    assert_eq!((c.upserted, c.deleted), (1, 1));
    assert_eq!(
        t.history(),
        versions(&[
            (1, "a", 1, Some(3)),
            (1, "a2", 3, Some(6)),
            (1, "a3", 6, None),
            (2, "b", 1, Some(5)),
        ])
    );
    // A key deleted comes back as a new version.
    t.apply(&[(2, "b2", 8, false)]);
    assert_eq!(t.history().last().unwrap(), &(2, "b2".to_string(), 8, None));
}

#[test]
fn scd2_puts_a_late_change_in_its_place_in_the_history() {
    let mut t = Table::new(Scd::Two);
    t.apply(&[(1, "a", 10, false), (1, "c", 30, false)]);
    t.apply(&[(1, "b", 20, false)]);
    assert_eq!(
        t.history(),
        versions(&[
            (1, "a", 10, Some(20)),
            (1, "b", 20, Some(30)),
            (1, "c", 30, None)
        ])
    );
    // A late delete ends the version it falls in; later ones stay.
    t.apply(&[(1, "", 25, true)]);
    assert_eq!(
        t.history(),
        versions(&[
            (1, "a", 10, Some(20)),
            (1, "b", 20, Some(25)),
            (1, "c", 30, None)
        ])
    );
    // Earlier than everything: the first version.
    t.apply(&[(1, "z", 5, false)]);
    assert_eq!(
        t.history()[0..2],
        versions(&[(1, "a", 10, Some(20)), (1, "b", 20, Some(25))])[..]
    );
    assert!(t.history().contains(&(1, "z".to_string(), 5, Some(10))));
}

#[test]
fn a_change_without_key_or_sequence_is_refused_by_row() {
    let mut c = changes(&[(1, "a", 1, false), (2, "b", 2, false)]);
    let ts = Int64Array::from(vec![Some(1), None]);
    c.rows = RecordBatch::try_new(
        c.rows.schema(),
        vec![
            c.rows.column(0).clone(),
            c.rows.column(1).clone(),
            Arc::new(ts),
        ],
    )
    .unwrap();
    let t = Table::new(Scd::One);
    let e = t
        .spec
        .merge(&t.rows, &c, &t.tombstones)
        .unwrap_err()
        .to_string();
    assert!(e.contains("change 2 has no value for 'ts'"), "{e}");

    let mut wrong = spec(Scd::One);
    wrong.keys = vec!["customer".into()];
    let e = wrong
        .table_schema(&c.rows.schema())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no column 'customer'") && e.contains("id, name, ts"),
        "{e}"
    );
}

#[test]
fn input_rows_become_changes_by_the_delete_condition_and_the_columns_kept() {
    let mut s = spec(Scd::One);
    s.delete_when = Some(DeleteWhen {
        column: "name".into(),
        values: vec!["DELETE".into(), "gone".into()],
    });
    s.except = vec!["name".into()];
    let input = changes(&[
        (1, "a", 1, false),
        (2, "DELETE", 2, false),
        (3, "gone", 3, false),
    ])
    .rows;
    let c = s.changes(&input).unwrap();
    assert_eq!(c.deletes, BooleanArray::from(vec![false, true, true]));
    assert_eq!(names(&c.rows.schema()), "id, ts");
    s.except = vec!["op".into()];
    let e = s.changes(&input).unwrap_err().to_string();
    assert!(
        e.contains("no column 'op'") && e.contains("id, name, ts"),
        "{e}"
    );
}

#[test]
fn the_rows_after_the_last_truncate_apply_to_an_empty_table() {
    let mut s = spec(Scd::One);
    s.truncate_when = Some(DeleteWhen {
        column: "name".into(),
        values: vec!["TRUNCATE".into()],
    });
    let input = changes(&[
        (1, "a", 1, false),
        (0, "TRUNCATE", 2, false),
        (2, "b", 2, false),
        (0, "TRUNCATE", 3, false),
        (3, "c", 3, false),
    ])
    .rows;
    let c = s.changes(&input).unwrap();
    assert!(c.truncated);
    assert_eq!(c.rows.num_rows(), 1);
    assert!(!s.changes(&input.slice(0, 1)).unwrap().truncated);
    s.scd = Scd::Two;
    let c = s.changes(&input).unwrap();
    assert_eq!(
        (c.truncated, c.truncates.clone(), c.rows.num_rows()),
        (false, vec![1, 3], 5)
    );
}

#[test]
fn an_scd2_truncate_ends_every_current_version_at_its_sequence() {
    let mut t = Table::new(Scd::Two);
    t.apply(&[(1, "a", 1, false), (2, "b", 1, false), (3, "c", 1, false)]);
    t.apply(&[(3, "", 2, true)]);
    t.spec.truncate_when = Some(DeleteWhen {
        column: "name".into(),
        values: vec!["TRUNCATE".into()],
    });
    // One transaction (one sequence): an insert, the truncate, a key back.
    let input = changes(&[
        (4, "d", 5, false),
        (0, "TRUNCATE", 5, false),
        (2, "b2", 5, false),
    ])
    .rows;
    let c = t.spec.changes(&input).unwrap();
    let c = t.spec.truncates_as_deletes(&t.rows, &c).unwrap();
    t.rows = t.spec.merge(&t.rows, &c, &t.tombstones).unwrap().rows;
    assert_eq!(
        t.history(),
        versions(&[
            (1, "a", 1, Some(5)),
            (2, "b", 1, Some(5)),
            (2, "b2", 5, None),
            (3, "c", 1, Some(2)),
        ])
    );
}

#[test]
fn a_value_a_change_did_not_carry_keeps_the_keys_value_before_it() {
    // SCD 1: from the stored row, or the key's change before it in the
    // batch; after a delete nothing says (null).
    let mut t = Table::new(Scd::One);
    t.apply(&[(1, "a", 1, false), (2, "b", 1, false)]);
    let mut c = changes(&[
        (1, "", 2, false),
        (3, "c", 2, false),
        (3, "", 3, false),
        (2, "", 2, true),
        (2, "", 4, false),
    ]);
    c.unchanged = HashMap::from([(0, vec![1]), (2, vec![1]), (4, vec![1])]);
    t.rows = t.spec.merge(&t.rows, &c, &t.tombstones).unwrap().rows;
    assert_eq!(t.current(), rows(&[(1, "a", 2), (2, "", 4), (3, "c", 3)]));
    let ids = t.rows.column(0).as_primitive::<Int64Type>();
    let two = (0..t.rows.num_rows()).find(|&i| ids.value(i) == 2).unwrap();
    assert!(t.rows.column(1).is_null(two));

    // SCD 2: from the version before it, carried on.
    let mut t = Table::new(Scd::Two);
    t.apply(&[(1, "a", 1, false)]);
    let mut c = changes(&[(1, "", 2, false), (1, "", 3, false)]);
    c.unchanged = HashMap::from([(0, vec![1]), (1, vec![1])]);
    t.rows = t.spec.merge(&t.rows, &c, &t.tombstones).unwrap().rows;
    assert_eq!(
        t.history(),
        versions(&[
            (1, "a", 1, Some(2)),
            (1, "a", 2, Some(3)),
            (1, "a", 3, None)
        ])
    );
    // One transaction (one sequence): an insert, then an update that did
    // not carry the inserted value; the update's version keeps it.
    let mut c = changes(&[(2, "b", 5, false), (2, "", 5, false)]);
    c.unchanged = HashMap::from([(1, vec![1])]);
    t.rows = t.spec.merge(&t.rows, &c, &t.tombstones).unwrap().rows;
    assert!(t.history().contains(&(2, "b".to_string(), 5, None)));
}

#[test]
fn the_unchanged_column_names_columns_of_the_table() {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    let input = changes(&[(1, "", 2, false), (2, "b", 2, false)]).rows;
    let unchanged = |names: &[Option<Vec<&str>>]| -> RecordBatch {
        let mut b = ListBuilder::new(StringBuilder::new());
        for n in names {
            match n {
                Some(n) => {
                    for x in n {
                        b.values().append_value(x);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        let mut fields = input.schema().fields().to_vec();
        let list = Arc::new(b.finish());
        fields.push(Arc::new(Field::new(
            "_unchanged",
            list.data_type().clone(),
            true,
        )));
        let mut columns = input.columns().to_vec();
        columns.push(list);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    };
    let mut s = spec(Scd::One);
    s.unchanged_column = Some("_unchanged".into());
    let c = s.changes(&unchanged(&[Some(vec!["name"]), None])).unwrap();
    assert_eq!(c.unchanged, HashMap::from([(0, vec![1])]));
    assert_eq!(c.rows.num_columns(), 3, "the column is not kept");
    let e = s
        .changes(&unchanged(&[Some(vec!["nope"]), Some(vec![])]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'nope'"), "{e}");
    let e = s
        .changes(&unchanged(&[None, Some(vec!["ts"])]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("change 2") && e.contains("sequence"), "{e}");
}

mod on_delta {
    use super::*;
    use crate::delta::{Outcome, SchemaChange, Txn, load};
    use crate::{Location, WriteOptions};
    use futures::TryStreamExt;

    fn txn(batch: i64) -> Txn {
        Txn {
            app_id: "sluice-test".into(),
            version: batch,
        }
    }

    async fn rows_of(location: &Location) -> RecordBatch {
        rows_as(location, Scd::One).await
    }

    async fn rows_as(location: &Location, scd: Scd) -> RecordBatch {
        let schema = spec(scd).table_schema(&changes(&[]).rows.schema()).unwrap();
        rows_in(location, schema).await
    }

    async fn rows_in(location: &Location, schema: SchemaRef) -> RecordBatch {
        let t = load(location).await.unwrap().unwrap();
        let files: Vec<_> = t
            .get_active_add_actions_by_predicate(None)
            .try_collect()
            .await
            .unwrap();
        let (store, root) = location.store().unwrap();
        let mut batches = Vec::new();
        for f in files {
            let path = crate::delta::under(&root, f.object_store_path().as_ref());
            batches.extend(
                delta::read_parquet(&store, path, f.size() as u64, &schema)
                    .await
                    .unwrap(),
            );
        }
        concat(&schema, &batches).unwrap()
    }

    /// [`apply`] of `changes` as batch `n`, with the default options and
    /// no new columns.
    async fn applied(
        location: &Location,
        spec: &KeyedApply,
        changes: &Changes,
        n: i64,
    ) -> Result<Applied> {
        let options = WriteOptions::default();
        apply(
            location,
            spec,
            changes,
            &txn(n),
            &options,
            SchemaChange::None,
        )
        .await
    }

    #[tokio::test]
    async fn a_batch_rewrites_only_the_files_its_keys_may_be_in_once() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let s = spec(Scd::One);
        let low: Vec<_> = (1..=100).map(|i| (i, "low", 1, false)).collect();
        let high: Vec<_> = (1000..=1100).map(|i| (i, "high", 1, false)).collect();
        let a = applied(&location, &s, &changes(&low), 1).await.unwrap();
        assert_eq!(
            (a.files_rewritten, a.files_added, a.counts.upserted),
            (0, 1, 100)
        );
        let b = applied(&location, &s, &changes(&high), 2).await.unwrap();
        assert_eq!(
            b.files_rewritten, 0,
            "no key of the batch is in the first file"
        );
        // An update and a delete among the low keys: only that file.
        let batch = [(50, "changed", 2, false), (7, "", 2, true)];
        let c = applied(&location, &s, &changes(&batch), 3).await.unwrap();
        assert!(matches!(c.outcome, Outcome::Committed { .. }));
        assert_eq!(
            (c.files_rewritten, c.counts.upserted, c.counts.deleted),
            (1, 1, 1)
        );
        // A batch without changes reads and rewrites nothing.
        let empty = applied(&location, &s, &changes(&[]), 4).await.unwrap();
        assert_eq!((empty.files_rewritten, empty.files_added), (0, 0));
        assert!(matches!(empty.outcome, Outcome::Committed { .. }));
        // Applied again: already in the table.
        let again = applied(&location, &s, &changes(&batch), 3).await.unwrap();
        assert!(matches!(again.outcome, Outcome::AlreadyCommitted { .. }));
        // A late insert of the deleted key (its tombstone is read back).
        let late = applied(&location, &s, &changes(&[(7, "late", 1, false)]), 5)
            .await
            .unwrap();
        assert_eq!(late.counts.ignored, 1);
        let t = Table {
            spec: s,
            rows: rows_of(&location).await,
            tombstones: RecordBatch::new_empty(Arc::new(Schema::empty())),
        };
        let current = t.current();
        assert_eq!(current.len(), 200);
        assert!(!current.iter().any(|r| r.0 == 7));
        assert!(current.contains(&(50, "changed".to_string(), 2)));
    }

    /// [`spec`] with the delete as an `op` column, which the table does not
    /// keep.
    fn with_op(scd: Scd) -> KeyedApply {
        KeyedApply {
            delete_when: Some(DeleteWhen {
                column: "op".into(),
                values: vec!["D".into()],
            }),
            except: vec!["op".into()],
            ..spec(scd)
        }
    }

    /// Input rows `(id, name, ts, delete)`, the delete as `op`.
    fn input(rows: &[(i64, &str, i64, bool)]) -> RecordBatch {
        let c = changes(rows).rows;
        let mut fields = c.schema().fields().to_vec();
        fields.push(Arc::new(Field::new("op", DataType::Utf8, true)));
        let mut columns = c.columns().to_vec();
        columns.push(Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| if r.3 { "D" } else { "U" }),
        )));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    /// A lane's input batches of rows `(id, name, ts, delete)`.
    type LaneInput<'a> = &'a [&'a [(i64, &'a str, i64, bool)]];

    /// Applies batch `n`, whose lanes each take their input batches.
    async fn through_lanes(
        location: &Location,
        spec: &KeyedApply,
        lanes: &[LaneInput<'_>],
        n: i64,
    ) -> Applied {
        let options = WriteOptions::default();
        let mut staged = Vec::new();
        for batches in lanes {
            let mut lane = KeyedLane::new(spec.clone(), location.clone(), options.clone());
            for b in *batches {
                lane.write(input(b)).await.unwrap();
            }
            staged.push(lane.finish().await.unwrap());
        }
        let schema = input(&[]).schema();
        apply_staged(
            location,
            spec,
            &schema,
            staged,
            &txn(n),
            &options,
            SchemaChange::None,
        )
        .await
        .unwrap()
    }

    fn table(scd: Scd, rows: RecordBatch) -> Table {
        Table {
            spec: spec(scd),
            rows,
            tombstones: RecordBatch::new_empty(Arc::new(Schema::empty())),
        }
    }

    #[tokio::test]
    async fn a_new_tables_inserts_go_ahead_to_data_files_and_commit_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let s = with_op(Scd::One);
        let first: Vec<_> = (1..=100).map(|i| (i, "a", 1, false)).collect();
        let second: Vec<_> = (101..=150).map(|i| (i, "b", 1, false)).collect();
        let other = [(200, "c", 1, false)];
        let a = through_lanes(&location, &s, &[&[&first, &second], &[&other]], 1).await;
        assert!(matches!(a.outcome, Outcome::Committed { .. }));
        assert_eq!(
            (a.files_rewritten, a.files_added, a.counts.upserted),
            (0, 2, 151)
        );
        assert_eq!(
            table(Scd::One, rows_of(&location).await).current().len(),
            151
        );
        // The table exists now: a lane keeps its changes for the merge.
        let changes = [(5, "x", 2, false), (7, "", 2, true), (5, "y", 3, false)];
        let b = through_lanes(&location, &s, &[&[&changes]], 2).await;
        assert_eq!((b.counts.upserted, b.counts.deleted), (1, 1));
        let current = table(Scd::One, rows_of(&location).await).current();
        assert_eq!(current.len(), 150);
        assert!(current.contains(&(5, "y".to_string(), 3)));
        assert!(!current.iter().any(|r| r.0 == 7));
    }

    #[tokio::test]
    async fn a_first_batch_of_more_than_new_keys_is_merged_with_what_went_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let s = with_op(Scd::One);
        let inserts: Vec<_> = (1..=10).map(|i| (i, "a", 1, false)).collect();
        // A second change to a key, and a delete: the lane merges from here.
        let changes = [(3, "changed", 2, false), (4, "", 2, true)];
        let later = [(11, "a", 1, false), (12, "a", 1, false)];
        // Another lane's insert of a key the first wrote ahead, newer.
        let again = [(1, "newer", 5, false)];
        let a = through_lanes(
            &location,
            &s,
            &[&[&inserts, &changes, &later], &[&again]],
            1,
        )
        .await;
        assert!(matches!(a.outcome, Outcome::Committed { .. }));
        let mut expected: Vec<_> = (1..=12)
            .filter(|&i| i != 4)
            .map(|i| (i, "a".to_string(), 1))
            .collect();
        expected[0] = (1, "newer".into(), 5);
        expected[2] = (3, "changed".into(), 2);
        assert_eq!(
            table(Scd::One, rows_of(&location).await).current(),
            expected
        );
        // Once is once: the batch again is already in the table.
        let again = through_lanes(&location, &s, &[&[&inserts]], 1).await;
        assert!(matches!(again.outcome, Outcome::AlreadyCommitted { .. }));
    }

    #[tokio::test]
    async fn a_lane_names_the_key_its_rows_lack() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let mut s = with_op(Scd::One);
        s.keys = vec!["customer".into()];
        let mut lane = KeyedLane::new(s, location, WriteOptions::default());
        let e = lane
            .write(input(&[(1, "a", 1, false)]))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column 'customer'"), "{e}");
    }

    #[tokio::test]
    async fn scd2_rows_that_go_ahead_are_open_versions() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let s = with_op(Scd::Two);
        let a = through_lanes(
            &location,
            &s,
            &[&[&[(1, "a", 1, false), (2, "b", 4, false)]]],
            1,
        )
        .await;
        assert_eq!((a.files_rewritten, a.counts.upserted), (0, 2));
        through_lanes(&location, &s, &[&[&[(1, "a2", 3, false)]]], 2).await;
        assert_eq!(
            table(Scd::Two, rows_as(&location, Scd::Two).await).history(),
            versions(&[(1, "a", 1, Some(3)), (1, "a2", 3, None), (2, "b", 4, None)])
        );
    }

    /// `changes` with a column `tier` more, "gold" in every row.
    fn wider(changes: Changes) -> Changes {
        let rows = &changes.rows;
        let mut fields = rows.schema().fields().to_vec();
        fields.push(Arc::new(Field::new("tier", DataType::Utf8, true)));
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(StringArray::from(vec!["gold"; rows.num_rows()])));
        Changes {
            rows: RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap(),
            ..changes
        }
    }

    #[tokio::test]
    async fn a_new_column_is_added_when_the_batch_may_add_one() {
        for scd in [Scd::One, Scd::Two] {
            let dir = tempfile::tempdir().unwrap();
            let location =
                Location::parse(dir.path().to_str().unwrap(), Default::default()).unwrap();
            let (s, options) = (spec(scd), WriteOptions::default());
            let first = changes(&[(1, "a", 1, false), (2, "b", 1, false), (3, "c", 1, false)]);
            apply(&location, &s, &first, &txn(1), &options, SchemaChange::None)
                .await
                .unwrap();
            let more = wider(changes(&[(1, "a2", 2, false)]));
            let e = apply(&location, &s, &more, &txn(2), &options, SchemaChange::None)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("tier") && e.contains("addNewColumns"), "{e}");
            apply(
                &location,
                &s,
                &more,
                &txn(2),
                &options,
                SchemaChange::AddColumns,
            )
            .await
            .unwrap();
            // The table has the column now (after SCD 2's own, in its log).
            let next = wider(changes(&[(2, "b2", 3, false)]));
            apply(&location, &s, &next, &txn(3), &options, SchemaChange::None)
                .await
                .unwrap();
            let schema = s.table_schema(&next.rows.schema()).unwrap();
            let rows = rows_in(&location, schema).await;
            let tiers: Vec<_> = {
                let id = rows.column(0).as_primitive::<Int64Type>();
                let tier = rows.column_by_name("tier").unwrap().as_string::<i32>();
                let mut v: Vec<_> = (0..rows.num_rows())
                    .map(|i| (id.value(i), tier.is_valid(i).then(|| tier.value(i))))
                    .collect();
                v.sort();
                v
            };
            let want: &[(i64, Option<&str>)] = match scd {
                Scd::One => &[(1, Some("gold")), (2, Some("gold")), (3, None)],
                Scd::Two => &[
                    (1, None),
                    (1, Some("gold")),
                    (2, None),
                    (2, Some("gold")),
                    (3, None),
                ],
            };
            assert_eq!(tiers, want, "{scd:?}");
        }
    }
}
