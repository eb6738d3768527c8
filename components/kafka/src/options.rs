//! The connector's options, by the names Spark's and Databricks' Kafka
//! source uses (`kafka.bootstrap.servers`, `subscribe`, `startingOffsets`,
//! ...), checked once with errors that say what to fix.

use std::collections::BTreeMap;

use arrow_schema::{DataType, FieldRef, Schema};
use regex::Regex;
use sluice_connector_sdk::Error;
use sluice_formats::csv::Syntax;
use sluice_formats::hints::parse_schema_hints;
pub use sluice_formats::objects::Mode;

use crate::client::Address;

/// Which topics are read.
#[derive(Debug, Clone)]
pub enum Topics {
    /// These topics.
    Subscribe(Vec<String>),
    /// Every topic whose whole name matches.
    Pattern(Regex),
    /// These partitions.
    Assign(BTreeMap<String, Vec<i32>>),
}

/// Where reading starts or ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// The first offset still kept.
    Earliest,
    /// The offset after the last record.
    Latest,
    /// Per topic and partition: an offset, or -2 (earliest) / -1 (latest);
    /// partitions not named take the default.
    Offsets(BTreeMap<String, BTreeMap<i32, i64>>),
    /// The first offset whose timestamp is at or after this (ms).
    Timestamp(i64),
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Name and password in one message.
    Plain,
    /// SCRAM with SHA-256.
    ScramSha256,
    /// SCRAM with SHA-512.
    ScramSha512,
}

impl Mechanism {
    /// Its name in the protocol.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials.
#[derive(Clone)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The user.
    pub username: String,
    /// The password (from a secret).
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How a record's value becomes columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// `value` as bytes, as Spark gives it.
    Raw,
    /// `value` as UTF-8 text.
    Text,
    /// `value` as a JSON object whose keys become columns.
    Json,
    /// `value` as one CSV record whose fields become columns `_c0`, `_c1`,
    /// ... (as Spark names a headerless file's).
    Csv,
}

/// How CSV values are split (`valueFormat=csv`), by the files connector's
/// option names.
#[derive(Debug, Clone)]
pub struct CsvValues {
    /// `sep` / `delimiter`, `quote`, `escape`.
    pub syntax: Syntax,
    /// `nullValue`: a field equal to it is null (default: empty).
    pub null_value: String,
}

/// How JSON or CSV values become columns (`valueFormat=json|csv`): the
/// files connector's reader options, by the same names.
#[derive(Debug, Clone)]
pub struct ValueOptions {
    /// With `valueFormat=csv`, how values are split.
    pub csv: Option<CsvValues>,
    /// `inferColumnTypes`: infer types; otherwise every leaf is a string.
    pub infer_types: bool,
    /// `schemaHints`: types over inferred ones, by column name.
    pub hints: Vec<(String, DataType)>,
    /// `mode`: what a value that is not a JSON object does.
    pub mode: Mode,
    /// `rescuedDataColumn` (default `_rescued_data`): where keys the schema
    /// lacks, values of the wrong type and (PERMISSIVE) malformed values go.
    pub rescue: String,
    /// `valueEnvelope=debezium`: values are Debezium change events, read
    /// as their rows ([`crate::envelope`]).
    pub debezium: bool,
    /// The data columns to read with: the schema the host gives a read
    /// (`schema`), without the columns the connector appends.
    pub data: Option<Vec<FieldRef>>,
    /// The records `discover` infers the data columns from (`plan`, which
    /// the host adds): a plan's, none (`null`), or without it the records a
    /// batch read would read.
    pub sample: Option<Option<String>>,
}

