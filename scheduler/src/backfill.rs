//! Backfills over a range of days, resumable and exactly once:
//!
//! - **recompute** (the default): every window of the range with landing
//!   data (of the given tenants) is aggregated again with the current SQL
//!   program and its warehouse partitions replaced, for every table or only
//!   those given; with tenants given, only their records are recomputed and
//!   the other tenants' outputs are kept;
//! - **reload**: each window's exported run (each day's, with daily
//!   partitions) is loaded again into its partition, under new job ids,
//!   without recomputing (a partition lost in the warehouse);
//! - **sql**: an ad-hoc query over the lake (`landing`, `curated`, `dlq`,
//!   the rollups), run per window, its result loaded into a table of its
//!   own (created from the result's schema, or a schema file), replacing
//!   each partition.
//!
//! A backfill's id is a hash of what it does (range, tenants, tables,
//! mode, query, program). Every partition done gets a marker in the ledger
//! (`backfills/<id>/done/...`); run again, the same command skips those and
//! continues, and every load job id derives from the backfill's, so a
//! partition loaded just before a crash is not loaded twice. Load jobs are
//! counted against today's quota first: a backfill that does not fit is
//! refused (or, queued, continues tomorrow). `--queue` leaves it to the
//! daemon's `backfill` job.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use logferry_core::ids::IdHasher;
use logferry_core::partition::{LANDING, Window, parse_partition};
use logferry_core::schema::{LOG_RECORDS_TABLE, bq_to_arrow, parse_bq_schema};
use logferry_core::storage::{encode_parquet, list_all, writer_properties};
use logferry_export::{LoadJob, PartitionId, Partitioning, WriteMode, export_path, job_id};

use crate::error::{Error, Result};
use crate::pipeline::Pipeline;

/// What a backfill does to each partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum BackfillMode {
    /// Aggregate again with the current program; replace the partitions.
    Recompute,
    /// Load the exported runs again; replace the partitions.
    Reload,
    /// Run a query per window; load its result into `table`.
    Sql {
        /// The query.
        sql: String,
        /// Where it came from, for messages.
        file: String,
        /// Destination table.
        table: String,
        /// BigQuery JSON schema of the table (else the result's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<String>,
    },
}

/// A backfill as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillSpec {
    /// First day (UTC).
    pub from: NaiveDate,
    /// Last day (UTC), included.
    pub to: NaiveDate,
    /// Only these tenants' records (recompute); empty: every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Only these tables; empty: every table.
    #[serde(default)]
    pub tables: Vec<String>,
    /// What to do.
    pub mode: BackfillMode,
}

/// One partition of a backfill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionReport {
    /// `hour=...` or `day=...`.
    pub partition: String,
    /// `done`, `skipped` (done by an earlier attempt), `no_data`.
    pub state: String,
    /// Load jobs run.
    pub jobs: u64,
    /// Rows loaded (of the records table, or the query's).
    pub rows: u64,
    /// Time taken.
    pub ms: u64,
}

/// What a backfill did, or would do (`--plan`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillReport {
    /// The backfill's id.
    pub id: String,
    /// What was asked.
    pub spec: BackfillSpec,
    /// Partitions of the range with something to do.
    pub partitions: u64,
    /// Windows of the range with landing data.
    pub windows: u64,
    /// Load jobs the plan needs (per table).
    pub jobs_per_table: BTreeMap<String, u64>,
    /// Bytes of the exported objects the loads read (estimated from the
    /// lake's curated objects).
    pub bytes: u64,
    /// Load jobs left today per table (BigQuery's quota), when known.
    pub jobs_left_today: BTreeMap<String, u64>,
    /// Of those, what the configured schedules leave to a backfill today
    /// and on each later day (`logferry plan`).
    #[serde(default)]
    pub spare: BTreeMap<String, crate::planner::Spare>,
    /// Days the plan takes within the daily quota; `None` when the
    /// schedules leave no load job to a backfill.
    pub days_needed: Option<u64>,
    /// Per partition (empty for a plan).
    pub done: Vec<PartitionReport>,
    /// True once every partition is done.
    pub complete: bool,
    /// Why it stopped before the end (quota), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Wall time.
    pub duration_ms: u64,
}

