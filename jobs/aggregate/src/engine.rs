//! The SQL program run over one window: dedupe, rules, curated rows, rejected
//! rows and rollups, with per-tenant counts that reconcile exactly:
//! input = curated + rejected + duplicates.
//!
//! Nothing is collected: the deduplicated rows and the violations are
//! written to a scratch directory as they stream out of DataFusion, and the
//! curated rows, rejected rows and rollups are handed to the caller as
//! streams. Sorts, aggregates and joins run under the session's memory pool
//! and spill to disk past it, so a window of any size runs in bounded memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use logferry_core::schema::log_record_schema;

use crate::error::{Error, Result};
use crate::keys::KeySet;
use crate::program::{SqlFile, SqlProgram};
use crate::session::{conform, parquet_table, plain_schema, register_store, spilled_bytes};

pub use logferry_core::records::{EventTimeStats, WindowCounts};

/// One rollup's result.
#[derive(Debug, Clone)]
pub struct RollupOutput {
    /// Rollup (table) name.
    pub name: String,
    /// Result schema.
    pub schema: SchemaRef,
    /// Rows.
    pub batches: Vec<RecordBatch>,
}

/// Everything the program produced for a window, collected (small inputs
/// and tests; the aggregate job streams instead).
#[derive(Debug, Clone)]
pub struct EngineOutput {
    /// Curated rows (`log_record`), sorted by tenant, time and event id.
    pub curated: Vec<RecordBatch>,
    /// Rejected rows: `log_record` columns, then `reason` and `detail`.
    pub rejected: Vec<RecordBatch>,
    /// Rollups in name order.
    pub rollups: Vec<RollupOutput>,
    /// Counts by tenant.
    pub counts: BTreeMap<String, WindowCounts>,
}

fn sql_err(f: &SqlFile, e: impl std::fmt::Display) -> Error {
    Error::Sql {
        file: f.origin.clone(),
        message: e.to_string(),
    }
}

/// Counts rows per value of a string column.
pub fn count_by(
    batches: &[RecordBatch],
    column: &str,
    into: &mut BTreeMap<String, u64>,
) -> Result<()> {
    for b in batches {
        let idx = b.schema().index_of(column)?;
        let col = b.column(idx);
        let strings = col.as_string_opt::<i32>().ok_or_else(|| {
            Error::Internal(format!(
                "column {column} is {}, not a string",
                col.data_type()
            ))
        })?;
        // Sorted and grouped inputs come in runs: count a run at once.
        let mut start = 0;
        for i in 1..=strings.len() {
            let value = |j: usize| (!strings.is_null(j)).then(|| strings.value(j));
            if i == strings.len() || value(i) != value(start) {
                *into
                    .entry(value(start).unwrap_or("").to_string())
                    .or_default() += (i - start) as u64;
                start = i;
            }
        }
    }
    Ok(())
}

fn violations_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
    ]))
}

/// Keeps the rows whose key `seen` does not hold: the rest are copies of
/// records an earlier run of the window kept or refused.
fn unseen(b: RecordBatch, seen: &KeySet) -> Result<RecordBatch> {
    let s = b.schema();
    let tenants = b
        .column(s.index_of("tenant_id")?)
        .as_string::<i32>()
        .clone();
    let events = b.column(s.index_of("event_id")?).as_string::<i32>().clone();
    let keys: Vec<u128> = (0..b.num_rows())
        .map(|i| crate::keys::key(tenants.value(i), events.value(i)))
        .collect();
    let keep: arrow::array::BooleanArray = seen
        .contains_keys(&keys)?
        .into_iter()
        .map(|held| Some(!held))
        .collect();
    Ok(arrow::compute::filter_record_batch(&b, &keep)?)
}

/// A query under way: its plan (for the spill metrics once it is drained)
/// and its output.
pub struct Running {
    /// The physical plan.
    pub plan: Arc<dyn ExecutionPlan>,
    /// Its rows, in one stream.
    pub stream: SendableRecordBatchStream,
    /// The schema the rows are conformed to.
    pub schema: SchemaRef,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish()
    }
}

impl Running {
    async fn start(df: DataFrame, schema: SchemaRef) -> datafusion::error::Result<Self> {
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        let stream = execute_stream(plan.clone(), task)?;
        Ok(Running {
            plan,
            stream,
            schema,
        })
    }

    /// The next batch, conformed to the schema.
    pub async fn next(&mut self) -> Result<Option<RecordBatch>> {
        match self.stream.next().await {
            None => Ok(None),
            Some(b) => Ok(Some(conform(&b?, &self.schema)?)),
        }
    }

    /// Bytes its operators spilled.
    pub fn spilled(&self) -> u64 {
        spilled_bytes(&self.plan)
    }
}