/// Everything the options say.
#[derive(Debug, Clone)]
pub struct Options {
    /// Brokers to bootstrap from.
    pub bootstrap: Vec<Address>,
    /// The topics.
    pub topics: Topics,
    /// Where a stream's first batch, or a batch read, starts (`None`: the
    /// mode's default, latest for streams and earliest for batch reads).
    pub starting: Option<Bound>,
    /// Where a batch read ends.
    pub ending: Bound,
    /// At most this many records per batch, over all partitions.
    pub max_offsets_per_trigger: Option<u64>,
    /// Fail when offsets were deleted before they were read.
    pub fail_on_data_loss: bool,
    /// Add the records' headers as a column.
    pub include_headers: bool,
    /// TLS to the brokers (`kafka.security.protocol` SSL or SASL_SSL).
    pub tls: bool,
    /// SASL credentials, with SASL_PLAINTEXT or SASL_SSL.
    pub sasl: Option<Sasl>,
    /// How values become columns.
    pub value_format: ValueFormat,
    /// With `valueFormat` json or csv, how.
    pub values: Option<ValueOptions>,
    /// The consumer group each committed batch's end offsets are committed
    /// to (`kafka.group.id`), so that lag tools see the stream; the
    /// checkpoint, not the group, is where the stream resumes.
    pub group_id: Option<String>,
    /// Bytes one fetch asks for.
    pub fetch_max_bytes: i32,
    /// How long a fetch waits for new records, in ms.
    pub fetch_max_wait_ms: i32,
}

/// The options this connector knows, for the error that names an unknown one.
pub const KNOWN: &[&str] = &[
    "kafka.bootstrap.servers",
    "subscribe",
    "subscribePattern",
    "assign",
    "startingOffsets",
    "startingTimestamp",
    "endingOffsets",
    "maxOffsetsPerTrigger",
    "failOnDataLoss",
    "includeHeaders",
    "kafka.security.protocol",
    "kafka.sasl.mechanism",
    "kafka.sasl.jaas.config",
    "kafka.sasl.username",
    "kafka.sasl.password",
    "valueFormat",
    "valueEnvelope",
    "kafka.fetch.max.bytes",
    "kafka.fetch.max.wait.ms",
    "kafka.group.id",
    "inferColumnTypes",
    "schemaHints",
    "mode",
    "rescuedDataColumn",
    "schemaEvolutionMode",
    "sep",
    "delimiter",
    "quote",
    "escape",
    "nullValue",
];

/// Options that apply only with `valueFormat=csv`.
const CSV_ONLY: &[&str] = &["sep", "delimiter", "quote", "escape", "nullValue"];

/// Options that apply only to values parsed into columns (`valueFormat`
/// json or csv).
const PARSED_ONLY: &[&str] = &[
    "valueEnvelope",
    "inferColumnTypes",
    "schemaHints",
    "mode",
    "rescuedDataColumn",
    "schemaEvolutionMode",
];

fn config(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

fn flag(name: &str, value: &str) -> Result<bool, Error> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(config(format!("{name}={value}: use true or false"))),
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| config(format!("{name}={value}: expected a whole number")))
}

/// Parses `host:port[,host:port...]`.
pub fn servers(text: &str) -> Result<Vec<Address>, Error> {
    let mut out = Vec::new();
    for s in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| {
            config(format!(
                "kafka.bootstrap.servers: '{s}' has no port; write host:port, e.g. broker-1:9092"
            ))
        })?;
        let port = port
            .parse()
            .map_err(|_| config(format!("kafka.bootstrap.servers: '{s}' has no valid port")))?;
        out.push(Address {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        });
    }
    if out.is_empty() {
        return Err(config(
            "give kafka.bootstrap.servers, e.g. kafka.bootstrap.servers=broker-1:9092",
        ));
    }
    Ok(out)
}

fn offsets_json(name: &str, text: &str) -> Result<BTreeMap<String, BTreeMap<i32, i64>>, Error> {
    let parsed: BTreeMap<String, BTreeMap<String, i64>> = serde_json::from_str(text).map_err(|e| {
        config(format!(
            "{name}: '{text}' is not earliest, latest or JSON like {{\"events\":{{\"0\":23,\"1\":-2}}}}: {e}"
        ))
    })?;
    let mut out = BTreeMap::new();
    for (topic, partitions) in parsed {
        let mut ps = BTreeMap::new();
        for (p, offset) in partitions {
            let p: i32 = p.parse().map_err(|_| {
                config(format!(
                    "{name}: topic '{topic}' has partition '{p}', not a number"
                ))
            })?;
            if offset < -2 {
                return Err(config(format!(
                    "{name}: topic '{topic}' partition {p}: offset {offset}; use an offset, -2 (earliest) or -1 (latest)"
                )));
            }
            ps.insert(p, offset);
        }
        out.insert(topic, ps);
    }
    Ok(out)
}

