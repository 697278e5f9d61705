//! The export job: a window's committed curated and rollup objects go to the
//! export store under deterministic names (in parallel, under the store's
//! bandwidth cap), then load jobs bring them into the warehouse:
//!
//! - hourly partitions: one job per table replaces the window's partition;
//! - daily partitions: a window's first run is appended; once the day is past
//!   its lateness allowance (or `--seal`), one job per table replaces the day
//!   with every window's current objects (the nightly, cost-optimised load),
//!   and again whenever a window of a sealed day changes.
//!
//! The ledger records, per window, which aggregate run was exported and
//! which was loaded, and per day which windows the seal loaded, so a rerun
//! loads nothing twice and a changed window is loaded again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use logferry_core::config::Partitioning;
use logferry_core::failpoint;
use logferry_core::ids::IdHasher;
use logferry_core::ledger::{Ledger, Versioned};
use logferry_core::metrics::{LatencyRecorder, LatencyStats};
use logferry_core::partition::{STATE, Window};
use logferry_core::records::{AggregateRecord, Appended, Increment, appended_key};
use logferry_core::schema::{LOG_RECORDS_TABLE, log_record_schema};
use logferry_core::storage::{Created, Location, get_bytes, parquet_schema};

use crate::error::{Error, Result};
use crate::store::ExportStore;
use crate::warehouse::{LoadJob, LoadResult, PartitionId, Warehouse, WriteMode};

/// Ledger key of a window's export record.
pub fn export_key(w: Window) -> String {
    format!("windows/{}/export", w.partition())
}

/// Ledger key of a day's seal record.
pub fn seal_key(day: &PartitionId) -> String {
    format!("days/{}/seal", day.key())
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
    /// Bytes of the data before Parquet encoding and compression.
    #[serde(default)]
    pub uncompressed_bytes: u64,
}

/// One table of a window's export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableExport {
    /// Warehouse table.
    pub table: String,
    /// Objects shipped.
    pub files: Vec<ExportedFile>,
    /// Load job of the window, if one ran (none while awaiting a seal).
    pub job_id: Option<String>,
    /// Rows the window's load job loaded.
    pub rows_loaded: u64,
    /// True when the load job had already run.
    pub already_loaded: bool,
    /// Load time.
    pub load_ms: u64,
}

impl TableExport {
    /// Rows in the exported objects.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// Where a window's data stands in the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadState {
    /// The exported run replaced the window's hourly partition.
    Loaded,
    /// The exported run was appended to its day partition.
    Appended,
    /// Exported; the day's seal will load it.
    AwaitingSeal,
}

/// The ledger record of a window's export and load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRecord {
    /// `YYYY-MM-DDTHH`.
    pub window: String,
    /// The aggregate run whose objects are in the export store.
    pub aggregate_run_id: String,
    /// The aggregate run a window-level load job loaded, if any.
    pub loaded_run: Option<String>,
    /// Where the exported run stands.
    pub state: LoadState,
    /// Per table.
    pub tables: Vec<TableExport>,
    /// Bytes sent to the export store (this run).
    pub bytes_sent: u64,
    /// Uncompressed over compressed bytes of the exported objects.
    #[serde(default)]
    pub compression_ratio: f64,
    /// Objects found already exported.
    pub files_existing: u64,
    /// Upload latency.
    pub upload_latency: LatencyStats,
    /// When the export committed.
    pub finished_at: DateTime<Utc>,
    /// Run time.
    pub duration_ms: u64,
}

impl ExportRecord {
    /// Rows the window-level load loaded into `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .filter(|t| t.table == table)
            .map(|t| t.rows_loaded)
            .sum()
    }

    /// Rows exported for `table`.
    pub fn exported_rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .filter(|t| t.table == table)
            .map(TableExport::rows)
            .sum()
    }
}

/// One table of a seal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealTable {
    /// Table.
    pub table: String,
    /// Load job id.
    pub job_id: String,
    /// Rows in the partition after the seal.
    pub rows: u64,
    /// Objects loaded.
    pub files: usize,
    /// True when the job had already run.
    pub already_loaded: bool,
}

