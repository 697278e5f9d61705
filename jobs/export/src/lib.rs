//! logferry export: ships each window's curated and rollup Parquet to the
//! export store (a local directory, or GCS across the transit link) and loads
//! it into the warehouse (a local Parquet warehouse, or BigQuery load jobs),
//! idempotently.

pub mod bigquery;
pub mod error;
pub mod export;
pub mod store;
pub mod warehouse;

use std::sync::Arc;

pub use error::{Error, Result};
pub use export::{
    AppendOutcome, ExportOutcome, ExportRecord, Exporter, LoadState, SealRecord, export_key,
    export_path, job_id, seal_key,
};
pub use store::{ExportStore, GcsExport, ObjectExport};
pub use warehouse::{
    LoadJob, LoadResult, LocalWarehouse, PartitionId, Partitioning, Warehouse, WriteMode,
};

use bigquery::BigQueryWarehouse;
use logferry_core::config::{Settings, WarehouseSettings};
use logferry_core::storage::Location;

/// The configured warehouse, with access to what only one kind offers.
#[derive(Debug, Clone)]
pub enum WarehouseHandle {
    /// The local Parquet warehouse.
    Local(Arc<LocalWarehouse>),
    /// BigQuery.
    BigQuery(Arc<BigQueryWarehouse>),
}

impl WarehouseHandle {
    /// Opens the warehouse the configuration names, loading from `export`;
    /// BigQuery's load jobs are counted in the lake's `ledger`.
    pub async fn open(
        settings: &Settings,
        export: Arc<dyn ExportStore>,
        ledger: logferry_core::ledger::Ledger,
    ) -> Result<Self> {
        Ok(match &settings.warehouse {
            WarehouseSettings::Local { url } => {
                WarehouseHandle::Local(Arc::new(LocalWarehouse::new(
                    Location::open_with(url, &settings.aws)?,
                    export,
                    settings.partitioning,
                    settings.snapshot_retention,
                )))
            }
            WarehouseSettings::BigQuery(b) => WarehouseHandle::BigQuery(Arc::new(
                BigQueryWarehouse::open(b, settings.partitioning, export, ledger).await?,
            )),
        })
    }

    /// The warehouse behind the common trait.
    pub fn as_dyn(&self) -> Arc<dyn Warehouse> {
        match self {
            WarehouseHandle::Local(w) => w.clone(),
            WarehouseHandle::BigQuery(w) => w.clone(),
        }
    }
}
