//! The built-in Kafka connector: reads topics over connections the host
//! opens to the brokers the pipeline grants, speaking the Kafka protocol
//! itself (the `kafka-protocol` codec; no C client).
//!
//! A stream's batches are offset ranges it plans (`planner`): the host
//! writes each plan to the checkpoint before the connector reads exactly
//! that range, so a batch redone after a crash reads the same records. A
//! read without a plan is a batch load, from `startingOffsets` (earliest by
//! default) to `endingOffsets` (latest).

/// The exports of `sluice:connector/planned-connector@0.2.0` (`source` and
/// `planner`); imports and types are the SDK's.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sluice:connector/planned-connector@0.2.0",
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

mod client;
mod cluster;
mod envelope;
mod infer;
mod options;
mod records;
mod sasl;

use std::cell::RefCell;
use std::collections::BTreeMap;

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use serde::{Deserialize, Serialize};
use sluice_connector_sdk::{Batch, ConnectorSpec, Error, StreamInfo, SyncMode, host, ipc};

use crate::bindings::exports::sluice::connector0_1_0::source::{Guest, GuestReader, Reader};
use crate::bindings::exports::sluice::connector0_2_0::planner::Guest as Planner;

use crate::client::{LATEST, Partition};
use crate::cluster::{Cluster, Offsets, get, set, warn};
use crate::options::{Bound, Options};
use crate::records::Rows;

/// The one stream: every record of the topics the options name.
const STREAM: &str = "kafka";

/// Fetches that find nothing new for a partition before a planned range
/// is declared unreadable (each waits up to `kafka.fetch.max.wait.ms`).
const EMPTY_FETCHES: u32 = 40;

/// What a batch reads: per partition, offsets `from` (inclusive) to
/// `until` (exclusive). Written to the checkpoint by the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    from: Offsets,
    until: Offsets,
}

struct Kafka;

fn parse(config: &str) -> Result<Options, Error> {
    Options::parse(config)
}

fn stream_named(name: &str) -> Result<(), Error> {
    if name == STREAM {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "unknown stream '{name}'; the Kafka connector has one stream, '{STREAM}'"
        )))
    }
}

/// Resolves a starting bound to offsets for `partitions`; `default` for a
/// partition a JSON bound does not name.
fn resolve(
    cluster: &mut Cluster,
    partitions: &[Partition],
    bound: &Bound,
    default: &Bound,
) -> Result<BTreeMap<Partition, i64>, Error> {
    let earliest = cluster.earliest(partitions)?;
    let latest = cluster.offsets(partitions, LATEST)?;
    let mut out = BTreeMap::new();
    let by_time = match bound {
        Bound::Timestamp(t) => Some(cluster.offsets(partitions, *t)?),
        _ => None,
    };
    for p in partitions {
        let pick = |b: &Bound| -> Option<i64> {
            match b {
                Bound::Earliest => earliest.get(p).copied(),
                Bound::Latest => latest.get(p).copied(),
                Bound::Offsets(map) => match get(map, p)? {
                    -2 => earliest.get(p).copied(),
                    -1 => latest.get(p).copied(),
                    o => Some(o),
                },
                // No record at or after the time: start at the end.
                Bound::Timestamp(_) => by_time
                    .as_ref()
                    .and_then(|m| m.get(p).copied())
                    .filter(|o| *o >= 0)
                    .or_else(|| latest.get(p).copied()),
            }
        };
        let offset = pick(bound)
            .or_else(|| pick(default))
            .ok_or_else(|| Error::Io(format!("no offsets for {}/{}", p.topic, p.partition)))?;
        out.insert(p.clone(), offset);
    }
    Ok(out)
}

/// Checks `from` against what the brokers still keep: offsets deleted by
/// retention fail the batch (`failOnDataLoss=true`) or are skipped and
/// counted.
fn check_loss(
    options: &Options,
    cluster: &mut Cluster,
    from: &mut BTreeMap<Partition, i64>,
) -> Result<(), Error> {
    let partitions: Vec<Partition> = from.keys().cloned().collect();
    let earliest = cluster.earliest(&partitions)?;
    for (p, offset) in from.iter_mut() {
        let Some(&first) = earliest.get(p) else {
            continue;
        };
        if *offset < first {
            lost(options, p, *offset, first)?;
            *offset = first;
        }
    }
    Ok(())
}