/// Ledger prefix of queued backfills.
pub const QUEUE: &str = "backfills/queue";

impl BackfillSpec {
    /// Checks the spec.
    pub fn validate(&self) -> Result<()> {
        if self.to < self.from {
            return Err(Error::Config(format!(
                "--to {} is before --from {}",
                self.to, self.from
            )));
        }
        if (self.to - self.from).num_days() > 3660 {
            return Err(Error::Config("a backfill covers at most ten years".into()));
        }
        for t in &self.tenants {
            logferry_core::partition::TenantId::new(t)?;
        }
        if let BackfillMode::Sql { table, .. } = &self.mode {
            let ok = !table.is_empty()
                && table.len() <= 1024
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && table != LOG_RECORDS_TABLE;
            if !ok {
                return Err(Error::Config(format!(
                    "--table {table:?}: a new table's name is letters, digits and _, and not {LOG_RECORDS_TABLE}"
                )));
            }
            if !self.tenants.is_empty() {
                return Err(Error::Config(
                    "--tenant filters a recompute; filter the query itself instead".into(),
                ));
            }
        }
        Ok(())
    }

    /// The backfill's id: a hash of the spec and of the SQL program.
    pub fn id(&self, program_hash: &str) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        IdHasher::new()
            .part(json.as_bytes())
            .part(program_hash.as_bytes())
            .hex()[..20]
            .to_string()
    }

    fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let n = (self.to - self.from).num_days();
        let from = self.from;
        (0..=n).filter_map(move |d| from.checked_add_days(chrono::Days::new(d as u64)))
    }
}

/// Runs backfills: recompute, reload and sql.
pub struct Backfill<'p> {
    p: &'p Pipeline,
    spec: BackfillSpec,
    id: String,
    only: Option<BTreeSet<String>>,
    tenants: BTreeSet<String>,
}

impl<'p> Backfill<'p> {
    /// A backfill of `spec` over the pipeline's lake.
    pub fn new(p: &'p Pipeline, spec: BackfillSpec) -> Result<Self> {
        spec.validate()?;
        let id = spec.id(&p.aggregator().program_hash());
        let only = (!spec.tables.is_empty()).then(|| spec.tables.iter().cloned().collect());
        let tenants = spec.tenants.iter().cloned().collect();
        Ok(Backfill {
            p,
            spec,
            id,
            only,
            tenants,
        })
    }

