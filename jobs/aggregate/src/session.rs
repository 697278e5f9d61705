//! DataFusion sessions: one configuration for every query logferry runs, and
//! the lake's stores registered under logferry's own URL schemes.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use object_store::limit::LimitStore;
use std::sync::atomic::{AtomicUsize, Ordering};
use url::Url;

use crate::error::{Error, Result};

/// URL scheme under which a store is registered: `lf-<name>://<name>/`.
pub fn store_url(name: &str) -> String {
    format!("lf-{name}://{name}/")
}

/// Where a query may use memory and disk: one memory pool shared by every
/// query made with it (sorts, aggregates and joins spill to `spill_dir`
/// past it), so that memory is bounded by configuration whatever a window
/// holds.
#[derive(Clone)]
pub struct Engine {
    runtime: Arc<RuntimeEnv>,
    pool: Arc<PeakPool>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("memory_limit", &self.memory_limit())
            .finish()
    }
}

impl Engine {
    /// Queries share a pool of `memory_limit` bytes and spill under
    /// `spill_dir` (the system's temporary directory when `None`).
    pub fn new(memory_limit: usize, spill_dir: Option<&std::path::Path>) -> Result<Self> {
        let pool = Arc::new(PeakPool {
            inner: TrackConsumersPool::new(
                FairSpillPool::new(memory_limit),
                std::num::NonZeroUsize::new(5).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            peak: AtomicUsize::new(0),
        });
        // Spill files one merge pass reads at once (a batch of each in
        // memory): unbounded by default, which lets one sort's merge take
        // the whole pool from the others.
        let fan_in = (memory_limit / (8 << 20)).clamp(2, 64);
        let mut disk = DiskManagerBuilder::default().with_max_spill_merge_fan_in(fan_in);
        if let Some(d) = spill_dir {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::Core(logferry_core::Error::io(d.display(), e)))?;
            disk = disk.with_mode(DiskManagerMode::Directories(vec![d.to_path_buf()]));
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .with_disk_manager_builder(disk)
            .build_arc()?;
        Ok(Engine { runtime, pool })
    }

    /// A session on this engine's pool and disk, with DataFusion's
    /// partitions (one per core).
    pub fn session(&self) -> SessionContext {
        self.session_for(None)
    }

    /// A session for a query over about `bytes` of rows: when they cannot
    /// be sorted in the pool, the sorts run in one partition, so that the
    /// merges of their spill files (non-spillable, a batch of each file)
    /// do not starve each other. (Two partitions' merges took a 512 MiB
    /// pool between them on an hour of 5,000,000 records: 170 MB each.)
    pub fn session_for(&self, bytes: Option<u64>) -> SessionContext {
        let mut config = self.sized(session_config());
        if bytes.is_some_and(|b| b > self.memory_limit() as u64 / 2) {
            config = config.with_target_partitions(1);
        }
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }

    /// `config` with the batch size and the sorts' merge reserve sized for
    /// this engine's pool.
    pub fn sized(&self, config: SessionConfig) -> SessionConfig {
        // What a sort keeps back for merging its spills: DataFusion's 10 MB,
        // or less in a small pool (a sixteenth of it).
        let reserve = (self.memory_limit() / 16).clamp(64 << 10, 10 << 20);
        // Batches of DataFusion's 8,192 rows, or fewer in a small pool: a
        // sort holds a few at least (some 32 of 512-byte rows per batch).
        let rows = (self.memory_limit() / (32 * 512)).clamp(512, 8192);
        config
            .with_batch_size(rows)
            .set_usize("datafusion.execution.sort_spill_reservation_bytes", reserve)
    }

    /// The pool and disk every session of this engine shares, for sessions
    /// built elsewhere (a cluster's).
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    /// The most memory the pool's consumers held at once.
    pub fn peak_memory(&self) -> usize {
        self.pool.peak.load(Ordering::Relaxed)
    }

    /// The pool's size.
    pub fn memory_limit(&self) -> usize {
        match self.pool.inner.memory_limit() {
            MemoryLimit::Finite(n) => n,
            _ => usize::MAX,
        }
    }
}

/// A fair spill pool that remembers its peak.
#[derive(Debug)]
struct PeakPool {
    // Tracked: an allocation that fails names the five largest consumers.
    inner: TrackConsumersPool<FairSpillPool>,
    peak: AtomicUsize,
}

impl PeakPool {
    fn note(&self) {
        self.peak
            .fetch_max(self.inner.reserved(), Ordering::Relaxed);
    }
}

impl std::fmt::Display for PeakPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "logferry pool ({})", self.inner)
    }
}

