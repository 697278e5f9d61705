//! The warehouse seam: load exported objects into a table partition (append,
//! or replace the partition), and count what a table holds. The embedded
//! implementation is a local Parquet warehouse; BigQuery implements the same
//! trait with load jobs.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Timelike, Utc};
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

pub use logferry_core::config::Partitioning;
use logferry_core::failpoint;
use logferry_core::ledger::Ledger;
use logferry_core::partition::Window;
use logferry_core::storage::{Location, delete_if_exists, get_bytes, put_create};

use crate::error::{Error, Result};
use crate::store::ExportStore;

/// A partition of a warehouse table: an hour or a day of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionId {
    /// First instant.
    pub start: DateTime<Utc>,
    /// Hour or day.
    pub partitioning: Partitioning,
}

impl PartitionId {
    /// The partition holding a window.
    pub fn of(w: Window, partitioning: Partitioning) -> Self {
        let start = match partitioning {
            Partitioning::Hour => w.start(),
            Partitioning::Day => Utc
                .with_ymd_and_hms(
                    w.start().year(),
                    w.start().month(),
                    w.start().day(),
                    0,
                    0,
                    0,
                )
                .single()
                .unwrap_or_else(|| w.start() - ChronoDuration::hours(i64::from(w.start().hour()))),
        };
        PartitionId {
            start,
            partitioning,
        }
    }

    /// First instant after the partition.
    pub fn end(&self) -> DateTime<Utc> {
        match self.partitioning {
            Partitioning::Hour => self.start + ChronoDuration::hours(1),
            Partitioning::Day => self.start + ChronoDuration::days(1),
        }
    }

    /// BigQuery partition decorator: `YYYYMMDDHH` or `YYYYMMDD`.
    pub fn decorator(&self) -> String {
        match self.partitioning {
            Partitioning::Hour => self.start.format("%Y%m%d%H").to_string(),
            Partitioning::Day => self.start.format("%Y%m%d").to_string(),
        }
    }

    /// Path form: `hour=YYYY-MM-DDTHH` or `day=YYYY-MM-DD`.
    pub fn key(&self) -> String {
        match self.partitioning {
            Partitioning::Hour => format!("hour={}", self.start.format("%Y-%m-%dT%H")),
            Partitioning::Day => format!("day={}", self.start.format("%Y-%m-%d")),
        }
    }

    /// True when the window lies in this partition.
    pub fn contains(&self, w: Window) -> bool {
        w.start() >= self.start && w.start() < self.end()
    }
}

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

/// How a load writes its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add the rows (micro-batches of a day partition).
    Append,
    /// Replace the partition's rows with the job's (hourly windows, seals).
    Replace,
}

/// One load: objects of one table into one partition.
#[derive(Debug, Clone)]
pub struct LoadJob {
    /// Deterministic job id (table, partition, content hash).
    pub job_id: String,
    /// Destination table.
    pub table: String,
    /// Destination partition.
    pub partition: PartitionId,
    /// Append or replace.
    pub mode: WriteMode,
    /// Objects, as paths in the export store.
    pub files: Vec<String>,
    /// Schema the objects have.
    pub schema: SchemaRef,
    /// Rows in the objects.
    pub rows: u64,
    /// Bytes of the objects.
    pub bytes: u64,
    /// The window the job loads, for appends (checked after the load).
    pub window: Option<Window>,
    /// Rows the checked range (the window of an append, else the
    /// partition) holds once the job ran; `None`: the job's own rows.
    pub expect_rows: Option<u64>,
}

impl LoadJob {
    /// The time column the table is partitioned on: the first timestamp
    /// column (`timestamp` for records, `minute` for rollups).
    pub fn time_column(&self) -> Option<String> {
        time_column(&self.schema)
    }
}