/// The end offsets of `partitions` now, after checking that none is
/// before where its next batch starts (`from`): such a partition was
/// deleted and recreated, or truncated, and the offsets it hands out next
/// were read already, so records would be skipped without a word.
/// `failOnDataLoss=true` fails naming it; `false` reads it again from the
/// first record the broker keeps.
fn check_reset(
    options: &Options,
    cluster: &mut Cluster,
    partitions: &[Partition],
    from: &mut BTreeMap<Partition, i64>,
) -> Result<Offsets, Error> {
    let behind = |latest: &Offsets, from: &BTreeMap<Partition, i64>| -> Vec<Partition> {
        from.iter()
            .filter(|(p, start)| get(latest, p).is_some_and(|end| end < **start))
            .map(|(p, _)| p.clone())
            .collect()
    };
    let mut latest = cluster.latest(partitions)?;
    if behind(&latest, from).is_empty() {
        return Ok(latest);
    }
    // Asked again, with fresh metadata, before anything is declared lost.
    cluster.refresh()?;
    latest = cluster.latest(partitions)?;
    let went_back = behind(&latest, from);
    if went_back.is_empty() {
        return Ok(latest);
    }
    let earliest = cluster.earliest(&went_back)?;
    for p in went_back {
        let (start, end) = (from[&p], get(&latest, &p).unwrap_or(0));
        let what = format!(
            "topic '{}' partition {}: its end offset went back from {start} to {end} (the topic was recreated or truncated), so records may have been missed",
            p.topic, p.partition
        );
        if options.fail_on_data_loss {
            return Err(Error::Data(format!(
                "{what}; nothing was read. Set failOnDataLoss=false to read the partition again from its first record"
            )));
        }
        warn(&format!(
            "{what}; reading it again from its first record (failOnDataLoss=false)"
        ));
        let first = earliest.get(&p).copied().unwrap_or(0);
        host::count("partitions-reset", 1);
        from.insert(p, first);
    }
    Ok(latest)
}

/// Offsets `from..to` of `p` are gone.
fn lost(options: &Options, p: &Partition, from: i64, to: i64) -> Result<(), Error> {
    let what = format!(
        "topic '{}' partition {}: offsets {from}..{to} were deleted (retention) before they were read",
        p.topic, p.partition
    );
    if options.fail_on_data_loss {
        return Err(Error::Data(format!(
            "{what}; set failOnDataLoss=false to skip them"
        )));
    }
    warn(&format!("{what}; skipped (failOnDataLoss=false)"));
    host::count("records-lost", (to - from) as u64);
    Ok(())
}

impl Guest for Kafka {
    type Reader = KafkaReader;

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            name: "kafka".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Kafka topics: records by offset ranges, exactly once into a table".into(),
            config_schema: CONFIG_SCHEMA.into(),
            modes: vec![SyncMode::FullRefresh, SyncMode::Streaming],
        }
    }

    fn check(config: String) -> Result<(), Error> {
        let options = parse(&config)?;
        let cluster = Cluster::connect(&options)?;
        cluster.partitions().map(|_| ())
    }

    fn discover(config: String) -> Result<Vec<StreamInfo>, Error> {
        let options = parse(&config)?;
        let data = match &options.values {
            None => vec![],
            Some(json) => {
                let sampled = match &json.sample {
                    Some(None) => vec![],
                    Some(Some(plan)) => sample(&options, Some(plan))?,
                    None => sample(&options, None)?,
                };
                infer::fields(json, &sampled)?
            }
        };
        Ok(vec![StreamInfo {
            name: STREAM.into(),
            arrow_schema: ipc::encode_schema(&*records::schema(&options, &data)?)?,
            cursor_fields: vec!["offset".into()],
            primary_key: vec!["topic".into(), "partition".into(), "offset".into()],
        }])
    }

    fn read(config: String, stream_name: String, state: Option<String>) -> Result<Reader, Error> {
        stream_named(&stream_name)?;
        let options = parse(&config)?;
        let mut cluster = Cluster::connect(&options)?;
        let ranges = ranges(&options, &mut cluster, state.as_deref())?;
        Ok(Reader::new(KafkaReader {
            state: RefCell::new(Reading {
                rows: Rows::new(&options)?,
                options,
                cluster,
                ranges,
                turn: 0,
            }),
        }))
    }
}

