//! A named pipeline: what `sluice run FILE` runs and what `sluice serve`
//! stores under `PUT /pipelines/{name}`, in TOML or JSON.
//!
//! ```toml
//! mode = "stream"                  # replace | append | copy_into | stream
//! source = "s3://landing/events/"
//! format = "csv"
//! table = "events"                 # a path or URL, or a name under the warehouse
//! schedule = "*/5 * * * *"         # cron, for `sluice serve`
//! # trigger = "continuous"         # or every=30s: a stream that runs until
//! #                                # stopped (`sluice serve` keeps it running)
//! [options]
//! header = "true"
//! maxFilesPerTrigger = "500"
//! ```
//!
//! A pipeline that runs an uploaded connector names it by content hash and
//! lists every capability it grants; secrets are referenced by name
//! (`"${secret:NAME}"` inside the connector config) and only resolved by the
//! host at run time, so a pipeline file never holds one:
//!
//! ```toml
//! mode = "append"
//! table = "s3://lake/orders"
//! [connector]
//! id = "sha256:9f2c..."
//! config = { endpoint = "https://api.example.com", token = "${secret:API_TOKEN}" }
//! [grants]
//! read = ["s3://partner-drop/orders/"]
//! secrets = ["API_TOKEN"]
//! network = ["tls://api-gateway.example.com:443"]
//! network_ca = "/etc/ssl/gateway-ca.pem"   # default: the public roots
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::Format;
use crate::trigger::Trigger;

/// How a pipeline writes its table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// Create or replace the table with everything the source holds.
    #[default]
    Replace,
    /// Append everything the source holds.
    Append,
    /// COPY INTO: files not loaded before, in one batch.
    CopyInto,
    /// Auto Loader: new files in micro-batches; each run processes the
    /// backlog (available-now).
    Stream,
    /// A database's tables, each a stream of its changes (after a
    /// snapshot) applied by key to a table of its own under `table`.
    Cdc,
}

/// The table format a pipeline writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormatName {
    /// Delta Lake.
    #[default]
    Delta,
    /// A plain Parquet dataset.
    Parquet,
    /// An Iceberg table in the engine's catalog.
    Iceberg,
}

/// The connectors the binary carries besides files, by the name a pipeline
/// gives as its connector `id`. Their config is the pipeline's `options`
/// (plus any `[connector] config`), under the option names the connector
/// documents.
pub const BUILTIN_CONNECTORS: &[&str] = &["kafka", "postgres"];

/// The built-in connectors that capture a database's changes
/// (`mode = "cdc"`).
pub const CDC_CONNECTORS: &[&str] = &["postgres"];

/// The column a change stream orders each key's changes by.
pub const CDC_SEQUENCE: &str = "_commit_lsn";

/// What a change stream's rows say they were, and the values that delete a
/// key (a delete, or the old key of an update that changed it).
pub const CDC_CHANGE_TYPE: &str = "_change_type";
const CDC_DELETE_WHEN: &str = "_change_type IN ('delete', 'update_preimage')";
const CDC_TRUNCATE_WHEN: &str = "_change_type = 'truncate'";

/// The column of a change stream's rows naming the columns whose values a
/// change did not carry (TOASTed values an update did not touch).
pub const CDC_UNCHANGED: &str = "_unchanged_columns";

/// Change columns a CDC table does not keep (the commit's position and
/// time it keeps).
const CDC_DROPPED: [&str; 2] = ["_change_type", "_change_seq"];

/// Whether `id` names a built-in connector rather than an upload.
pub fn is_builtin_connector(id: &str) -> bool {
    BUILTIN_CONNECTORS.contains(&id)
}

/// A connector other than the built-in files connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorRef {
    /// `sha256:<hex>` of an uploaded component, or the name of a built-in
    /// one (`kafka`).
    pub id: String,
    /// The connector's configuration.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// The stream to read; the first one when absent.
    #[serde(default)]
    pub stream: Option<String>,
}

