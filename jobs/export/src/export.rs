//! The export job: a window's committed curated and rollup objects go to the
//! export store under deterministic names, then one load job per table
//! replaces the window's partition in the warehouse. The window's export
//! record in the ledger says which aggregate run was loaded, so a rerun
//! loads nothing twice and a new aggregate run is loaded again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use logferry_core::ledger::{Ledger, Versioned};
use logferry_core::metrics::{LatencyRecorder, LatencyStats};
use logferry_core::partition::{STATE, Window};
use logferry_core::records::AggregateRecord;
use logferry_core::schema::{LOG_RECORDS_TABLE, log_record_schema};
use logferry_core::storage::{Created, Location, delete_if_exists, parquet_schema, put_create};

use crate::error::{Error, Result};
use crate::warehouse::{LoadJob, Warehouse};

/// Ledger key of a window's export record.
pub fn export_key(w: Window) -> String {
    format!("windows/{}/export", w.partition())
}

/// One object that was exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    /// Path in the export store.
    pub path: String,
    /// Bytes.
    pub bytes: u64,
    /// Rows.
    pub rows: u64,
}

/// One table of a window's export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableExport {
    /// Warehouse table.
    pub table: String,
    /// Objects shipped.
    pub files: Vec<ExportedFile>,
    /// Load job id.
    pub job_id: String,
    /// Rows in the partition after the load.
    pub rows_loaded: u64,
    /// True when the load job had already run.
    pub already_loaded: bool,
    /// Load time.
    pub load_ms: u64,
}

/// The ledger record of a window's export and load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRecord {
    /// `YYYY-MM-DDTHH`.
    pub window: String,
    /// The aggregate run that was exported.
    pub aggregate_run_id: String,
    /// Per table.
    pub tables: Vec<TableExport>,
    /// Bytes sent to the export store (this run).
    pub bytes_sent: u64,
    /// Objects found already exported.
    pub files_existing: u64,
    /// Upload latency.
    pub upload_latency: LatencyStats,
    /// When the export committed: the window is queryable from here.
    pub finished_at: DateTime<Utc>,
    /// Run time.
    pub duration_ms: u64,
}

impl ExportRecord {
    /// Rows loaded into `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .filter(|t| t.table == table)
            .map(|t| t.rows_loaded)
            .sum()
    }
}

/// What exporting a window did.
#[derive(Debug, Clone)]
pub enum ExportOutcome {
    /// The aggregate run was already exported and loaded.
    UpToDate(ExportRecord),
    /// The window was exported and loaded now.
    Done(ExportRecord),
}

/// One table's objects to ship: (lake path, tenant suffix, rows).
struct Source {
    table: String,
    schema: SchemaRef,
    files: Vec<(String, Option<String>, u64)>,
}

/// Ships windows to the export store and loads them.
#[derive(Debug, Clone)]
pub struct Exporter {
    lake: Location,
    export: Location,
    warehouse: Arc<dyn Warehouse>,
    ledger: Ledger,
}

/// Deterministic load job id: table, window and the aggregate run's content hash.
pub fn job_id(table: &str, w: Window, run_id: &str) -> String {
    format!(
        "logferry_{table}_{}_{}",
        w.start().format("%Y%m%d%H"),
        &run_id[..run_id.len().min(24)]
    )
}

impl Exporter {
    /// An exporter from `lake` to `export`, loading `warehouse`.
    pub fn new(lake: Location, export: Location, warehouse: Arc<dyn Warehouse>) -> Self {
        Exporter {
            ledger: Ledger::new(lake.store.clone(), STATE),
            lake,
            export,
            warehouse,
        }
    }

    /// The last committed export of a window.
    pub async fn committed(&self, w: Window) -> Result<Option<Versioned<ExportRecord>>> {
        Ok(self.ledger.latest(&export_key(w)).await?)
    }

    async fn sources(&self, agg: &AggregateRecord) -> Result<Vec<Source>> {
        let mut out = vec![Source {
            table: LOG_RECORDS_TABLE.to_string(),
            schema: log_record_schema(),
            files: agg
                .curated
                .iter()
                .map(|f| (f.path.clone(), f.tenant.clone(), f.rows))
                .collect(),
        }];
        let mut rollups: BTreeMap<String, Vec<(String, Option<String>, u64)>> = BTreeMap::new();
        for f in &agg.rollups {
            if let Some(t) = &f.table {
                rollups
                    .entry(t.clone())
                    .or_default()
                    .push((f.path.clone(), None, f.rows));
            }
        }
        for (table, files) in rollups {
            let schema =
                parquet_schema(self.lake.store.as_ref(), &Path::from(files[0].0.as_str())).await?;
            out.push(Source {
                table,
                schema,
                files,
            });
        }
        Ok(out)
    }