/// The first timestamp column of a schema.
pub fn time_column(schema: &SchemaRef) -> Option<String> {
    schema
        .fields()
        .iter()
        .find(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
        .map(|f| f.name().clone())
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadResult {
    /// The job id.
    pub job_id: String,
    /// Rows the job loaded.
    pub rows: u64,
    /// True when the job had already run: nothing was loaded again.
    pub already_done: bool,
}

/// A warehouse that loads exported objects and counts rows.
#[async_trait]
pub trait Warehouse: Send + Sync + std::fmt::Debug {
    /// How the warehouse's tables are partitioned.
    fn partitioning(&self) -> Partitioning;

    /// Runs a load job. Running the same job id again changes nothing.
    async fn load(&self, job: &LoadJob) -> Result<LoadResult>;

    /// Load jobs that may still run on `table` today; `None` when the
    /// warehouse has no such quota.
    async fn jobs_left(&self, _table: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Removes what earlier versions of partitions kept for their readers,
    /// once no reader needs it; returns the objects removed.
    async fn vacuum(&self) -> Result<u64> {
        Ok(0)
    }

    /// Rows per tenant in `table`, in one window (by event time) or all.
    async fn count_by_tenant(
        &self,
        table: &str,
        window: Option<Window>,
    ) -> Result<BTreeMap<String, u64>>;
}

/// One load that a local partition holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalLoad {
    /// Job id.
    pub job_id: String,
    /// Objects, relative to the warehouse root.
    pub files: Vec<String>,
    /// Rows.
    pub rows: u64,
}

/// Objects a replace took out of a partition: kept for readers that
/// listed the partition before the replace, then removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retired {
    /// Objects, relative to the warehouse root.
    pub files: Vec<String>,
    /// When the replace committed.
    pub since: DateTime<Utc>,
}

/// A committed partition of the local warehouse.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionCommit {
    /// Table.
    pub table: String,
    /// Partition.
    pub partition: PartitionId,
    /// The loads whose rows it holds.
    pub loads: Vec<LocalLoad>,
    /// When the last load committed.
    pub loaded_at: DateTime<Utc>,
    /// Objects of earlier versions, still readable by whoever read those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Retired>,
}

impl PartitionCommit {
    /// Every object of the partition.
    pub fn files(&self) -> impl Iterator<Item = &String> {
        self.loads.iter().flat_map(|l| l.files.iter())
    }
}

/// Parquet tables in a directory (or any object store): one folder per table
/// and partition, a commit log per partition (`_meta/`), queried with
/// DataFusion by `logferry sql`.
///
/// Readers see whole versions: a reader takes a partition's latest commit
/// and reads the objects it names. A replace does not delete the objects it
/// took out; it lists them as retired, and they are removed only once
/// `retention` has passed (by a later commit of the partition, or
/// [`LocalWarehouse::vacuum`]), so a query that started before the replace
/// still finds every object it listed: it sees the old version or the new
/// one, never an error, as BigQuery readers do.
#[derive(Debug, Clone)]
pub struct LocalWarehouse {
    store: Location,
    export: Arc<dyn ExportStore>,
    meta: Ledger,
    partitioning: Partitioning,
    retention: std::time::Duration,
}

fn partition_key(table: &str, p: &PartitionId) -> String {
    format!("tables/{table}/{}", p.key())
}

/// Ledger marker of a partition holding retired objects.
fn retired_marker(table: &str, p: &PartitionId) -> String {
    format!("retired/{table}/{}", p.key())
}

impl LocalWarehouse {
    /// A warehouse at `store` that loads from `export`, keeping replaced
    /// objects readable for `retention`.
    pub fn new(
        store: Location,
        export: Arc<dyn ExportStore>,
        partitioning: Partitioning,
        retention: std::time::Duration,
    ) -> Self {
        let meta = Ledger::new(store.store.clone(), "_meta");
        LocalWarehouse {
            store,
            export,
            meta,
            partitioning,
            retention,
        }
    }

    /// Splits retired objects into those past the retention and the rest.
    fn expire(&self, retired: Vec<Retired>, now: DateTime<Utc>) -> (Vec<Retired>, Vec<String>) {
        let keep_for = ChronoDuration::from_std(self.retention).unwrap_or(ChronoDuration::hours(1));
        let (gone, kept): (Vec<Retired>, Vec<Retired>) =
            retired.into_iter().partition(|r| r.since + keep_for <= now);
        (kept, gone.into_iter().flat_map(|r| r.files).collect())
    }