/// `connector = "kafka"` or a `[connector]` table.
fn connector_or_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<ConnectorRef>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Name(String),
        Table(ConnectorRef),
    }
    Ok(match Option::<Given>::deserialize(d)? {
        None => None,
        Some(Given::Name(id)) => Some(ConnectorRef::builtin(&id)),
        Some(Given::Table(c)) => Some(c),
    })
}

impl ConnectorRef {
    /// The built-in connector `id`, configured by the pipeline's options.
    pub fn builtin(id: &str) -> Self {
        ConnectorRef {
            id: id.to_string(),
            config: empty_object(),
            stream: None,
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// Capabilities a pipeline grants its connector, beyond reading its source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineGrants {
    /// URL prefixes the connector may read.
    #[serde(default)]
    pub read: Vec<String>,
    /// Secrets the connector config may reference.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Hosts the connector may open TCP connections to:
    /// `kafka://broker-1:9092`, `tcp://*.brokers.example.com:9092`,
    /// `postgres://10.0.0.5` (loopback and private addresses only when
    /// named literally).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<String>,
    /// The roots TLS peers' certificates are checked against: a PEM file,
    /// or PEM text [default: the public roots].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_ca: Option<String>,
    /// A client certificate chain (PEM) the host presents to TLS peers,
    /// usually `"${secret:NAME}"`; with `network_client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_client_cert: Option<String>,
    /// The client certificate's private key (PEM), `"${secret:NAME}"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_client_key: Option<String>,
}

/// The protocols a network grant may name, each TCP to the host and port,
/// and the port each defaults to.
pub const NETWORK_SCHEMES: [(&str, Option<u16>); 6] = [
    ("tcp", None),
    ("tls", None),
    ("kafka", Some(9092)),
    ("postgres", Some(5432)),
    ("postgresql", Some(5432)),
    ("mysql", Some(3306)),
];

/// Whether `grant` is a network grant (`kafka://broker:9092`) rather than
/// a storage prefix to read.
pub fn is_network_grant(grant: &str) -> bool {
    grant.split_once("://").is_some_and(|(scheme, _)| {
        NETWORK_SCHEMES
            .iter()
            .any(|(s, _)| s.eq_ignore_ascii_case(scheme))
    })
}

/// A pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// How it writes the table.
    #[serde(default)]
    pub mode: LoadMode,
    /// Where the files are (a file, directory or glob; local or a URL).
    #[serde(default)]
    pub source: Option<String>,
    /// The input format of the files.
    #[serde(default)]
    pub format: Option<Format>,
    /// Reader and incremental options by Auto Loader's names; COPY INTO's
    /// `force` and `mergeSchema` too.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The table: a path or URL, or a bare name under the warehouse root.
    pub table: String,
    /// The table format.
    #[serde(default)]
    pub table_format: TableFormatName,
    /// Where a stream keeps its progress [default: with the table].
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// A cron schedule (five or six fields) for `sluice serve`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// When a stream runs its batches: `available-now` (the default: the
    /// backlog, then stop), `every=30s` or `continuous`, which run until
    /// stopped; `sluice serve` keeps such a pipeline running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Another connector than files: a built-in one by name
    /// (`connector = "kafka"`, configured by `options`) or a table
    /// (`[connector] id = "sha256:..."`, an upload, with its `config`).
    #[serde(default, deserialize_with = "connector_or_name")]
    pub connector: Option<ConnectorRef>,
    /// What the connector is granted.
    #[serde(default)]
    pub grants: PipelineGrants,
    /// COPY INTO's `FILES`: only these files, relative to the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// AUTO CDC: the stream's rows are changes applied to the table by key
    /// instead of appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyChanges>,
    /// `mode = "cdc"`: the source tables, `schema.table` or `schema.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// `mode = "cdc"`: 1 keeps each key's current row, 2 every version
    /// [default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scd_type: Option<u8>,
}

/// Databricks' AUTO CDC (`APPLY CHANGES`) in a pipeline file:
///
/// ```toml
/// [apply]
/// keys = ["id"]                   # KEYS (id)
/// sequence_by = "ts"              # SEQUENCE BY ts
/// scd_type = 2                    # STORED AS SCD TYPE 2 (default 1)
/// delete_when = "op = 'DELETE'"   # APPLY AS DELETE WHEN ...; or op IN ('D', 'X')
/// except_columns = ["op"]         # COLUMNS * EXCEPT (op)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyChanges {
    /// The columns that identify a row.
    pub keys: Vec<String>,
    /// The column that orders a key's changes.
    pub sequence_by: String,
    /// 1: the current row per key; 2: every version.
    #[serde(default = "scd_one")]
    pub scd_type: u8,
    /// Which rows are deletes: `column = 'value'` or `column IN ('a', 'b')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_when: Option<String>,
    /// Input columns the table does not keep.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except_columns: Vec<String>,
    /// `APPLY AS TRUNCATE WHEN`: rows that empty the table (SCD type 1) or
    /// end every current version (SCD type 2), written as `delete_when` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_when: Option<String>,
    /// The input column (a list of names) naming, per change, the columns
    /// whose values it did not carry (a TOASTed value that did not
    /// change): they keep the key's value before it. Not kept in the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged_columns: Option<String>,
}

