//! The SQL Databricks users write to ingest files, parsed with `sqlparser`'s
//! Databricks dialect into what Sluice runs:
//!
//! - `CREATE [OR REPLACE] TABLE t AS SELECT ... FROM read_files('path', format => 'csv', ...)`
//! - `COPY INTO t FROM 'path' FILEFORMAT = CSV [PATTERN = '...'] [FILES = (...)]
//!   [FORMAT_OPTIONS (...)] [COPY_OPTIONS (...)]`
//! - `CREATE OR REFRESH STREAMING TABLE t AS SELECT ... FROM STREAM read_files(...)`
//! - `CREATE OR REFRESH STREAMING TABLE t; CREATE FLOW f AS AUTO CDC INTO t
//!   FROM STREAM read_files(...) KEYS (id) APPLY AS DELETE WHEN op = 'D'
//!   SEQUENCE BY ts COLUMNS * EXCEPT (op) STORED AS SCD TYPE 2` (or the
//!   older `APPLY CHANGES INTO`)
//!
//! The dialect parses the first; the other two are Databricks statements it
//! does not know, read here with the parser's own building blocks (keywords,
//! object names, string literals, queries). Anything Sluice does not run yet
//! (a WHERE clause, a join, a function in the select list, ...) is an error
//! that says so, never ignored.
//!
//! ```
//! let statements = sluice_sql::parse(
//!     "CREATE OR REPLACE TABLE delta.`/tmp/t` AS SELECT id, CAST(n AS INT) AS n \
//!      FROM read_files('/data/in', format => 'csv', header => true)",
//! )
//! .unwrap();
//! assert_eq!(statements.len(), 1);
//! ```

use std::collections::{BTreeMap, HashSet};

use arrow_schema::{DataType as Arrow, TimeUnit};
use sluice_pipeline::load::CopyInto;
use sluice_pipeline::pipeline::{ConnectorRef, TableFormatName};
use sluice_pipeline::projection::{Expr as PExpr, Item, Projection};
use sluice_pipeline::{ApplyChanges, Format, Load, LoadMode, Pipeline};
use sqlparser::ast::{
    self, CastKind, DataType, ExactNumberInfo, Expr, FunctionArg, FunctionArgExpr, GroupByExpr,
    ObjectName, Query, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor, Value,
};
use sqlparser::dialect::DatabricksDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// Why a statement cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not valid SQL here.
    #[error("{0}")]
    Syntax(String),
    /// Valid SQL that Sluice does not run (yet).
    #[error("not supported yet: {0}")]
    Unsupported(String),
}

impl From<ParserError> for Error {
    fn from(e: ParserError) -> Self {
        Error::Syntax(e.to_string())
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a table is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableName {
    /// ``delta.`/path` `` or ``parquet.`s3://b/t` ``: a table by location.
    Path {
        /// `delta` or `parquet`.
        format: TableFormatName,
        /// The location.
        path: String,
    },
    /// `t` or `schema.t`: a table under the warehouse root.
    Named(Vec<String>),
    /// `iceberg.t` or `iceberg.namespace.t`: an Iceberg table in the
    /// catalog (the parts after `iceberg`).
    Iceberg(Vec<String>),
}

/// `SELECT ... FROM [STREAM] read_files(...)` (or `read_kafka(...)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// The select list.
    pub projection: Projection,
    /// The built-in connector a table function other than `read_files`
    /// reads with (`read_kafka`: `kafka`).
    pub connector: Option<String>,
    /// `read_files`' path (empty for other table functions).
    pub path: String,
    /// Its options (`format` among them), by Auto Loader's names.
    pub options: BTreeMap<String, String>,
    /// `FROM STREAM read_files(...)`: an incremental read.
    pub stream: bool,
}

impl Select {
    /// The input format: the `format` option, or the path's extension.
    pub fn format(&self) -> Result<Format> {
        if let Some(f) = self.options.get("format") {
            return f
                .parse()
                .map_err(|e: sluice_pipeline::UnknownFormat| Error::Syntax(e.to_string()));
        }
        if let Some(format) = Format::from_path(&self.path) {
            return Ok(format);
        }
        Err(Error::Syntax(format!(
            "read_files('{}') needs format => 'csv', 'json' or 'parquet'",
            self.path
        )))
    }