    /// Exports and loads the window's committed aggregate run, unless it
    /// already was.
    pub async fn export(&self, w: Window, agg: &AggregateRecord) -> Result<ExportOutcome> {
        let start = Instant::now();
        let prev = self.committed(w).await?;
        if let Some(p) = &prev
            && p.value.aggregate_run_id == agg.run_id
        {
            return Ok(ExportOutcome::UpToDate(p.value.clone()));
        }
        let mut tables = Vec::new();
        let mut bytes_sent = 0;
        let mut files_existing = 0;
        let mut upload = LatencyRecorder::default();
        for src in self.sources(agg).await? {
            let mut files = Vec::new();
            for (lake_path, tenant, rows) in &src.files {
                let name = match tenant {
                    Some(t) => format!("{}-{t}.parquet", agg.run_id),
                    None => format!("{}.parquet", agg.run_id),
                };
                let dest = format!("{}/{}/{name}", src.table, w.partition());
                let bytes = self
                    .lake
                    .store
                    .get(&Path::from(lake_path.as_str()))
                    .await
                    .map_err(|e| logferry_core::Error::storage(lake_path, e))?
                    .bytes()
                    .await
                    .map_err(|e| logferry_core::Error::storage(lake_path, e))?;
                let size = bytes.len() as u64;
                let t0 = Instant::now();
                match put_create(
                    self.export.store.as_ref(),
                    &Path::from(dest.as_str()),
                    bytes,
                )
                .await?
                {
                    Created::New => {
                        upload.record(t0.elapsed());
                        bytes_sent += size;
                    }
                    Created::Existed => {
                        files_existing += 1;
                        let meta = self
                            .export
                            .store
                            .head(&Path::from(dest.as_str()))
                            .await
                            .map_err(|e| logferry_core::Error::storage(&dest, e))?;
                        if meta.size != size {
                            return Err(Error::ExportMismatch {
                                path: dest,
                                existing: meta.size,
                                expected: size,
                            });
                        }
                    }
                }
                files.push(ExportedFile {
                    path: dest,
                    bytes: size,
                    rows: *rows,
                });
            }
            let job = LoadJob {
                job_id: job_id(&src.table, w, &agg.run_id),
                table: src.table.clone(),
                window: w,
                uris: files.iter().map(|f| f.path.clone()).collect(),
                schema: src.schema.clone(),
            };
            let t0 = Instant::now();
            let res = self.warehouse.load(&job).await?;
            let expected: u64 = files.iter().map(|f| f.rows).sum();
            if res.rows != expected {
                return Err(Error::LoadFailed {
                    job_id: job.job_id,
                    message: format!(
                        "table {} window {w} holds {} rows after the load, {expected} were exported",
                        src.table, res.rows
                    ),
                });
            }
            tables.push(TableExport {
                table: src.table,
                files,
                job_id: res.job_id,
                rows_loaded: res.rows,
                already_loaded: res.already_done,
                load_ms: t0.elapsed().as_millis() as u64,
            });
        }
        let record = ExportRecord {
            window: w.to_string(),
            aggregate_run_id: agg.run_id.clone(),
            tables,
            bytes_sent,
            files_existing,
            upload_latency: upload.stats(),
            finished_at: Utc::now(),
            duration_ms: start.elapsed().as_millis() as u64,
        };
        self.ledger
            .commit(&export_key(w), prev.as_ref().map(|p| p.version), &record)
            .await?;
        if let Some(p) = prev {
            let keep: std::collections::HashSet<&str> = record
                .tables
                .iter()
                .flat_map(|t| t.files.iter().map(|f| f.path.as_str()))
                .collect();
            for t in &p.value.tables {
                for f in t.files.iter().filter(|f| !keep.contains(f.path.as_str())) {
                    delete_if_exists(self.export.store.as_ref(), &Path::from(f.path.as_str()))
                        .await?;
                }
            }
        }
        Ok(ExportOutcome::Done(record))
    }

    /// The export store.
    pub fn export_store(&self) -> &Arc<dyn ObjectStore> {
        &self.export.store
    }
}
