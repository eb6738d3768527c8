//! What the server's catalog says of the tables a config names: their
//! columns and types, keys and replica identity, and what CDC needs of the
//! server (`check`).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use sluice_connector_sdk::Error;

use crate::options::Options;
use crate::values::arrow_type;
use crate::wire::Conn;

/// The columns every change row carries after the table's own: what the
/// change was (Delta's change-data-feed names: insert, update_preimage,
/// update_postimage, delete), the end of its transaction's commit record,
/// the commit's time, its place in the transaction, and the columns whose
/// values it did not carry (TOASTed values an update did not touch, when
/// the table's replica identity is not FULL; null when none).
pub const CHANGE_TYPE: &str = "_change_type";
/// See [`CHANGE_TYPE`].
pub const COMMIT_LSN: &str = "_commit_lsn";
/// See [`CHANGE_TYPE`].
pub const COMMIT_TIMESTAMP: &str = "_commit_timestamp";
/// See [`CHANGE_TYPE`].
pub const CHANGE_SEQ: &str = "_change_seq";
/// See [`CHANGE_TYPE`].
pub const UNCHANGED: &str = "_unchanged_columns";

/// A table.
#[derive(Debug, Clone)]
pub struct Table {
    /// `schema.table`.
    pub name: String,
    /// Its schema, quoted for SQL.
    pub quoted: String,
    /// Its columns, in order.
    pub columns: Vec<Column>,
    /// Its primary key's columns.
    pub key: Vec<String>,
    /// `d` (default: the key), `f` (full), `i` (index) or `n` (nothing).
    pub replica_identity: char,
}

/// A column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// The type, as SQL writes it (`numeric(12,2)`).
    pub sql_type: String,
    /// The type's oid.
    pub oid: u32,
    pub data_type: DataType,
}

/// Splits `schema.table` (a bare name is in `public`).
fn split(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or(("public", name))
}

/// The tables `options.tables` names, `schema.*` expanded.
pub fn tables(conn: &mut Conn, options: &Options) -> Result<Vec<String>, Error> {
    if options.tables.is_empty() {
        return Err(Error::Config(
            "name the tables: tables = \"public.orders, public.customers\" (or \"public.*\")"
                .into(),
        ));
    }
    let mut out = Vec::new();
    for t in &options.tables {
        match t.strip_suffix(".*") {
            Some(schema) => {
                let rows = conn.query(&format!(
                    "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
                    escape_literal(schema)
                ))?;
                if rows.is_empty() {
                    return Err(Error::Config(format!(
                        "tables '{t}': schema '{schema}' has no tables"
                    )));
                }
                out.extend(rows.into_iter().filter_map(|mut r| r.swap_remove(0)));
            }
            None => {
                let (s, n) = split(t);
                out.push(format!("{s}.{n}"));
            }
        }
    }
    out.dedup();
    Ok(out)
}

/// The table `name` as the catalog describes it now.
pub fn table(conn: &mut Conn, name: &str) -> Result<Table, Error> {
    let (schema, table) = split(name);
    let rows = conn.query(&format!(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod, \
                CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE 0 END, \
                coalesce(a.attnum = ANY (i.indkey), false), c.relreplident \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid \
         JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
         WHERE n.nspname = {} AND c.relname = {} AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
        escape_literal(schema),
        escape_literal(table)
    ))?;
    if rows.is_empty() {
        return Err(Error::Config(format!(
            "table {name} does not exist (or user cannot see it)"
        )));
    }
    let mut columns = Vec::new();
    let mut key = Vec::new();
    let mut replica_identity = 'd';
    for r in rows {
        let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let number = |i: usize| text(i).parse::<i64>().unwrap_or(0);
        let name = text(0);
        if text(5) == "t" {
            key.push(name.clone());
        }
        replica_identity = text(6).chars().next().unwrap_or('d');
        columns.push(Column {
            data_type: arrow_type(number(2) as u32, number(3) as i32, number(4) as u32),
            oid: number(2) as u32,
            sql_type: text(1),
            name,
        });
    }
    Ok(Table {
        name: format!("{schema}.{table}"),
        quoted: format!("{}.{}", escape_identifier(schema), escape_identifier(table)),
        columns,
        key,
        replica_identity,
    })
}

