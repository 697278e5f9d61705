//! The pipeline after forward, as a library: which windows are due, each
//! under a lease, aggregated (whole, or as an increment of an open window),
//! exported and loaded; then the days that are due are sealed.
//!
//! Three modes:
//! - **full** (`logferry run`): every window with unprocessed data or an
//!   open chain of increments is aggregated whole, and its partition
//!   replaced (hourly) or its day appended to and later sealed (daily);
//! - **micro-batch** (the `run` job): a window still within its lateness
//!   allowance (`warehouse.seal_after`) gets an increment: only the landing
//!   objects no run has read, deduplicated against every key the window
//!   holds, appended (one load job per increment, its id derived from the
//!   increment's). Once the allowance has passed, the window is aggregated
//!   whole and that replaces what was appended. Rollups are computed with
//!   the whole window, at that point: while a window is open, its rollups
//!   are those of its last full run;
//! - **seal** (the `seal` job, the nightly load): every window past its
//!   allowance aggregated whole, every due day sealed; open windows are
//!   left alone.
//!
//! A window or day that fails is recorded with its error
//! ([`crate::failures`]); the run goes on with the others, and later runs
//! try it again after a backoff.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use logferry_aggregate::keys::KeySet;
use logferry_aggregate::{Aggregator, Outcome, SqlProgram};
use logferry_core::ids::IdHasher;
use logferry_core::ledger::{Holder, Lease, Ledger, Versioned};
use logferry_core::partition::{Window, parse_partition};
use logferry_core::records::{
    AggregateRecord, Appended, ChainHead, Increment, InputFile, WindowCounts, head_key, open_marker,
};
use logferry_core::schema::LOG_RECORDS_TABLE;
use logferry_export::{ExportOutcome, Exporter, LoadState, PartitionId, Partitioning, SealRecord};

use crate::context::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::failures::{Failures, Subject};
use crate::metrics::Metrics;
use crate::state::{AggregateStep, ExportStep, Health};

/// How a run treats windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every window with work aggregated whole.
    #[default]
    Full,
    /// Open windows get increments; windows past their allowance whole.
    MicroBatch,
    /// Windows past their allowance whole; open windows left alone.
    Seal,
}

impl Mode {
    /// The report name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::MicroBatch => "micro_batch",
            Mode::Seal => "seal",
        }
    }
}

/// What a run should do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// How windows are treated.
    pub mode: Mode,
    /// Only this window (and its day's seal); tried whatever its failure
    /// record says.
    pub window: Option<Window>,
    /// Seal every day with exported windows now, before its lateness
    /// allowance (backfills, tests).
    pub seal: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Wait for windows another run holds, instead of leaving them to it.
    pub wait: bool,
    /// Try failing windows and days now, whatever their backoff, those
    /// given up on (`failed`) included.
    pub retry_failed: bool,
}

/// A failure of this run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFailure {
    /// `window 2026-11-25T10`, `seal of day=2026-11-25`.
    pub subject: String,
    /// What to do about it.
    pub kind: ErrorKind,
    /// The error.
    pub error: String,
    /// Failed attempts in a row, this one included.
    pub attempts: u32,
    /// When a later run tries again; `None`: given up on (`failed`).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl RunFailure {
    /// The failure `e` of `subject`, as the ledger now records it (`f`).
    fn new(subject: &Subject, e: &Error, f: &crate::failures::Failure) -> Self {
        RunFailure {
            subject: subject.to_string(),
            kind: e.kind(),
            error: e.to_string(),
            attempts: f.attempts,
            next_attempt_at: f.next_attempt_at,
        }
    }
}

/// What happened to one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowReport {
    /// `YYYY-MM-DDTHH`.
    pub window: String,
    /// What the aggregate stage did.
    pub aggregate: AggregateStep,
    /// What the export stage did.
    pub export: ExportStep,
    /// Aggregate run id (or increment id).
    pub run_id: Option<String>,
    /// The increment's position in the window's chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment: Option<u64>,
    /// Counts by tenant (of the committed run or increment).
    pub counts: BTreeMap<String, WindowCounts>,
    /// Rows of the window in the warehouse's log_records table.
    pub rows_loaded: u64,
    /// Load jobs run (not already done).
    pub load_jobs: u64,
    /// Bytes shipped to the export store.
    pub bytes_sent: u64,
    /// Uncompressed over compressed bytes of what was exported.
    pub compression_ratio: f64,
    /// Curated bytes of the run.
    pub curated_bytes: u64,
    /// Aggregate time (when it ran).
    pub aggregate_ms: u64,
    /// Export and load time (when it ran).
    pub export_ms: u64,
    /// 95th-percentile latency from event time to queryable, ms.
    pub e2e_latency_p95_ms: Option<i64>,
    /// Median latency from event time to queryable, ms.
    pub e2e_latency_p50_ms: Option<i64>,
    /// Why this attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time of the window's run.
    #[serde(default)]
    pub duration_ms: u64,
    /// The operation whose failure failed the run: `export_upload`,
    /// `load_job` (else the failure was elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_operation: Option<String>,
    /// Time the load jobs took.
    #[serde(default)]
    pub load_ms: u64,
    /// Objects uploaded to the export store.
    #[serde(default)]
    pub files_sent: u64,
    /// Rows this run's load jobs added or replaced.
    #[serde(default)]
    pub rows_added: u64,
    /// Bytes the aggregate spilled to disk past its memory limit.
    #[serde(default)]
    pub spilled_bytes: u64,
    /// Per tenant, the latencies of the rows this run made queryable: from
    /// their event time and from their ingest to the load's end.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency: BTreeMap<String, logferry_core::records::TenantAges>,
}

