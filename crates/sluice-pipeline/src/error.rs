//! The pipeline crate's error type.

/// Errors from validating a pipeline or planning its input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A source or option is invalid; the text says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The source matched no files.
    #[error("no files found at '{input}'{hint}")]
    NoFiles {
        /// The source as given.
        input: String,
        /// A hint, such as a nearby match.
        hint: String,
    },
    /// Listing or reading object storage failed.
    #[error("listing '{input}': {error}")]
    Store {
        /// The source as given.
        input: String,
        /// The cause.
        error: Box<object_store::Error>,
    },
    /// A table location is invalid.
    #[error(transparent)]
    Location(Box<sluice_location::Error>),
}

impl From<sluice_location::Error> for Error {
    fn from(e: sluice_location::Error) -> Self {
        Error::Location(Box::new(e))
    }
}

/// Result with the pipeline crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
