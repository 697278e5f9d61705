//! The warehouse seam: load a window's objects into a table partition, and
//! count what a table holds. The embedded implementation is a local Parquet
//! warehouse; BigQuery implements the same trait with load jobs.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use logferry_core::ledger::Ledger;
use logferry_core::partition::Window;
use logferry_core::storage::{Location, delete_if_exists, put_create};

use crate::error::{Error, Result};

/// One load: the objects of one window of one table.
#[derive(Debug, Clone)]
pub struct LoadJob {
    /// Deterministic job id (table, window, content hash).
    pub job_id: String,
    /// Destination table.
    pub table: String,
    /// Partition (window) replaced by the load.
    pub window: Window,
    /// Objects in the export store.
    pub uris: Vec<String>,
    /// Schema the objects must have.
    pub schema: SchemaRef,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadResult {
    /// The job id.
    pub job_id: String,
    /// Rows now in the partition.
    pub rows: u64,
    /// True when the job had already run: nothing was loaded again.
    pub already_done: bool,
}

/// A warehouse that loads files and counts rows.
#[async_trait]
pub trait Warehouse: Send + Sync + std::fmt::Debug {
    /// Replaces the partition `job.window` of `job.table` with the rows of
    /// `job.uris`. Running the same job id again changes nothing.
    async fn load(&self, job: &LoadJob) -> Result<LoadResult>;

    /// Rows per tenant in `table`, in one window or all.
    async fn count_by_tenant(
        &self,
        table: &str,
        window: Option<Window>,
    ) -> Result<BTreeMap<String, u64>>;
}

/// A committed partition of the local warehouse.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionCommit {
    /// Table.
    pub table: String,
    /// Window, `YYYY-MM-DDTHH`.
    pub window: String,
    /// The load job that wrote it.
    pub job_id: String,
    /// Objects, relative to the warehouse root.
    pub files: Vec<String>,
    /// Rows.
    pub rows: u64,
    /// When the load committed.
    pub loaded_at: DateTime<Utc>,
}

/// Parquet tables in a directory (or any object store): one folder per table
/// and window, a commit log per partition (`_meta/`), queried with DataFusion
/// by `logferry sql`.
#[derive(Debug, Clone)]
pub struct LocalWarehouse {
    store: Location,
    export: Location,
    meta: Ledger,
}

fn partition_key(table: &str, w: Window) -> String {
    format!("tables/{table}/{}", w.partition())
}

fn read_footer(bytes: Bytes) -> Result<ParquetRecordBatchReaderBuilder<Bytes>> {
    Ok(ParquetRecordBatchReaderBuilder::try_new(bytes)?)
}

impl LocalWarehouse {
    /// A warehouse at `store` that loads from the export store `export`.
    pub fn new(store: Location, export: Location) -> Self {
        let meta = Ledger::new(store.store.clone(), "_meta");
        LocalWarehouse {
            store,
            export,
            meta,
        }
    }

    /// The warehouse's store.
    pub fn location(&self) -> &Location {
        &self.store
    }

    /// Committed partitions of `table` (or every table), by ledger key.
    pub async fn partitions(&self, table: Option<&str>) -> Result<Vec<PartitionCommit>> {
        let prefix = match table {
            Some(t) => format!("tables/{t}"),
            None => "tables".into(),
        };
        Ok(self
            .meta
            .latest_under::<PartitionCommit>(&prefix, |_| true)
            .await?
            .into_values()
            .map(|v| v.value)
            .collect())
    }

    /// Objects of the committed partitions of a table.
    pub async fn files(&self, table: &str) -> Result<Vec<String>> {
        Ok(self
            .partitions(Some(table))
            .await?
            .into_iter()
            .flat_map(|p| p.files)
            .collect())
    }

    async fn get(store: &dyn ObjectStore, path: &str) -> Result<Bytes> {
        let p = Path::from(path);
        Ok(store
            .get(&p)
            .await
            .map_err(|e| logferry_core::Error::storage(path, e))?
            .bytes()
            .await
            .map_err(|e| logferry_core::Error::storage(path, e))?)
    }
}

fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

#[async_trait]
impl Warehouse for LocalWarehouse {
    async fn load(&self, job: &LoadJob) -> Result<LoadResult> {
        let key = partition_key(&job.table, job.window);
        let prev = self.meta.latest::<PartitionCommit>(&key).await?;
        if let Some(p) = &prev
            && p.value.job_id == job.job_id
        {
            return Ok(LoadResult {
                job_id: job.job_id.clone(),
                rows: p.value.rows,
                already_done: true,
            });
        }
        let mut files = Vec::new();
        let mut rows = 0u64;
        for (i, uri) in job.uris.iter().enumerate() {
            let bytes = Self::get(self.export.store.as_ref(), uri)
                .await
                .map_err(|e| Error::LoadFailed {
                    job_id: job.job_id.clone(),
                    message: format!("cannot read {uri}: {e}"),
                })?;
            let footer = read_footer(bytes.clone()).map_err(|e| Error::LoadFailed {
                job_id: job.job_id.clone(),
                message: format!("{uri} is not Parquet: {e}"),
            })?;
            if !same_columns(footer.schema(), &job.schema) {
                return Err(Error::LoadFailed {
                    job_id: job.job_id.clone(),
                    message: format!("{uri} does not match the schema of table {}", job.table),
                });
            }
            rows += footer.metadata().file_metadata().num_rows().max(0) as u64;
            let path = format!(
                "{}/{}/{}-{i:05}.parquet",
                job.table,
                job.window.partition(),
                job.job_id
            );
            put_create(self.store.store.as_ref(), &Path::from(path.as_str()), bytes).await?;
            files.push(path);
        }
        let commit = PartitionCommit {
            table: job.table.clone(),
            window: job.window.to_string(),
            job_id: job.job_id.clone(),
            files,
            rows,
            loaded_at: Utc::now(),
        };
        self.meta
            .commit(&key, prev.as_ref().map(|p| p.version), &commit)
            .await?;
        if let Some(p) = prev {
            for f in p.value.files.iter().filter(|f| !commit.files.contains(f)) {
                delete_if_exists(self.store.store.as_ref(), &Path::from(f.as_str())).await?;
            }
        }
        Ok(LoadResult {
            job_id: job.job_id.clone(),
            rows,
            already_done: false,
        })
    }

    async fn count_by_tenant(
        &self,
        table: &str,
        window: Option<Window>,
    ) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for p in self.partitions(Some(table)).await? {
            if window.is_some_and(|w| w.to_string() != p.window) {
                continue;
            }
            for f in &p.files {
                let bytes = Self::get(self.store.store.as_ref(), f).await?;
                let b = read_footer(bytes)?;
                let Some(idx) = b.schema().index_of("tenant_id").ok() else {
                    return Err(Error::Arrow(arrow::error::ArrowError::SchemaError(
                        format!("{f} has no tenant_id column"),
                    )));
                };
                let mask = ProjectionMask::roots(b.parquet_schema(), [idx]);
                for batch in b.with_projection(mask).build()? {
                    let batch = batch?;
                    for v in batch.column(0).as_string::<i32>().iter() {
                        *out.entry(v.unwrap_or("").to_string()).or_default() += 1;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The warehouse named by the configuration.
pub fn open(
    settings: &logferry_core::config::Settings,
    export: Location,
) -> Result<Arc<LocalWarehouse>> {
    match &settings.warehouse {
        logferry_core::config::WarehouseSettings::Local { url } => {
            Ok(Arc::new(LocalWarehouse::new(Location::open(url)?, export)))
        }
    }
}