    /// The options but `format`.
    pub fn reader_options(&self) -> BTreeMap<String, String> {
        let mut o = self.options.clone();
        o.remove("format");
        o
    }
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t AS SELECT ...`.
    CreateTableAs {
        /// The table.
        table: TableName,
        /// `OR REPLACE`.
        replace: bool,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// What it holds.
        select: Select,
    },
    /// `COPY INTO`.
    CopyInto {
        /// The table.
        table: TableName,
        /// `FROM 'path'`.
        from: String,
        /// `FILEFORMAT`.
        format: Format,
        /// `PATTERN`.
        pattern: Option<String>,
        /// `FILES`.
        files: Vec<String>,
        /// `FORMAT_OPTIONS`.
        format_options: BTreeMap<String, String>,
        /// `COPY_OPTIONS`.
        copy_options: BTreeMap<String, String>,
    },
    /// `CREATE [OR REFRESH] STREAMING TABLE t` without a query: the
    /// target a flow (`AUTO CDC INTO t`) writes.
    DeclareStreamingTable {
        /// The table.
        table: TableName,
    },
    /// `CREATE FLOW f AS AUTO CDC INTO t FROM STREAM read_files(...) KEYS
    /// (...) [APPLY AS DELETE WHEN ...] SEQUENCE BY c [COLUMNS * EXCEPT
    /// (...)] [STORED AS SCD TYPE 1|2]`, or `APPLY CHANGES INTO` (the older
    /// spelling, with or without `CREATE FLOW`): a stream applied by key.
    AutoCdc {
        /// The flow's name, where it has one.
        flow: Option<String>,
        /// The target, declared before by `CREATE OR REFRESH STREAMING
        /// TABLE t`.
        table: TableName,
        /// The change stream.
        select: Select,
        /// How its changes apply.
        apply: ApplyChanges,
    },
    /// `CREATE [OR REFRESH] STREAMING TABLE t AS SELECT ... FROM STREAM read_files(...)`.
    StreamingTable {
        /// The table.
        table: TableName,
        /// `OR REFRESH`.
        or_refresh: bool,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// What it holds.
        select: Select,
    },
}

impl TableName {
    /// The table as a pipeline names it ([`sluice_pipeline::TableRef`]):
    /// a path, or the dotted name under the warehouse.
    pub fn table(&self) -> String {
        match self {
            // A path always reads as one, even `delta.`events``.
            TableName::Path { path, .. } if !path.contains('/') => format!("./{path}"),
            TableName::Path { path, .. } => path.clone(),
            TableName::Named(parts) | TableName::Iceberg(parts) => parts.join("."),
        }
    }

    /// The table's format: `parquet.` names a Parquet table, `iceberg.` an
    /// Iceberg table, everything else is Delta.
    pub fn format(&self) -> TableFormatName {
        match self {
            TableName::Path { format, .. } => *format,
            TableName::Named(_) => TableFormatName::Delta,
            TableName::Iceberg(_) => TableFormatName::Iceberg,
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableName::Path { format, path } => {
                let kind = match format {
                    TableFormatName::Delta => "delta",
                    TableFormatName::Parquet => "parquet",
                    TableFormatName::Iceberg => "iceberg",
                };
                write!(f, "{kind}.`{path}`")
            }
            TableName::Named(parts) => write!(f, "{}", parts.join(".")),
            TableName::Iceberg(parts) => write!(f, "iceberg.{}", parts.join(".")),
        }
    }
}

impl Statement {
    /// The table the statement writes.
    pub fn table(&self) -> &TableName {
        match self {
            Statement::CreateTableAs { table, .. }
            | Statement::CopyInto { table, .. }
            | Statement::DeclareStreamingTable { table }
            | Statement::AutoCdc { table, .. }
            | Statement::StreamingTable { table, .. } => table,
        }
    }