fn bound(name: &str, text: &str) -> Result<Bound, Error> {
    match text.trim().to_ascii_lowercase().as_str() {
        "earliest" => Ok(Bound::Earliest),
        "latest" => Ok(Bound::Latest),
        _ => Ok(Bound::Offsets(offsets_json(name, text)?)),
    }
}

/// `username="..." password="..."` out of a JAAS line.
fn jaas(text: &str) -> Result<(String, String), Error> {
    let field = |key: &str| -> Option<String> {
        let at = text.find(&format!("{key}="))? + key.len() + 1;
        let rest = text[at..].strip_prefix('"')?;
        Some(rest[..rest.find('"')?].to_string())
    };
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err(config(
            "kafka.sasl.jaas.config: expected ... username=\"USER\" password=\"${secret:NAME}\";",
        )),
    }
}

/// One ASCII character, for a CSV option.
fn character(name: &str, value: &str) -> Result<u8, Error> {
    let value = if value == "\\t" { "\t" } else { value };
    match value.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(config(format!("{name}={value}: give one ASCII character"))),
    }
}

/// How CSV values are split, from the options `o`.
fn csv_values(o: &BTreeMap<&str, String>) -> Result<CsvValues, Error> {
    let mut syntax = Syntax::default();
    if let Some((k, v)) = ["sep", "delimiter"]
        .into_iter()
        .find_map(|k| o.get(k).map(|v| (k, v)))
    {
        syntax.delimiter = character(k, v)?;
    }
    if let Some(v) = o.get("quote") {
        syntax.quote = character("quote", v)?;
    }
    if let Some(v) = o.get("escape") {
        let escape = character("escape", v)?;
        // Equal to the quote: the doubled-quote convention.
        syntax.escape = (escape != syntax.quote).then_some(escape);
    }
    Ok(CsvValues {
        syntax,
        null_value: o.get("nullValue").cloned().unwrap_or_default(),
    })
}

/// The options of values parsed into columns, from the options `o` and
/// the config `object` (where the host puts `schema` and `plan`).
fn value_options(
    o: &BTreeMap<&str, String>,
    object: &serde_json::Map<String, serde_json::Value>,
    format: ValueFormat,
) -> Result<ValueOptions, Error> {
    let rescue = match o.get("rescuedDataColumn").map(|r| r.trim()) {
        None => "_rescued_data".to_string(),
        Some("") => return Err(config("rescuedDataColumn needs a column name")),
        Some(r) => r.to_string(),
    };
    if let Some(mode) = o.get("schemaEvolutionMode") {
        // The host's schema log applies it; checked here so that a typo
        // fails before anything is read.
        const MODES: &[&str] = &[
            "addNewColumns",
            "addNewColumnsWithTypeWidening",
            "rescue",
            "failOnNewColumns",
            "none",
        ];
        if !MODES.iter().any(|m| m.eq_ignore_ascii_case(mode)) {
            return Err(config(format!(
                "schemaEvolutionMode={mode}: use {}",
                MODES.join(", ")
            )));
        }
    }
    let data = match object.get("schema") {
        None => None,
        Some(s) => {
            let schema: Schema = serde_json::from_value(s.clone())
                .map_err(|e| config(format!("the schema the host gave is not a schema: {e}")))?;
            let appended = sluice_files_contract::appended(&schema);
            Some(
                schema
                    .fields()
                    .iter()
                    .filter(|f| !appended.contains(&f.name().as_str()))
                    .cloned()
                    .collect(),
            )
        }
    };
    let sample = match object.get("plan") {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(p)) => Some(Some(p.clone())),
        Some(other) => Some(Some(other.to_string())),
    };
    let debezium = match o.get("valueEnvelope").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "none" => false,
        Some(v) if v == "debezium" && format == ValueFormat::Json => true,
        Some(v) if v == "debezium" => {
            return Err(config(
                "valueEnvelope=debezium reads JSON change events: add valueFormat=json",
            ));
        }
        Some(v) => return Err(config(format!("valueEnvelope={v}: use none or debezium"))),
    };
    Ok(ValueOptions {
        debezium,
        csv: match format {
            ValueFormat::Csv => Some(csv_values(o)?),
            _ => None,
        },
        infer_types: match o.get("inferColumnTypes") {
            Some(v) => flag("inferColumnTypes", v)?,
            None => true,
        },
        hints: match o.get("schemaHints") {
            Some(h) => parse_schema_hints(h).map_err(config)?,
            None => vec![],
        },
        mode: match o.get("mode") {
            Some(m) => Mode::parse("mode", m).map_err(config)?,
            None => Mode::FailFast,
        },
        rescue,
        data,
        sample,
    })
}