    /// The backfill's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn done_key(&self, partition: &str) -> String {
        format!("backfills/{}/done/{partition}", self.id)
    }

    /// Windows of the range with landing data (of the given tenants).
    async fn windows(&self) -> Result<Vec<(Window, u64)>> {
        let lake = &self.p.ctx().lake;
        let top = lake
            .store
            .list_with_delimiter(Some(&Path::from(LANDING)))
            .await
            .map_err(|e| logferry_core::Error::storage(LANDING, e))?;
        let mut out: BTreeMap<Window, u64> = BTreeMap::new();
        for tenant_dir in top.common_prefixes {
            let tenant = parse_partition(&tenant_dir).tenant.unwrap_or_default();
            if !self.tenants.is_empty() && !self.tenants.contains(&tenant) {
                continue;
            }
            for day in self.spec.days() {
                let dir = Path::from(format!("{tenant_dir}/dt={}", day.format("%Y-%m-%d")));
                for m in list_all(lake.store.as_ref(), &dir).await? {
                    if let Some(w) = parse_partition(&m.location).window {
                        *out.entry(w).or_default() += m.size;
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The partitions to do: windows (hourly), or days (daily) with the
    /// windows in them.
    fn partitions(&self, windows: &[(Window, u64)]) -> Vec<(PartitionId, Vec<Window>)> {
        let partitioning = self.p.exporter().warehouse().partitioning();
        let mut by: BTreeMap<PartitionId, Vec<Window>> = BTreeMap::new();
        for (w, _) in windows {
            by.entry(PartitionId::of(*w, partitioning))
                .or_default()
                .push(*w);
        }
        by.into_iter().collect()
    }

    fn tables(&self) -> Vec<String> {
        match &self.spec.mode {
            BackfillMode::Sql { table, .. } => vec![table.clone()],
            _ => {
                let mut t = vec![LOG_RECORDS_TABLE.to_string()];
                t.extend(self.p.aggregator().rollup_names());
                if let Some(only) = &self.only {
                    t.retain(|x| only.contains(x));
                }
                t
            }
        }
    }

    /// What the backfill needs: partitions, jobs and bytes against today's
    /// quota.
    pub async fn plan(&self) -> Result<BackfillReport> {
        let started_at = Utc::now();
        let windows = self.windows().await?;
        let parts = self.partitions(&windows);
        let mut todo = 0u64;
        for (pid, _) in &parts {
            if self
                .p
                .ctx()
                .ledger()
                .list(&self.done_key(&pid.key()))
                .await?
                .is_empty()
            {
                todo += 1;
            }
        }
        let tables = self.tables();
        let mut jobs_per_table = BTreeMap::new();
        let mut jobs_left_today = BTreeMap::new();
        let mut spares = BTreeMap::new();
        let mut days_needed = Some(1u64);
        for t in &tables {
            jobs_per_table.insert(t.clone(), todo);
            if let Some(left) = self.p.exporter().warehouse().jobs_left(t).await? {
                jobs_left_today.insert(t.clone(), left);
                let spare = crate::planner::spare(&self.p.ctx().settings, t, left, Utc::now());
                spares.insert(t.clone(), spare);
                let beyond = todo.saturating_sub(spare.today);
                if beyond > 0 {
                    days_needed = match spare.per_day {
                        // The schedules use the whole quota: never.
                        0 => None,
                        per_day => days_needed.map(|d| d.max(1 + beyond.div_ceil(per_day))),
                    };
                }
            }
        }
        Ok(BackfillReport {
            id: self.id.clone(),
            spec: self.spec.clone(),
            partitions: parts.len() as u64,
            windows: windows.len() as u64,
            jobs_per_table,
            bytes: windows.iter().map(|(_, b)| b).sum(),
            jobs_left_today,
            spare: spares,
            days_needed,
            done: Vec::new(),
            complete: todo == 0,
            paused: None,
            started_at,
            duration_ms: 0,
        })
    }

    /// Runs the backfill to its end, or until today's load job quota is
    /// down to what the scheduled loads need (`paused`). `progress` shows a
    /// bar on a terminal.
    pub async fn run(&self, quiet: bool) -> Result<BackfillReport> {
        let t0 = Instant::now();
        let mut report = self.plan().await?;
        let ledger = self.p.ctx().ledger();
        ledger
            .put_once(&format!("backfills/{}/spec.json", self.id), &self.spec)
            .await?;
        let windows = self.windows().await?;
        let parts = self.partitions(&windows);
        let pb = crate::progress::bar(parts.len() as u64, "backfill", false, quiet);
        for (pid, ws) in parts {
            pb.set_message(pid.key());
            let key = pid.key();
            if !ledger.list(&self.done_key(&key)).await?.is_empty() {
                report.done.push(PartitionReport {
                    partition: key,
                    state: "skipped".into(),
                    jobs: 0,
                    rows: 0,
                    ms: 0,
                });
                pb.inc(1);
                continue;
            }
            for t in self.tables() {
                if let Some(left) = self.p.exporter().warehouse().jobs_left(&t).await?
                    && crate::planner::spare(&self.p.ctx().settings, &t, left, Utc::now()).today
                        == 0
                {
                    report.paused = Some(format!(
                        "table {t}: {left} load jobs left today, kept for the scheduled loads; \
                         the backfill continues when the quota resets (midnight Pacific time)"
                    ));
                }
            }
            if report.paused.is_some() {
                break;
            }
            let at = Instant::now();
            let (jobs, rows) = match &self.spec.mode {
                BackfillMode::Recompute => self.recompute(pid, &ws).await?,
                BackfillMode::Reload => self.reload(pid, &ws).await?,
                BackfillMode::Sql { .. } => self.sql(pid, &ws).await?,
            };
            logferry_core::failpoint::hit("backfill.after_load");
            ledger
                .mark(&format!("{}/marker", self.done_key(&key)))
                .await?;
            report.done.push(PartitionReport {
                partition: key,
                state: "done".into(),
                jobs,
                rows,
                ms: at.elapsed().as_millis() as u64,
            });
            pb.inc(1);
        }
        pb.finish_and_clear();
        report.complete = report.paused.is_none();
        report.duration_ms = t0.elapsed().as_millis() as u64;
        ledger
            .put_once(
                &format!(
                    "backfills/{}/reports/{}.json",
                    self.id,
                    report.started_at.format("%Y%m%dT%H%M%S%.3fZ")
                ),
                &report,
            )
            .await?;
        Ok(report)
    }

    /// Takes a window's lease, waiting for a runner that holds it.
    async fn lease(&self, w: Window) -> Result<logferry_core::ledger::Lease> {
        let ledger = self.p.ctx().ledger();
        let key = format!("leases/windows/{}", w.partition());
        let holder = logferry_core::ledger::Holder::this_process();
        loop {
            if let Some(l) = ledger
                .try_lease(&key, &holder, self.p.ctx().settings.lease_ttl)
                .await?
            {
                return Ok(l);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    async fn recompute(&self, pid: PartitionId, ws: &[Window]) -> Result<(u64, u64)> {
        let (mut jobs, mut rows) = (0, 0);
        let tenants = (!self.tenants.is_empty()).then_some(&self.tenants);
        for &w in ws {
            let mut lease = self.lease(w).await?;
            let r = self
                .p
                .full_with(w, &mut lease, true, self.only.as_ref(), tenants)
                .await;
            lease.release().await?;
            let r = r?;
            jobs += r.load_jobs;
            rows += r.rows_loaded;
        }
        if pid.partitioning == Partitioning::Day {
            let exports = self.p.exporter().all_exports().await?;
            if let Some(s) = self
                .p
                .exporter()
                .seal_with(pid, &exports, self.only.as_ref(), None)
                .await?
            {
                jobs += s.tables.iter().filter(|t| !t.already_loaded).count() as u64;
                rows = s
                    .tables
                    .iter()
                    .filter(|t| t.table == LOG_RECORDS_TABLE)
                    .map(|t| t.rows)
                    .sum();
            }
        }
        Ok((jobs, rows))
    }

    async fn reload(&self, pid: PartitionId, ws: &[Window]) -> Result<(u64, u64)> {
        let salt = format!("-reload-{}", &self.id[..8]);
        let exp = self.p.exporter();
        let (mut jobs, mut rows) = (0, 0);
        match pid.partitioning {
            Partitioning::Hour => {
                for &w in ws {
                    let Some(rec) = self.p.aggregator().committed(w).await? else {
                        continue;
                    };
                    for (table, _, r, already) in exp
                        .reload_window(w, &rec.value, &salt, self.only.as_ref())
                        .await?
                    {
                        jobs += u64::from(!already);
                        if table == LOG_RECORDS_TABLE {
                            rows += r;
                        }
                    }
                }
            }
            Partitioning::Day => {
                let exports = exp.all_exports().await?;
                if let Some(s) = exp
                    .seal_with(pid, &exports, self.only.as_ref(), Some(&salt))
                    .await?
                {
                    jobs += s.tables.iter().filter(|t| !t.already_loaded).count() as u64;
                    rows += s
                        .tables
                        .iter()
                        .filter(|t| t.table == LOG_RECORDS_TABLE)
                        .map(|t| t.rows)
                        .sum::<u64>();
                }
            }
        }
        Ok((jobs, rows))
    }

    async fn sql(&self, pid: PartitionId, ws: &[Window]) -> Result<(u64, u64)> {
        let BackfillMode::Sql {
            sql, table, schema, ..
        } = &self.spec.mode
        else {
            return Ok((0, 0));
        };
        let ctx = self.p.ctx();
        let props = writer_properties(&ctx.settings.parquet)?;
        let want = match schema {
            Some(json) => Some(Arc::new(bq_to_arrow(&parse_bq_schema(json)?)?)),
            None => None,
        };
        let mut files = Vec::new();
        let (mut rows, mut bytes) = (0u64, 0u64);
        let mut result_schema = None;
        for &w in ws {
            let (s, _) =
                crate::sql::session_on(ctx, &ctx.settings.cluster, Some(w), Some(sql.as_str()))
                    .await?;
            let (schema, batches) = crate::sql::query_with_schema(&s, sql)
                .await
                .map_err(|e| e.context(format!("backfill query over window {w}")))?;
            let schema = want
                .clone()
                .unwrap_or_else(|| logferry_aggregate::session::plain_schema(&schema));
            let batches: Vec<RecordBatch> = batches
                .iter()
                .map(|b| logferry_aggregate::session::conform(b, &schema))
                .collect::<std::result::Result<_, _>>()?;
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            if logferry_export::warehouse::time_column(&schema).is_none() {
                return Err(Error::Config(format!(
                    "table {table}: the query's result has no TIMESTAMP column to partition on"
                )));
            }
            result_schema = Some(schema.clone());
            if n == 0 {
                continue;
            }
            let body = encode_parquet(&schema, &batches, &props)?;
            let path = export_path(table, w, &format!("backfill-{}", self.id), None, 0);
            bytes += body.len() as u64;
            ctx.export.put_create(&path, body).await?;
            files.push(path);
            rows += n as u64;
        }
        let Some(schema) = result_schema else {
            return Ok((0, 0));
        };
        let job = LoadJob {
            job_id: job_id(table, &pid.decorator(), &self.id),
            table: table.clone(),
            partition: pid,
            mode: WriteMode::Replace,
            files,
            schema,
            rows,
            bytes,
            window: None,
            expect_rows: None,
        };
        let res = self.p.exporter().warehouse().load(&job).await?;
        Ok((u64::from(!res.already_done), res.rows))
    }
}

/// Queues a backfill for the daemon's `backfill` job.
pub async fn enqueue(p: &Pipeline, spec: BackfillSpec) -> Result<String> {
    let b = Backfill::new(p, spec)?;
    p.ctx()
        .ledger()
        .put_once(&format!("{QUEUE}/{}.json", b.id), &b.spec)
        .await?;
    Ok(b.id.clone())
}

/// Runs every queued backfill (each under a lease: one runner each); a
/// finished one leaves the queue, a paused one stays for the next day.
pub async fn run_queue(p: &Pipeline, quiet: bool) -> Result<Vec<BackfillReport>> {
    let ledger = p.ctx().ledger();
    let holder = logferry_core::ledger::Holder::this_process();
    let mut out = Vec::new();
    for key in ledger.list(QUEUE).await? {
        let Some(id) = key.rsplit('/').next().and_then(|f| f.strip_suffix(".json")) else {
            continue;
        };
        let lease_key = format!("leases/backfills/{id}");
        let Some(lease) = ledger
            .try_lease(&lease_key, &holder, p.ctx().settings.lease_ttl)
            .await?
        else {
            continue;
        };
        let spec: BackfillSpec = ledger.get(&key).await?;
        let result = async {
            let b = Backfill::new(p, spec)?;
            b.run(quiet).await
        }
        .await;
        let released = lease.release().await;
        let report = result?;
        released?;
        if report.complete {
            ledger.remove(&key).await?;
        }
        out.push(report);
    }
    Ok(out)
}