    /// The load the statement runs: a replace for `CREATE TABLE AS SELECT`,
    /// COPY INTO, and a stream for a streaming table (whose checkpoint is
    /// kept with the table, as [`sluice_pipeline::load::default_checkpoint`]
    /// says). Whether the table may exist already is the caller's to check
    /// (`OR REPLACE`, `IF NOT EXISTS`).
    pub fn load(&self) -> Result<Load> {
        let invalid = |e: sluice_pipeline::Error| Error::Syntax(e.to_string());
        let select = |mode: LoadMode, table: &TableName, select: &Select| -> Result<Load> {
            if let Some(connector) = &select.connector {
                let pipeline = Pipeline {
                    mode,
                    connector: Some(ConnectorRef::builtin(connector)),
                    options: select.options.clone(),
                    table_format: table.format(),
                    ..Pipeline::new(&table.table())
                };
                return Ok(Load {
                    projection: Some(select.projection.clone()),
                    ..Load::new(pipeline)
                });
            }
            let pipeline = Pipeline {
                mode,
                source: Some(select.path.clone()),
                format: Some(select.format()?),
                options: select.reader_options(),
                table_format: table.format(),
                ..Pipeline::new(&table.table())
            };
            Ok(Load {
                projection: Some(select.projection.clone()),
                ..Load::new(pipeline)
            })
        };
        match self {
            Statement::CreateTableAs {
                table, select: s, ..
            } => select(LoadMode::Replace, table, s),
            Statement::StreamingTable {
                table, select: s, ..
            } => select(LoadMode::Stream, table, s),
            Statement::DeclareStreamingTable { table } => Err(Error::Syntax(format!(
                "CREATE OR REFRESH STREAMING TABLE {table} only declares a flow's target: it loads nothing by itself"
            ))),
            Statement::AutoCdc {
                table,
                select: s,
                apply,
                ..
            } => {
                let mut load = select(LoadMode::Stream, table, s)?;
                load.pipeline.apply = Some(apply.clone());
                load.pipeline.validate().map_err(invalid)?;
                Ok(load)
            }
            Statement::CopyInto {
                table,
                from,
                format,
                pattern,
                files,
                format_options,
                copy_options,
            } => {
                let mut load = CopyInto {
                    table: table.table(),
                    from: from.clone(),
                    format: *format,
                    pattern: pattern.clone(),
                    files: files.clone(),
                    format_options: format_options.clone(),
                    copy_options: copy_options.clone(),
                }
                .load()
                .map_err(invalid)?;
                load.pipeline.table_format = table.format();
                Ok(load)
            }
        }
    }
}

/// Parses a select list alone (`id, city AS town, CAST(t AS DOUBLE) AS
/// temp`), as a query's would be: what an upload keeps of a file, renamed
/// and cast.
pub fn select_list(text: &str) -> Result<Projection> {
    let dialect = DatabricksDialect {};
    let mut p = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| Error::Syntax(e.to_string()))?;
    let items = p
        .parse_projection()
        .map_err(|e| Error::Syntax(e.to_string()))?;
    if p.peek_token_ref().token != Token::EOF {
        return Ok(p.expected_ref("',' or the end of the select list", p.peek_token_ref())?);
    }
    Ok(Projection {
        items: items.iter().map(item).collect::<Result<Vec<_>>>()?,
    })
}

/// Parses `sql`: statements separated by `;`.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let dialect = DatabricksDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| Error::Syntax(e.to_string()))?;
    let (tokens, streams) = strip_stream(tokens);
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut out = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        if p.peek_token_ref().token == Token::EOF {
            break;
        }
        out.push(statement(&mut p, &streams)?);
        if !p.consume_token(&Token::SemiColon) && p.peek_token_ref().token != Token::EOF {
            return p.expected_ref("';' or the end", p.peek_token_ref())?;
        }
    }
    if out.is_empty() {
        return Err(Error::Syntax("no statement to run".into()));
    }
    for (i, s) in out.iter().enumerate() {
        if let Statement::AutoCdc { table, .. } = s {
            let declared = out[..i]
                .iter()
                .any(|d| matches!(d, Statement::DeclareStreamingTable { table: t } if t == table));
            if !declared {
                return Err(Error::Syntax(format!(
                    "declare the flow's target first, in the same statements: CREATE OR REFRESH STREAMING TABLE {table};"
                )));
            }
        }
    }
    Ok(out)
}