/// The ledger record of a day's seal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealRecord {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Hash of the windows and runs sealed.
    pub seal_id: String,
    /// The aggregate run of each window the seal loaded.
    pub windows: BTreeMap<String, String>,
    /// Per table.
    pub tables: Vec<SealTable>,
    /// When the seal committed.
    pub finished_at: DateTime<Utc>,
}

/// What exporting a window did.
#[derive(Debug, Clone)]
pub enum ExportOutcome {
    /// Nothing new: the aggregate run was exported and handled already.
    UpToDate(ExportRecord),
    /// The window was exported (and loaded, unless awaiting its seal).
    Done(ExportRecord),
}

impl ExportOutcome {
    /// The record either way.
    pub fn record(&self) -> &ExportRecord {
        match self {
            ExportOutcome::UpToDate(r) | ExportOutcome::Done(r) => r,
        }
    }
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
    export: Arc<dyn ExportStore>,
    warehouse: Arc<dyn Warehouse>,
    ledger: Ledger,
    parallel_uploads: usize,
}

/// Where a run's object of `table` (one tenant's, or all tenants') goes in
/// the export store. Plain date/hour folders, not `dt=`/`hour=`: a loader
/// that detects Hive partitions (DuckDB does) would add them as columns
/// the table does not have.
/// A run writes a tenant's rows in one or more parts (objects of bounded
/// size): part 0 is `<run>-<tenant>.parquet`, part n `<run>-<tenant>.n.parquet`.
pub fn export_path(
    table: &str,
    w: Window,
    run_id: &str,
    tenant: Option<&str>,
    part: usize,
) -> String {
    let stem = match tenant {
        Some(tn) => format!("{run_id}-{tn}"),
        None => run_id.to_string(),
    };
    let name = if part == 0 {
        format!("{stem}.parquet")
    } else {
        format!("{stem}.{part}.parquet")
    };
    format!("{table}/{}/{}/{name}", w.dt(), w.hour())
}

/// Numbers the parts of each tenant's rows in the order a run lists them.
#[derive(Debug, Default)]
struct PartCounter(BTreeMap<Option<String>, usize>);

impl PartCounter {
    fn next(&mut self, tenant: Option<&str>) -> usize {
        let n = self.0.entry(tenant.map(str::to_string)).or_default();
        *n += 1;
        *n - 1
    }
}

/// What appending an increment did.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// The ledger's record of the chain's appends, after this one.
    pub appended: Appended,
    /// The load job.
    pub job_id: String,
    /// True when the job had already run (a retried append).
    pub already_loaded: bool,
    /// Bytes shipped to the export store.
    pub bytes_sent: u64,
    /// Upload and load time.
    pub duration_ms: u64,
}

/// Deterministic load job id: table, partition or window, content hash.
pub fn job_id(table: &str, scope: &str, content: &str) -> String {
    format!(
        "logferry_{table}_{scope}_{}",
        &content[..content.len().min(24)]
    )
}

fn window_scope(w: Window) -> String {
    w.start().format("%Y%m%d%H").to_string()
}