    /// Removes retired objects past the retention from every partition that
    /// has some. Returns the objects removed.
    pub async fn remove_retired(&self) -> Result<u64> {
        let now = Utc::now();
        let mut removed = 0;
        for marker in self.meta.list("retired").await? {
            let Some(key) = marker.strip_prefix("retired/") else {
                continue;
            };
            let key = format!("tables/{key}");
            let Some(prev) = self.meta.latest::<PartitionCommit>(&key).await? else {
                self.meta.remove(&marker).await?;
                continue;
            };
            let (kept, gone) = self.expire(prev.value.retired.clone(), now);
            if gone.is_empty() {
                continue;
            }
            let commit = PartitionCommit {
                retired: kept,
                ..prev.value.clone()
            };
            match self.meta.commit(&key, Some(prev.version), &commit).await {
                Ok(_) => {}
                // A load committed meanwhile: it expires them itself.
                Err(logferry_core::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            for f in &gone {
                delete_if_exists(self.store.store.as_ref(), &Path::from(f.as_str())).await?;
                removed += 1;
            }
            if commit.retired.is_empty() {
                self.meta.remove(&marker).await?;
            }
        }
        Ok(removed)
    }

    /// The warehouse's store.
    pub fn location(&self) -> &Location {
        &self.store
    }

    /// Committed partitions of `table` (or every table).
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

    async fn read(&self, path: &str) -> Result<Bytes> {
        Ok(get_bytes(self.store.store.as_ref(), &Path::from(path)).await?)
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
    fn partitioning(&self) -> Partitioning {
        self.partitioning
    }

    async fn vacuum(&self) -> Result<u64> {
        self.remove_retired().await
    }

    async fn load(&self, job: &LoadJob) -> Result<LoadResult> {
        let key = partition_key(&job.table, &job.partition);
        let prev = self.meta.latest::<PartitionCommit>(&key).await?;
        if let Some(done) = prev
            .as_ref()
            .and_then(|p| p.value.loads.iter().find(|l| l.job_id == job.job_id))
        {
            return Ok(LoadResult {
                job_id: job.job_id.clone(),
                rows: done.rows,
                already_done: true,
            });
        }
        let failed = |message: String| Error::LoadFailed {
            job_id: job.job_id.clone(),
            message,
        };
        let mut files = Vec::new();
        let mut rows = 0u64;
        for (i, path) in job.files.iter().enumerate() {
            let bytes = self
                .export
                .get(path)
                .await
                .map_err(|e| failed(format!("cannot read {path}: {e}")))?;
            let footer = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .map_err(|e| failed(format!("{path} is not Parquet: {e}")))?;
            if !same_columns(footer.schema(), &job.schema) {
                return Err(failed(format!(
                    "{path} does not match the schema of table {}",
                    job.table
                )));
            }
            rows += footer.metadata().file_metadata().num_rows().max(0) as u64;
            let dest = format!(
                "{}/{}/{}-{i:05}.parquet",
                job.table,
                job.partition.key(),
                job.job_id
            );
            put_create(self.store.store.as_ref(), &Path::from(dest.as_str()), bytes).await?;
            files.push(dest);
        }
        failpoint::hit("warehouse.after_files");
        let load = LocalLoad {
            job_id: job.job_id.clone(),
            files,
            rows,
        };
        let mut loads = match (job.mode, &prev) {
            (WriteMode::Append, Some(p)) => p.value.loads.clone(),
            _ => Vec::new(),
        };
        loads.push(load);
        let now = Utc::now();
        let mut retired = prev
            .as_ref()
            .map(|p| p.value.retired.clone())
            .unwrap_or_default();
        if let Some(p) = &prev {
            let keep: std::collections::HashSet<&String> =
                loads.iter().flat_map(|l| l.files.iter()).collect();
            let out: Vec<String> = p
                .value
                .files()
                .filter(|f| !keep.contains(f))
                .cloned()
                .collect();
            if !out.is_empty() {
                retired.push(Retired {
                    files: out,
                    since: now,
                });
            }
        }
        let (retired, expired) = self.expire(retired, now);
        let commit = PartitionCommit {
            table: job.table.clone(),
            partition: job.partition,
            loads,
            loaded_at: now,
            retired,
        };
        if !commit.retired.is_empty() {
            self.meta
                .mark(&retired_marker(&job.table, &job.partition))
                .await?;
        }
        self.meta
            .commit(&key, prev.as_ref().map(|p| p.version), &commit)
            .await?;
        failpoint::hit("warehouse.after_commit");
        for f in &expired {
            delete_if_exists(self.store.store.as_ref(), &Path::from(f.as_str())).await?;
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
        let range = window.map(|w| (w.start().timestamp_micros(), w.end().timestamp_micros()));
        for p in self.partitions(Some(table)).await? {
            if window.is_some_and(|w| !p.partition.contains(w)) {
                continue;
            }
            for f in p.files() {
                let b = ParquetRecordBatchReaderBuilder::try_new(self.read(f).await?)?;
                let schema = b.schema().clone();
                let (Ok(t_idx), Some(ts_name)) =
                    (schema.index_of("tenant_id"), time_column(&schema))
                else {
                    return Err(Error::Arrow(arrow::error::ArrowError::SchemaError(
                        format!("{f} has no tenant_id or timestamp column"),
                    )));
                };
                let ts_idx = schema.index_of(&ts_name)?;
                let mask = ProjectionMask::roots(b.parquet_schema(), [t_idx, ts_idx]);
                for batch in b.with_projection(mask).build()? {
                    let batch = batch?;
                    let s = batch.schema();
                    let tenants = batch
                        .column(s.index_of("tenant_id")?)
                        .as_string::<i32>()
                        .clone();
                    let ts = batch
                        .column(s.index_of(&ts_name)?)
                        .as_primitive::<TimestampMicrosecondType>()
                        .clone();
                    for i in 0..batch.num_rows() {
                        if let Some((lo, hi)) = range
                            && (ts.is_null(i) || ts.value(i) < lo || ts.value(i) >= hi)
                        {
                            continue;
                        }
                        *out.entry(tenants.value(i).to_string()).or_default() += 1;
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectExport;
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};
    use object_store::ObjectStore;
    use object_store::memory::InMemory;

    fn batch(n: i64, w: Window) -> (SchemaRef, Bytes) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new(
                "minute",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("n", DataType::Int64, false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["t"; n as usize])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![w.start().timestamp_micros(); n as usize])
                    .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())),
        ];
        let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
        let props = parquet::file::properties::WriterProperties::builder().build();
        let bytes = logferry_core::storage::encode_parquet(&schema, &[b], &props).unwrap();
        (schema, bytes)
    }

    /// A reader that listed a partition before a replace still reads every
    /// object it listed; the replaced objects go once the retention passed.
    #[tokio::test]
    async fn readers_see_whole_versions_across_a_replace() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let export_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let export: Arc<dyn ExportStore> = Arc::new(ObjectExport::new(Location::from_store(
            "memory://e",
            export_store,
        )));
        let loc = Location::from_store("memory://w", store.clone());
        let w = Window::parse("2026-11-25T10").unwrap();
        let wh = LocalWarehouse::new(
            loc.clone(),
            export.clone(),
            Partitioning::Hour,
            std::time::Duration::from_secs(3600),
        );
        let load = |id: &str, n: i64| {
            let (schema, bytes) = batch(n, w);
            let export = export.clone();
            let path = format!("t/{id}.parquet");
            let job = LoadJob {
                job_id: id.to_string(),
                table: "t".into(),
                partition: PartitionId::of(w, Partitioning::Hour),
                mode: WriteMode::Replace,
                files: vec![path.clone()],
                schema,
                rows: n as u64,
                bytes: bytes.len() as u64,
                window: Some(w),
                expect_rows: None,
            };
            async move {
                export.put_create(&path, bytes).await.unwrap();
                job
            }
        };
        wh.load(&load("a", 3).await).await.unwrap();
        // A reader takes the partition's version...
        let listed: Vec<String> = wh.partitions(Some("t")).await.unwrap()[0]
            .files()
            .cloned()
            .collect();
        // ... a replace commits meanwhile...
        wh.load(&load("b", 5).await).await.unwrap();
        let now: Vec<String> = wh.partitions(Some("t")).await.unwrap()[0]
            .files()
            .cloned()
            .collect();
        assert_ne!(listed, now);
        // ... and the reader still finds every object of its version.
        for f in &listed {
            get_bytes(store.as_ref(), &Path::from(f.as_str()))
                .await
                .unwrap();
        }
        assert_eq!(wh.count_by_tenant("t", None).await.unwrap()["t"], 5);
        // Past the retention, the replaced objects are removed.
        let strict =
            LocalWarehouse::new(loc, export, Partitioning::Hour, std::time::Duration::ZERO);
        assert_eq!(strict.remove_retired().await.unwrap(), 1);
        for f in &listed {
            assert!(
                get_bytes(store.as_ref(), &Path::from(f.as_str()))
                    .await
                    .is_err()
            );
        }
        for f in &now {
            get_bytes(store.as_ref(), &Path::from(f.as_str()))
                .await
                .unwrap();
        }
        assert_eq!(strict.remove_retired().await.unwrap(), 0);
    }

    #[test]
    fn partitions_of_windows() {
        let w = Window::parse("2026-11-25T13").unwrap();
        let h = PartitionId::of(w, Partitioning::Hour);
        assert_eq!(
            (h.decorator(), h.key()),
            ("2026112513".into(), "hour=2026-11-25T13".into())
        );
        let d = PartitionId::of(w, Partitioning::Day);
        assert_eq!(
            (d.decorator(), d.key()),
            ("20261125".into(), "day=2026-11-25".into())
        );
        assert!(d.contains(Window::parse("2026-11-25T00").unwrap()));
        assert!(d.contains(Window::parse("2026-11-25T23").unwrap()));
        assert!(!d.contains(Window::parse("2026-11-26T00").unwrap()));
        assert_eq!(d.end().to_rfc3339(), "2026-11-26T00:00:00+00:00");
    }
}
