//! The built-in PostgreSQL connector: each table a stream, which starts
//! with a snapshot of the table and goes on with its changes by logical
//! replication (`pgoutput`), over connections the host opens to the server
//! the pipeline grants, speaking the protocol itself (`postgres-protocol`;
//! no C client).
//!
//! A stream's batches are plans the host checkpoints before they are read
//! (`planner`). The first makes the stream's replication slot with an
//! exported snapshot and copies the table under it, so the copy and the
//! change stream meet exactly; each later one reads the transactions whose
//! commit record starts in `[from, until)` from the slot, which the
//! connector advances only when the host says the batch is committed: a
//! batch redone after a crash reads the same transactions again.
//!
//! A copy comes in `COPY`'s binary format (values of types whose binary
//! form is not simple are selected as text); changes come as pgoutput's
//! text. Either way one parser per type makes the column types of
//! [`values::arrow_type`].

/// The exports of `sluice:connector/planned-connector@0.2.0`; imports and
/// types are the SDK's.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sluice:connector/split-connector@0.3.0",
        with: {
            "sluice:connector/types@0.1.0": sluice_connector_sdk::bindings::sluice::connector0_1_0::types,
            "sluice:connector/host@0.1.0": sluice_connector_sdk::bindings::sluice::connector0_1_0::host,
            "sluice:connector/network@0.2.0": sluice_connector_sdk::bindings::sluice::connector0_2_0::network,
            "wasi:io/error@0.2.12": sluice_connector_sdk::bindings::wasi::io::error,
            "wasi:io/poll@0.2.12": sluice_connector_sdk::bindings::wasi::io::poll,
            "wasi:io/streams@0.2.12": sluice_connector_sdk::bindings::wasi::io::streams,
        },
    });
}

mod catalog;
mod options;
mod pgoutput;
mod rows;
mod values;
mod wire;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use postgres_protocol::escape::{escape_identifier, escape_literal};
use serde::{Deserialize, Serialize};
use sluice_connector_sdk::{Batch, ConnectorSpec, Error, Level, StreamInfo, SyncMode, host, ipc};

use crate::bindings::exports::sluice::connector0_1_0::source::{Guest, GuestReader, Reader};
use crate::bindings::exports::sluice::connector0_2_0::planner::Guest as Planner;
use crate::bindings::exports::sluice::connector0_3_0::splitter::Guest as Splitter;
use crate::catalog::Table;
use crate::options::Options;
use crate::pgoutput::{Frame, Logical, Value, lsn_text, parse_lsn};
use crate::rows::{ChangeType, Commit, Rows};
use crate::wire::{Conn, Purpose};

/// A batch of a stream, written to the checkpoint by the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Plan {
    /// The stream's first batch: make its slot, and copy the table as of
    /// the slot's start unless `copy` is false.
    Snapshot { copy: bool },
    /// The transactions whose commit record starts at or after `from` and
    /// before `until` (WAL positions).
    Changes { from: u64, until: u64 },
    /// A part of a first batch's copy ([`Splitter::split`]): the table's
    /// rows in pages `from..until` (to the end when none) under the
    /// exported `snapshot` of the slot that starts at `lsn`, as of `micros`.
    Part {
        lsn: u64,
        micros: Option<i64>,
        snapshot: String,
        from: u32,
        until: Option<u32>,
    },
}

struct Postgres;

fn parse_plan(text: &str) -> Result<Plan, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::Config(format!("the state is not a plan of this connector: {e}")))
}

fn json<T: Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Other(e.to_string()))
}

/// The schema the host keeps for the stream (the config's `schema`), or
/// else the table's now.
fn stream_schema(config: &str, table: &Table) -> Result<SchemaRef, Error> {
    let value: serde_json::Value = serde_json::from_str(config)
        .map_err(|e| Error::Config(format!("the config is not JSON: {e}")))?;
    match value.get("schema") {
        Some(s) if !s.is_null() => {
            let schema: Schema = match s {
                serde_json::Value::String(text) => serde_json::from_str(text),
                other => serde_json::from_value(other.clone()),
            }
            .map_err(|e| Error::Config(format!("the config's schema: {e}")))?;
            Ok(Arc::new(schema))
        }
        _ => Ok(table.schema()),
    }
}

fn data(e: String) -> Error {
    Error::Data(e)
}