/// Rows the program keeps between its steps: in memory while the session's
/// pool grants them, else in local files (removed when dropped).
struct Scratch {
    dir: tempfile::TempDir,
    files: usize,
    held: Vec<MemoryReservation>,
}

/// Writer properties of scratch files: fast to write and to read back.
fn scratch_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_max_row_group_row_count(Some(65536))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
        .build()
}

async fn encode(
    w: ArrowWriter<std::fs::File>,
    b: RecordBatch,
) -> Result<ArrowWriter<std::fs::File>> {
    let mut w = w;
    let (w, res) = tokio::task::spawn_blocking(move || {
        let r = w.write(&b);
        (w, r)
    })
    .await
    .map_err(|e| Error::Internal(format!("scratch writer: {e}")))?;
    res?;
    Ok(w)
}

impl Scratch {
    /// Drains `run`, passing each batch through `each` first, into a table:
    /// in memory while `ctx`'s pool grants the rows' size (up to a quarter
    /// of it), else a scratch Parquet file.
    async fn write(
        &mut self,
        ctx: &SessionContext,
        mut run: Running,
        mut each: impl FnMut(RecordBatch) -> Result<RecordBatch>,
        spilled: &mut u64,
    ) -> Result<Arc<dyn TableProvider>> {
        let held = MemoryConsumer::new(format!("scratch-{}", self.files))
            .register(&ctx.runtime_env().memory_pool);
        let share = match ctx.runtime_env().memory_pool.memory_limit() {
            datafusion::execution::memory_pool::MemoryLimit::Finite(n) => n / 4,
            _ => usize::MAX,
        };
        let mut kept: Vec<RecordBatch> = Vec::new();
        let mut file: Option<(String, ArrowWriter<std::fs::File>)> = None;
        while let Some(b) = run.next().await? {
            let b = each(b)?;
            // At most a quarter of the pool: the sorts that read it need the rest.
            let size = b.get_array_memory_size();
            if file.is_none() && held.size() + size <= share && held.try_grow(size).is_ok() {
                kept.push(b);
                continue;
            }
            let (name, mut w) = match file.take() {
                Some(f) => f,
                None => {
                    self.files += 1;
                    let name = format!("part-{}.parquet", self.files);
                    let f = std::fs::File::create(self.dir.path().join(&name))
                        .map_err(|e| Error::Core(logferry_core::Error::io(&name, e)))?;
                    let mut w =
                        ArrowWriter::try_new(f, run.schema.clone(), Some(scratch_properties()))?;
                    for k in std::mem::take(&mut kept) {
                        w = encode(w, k).await?;
                    }
                    held.free();
                    (name, w)
                }
            };
            w = encode(w, b).await?;
            file = Some((name, w));
        }
        *spilled += run.spilled();
        match file {
            None => {
                self.held.push(held);
                Ok(Arc::new(MemTable::try_new(run.schema.clone(), vec![kept])?))
            }
            Some((name, w)) => {
                tokio::task::spawn_blocking(move || w.close())
                    .await
                    .map_err(|e| Error::Internal(format!("scratch writer: {e}")))??;
                *spilled += std::fs::metadata(self.dir.path().join(&name)).map_or(0, |m| m.len());
                parquet_table("scratch", run.schema.clone(), None, &[name])
            }
        }
    }
}

/// A window's program after its first steps: the deduplicated rows and the
/// violations are in scratch files, registered as `deduped` and
/// `violations`, and `curated` is a view. The outputs are streamed from it.
pub struct Prepared {
    ctx: SessionContext,
    program: Arc<SqlProgram>,
    _scratch: Scratch,
    /// Rows read, by tenant.
    pub input: BTreeMap<String, u64>,
    /// Rows left after the dedupe (and `seen`), by tenant.
    pub deduped: BTreeMap<String, u64>,
    /// Rows that broke a rule, by tenant.
    pub violations: BTreeMap<String, u64>,
    /// Bytes spilled so far (by the queries, and as scratch files).
    pub spilled: u64,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("input", &self.input)
            .finish()
    }
}

const CURATED_SQL: &str = "SELECT d.* FROM deduped d LEFT ANTI JOIN violations v \
     ON d.tenant_id = v.tenant_id AND d.event_id = v.event_id";