impl WindowReport {
    /// A window in these stage states, nothing done yet.
    fn new(w: Window, aggregate: AggregateStep, export: ExportStep) -> Self {
        WindowReport {
            window: w.to_string(),
            aggregate,
            export,
            run_id: None,
            increment: None,
            counts: BTreeMap::new(),
            rows_loaded: 0,
            load_jobs: 0,
            bytes_sent: 0,
            compression_ratio: 0.0,
            curated_bytes: 0,
            spilled_bytes: 0,
            aggregate_ms: 0,
            export_ms: 0,
            e2e_latency_p95_ms: None,
            e2e_latency_p50_ms: None,
            error: None,
            latency: BTreeMap::new(),
            duration_ms: 0,
            failed_operation: None,
            load_ms: 0,
            files_sent: 0,
            rows_added: 0,
        }
    }

    /// True when something was done to the window.
    pub fn worked(&self) -> bool {
        self.aggregate.worked() || self.export.worked()
    }
}

/// What one run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Report id.
    pub run: String,
    /// How windows were treated.
    pub mode: Mode,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Wall time.
    pub duration_ms: u64,
    /// Per window.
    pub windows: Vec<WindowReport>,
    /// Day partitions sealed (daily partitioning).
    pub seals: Vec<SealRecord>,
    /// Days due for their seal that wait for a window of theirs (open,
    /// unprocessed or failing).
    #[serde(default)]
    pub seals_waiting: Vec<String>,
    /// What failed in this run.
    #[serde(default)]
    pub failures: Vec<RunFailure>,
    /// Windows and days given up on earlier (`failed`), not tried.
    #[serde(default)]
    pub given_up: Vec<String>,
}

impl RunReport {
    /// Windows and days where something was done.
    pub fn worked(&self) -> usize {
        self.windows.iter().filter(|w| w.worked()).count() + self.seals.len()
    }

    /// True when something failed in this run.
    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
}

/// The operation a window's failure is of, when it is one whose success
/// rate is a KPI.
fn failed_operation(e: &Error) -> Option<&'static str> {
    use logferry_export::Error as X;
    match e {
        Error::Export(X::LoadFailed { .. } | X::BigQuery { .. }) => Some("load_job"),
        Error::Export(X::Gcs { .. }) => Some("export_upload"),
        _ => None,
    }
}

/// True when a partition is past its lateness allowance at `now`.
pub fn past_allowance(ctx: &Ctx, end: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let allowance =
        chrono::Duration::from_std(ctx.settings.seal_after).unwrap_or(chrono::Duration::hours(2));
    now >= end + allowance
}

/// What a process knows of an open window's chain at one position: the
/// keys of every record it holds, and the landing objects its full run and
/// increments read (hashed), so that the next increment reads neither the
/// chain nor its outputs again.
#[derive(Debug)]
struct ChainState {
    keys: KeySet,
    covered: KeySet,
}

impl ChainState {
    fn bytes(&self) -> usize {
        self.keys.bytes() + self.covered.bytes()
    }

    fn covers(&self, inputs: &[InputFile]) -> Result<Vec<bool>> {
        let ks: Vec<u128> = inputs.iter().map(|i| input_key(&i.path)).collect();
        Ok(self.covered.contains_keys(&ks)?)
    }
}

fn input_key(path: &str) -> u128 {
    logferry_aggregate::keys::key("", path)
}

/// The chain states of open windows, kept between runs of a long-running
/// process within a memory budget (least recently used out first).
#[derive(Debug, Default)]
struct KeyCache {
    budget: usize,
    /// Window → (chain position the state is of, state, last use).
    entries: HashMap<Window, (String, ChainState, u64)>,
    clock: u64,
}

