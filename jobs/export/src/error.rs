//! Errors of the export job and the warehouses.

/// Result with the export [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an export or a load failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration, storage or ledger failure.
    #[error(transparent)]
    Core(#[from] logferry_core::Error),
    /// Parquet could not be read.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The warehouse refused or failed a load job; the ledger is left so
    /// that the next run retries it.
    #[error("load job {job_id} failed: {message}")]
    LoadFailed {
        /// The job id.
        job_id: String,
        /// The warehouse's messages.
        message: String,
    },
    /// An exported object differs from what an earlier run exported under
    /// the same deterministic name.
    #[error(
        "export object {path} exists with different content ({existing} bytes, expected {expected})"
    )]
    ExportMismatch {
        /// Object path.
        path: String,
        /// Size found.
        existing: u64,
        /// Size expected.
        expected: u64,
    },
}
