//! A cluster as the connector sees it: connections to the brokers it needs,
//! the partitions of the topics the options name, and their offsets.

use std::collections::BTreeMap;

use sluice_connector_sdk::{Error, Level, log};

use crate::client::{self, Address, Broker, EARLIEST, Fetched, LATEST, Metadata, Partition};
use crate::options::{Options, Topics};

/// Offsets per topic and partition: the shape of Spark's
/// `startingOffsets` JSON, and of a plan's two ends.
pub type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// Looks up `p` in `offsets`.
pub fn get(offsets: &Offsets, p: &Partition) -> Option<i64> {
    offsets.get(&p.topic)?.get(&p.partition).copied()
}

/// Sets `p` in `offsets`.
pub fn set(offsets: &mut Offsets, p: &Partition, offset: i64) {
    offsets
        .entry(p.topic.clone())
        .or_default()
        .insert(p.partition, offset);
}

/// Connections and metadata.
pub struct Cluster {
    options: Options,
    metadata: Metadata,
    brokers: BTreeMap<i32, Broker>,
    bootstrap: Option<Broker>,
}

impl Cluster {
    /// Connects to the first bootstrap server that answers and reads the
    /// metadata of the topics the options name.
    pub fn connect(options: &Options) -> Result<Self, Error> {
        let mut failures = Vec::new();
        for address in &options.bootstrap {
            match Broker::connect(address, options) {
                Ok(broker) => {
                    let mut cluster = Cluster {
                        options: options.clone(),
                        metadata: Metadata::default(),
                        brokers: BTreeMap::new(),
                        bootstrap: Some(broker),
                    };
                    cluster.refresh()?;
                    return Ok(cluster);
                }
                // Not allowed, or bad credentials: no other server helps.
                Err(e @ Error::Auth(_)) => return Err(e),
                Err(e) => failures.push(format!("{address}: {}", describe(&e))),
            }
        }
        Err(Error::Io(format!(
            "no bootstrap server answered ({}); check kafka.bootstrap.servers and that the brokers run",
            failures.join("; ")
        )))
    }

    /// Reads the metadata again (after a leader moved).
    pub fn refresh(&mut self) -> Result<(), Error> {
        let names = match &self.options.topics {
            Topics::Subscribe(ts) => Some(ts.clone()),
            Topics::Assign(a) => Some(a.keys().cloned().collect()),
            Topics::Pattern(_) => None,
        };
        let broker = self.bootstrap.as_mut().expect("kept while connected");
        self.metadata = Metadata::fetch(broker, names.as_deref())?;
        Ok(())
    }