fn is_word(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn parse_word(p: &mut Parser, word: &str) -> bool {
    if is_word(&p.peek_token_ref().token, word) {
        p.advance_token();
        true
    } else {
        false
    }
}

fn expect_word(p: &mut Parser, word: &str) -> Result<()> {
    if parse_word(p, word) {
        Ok(())
    } else {
        Ok(p.expected_ref(word, p.peek_token_ref())?)
    }
}

fn statement(p: &mut Parser, streams: &HashSet<(u64, u64)>) -> Result<Statement> {
    let [t0, t1, t2, t3] = p.peek_tokens::<4>();
    if is_word(&t0, "COPY") && is_word(&t1, "INTO") {
        p.advance_token();
        p.advance_token();
        return copy_into(p);
    }
    let streaming = is_word(&t0, "CREATE")
        && (is_word(&t1, "STREAMING")
            || (is_word(&t1, "OR") && is_word(&t2, "REFRESH") && is_word(&t3, "STREAMING")));
    if streaming {
        p.expect_keyword_is(Keyword::CREATE)?;
        let or_refresh = p.parse_keywords(&[Keyword::OR, Keyword::REFRESH]);
        expect_word(p, "STREAMING")?;
        p.expect_keyword_is(Keyword::TABLE)?;
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let table = table_name(&p.parse_object_name(false)?)?;
        if matches!(p.peek_token_ref().token, Token::SemiColon | Token::EOF) {
            return Ok(Statement::DeclareStreamingTable { table });
        }
        if !p.peek_keyword(Keyword::AS) {
            return Err(Error::Unsupported(format!(
                "streaming table clauses before AS (column definitions, constraints, SCHEDULE, TBLPROPERTIES); found {}",
                p.peek_token_ref()
            )));
        }
        p.expect_keyword_is(Keyword::AS)?;
        let select = select(&*p.parse_query()?, streams)?;
        if !select.stream {
            return Err(Error::Syntax(
                "a streaming table reads incrementally: write FROM STREAM read_files(...)".into(),
            ));
        }
        return Ok(Statement::StreamingTable {
            table,
            or_refresh,
            if_not_exists,
            select,
        });
    }
    if is_word(&t0, "CREATE") && is_word(&t1, "FLOW") {
        p.advance_token();
        p.advance_token();
        let flow = p.parse_identifier()?.value;
        p.expect_keyword_is(Keyword::AS)?;
        return flow_body(p, streams, Some(flow));
    }
    if is_word(&t0, "APPLY") && is_word(&t1, "CHANGES") {
        return flow_body(p, streams, None);
    }
    let parsed = p.parse_statement()?;
    if !matches!(p.peek_token_ref().token, Token::SemiColon | Token::EOF) {
        return Ok(p.expected_ref("';' or the end", p.peek_token_ref())?);
    }
    match parsed {
        ast::Statement::CreateTable(c) => {
            let Some(query) = c.query else {
                return Err(Error::Unsupported(format!(
                    "CREATE TABLE {} without AS SELECT (Sluice creates tables from their data)",
                    c.name
                )));
            };
            if !c.columns.is_empty() {
                return Err(Error::Unsupported(
                    "column definitions in CREATE TABLE ... AS SELECT (the select list decides the columns)"
                        .into(),
                ));
            }
            let select = select(&query, streams)?;
            if select.stream {
                return Err(Error::Syntax(
                    "FROM STREAM belongs in CREATE OR REFRESH STREAMING TABLE".into(),
                ));
            }
            Ok(Statement::CreateTableAs {
                table: table_name(&c.name)?,
                replace: c.or_replace,
                if_not_exists: c.if_not_exists,
                select,
            })
        }
        other => Err(Error::Unsupported(format!(
            "{}: Sluice runs CREATE TABLE ... AS SELECT, COPY INTO and CREATE OR REFRESH STREAMING TABLE",
            first_words(&other.to_string())
        ))),
    }
}

/// A flow from `AUTO CDC INTO` (or `APPLY CHANGES INTO`) on: its target,
/// its change stream, and its clauses in any order.
fn flow_body(
    p: &mut Parser,
    streams: &HashSet<(u64, u64)>,
    flow: Option<String>,
) -> Result<Statement> {
    let auto = parse_word(p, "AUTO");
    if auto {
        expect_word(p, "CDC")?;
    } else {
        expect_word(p, "APPLY")?;
        expect_word(p, "CHANGES")?;
    }
    p.expect_keyword_is(Keyword::INTO)?;
    let table = table_name(&p.parse_object_name(false)?)?;
    p.expect_keyword_is(Keyword::FROM)?;
    let mut relation = p.parse_table_factor()?;
    // The dialect reads `KEYS (a, b)` after the table function as its
    // alias with column names.
    let mut keys = None;
    if let TableFactor::Table { alias, .. } = &mut relation
        && let Some(a) = alias.take()
    {
        let word = a.name.value.to_ascii_uppercase();
        if word != "KEYS"
            && ["SEQUENCE", "APPLY", "COLUMNS", "STORED", "TRACK", "IGNORE"]
                .contains(&word.as_str())
        {
            return Err(Error::Syntax(
                "AUTO CDC needs KEYS (column, ...) right after its source".into(),
            ));
        }
        if word != "KEYS" || a.columns.is_empty() {
            return Err(Error::Unsupported(format!(
                "an alias ({}) on the change stream of AUTO CDC",
                a.name
            )));
        }
        keys = Some(a.columns.into_iter().map(|c| c.name.value).collect());
    }
    let select = source(&relation, streams, vec![Item::Wildcard])?;
    if !select.stream {
        return Err(Error::Syntax(
            "AUTO CDC applies a stream of changes: write FROM STREAM read_files(...)".into(),
        ));
    }
    let mut sequence_by = None;
    let mut delete_when = None;
    let mut truncate_when = None;
    let mut except_columns = Vec::new();
    let mut scd_type = 1;
    let columns = |p: &mut Parser| -> Result<Vec<String>> {
        p.expect_token(&Token::LParen)?;
        let names = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
        Ok(names.into_iter().map(|i| i.value).collect())
    };
    while !matches!(p.peek_token_ref().token, Token::SemiColon | Token::EOF) {
        if parse_word(p, "KEYS") {
            keys = Some(columns(p)?);
        } else if parse_word(p, "SEQUENCE") {
            p.expect_keyword_is(Keyword::BY)?;
            sequence_by = Some(p.parse_identifier()?.value);
        } else if parse_word(p, "APPLY") {
            p.expect_keyword_is(Keyword::AS)?;
            let (clause, into) = if parse_word(p, "TRUNCATE") {
                ("TRUNCATE", &mut truncate_when)
            } else {
                expect_word(p, "DELETE")?;
                ("DELETE", &mut delete_when)
            };
            expect_word(p, "WHEN")?;
            *into = Some(condition(&p.parse_expr()?, clause)?);
        } else if parse_word(p, "COLUMNS") {
            p.expect_token(&Token::Mul)?;
            if parse_word(p, "EXCEPT") {
                except_columns = columns(p)?;
            }
        } else if parse_word(p, "STORED") {
            p.expect_keyword_is(Keyword::AS)?;
            expect_word(p, "SCD")?;
            expect_word(p, "TYPE")?;
            scd_type = match p.next_token().token {
                Token::Number(n, _) if n == "1" || n == "2" => n.parse().unwrap_or(1),
                other => {
                    return Err(Error::Syntax(format!(
                        "STORED AS SCD TYPE 1 or 2, not {other}"
                    )));
                }
            };
        } else if parse_word(p, "TRACK") || parse_word(p, "IGNORE") {
            return Err(Error::Unsupported(
                "TRACK HISTORY ON and IGNORE NULL UPDATES in AUTO CDC".into(),
            ));
        } else {
            return Ok(p.expected_ref(
                "KEYS, APPLY AS DELETE WHEN, APPLY AS TRUNCATE WHEN, SEQUENCE BY, COLUMNS or STORED AS SCD TYPE",
                p.peek_token_ref(),
            )?);
        }
    }
    let keys = keys.ok_or_else(|| Error::Syntax("AUTO CDC needs KEYS (column, ...)".into()))?;
    let sequence_by =
        sequence_by.ok_or_else(|| Error::Syntax("AUTO CDC needs SEQUENCE BY column".into()))?;
    Ok(Statement::AutoCdc {
        flow,
        table,
        select,
        apply: ApplyChanges {
            keys,
            sequence_by,
            scd_type,
            delete_when,
            except_columns,
            truncate_when,
            unchanged_columns: None,
        },
    })
}

/// `op = 'DELETE'` or `op IN ('D', 'X')` of `APPLY AS clause WHEN` as a
/// pipeline's `delete_when` or `truncate_when`.
fn condition(e: &Expr, clause: &str) -> Result<String> {
    let unsupported = || {
        Error::Unsupported(format!(
            "APPLY AS {clause} WHEN {e}: write column = 'value' or column IN ('a', 'b')"
        ))
    };
    let value = |v: &Expr| -> Result<String> {
        match v {
            Expr::Value(v) => Ok(format!("'{}'", literal(&v.value)?.replace('\'', "''"))),
            _ => Err(unsupported()),
        }
    };
    match e {
        Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Eq,
            right,
        } => match left.as_ref() {
            Expr::Identifier(c) => Ok(format!("{} = {}", c.value, value(right)?)),
            _ => Err(unsupported()),
        },
        Expr::InList {
            expr,
            list,
            negated: false,
        } => match expr.as_ref() {
            Expr::Identifier(c) => Ok(format!(
                "{} IN ({})",
                c.value,
                list.iter()
                    .map(value)
                    .collect::<Result<Vec<_>>>()?
                    .join(", ")
            )),
            _ => Err(unsupported()),
        },
        Expr::Nested(inner) => condition(inner, clause),
        _ => Err(unsupported()),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn table_name(name: &ObjectName) -> Result<TableName> {
    let parts: Vec<&ast::Ident> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .ok_or_else(|| Error::Unsupported(format!("table name {name}")))
        })
        .collect::<Result<_>>()?;
    if let [kind, path] = parts.as_slice()
        && kind.quote_style.is_none()
        && path.quote_style == Some('`')
    {
        let format = match kind.value.to_ascii_lowercase().as_str() {
            "delta" => TableFormatName::Delta,
            "parquet" => TableFormatName::Parquet,
            "iceberg" => {
                return Err(Error::Unsupported(format!(
                    "an Iceberg table by path ({name}); Iceberg tables are named in the catalog: iceberg.namespace.table"
                )));
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "tables of format '{other}'; use delta.`path` or parquet.`path`"
                )));
            }
        };
        return Ok(TableName::Path {
            format,
            path: path.value.clone(),
        });
    }
    if let [kind, rest @ ..] = parts.as_slice()
        && !rest.is_empty()
        && kind.quote_style.is_none()
        && kind.value.eq_ignore_ascii_case("iceberg")
    {
        return Ok(TableName::Iceberg(
            rest.iter().map(|p| p.value.clone()).collect(),
        ));
    }
    Ok(TableName::Named(
        parts.iter().map(|p| p.value.clone()).collect(),
    ))
}