impl KeyCache {
    fn take(&mut self, w: Window, pos: &str) -> Option<ChainState> {
        match self.entries.remove(&w) {
            Some((p, state, _)) if p == pos => Some(state),
            _ => None,
        }
    }

    fn put(&mut self, w: Window, pos: String, state: ChainState) {
        if state.bytes() > self.budget {
            return;
        }
        self.clock += 1;
        self.entries.insert(w, (pos, state, self.clock));
        while self
            .entries
            .values()
            .map(|(_, k, _)| k.bytes())
            .sum::<usize>()
            > self.budget
        {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(w, _)| *w)
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

/// Where a window's chain stands: its full run and its last increment.
fn chain_position(base: Option<&AggregateRecord>, last_id: Option<&str>) -> String {
    format!(
        "{}/{}",
        base.map_or("", |b| b.run_id.as_str()),
        last_id.unwrap_or_default()
    )
}

/// Runs the pipeline over windows; keeps what is worth keeping between
/// runs of one process (the keys of open windows).
pub struct Pipeline {
    ctx: Ctx,
    agg: Aggregator,
    exp: Exporter,
    ledger: Ledger,
    holder: Holder,
    keys: Mutex<KeyCache>,
    metrics: Option<Arc<Metrics>>,
    stop: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("lake", &self.ctx.lake)
            .finish()
    }
}

impl Pipeline {
    /// The pipeline of a context.
    pub fn new(ctx: &Ctx) -> Result<Self> {
        let program = Arc::new(
            SqlProgram::load(ctx.settings.sql_dir.as_deref())
                .map_err(|e| Error::from(e).context("loading the SQL program"))?,
        );
        let agg = Aggregator::new(
            ctx.lake.clone(),
            program,
            &ctx.settings.parquet,
            &ctx.settings.aggregate,
        )?;
        let exp = Exporter::new(
            ctx.lake.clone(),
            ctx.export.clone(),
            ctx.warehouse.as_dyn(),
            ctx.settings.gcs.parallel_uploads,
        );
        Ok(Pipeline {
            ledger: ctx.ledger(),
            ctx: ctx.clone(),
            agg,
            exp,
            holder: Holder::this_process(),
            keys: Mutex::new(KeyCache {
                budget: ctx.settings.daemon.key_cache_bytes,
                ..Default::default()
            }),
            metrics: None,
            stop: None,
        })
    }

    /// Counts what the pipeline does in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Starts no further window once `stop` is set (a daemon shutting
    /// down): the window in progress finishes.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The aggregator.
    pub fn aggregator(&self) -> &Aggregator {
        &self.agg
    }

    /// The exporter.
    pub fn exporter(&self) -> &Exporter {
        &self.exp
    }

    /// The context.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    fn stopping(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Windows with pending markers (unprocessed landing objects).
    pub async fn pending_windows(&self) -> Result<BTreeSet<Window>> {
        self.windows_under("pending").await
    }

    /// Windows with a chain of increments not yet replaced by a full run.
    pub async fn open_windows(&self) -> Result<BTreeSet<Window>> {
        self.windows_under("open").await
    }

    /// The windows of the ledger's partition keys under `prefix`.
    async fn windows_under(&self, prefix: &str) -> Result<BTreeSet<Window>> {
        let mut out = BTreeSet::new();
        for key in self.ledger.list(prefix).await? {
            if let Some(w) = parse_partition(&object_store::path::Path::from(key.as_str())).window {
                out.insert(w);
            }
        }
        Ok(out)
    }

