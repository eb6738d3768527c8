//! Talking to brokers: one connection per broker, requests framed and
//! versioned by the `kafka-protocol` codec, the cluster's metadata, offsets
//! and fetches.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, StrBytes, encode_request_header_into_buffer,
};
use sluice_connector_sdk::Error;
use sluice_connector_sdk::net::Connection;

use crate::options::{Options, Sasl};
use crate::sasl;

/// The largest response this client accepts (a fetch is capped well below).
const MAX_RESPONSE: usize = 256 << 20;

/// A request this client sends, with its API key and response. (The
/// codec's own `Request` trait also needs its broker half compiled.)
pub trait Request: Message + Encodable {
    /// The API key.
    const KEY: ApiKey;
    /// What answers it.
    type Response: Decodable + HeaderVersion;
}

macro_rules! requests {
    ($($request:ident => $response:ident, $key:ident;)*) => {$(
        impl Request for $request {
            const KEY: ApiKey = ApiKey::$key;
            type Response = $response;
        }
    )*};
}

requests! {
    ApiVersionsRequest => ApiVersionsResponse, ApiVersions;
    SaslHandshakeRequest => SaslHandshakeResponse, SaslHandshake;
    SaslAuthenticateRequest => SaslAuthenticateResponse, SaslAuthenticate;
    MetadataRequest => MetadataResponse, Metadata;
    ListOffsetsRequest => ListOffsetsResponse, ListOffsets;
    FetchRequest => FetchResponse, Fetch;
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator;
    OffsetCommitRequest => OffsetCommitResponse, OffsetCommit;
}

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

/// A broker's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An I/O failure talking to `address`.
fn io(address: &Address, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("Kafka broker {address}: {what}: {e}"))
}

/// A connection to one broker, with the API versions both sides speak.
pub struct Broker {
    address: Address,
    connection: Connection,
    correlation: i32,
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Broker {
    /// Connects to `address`, agrees on API versions and authenticates as
    /// `options` say.
    pub fn connect(address: &Address, options: &Options) -> Result<Self, Error> {
        let connection = Connection::open(&address.host, address.port, options.tls)?;
        let mut broker = Broker {
            address: address.clone(),
            connection,
            correlation: 0,
            versions: BTreeMap::new(),
        };
        let versions = broker.call_at(&ApiVersionsRequest::default(), 0)?;
        if let Some(e) = versions.error_code.err() {
            return Err(io(address, "ApiVersions", e));
        }
        broker.versions = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(sasl) = &options.sasl {
            broker.authenticate(sasl)?;
        }
        Ok(broker)
    }

    /// The address it is connected to.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The version to speak for `R`: the highest both sides know, capped
    /// at `ours`.
    fn version<R: Request>(&self, ours: i16) -> Result<i16, Error> {
        let key = R::KEY;
        let (min, max) = self.versions.get(&(key as i16)).copied().ok_or_else(|| {
            io(
                &self.address,
                "API versions",
                format!("the broker does not offer {key:?}"),
            )
        })?;
        let v = max.min(ours).min(R::VERSIONS.max);
        if v < min.max(R::VERSIONS.min) {
            return Err(io(
                &self.address,
                "API versions",
                format!("no version of {key:?} both sides speak (broker {min}..={max})"),
            ));
        }
        Ok(v)
    }

    /// Sends `request` at the highest version both sides speak (at most
    /// `ours`) and reads its response.
    pub fn call<R: Request>(&mut self, request: &R, ours: i16) -> Result<R::Response, Error> {
        let version = self.version::<R>(ours)?;
        self.call_at(request, version)
    }

    fn call_at<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, Error> {
        let what = format!("{:?}", R::KEY);
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("sluice")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        encode_request_header_into_buffer(&mut buf, &header)
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| Error::Other(format!("encoding {what}: {e}")))?;
        let size = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.connection
            .write_all(&buf)
            .and_then(|()| self.connection.flush())
            .map_err(|e| io(&self.address, &what, e))?;

        let mut size = [0; 4];
        self.connection
            .read_exact(&mut size)
            .map_err(|e| io(&self.address, &what, e))?;
        let size = u32::from_be_bytes(size) as usize;
        if size > MAX_RESPONSE {
            return Err(io(
                &self.address,
                &what,
                format!("a response of {size} bytes (at most {MAX_RESPONSE})"),
            ));
        }
        let mut body = vec![0; size];
        self.connection
            .read_exact(&mut body)
            .map_err(|e| io(&self.address, &what, e))?;
        let mut body = Bytes::from(body);
        let header_version = R::Response::header_version(version);
        let header = kafka_protocol::messages::ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| {
                io(
                    &self.address,
                    &what,
                    format!("undecodable response header: {e}"),
                )
            })?;
        if header.correlation_id != self.correlation {
            return Err(io(
                &self.address,
                &what,
                "the response answers another request",
            ));
        }
        R::Response::decode(&mut body, version)
            .map_err(|e| io(&self.address, &what, format!("undecodable response: {e}")))
    }

    /// SASL: the handshake, then the mechanism's exchange.
    fn authenticate(&mut self, sasl: &Sasl) -> Result<(), Error> {
        let mechanism = sasl.mechanism.name();
        let handshake = self.call(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(mechanism.to_string())),
            1,
        )?;
        if let Some(e) = handshake.error_code.err() {
            let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(Error::Auth(format!(
                "Kafka broker {}: SASL {mechanism}: {e} (it offers {})",
                self.address,
                offered.join(", ")
            )));
        }
        let mut exchange = sasl::Exchange::new(sasl);
        let mut input: Option<Bytes> = None;
        while let Some(out) = exchange.step(input.as_deref())? {
            let answer = self.call(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(out)),
                2,
            )?;
            if let Some(e) = answer.error_code.err() {
                let message = answer
                    .error_message
                    .as_ref()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default();
                return Err(Error::Auth(format!(
                    "Kafka broker {}: SASL {mechanism} as '{}' was refused: {e} {message}; check kafka.sasl.jaas.config (or the secret it names)",
                    self.address, sasl.username
                )));
            }
            input = Some(answer.auth_bytes);
        }
        Ok(())
    }
}