fn scd_one() -> u8 {
    1
}

impl ApplyChanges {
    /// `delete_when` as its column and the values that mark a delete.
    pub fn delete_condition(&self) -> Result<Option<(String, Vec<String>)>> {
        condition("delete_when", self.delete_when.as_deref())
    }

    /// [`ApplyChanges::delete_condition`] of `truncate_when`.
    pub fn truncate_condition(&self) -> Result<Option<(String, Vec<String>)>> {
        condition("truncate_when", self.truncate_when.as_deref())
    }

    fn validate(&self, p: &Pipeline) -> Result<()> {
        let invalid = |m: &str| Err(Error::Invalid(format!("pipeline: apply: {m}")));
        if p.mode != LoadMode::Stream {
            return invalid("changes are applied by key in a stream: set mode = \"stream\"");
        }
        if p.table_format != TableFormatName::Delta {
            return invalid("changes are applied by key to a Delta table: drop table_format");
        }
        if self.keys.is_empty() || self.keys.iter().any(|k| k.trim().is_empty()) {
            return invalid("give the key columns: keys = [\"id\"]");
        }
        if self.sequence_by.trim().is_empty() {
            return invalid("give the column that orders a key's changes: sequence_by = \"ts\"");
        }
        if !matches!(self.scd_type, 1 | 2) {
            return invalid("scd_type is 1 (the current row per key) or 2 (every version)");
        }
        for c in &self.except_columns {
            if self.keys.contains(c) || *c == self.sequence_by {
                return invalid(&format!(
                    "except_columns drops '{c}', a key or the sequence, which the table keeps"
                ));
            }
        }
        self.delete_condition()?;
        self.truncate_condition()?;
        Ok(())
    }
}