impl Options {
    /// Parses the config: a JSON object of options, and what the host adds
    /// (`schema`, `plan`), which only `valueFormat=json` uses.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| config(format!("the config is not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| config("the config must be a JSON object of options"))?;
        let mut o: BTreeMap<&str, String> = BTreeMap::new();
        for (k, v) in object {
            if k == "schema" || k == "plan" {
                continue;
            }
            if !KNOWN.contains(&k.as_str()) {
                return Err(config(format!(
                    "unknown option '{k}'; the Kafka connector knows {}",
                    KNOWN.join(", ")
                )));
            }
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => v.to_string(),
                serde_json::Value::Object(_) => v.to_string(),
                _ => return Err(config(format!("option '{k}' must be a string"))),
            };
            o.insert(k.as_str(), v);
        }
        let bootstrap = servers(o.get("kafka.bootstrap.servers").map_or("", |s| s.as_str()))?;
        let chosen: Vec<&str> = ["subscribe", "subscribePattern", "assign"]
            .into_iter()
            .filter(|k| o.contains_key(k))
            .collect();
        let topics = match chosen.as_slice() {
            ["subscribe"] => {
                let ts: Vec<String> = o["subscribe"]
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                if ts.is_empty() {
                    return Err(config("subscribe: name at least one topic"));
                }
                Topics::Subscribe(ts)
            }
            ["subscribePattern"] => {
                let p = &o["subscribePattern"];
                Topics::Pattern(
                    Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| config(format!("subscribePattern '{p}': {e}")))?,
                )
            }
            ["assign"] => {
                let parsed: BTreeMap<String, Vec<i32>> = serde_json::from_str(&o["assign"])
                    .map_err(|e| {
                        config(format!(
                            "assign: expected JSON like {{\"events\":[0,1]}}: {e}"
                        ))
                    })?;
                Topics::Assign(parsed)
            }
            [] => {
                return Err(config(
                    "say which topics to read: subscribe=TOPIC[,TOPIC], subscribePattern=REGEX or assign={\"TOPIC\":[0,1]}",
                ));
            }
            _ => {
                return Err(config(format!(
                    "give only one of subscribe, subscribePattern and assign (got {})",
                    chosen.join(", ")
                )));
            }
        };
        let starting = match (o.get("startingOffsets"), o.get("startingTimestamp")) {
            (Some(_), Some(_)) => {
                return Err(config(
                    "give startingOffsets or startingTimestamp, not both",
                ));
            }
            (Some(s), None) => Some(bound("startingOffsets", s)?),
            (None, Some(t)) => Some(Bound::Timestamp(number("startingTimestamp", t)?)),
            (None, None) => None,
        };
        let ending = match o.get("endingOffsets") {
            Some(s) => match bound("endingOffsets", s)? {
                Bound::Earliest => {
                    return Err(config(
                        "endingOffsets=earliest reads nothing; use latest or offsets",
                    ));
                }
                b => b,
            },
            None => Bound::Latest,
        };
        let max_offsets_per_trigger = match o.get("maxOffsetsPerTrigger") {
            Some(v) => {
                let n: u64 = number("maxOffsetsPerTrigger", v)?;
                if n == 0 {
                    return Err(config("maxOffsetsPerTrigger must be at least 1"));
                }
                Some(n)
            }
            None => None,
        };
        let protocol = o
            .get("kafka.security.protocol")
            .map_or("PLAINTEXT".to_string(), |p| p.to_ascii_uppercase());
        let (tls, sasl_on) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(config(format!(
                    "kafka.security.protocol={other}: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                )));
            }
        };
        let sasl = if sasl_on {
            let mechanism = match o
                .get("kafka.sasl.mechanism")
                .map_or("PLAIN".to_string(), |m| m.to_ascii_uppercase())
                .as_str()
            {
                "PLAIN" => Mechanism::Plain,
                "SCRAM-SHA-256" => Mechanism::ScramSha256,
                "SCRAM-SHA-512" => Mechanism::ScramSha512,
                other => {
                    return Err(config(format!(
                        "kafka.sasl.mechanism={other}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                    )));
                }
            };
            let (username, password) = match (
                o.get("kafka.sasl.jaas.config"),
                o.get("kafka.sasl.username"),
                o.get("kafka.sasl.password"),
            ) {
                (Some(j), None, None) => jaas(j)?,
                (None, Some(u), Some(p)) => (u.clone(), p.clone()),
                _ => {
                    return Err(config(format!(
                        "kafka.security.protocol={protocol} needs credentials: kafka.sasl.jaas.config, or kafka.sasl.username and kafka.sasl.password (the password from a secret: ${{secret:NAME}})"
                    )));
                }
            };
            Some(Sasl {
                mechanism,
                username,
                password,
            })
        } else {
            if o.contains_key("kafka.sasl.mechanism") || o.contains_key("kafka.sasl.jaas.config") {
                return Err(config(format!(
                    "SASL options are set but kafka.security.protocol={protocol}; use SASL_PLAINTEXT or SASL_SSL"
                )));
            }
            None
        };
        let value_format = match o
            .get("valueFormat")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("raw") => ValueFormat::Raw,
            Some("text") => ValueFormat::Text,
            Some("json") => ValueFormat::Json,
            Some("csv") => ValueFormat::Csv,
            Some(other) => {
                return Err(config(format!(
                    "valueFormat={other}: use raw, text, json or csv"
                )));
            }
        };
        if value_format != ValueFormat::Csv
            && let Some(k) = CSV_ONLY.iter().find(|k| o.contains_key(**k))
        {
            return Err(config(format!(
                "{k} applies to values read as CSV: add valueFormat=csv"
            )));
        }
        let values = match value_format {
            ValueFormat::Json | ValueFormat::Csv => Some(value_options(&o, object, value_format)?),
            ValueFormat::Raw | ValueFormat::Text => {
                if let Some(k) = PARSED_ONLY.iter().find(|k| o.contains_key(**k)) {
                    return Err(config(format!(
                        "{k} applies to values parsed into columns: add valueFormat=json or valueFormat=csv"
                    )));
                }
                None
            }
        };
        Ok(Options {
            bootstrap,
            topics,
            starting,
            ending,
            max_offsets_per_trigger,
            fail_on_data_loss: match o.get("failOnDataLoss") {
                Some(v) => flag("failOnDataLoss", v)?,
                None => true,
            },
            group_id: match o.get("kafka.group.id").map(|g| g.trim()) {
                Some("") => {
                    return Err(config(
                        "kafka.group.id is empty: name the group, or leave the option out",
                    ));
                }
                g => g.map(str::to_string),
            },
            include_headers: match o.get("includeHeaders") {
                Some(v) => flag("includeHeaders", v)?,
                None => false,
            },
            tls,
            sasl,
            value_format,
            values,
            fetch_max_bytes: match o.get("kafka.fetch.max.bytes") {
                Some(v) => number("kafka.fetch.max.bytes", v)?,
                None => 16 << 20,
            },
            fetch_max_wait_ms: match o.get("kafka.fetch.max.wait.ms") {
                Some(v) => number("kafka.fetch.max.wait.ms", v)?,
                None => 500,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_options_parse() {
        let o = Options::parse(
            r#"{"kafka.bootstrap.servers":"a:9092, b:9093","subscribe":"x,y","startingOffsets":"{\"x\":{\"0\":5,\"1\":-2}}","maxOffsetsPerTrigger":"100","schema":{}}"#,
        )
        .unwrap();
        assert_eq!(o.bootstrap.len(), 2);
        assert_eq!(o.bootstrap[1].port, 9093);
        assert!(matches!(o.topics, Topics::Subscribe(ref t) if t == &["x", "y"]));
        let Some(Bound::Offsets(s)) = o.starting else {
            panic!()
        };
        assert_eq!(s["x"][&0], 5);
        assert_eq!(o.max_offsets_per_trigger, Some(100));
        assert!(o.fail_on_data_loss);
    }

    #[test]
    fn bad_options_say_what_to_fix() {
        let e = |t: &str| match Options::parse(t) {
            Err(Error::Config(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(e(r#"{"subscribe":"x"}"#).contains("kafka.bootstrap.servers"));
        assert!(e(r#"{"kafka.bootstrap.servers":"a:1"}"#).contains("subscribe="));
        assert!(
            e(r#"{"kafka.bootstrap.servers":"a:1","subscribe":"x","assign":"{}"}"#)
                .contains("only one")
        );
        assert!(e(r#"{"kafka.bootstrap.servers":"a","subscribe":"x"}"#).contains("no port"));
        assert!(
            e(r#"{"kafka.bootstrap.servers":"a:1","subscribe":"x","bogus":"1"}"#)
                .contains("unknown option 'bogus'")
        );
        assert!(e(r#"{"kafka.bootstrap.servers":"a:1","subscribe":"x","kafka.security.protocol":"SASL_SSL"}"#)
            .contains("needs credentials"));
        assert!(
            e(r#"{"kafka.bootstrap.servers":"a:1","subscribe":"x","kafka.group.id":" "}"#)
                .contains("kafka.group.id is empty")
        );
    }

    #[test]
    fn json_options_need_value_format_json_and_check_their_values() {
        let base = r#""kafka.bootstrap.servers":"a:1","subscribe":"x""#;
        let parse = |extra: &str| Options::parse(&format!("{{{base},{extra}}}"));
        let e = |extra: &str| match parse(extra) {
            Err(Error::Config(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(e(r#""schemaHints":"id int""#).contains("add valueFormat=json"));
        assert!(
            e(r#""valueFormat":"json","schemaEvolutionMode":"addColumns""#)
                .contains("schemaEvolutionMode=addColumns: use addNewColumns")
        );
        assert!(e(r#""valueFormat":"json","mode":"lenient""#).contains("FAILFAST"));
        assert!(e(r#""valueFormat":"json","schemaHints":"id""#).contains("schemaHints"));
        let o = parse(r#""valueFormat":"JSON","schemaHints":"id int","plan":null"#).unwrap();
        let json = o.values.unwrap();
        assert_eq!(json.rescue, "_rescued_data");
        assert_eq!(json.mode, Mode::FailFast);
        assert_eq!(json.hints, vec![("id".to_string(), DataType::Int32)]);
        assert!(matches!(json.sample, Some(None)));
        assert!(json.data.is_none());
    }

    #[test]
    fn csv_options_split_values() {
        let base = r#""kafka.bootstrap.servers":"a:1","subscribe":"x""#;
        let o = Options::parse(&format!(
            r#"{{{base},"valueFormat":"csv","sep":"|","nullValue":"NA","escape":"\\"}}"#
        ))
        .unwrap();
        let csv = o.values.unwrap().csv.unwrap();
        assert_eq!(csv.syntax.delimiter, b'|');
        assert_eq!(csv.syntax.escape, Some(b'\\'));
        assert_eq!(csv.null_value, "NA");
        let e = Options::parse(&format!(r#"{{{base},"valueFormat":"json","sep":";"}}"#));
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("add valueFormat=csv")));
    }

    #[test]
    fn jaas_lines_give_credentials() {
        let (u, p) = jaas(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="u1" password="p w";"#,
        )
        .unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("u1", "p w"));
    }
}
