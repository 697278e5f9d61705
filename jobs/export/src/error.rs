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
    /// Invalid configuration for the export store or the warehouse.
    #[error("configuration error: {0}")]
    Config(String),
    /// A GCS call failed (after its retries).
    #[error("GCS {what} failed{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Gcs {
        /// The operation.
        what: String,
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// The client's message.
        message: String,
    },
    /// A BigQuery call failed (after its retries).
    #[error("BigQuery {what} failed: {message}")]
    BigQuery {
        /// The operation.
        what: String,
        /// The API's message.
        message: String,
    },
    /// BigQuery's daily load job quota of a table is used up.
    #[error(
        "table {table}: {used} of today's {budget} load jobs are used (BigQuery's quota of the \
         table, less bigquery.quota_headroom and other writers' jobs); the load waits for the \
         quota to reset at midnight Pacific time"
    )]
    QuotaExhausted {
        /// Table.
        table: String,
        /// Jobs run today.
        used: u64,
        /// Jobs logferry may run today.
        budget: u64,
    },
    /// The warehouse holds another number of rows than was loaded.
    #[error(
        "table {table} partition {partition} holds {found} rows for the window after the load, {expected} were exported"
    )]
    RowMismatch {
        /// Table.
        table: String,
        /// Partition or window.
        partition: String,
        /// Rows found.
        found: u64,
        /// Rows exported.
        expected: u64,
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