/// Where each partition is led, from a Metadata response.
#[derive(Debug, Default)]
pub struct Metadata {
    /// Brokers by id.
    pub brokers: BTreeMap<i32, Address>,
    /// Topics, each with its partitions' leaders.
    pub topics: BTreeMap<String, BTreeMap<i32, i32>>,
    /// Topics the broker reported an error for, with the error.
    pub errors: BTreeMap<String, String>,
}

impl Metadata {
    /// Asks `broker` about `topics` (every topic when `None`).
    pub fn fetch(broker: &mut Broker, topics: Option<&[String]>) -> Result<Self, Error> {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        // Reading never creates a topic (brokers may, when asked about one).
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }));
        let response = broker.call(&request, 9)?;
        let mut out = Metadata::default();
        for b in response.brokers {
            let port = u16::try_from(b.port).map_err(|_| {
                io(
                    broker.address(),
                    "Metadata",
                    format!("broker {} has port {}", b.node_id.0, b.port),
                )
            })?;
            out.brokers.insert(
                b.node_id.0,
                Address {
                    host: b.host.to_string(),
                    port,
                },
            );
        }
        for t in response.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if t.is_internal {
                continue;
            }
            if let Some(e) = t.error_code.err() {
                out.errors.insert(name, e.to_string());
                continue;
            }
            let leaders = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            out.topics.insert(name, leaders);
        }
        Ok(out)
    }

    /// The broker that leads `p`.
    pub fn leader(&self, p: &Partition) -> Result<i32, Error> {
        self.topics
            .get(&p.topic)
            .and_then(|ps| ps.get(&p.partition))
            .copied()
            .filter(|id| *id >= 0)
            .ok_or_else(|| {
                Error::Io(format!(
                    "topic '{}' partition {} has no leader now",
                    p.topic, p.partition
                ))
            })
    }
}

/// ListOffsets' special timestamps.
pub const EARLIEST: i64 = -2;
/// The offset after the last record.
pub const LATEST: i64 = -1;