impl Guest for Postgres {
    type Reader = PostgresReader;

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            name: "postgres".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "PostgreSQL tables: a snapshot, then every change by logical replication, exactly once".into(),
            config_schema: CONFIG_SCHEMA.into(),
            modes: vec![SyncMode::FullRefresh, SyncMode::Streaming],
        }
    }

    fn check(config: String) -> Result<(), Error> {
        let options = Options::parse(&config)?;
        let mut conn = Conn::open(&options, Purpose::Query)?;
        catalog::check(&mut conn, &options)
    }

    fn discover(config: String) -> Result<Vec<StreamInfo>, Error> {
        let options = Options::parse(&config)?;
        let mut conn = Conn::open(&options, Purpose::Query)?;
        let mut out = Vec::new();
        for name in catalog::tables(&mut conn, &options)? {
            let table = catalog::table(&mut conn, &name)?;
            out.push(StreamInfo {
                arrow_schema: ipc::encode_schema(&table.schema())?,
                cursor_fields: vec![catalog::COMMIT_LSN.into(), catalog::CHANGE_SEQ.into()],
                primary_key: table.identity(),
                name: table.name,
            });
        }
        Ok(out)
    }

    fn read(config: String, stream_name: String, state: Option<String>) -> Result<Reader, Error> {
        let options = Options::parse(&config)?;
        let mut conn = Conn::open(&options, Purpose::Query)?;
        let table = catalog::table(&mut conn, &stream_name)?;
        let rows =
            Rows::new(&table.name, stream_schema(&config, &table)?).map_err(Error::Config)?;
        let reading = match state.as_deref().map(parse_plan).transpose()? {
            // A batch load: the table as it is now.
            None => {
                conn.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
                let (lsn, micros) = snapshot_position(&mut conn)?;
                Copying::start(conn, &table, rows, Commit { lsn, micros }, &options, None)?
            }
            Some(Plan::Snapshot { copy }) => snapshot(&options, conn, &table, rows, copy)?,
            Some(Plan::Part {
                lsn,
                micros,
                snapshot,
                from,
                until,
            }) => {
                import(&mut conn, &snapshot)?;
                let pages = Some((from, until));
                Copying::start(conn, &table, rows, Commit { lsn, micros }, &options, pages)?
            }
            Some(Plan::Changes { from, until }) => Reading::Changes(Box::new(Streaming::start(
                &options, &table, rows, from, until,
            )?)),
        };
        Ok(Reader::new(PostgresReader {
            state: RefCell::new(reading),
        }))
    }
}

/// The WAL position and time a transaction's snapshot reads as of.
fn snapshot_position(conn: &mut Conn) -> Result<(u64, Option<i64>), Error> {
    let row = conn
        .query(
            "SELECT pg_current_wal_lsn()::text, (extract(epoch FROM now()) * 1000000)::int8::text",
        )?
        .pop()
        .unwrap_or_default();
    let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let lsn = parse_lsn(&text(0)).ok_or_else(|| Error::Io("no WAL position".into()))?;
    Ok((lsn, text(1).parse().ok()))
}

/// The stream's first batch: its publication (made if missing and
/// allowed), its slot (made afresh: a slot of this stream left by a first
/// batch that did not commit is dropped), and the table copied under the
/// slot's exported snapshot.
fn snapshot(
    options: &Options,
    mut conn: Conn,
    table: &Table,
    rows: Rows,
    copy: bool,
) -> Result<Reading, Error> {
    let Some(slot) = make_slot(options, &mut conn, table, copy)? else {
        return Ok(Reading::Done);
    };
    import(&mut conn, &slot.snapshot)?;
    let (_, micros) = snapshot_position(&mut conn)?;
    // The snapshot is imported: the connection that exported it may go.
    drop(slot.replication);
    let commit = Commit {
        lsn: slot.lsn,
        micros,
    };
    Copying::start(conn, table, rows, commit, options, None)
}

/// A stream's new slot, and the snapshot it exported, which lasts as long
/// as the connection that made it.
struct Slot {
    replication: Conn,
    lsn: u64,
    snapshot: String,
}