/// `column = 'value'` or `column IN ('a', 'b')` of apply option `what`.
fn condition(what: &str, text: Option<&str>) -> Result<Option<(String, Vec<String>)>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let bad = || {
        Error::Invalid(format!(
            "pipeline: apply.{what} = {text:?}: write `column = 'value'` or `column IN ('a', 'b')`"
        ))
    };
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let (column, rest, list) = if let Some(i) = upper.find(" IN ") {
        (&t[..i], &t[i + 4..], true)
    } else if let Some(i) = t.find('=') {
        (&t[..i], &t[i + 1..], false)
    } else {
        return Err(bad());
    };
    let column = column.trim();
    if column.is_empty() || !column.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(bad());
    }
    let rest = rest.trim();
    let inner = if list {
        rest.strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(bad)?
    } else {
        rest
    };
    let values = inner
        .split(',')
        .map(|v| {
            let v = v.trim();
            match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(quoted) => Ok(quoted.replace("''", "'")),
                None if !v.is_empty()
                    && v.chars().all(|c| c.is_alphanumeric() || "-._".contains(c)) =>
                {
                    Ok(v.to_string())
                }
                None => Err(bad()),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if values.is_empty() || (!list && values.len() != 1) {
        return Err(bad());
    }
    Ok(Some((column.to_string(), values)))
}

impl Pipeline {
    /// A pipeline into `table` with every other field at its default
    /// (replace mode, no source yet).
    pub fn new(table: &str) -> Self {
        Pipeline {
            mode: LoadMode::default(),
            source: None,
            format: None,
            options: BTreeMap::new(),
            table: table.to_string(),
            table_format: TableFormatName::default(),
            checkpoint: None,
            schedule: None,
            trigger: None,
            connector: None,
            grants: PipelineGrants::default(),
            files: Vec::new(),
            apply: None,
            tables: Vec::new(),
            scd_type: None,
        }
    }

    /// Parses a pipeline from TOML or JSON (JSON when it starts with `{`).
    pub fn parse(text: &str) -> Result<Self> {
        let p: Pipeline = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| Error::Invalid(format!("pipeline JSON: {e}")))?
        } else {
            toml::from_str(text).map_err(|e| Error::Invalid(format!("pipeline TOML: {e}")))?
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks what can be checked without running anything.
    pub fn validate(&self) -> Result<()> {
        if self.table.trim().is_empty() {
            return Err(Error::Invalid("pipeline: `table` is empty".into()));
        }
        if self.table_format == TableFormatName::Iceberg {
            crate::table::TableRef::parse_iceberg(&self.table)?;
        } else {
            crate::table::TableRef::parse(&self.table)?;
        }
        match (&self.connector, &self.source) {
            (None, None) => {
                return Err(Error::Invalid(
                    "pipeline: give a `source` (files) or a `[connector]`".into(),
                ));
            }
            (None, Some(_)) if self.format.is_none() => {
                return Err(Error::Invalid(
                    "pipeline: give the input `format` (csv, json or parquet)".into(),
                ));
            }
            (Some(c), _) => {
                if self.mode == LoadMode::CopyInto {
                    return Err(Error::Invalid(
                        "pipeline: mode copy_into needs the files connector; a connector runs in replace, append or stream mode".into(),
                    ));
                }
                let hex = c.id.strip_prefix("sha256:").unwrap_or("");
                let uploaded = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
                if !uploaded && !is_builtin_connector(&c.id) {
                    return Err(Error::Invalid(format!(
                        "pipeline: connector id '{}' must be sha256:<64 hex digits>, as `GET /connectors` lists it, or a built-in connector ({})",
                        c.id,
                        BUILTIN_CONNECTORS.join(", ")
                    )));
                }
            }
            _ => {}
        }
        if self.mode == LoadMode::Cdc {
            self.validate_cdc()?;
        } else if !self.tables.is_empty() || self.scd_type.is_some() {
            return Err(Error::Invalid(
                "pipeline: `tables` and `scd_type` belong to mode = \"cdc\"".into(),
            ));
        }
        if self.checkpoint.is_some() && !self.streams() {
            return Err(Error::Invalid(
                "pipeline: `checkpoint` belongs to mode = \"stream\"".into(),
            ));
        }
        if let Some(trigger) = &self.trigger {
            if !self.streams() {
                return Err(Error::Invalid(
                    "pipeline: `trigger` belongs to mode = \"stream\" or \"cdc\"; a batch load runs once"
                        .into(),
                ));
            }
            if trigger.runs_until_stopped() && self.schedule.is_some() {
                return Err(Error::Invalid(format!(
                    "pipeline: trigger = \"{trigger}\" runs until stopped, so a `schedule` has nothing to start; drop one of them"
                )));
            }
        }
        if let Some(a) = &self.apply {
            a.validate(self)?;
        }
        if !self.files.is_empty() && self.mode != LoadMode::CopyInto {
            return Err(Error::Invalid(
                "pipeline: `files` belongs to mode = \"copy_into\"".into(),
            ));
        }
        for s in &self.grants.secrets {
            if !valid_secret_name(s) {
                return Err(Error::Invalid(format!(
                    "pipeline: secret name '{s}' may hold only letters, digits, '_', '-' and '.'"
                )));
            }
        }
        if let Some(c) = &self.connector {
            for name in secret_refs(&c.config) {
                if !self.grants.secrets.contains(&name) {
                    return Err(Error::Invalid(format!(
                        "pipeline: the connector config references secret '{name}', which [grants] secrets does not list"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether it runs streams (mode `stream` or `cdc`), which keep a
    /// checkpoint and follow a trigger.
    pub fn streams(&self) -> bool {
        matches!(self.mode, LoadMode::Stream | LoadMode::Cdc)
    }

    fn validate_cdc(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::Invalid(format!("pipeline: mode = \"cdc\": {m}")));
        match &self.connector {
            Some(c) if CDC_CONNECTORS.contains(&c.id.as_str()) => {}
            _ => {
                return invalid(format!(
                    "name the database's connector: connector = \"{}\"",
                    CDC_CONNECTORS[0]
                ));
            }
        }
        if self.source.is_none() {
            return invalid(
                "give the database as source = \"postgres://user@host:5432/database\"".into(),
            );
        }
        if self.tables.is_empty() {
            return invalid(
                "list the tables: tables = [\"public.orders\"] (or [\"public.*\"])".into(),
            );
        }
        if !matches!(self.scd_type, None | Some(1 | 2)) {
            return invalid("scd_type is 1 (the current row per key) or 2 (every version)".into());
        }
        if self.apply.is_some() {
            return invalid(
                "the keys and order come from the database: drop [apply] and set scd_type".into(),
            );
        }
        if self.table_format != TableFormatName::Delta {
            return invalid("changes are applied by key to Delta tables: drop table_format".into());
        }
        Ok(())
    }

    /// The stream of source table `stream` of a `cdc` pipeline: its
    /// changes applied by `keys` (the table's primary key) to the table
    /// named after it under this pipeline's `table`, with its own
    /// checkpoint under this one's when one is given.
    pub fn cdc_stream(&self, stream: &str, keys: &[String]) -> Result<Pipeline> {
        if keys.is_empty() {
            return Err(Error::Invalid(format!(
                "source table {stream} has no primary key, so its changes cannot be applied by key: add one, or set REPLICA IDENTITY FULL on it (every column is then the key)"
            )));
        }
        let leaf = cdc_table_name(stream);
        let options = self.cdc_options(stream);
        let mut connector = self
            .connector
            .clone()
            .unwrap_or_else(|| ConnectorRef::builtin(CDC_CONNECTORS[0]));
        connector.stream = Some(stream.to_string());
        let p = Pipeline {
            mode: LoadMode::Stream,
            source: None,
            options,
            table: format!("{}/{leaf}", self.table.trim_end_matches('/')),
            checkpoint: self
                .checkpoint
                .as_ref()
                .map(|c| format!("{}/{leaf}", c.trim_end_matches('/'))),
            connector: Some(connector),
            apply: Some(ApplyChanges {
                keys: keys.to_vec(),
                sequence_by: CDC_SEQUENCE.into(),
                scd_type: self.scd_type.unwrap_or(1),
                delete_when: Some(CDC_DELETE_WHEN.into()),
                except_columns: CDC_DROPPED.iter().map(|c| c.to_string()).collect(),
                truncate_when: Some(CDC_TRUNCATE_WHEN.into()),
                unchanged_columns: Some(CDC_UNCHANGED.into()),
            }),
            tables: Vec::new(),
            scd_type: None,
            ..self.clone()
        };
        p.validate()?;
        Ok(p)
    }

    /// The connector's config for `tables` of a `cdc` pipeline: its
    /// options, the database (`source`) as `url`, and `tables`.
    fn cdc_options(&self, tables: &str) -> BTreeMap<String, String> {
        let mut options = self.options.clone();
        options.insert("url".into(), self.source.clone().unwrap_or_default());
        options.insert("tables".into(), tables.to_string());
        options
    }

    /// The pipeline that lists a `cdc` pipeline's streams: its connector
    /// on its database and tables.
    pub fn cdc_discovery(&self) -> Pipeline {
        let options = self.cdc_options(&self.tables.join(","));
        Pipeline {
            mode: LoadMode::Append,
            source: None,
            options,
            checkpoint: None,
            trigger: None,
            schedule: None,
            tables: Vec::new(),
            scd_type: None,
            ..self.clone()
        }
    }

    /// Whether the pipeline is a stream that runs until stopped (trigger
    /// `continuous` or `every=N`) rather than run by run.
    pub fn runs_until_stopped(&self) -> bool {
        self.trigger
            .as_ref()
            .is_some_and(Trigger::runs_until_stopped)
    }

    /// Whether the pipeline gives its connector more than its own source:
    /// an uploaded connector, read grants or secrets.
    pub fn grants_capabilities(&self) -> bool {
        self.connector.is_some()
            || !self.grants.read.is_empty()
            || !self.grants.secrets.is_empty()
            || !self.grants.network.is_empty()
    }
}

/// The table a source table `schema.table` lands in: its name, with its
/// schema before it unless that is `public`.
pub fn cdc_table_name(stream: &str) -> String {
    let name = stream.strip_prefix("public.").unwrap_or(stream);
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `name` is a usable secret name.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

const SECRET_OPEN: &str = "${secret:";

/// The secret names `config` references as `"${secret:NAME}"` strings.
pub fn secret_refs(config: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(config, &mut |s| {
        if let Some(name) = secret_ref(s) {
            out.push(name.to_string());
        }
    });
    out
}

fn secret_ref(s: &str) -> Option<&str> {
    s.strip_prefix(SECRET_OPEN)?.strip_suffix('}')
}

fn walk(v: &serde_json::Value, f: &mut impl FnMut(&str)) {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, f)),
        serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, f)),
        _ => {}
    }
}

/// Replaces every `"${secret:NAME}"` string in `config` by
/// `resolve(NAME)`; names outside `granted` are refused.
pub fn resolve_secrets(
    config: &serde_json::Value,
    granted: &[String],
    resolve: &impl Fn(&str) -> Option<String>,
) -> Result<serde_json::Value> {
    Ok(match config {
        serde_json::Value::String(s) => match secret_ref(s) {
            Some(name) => {
                if !granted.iter().any(|g| g == name) {
                    return Err(Error::Invalid(format!(
                        "secret '{name}' is not granted to this pipeline"
                    )));
                }
                serde_json::Value::String(resolve(name).ok_or_else(|| {
                    Error::Invalid(format!(
                        "secret '{name}' is not set (in the environment as SLUICE_SECRET_{}, or in the secrets file)",
                        env_name(name)
                    ))
                })?)
            }
            None => config.clone(),
        },
        serde_json::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|v| resolve_secrets(v, granted, resolve))
                .collect::<Result<_>>()?,
        ),
        serde_json::Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_secrets(v, granted, resolve)?)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// The environment variable suffix a secret is read from:
/// `SLUICE_SECRET_<NAME>` with `-` and `.` as `_`, upper-case.
pub fn env_name(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'-' | b'.' => '_',
            b => b.to_ascii_uppercase() as char,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_say_the_same() {
        let t = Pipeline::parse(
            "mode = \"stream\"\nsource = \"in/\"\nformat = \"csv\"\ntable = \"events\"\n[options]\nheader = \"true\"\n",
        )
        .unwrap();
        let j = Pipeline::parse(
            r#"{"mode":"stream","source":"in/","format":"csv","table":"events","options":{"header":"true"}}"#,
        )
        .unwrap();
        assert_eq!(t, j);
        assert_eq!(t.mode, LoadMode::Stream);
        assert!(!t.grants_capabilities());
    }

    #[test]
    fn apply_changes_reads_as_auto_cdc_does_and_says_what_to_fix() {
        let base = "mode = \"stream\"\nsource = \"in/\"\nformat = \"csv\"\ntable = \"t\"\n[apply]\nkeys = [\"id\"]\nsequence_by = \"ts\"\n";
        let p =
            Pipeline::parse(&format!("{base}delete_when = \"op IN ('D', 'x''y', 7)\"\n")).unwrap();
        let a = p.apply.unwrap();
        assert_eq!(a.scd_type, 1);
        assert_eq!(
            a.delete_condition().unwrap(),
            Some(("op".to_string(), vec!["D".into(), "x'y".into(), "7".into()]))
        );
        let e = |s: &str| Pipeline::parse(s).unwrap_err().to_string();
        assert!(e(&format!("{base}delete_when = \"op == \"\n")).contains("column = 'value'"));
        assert!(e(&format!("{base}scd_type = 3\n")).contains("scd_type is 1"));
        assert!(e(&format!("{base}except_columns = [\"ts\"]\n")).contains("'ts'"));
        assert!(e(&base.replace("stream", "append")).contains("mode = \"stream\""));
    }

    #[test]
    fn mistakes_say_what_to_fix() {
        let e = |s: &str| Pipeline::parse(s).unwrap_err().to_string();
        assert!(e("table = \"t\"").contains("give a `source`"));
        assert!(e("table = \"t\"\nsource = \"x\"").contains("format"));
        assert!(
            e("table = \"t\"\nsource = \"x\"\nformat = \"csv\"\nmod = \"append\"").contains("mod")
        );
        assert!(e("table = \"t\"\n[connector]\nid = \"abc\"").contains("sha256:"));
        let id = format!("sha256:{}", "a".repeat(64));
        let unlisted = format!(
            "table = \"t\"\n[connector]\nid = \"{id}\"\nconfig = {{ token = \"${{secret:TOKEN}}\" }}"
        );
        assert!(e(&unlisted).contains("does not list"));
        let copy = format!("table = \"t\"\nmode = \"copy_into\"\n[connector]\nid = \"{id}\"");
        assert!(e(&copy).contains("files connector"));
        assert!(
            Pipeline::parse("table = \"t\"\nmode = \"stream\"\n[connector]\nid = \"kafka\"")
                .is_ok(),
            "a built-in connector streams"
        );
        let named = Pipeline::parse(
            "table = \"t\"\nmode = \"stream\"\nconnector = \"kafka\"\n[options]\nsubscribe = \"e\"",
        )
        .unwrap();
        assert_eq!(named.connector, Some(ConnectorRef::builtin("kafka")));
        assert!(e("table = \"t\"\nconnector = \"nope\"").contains("built-in"));
    }

    #[test]
    fn a_stream_may_run_until_stopped_and_says_so_when_stored() {
        let stream = "table = \"t\"\nmode = \"stream\"\nsource = \"in/\"\nformat = \"json\"\n";
        let p = Pipeline::parse(&format!("{stream}trigger = \"continuous\"")).unwrap();
        assert!(p.runs_until_stopped());
        let stored = serde_json::to_string(&p).unwrap();
        assert!(stored.contains(r#""trigger":"continuous""#), "{stored}");
        assert_eq!(Pipeline::parse(&stored).unwrap(), p);
        let every = Pipeline::parse(&format!("{stream}trigger = \"every=30s\"")).unwrap();
        assert_eq!(
            every.trigger,
            Some(Trigger::Every(std::time::Duration::from_secs(30)))
        );
        assert!(!Pipeline::parse(stream).unwrap().runs_until_stopped());
        let e = |s: &str| Pipeline::parse(s).unwrap_err().to_string();
        assert!(e(&format!("{stream}trigger = \"often\"")).contains("every=10s"));
        let scheduled = format!("{stream}trigger = \"continuous\"\nschedule = \"* * * * *\"");
        assert!(e(&scheduled).contains("drop one"));
        let batch = "table = \"t\"\nsource = \"in/\"\nformat = \"json\"\ntrigger = \"continuous\"";
        assert!(e(batch).contains("belongs to mode"));
    }

    #[test]
    fn secrets_resolve_only_when_granted() {
        let config = serde_json::json!({"a": ["${secret:K}", 1], "b": "plain"});
        assert_eq!(secret_refs(&config), vec!["K".to_string()]);
        let got = resolve_secrets(&config, &["K".into()], &|n| Some(format!("<{n}>"))).unwrap();
        assert_eq!(got, serde_json::json!({"a": ["<K>", 1], "b": "plain"}));
        assert!(resolve_secrets(&config, &[], &|_| Some("x".into())).is_err());
        let missing = resolve_secrets(&config, &["K".into()], &|_| None).unwrap_err();
        assert!(missing.to_string().contains("SLUICE_SECRET_K"));
        assert_eq!(env_name("api-key.v2"), "API_KEY_V2");
    }

    #[test]
    fn network_grants_are_told_from_storage_prefixes_by_scheme() {
        assert!(is_network_grant("Kafka://b:9092"));
        assert!(is_network_grant("tcp://*.example.com:*"));
        assert!(!is_network_grant("s3://bucket/in/"));
        assert!(!is_network_grant("/data/in"));
    }

    #[test]
    fn a_cdc_pipeline_becomes_one_keyed_stream_per_table() {
        let p = Pipeline::parse(
            "mode = \"cdc\"\nconnector = \"postgres\"\nsource = \"postgres://r@db:5432/shop\"\n\
             tables = [\"public.orders\", \"sales.orders\"]\ntable = \"lake/shop\"\nscd_type = 2\n\
             [options]\npassword = \"${secret:PG}\"\n",
        )
        .unwrap();
        let s = p.cdc_stream("sales.orders", &["id".into()]).unwrap();
        assert_eq!(s.mode, LoadMode::Stream);
        assert_eq!(s.table, "lake/shop/sales_orders");
        assert_eq!(s.options["url"], "postgres://r@db:5432/shop");
        assert_eq!(s.options["tables"], "sales.orders");
        let apply = s.apply.unwrap();
        assert_eq!(
            (apply.scd_type, apply.sequence_by.as_str()),
            (2, CDC_SEQUENCE)
        );
        assert_eq!(
            apply.delete_condition().unwrap().unwrap().1,
            ["delete", "update_preimage"]
        );
        assert_eq!(
            p.cdc_stream("public.orders", &["id".into()]).unwrap().table,
            "lake/shop/orders"
        );
        let e = p.cdc_stream("public.logs", &[]).unwrap_err().to_string();
        assert!(e.contains("no primary key"), "{e}");

        let bad = |text: &str| Pipeline::parse(text).unwrap_err().to_string();
        let base = "mode = \"cdc\"\nconnector = \"postgres\"\nsource = \"postgres://r@db/shop\"\ntable = \"t\"\n";
        assert!(bad(base).contains("list the tables"));
        assert!(bad(&format!("{base}tables = [\"a\"]\nscd_type = 3\n")).contains("scd_type is 1"));
        assert!(bad("mode = \"append\"\nsource = \"x\"\nformat = \"csv\"\ntable = \"t\"\ntables = [\"a\"]\n").contains("belong to mode = \"cdc\""));
    }
}