/// The offset for `timestamp` (or [`EARLIEST`] / [`LATEST`]) of each
/// partition, asked of its leader.
pub fn list_offsets(
    broker: &mut Broker,
    partitions: &[Partition],
    timestamp: i64,
) -> Result<BTreeMap<Partition, i64>, Error> {
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for p in partitions {
        topics.entry(&p.topic).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(p.partition)
                .with_timestamp(timestamp),
        );
    }
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let response = broker.call(&request, 7)?;
    let mut out = BTreeMap::new();
    for t in response.topics {
        for p in t.partitions {
            let partition = Partition {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
            };
            if let Some(e) = p.error_code.err() {
                return Err(Error::Io(format!(
                    "listing offsets of topic '{}' partition {}: {e}",
                    partition.topic, partition.partition
                )));
            }
            out.insert(partition, p.offset);
        }
    }
    Ok(out)
}

/// What a fetch returned for one partition.
pub struct Fetched {
    /// The broker's error for it, if any (the code).
    pub error: i16,
    /// The offset after the last record the broker has.
    pub high_watermark: i64,
    /// The first offset it still has.
    pub log_start_offset: i64,
    /// Record batches, undecoded.
    pub records: Option<Bytes>,
}

/// Fetches `positions` (partition, offset) from `broker`, up to `max_bytes`
/// in all, waiting at most `max_wait_ms` for the first byte.
pub fn fetch(
    broker: &mut Broker,
    positions: &[(Partition, i64)],
    max_bytes: i32,
    max_wait_ms: i32,
) -> Result<BTreeMap<Partition, Fetched>, Error> {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    let per_partition = (max_bytes / positions.len().max(1) as i32).max(1 << 20);
    for (p, offset) in positions {
        topics.entry(&p.topic).or_default().push(
            FetchPartition::default()
                .with_partition(p.partition)
                .with_fetch_offset(*offset)
                .with_partition_max_bytes(per_partition),
        );
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    // Version 12 is the last that names topics (13 names them by id).
    let response: FetchResponse = broker.call(&request, 12)?;
    if let Some(e) = response.error_code.err() {
        return Err(io(broker.address(), "Fetch", e));
    }
    let mut out = BTreeMap::new();
    for t in response.responses {
        for p in t.partitions {
            out.insert(
                Partition {
                    topic: t.topic.0.to_string(),
                    partition: p.partition_index,
                },
                Fetched {
                    error: p.error_code,
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                    records: p.records,
                },
            );
        }
    }
    Ok(out)
}

/// The broker that coordinates consumer group `group`, asked of `broker`.
pub fn find_coordinator(broker: &mut Broker, group: &str) -> Result<i32, Error> {
    // Versions up to 3 name one group (4 and later a list).
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let response = broker.call(&request, 3)?;
    if let Some(e) = response.error_code.err() {
        return Err(io(
            broker.address(),
            "FindCoordinator",
            format!("consumer group '{group}': {e}"),
        ));
    }
    Ok(response.node_id.0)
}

/// Commits `offsets` (the next offset to read, per partition) to consumer
/// group `group` at its coordinator `broker`, as a consumer outside the
/// group's membership does (generation -1), the way lag tools read them.
pub fn commit_offsets(
    broker: &mut Broker,
    group: &str,
    offsets: &[(Partition, i64)],
) -> Result<(), Error> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (p, offset) in offsets {
        topics.entry(&p.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(p.partition)
                .with_committed_offset(*offset)
                .with_committed_metadata(Some(StrBytes::from_static_str("sluice"))),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_retention_time_ms(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    // Version 9 and later belong to the new consumer protocol.
    let response = broker.call(&request, 8)?;
    for t in response.topics {
        for p in t.partitions {
            if let Some(e) = p.error_code.err() {
                return Err(io(
                    broker.address(),
                    "OffsetCommit",
                    format!(
                        "consumer group '{group}', topic '{}' partition {}: {e}",
                        t.name.0, p.partition_index
                    ),
                ));
            }
        }
    }
    Ok(())
}
