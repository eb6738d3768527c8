//! The checkpoint crate's error type.

/// Errors from reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another run planned this batch first: two runs share the checkpoint.
    #[error(
        "checkpoint {location} is in use: another run planned batch {batch} first (each pipeline needs its own checkpoint; if the other run is gone, run again)"
    )]
    Busy {
        /// The checkpoint.
        location: String,
        /// The batch both runs planned.
        batch: u64,
    },
    /// A checkpoint file cannot be read.
    #[error("checkpoint file {path} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Object storage failed.
    #[error("checkpoint {location}: {source}")]
    Store {
        /// The checkpoint.
        location: String,
        /// The cause.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The checkpoint location is invalid.
    #[error(transparent)]
    Location(Box<sluice_location::Error>),
}

impl From<sluice_location::Error> for Error {
    fn from(e: sluice_location::Error) -> Self {
        Error::Location(Box::new(e))
    }
}

impl Error {
    /// Whether trying again may succeed (transient storage errors).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Store { .. })
    }
}

/// Result with the checkpoint crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