/// Runs the dedupe and the rules. `window_input` must be registered in
/// `ctx`; with `seen`, records whose key it holds count as duplicates (an
/// increment of an open window). Scratch files go under `scratch_dir`.
pub async fn prepare(
    ctx: &SessionContext,
    program: Arc<SqlProgram>,
    seen: Option<&KeySet>,
    scratch_dir: &std::path::Path,
) -> Result<Prepared> {
    let log_schema = log_record_schema();
    let dir = tempfile::Builder::new()
        .prefix("logferry-scratch-")
        .tempdir_in(scratch_dir)
        .map_err(|e| Error::Core(logferry_core::Error::io(scratch_dir.display(), e)))?;
    let mut scratch = Scratch {
        dir,
        files: 0,
        held: Vec::new(),
    };
    let store: Arc<dyn ObjectStore> = Arc::new(
        LocalFileSystem::new_with_prefix(scratch.dir.path())
            .map_err(|e| Error::Internal(format!("scratch directory: {e}")))?,
    );
    register_store(ctx, "scratch", store)?;
    let mut spilled = 0;

    let mut input = BTreeMap::new();
    let counted = ctx
        .sql("SELECT tenant_id, count(*) AS n FROM window_input GROUP BY tenant_id")
        .await?
        .collect()
        .await?;
    for b in &counted {
        let t = b.column(0).as_string::<i32>();
        let n = b
            .column(1)
            .as_primitive_opt::<arrow::datatypes::Int64Type>()
            .ok_or_else(|| Error::Internal("count(*) is not an Int64".into()))?;
        for i in 0..b.num_rows() {
            input.insert(t.value(i).to_string(), n.value(i) as u64);
        }
    }

    let df = ctx
        .sql(&program.dedupe.sql)
        .await
        .map_err(|e| sql_err(&program.dedupe, e))?;
    let run = Running::start(df, log_schema.clone())
        .await
        .map_err(|e| sql_err(&program.dedupe, e))?;
    let mut deduped = BTreeMap::new();
    let table = scratch
        .write(
            ctx,
            run,
            |b| {
                let b = match seen {
                    Some(seen) if !seen.is_empty() => unseen(b, seen)?,
                    _ => b,
                };
                count_by(std::slice::from_ref(&b), "tenant_id", &mut deduped)?;
                Ok(b)
            },
            &mut spilled,
        )
        .await
        .map_err(|e| match e {
            Error::DataFusion(e) => sql_err(&program.dedupe, e),
            e => e,
        })?;
    ctx.register_table("deduped", table)?;

    // Rules in name order; a row that breaks several keeps the first
    // reason (and of one rule's several rows, the least detail).
    let vschema = violations_schema();
    let mut parts = Vec::new();
    for (i, rule) in program.rules.iter().enumerate() {
        let sql = format!(
            "SELECT CAST(tenant_id AS VARCHAR) AS tenant_id, CAST(event_id AS VARCHAR) AS event_id, \
             '{}' AS reason, {i} AS rule_order, \
             coalesce(CAST(detail AS VARCHAR), '') AS detail FROM ({}) AS rule_rows",
            rule.name, rule.sql
        );
        // Planned alone first, so that an error names its file.
        ctx.sql(&sql).await.map_err(|e| sql_err(rule, e))?;
        parts.push(sql);
    }
    let mut violations = BTreeMap::new();
    let table = if parts.is_empty() {
        Arc::new(MemTable::try_new(vschema.clone(), vec![vec![]])?) as Arc<dyn TableProvider>
    } else {
        let sql = format!(
            "SELECT tenant_id, event_id, \
             first_value(reason ORDER BY rule_order, detail) AS reason, \
             first_value(detail ORDER BY rule_order, detail) AS detail \
             FROM ({}) AS broken GROUP BY tenant_id, event_id ORDER BY tenant_id",
            parts.join(" UNION ALL ")
        );
        let run = Running::start(ctx.sql(&sql).await?, vschema.clone()).await?;
        scratch
            .write(
                ctx,
                run,
                |b| {
                    count_by(std::slice::from_ref(&b), "tenant_id", &mut violations)?;
                    Ok(b)
                },
                &mut spilled,
            )
            .await?
    };
    ctx.register_table("violations", table)?;
    ctx.register_table("curated", ctx.sql(CURATED_SQL).await?.into_view())?;
    Ok(Prepared {
        ctx: ctx.clone(),
        program,
        _scratch: scratch,
        input,
        deduped,
        violations,
        spilled,
    })
}

impl Prepared {
    /// The curated rows, sorted by tenant, time and event id.
    pub async fn curated(&self) -> Result<Running> {
        let df = self
            .ctx
            .sql(&format!(
                "{CURATED_SQL} ORDER BY d.tenant_id, d.\"timestamp\", d.event_id"
            ))
            .await?;
        Ok(Running::start(df, log_record_schema()).await?)
    }