/// Makes the stream's publication if missing (and allowed) and its slot
/// afresh (a slot of this stream left by a first batch that did not commit
/// is dropped), exporting its snapshot when `copy`; none when not.
fn make_slot(
    options: &Options,
    conn: &mut Conn,
    table: &Table,
    copy: bool,
) -> Result<Option<Slot>, Error> {
    ensure_publication(conn, options, table)?;
    let slot = options.slot(&table.name);
    match catalog::slot_state(conn, &slot)? {
        Some(Some(pid)) => return Err(catalog::in_use(&slot, &pid)),
        Some(None) => {
            conn.query(&format!(
                "SELECT pg_drop_replication_slot({})",
                escape_literal(&slot)
            ))?;
        }
        None => {}
    }
    let mut replication = Conn::open(options, Purpose::Replication)?;
    let made = replication
        .query(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {}",
            escape_identifier(&slot),
            if copy {
                "EXPORT_SNAPSHOT"
            } else {
                "NOEXPORT_SNAPSHOT"
            }
        ))?
        .pop()
        .unwrap_or_default();
    let field = |i: usize| made.get(i).cloned().flatten().unwrap_or_default();
    let lsn = parse_lsn(&field(1))
        .ok_or_else(|| Error::Io(format!("slot '{slot}' was made without a position")))?;
    sluice_connector_sdk::log(
        Level::Info,
        &format!(
            "{}: replication slot '{slot}' starts at {}",
            table.name,
            lsn_text(lsn)
        ),
    );
    Ok(copy.then(|| Slot {
        replication,
        lsn,
        snapshot: field(2),
    }))
}

/// Starts a read-only transaction on `conn` under the exported `snapshot`.
fn import(conn: &mut Conn, snapshot: &str) -> Result<(), Error> {
    conn.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    conn.query(&format!(
        "SET TRANSACTION SNAPSHOT {}",
        escape_literal(snapshot)
    ))?;
    Ok(())
}

/// Makes the stream's publication when it is missing and the config
/// allows it.
fn ensure_publication(conn: &mut Conn, options: &Options, table: &Table) -> Result<(), Error> {
    let name = options.publication(&table.name);
    let exists = conn.query(&format!(
        "SELECT 1 FROM pg_publication WHERE pubname = {}",
        escape_literal(&name)
    ))?;
    if !exists.is_empty() {
        return Ok(());
    }
    if !options.create_publication {
        return Err(Error::Config(format!(
            "publication '{name}' does not exist and createPublication is false: run CREATE PUBLICATION {} FOR TABLE {}",
            escape_identifier(&name),
            table.quoted
        )));
    }
    conn.query(&format!(
        "CREATE PUBLICATION {} FOR TABLE {}",
        escape_identifier(&name),
        table.quoted
    ))
    .map_err(|e| match e {
        Error::Auth(m) => Error::Auth(format!(
            "{m}; making publication '{name}' needs the table's owner: have one run CREATE PUBLICATION {} FOR TABLE {}",
            escape_identifier(&name),
            table.quoted
        )),
        other => other,
    })?;
    Ok(())
}

thread_local! {
    /// The replication connections whose exported snapshots the parts of
    /// the batches this instance split read under: kept for the instance's
    /// life (the host keeps it until the parts' readers are open).
    static HELD: RefCell<Vec<Conn>> = const { RefCell::new(Vec::new()) };
}