/// `( 'key' = value, ... )`.
fn key_values(p: &mut Parser) -> Result<BTreeMap<String, String>> {
    p.expect_token(&Token::LParen)?;
    let mut out = BTreeMap::new();
    if p.consume_token(&Token::RParen) {
        return Ok(out);
    }
    let pairs = p.parse_comma_separated(|p| {
        let key = match p.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Word(w) => w.value,
            other => return p.expected("an option name", TokenWithSpan::wrap(other)),
        };
        p.expect_token(&Token::Eq)?;
        let value = literal(&p.parse_value()?.value)
            .map_err(|e| ParserError::ParserError(e.to_string()))?;
        Ok((key, value))
    })?;
    p.expect_token(&Token::RParen)?;
    for (k, v) in pairs {
        if out.insert(k.clone(), v).is_some() {
            return Err(Error::Syntax(format!("option '{k}' is given twice")));
        }
    }
    Ok(out)
}

fn literal(v: &Value) -> Result<String> {
    match v {
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s.clone()),
        Value::Boolean(b) => Ok(b.to_string()),
        Value::Number(n, _) => Ok(n.to_string()),
        other => Err(Error::Unsupported(format!("option value {other}"))),
    }
}

/// `COPY INTO` after its two keywords.
fn copy_into(p: &mut Parser) -> Result<Statement> {
    let table = table_name(&p.parse_object_name(false)?)?;
    if p.peek_token_ref().token == Token::LParen {
        return Err(Error::Unsupported(
            "a column list in COPY INTO (columns are matched by name)".into(),
        ));
    }
    p.expect_keyword_is(Keyword::FROM)?;
    if p.peek_token_ref().token == Token::LParen {
        return Err(Error::Unsupported(
            "COPY INTO ... FROM (SELECT ...): load the files as they are, or use CREATE TABLE ... AS SELECT".into(),
        ));
    }
    let from = p.parse_literal_string()?;
    let mut format = None;
    let (mut pattern, mut files) = (None, Vec::new());
    let (mut format_options, mut copy_options) = (BTreeMap::new(), BTreeMap::new());
    loop {
        if parse_word(p, "FILEFORMAT") {
            p.expect_token(&Token::Eq)?;
            let name = p.parse_identifier()?.value;
            format = Some(
                name.parse::<Format>()
                    .map_err(|e| Error::Syntax(e.to_string()))?,
            );
        } else if p.parse_keyword(Keyword::PATTERN) {
            p.expect_token(&Token::Eq)?;
            pattern = Some(p.parse_literal_string()?);
        } else if p.parse_keyword(Keyword::FILES) {
            p.expect_token(&Token::Eq)?;
            files =
                p.parse_parenthesized(|p| p.parse_comma_separated(Parser::parse_literal_string))?;
        } else if parse_word(p, "FORMAT_OPTIONS") {
            format_options = key_values(p)?;
        } else if p.parse_keyword(Keyword::COPY_OPTIONS) {
            copy_options = key_values(p)?;
        } else if parse_word(p, "VALIDATE") {
            return Err(Error::Unsupported("COPY INTO ... VALIDATE".into()));
        } else {
            break;
        }
    }
    let format = format
        .ok_or_else(|| Error::Syntax("COPY INTO needs FILEFORMAT = CSV, JSON or PARQUET".into()))?;
    if pattern.is_some() && !files.is_empty() {
        return Err(Error::Syntax(
            "COPY INTO takes PATTERN or FILES, not both".into(),
        ));
    }
    Ok(Statement::CopyInto {
        table,
        from,
        format,
        pattern,
        files,
        format_options,
        copy_options,
    })
}

