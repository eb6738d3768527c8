//! When a load runs its batches: Structured Streaming's triggers, by the
//! names the command line (`--trigger`) and pipeline files (`trigger =`)
//! give them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::incremental::parse_duration;

/// When a load runs its batches. A batch load (replace, append) and COPY
/// INTO run once whatever the trigger; a stream follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Process what is there when the run starts, in batches, then stop.
    AvailableNow,
    /// One batch per interval, until stopped.
    Every(Duration),
    /// The next batch as soon as the previous one commits; look for new
    /// input every `poll` while idle; until stopped.
    Continuous {
        /// How often an idle stream looks for new input.
        poll: Duration,
    },
    /// Only these objects, which an object-store notification named (file
    /// notification mode), then stop.
    Notified(Vec<String>),
}

/// How often an idle continuous stream looks for new input.
pub const CONTINUOUS_POLL: Duration = Duration::from_millis(500);

impl Trigger {
    /// Whether a stream under this trigger runs until it is stopped.
    pub fn runs_until_stopped(&self) -> bool {
        matches!(self, Trigger::Every(_) | Trigger::Continuous { .. })
    }
}

impl FromStr for Trigger {
    type Err = String;

    /// `available-now`, `every=10s` or `continuous`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "available-now" | "availablenow" | "available_now" => Ok(Trigger::AvailableNow),
            "continuous" => Ok(Trigger::Continuous {
                poll: CONTINUOUS_POLL,
            }),
            other => match other.strip_prefix("every=") {
                Some(d) => {
                    let d = parse_duration(d)?;
                    if d.is_zero() {
                        return Err("every= needs an interval above zero".into());
                    }
                    Ok(Trigger::Every(d))
                }
                None => Err(format!(
                    "unknown trigger '{s}'; use available-now, every=10s or continuous"
                )),
            },
        }
    }
}

impl fmt::Display for Trigger {
    /// The text [`Trigger::from_str`] reads back (a notification's objects
    /// are not part of it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::AvailableNow => f.write_str("available-now"),
            Trigger::Every(d) if d.subsec_millis() == 0 => write!(f, "every={}s", d.as_secs()),
            Trigger::Every(d) => write!(f, "every={}ms", d.as_millis()),
            Trigger::Continuous { .. } => f.write_str("continuous"),
            Trigger::Notified(objects) => write!(f, "notified ({} objects)", objects.len()),
        }
    }
}

impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_read_back_what_they_print() {
        for text in ["available-now", "every=10s", "every=250ms", "continuous"] {
            let t: Trigger = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
        }
        assert_eq!(
            "every=2 minutes".parse::<Trigger>().unwrap(),
            Trigger::Every(Duration::from_secs(120))
        );
        assert!(
            "every=0s"
                .parse::<Trigger>()
                .unwrap_err()
                .contains("above zero")
        );
        assert!(
            "sometimes"
                .parse::<Trigger>()
                .unwrap_err()
                .contains("continuous")
        );
        assert!(
            "continuous"
                .parse::<Trigger>()
                .unwrap()
                .runs_until_stopped()
        );
        assert!(!Trigger::AvailableNow.runs_until_stopped());
    }
}