impl Table {
    /// The stream's schema: the table's columns, then the change columns.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                Field::new(&c.name, c.data_type.clone(), true)
                    .with_metadata([("postgres.type".to_string(), c.sql_type.clone())].into())
            })
            .collect();
        fields.extend(change_fields());
        Arc::new(Schema::new(fields))
    }

    /// The columns that identify a row: the primary key, or with
    /// `REPLICA IDENTITY FULL` and none, every column (none otherwise).
    pub fn identity(&self) -> Vec<String> {
        match (self.key.is_empty(), self.replica_identity) {
            (false, _) => self.key.clone(),
            (true, 'f') => self.columns.iter().map(|c| c.name.clone()).collect(),
            _ => vec![],
        }
    }

    /// Whether changes to it can be applied by key: it has a primary key,
    /// or every column identifies a row (`REPLICA IDENTITY FULL`).
    pub fn keyed(&self) -> Result<(), Error> {
        if self.key.is_empty() && self.replica_identity != 'f' {
            return Err(Error::Config(format!(
                "table {} has no primary key, so its updates and deletes cannot be matched to rows: add one, or run ALTER TABLE {} REPLICA IDENTITY FULL",
                self.name, self.quoted
            )));
        }
        Ok(())
    }
}

/// The change columns.
pub fn change_fields() -> [Field; 5] {
    [
        Field::new(CHANGE_TYPE, DataType::Utf8, false),
        Field::new(COMMIT_LSN, DataType::Int64, false),
        Field::new(
            COMMIT_TIMESTAMP,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(CHANGE_SEQ, DataType::Int64, false),
        Field::new(
            UNCHANGED,
            DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
            true,
        ),
    ]
}

/// What CDC needs of the server, each missing thing with its fix.
pub fn check(conn: &mut Conn, options: &Options) -> Result<(), Error> {
    let level = one(conn, "SHOW wal_level")?;
    if level != "logical" {
        return Err(Error::Config(format!(
            "the server's wal_level is '{level}': set wal_level = logical in postgresql.conf and restart the server"
        )));
    }
    let may = one(
        conn,
        "SELECT (rolreplication OR rolsuper)::text FROM pg_roles WHERE rolname = current_user",
    )?;
    if may != "true" {
        return Err(Error::Auth(format!(
            "user '{}' may not replicate: ALTER ROLE {} REPLICATION",
            options.user,
            escape_identifier(&options.user)
        )));
    }
    for name in tables(conn, options)? {
        let t = table(conn, &name)?;
        t.keyed()?;
        let publication = options.publication(&t.name);
        let (s, n) = split(&t.name);
        let rows = conn.query(&format!(
            "SELECT p.pubname, EXISTS (SELECT 1 FROM pg_publication_tables x WHERE x.pubname = p.pubname AND x.schemaname = {} AND x.tablename = {})::text FROM pg_publication p WHERE p.pubname = {}",
            escape_literal(s),
            escape_literal(n),
            escape_literal(&publication)
        ))?;
        match rows.first() {
            None if !options.create_publication => {
                return Err(Error::Config(format!(
                    "publication '{publication}' does not exist and createPublication is false: run CREATE PUBLICATION {} FOR TABLE {}",
                    escape_identifier(&publication),
                    t.quoted
                )));
            }
            Some(r) if r.get(1).cloned().flatten().as_deref() != Some("true") => {
                return Err(Error::Config(format!(
                    "publication '{publication}' does not publish {}: run ALTER PUBLICATION {} ADD TABLE {}",
                    t.name,
                    escape_identifier(&publication),
                    t.quoted
                )));
            }
            _ => {}
        }
        let slot = options.slot(&t.name);
        if let Some(Some(pid)) = slot_state(conn, &slot)? {
            return Err(in_use(&slot, &pid));
        }
    }
    Ok(())
}

/// Slot `slot`: none when it does not exist, else the process that holds
/// it, if one does.
pub fn slot_state(conn: &mut Conn, slot: &str) -> Result<Option<Option<String>>, Error> {
    Ok(conn
        .query(&format!(
            "SELECT active_pid::text FROM pg_replication_slots WHERE slot_name = {}",
            escape_literal(slot)
        ))?
        .into_iter()
        .next()
        .map(|mut r| r.swap_remove(0)))
}

/// A slot another process reads.
pub fn in_use(slot: &str, pid: &str) -> Error {
    Error::Io(format!(
        "replication slot '{slot}' is in use by server process {pid}: {IN_USE_ADVICE}"
    ))
}

/// What to do about a slot another process reads.
pub const IN_USE_ADVICE: &str =
    "is another Sluice process running this stream? Stop it, or give this one its own slotPrefix";

/// The one value a query returns.
pub fn one(conn: &mut Conn, sql: &str) -> Result<String, Error> {
    conn.query(sql)?
        .into_iter()
        .next()
        .and_then(|mut r| r.swap_remove(0))
        .ok_or_else(|| Error::Io(format!("no answer to `{sql}`")))
}