impl Splitter for Postgres {
    /// A first batch's copy of a table of at least two parts' bytes, in
    /// ranges of its pages: its slot is made here, and its exported
    /// snapshot held for the parts. Any other batch is one part.
    fn split(
        config: String,
        stream_name: String,
        plan: String,
        parts: u32,
    ) -> Result<Vec<String>, Error> {
        let options = Options::parse(&config)?;
        if parts < 2 || !matches!(parse_plan(&plan)?, Plan::Snapshot { copy: true }) {
            return Ok(vec![plan]);
        }
        let mut conn = Conn::open(&options, Purpose::Query)?;
        let table = catalog::table(&mut conn, &stream_name)?;
        let size = conn
            .query(&format!(
                "SELECT pg_relation_size({}::regclass)::text, current_setting('block_size')",
                escape_literal(&table.quoted)
            ))?
            .pop()
            .unwrap_or_default();
        let number = |i: usize| {
            size.get(i)
                .cloned()
                .flatten()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| Error::Io(format!("no size of table {}", table.name)))
        };
        let (bytes, block) = (number(0)?, number(1)?.max(1));
        let count = (bytes / options.snapshot_part_bytes).min(parts as u64) as u32;
        if count < 2 {
            return Ok(vec![plan]);
        }
        let slot = make_slot(&options, &mut conn, &table, true)?
            .ok_or_else(|| Error::Other("a slot made to copy exported no snapshot".into()))?;
        import(&mut conn, &slot.snapshot)?;
        let (_, micros) = snapshot_position(&mut conn)?;
        // Rows the snapshot sees are in the pages there are now; the last
        // part reads to the end all the same.
        let pages = u32::try_from(bytes / block).unwrap_or(u32::MAX);
        let per = pages.div_ceil(count);
        let split = (0..count)
            .map(|i| {
                json(&Plan::Part {
                    lsn: slot.lsn,
                    micros,
                    snapshot: slot.snapshot.clone(),
                    from: i * per,
                    until: (i + 1 < count).then(|| (i + 1) * per),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        sluice_connector_sdk::log(
            Level::Info,
            &format!(
                "{}: copying {pages} pages in {count} parts at once",
                table.name
            ),
        );
        HELD.with(|held| held.borrow_mut().push(slot.replication));
        Ok(split)
    }
}

impl Planner for Postgres {
    fn latest(config: String, _stream_name: String) -> Result<String, Error> {
        let options = Options::parse(&config)?;
        let mut conn = Conn::open(&options, Purpose::Query)?;
        let lsn = catalog::one(&mut conn, "SELECT pg_current_wal_flush_lsn()::text")?;
        json(&parse_lsn(&lsn).ok_or_else(|| Error::Io(format!("a WAL position '{lsn}'")))?)
    }

    fn plan(
        config: String,
        stream_name: String,
        after: Option<String>,
        until: Option<String>,
    ) -> Result<Option<String>, Error> {
        let options = Options::parse(&config)?;
        let Some(after) = after.as_deref().map(parse_plan).transpose()? else {
            return Ok(Some(json(&Plan::Snapshot {
                copy: options.snapshot,
            })?));
        };
        let bound: Option<u64> = until
            .map(|u| serde_json::from_str(&u))
            .transpose()
            .map_err(|e| Error::Config(format!("the end position is not this connector's: {e}")))?;
        let mut conn = Conn::open(&options, Purpose::Query)?;
        let slot = options.slot(&stream_name);
        let row = conn
            .query(&format!(
                "SELECT confirmed_flush_lsn::text, pg_current_wal_flush_lsn()::text FROM pg_replication_slots WHERE slot_name = {}",
                escape_literal(&slot)
            ))?
            .pop()
            .ok_or_else(|| {
                Error::Data(format!(
                    "the replication slot '{slot}' of stream {stream_name} is gone (dropped by hand, or invalidated by max_slot_wal_keep_size), so its changes since the last batch are lost; to start the stream over with a new snapshot, remove the table and its checkpoint"
                ))
            })?;
        let position = |i: usize| {
            row.get(i)
                .cloned()
                .flatten()
                .and_then(|t| parse_lsn(&t))
                .ok_or_else(|| Error::Io(format!("slot '{slot}' has no position")))
        };
        let (confirmed, flushed) = (position(0)?, position(1)?);
        // The host's gauge of how far the source is ahead.
        host::count("source-lag-bytes", flushed.saturating_sub(confirmed));
        let from = match after {
            Plan::Snapshot { .. } | Plan::Part { .. } => confirmed,
            Plan::Changes { until, .. } => until,
        };
        let end = bound.map_or(flushed, |b| b.min(flushed));
        if end <= from {
            return Ok(None);
        }
        // What the slot holds for this table up to `end`, decoded by the
        // server as far as the first commit after maxChangesPerBatch
        // messages: nothing (no batch, and no empty table version), all of
        // it, or a batch that ends just after that commit's start (the
        // rule a read and the slot's start both follow).
        let peek = conn
            .query(&format!(
                "SELECT count(*)::text, max(lsn)::text FROM pg_logical_slot_peek_binary_changes({}, {}, {}, 'proto_version', '1', 'publication_names', {})",
                escape_literal(&slot),
                escape_literal(&lsn_text(end)),
                options.max_changes_per_batch,
                escape_literal(&options.publication(&stream_name))
            ))?
            .pop()
            .unwrap_or_default();
        let messages: u64 = peek
            .first()
            .cloned()
            .flatten()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if messages == 0 {
            // Nothing of this table up to `end`: the slot moves past the
            // other tables' WAL, which it would otherwise keep on disk.
            if end > confirmed {
                conn.query(&format!(
                    "SELECT pg_replication_slot_advance({}, {})",
                    escape_literal(&slot),
                    escape_literal(&lsn_text(end))
                ))?;
            }
            return Ok(None);
        }
        let last_commit = peek.get(1).cloned().flatten().and_then(|l| parse_lsn(&l));
        let until = match last_commit {
            Some(c) if messages >= options.max_changes_per_batch && c + 1 > from && c < end => {
                c + 1
            }
            _ => end,
        };
        Ok(Some(json(&Plan::Changes { from, until })?))
    }

    fn committed(config: String, stream_name: String, plan: String) -> Result<(), Error> {
        let Plan::Changes { until, .. } = parse_plan(&plan)? else {
            // The slot starts where the snapshot is.
            return Ok(());
        };
        let options = Options::parse(&config)?;
        let mut conn = Conn::open(&options, Purpose::Query)?;
        let slot = escape_literal(&options.slot(&stream_name));
        conn.query(&format!(
            "SELECT pg_replication_slot_advance({slot}, {}) FROM pg_replication_slots WHERE slot_name = {slot} AND confirmed_flush_lsn < {}",
            escape_literal(&lsn_text(until)),
            escape_literal(&lsn_text(until))
        ))?;
        Ok(())
    }
}

/// What a reader does.
enum Reading {
    Copy(Box<Copying>),
    Changes(Box<Streaming>),
    Done,
}

/// A table copied under a snapshot (`COPY ... TO STDOUT`, binary format).
struct Copying {
    conn: Conn,
    binary: BinaryRows,
    per_batch: usize,
    done: bool,
}

/// Rows of `COPY`'s binary format being read into [`Rows`].
struct BinaryRows {
    rows: Rows,
    /// Per copied column, where it goes in the rows and whether its value
    /// is read as the server sends it (else it was copied as text).
    columns: Vec<(usize, bool)>,
    commit: Commit,
    seq: i64,
    /// Bytes not read yet: a header or a row cut between two messages.
    partial: Vec<u8>,
    /// The header was read.
    started: bool,
    /// The trailer was read.
    ended: bool,
}

/// The start of `COPY`'s binary format.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl Copying {
    /// Starts copying `table` (the `pages` of it, when given) as of
    /// `commit`, into `rows`.
    fn start(
        mut conn: Conn,
        table: &Table,
        rows: Rows,
        commit: Commit,
        options: &Options,
        pages: Option<(u32, Option<u32>)>,
    ) -> Result<Reading, Error> {
        let mut select = Vec::new();
        let mut columns = Vec::new();
        for c in &table.columns {
            if let Some(at) = rows.position(&c.name) {
                let as_is =
                    values::binary_as_is(c.oid, &c.data_type) && rows.data_type(at) == &c.data_type;
                let name = escape_identifier(&c.name);
                select.push(if as_is { name } else { format!("{name}::text") });
                columns.push((at, as_is));
            }
        }
        // A part's pages (a TID range scan), its sequences above every
        // earlier part's: a page holds fewer than 2^16 rows.
        let (range, seq) = match pages {
            None => (String::new(), 0),
            Some((from, until)) => (
                match until {
                    Some(until) => {
                        format!(" WHERE ctid >= '({from},0)'::tid AND ctid < '({until},0)'::tid")
                    }
                    None => format!(" WHERE ctid >= '({from},0)'::tid"),
                },
                (from as i64) << 16,
            ),
        };
        conn.copy_out(&format!(
            "COPY (SELECT {} FROM {}{range}) TO STDOUT (FORMAT binary)",
            select.join(", "),
            table.quoted
        ))?;
        Ok(Reading::Copy(Box::new(Copying {
            conn,
            binary: BinaryRows {
                rows,
                columns,
                commit,
                seq,
                partial: Vec::new(),
                started: false,
                ended: false,
            },
            per_batch: options.rows_per_batch,
            done: false,
        })))
    }

    fn next(&mut self) -> Result<Option<Batch>, Error> {
        while !self.done && self.binary.rows.len() < self.per_batch {
            let binary = &mut self.binary;
            if !self.conn.copy_data_each(|chunk| binary.feed(chunk))? {
                if !binary.ended || !binary.partial.is_empty() {
                    return Err(Error::Data("COPY ended inside a row".into()));
                }
                self.conn.query("COMMIT")?;
                self.done = true;
            }
        }
        batch(&mut self.binary.rows)
    }
}

impl BinaryRows {
    /// Reads the rows `chunk` (the data of one `CopyData` message) ends,
    /// keeping what is left of a row cut there.
    fn feed(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if self.partial.is_empty() {
            let read = self.read(chunk)?;
            self.partial.extend_from_slice(&chunk[read..]);
        } else {
            let mut whole = std::mem::take(&mut self.partial);
            whole.extend_from_slice(chunk);
            let read = self.read(&whole)?;
            whole.drain(..read);
            self.partial = whole;
        }
        Ok(())
    }

    /// Reads the header and the whole rows at the start of `data`; returns
    /// how many bytes it read.
    fn read(&mut self, data: &[u8]) -> Result<usize, Error> {
        let mut at = 0;
        if !self.started {
            // Signature, flags, and the length of an extension to skip.
            let Some(extension) = data.get(15..19) else {
                return Ok(0);
            };
            if !data.starts_with(COPY_SIGNATURE) {
                return Err(Error::Data(
                    "COPY's binary data does not start with its signature".into(),
                ));
            }
            at = 19 + u32::from_be_bytes(extension.try_into().expect("4 bytes")) as usize;
            if data.len() < at {
                return Ok(0);
            }
            self.started = true;
        }
        while !self.ended
            && let Some(read) = self.row(&data[at..])?
        {
            at += read;
        }
        Ok(at)
    }

    /// Reads the row (or the trailer) at the start of `bytes`, if it is
    /// whole there; returns how many bytes it took.
    fn row(&mut self, bytes: &[u8]) -> Result<Option<usize>, Error> {
        let length = |at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
        };
        let Some(count) = bytes.get(..2) else {
            return Ok(None);
        };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            self.ended = true;
            return Ok(Some(2));
        }
        if count as usize != self.columns.len() {
            return Err(Error::Data(format!(
                "a COPY row of {count} fields, where {} were selected",
                self.columns.len()
            )));
        }
        // The row is read only once it is whole.
        let mut end = 2;
        for _ in 0..count {
            let Some(n) = length(end) else {
                return Ok(None);
            };
            end += 4 + n.max(0) as usize;
        }
        if end > bytes.len() {
            return Ok(None);
        }
        let mut at = 2;
        for &(column, as_is) in &self.columns {
            let n = length(at).expect("checked");
            at += 4;
            // A null's length is -1.
            let value = (n >= 0).then(|| &bytes[at..at + n as usize]);
            at += n.max(0) as usize;
            if as_is {
                self.rows.set_binary(column, value)
            } else {
                let text = value
                    .map(std::str::from_utf8)
                    .transpose()
                    .map_err(|e| Error::Data(format!("a COPY value is not UTF-8: {e}")))?;
                self.rows.set(column, text)
            }
            .map_err(data)?;
        }
        self.rows
            .end(ChangeType::Insert, self.commit, self.seq)
            .map_err(data)?;
        self.seq += 1;
        Ok(Some(end))
    }
}