/// What a read reads: the ranges of `plan` (a stream's batch), or without
/// one a batch load's, from `startingOffsets` (earliest) to
/// `endingOffsets` (latest).
fn ranges(
    options: &Options,
    cluster: &mut Cluster,
    plan: Option<&str>,
) -> Result<Vec<Range>, Error> {
    let (from, until) = match plan {
        Some(text) => {
            let plan: Plan = serde_json::from_str(text).map_err(|e| {
                Error::Config(format!("the state is not a plan of this connector: {e}"))
            })?;
            let mut from = BTreeMap::new();
            for (topic, ps) in &plan.from {
                for (&partition, &offset) in ps {
                    from.insert(
                        Partition {
                            topic: topic.clone(),
                            partition,
                        },
                        offset,
                    );
                }
            }
            (from, plan.until)
        }
        None => {
            let partitions = cluster.partitions()?;
            let starting = options.starting.clone().unwrap_or(Bound::Earliest);
            let from = resolve(cluster, &partitions, &starting, &Bound::Earliest)?;
            let ends = resolve(cluster, &partitions, &options.ending, &Bound::Latest)?;
            let mut until = Offsets::new();
            for (p, o) in ends {
                set(&mut until, &p, o);
            }
            (from, until)
        }
    };
    Ok(from
        .into_iter()
        .filter_map(|(p, next)| {
            let end = get(&until, &p)?;
            (next < end).then_some(Range {
                partition: p,
                next,
                until: end,
                empty: 0,
            })
        })
        .collect())
}

/// Up to [`infer::SAMPLE_RECORDS`] values of what a read of `plan` (or,
/// without one, a batch load) reads, with where each is: what
/// values parsed into columns (`valueFormat` json or csv) infer their
/// columns from.
fn sample(options: &Options, plan: Option<&str>) -> Result<Vec<infer::Sampled>, Error> {
    let raw = Options {
        value_format: options::ValueFormat::Raw,
        values: None,
        ..options.clone()
    };
    let mut cluster = Cluster::connect(&raw)?;
    let ranges = ranges(&raw, &mut cluster, plan)?;
    let mut reading = Reading {
        rows: Rows::new(&raw)?,
        options: raw,
        cluster,
        ranges,
        turn: 0,
    };
    let mut out = Vec::new();
    while out.len() < infer::SAMPLE_RECORDS && reading.ranges.iter().any(|r| r.next < r.until) {
        reading.fetch_once()?;
        if reading.rows.len() > 0 {
            infer::collect(&reading.rows.finish()?, options.values.as_ref(), &mut out)?;
        }
    }
    out.truncate(infer::SAMPLE_RECORDS);
    Ok(out)
}

impl Planner for Kafka {
    fn latest(config: String, stream_name: String) -> Result<String, Error> {
        stream_named(&stream_name)?;
        let options = parse(&config)?;
        let mut cluster = Cluster::connect(&options)?;
        let partitions = cluster.partitions()?;
        let latest = cluster.latest(&partitions)?;
        serde_json::to_string(&latest).map_err(|e| Error::Other(e.to_string()))
    }

    fn plan(
        config: String,
        stream_name: String,
        after: Option<String>,
        until: Option<String>,
    ) -> Result<Option<String>, Error> {
        stream_named(&stream_name)?;
        let options = parse(&config)?;
        let mut cluster = Cluster::connect(&options)?;
        let partitions = cluster.partitions()?;
        let after: Option<Plan> = after
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .map_err(|e| Error::Config(format!("the last plan is not this connector's: {e}")))?;
        let bound: Option<Offsets> = until
            .map(|u| serde_json::from_str(&u))
            .transpose()
            .map_err(|e| Error::Config(format!("the end position is not this connector's: {e}")))?;

        // Where each partition starts: after the last batch; a partition
        // new since then from its earliest offset (Spark's rule).
        let mut from = match &after {
            None => {
                let starting = options.starting.clone().unwrap_or(Bound::Latest);
                resolve(&mut cluster, &partitions, &starting, &Bound::Latest)?
            }
            Some(last) => {
                let new: Vec<Partition> = partitions
                    .iter()
                    .filter(|p| get(&last.until, p).is_none())
                    .cloned()
                    .collect();
                let earliest = cluster.earliest(&new)?;
                partitions
                    .iter()
                    .filter_map(|p| {
                        let o = get(&last.until, p).or_else(|| earliest.get(p).copied())?;
                        Some((p.clone(), o))
                    })
                    .collect()
            }
        };
        check_loss(&options, &mut cluster, &mut from)?;
        let latest = check_reset(&options, &mut cluster, &partitions, &mut from)?;

        // Where each ends: the end now, no further than the run's bound
        // (a partition the bound does not know was not there when the run
        // started), and maxOffsetsPerTrigger shared out by backlog.
        let mut ends: BTreeMap<Partition, i64> = BTreeMap::new();
        for (p, &start) in &from {
            let mut end = get(&latest, p).unwrap_or(start).max(start);
            if let Some(b) = &bound {
                end = end.min(get(b, p).unwrap_or(start)).max(start);
            }
            ends.insert(p.clone(), end);
        }
        let backlog: u64 = from.iter().map(|(p, s)| (ends[p] - s) as u64).sum();
        // A stream's first batch is planned even when empty: it records
        // where the stream starts (`latest` now), so the records that
        // arrive before the next run are read by it.
        if backlog == 0 && after.is_some() {
            return Ok(None);
        }
        if let Some(max) = options.max_offsets_per_trigger
            && backlog > max
        {
            for (p, &start) in &from {
                let have = (ends[p] - start) as u64;
                // At least one record where there is any, so every
                // partition moves.
                let share = ((have as u128 * max as u128) / backlog as u128) as u64;
                let share = if have > 0 { share.max(1) } else { 0 };
                ends.insert(p.clone(), start + share.min(have) as i64);
            }
        }
        let mut plan = Plan {
            from: Offsets::new(),
            until: Offsets::new(),
        };
        for (p, start) in &from {
            set(&mut plan.from, p, *start);
            set(&mut plan.until, p, ends[p]);
        }
        serde_json::to_string(&plan)
            .map(Some)
            .map_err(|e| Error::Other(e.to_string()))
    }