    /// Takes the lease `key`, waiting for it when `wait`; `None` when
    /// another runner holds it and we do not wait.
    async fn lease(&self, key: &str, wait: bool) -> Result<Option<Lease>> {
        loop {
            if let Some(l) = self
                .ledger
                .try_lease(key, &self.holder, self.ctx.settings.lease_ttl)
                .await?
            {
                return Ok(Some(l));
            }
            if !wait || self.stopping() {
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Runs the pipeline as `opts` says.
    pub async fn run(&self, opts: &RunOptions) -> Result<RunReport> {
        let started_at = Utc::now();
        let t0 = Instant::now();
        let now = self.ctx.now();
        let mut failures = Failures::load(&self.ledger, self.ctx.settings.run).await?;
        let pending = self.pending_windows().await?;
        let open = self.open_windows().await?;
        let windows: Vec<Window> = match opts.window {
            Some(w) => vec![w],
            None => pending.union(&open).copied().collect(),
        };
        let pb = crate::progress::bar(windows.len() as u64, "windows", false, opts.quiet);
        let mut report = RunReport {
            run: String::new(),
            mode: opts.mode,
            started_at,
            duration_ms: 0,
            windows: Vec::new(),
            seals: Vec::new(),
            seals_waiting: Vec::new(),
            failures: Vec::new(),
            given_up: Vec::new(),
        };
        for w in windows {
            if self.stopping() {
                break;
            }
            pb.set_message(w.to_string());
            let subject = Subject::Window(w);
            let within = !past_allowance(&self.ctx, w.end(), now);
            // Open windows in a seal pass, and open windows without new
            // data in a micro-batch pass, are not due.
            match opts.mode {
                Mode::Seal if within && opts.window.is_none() => {
                    pb.inc(1);
                    continue;
                }
                Mode::MicroBatch
                    if within
                        && !pending.contains(&w)
                        && opts.window.is_none()
                        && !self.chain_behind(w).await? =>
                {
                    pb.inc(1);
                    continue;
                }
                _ => {}
            }
            if opts.window.is_none()
                && !opts.retry_failed
                && let Some(f) = failures.get(&subject)
                && !f.due(Utc::now())
            {
                if f.health() == Health::Failed {
                    report.given_up.push(subject.to_string());
                }
                report.windows.push(WindowReport::new(
                    w,
                    AggregateStep::Waiting,
                    ExportStep::Waiting,
                ));
                pb.inc(1);
                continue;
            }
            let key = format!("leases/windows/{}", w.partition());
            let Some(mut held) = self.lease(&key, opts.wait).await? else {
                let by = self.ledger.lease_holder(&key).await?.unwrap_or_default();
                tracing::info!(window = %w, holder = %by, "Window is being processed by another run: left to it.");
                report
                    .windows
                    .push(WindowReport::new(w, AggregateStep::Busy, ExportStep::Busy));
                pb.inc(1);
                continue;
            };
            let increment = opts.mode == Mode::MicroBatch && within;
            let wall = Instant::now();
            let result = if increment {
                self.increment(w, &mut held).await
            } else {
                self.full(w, &mut held, opts.seal).await
            };
            // Hand the window back even when it failed.
            let released = held.release().await;
            match result {
                Ok(mut r) => {
                    failures.succeeded(&subject).await?;
                    r.duration_ms = wall.elapsed().as_millis() as u64;
                    tracing::info!(window = %w, aggregate = %r.aggregate, export = %r.export, rows = r.rows_loaded, "Window processed.");
                    self.count_window(opts.mode, &r);
                    report.windows.push(r);
                }
                Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                Err(e) => {
                    let f = failures.failed(&subject, &e).await?;
                    tracing::error!(window = %w, kind = %e.kind(), attempts = f.attempts, error = %e, "Window failed; the others go on.");
                    let mut r = WindowReport::new(w, AggregateStep::Failed, ExportStep::Failed);
                    r.error = Some(e.to_string());
                    r.duration_ms = wall.elapsed().as_millis() as u64;
                    r.failed_operation = failed_operation(&e).map(str::to_string);
                    self.count_window(opts.mode, &r);
                    report.windows.push(r);
                    report.failures.push(RunFailure::new(&subject, &e, &f));
                }
            }
            released?;
            pb.inc(1);
        }
        pb.finish_and_clear();
        if !self.stopping() && self.exp.warehouse().partitioning() == Partitioning::Day {
            self.seal_days(opts, now, &mut failures, &mut report)
                .await?;
        }
        if let Some(m) = &self.metrics {
            self.gauge_windows(m, &failures).await?;
        }
        // What replaced partitions kept for their readers goes once its
        // retention passed.
        if report.worked() > 0 {
            self.exp.warehouse().vacuum().await?;
        }
        report.run = format!(
            "{}-{}",
            started_at.format("%Y%m%dT%H%M%SZ"),
            &IdHasher::new()
                .part(started_at.to_rfc3339().as_bytes())
                .part(&std::process::id().to_le_bytes())
                .part(&t0.elapsed().as_nanos().to_le_bytes())
                .hex()[..8]
        );
        report.duration_ms = t0.elapsed().as_millis() as u64;
        if report.worked() > 0 || report.failed() {
            self.ledger
                .put_once(
                    &format!("runs/{}/{}.json", started_at.format("%Y-%m-%d"), report.run),
                    &report,
                )
                .await?;
        }
        Ok(report)
    }

    /// True when an open window has increments committed but not yet
    /// appended (a run died between the two): it is due although no new
    /// data came.
    async fn chain_behind(&self, w: Window) -> Result<bool> {
        let Some(head) = self.agg.head(w).await? else {
            return Ok(false);
        };
        let appended = self.exp.appended(w).await?;
        let done = appended
            .filter(|a| a.value.base_run_id == head.value.base_run_id)
            .map_or(0, |a| a.value.seq);
        Ok(head.value.seq > done)
    }

    fn count_window(&self, mode: Mode, r: &WindowReport) {
        let Some(m) = &self.metrics else {
            return;
        };
        m.inc(
            "window_runs",
            &[mode.as_str(), r.aggregate.as_str(), r.export.as_str()],
            1,
        );
        let secs = |ms: u64| ms as f64 / 1000.0;
        if r.error.is_some() {
            m.operation("window", 0, 1);
            if let Some(op) = r.failed_operation.as_deref() {
                let op = if op == "load_job" {
                    "load_job"
                } else {
                    "export_upload"
                };
                m.operation(op, 0, 1);
            }
            return;
        }
        if !r.worked() {
            return;
        }
        m.operation("window", 1, 0);
        m.observe("window_duration", &[mode.as_str()], secs(r.duration_ms));
        if r.aggregate.worked() {
            for (t, c) in &r.counts {
                m.count("aggregate", t, "curated", c.curated);
                m.count("aggregate", t, "dead_lettered", c.dead_lettered);
                m.count("aggregate", t, "duplicate", c.duplicates);
            }
            let rows: u64 = r.counts.values().map(|c| c.curated).sum();
            m.observe("batch_size", &["aggregate"], rows as f64);
            m.observe("merge_duration", &[], secs(r.aggregate_ms));
            m.observe("stage_duration", &["aggregate"], secs(r.aggregate_ms));
        }
        if r.export.worked() {
            m.observe("export_duration", &[], secs(r.export_ms));
            m.observe("stage_duration", &["export"], secs(r.export_ms));
            m.inc("transit", &["compressed"], r.bytes_sent);
            if r.compression_ratio > 0.0 {
                m.inc(
                    "transit",
                    &["uncompressed"],
                    (r.bytes_sent as f64 * r.compression_ratio) as u64,
                );
                m.set("compression", &[], r.compression_ratio);
            }
            m.operation("export_upload", r.files_sent, 0);
            m.operation("load_job", r.load_jobs, 0);
            if r.load_jobs > 0 {
                let per_job = secs(r.load_ms) / r.load_jobs as f64;
                let rows = r.rows_added / r.load_jobs;
                for _ in 0..r.load_jobs {
                    m.observe("load_job_duration", &[LOG_RECORDS_TABLE], per_job);
                    m.observe("stage_duration", &["load"], per_job);
                    m.observe("batch_size", &["load"], rows as f64);
                }
            }
        }
    }

    async fn gauge_windows(&self, m: &Metrics, failures: &Failures) -> Result<()> {
        let pending = self.pending_windows().await?.len() as i64;
        let open = self.open_windows().await?.len() as i64;
        let (mut retrying, mut failed) = (0, 0);
        for f in failures.all() {
            match f.health() {
                Health::Retrying => retrying += 1,
                Health::Failed => failed += 1,
                Health::Ok => {}
            }
        }
        for (state, n) in [
            ("pending", pending),
            ("open", open),
            ("retrying", retrying),
            ("failed", failed),
        ] {
            m.set("windows", &[state], n as f64);
        }
        Ok(())
    }

    /// Aggregates a window whole, exports and loads it; a chain of
    /// increments on its previous run is replaced and removed.
    async fn full(&self, w: Window, held: &mut Lease, force_seal: bool) -> Result<WindowReport> {
        self.full_with(w, held, force_seal, None, None).await
    }

    /// Like [`Pipeline::full`], for backfills: only the tables in `only`
    /// are loaded, and with `tenants` only their records are aggregated
    /// again (the others' outputs are kept).
    pub async fn full_with(
        &self,
        w: Window,
        held: &mut Lease,
        force_seal: bool,
        only: Option<&BTreeSet<String>>,
        tenants: Option<&BTreeSet<String>>,
    ) -> Result<WindowReport> {
        let partitioning = self.exp.warehouse().partitioning();
        // The chain this run replaces (the head may be stale: a full run
        // committed, then the process died before the chain was removed).
        let replaced = match self.agg.head(w).await? {
            Some(h) if h.value.seq > 0 => self.agg.chain(w, &h.value).await?,
            _ => Vec::new(),
        };
        let at = Instant::now();
        let outcome = match tenants {
            Some(t) => self.agg.aggregate_tenants(w, t).await?,
            None => self.agg.aggregate(w).await?,
        };
        let (step, record) = match outcome {
            Outcome::NoData => (AggregateStep::NoData, None),
            Outcome::UpToDate(r) => (AggregateStep::UpToDate, Some(r)),
            Outcome::Done(r) => (AggregateStep::Done, Some(r)),
        };
        let mut report = WindowReport::new(w, step, ExportStep::Skipped);
        if step == AggregateStep::Done {
            report.aggregate_ms = at.elapsed().as_millis() as u64;
        }
        let Some(rec) = record else {
            return Ok(report);
        };
        held.renew().await?;
        let et = Instant::now();
        let day_due = partitioning == Partitioning::Day
            && (force_seal
                || past_allowance(
                    &self.ctx,
                    PartitionId::of(w, Partitioning::Day).end(),
                    self.ctx.now(),
                ));
        let outcome = self.exp.export_tables(w, &rec, day_due, only).await?;
        let (estep, erec) = match &outcome {
            ExportOutcome::UpToDate(r) => (ExportStep::UpToDate, r),
            ExportOutcome::Done(r) => (ExportStep::from(r.state), r),
        };
        if let Some(m) = &self.metrics {
            let store = crate::metrics::store_kind(&self.ctx.settings.export_url);
            for ms in &erec.upload_latency.samples_ms {
                m.observe("object_write_latency", &[store], ms / 1000.0);
            }
        }
        if !replaced.is_empty() {
            logferry_core::failpoint::hit("chain.before_cleanup");
            self.exp.remove_chain(w, &replaced).await?;
            let keep: Vec<_> = rec.outputs().collect();
            self.agg.remove_chain(w, &replaced, &keep).await?;
            self.reset_head(w, &rec).await?;
        }
        logferry_core::failpoint::hit("run.before_clear_pending");
        self.agg.clear_pending(w, &rec.inputs).await?;
        self.ledger.remove(&open_marker(w)).await?;
        self.keys.lock().await.entries.remove(&w);
        report.export = estep;
        report.run_id = Some(rec.run_id.clone());
        report.rows_loaded = erec.rows(LOG_RECORDS_TABLE);
        report.load_jobs = erec
            .tables
            .iter()
            .filter(|t| t.job_id.is_some() && !t.already_loaded)
            .count() as u64;
        report.bytes_sent = erec.bytes_sent;
        let files: usize = erec.tables.iter().map(|t| t.files.len()).sum();
        report.files_sent = (files as u64).saturating_sub(erec.files_existing);
        let ran = erec
            .tables
            .iter()
            .filter(|t| t.job_id.is_some() && !t.already_loaded);
        report.load_ms = ran.clone().map(|t| t.load_ms).sum();
        report.rows_added = ran
            .filter(|t| t.table == LOG_RECORDS_TABLE)
            .map(|t| t.rows_loaded)
            .sum();
        report.compression_ratio = erec.compression_ratio;
        report.curated_bytes = rec.curated.iter().map(|f| f.bytes).sum();
        report.spilled_bytes = rec.spilled_bytes;
        report.counts = rec.counts.clone();
        if estep != ExportStep::UpToDate {
            report.export_ms = et.elapsed().as_millis() as u64;
        }
        // Rows made queryable by this load (a chain of increments replaced
        // had them queryable already, and counted them then).
        if estep != ExportStep::UpToDate
            && replaced.is_empty()
            && erec.loaded_run.as_ref() == Some(&rec.run_id)
        {
            let at_us = erec.finished_at.timestamp_micros();
            self.queryable(&mut report, rec.ages.latencies_at(at_us));
        }
        Ok(report)
    }

    /// Rows became queryable with these latencies: into the report and the
    /// metrics.
    fn queryable(
        &self,
        report: &mut WindowReport,
        latency: BTreeMap<String, logferry_core::records::TenantAges>,
    ) {
        let mut all = logferry_observe::Histo::new();
        for (tenant, l) in &latency {
            all.merge(&l.event);
            if let Some(m) = &self.metrics {
                m.latencies(tenant, &l.event, &l.ingest);
                m.count("load", tenant, "loaded", l.event.count);
            }
        }
        report.e2e_latency_p50_ms = all.quantile(0.5).map(|v| v as i64);
        report.e2e_latency_p95_ms = all.quantile(0.95).map(|v| v as i64);
        report.latency = latency;
    }

    /// Points the chain head at the full run that replaced the chain.
    async fn reset_head(&self, w: Window, rec: &AggregateRecord) -> Result<()> {
        let head = self.agg.head(w).await?;
        let doc = ChainHead {
            base_run_id: Some(rec.run_id.clone()),
            seq: 0,
            last_id: String::new(),
            curated_rows: rec.curated.iter().map(|f| f.rows).sum(),
        };
        self.ledger
            .commit(&head_key(w), head.map(|h| h.version), &doc)
            .await?;
        Ok(())
    }

    /// Appends one increment, unless the warehouse's load job quota for
    /// today is down to what the seals need; then it waits for a later run
    /// (or the window's seal, which loads it anyway).
    async fn append(
        &self,
        w: Window,
        inc: &Increment,
        appended: &mut Option<Versioned<Appended>>,
    ) -> Result<Option<logferry_export::AppendOutcome>> {
        if let Some(left) = self.exp.warehouse().jobs_left(LOG_RECORDS_TABLE).await? {
            if let Some(m) = &self.metrics {
                m.set("load_jobs_left", &[LOG_RECORDS_TABLE], left as f64);
            }
            let reserve = crate::planner::seal_reserve(&self.ctx.settings, self.ctx.now());
            if left <= reserve && inc.curated_rows() > 0 {
                tracing::warn!(window = %w, left, reserve, "Load job quota low: the increment waits for the window's seal.");
                return Ok(None);
            }
        }
        let out = self.exp.append(w, inc, appended.as_ref()).await?;
        let version = appended.as_ref().map_or(1, |a| a.version + 1);
        *appended = Some(Versioned {
            version,
            value: out.appended.clone(),
        });
        Ok(Some(out))
    }

    /// One increment of an open window: the chain finished first (every
    /// committed increment appended), then the landing objects no run has
    /// read aggregated against the window's keys and appended.
    async fn increment(&self, w: Window, held: &mut Lease) -> Result<WindowReport> {
        let base = self.agg.committed(w).await?.map(|v| v.value);
        // Appends go on top of the full run in the warehouse: it must be
        // there (and, daily, not waiting for its day's seal).
        if let Some(b) = &base {
            let exported = self.exp.committed(w).await?;
            let loaded = exported.as_ref().is_some_and(|e| {
                e.value.aggregate_run_id == b.run_id
                    && e.value.loaded_run.as_ref() == Some(&b.run_id)
                    && e.value.state != LoadState::AwaitingSeal
            });
            if !loaded {
                return self.full(w, held, false).await;
            }
        }
        let head =
            self.agg.head(w).await?.filter(|h| {
                h.value.base_run_id.as_deref() == base.as_ref().map(|b| b.run_id.as_str())
            });
        let mut appended = self
            .exp
            .appended(w)
            .await?
            .filter(|a| a.value.base_run_id == base.as_ref().map(|b| b.run_id.clone()));
        let done = appended.as_ref().map_or(0, |a| a.value.seq);
        let seq = head.as_ref().map_or(0, |h| h.value.seq);
        let last_id = head
            .as_ref()
            .filter(|h| h.value.seq > 0)
            .map(|h| h.value.last_id.clone());
        let pos = chain_position(base.as_ref(), last_id.as_deref());
        let mut report = WindowReport::new(w, AggregateStep::UpToDate, ExportStep::UpToDate);
        let et = Instant::now();
        let cached = self.keys.lock().await.take(w, &pos);
        // This process's own last increment, appended: nothing to read.
        // Otherwise (a restart, another replica's increments, an append
        // that did not happen) the chain is read and finished first.
        let mut state = match cached {
            Some(state) if seq == done => state,
            cached => {
                let chain = match &head {
                    Some(h) => self.agg.chain(w, &h.value).await?,
                    None => Vec::new(),
                };
                for inc in chain.iter().filter(|i| i.seq > done) {
                    if let Some(out) = self.append(w, inc, &mut appended).await? {
                        report.export = ExportStep::Appended;
                        report.load_jobs += u64::from(!out.already_loaded);
                        report.bytes_sent += out.bytes_sent;
                        report.files_sent += u64::from(out.bytes_sent > 0);
                        report.load_ms += out.duration_ms;
                        report.rows_added += inc.curated_rows();
                    }
                    self.agg.clear_increment(w, inc).await?;
                }
                if let Some(last) = chain.last().filter(|l| l.seq == done) {
                    // Its append was recorded; its markers may not be cleared.
                    self.agg.clear_increment(w, last).await?;
                }
                let mut covered = KeySet::default();
                covered.extend(
                    base.iter()
                        .flat_map(|b| b.inputs.iter())
                        .chain(chain.iter().flat_map(|i| i.inputs.iter()))
                        .map(|i| input_key(&i.path)),
                )?;
                let keys = match cached {
                    Some(c) => c.keys,
                    None => self.agg.keys(base.as_ref(), &chain).await?,
                };
                ChainState { keys, covered }
            }
        };
        let pending = self.agg.pending_inputs(w).await?;
        let covers = state.covers(&pending)?;
        let (stale, new): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .zip(covers)
            .partition(|(_, covered)| *covered);
        let stale: Vec<InputFile> = stale.into_iter().map(|(i, _)| i).collect();
        let new: Vec<InputFile> = new.into_iter().map(|(i, _)| i).collect();
        if !stale.is_empty() {
            self.agg.clear_pending(w, &stale).await?;
        }
        if new.is_empty() {
            self.keys.lock().await.put(w, pos, state);
            report.rows_loaded = appended.as_ref().map_or(0, |a| a.value.rows);
            return Ok(report);
        }
        let at = Instant::now();
        let done = self
            .agg
            .increment(w, base.as_ref(), head.as_ref(), new, &state.keys)
            .await?;
        report.aggregate_ms = at.elapsed().as_millis() as u64;
        state.keys.extend(done.keys.iter().copied())?;
        state
            .covered
            .extend(done.increment.inputs.iter().map(|i| input_key(&i.path)))?;
        self.keys.lock().await.put(
            w,
            chain_position(base.as_ref(), Some(&done.increment.id)),
            state,
        );
        held.renew().await?;
        let inc = &done.increment;
        report.aggregate = AggregateStep::Increment;
        report.run_id = Some(inc.id.clone());
        report.increment = Some(inc.seq);
        report.counts = inc.counts.clone();
        report.curated_bytes = inc.curated.iter().map(|f| f.bytes).sum();
        if let Some(out) = self.append(w, inc, &mut appended).await? {
            report.export = ExportStep::Appended;
            report.load_jobs += u64::from(!out.already_loaded);
            report.bytes_sent += out.bytes_sent;
            report.files_sent += u64::from(out.bytes_sent > 0);
            report.load_ms += out.duration_ms;
            report.rows_added += inc.curated_rows();
            self.agg.clear_increment(w, inc).await?;
            let at_us = out.appended.finished_at.timestamp_micros();
            self.queryable(&mut report, inc.ages.latencies_at(at_us));
        }
        report.export_ms = et.elapsed().as_millis() as u64;
        report.rows_loaded = appended.as_ref().map_or(0, |a| a.value.rows);
        Ok(report)
    }

    /// Seals every day past its allowance (or all, with `--seal`) whose
    /// windows changed since its last seal, unless a window of the day is
    /// still open, unprocessed or failing: the seal replaces the day, and
    /// must not drop what such a window appended or has yet to load.
    async fn seal_days(
        &self,
        opts: &RunOptions,
        now: DateTime<Utc>,
        failures: &mut Failures,
        report: &mut RunReport,
    ) -> Result<()> {
        let exports = self.exp.all_exports().await?;
        let mut days: Vec<PartitionId> = exports
            .keys()
            .filter_map(|w| Window::parse(w).ok())
            .map(|w| PartitionId::of(w, Partitioning::Day))
            .filter(|d| opts.window.is_none_or(|w| d.contains(w)))
            .collect();
        days.sort();
        days.dedup();
        let unfinished: BTreeSet<Window> = self
            .pending_windows()
            .await?
            .union(&self.open_windows().await?)
            .copied()
            .collect();
        for day in days {
            if !(opts.seal || past_allowance(&self.ctx, day.end(), now)) {
                continue;
            }
            if self.stopping() {
                break;
            }
            if unfinished.iter().any(|w| day.contains(*w)) {
                report.seals_waiting.push(day.key());
                continue;
            }
            let subject = Subject::Day(day);
            if opts.window.is_none()
                && !opts.retry_failed
                && let Some(f) = failures.get(&subject)
                && !f.due(Utc::now())
            {
                if f.health() == Health::Failed {
                    report.given_up.push(subject.to_string());
                }
                continue;
            }
            let key = format!("leases/days/{}", day.key());
            let Some(held) = self.lease(&key, opts.wait).await? else {
                tracing::info!(%day, "Day is being sealed by another run: left to it.");
                continue;
            };
            // The windows may have changed while we waited for the lease.
            let result = async {
                let exports = self.exp.all_exports().await?;
                Ok::<_, Error>(self.exp.seal(day, &exports).await?)
            }
            .await;
            let released = held.release().await;
            match result {
                Ok(sealed) => {
                    failures.succeeded(&subject).await?;
                    if let Some(s) = sealed {
                        tracing::info!(day = %s.day, windows = s.windows.len(), "Sealed day partition.");
                        report.seals.push(s);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                Err(e) => {
                    let f = failures.failed(&subject, &e).await?;
                    tracing::error!(%day, error = %e, attempts = f.attempts, "Seal failed; the others go on.");
                    report.failures.push(RunFailure::new(&subject, &e, &f));
                }
            }
            released?;
        }
        Ok(())
    }
}

/// Runs the pipeline once (what `logferry run` and a schedule's job do).
pub async fn run(ctx: &Ctx, opts: RunOptions) -> Result<RunReport> {
    Pipeline::new(ctx)?.run(&opts).await
}
