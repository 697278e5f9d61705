//! logferry export: ships each window's curated and rollup Parquet to the
//! export store and loads it into the warehouse, one load job per window and
//! table, idempotently.

pub mod error;
pub mod export;
pub mod warehouse;

pub use error::{Error, Result};
pub use export::{ExportOutcome, ExportRecord, Exporter, export_key, job_id};
pub use warehouse::{LoadJob, LoadResult, LocalWarehouse, Warehouse};