    fn committed(config: String, stream_name: String, plan: String) -> Result<(), Error> {
        // The checkpoint holds the offsets; a consumer group, if named,
        // hears of them so that lag tools see the stream.
        stream_named(&stream_name)?;
        let options = parse(&config)?;
        let Some(group) = &options.group_id else {
            return Ok(());
        };
        let plan: Plan = serde_json::from_str(&plan)
            .map_err(|e| Error::Config(format!("the plan is not this connector's: {e}")))?;
        Cluster::connect(&options)?.commit(group, &plan.until)
    }
}

/// One partition's planned range and how far it is read.
struct Range {
    partition: Partition,
    next: i64,
    until: i64,
    /// Fetches in a row that brought nothing.
    empty: u32,
}

struct Reading {
    options: Options,
    cluster: Cluster,
    ranges: Vec<Range>,
    rows: Rows,
    /// The broker whose turn it is, round robin.
    turn: usize,
}

/// Reads the planned ranges, one fetch per batch.
pub struct KafkaReader {
    state: RefCell<Reading>,
}

impl Reading {
    /// One fetch from the next broker with unfinished ranges; the rows it
    /// brought (maybe none).
    fn fetch_once(&mut self) -> Result<(), Error> {
        let open: Vec<(&Partition, i64)> = self
            .ranges
            .iter()
            .filter(|r| r.next < r.until)
            .map(|r| (&r.partition, r.next))
            .collect();
        let groups = self.cluster.by_leader(open)?;
        let Some((&leader, positions)) = groups.iter().nth(self.turn % groups.len().max(1)) else {
            return Ok(());
        };
        self.turn = self.turn.wrapping_add(1);
        let (max_bytes, wait) = (self.options.fetch_max_bytes, self.options.fetch_max_wait_ms);
        let fetched = {
            let broker = self.cluster.broker(leader)?;
            match client::fetch(broker, positions, max_bytes, wait) {
                Ok(f) => f,
                Err(e) => {
                    // The connection is gone or broken: reconnect next time.
                    self.cluster.drop_broker(leader);
                    return Err(e);
                }
            }
        };
        let mut stale = false;
        for range in &mut self.ranges {
            let Some(f) = fetched.get(&range.partition) else {
                continue;
            };
            let p = &range.partition;
            match f.error.err() {
                None => {}
                Some(ResponseError::OffsetOutOfRange) if range.next < f.log_start_offset => {
                    lost(&self.options, p, range.next, f.log_start_offset)?;
                    range.next = f.log_start_offset.min(range.until);
                    continue;
                }
                Some(
                    ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch,
                ) => {
                    stale = true;
                    continue;
                }
                Some(e) => {
                    return Err(Error::Io(format!(
                        "fetching topic '{}' partition {} at offset {}: {e}",
                        p.topic, p.partition, range.next
                    )));
                }
            }
            let records = match &f.records {
                Some(b) if !b.is_empty() => records::decode(b.clone()).map_err(|e| match e {
                    Error::Data(m) => Error::Data(format!(
                        "topic '{}' partition {} near offset {}: {m}",
                        p.topic, p.partition, range.next
                    )),
                    other => other,
                })?,
                _ => vec![],
            };
            let before = range.next;
            for r in &records {
                if r.offset < range.next {
                    continue;
                }
                if r.offset >= range.until {
                    range.next = range.until;
                    break;
                }
                range.next = r.offset + 1;
                if !r.control {
                    self.rows.push(&p.topic, p.partition, r)?;
                }
            }
            if range.next > before {
                range.empty = 0;
            } else if f.high_watermark >= range.until {
                // Nothing left below the end but gaps (compaction,
                // transaction markers): the range is done.
                range.next = range.until;
            } else {
                range.empty += 1;
                if range.empty >= EMPTY_FETCHES {
                    return Err(Error::Io(format!(
                        "topic '{}' partition {}: the batch was planned up to offset {} but the broker has records only up to {} (was the topic truncated or recreated?)",
                        p.topic, p.partition, range.until, f.high_watermark
                    )));
                }
            }
        }
        if stale {
            self.cluster.refresh()?;
        }
        Ok(())
    }
}