/// Removes `STREAM` before `read_files(...)` (also `STREAM(read_files(...))`)
/// after FROM or JOIN, which the dialect does not know, and remembers where
/// each such read starts.
fn strip_stream(tokens: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, HashSet<(u64, u64)>) {
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut streams = HashSet::new();
    let mut depth = 0usize;
    // Depths of parentheses opened right after STREAM, to drop their closer.
    let mut dropped: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_from = matches!(
            out.iter().rev().find(|t| significant(t)).map(|t| &t.token),
            Some(Token::Word(w)) if matches!(w.keyword, Keyword::FROM | Keyword::JOIN)
        );
        if after_from && is_word(&tokens[i].token, "STREAM") {
            let next = (i + 1..tokens.len()).find(|&k| significant(&tokens[k]));
            let after = next.and_then(|a| (a + 1..tokens.len()).find(|&k| significant(&tokens[k])));
            match (
                next.map(|k| &tokens[k].token),
                after.map(|k| &tokens[k].token),
            ) {
                (Some(Token::LParen), _) => {
                    if let Some(a) = after {
                        let at: Location = tokens[a].span.start;
                        streams.insert((at.line, at.column));
                    }
                    dropped.push(depth);
                    depth += 1;
                    i = next.unwrap_or(i) + 1;
                    continue;
                }
                (Some(Token::Word(_)), Some(Token::LParen)) => {
                    if let Some(n) = next {
                        let at = tokens[n].span.start;
                        streams.insert((at.line, at.column));
                    }
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.saturating_sub(1);
                if dropped.last() == Some(&depth) {
                    dropped.pop();
                    i += 1;
                    continue;
                }
            }
            _ => {}
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    (out, streams)
}

fn select(query: &Query, streams: &HashSet<(u64, u64)>) -> Result<Select> {
    if query.with.is_some() {
        return Err(Error::Unsupported("WITH in the query".into()));
    }
    if query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(Error::Unsupported(
            "ORDER BY, LIMIT or FETCH in the query".into(),
        ));
    }
    let SetExpr::Select(s) = query.body.as_ref() else {
        return Err(Error::Unsupported(format!(
            "{}: the query must be one SELECT ... FROM read_files(...)",
            first_words(&query.body.to_string())
        )));
    };
    if s.distinct.is_some() {
        return Err(Error::Unsupported("SELECT DISTINCT".into()));
    }
    if s.selection.is_some() {
        return Err(Error::Unsupported("WHERE".into()));
    }
    if !matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty()) {
        return Err(Error::Unsupported("GROUP BY".into()));
    }
    if s.having.is_some() || !s.named_window.is_empty() || s.qualify.is_some() {
        return Err(Error::Unsupported("HAVING, WINDOW or QUALIFY".into()));
    }
    if s.from.is_empty() {
        return Err(Error::Syntax(format!(
            "the query `{}` reads no files: write SELECT ... FROM read_files('path', format => ...)",
            s
        )));
    }
    let [from] = s.from.as_slice() else {
        return Err(Error::Unsupported(
            "reading more than one source; select FROM one read_files(...)".into(),
        ));
    };
    if !from.joins.is_empty() {
        return Err(Error::Unsupported("JOIN".into()));
    }
    let items = s.projection.iter().map(item).collect::<Result<Vec<_>>>()?;
    source(&from.relation, streams, items)
}

