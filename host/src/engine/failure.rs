//! Why a run or a load failed, typed by who has to act: the caller fixes
//! its data or its request, or retries because the service or its storage
//! could not finish now. Classified once, here, from the error chain; a
//! face maps the [`Fault`] to its own terms in one match (HTTP: 422, 400,
//! 503).
//!
//! A [`Failure`]'s message has passed through the run's [`Redactor`]: it may
//! be stored, served and logged.

use serde::{Deserialize, Serialize};

use crate::engine::redact::Redactor;

/// Who has to act on a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The data does not load (it does not parse, or does not fit the
    /// table): fix the input.
    Data,
    /// The request or the definition is invalid: fix it.
    Invalid,
    /// The service has no room now (every connector slot or its memory
    /// budget is taken): retry.
    Busy,
    /// Storage failed: retry.
    Storage,
    /// Other writers kept winning the commit race: retry.
    Conflict,
}

impl Fault {
    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(self) -> bool {
        matches!(self, Fault::Busy | Fault::Storage | Fault::Conflict)
    }

    /// The fault behind a failed run or load: the first cause in `e`'s
    /// chain that says, else the data's (a connector failed on it).
    pub fn of(e: &anyhow::Error) -> Fault {
        Self::find(e).unwrap_or(Fault::Data)
    }

    /// The fault the first cause in `e`'s chain that says names, if any.
    pub fn find(e: &anyhow::Error) -> Option<Fault> {
        e.chain().find_map(Self::of_cause)
    }

    fn of_cause(c: &(dyn std::error::Error + 'static)) -> Option<Fault> {
        if c.is::<crate::wasm::runtime::NoRoom>() || c.is::<wasmtime::PoolConcurrencyLimitError>() {
            return Some(Fault::Busy);
        }
        if let Some(f) = c.downcast_ref::<ConnectorFailed>() {
            return Some(f.fault);
        }
        if c.is::<object_store::Error>() {
            return Some(Fault::Storage);
        }
        if let Some(e) = c.downcast_ref::<sluice_sink::Error>() {
            return Some(match e {
                sluice_sink::Error::CommitConflict { .. } => Fault::Conflict,
                sluice_sink::Error::ObjectStore(_) | sluice_sink::Error::Delta { .. } => {
                    Fault::Storage
                }
                sluice_sink::Error::Location(_) => Fault::Invalid,
                _ => return None,
            });
        }
        if let Some(e) = c.downcast_ref::<sluice_checkpoint::Error>() {
            return e.is_retryable().then_some(Fault::Storage);
        }
        if let Some(e) = c.downcast_ref::<sluice_pipeline::Error>() {
            return Some(match e {
                sluice_pipeline::Error::Store { .. } => Fault::Storage,
                sluice_pipeline::Error::NoFiles { .. } => Fault::Data,
                _ => Fault::Invalid,
            });
        }
        if c.is::<sluice_location::Error>() || c.is::<crate::wasm::connectors::Refused>() {
            return Some(Fault::Invalid);
        }
        None
    }
}

/// `e` for a person: its causes joined by `: `, as `{e:#}` joins them, but
/// a cause whose text the message already holds is left out (libraries
/// whose errors print their source as well would otherwise repeat it).
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A failed run or load: its fault, and a message safe to store and show.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct Failure {
    /// Who has to act.
    pub fault: Fault,
    /// What went wrong, secrets redacted.
    pub message: String,
}

impl Failure {
    /// Classifies `e` and redacts its message with `redactor`.
    pub fn new(e: &anyhow::Error, redactor: &Redactor) -> Self {
        Failure {
            fault: Fault::of(e),
            message: redactor.error(e),
        }
    }

    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(&self) -> bool {
        self.fault.is_retryable()
    }
}

/// An error a connector returned (a WIT `error` variant), with the fault
/// it stands for: `config` and `auth` are the definition's to fix, `io`
/// is storage, `data` and `other` the data's.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorFailed {
    /// Who has to act.
    pub fault: Fault,
    /// The variant the connector returned: `config`, `auth`, `io`, `data`
    /// or `other`.
    pub variant: &'static str,
    /// The connector's message, with its kind.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_repeated_by_its_parent_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Outer(#[source] std::io::Error);
        let e = anyhow::Error::new(Outer(std::io::Error::other("disk on fire")))
            .context("writing the table");
        assert_eq!(describe(&e), "writing the table: outer: disk on fire");
        assert_eq!(
            format!("{e:#}"),
            "writing the table: outer: disk on fire: disk on fire"
        );
    }
}