impl GuestReader for KafkaReader {
    fn next(&self) -> Result<Option<Batch>, Error> {
        let mut s = self.state.borrow_mut();
        loop {
            if s.ranges.iter().all(|r| r.next >= r.until) {
                return Ok(None);
            }
            s.fetch_once()?;
            if s.rows.len() > 0 {
                let batch = s.rows.finish()?;
                return Ok(Some(Batch {
                    ipc: ipc::encode_batch(&batch)?,
                    checkpoint: None,
                }));
            }
        }
    }
}

/// The config's JSON Schema: Spark's option names.
const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["kafka.bootstrap.servers"],
  "properties": {
    "kafka.bootstrap.servers": {"type": "string", "description": "host:port[,host:port...]"},
    "subscribe": {"type": "string", "description": "Topics, comma-separated"},
    "subscribePattern": {"type": "string", "description": "A regular expression topics must match"},
    "assign": {"type": "string", "description": "JSON: {\"topic\":[0,1]}"},
    "startingOffsets": {"type": "string", "description": "earliest, latest, or JSON {\"topic\":{\"0\":23,\"1\":-2}}"},
    "startingTimestamp": {"type": "string", "description": "Start at the first record at or after this time (ms since the epoch)"},
    "endingOffsets": {"type": "string", "description": "Batch reads: latest, or JSON offsets"},
    "maxOffsetsPerTrigger": {"type": "string", "description": "At most this many records per batch"},
    "failOnDataLoss": {"type": "string", "enum": ["true", "false"]},
    "includeHeaders": {"type": "string", "enum": ["true", "false"]},
    "kafka.security.protocol": {"type": "string", "enum": ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]},
    "kafka.sasl.mechanism": {"type": "string", "enum": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]},
    "kafka.sasl.jaas.config": {"type": "string"},
    "kafka.sasl.username": {"type": "string"},
    "kafka.sasl.password": {"type": "string", "description": "${secret:NAME}"},
    "valueFormat": {"type": "string", "enum": ["raw", "text", "json", "csv"]},
    "valueEnvelope": {"type": "string", "enum": ["none", "debezium"], "description": "valueFormat=json: debezium reads each Debezium change event as its row (after, or before for a delete) with __op and __ts_ms, and skips tombstones"},
    "inferColumnTypes": {"type": "string", "enum": ["true", "false"], "description": "valueFormat json or csv: infer column types (else every leaf is a string)"},
    "schemaHints": {"type": "string", "description": "valueFormat json or csv: column types over inferred ones, e.g. 'id bigint, ts timestamp' (CSV columns are _c0, _c1, ...)"},
    "mode": {"type": "string", "enum": ["FAILFAST", "PERMISSIVE", "DROPMALFORMED"], "description": "valueFormat json or csv: a value that does not parse fails the batch, is rescued, or is dropped"},
    "rescuedDataColumn": {"type": "string", "description": "valueFormat json or csv: the rescued data column (default _rescued_data)"},
    "schemaEvolutionMode": {"type": "string", "enum": ["addNewColumns", "addNewColumnsWithTypeWidening", "rescue", "failOnNewColumns", "none"], "description": "valueFormat json or csv, streams: what columns the table lacks do"},
    "sep": {"type": "string", "description": "valueFormat=csv: the field delimiter (default ,); also 'delimiter'"},
    "delimiter": {"type": "string"},
    "quote": {"type": "string", "description": "valueFormat=csv: the quote character (default \")"},
    "escape": {"type": "string", "description": "valueFormat=csv: the escape character inside quotes (default: doubled quotes)"},
    "nullValue": {"type": "string", "description": "valueFormat=csv: a field equal to this is null (default: empty)"},
    "kafka.fetch.max.bytes": {"type": "string"},
    "kafka.fetch.max.wait.ms": {"type": "string"},
    "kafka.group.id": {"type": "string", "description": "A consumer group each committed batch's end offsets are committed to, for lag tools (the stream resumes from its checkpoint)"}
  }
}"#;

bindings::export!(Kafka with_types_in bindings);