/// What `FROM relation` reads (`[STREAM] read_files(...)` or
/// `read_kafka(...)`), selected by `items`.
fn source(
    relation: &TableFactor,
    streams: &HashSet<(u64, u64)>,
    items: Vec<Item>,
) -> Result<Select> {
    let TableFactor::Table {
        name,
        args: Some(args),
        ..
    } = relation
    else {
        return Err(Error::Unsupported(format!(
            "FROM {relation}: Sluice reads files with read_files('path', format => ...)"
        )));
    };
    let function = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase());
    let connector = match function.as_deref() {
        Some("read_files") if name.0.len() == 1 => None,
        Some("read_kafka") if name.0.len() == 1 => Some("kafka".to_string()),
        _ => {
            return Err(Error::Unsupported(format!(
                "FROM {name}(...): the table functions Sluice runs are read_files and read_kafka"
            )));
        }
    };
    let stream = name.0[0]
        .as_ident()
        .is_some_and(|i| streams.contains(&(i.span.start.line, i.span.start.column)));
    let mut path = None;
    let mut options = BTreeMap::new();
    for arg in &args.args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) if path.is_none() => {
                path = Some(literal(&v.value)?);
            }
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(Expr::Value(v)),
                ..
            } => {
                if options
                    .insert(name.value.clone(), literal(&v.value)?)
                    .is_some()
                {
                    return Err(Error::Syntax(format!(
                        "read_files option '{}' is given twice",
                        name.value
                    )));
                }
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "read_files argument {other}: give the path, then options as name => 'value'"
                )));
            }
        }
    }
    if connector.is_some() {
        if let Some(p) = path {
            return Err(Error::Syntax(format!(
                "read_kafka takes options only (bootstrapServers => '...', subscribe => '...'), not '{p}'"
            )));
        }
        return Ok(Select {
            projection: Projection { items },
            connector,
            path: String::new(),
            options: kafka_options(options),
            stream,
        });
    }
    let path = path.ok_or_else(|| {
        Error::Syntax("read_files needs a path: read_files('/data/in', format => 'csv')".into())
    })?;
    Ok(Select {
        projection: Projection { items },
        connector: None,
        path,
        options,
        stream,
    })
}

