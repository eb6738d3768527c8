//! The sink's error type.

use deltalake_core::DeltaTableError;

/// Errors from writing or committing a table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The table location could not be understood.
    #[error(transparent)]
    Location(#[from] sluice_location::Error),
    /// The data's schema does not fit the table's.
    #[error("the input's schema does not match table {table}: {reason}")]
    SchemaMismatch {
        /// The table.
        table: String,
        /// What differs, and what to do.
        reason: String,
    },
    /// Another writer committed first and the conflict could not be resolved.
    #[error("commit to {table} conflicted with another writer: {source}")]
    CommitConflict {
        /// The table.
        table: String,
        /// The conflict.
        #[source]
        source: DeltaTableError,
    },
    /// An error from the Delta protocol library.
    #[error("delta table {table}: {source}")]
    Delta {
        /// The table.
        table: String,
        /// The cause.
        #[source]
        source: DeltaTableError,
    },
    /// An error from the Iceberg library or its catalog.
    #[error("iceberg table {table}: {source}")]
    Iceberg {
        /// The table (or catalog).
        table: String,
        /// The cause (boxed: the library's error is large).
        #[source]
        source: Box<iceberg::Error>,
    },
    /// The input cannot be written as asked; the message says what to fix.
    #[error("{0}")]
    InvalidInput(String),
    /// The operation is not available for this table.
    #[error("{0}")]
    Unsupported(String),
    /// The data has columns a Delta table cannot store (each problem names
    /// its column and what to do).
    #[error("the data does not fit a Delta table: {}", .0.join("; "))]
    Unstorable(Vec<String>),
    /// Encoding Parquet failed.
    #[error("writing parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Object storage failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Arrow failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl Error {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::CommitConflict { .. } | Error::ObjectStore(_) => true,
            Error::Iceberg { source, .. } => {
                source.retryable() || source.kind() == iceberg::ErrorKind::CatalogCommitConflicts
            }
            _ => false,
        }
    }

    pub(crate) fn iceberg(table: &str, source: iceberg::Error) -> Self {
        Error::Iceberg {
            table: table.to_string(),
            source: Box::new(source),
        }
    }

    pub(crate) fn delta(table: &str, source: DeltaTableError) -> Self {
        match source {
            DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_) => {
                Error::CommitConflict {
                    table: table.to_string(),
                    source,
                }
            }
            source => Error::Delta {
                table: table.to_string(),
                source,
            },
        }
    }
}

/// Result with the sink's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