/// The rows so far as a batch, or none when there are none.
fn batch(rows: &mut Rows) -> Result<Option<Batch>, Error> {
    if rows.len() == 0 {
        return Ok(None);
    }
    let b = rows.finish().map_err(Error::Other)?;
    Ok(Some(Batch {
        ipc: ipc::encode_batch(&b)?,
        checkpoint: None,
    }))
}

/// A relation of the stream, and where its columns go in the rows.
struct Known {
    ours: bool,
    positions: Vec<Option<usize>>,
    columns: Vec<String>,
    /// Each column's type and modifier, as the stream says now.
    types: Vec<(u32, i32)>,
}

/// A transaction being received.
struct Txn {
    keep: bool,
    micros: i64,
    changes: Vec<(ChangeType, u32, Vec<Value>)>,
}

/// The changes of a plan, from the slot.
struct Streaming {
    conn: Conn,
    table: String,
    rows: Rows,
    from: u64,
    until: u64,
    relations: HashMap<u32, Known>,
    txn: Option<Txn>,
    per_batch: usize,
    /// Every change of the plan is in.
    done: bool,
    /// The stream is ended and the slot free.
    ended: bool,
}

impl Streaming {
    fn start(
        options: &Options,
        table: &Table,
        rows: Rows,
        from: u64,
        until: u64,
    ) -> Result<Streaming, Error> {
        let mut conn = Conn::open(options, Purpose::Replication)?;
        let slot = options.slot(&table.name);
        conn.start_replication(&format!(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {})",
            escape_identifier(&slot),
            lsn_text(from),
            escape_literal(&escape_identifier(&options.publication(&table.name)))
        ))
        .map_err(|e| match e {
            Error::Io(m) if m.contains("is active for PID") => {
                Error::Io(format!("{m}: {}", catalog::IN_USE_ADVICE))
            }
            other => other,
        })?;
        Ok(Streaming {
            conn,
            table: table.name.clone(),
            rows,
            from,
            until,
            relations: HashMap::new(),
            txn: None,
            per_batch: options.rows_per_batch,
            done: false,
            ended: false,
        })
    }

    fn next(&mut self) -> Result<Option<Batch>, Error> {
        while !self.done && self.rows.len() < self.per_batch {
            let Some(message) = self.conn.stream_data()? else {
                return Err(Error::Io(format!(
                    "the server ended the replication stream before WAL position {}",
                    lsn_text(self.until)
                )));
            };
            match pgoutput::frame(message).map_err(|e| Error::Io(format!("replication: {e}")))? {
                Frame::Keepalive { wal_end, reply } => {
                    if reply {
                        // Received, but nothing confirmed: the slot moves
                        // only when the batch is committed.
                        self.conn.send_stream(&pgoutput::status(wal_end, 0))?;
                    }
                    if self.txn.is_none() && wal_end >= self.until {
                        self.done = true;
                    }
                }
                Frame::Data(m) => self.logical(m)?,
            }
        }
        if self.done && !self.ended {
            self.conn.end_stream()?;
            self.ended = true;
        }
        batch(&mut self.rows)
    }

    fn logical(&mut self, m: Logical) -> Result<(), Error> {
        match m {
            Logical::Begin {
                final_lsn,
                commit_micros,
            } => {
                if final_lsn >= self.until {
                    self.done = true;
                    return Ok(());
                }
                self.txn = Some(Txn {
                    keep: final_lsn >= self.from,
                    micros: commit_micros,
                    changes: Vec::new(),
                });
            }
            Logical::Relation { oid, relation } => {
                let ours = format!("{}.{}", relation.namespace, relation.name) == self.table;
                let positions = relation
                    .columns
                    .iter()
                    .map(|c| self.rows.position(c))
                    .collect();
                self.relations.insert(
                    oid,
                    Known {
                        ours,
                        positions,
                        columns: relation.columns,
                        types: relation.types,
                    },
                );
            }
            Logical::Insert { oid, new } => self.change(ChangeType::Insert, oid, new),
            Logical::Update { oid, old, new } => {
                if let Some(old) = old {
                    self.change(ChangeType::UpdatePreimage, oid, old);
                }
                self.change(ChangeType::UpdatePostimage, oid, new);
            }
            Logical::Delete { oid, old } => self.change(ChangeType::Delete, oid, old),
            Logical::Truncate { oids } => {
                if let Some(&oid) = oids
                    .iter()
                    .find(|o| self.relations.get(o).is_some_and(|k| k.ours))
                {
                    self.change(ChangeType::Truncate, oid, Vec::new());
                }
            }
            Logical::Commit { end_lsn } => {
                if let Some(txn) = self.txn.take()
                    && txn.keep
                {
                    self.commit(txn, end_lsn)?;
                }
            }
            Logical::Other => {}
        }
        Ok(())
    }

    fn change(&mut self, kind: ChangeType, oid: u32, values: Vec<Value>) {
        if let Some(txn) = &mut self.txn
            && txn.keep
            && self.relations.get(&oid).is_some_and(|k| k.ours)
        {
            txn.changes.push((kind, oid, values));
        }
    }

    fn commit(&mut self, txn: Txn, end_lsn: u64) -> Result<(), Error> {
        let commit = Commit {
            lsn: end_lsn,
            micros: Some(txn.micros),
        };
        let mut previous: Option<&Vec<Value>> = None;
        for (seq, (kind, oid, values)) in txn.changes.iter().enumerate() {
            let known = &self.relations[oid];
            let mut new_columns = false;
            for (i, v) in values.iter().enumerate() {
                let Some(at) = known.positions.get(i).copied().flatten() else {
                    new_columns |= matches!(v, Value::Text(_));
                    continue;
                };
                let text: Option<Bytes> = match v {
                    Value::Null => None,
                    Value::Text(t) => Some(t.clone()),
                    Value::Unchanged => match previous.and_then(|p| p.get(i)) {
                        // The old row (REPLICA IDENTITY FULL) has it.
                        Some(Value::Text(t)) if *kind == ChangeType::UpdatePostimage => {
                            Some(t.clone())
                        }
                        Some(Value::Null) if *kind == ChangeType::UpdatePostimage => None,
                        // The table keeps the value it has.
                        _ if self.rows.say_unchanged() => {
                            self.rows.unchanged(at);
                            continue;
                        }
                        _ => {
                            return Err(Error::Data(format!(
                                "{}.{}: an update at WAL position {} left this TOASTed column unchanged, and the stream is not sent its value: run ALTER TABLE {} REPLICA IDENTITY FULL so that updates carry the whole old row",
                                self.table,
                                known.columns[i],
                                lsn_text(end_lsn),
                                self.table
                            )));
                        }
                    },
                };
                let text = text
                    .as_deref()
                    .map(std::str::from_utf8)
                    .transpose()
                    .map_err(|e| {
                        Error::Data(format!(
                            "{}.{}: not UTF-8: {e}",
                            self.table, known.columns[i]
                        ))
                    })?;
                self.rows.set(at, text).map_err(|e| {
                    // A column whose type changed since the table was made.
                    let now = match known.types.get(i) {
                        Some(&(oid, typmod))
                            if values::arrow_type(oid, typmod, 0) != *self.rows.data_type(at) =>
                        {
                            format!(
                                "; the source column is now of type {}",
                                values::type_name(oid)
                            )
                        }
                        _ => String::new(),
                    };
                    Error::Data(format!(
                        "{e} (the change at WAL position {}){now}",
                        lsn_text(end_lsn)
                    ))
                })?;
            }
            if new_columns {
                host::count("records-with-new-columns", 1);
            }
            self.rows.end(*kind, commit, seq as i64).map_err(data)?;
            previous = (*kind == ChangeType::UpdatePreimage).then_some(values);
        }
        Ok(())
    }
}