    /// The partitions the options name, in order.
    pub fn partitions(&self) -> Result<Vec<Partition>, Error> {
        let mut out = Vec::new();
        let m = &self.metadata;
        let of = |topic: &str| -> Result<Vec<i32>, Error> {
            match m.topics.get(topic) {
                Some(ps) => Ok(ps.keys().copied().collect()),
                None => Err(Error::Config(match m.errors.get(topic) {
                    Some(e) => format!("topic '{topic}': {e}"),
                    None => format!("topic '{topic}' does not exist on the cluster"),
                })),
            }
        };
        match &self.options.topics {
            Topics::Subscribe(ts) => {
                for t in ts {
                    for p in of(t)? {
                        out.push(Partition {
                            topic: t.clone(),
                            partition: p,
                        });
                    }
                }
            }
            Topics::Pattern(re) => {
                for (t, ps) in &m.topics {
                    if re.is_match(t) {
                        out.extend(ps.keys().map(|&p| Partition {
                            topic: t.clone(),
                            partition: p,
                        }));
                    }
                }
            }
            Topics::Assign(a) => {
                for (t, wanted) in a {
                    let have = of(t)?;
                    for p in wanted {
                        if !have.contains(p) {
                            return Err(Error::Config(format!(
                                "assign: topic '{t}' has no partition {p} (it has {have:?})"
                            )));
                        }
                        out.push(Partition {
                            topic: t.clone(),
                            partition: *p,
                        });
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The connection to broker `id`, opened on first use. The address is
    /// the one the cluster advertises: the host refuses it unless the
    /// pipeline grants it.
    pub fn broker(&mut self, id: i32) -> Result<&mut Broker, Error> {
        if !self.brokers.contains_key(&id) {
            let address: Address =
                self.metadata.brokers.get(&id).cloned().ok_or_else(|| {
                    Error::Io(format!("the cluster's metadata names no broker {id}"))
                })?;
            let broker = Broker::connect(&address, &self.options).map_err(|e| match e {
                Error::Auth(m) => Error::Auth(format!(
                    "the cluster advertises broker {id} at {address}, which the pipeline does not grant ({m}); grant it, e.g. --grant tcp://{address}"
                )),
                other => other,
            })?;
            self.brokers.insert(id, broker);
        }
        Ok(self.brokers.get_mut(&id).expect("just inserted"))
    }

    /// Forgets the connection to broker `id` (after it failed).
    pub fn drop_broker(&mut self, id: i32) {
        self.brokers.remove(&id);
    }

    /// `partitions` grouped by the broker that leads them.
    pub fn by_leader<'a, T>(
        &self,
        partitions: impl IntoIterator<Item = (&'a Partition, T)>,
    ) -> Result<BTreeMap<i32, Vec<(Partition, T)>>, Error> {
        let mut out: BTreeMap<i32, Vec<(Partition, T)>> = BTreeMap::new();
        for (p, t) in partitions {
            out.entry(self.metadata.leader(p)?)
                .or_default()
                .push((p.clone(), t));
        }
        Ok(out)
    }

    /// The offset for `timestamp` (or [`EARLIEST`] / [`LATEST`]) of each
    /// partition. The end ([`LATEST`]) is the greater of what ListOffsets
    /// says and a fetch's high watermark: some brokers' ListOffsets
    /// under-reports it.
    pub fn offsets(
        &mut self,
        partitions: &[Partition],
        timestamp: i64,
    ) -> Result<BTreeMap<Partition, i64>, Error> {
        let mut out = BTreeMap::new();
        for (leader, ps) in self.by_leader(partitions.iter().map(|p| (p, ())))? {
            let ps: Vec<Partition> = ps.into_iter().map(|(p, ())| p).collect();
            let broker = self.broker(leader)?;
            let listed = client::list_offsets(broker, &ps, timestamp)?;
            if timestamp == LATEST {
                let at: Vec<(Partition, i64)> =
                    listed.iter().map(|(p, o)| (p.clone(), *o)).collect();
                // A broker may answer a fetch that must not wait with no
                // partitions at all: wait a little (it answers at once
                // when there are records past the listed end).
                let fetched = client::fetch(broker, &at, 1 << 16, 50)?;
                for (p, o) in listed {
                    let hw = fetched.get(&p).map_or(o, |f: &Fetched| f.high_watermark);
                    out.insert(p, o.max(hw));
                }
            } else {
                out.extend(listed);
            }
        }
        Ok(out)
    }

    /// The offsets where reading ends now.
    pub fn latest(&mut self, partitions: &[Partition]) -> Result<Offsets, Error> {
        let mut out = Offsets::new();
        for (p, o) in self.offsets(partitions, LATEST)? {
            set(&mut out, &p, o);
        }
        Ok(out)
    }

    /// Commits `offsets` to consumer group `group`.
    pub fn commit(&mut self, group: &str, offsets: &Offsets) -> Result<(), Error> {
        let bootstrap = self.bootstrap.as_mut().expect("kept while connected");
        let coordinator = client::find_coordinator(bootstrap, group)?;
        let offsets: Vec<(Partition, i64)> = offsets
            .iter()
            .flat_map(|(topic, ps)| {
                ps.iter().map(move |(&partition, &offset)| {
                    (
                        Partition {
                            topic: topic.clone(),
                            partition,
                        },
                        offset,
                    )
                })
            })
            .collect();
        client::commit_offsets(self.broker(coordinator)?, group, &offsets)
    }

    /// The first offsets still kept.
    pub fn earliest(
        &mut self,
        partitions: &[Partition],
    ) -> Result<BTreeMap<Partition, i64>, Error> {
        self.offsets(partitions, EARLIEST)
    }
}

/// A connector error's text.
pub fn describe(e: &Error) -> String {
    match e {
        Error::Config(m) | Error::Auth(m) | Error::Io(m) | Error::Data(m) | Error::Other(m) => {
            m.clone()
        }
    }
}

/// Logs a warning.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