impl MemoryPool for PeakPool {
    fn name(&self) -> &str {
        "logferry"
    }
    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }
    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }
    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.note();
    }
    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }
    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> datafusion::error::Result<()> {
        self.inner.try_grow(reservation, additional)?;
        self.note();
        Ok(())
    }
    fn reserved(&self) -> usize {
        self.inner.reserved()
    }
    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// Bytes the operators of an executed plan spilled to disk.
pub fn spilled_bytes(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let own = plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0) as u64;
    own + plan
        .children()
        .iter()
        .map(|c| spilled_bytes(c))
        .sum::<u64>()
}

fn session_config() -> SessionConfig {
    with_semantics(SessionConfig::new()).with_target_partitions(cores())
}

/// This machine's cores: DataFusion's partitions, a cluster executor's
/// task slots.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// `config` with what logferry's queries rely on: plain `Utf8` strings (not
/// views), so that results match the table schemas, and the generic SQL
/// dialect.
pub fn with_semantics(config: SessionConfig) -> SessionConfig {
    config
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
        .set_str("datafusion.sql_parser.dialect", "generic")
}

/// A session with logferry's settings and no memory limit: plain `Utf8`
/// strings (not views), so that query results match the table schemas.
pub fn new_session() -> SessionContext {
    SessionContext::new_with_config(session_config())
}

/// Requests a query has in flight on one store at most. A table over an
/// explicit list of objects asks for each object's metadata at once: a
/// window of thousands of objects would otherwise hold as many files open
/// (the local store) or connections (S3) as it has objects.
pub const MAX_STORE_REQUESTS: usize = 32;

/// Registers a store under [`store_url`]`(name)`, with at most
/// [`MAX_STORE_REQUESTS`] requests in flight.
pub fn register_store(ctx: &SessionContext, name: &str, store: Arc<dyn ObjectStore>) -> Result<()> {
    register_runtime_store(ctx.runtime_env().as_ref(), name, store)
}

/// [`register_store`] on a runtime rather than a session: every session on
/// it (a cluster executor's tasks among them) sees the store.
pub fn register_runtime_store(
    runtime: &RuntimeEnv,
    name: &str,
    store: Arc<dyn ObjectStore>,
) -> Result<()> {
    let url = Url::parse(&store_url(name))
        .map_err(|e| Error::Internal(format!("store URL for {name}: {e}")))?;
    runtime.register_object_store(&url, Arc::new(LimitStore::new(store, MAX_STORE_REQUESTS)));
    Ok(())
}

/// A prefix of every store that logferry never writes: an empty table is a
/// listing of it, not an in-memory table, so that a plan over it can be sent
/// to a cluster.
const EMPTY_PREFIX: &str = ".logferry-empty";

/// A table over Parquet objects of a registered store: either every object
/// under `prefix` (recursively), or exactly `files`. No files makes an empty
/// table of `schema` (a listing of a prefix that holds nothing).
pub fn parquet_table(
    store_name: &str,
    schema: SchemaRef,
    prefix: Option<&str>,
    files: &[String],
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    let base = store_url(store_name);
    let urls: Vec<ListingTableUrl> = match prefix {
        Some(p) => vec![ListingTableUrl::parse(format!(
            "{base}{}/",
            p.trim_end_matches('/')
        ))?],
        None => files
            .iter()
            .map(|f| ListingTableUrl::parse(format!("{base}{f}")))
            .collect::<datafusion::error::Result<_>>()?,
    };
    let urls = if urls.is_empty() {
        vec![ListingTableUrl::parse(format!("{base}{EMPTY_PREFIX}/"))?]
    } else {
        urls
    };
    let opts =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(opts)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

fn plain(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}

/// The schema with view and large string types replaced by plain ones.
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), plain(f.data_type()), f.is_nullable()))
            .collect::<Vec<_>>(),
    ))
}

/// Casts a batch to `target` (same column names and order): view types to
/// plain ones, and nullability as the target says (an error if a required
/// column holds nulls).
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let src = batch.schema();
    if src.fields().len() != target.fields().len() {
        return Err(Error::Internal(format!(
            "query returned {} columns, expected {}",
            src.fields().len(),
            target.fields().len()
        )));
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for (i, f) in target.fields().iter().enumerate() {
        let sf = src.field(i);
        if sf.name() != f.name() {
            return Err(Error::Internal(format!(
                "query returned column {} where {} was expected",
                sf.name(),
                f.name()
            )));
        }
        let c = batch.column(i);
        cols.push(if c.data_type() == f.data_type() {
            c.clone()
        } else {
            cast(c, f.data_type())?
        });
    }
    Ok(RecordBatch::try_new(target.clone(), cols)?)
}