/// `read_kafka`'s option names as the Kafka connector (and Spark's reader)
/// spells them: `bootstrapServers` is `kafka.bootstrap.servers`.
fn kafka_options(options: BTreeMap<String, String>) -> BTreeMap<String, String> {
    options
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "bootstrapServers" => ("kafka.bootstrap.servers".to_string(), v),
            _ => (k, v),
        })
        .collect()
}

fn item(i: &SelectItem) -> Result<Item> {
    match i {
        SelectItem::Wildcard(o) => {
            if o.opt_exclude.is_some()
                || o.opt_except.is_some()
                || o.opt_rename.is_some()
                || o.opt_replace.is_some()
                || o.opt_ilike.is_some()
            {
                return Err(Error::Unsupported(format!("{i}")));
            }
            Ok(Item::Wildcard)
        }
        SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _)
            if n.0.len() == 1 =>
        {
            let column = n.0[0]
                .as_ident()
                .ok_or_else(|| Error::Unsupported(format!("{i}")))?;
            Ok(Item::FieldsOf(column.value.clone()))
        }
        SelectItem::UnnamedExpr(e) => Ok(Item::Expr {
            expr: expr(e)?,
            alias: None,
        }),
        SelectItem::ExprWithAlias { expr: e, alias } => Ok(Item::Expr {
            expr: expr(e)?,
            alias: Some(alias.value.clone()),
        }),
        other => Err(Error::Unsupported(format!(
            "{other} in the select list (supported: *, columns, aliases, CAST, _metadata fields)"
        ))),
    }
}

fn expr(e: &Expr) -> Result<PExpr> {
    match e {
        Expr::Identifier(i) => Ok(PExpr::Column(i.value.clone())),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
            Ok(PExpr::Field(parts[0].value.clone(), parts[1].value.clone()))
        }
        Expr::Nested(inner) => expr(inner),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr: inner,
            data_type,
            format: None,
            ..
        } => Ok(PExpr::Cast(Box::new(expr(inner)?), arrow_type(data_type)?)),
        other => Err(Error::Unsupported(format!(
            "{other} in the select list (supported: *, columns, aliases, CAST, _metadata fields)"
        ))),
    }
}

/// The Arrow type of a SQL type, as Databricks maps them.
fn arrow_type(t: &DataType) -> Result<Arrow> {
    let decimal = |info: &ExactNumberInfo| -> Result<Arrow> {
        let (p, s) = match info {
            ExactNumberInfo::None => (10, 0),
            ExactNumberInfo::Precision(p) => (*p, 0),
            ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
        };
        let p = u8::try_from(p).ok().filter(|p| (1..=38).contains(p));
        let s = i8::try_from(s).ok().filter(|s| *s >= 0);
        match (p, s) {
            (Some(p), Some(s)) if s as u8 <= p => Ok(Arrow::Decimal128(p, s)),
            _ => Err(Error::Syntax(format!(
                "{t}: precision 1 to 38, scale 0 to precision"
            ))),
        }
    };
    Ok(match t {
        DataType::TinyInt(_) => Arrow::Int8,
        DataType::SmallInt(_) => Arrow::Int16,
        DataType::Int(_) | DataType::Integer(_) => Arrow::Int32,
        DataType::BigInt(_) => Arrow::Int64,
        DataType::Float(_) | DataType::Real => Arrow::Float32,
        DataType::Double(_) | DataType::DoublePrecision => Arrow::Float64,
        DataType::Boolean | DataType::Bool => Arrow::Boolean,
        DataType::String(_) | DataType::Varchar(_) | DataType::Text => Arrow::Utf8,
        DataType::Date => Arrow::Date32,
        DataType::Timestamp(_, _) => Arrow::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::TimestampNtz(_) => Arrow::Timestamp(TimeUnit::Microsecond, None),
        DataType::Decimal(info) | DataType::Dec(info) | DataType::Numeric(info) => decimal(info)?,
        DataType::Binary(_) => Arrow::Binary,
        DataType::Custom(name, args)
            if args.is_empty() && name.to_string().eq_ignore_ascii_case("long") =>
        {
            Arrow::Int64
        }
        other => {
            return Err(Error::Unsupported(format!(
                "CAST to {other} (supported: TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s), BOOLEAN, STRING, DATE, TIMESTAMP, TIMESTAMP_NTZ, BINARY)"
            )));
        }
    })
}

#[cfg(test)]
mod tests;