/// Reads a stream's batch.
pub struct PostgresReader {
    state: RefCell<Reading>,
}

impl GuestReader for PostgresReader {
    fn next(&self) -> Result<Option<Batch>, Error> {
        match &mut *self.state.borrow_mut() {
            Reading::Copy(c) => c.next(),
            Reading::Changes(s) => s.next(),
            Reading::Done => Ok(None),
        }
    }
}

/// The config's JSON Schema.
const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["url"],
  "properties": {
    "url": {"type": "string", "description": "postgres://user@host:5432/database (a pipeline's source)"},
    "password": {"type": "string", "description": "${secret:NAME}"},
    "tables": {"type": "string", "description": "schema.table, comma-separated, or schema.* for every table of a schema"},
    "slotPrefix": {"type": "string", "description": "What the names of the replication slot and publication of each stream start with (default sluice)"},
    "publication": {"type": "string", "description": "One publication every stream reads, instead of one made per table"},
    "createPublication": {"type": "string", "enum": ["true", "false"], "description": "Make a missing publication (needs the table's owner); default true"},
    "snapshot": {"type": "string", "enum": ["true", "false"], "description": "Start with a copy of the table (default), or only with the changes after the stream starts"},
    "sslmode": {"type": "string", "enum": ["disable", "prefer", "require", "verify-ca", "verify-full"], "description": "require, verify-ca, verify-full: TLS, run by the host and verified against the pipeline's network_ca or the public roots; disable (default), prefer: plaintext"},
    "rowsPerBatch": {"type": "string", "description": "Rows per record batch handed to the host (default 65536)"},
    "snapshotPartBytes": {"type": "string", "description": "A table's snapshot is copied in parallel parts (page ranges, one lane each) of at least this many bytes of the table, when the run has lanes for them (default 268435456)"},
    "maxChangesPerBatch": {"type": "string", "description": "A change batch ends at the first commit after about this many changes (default 500000)"}
  }
}"#;

bindings::export!(Postgres with_types_in bindings);
