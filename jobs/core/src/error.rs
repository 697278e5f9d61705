//! Errors of the core library, named by what the caller does next.

use object_store::path::Path;

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in configuration, storage, schemas or the ledger.
///
/// The variants say what the caller does next: a [`Error::Config`] stops the
/// run with a message for the operator, a [`Error::Conflict`] means another
/// writer got there first (re-read and decide), a [`Error::Storage`] may be
/// retried when [`Error::is_retryable`] says so.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid or inconsistent configuration: stop and tell the operator.
    #[error("configuration error: {0}")]
    Config(String),

    /// A value that should have been validated earlier was not valid.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was being validated (tenant id, window, schema, ...).
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },

    /// A conditional write lost against another writer.
    #[error("conflict on {path}: another writer committed first")]
    Conflict {
        /// The object that already existed.
        path: Path,
    },

    /// An object store call failed.
    #[error("storage error on {path}: {source}")]
    Storage {
        /// Object or prefix the call was about.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// A ledger or report document could not be read or written as JSON.
    #[error("JSON error in {path}: {source}")]
    Json {
        /// Object the JSON belongs to.
        path: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// Arrow failed to build or convert a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// Parquet failed to encode or decode.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// Local I/O failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File the call was about.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an object store error with the path it concerns.
    pub fn storage(path: impl ToString, source: object_store::Error) -> Self {
        Error::Storage {
            path: path.to_string(),
            source,
        }
    }

    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl ToString, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    /// Builds an [`Error::Invalid`].
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            detail: detail.into(),
        }
    }

    /// True when retrying the same call may succeed (transient storage faults).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Storage { source, .. } => crate::faults::transient(source),
            Error::Io { source, .. } => crate::faults::io_transient(source),
            _ => false,
        }
    }
}