    /// The rejected rows (`log_record` columns, then `reason` and
    /// `detail`), sorted by tenant and event id.
    pub async fn rejected(&self) -> Result<Running> {
        let df = self
            .ctx
            .sql(
                "SELECT d.*, v.reason, v.detail FROM deduped d JOIN violations v \
                 ON d.tenant_id = v.tenant_id AND d.event_id = v.event_id \
                 ORDER BY d.tenant_id, d.event_id",
            )
            .await?;
        let schema = plain_schema(df.schema().as_arrow());
        Ok(Running::start(df, schema).await?)
    }

    /// The program's rollups, in name order.
    pub fn rollups(&self) -> &[SqlFile] {
        &self.program.rollups
    }

    /// One rollup over the curated rows.
    pub async fn rollup(&self, r: &SqlFile) -> Result<Running> {
        let df = self.ctx.sql(&r.sql).await.map_err(|e| sql_err(r, e))?;
        let schema = plain_schema(df.schema().as_arrow());
        Running::start(df, schema).await.map_err(|e| sql_err(r, e))
    }

    /// The counts by tenant, once every curated row was counted into
    /// `curated`; an error if they do not reconcile.
    pub fn counts(
        &self,
        curated: &BTreeMap<String, u64>,
    ) -> Result<BTreeMap<String, WindowCounts>> {
        let mut counts: BTreeMap<String, WindowCounts> = BTreeMap::new();
        for (t, n) in &self.input {
            let kept = self.deduped.get(t).copied().unwrap_or(0);
            counts.insert(
                t.clone(),
                WindowCounts {
                    input: *n,
                    duplicates: n - kept.min(*n),
                    dead_lettered: self.violations.get(t).copied().unwrap_or(0),
                    curated: curated.get(t).copied().unwrap_or(0),
                },
            );
        }
        for (t, c) in &counts {
            if c.input != c.duplicates + c.dead_lettered + c.curated {
                return Err(Error::Internal(format!(
                    "tenant {t}: {} rows in, {} duplicates + {} rejected + {} curated out",
                    c.input, c.duplicates, c.dead_lettered, c.curated
                )));
            }
        }
        Ok(counts)
    }
}

async fn drain(mut run: Running) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    while let Some(b) = run.next().await? {
        out.push(b);
    }
    Ok(out)
}

/// Runs the whole program and collects its outputs (small inputs and
/// tests). `window_input` must be registered in `ctx`.
pub async fn run(ctx: &SessionContext, program: &SqlProgram) -> Result<EngineOutput> {
    let dir = std::env::temp_dir();
    let p = prepare(ctx, Arc::new(program.clone()), None, &dir).await?;
    let curated = drain(p.curated().await?).await?;
    let rejected = drain(p.rejected().await?).await?;
    let mut rollups = Vec::new();
    for r in p.rollups() {
        let run = p.rollup(r).await?;
        let schema = run.schema.clone();
        rollups.push(RollupOutput {
            name: r.name.clone(),
            schema,
            batches: drain(run).await?,
        });
    }
    let mut curated_counts = BTreeMap::new();
    count_by(&curated, "tenant_id", &mut curated_counts)?;
    let counts = p.counts(&curated_counts)?;
    Ok(EngineOutput {
        curated,
        rejected,
        rollups,
        counts,
    })
}

/// Event-time quantiles of a window's curated rows, to the second: the
/// count of each second (a window spans an hour), never the rows.
#[derive(Debug, Default)]
pub struct EventTimes {
    seconds: BTreeMap<i64, u64>,
    min_us: Option<i64>,
    max_us: Option<i64>,
}

impl EventTimes {
    /// Counts the `timestamp` column of a curated batch.
    pub fn add(&mut self, b: &RecordBatch) {
        let Some(a) = b
            .column_by_name("timestamp")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        else {
            return;
        };
        for (i, &t) in a.values().iter().enumerate() {
            if a.is_null(i) {
                continue;
            }
            *self.seconds.entry(t.div_euclid(1_000_000)).or_default() += 1;
            self.min_us = Some(self.min_us.map_or(t, |m| m.min(t)));
            self.max_us = Some(self.max_us.map_or(t, |m| m.max(t)));
        }
    }

    /// The quantiles (nearest rank, to the second).
    pub fn stats(&self) -> EventTimeStats {
        let count: u64 = self.seconds.values().sum();
        let (Some(min_us), Some(max_us)) = (self.min_us, self.max_us) else {
            return EventTimeStats::default();
        };
        let at = |q: f64| {
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (s, n) in &self.seconds {
                seen += n;
                if seen >= rank {
                    return (s * 1_000_000).clamp(min_us, max_us);
                }
            }
            max_us
        };
        EventTimeStats {
            count,
            min_us,
            p05_us: at(0.05),
            p50_us: at(0.5),
            max_us,
        }
    }
}
