//! Errors of the forward job. Bad records are not errors: they go to the DLQ.

/// Result with the forward [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a forward run stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration, storage or ledger failure.
    #[error(transparent)]
    Core(#[from] logferry_core::Error),
    /// Parquet encoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The lake writer stopped; the cause is reported with it.
    #[error("forward stopped: {0}")]
    Writer(String),
    /// The source (Kinesis) failed after its retries.
    #[error("source: {0}")]
    Source(String),
    /// A task of the job failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}
