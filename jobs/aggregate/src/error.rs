//! Errors of the aggregate job.

/// Result with the aggregate [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an aggregate run stopped. Rule violations are not errors: they are
/// dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration, storage or ledger failure.
    #[error(transparent)]
    Core(#[from] logferry_core::Error),
    /// DataFusion failed to plan or run a query.
    #[error("query failed: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Arrow failed to build a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet encoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A file of the SQL program is invalid.
    #[error("{file}: {message}")]
    Sql {
        /// The SQL file.
        file: String,
        /// What is wrong with it.
        message: String,
    },
    /// A task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}