impl Exporter {
    /// An exporter from `lake` to `export`, loading `warehouse`.
    pub fn new(
        lake: Location,
        export: Arc<dyn ExportStore>,
        warehouse: Arc<dyn Warehouse>,
        parallel_uploads: usize,
    ) -> Self {
        Exporter {
            ledger: Ledger::new(lake.store.clone(), STATE),
            lake,
            export,
            warehouse,
            parallel_uploads: parallel_uploads.max(1),
        }
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Arc<dyn Warehouse> {
        &self.warehouse
    }

    /// The last committed export of a window.
    pub async fn committed(&self, w: Window) -> Result<Option<Versioned<ExportRecord>>> {
        Ok(self.ledger.latest(&export_key(w)).await?)
    }

    /// Every window's last export record, by window.
    pub async fn all_exports(&self) -> Result<BTreeMap<String, ExportRecord>> {
        Ok(self
            .ledger
            .latest_under::<ExportRecord>("windows", |k| k.ends_with("/export"))
            .await?
            .into_values()
            .map(|v| (v.value.window.clone(), v.value))
            .collect())
    }

    /// Every day's last seal, by day.
    pub async fn all_seals(&self) -> Result<BTreeMap<String, SealRecord>> {
        Ok(self
            .ledger
            .latest_under::<SealRecord>("days", |k| k.ends_with("/seal"))
            .await?
            .into_values()
            .map(|v| (v.value.day.clone(), v.value))
            .collect())
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

    async fn read_lake(&self, path: &str) -> Result<Bytes> {
        Ok(get_bytes(self.lake.store.as_ref(), &Path::from(path)).await?)
    }

    /// Ships one run's objects (an aggregate run, or an increment);
    /// returns (files per table, bytes sent, objects found already there,
    /// upload latency).
    async fn upload(
        &self,
        w: Window,
        run_id: &str,
        sources: &[Source],
    ) -> Result<(Vec<Vec<ExportedFile>>, u64, u64, LatencyRecorder)> {
        let mut work = Vec::new();
        for (t, src) in sources.iter().enumerate() {
            let mut parts = PartCounter::default();
            for (lake_path, tenant, rows) in &src.files {
                let part = parts.next(tenant.as_deref());
                let dest = export_path(&src.table, w, run_id, tenant.as_deref(), part);
                work.push((t, lake_path.clone(), dest, *rows));
            }
        }
        let results: Vec<(usize, ExportedFile, Created, std::time::Duration)> =
            futures::stream::iter(
                work.into_iter()
                    .map(|(t, lake_path, dest, rows)| async move {
                        let bytes = self.read_lake(&lake_path).await?;
                        let size = bytes.len() as u64;
                        let uncompressed_bytes = uncompressed_size(&bytes);
                        let t0 = Instant::now();
                        let created = self.export.put_create(&dest, bytes).await?;
                        Ok::<_, Error>((
                            t,
                            ExportedFile {
                                path: dest,
                                bytes: size,
                                rows,
                                uncompressed_bytes,
                            },
                            created,
                            t0.elapsed(),
                        ))
                    }),
            )
            .buffered(self.parallel_uploads)
            .try_collect()
            .await?;
        let mut files = vec![Vec::new(); sources.len()];
        let (mut sent, mut existing) = (0, 0);
        let mut latency = LatencyRecorder::default();
        for (t, f, created, took) in results {
            match created {
                Created::New => {
                    sent += f.bytes;
                    latency.record(took);
                }
                Created::Existed => existing += 1,
            }
            files[t].push(f);
        }
        Ok((files, sent, existing, latency))
    }

    /// Exports the window's committed aggregate run and loads it as the
    /// partitioning says. `seal_due` tells whether the window's day is past
    /// its lateness allowance (daily partitions: then the seal loads it).
    pub async fn export(
        &self,
        w: Window,
        agg: &AggregateRecord,
        seal_due: bool,
    ) -> Result<ExportOutcome> {
        self.export_tables(w, agg, seal_due, None).await
    }

    /// Like [`Exporter::export`], for the tables in `only` (every table
    /// when `None`): the others keep what the warehouse holds of them, and
    /// the record keeps their earlier objects (a backfill of some tables).
    pub async fn export_tables(
        &self,
        w: Window,
        agg: &AggregateRecord,
        seal_due: bool,
        only: Option<&BTreeSet<String>>,
    ) -> Result<ExportOutcome> {
        let start = Instant::now();
        let partitioning = self.warehouse.partitioning();
        let prev = self.committed(w).await?;
        if let Some(p) = &prev
            && p.value.aggregate_run_id == agg.run_id
            && (partitioning == Partitioning::Day
                || p.value.loaded_run.as_ref() == Some(&agg.run_id))
        {
            return Ok(ExportOutcome::UpToDate(p.value.clone()));
        }
        let mut sources = self.sources(agg).await?;
        if let Some(only) = only {
            sources.retain(|s| only.contains(&s.table));
        }
        let (files, bytes_sent, files_existing, upload_latency) =
            self.upload(w, &agg.run_id, &sources).await?;
        failpoint::hit("export.after_upload");
        let partition = PartitionId::of(w, partitioning);
        let prev_loaded = prev.as_ref().and_then(|p| p.value.loaded_run.clone());
        // Increments appended to the day already: the window's rows are in
        // it, and only the day's seal may replace them.
        let chain_appended = self
            .ledger
            .latest::<Appended>(&appended_key(w))
            .await?
            .is_some_and(|a| a.value.seq > 0);
        let (mode, state) = match partitioning {
            Partitioning::Hour => (Some(WriteMode::Replace), LoadState::Loaded),
            Partitioning::Day if !seal_due && prev_loaded.is_none() && !chain_appended => {
                (Some(WriteMode::Append), LoadState::Appended)
            }
            Partitioning::Day => (None, LoadState::AwaitingSeal),
        };
        let mut tables = Vec::new();
        for (src, files) in sources.iter().zip(files) {
            let rows: u64 = files.iter().map(|f| f.rows).sum();
            let mut t = TableExport {
                table: src.table.clone(),
                files,
                job_id: None,
                rows_loaded: 0,
                already_loaded: false,
                load_ms: 0,
            };
            if let Some(mode) = mode {
                let job = LoadJob {
                    job_id: job_id(&src.table, &window_scope(w), &agg.run_id),
                    table: src.table.clone(),
                    partition,
                    mode,
                    files: t.files.iter().map(|f| f.path.clone()).collect(),
                    schema: src.schema.clone(),
                    rows,
                    bytes: t.files.iter().map(|f| f.bytes).sum(),
                    window: Some(w),
                    expect_rows: None,
                };
                let t0 = Instant::now();
                let res = self.warehouse.load(&job).await?;
                if res.rows != rows {
                    return Err(Error::RowMismatch {
                        table: src.table.clone(),
                        partition: w.to_string(),
                        found: res.rows,
                        expected: rows,
                    });
                }
                t.job_id = Some(res.job_id);
                t.rows_loaded = res.rows;
                t.already_loaded = res.already_done;
                t.load_ms = t0.elapsed().as_millis() as u64;
            }
            tables.push(t);
        }
        // Tables left out keep their earlier export.
        if let (Some(only), Some(p)) = (only, &prev) {
            tables.extend(
                p.value
                    .tables
                    .iter()
                    .filter(|t| !only.contains(&t.table))
                    .cloned(),
            );
        }
        failpoint::hit("export.after_load");
        let (raw, packed) = tables
            .iter()
            .flat_map(|t| t.files.iter())
            .fold((0, 0), |a, f| (a.0 + f.uncompressed_bytes, a.1 + f.bytes));
        let record = ExportRecord {
            compression_ratio: if packed > 0 {
                raw as f64 / packed as f64
            } else {
                0.0
            },
            window: w.to_string(),
            aggregate_run_id: agg.run_id.clone(),
            loaded_run: if mode.is_some() {
                Some(agg.run_id.clone())
            } else {
                prev_loaded
            },
            state,
            tables,
            bytes_sent,
            files_existing,
            upload_latency: upload_latency.stats(),
            finished_at: Utc::now(),
            duration_ms: start.elapsed().as_millis() as u64,
        };
        self.ledger
            .commit(&export_key(w), prev.as_ref().map(|p| p.version), &record)
            .await?;
        failpoint::hit("export.after_commit");
        // The warehouse holds its own copy of what it loaded; superseded
        // exports only waste space (and would be loaded by a wildcard).
        if let Some(p) = prev {
            let keep: std::collections::HashSet<&str> = record
                .tables
                .iter()
                .flat_map(|t| t.files.iter().map(|f| f.path.as_str()))
                .collect();
            for t in &p.value.tables {
                for f in t.files.iter().filter(|f| !keep.contains(f.path.as_str())) {
                    self.export.delete(&f.path).await?;
                }
            }
        }
        Ok(ExportOutcome::Done(record))
    }

    /// Appends an increment of an open window: its curated objects go to
    /// the export store, one load job (its id derived from the
    /// increment's, so a retried append is the same job) appends them to
    /// the window's partition, and the ledger records the append. `prev`
    /// is the chain's last recorded append; increments are appended in
    /// order, each once.
    pub async fn append(
        &self,
        w: Window,
        inc: &Increment,
        prev: Option<&Versioned<Appended>>,
    ) -> Result<AppendOutcome> {
        let start = Instant::now();
        let source = Source {
            table: LOG_RECORDS_TABLE.to_string(),
            schema: log_record_schema(),
            files: inc
                .curated
                .iter()
                .map(|f| (f.path.clone(), f.tenant.clone(), f.rows))
                .collect(),
        };
        let rows = inc.curated_rows();
        let (files, bytes_sent, _, _) = self
            .upload(w, &inc.id, std::slice::from_ref(&source))
            .await?;
        let files = files.into_iter().next().unwrap_or_default();
        let job = LoadJob {
            job_id: job_id(LOG_RECORDS_TABLE, &window_scope(w), &inc.id),
            table: LOG_RECORDS_TABLE.to_string(),
            partition: PartitionId::of(w, self.warehouse.partitioning()),
            mode: WriteMode::Append,
            files: files.iter().map(|f| f.path.clone()).collect(),
            schema: source.schema.clone(),
            rows,
            bytes: files.iter().map(|f| f.bytes).sum(),
            window: Some(w),
            expect_rows: Some(inc.rows_after),
        };
        let res = if rows == 0 {
            // Nothing new survived dedupe and the rules: no job to run.
            LoadResult {
                job_id: job.job_id.clone(),
                rows: 0,
                already_done: false,
            }
        } else {
            self.warehouse.load(&job).await?
        };
        if res.rows != rows {
            return Err(Error::RowMismatch {
                table: job.table.clone(),
                partition: w.to_string(),
                found: res.rows,
                expected: rows,
            });
        }
        failpoint::hit("increment.after_append");
        let appended = Appended {
            base_run_id: inc.base_run_id.clone(),
            seq: inc.seq,
            last_id: inc.id.clone(),
            rows: inc.rows_after,
            finished_at: Utc::now(),
        };
        self.ledger
            .commit(&appended_key(w), prev.map(|p| p.version), &appended)
            .await?;
        failpoint::hit("increment.after_recorded");
        Ok(AppendOutcome {
            appended,
            job_id: res.job_id,
            already_loaded: res.already_done,
            bytes_sent,
            duration_ms: start.elapsed().as_millis() as u64,
        })
    }

    /// Loads a window's exported run again into its hourly partition,
    /// under job ids salted with `salt` (a partition lost in the
    /// warehouse): its objects are shipped again where the export store no
    /// longer has them. Returns (table, job id, rows, already loaded).
    pub async fn reload_window(
        &self,
        w: Window,
        agg: &AggregateRecord,
        salt: &str,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Vec<(String, String, u64, bool)>> {
        let mut sources = self.sources(agg).await?;
        if let Some(only) = only {
            sources.retain(|s| only.contains(&s.table));
        }
        let (files, ..) = self.upload(w, &agg.run_id, &sources).await?;
        let mut out = Vec::new();
        for (src, files) in sources.iter().zip(files) {
            let rows: u64 = files.iter().map(|f| f.rows).sum();
            let job = LoadJob {
                job_id: job_id(
                    &src.table,
                    &window_scope(w),
                    &IdHasher::new()
                        .part(agg.run_id.as_bytes())
                        .part(salt.as_bytes())
                        .hex(),
                ),
                table: src.table.clone(),
                partition: PartitionId::of(w, self.warehouse.partitioning()),
                mode: WriteMode::Replace,
                files: files.iter().map(|f| f.path.clone()).collect(),
                schema: src.schema.clone(),
                rows,
                bytes: files.iter().map(|f| f.bytes).sum(),
                window: Some(w),
                expect_rows: None,
            };
            let res = self.warehouse.load(&job).await?;
            if res.rows != rows {
                return Err(Error::RowMismatch {
                    table: src.table.clone(),
                    partition: w.to_string(),
                    found: res.rows,
                    expected: rows,
                });
            }
            out.push((src.table.clone(), res.job_id, res.rows, res.already_done));
        }
        Ok(out)
    }

    /// The chain's last recorded append, if any.
    pub async fn appended(&self, w: Window) -> Result<Option<Versioned<Appended>>> {
        Ok(self.ledger.latest(&appended_key(w)).await?)
    }

    /// Removes the export objects of increments a full run replaced.
    pub async fn remove_chain(&self, w: Window, chain: &[Increment]) -> Result<()> {
        for inc in chain {
            let mut parts = PartCounter::default();
            for f in &inc.curated {
                let part = parts.next(f.tenant.as_deref());
                let path = export_path(LOG_RECORDS_TABLE, w, &inc.id, f.tenant.as_deref(), part);
                self.export.delete(&path).await?;
            }
        }
        Ok(())
    }

    /// Seals a day: replaces its partition in every table with the current
    /// exported objects of all its windows. Returns `None` when the last seal
    /// already loaded exactly these windows' runs.
    pub async fn seal(
        &self,
        day: PartitionId,
        windows: &BTreeMap<String, ExportRecord>,
    ) -> Result<Option<SealRecord>> {
        self.seal_with(day, windows, None, None).await
    }

    /// Like [`Exporter::seal`], for the tables in `only` (every table when
    /// `None`); with `reload`, the day is loaded again under new job ids
    /// (`reload` salts them) even if these runs were sealed already (a
    /// partition lost in the warehouse).
    pub async fn seal_with(
        &self,
        day: PartitionId,
        windows: &BTreeMap<String, ExportRecord>,
        only: Option<&BTreeSet<String>>,
        reload: Option<&str>,
    ) -> Result<Option<SealRecord>> {
        let mine: Vec<&ExportRecord> = windows
            .values()
            .filter(|r| Window::parse(&r.window).is_ok_and(|w| day.contains(w)))
            .collect();
        if mine.is_empty() {
            return Ok(None);
        }
        let mut h = IdHasher::new();
        let mut runs = BTreeMap::new();
        for r in &mine {
            h.part(r.window.as_bytes())
                .part(r.aggregate_run_id.as_bytes());
            runs.insert(r.window.clone(), r.aggregate_run_id.clone());
        }
        if let Some(only) = only {
            h.part(b"tables");
            for t in only {
                h.part(t.as_bytes());
            }
        }
        let seal_id = h.hex();
        let key = seal_key(&day);
        let prev = self.ledger.latest::<SealRecord>(&key).await?;
        if reload.is_none() && prev.as_ref().is_some_and(|p| p.value.seal_id == seal_id) {
            return Ok(None);
        }
        let content = match reload {
            Some(salt) => IdHasher::new()
                .part(seal_id.as_bytes())
                .part(salt.as_bytes())
                .hex(),
            None => seal_id.clone(),
        };
        let mut by_table: BTreeMap<String, Vec<ExportedFile>> = BTreeMap::new();
        for r in &mine {
            for t in &r.tables {
                by_table
                    .entry(t.table.clone())
                    .or_default()
                    .extend(t.files.iter().cloned());
            }
        }
        if let Some(only) = only {
            by_table.retain(|t, _| only.contains(t));
        }
        let mut tables = Vec::new();
        for (table, files) in by_table {
            let schema = if table == LOG_RECORDS_TABLE {
                log_record_schema()
            } else {
                match files.first() {
                    Some(f) => schema_of(&self.export.get(&f.path).await?)?,
                    None => continue,
                }
            };
            let rows = files.iter().map(|f| f.rows).sum();
            let job = LoadJob {
                job_id: job_id(&table, &day.decorator(), &content),
                table: table.clone(),
                partition: day,
                mode: WriteMode::Replace,
                files: files.iter().map(|f| f.path.clone()).collect(),
                schema,
                rows,
                bytes: files.iter().map(|f| f.bytes).sum(),
                window: None,
                expect_rows: None,
            };
            let res = self.warehouse.load(&job).await?;
            tables.push(SealTable {
                table,
                job_id: res.job_id,
                rows: res.rows,
                files: files.len(),
                already_loaded: res.already_done,
            });
        }
        failpoint::hit("seal.after_load");
        let record = SealRecord {
            day: day.start.format("%Y-%m-%d").to_string(),
            seal_id,
            windows: runs,
            tables,
            finished_at: Utc::now(),
        };
        self.ledger
            .commit(&key, prev.as_ref().map(|p| p.version), &record)
            .await?;
        Ok(Some(record))
    }
}

/// Bytes of a Parquet object's data before encoding and compression, from
/// its footer (0 when it cannot be read).
fn uncompressed_size(bytes: &Bytes) -> u64 {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .map(|b| {
            b.metadata()
                .row_groups()
                .iter()
                .map(|rg| rg.total_byte_size().max(0) as u64)
                .sum()
        })
        .unwrap_or(0)
}

fn schema_of(bytes: &Bytes) -> Result<SchemaRef> {
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    Ok(b.schema().clone())
}
