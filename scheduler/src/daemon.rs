//! `logferry daemon`: one long-running process that follows the tenants'
//! Kinesis streams and the inbox, fires the `[[schedule]]` entries (the
//! micro-batch `run`, the nightly `seal`, queued backfills) and serves
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Every piece of work is under a lease (windows, days, shards, inbox
//! objects, backfills), so several replicas share one lake. A stream reader
//! that fails is restarted with backoff, and shown unhealthy meanwhile; a
//! job that fails is logged, counted and shown on `/readyz`; nothing stops
//! the other work. On SIGTERM (or SIGINT) no new work starts, the shard
//! readers flush and checkpoint, the job and inbox object in progress
//! finish, within `daemon.shutdown_deadline`; what is still running then is
//! abandoned, its leases handed back, and the process exits 0. Killed
//! outright, it loses nothing either: every step is durable before the
//! next, and the next process picks the work up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;

use logferry_core::schedule::{Job, Schedule};
use logferry_forward::KinesisForwarder;
use logferry_forward::kinesis::StreamHealth;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::inbox::Inbox;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// How one schedule is doing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScheduleState {
    /// The job.
    pub job: Option<Job>,
    /// A firing is running now.
    pub running: bool,
    /// Outcome of the last firing: `ok` or `failed`.
    pub last: Option<String>,
    /// When the last firing started.
    pub last_started: Option<DateTime<Utc>>,
    /// When it finished.
    pub last_finished: Option<DateTime<Utc>>,
    /// Why it failed.
    pub last_error: Option<String>,
    /// Firings skipped because the previous one was still running.
    pub skipped: u64,
    /// Next firing.
    pub next: Option<DateTime<Utc>>,
}

/// What the daemon knows about itself, shared with the HTTP handlers.
#[derive(Debug)]
struct Shared {
    started: Instant,
    stopping: AtomicBool,
    schedules: std::sync::Mutex<BTreeMap<String, ScheduleState>>,
    streams: Option<Arc<StreamHealth>>,
    inbox_error: std::sync::Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    /// Stream restarts already counted in the metrics.
    restarts_seen: std::sync::Mutex<BTreeMap<String, u64>>,
    /// daemon.memory_budget, bytes.
    memory_budget: u64,
    /// What the stream readers had landed when the metrics last counted it.
    kinesis_counted: std::sync::Mutex<logferry_forward::batcher::DecodeStats>,
    /// ... and when the ledger last kept a report of it.
    kinesis_kept: Mutex<logferry_forward::batcher::DecodeStats>,
}

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize)]
struct Health {
    ready: bool,
    stopping: bool,
    uptime_s: u64,
    problems: Vec<String>,
    schedules: BTreeMap<String, ScheduleState>,
    streams: BTreeMap<String, logferry_forward::kinesis::StreamState>,
    inbox_error: Option<String>,
}

impl Shared {
    fn health(&self) -> Health {
        let schedules = self
            .schedules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let streams = self
            .streams
            .as_ref()
            .map(|s| s.snapshot())
            .unwrap_or_default();
        let mut problems = Vec::new();
        for (name, s) in &streams {
            if !s.up {
                problems.push(format!(
                    "stream {name}: reader restarting after: {}",
                    s.last_error.as_deref().unwrap_or("?")
                ));
            }
        }
        for (name, s) in &schedules {
            if !s.running && s.last.as_deref() == Some("failed") {
                problems.push(format!(
                    "schedule {name}: last run failed: {}",
                    s.last_error.as_deref().unwrap_or("?")
                ));
            }
        }
        let stopping = self.stopping.load(Ordering::Relaxed);
        if stopping {
            problems.push("stopping".into());
        }
        Health {
            ready: problems.is_empty(),
            stopping,
            uptime_s: self.started.elapsed().as_secs(),
            problems,
            schedules,
            streams,
            inbox_error: self
                .inbox_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Brings the gauges read from elsewhere up to date: stream health and
    /// source lag, memory.
    fn sample(&self) {
        if let Some(streams) = &self.streams {
            for (stream, st) in streams.snapshot() {
                self.metrics
                    .set("stream_up", &[&stream], f64::from(u8::from(st.up)));
                let seen = {
                    let mut seen = self.restarts_seen.lock().unwrap_or_else(|e| e.into_inner());
                    let before = seen.insert(stream.clone(), st.restarts).unwrap_or(0);
                    st.restarts.saturating_sub(before)
                };
                self.metrics.inc("stream_restarts", &[&stream], seen);
                for (shard, lag) in st.lag_ms {
                    self.metrics.lag(&stream, &shard, lag as f64);
                }
            }
            self.count_kinesis(&streams.landed());
        }
        if let Some(rss) = crate::metrics::rss_bytes() {
            let budget = self.memory_budget as f64;
            self.metrics.set("memory_in_use", &[], rss as f64);
            self.metrics.set("memory_budget", &[], budget);
            self.metrics
                .set("memory_pressure", &[], rss as f64 / budget.max(1.0));
        }
    }

    /// Counts in the metrics what the stream readers landed beyond what
    /// was counted (`landed`: their totals so far).
    fn count_kinesis(&self, landed: &logferry_forward::batcher::DecodeStats) {
        let mut counted = self
            .kinesis_counted
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.metrics.forwarded(&landed.since(&counted));
        *counted = landed.clone();
    }

    /// Keeps in the ledger a report of what the stream readers landed
    /// beyond the last one kept (`report`: their totals so far, shards
    /// included at the end), so that `kpi` and `cost` see a running daemon.
    async fn keep_kinesis(&self, ctx: &Ctx, mut report: logferry_forward::KinesisReport) {
        let mut kept = self.kinesis_kept.lock().await;
        let delta = report.decode.since(&kept);
        if delta.received == 0 && report.shards.is_empty() {
            return;
        }
        let total = std::mem::replace(&mut report.decode, delta);
        match crate::forward::record_run(ctx, b"kinesis", &report).await {
            Ok(()) => *kept = total,
            Err(e) => tracing::error!(error = %e, "Could not keep the Kinesis report."),
        }
    }

    fn set_schedule(&self, name: &str, f: impl FnOnce(&mut ScheduleState)) {
        let mut all = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(name.to_string()).or_default());
    }
}

async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    // Alive: the process serves. Its details are in the body.
    (StatusCode::OK, axum::Json(s.health()))
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let h = s.health();
    let code = if h.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(h))
}

async fn serve_metrics(
    State(s): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    s.sample();
    // OpenMetrics for scrapers that ask for it (Prometheus does), the
    // classic text format otherwise.
    let open = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if open {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.metrics.encode(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.metrics.encode_prometheus(),
        )
    }
}

/// What a stopping daemon waits at most for aborted tasks to end (past its
/// shutdown deadline), and for its HTTP connections to close.
const AFTER_DEADLINE: Duration = Duration::from_millis(300);

/// What the daemon did, when it stops.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonReport {
    /// Seconds it ran.
    pub uptime_s: u64,
    /// True when work still running at the deadline was abandoned.
    pub abandoned: bool,
    /// Leases handed back at the deadline.
    pub leases_handed_back: usize,
    /// Schedules at the end.
    pub schedules: BTreeMap<String, ScheduleState>,
}

/// Options of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub listen: SocketAddr,
    /// The metrics to count into (a new set when `None`).
    pub metrics: Option<Arc<Metrics>>,
}

/// Runs the daemon until `stop` (SIGTERM/SIGINT when `signals`).
pub async fn run(
    ctx: Ctx,
    opts: DaemonOptions,
    stop: Arc<AtomicBool>,
    signals: bool,
) -> Result<DaemonReport> {
    let settings = ctx.settings.clone();
    // A plan that cannot fit the warehouse's quotas is refused up front.
    let program = logferry_aggregate::SqlProgram::load(settings.sql_dir.as_deref())
        .map_err(|e| Error::from(e).context("loading the SQL program"))?;
    let mut tables = vec![logferry_core::schema::LOG_RECORDS_TABLE.to_string()];
    tables.extend(program.rollups.iter().map(|r| r.name.clone()));
    crate::planner::check(&crate::planner::plan(&settings, &tables, Utc::now()))?;
    if signals {
        crate::forward::stop_on_signals(stop.clone());
    }
    let metrics = opts
        .metrics
        .clone()
        .unwrap_or_else(|| Arc::new(Metrics::new(settings.daemon.metrics_window, settings.kpi)));
    let pipeline = Arc::new(
        Pipeline::new(&ctx)?
            .with_metrics(metrics.clone())
            .with_stop(stop.clone()),
    );
    // Backfills contend with the micro-batches through leases, not in turn.
    let backfills = Arc::new(Pipeline::new(&ctx)?.with_stop(stop.clone()));
    let kinesis = if settings.daemon.kinesis {
        if !settings.tenants.all().iter().any(|t| !t.streams.is_empty()) {
            return Err(Error::Config(
                "daemon.kinesis is on, but no [[tenant]] has streams".into(),
            ));
        }
        Some(KinesisForwarder::new(settings.clone(), ctx.lake.clone()).await?)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        started: Instant::now(),
        stopping: AtomicBool::new(false),
        schedules: std::sync::Mutex::new(BTreeMap::new()),
        streams: kinesis.as_ref().map(KinesisForwarder::health),
        inbox_error: std::sync::Mutex::new(None),
        metrics: metrics.clone(),
        restarts_seen: std::sync::Mutex::new(BTreeMap::new()),
        memory_budget: settings.daemon.memory_budget,
        kinesis_counted: std::sync::Mutex::new(Default::default()),
        kinesis_kept: Mutex::new(Default::default()),
    });

    // Counters start at zero for every label set known up front, so that
    // rates and alerts see them before the first event.
    for outcome in ["forwarded", "failed", "corrupt"] {
        metrics.inc("inbox_objects", &[outcome], 0);
    }
    for s in &settings.schedules {
        for outcome in ["ok", "failed", "skipped"] {
            metrics.inc("schedule_runs", &[&s.name, outcome], 0);
        }
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::Config(format!("daemon.listen {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("the listening socket", e))?;
    tracing::info!(%addr, inbox = %settings.daemon.inbox_url, schedules = settings.schedules.len(), "logferry daemon running.");
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(serve_metrics))
        .with_state(shared.clone());
    let http_stop = stop.clone();
    let http = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                while !http_stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "The health and metrics server stopped.");
        }
    });

    let mut tasks: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    if let Some(fwd) = kinesis {
        let (stop, ctx, shared) = (stop.clone(), ctx.clone(), shared.clone());
        let health = fwd.health();
        tasks.spawn(async move {
            match fwd.run(false, stop).await {
                Ok(mut r) => {
                    // The rest of what was landed since the last count and
                    // report (readers that failed and were restarted
                    // included), with the shards' reports.
                    r.decode = health.landed();
                    shared.count_kinesis(&r.decode);
                    shared.keep_kinesis(&ctx, r).await;
                }
                Err(e) => tracing::error!(error = %e, "Kinesis forwarding stopped."),
            }
        });
    }
    {
        let (stop, ctx, shared) = (stop.clone(), ctx.clone(), shared.clone());
        tasks.spawn(async move { sample_loop(ctx, stop, shared).await });
    }
    {
        let inbox = Inbox::open(&ctx)?;
        let (stop, ctx, shared) = (stop.clone(), ctx.clone(), shared.clone());
        tasks.spawn(async move { inbox_loop(inbox, ctx, stop, shared).await });
    }
    {
        let (stop, shared) = (stop.clone(), shared.clone());
        let schedules = settings.schedules.clone();
        let (pipeline, backfills) = (pipeline.clone(), backfills.clone());
        tasks.spawn(
            async move { schedule_loop(schedules, pipeline, backfills, stop, shared).await },
        );
    }

    // Run until stopped (or until every task ended, which is a failure).
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            ended = tasks.join_next() => {
                match ended {
                    None => break,
                    Some(Err(e)) => tracing::error!(error = %e, "A daemon task died."),
                    Some(Ok(())) => {}
                }
            }
        }
    }
    shared.stopping.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    tracing::info!(
        deadline_s = settings.daemon.shutdown_deadline.as_secs_f64(),
        "Stopping: finishing the work in progress."
    );
    let deadline = tokio::time::Instant::now() + settings.daemon.shutdown_deadline;
    let mut abandoned = false;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(None) => break,
            Ok(Some(_)) => {}
            Err(_) => {
                abandoned = true;
                tracing::warn!("Shutdown deadline passed: abandoning the work still running.");
                tasks.abort_all();
                // A task stuck in blocking code does not see its abort:
                // it is not waited for.
                let _ = tokio::time::timeout(AFTER_DEADLINE, async {
                    while tasks.join_next().await.is_some() {}
                })
                .await;
                break;
            }
        }
    }
    let leases = logferry_core::ledger::release_held().await;
    // The HTTP server stopped accepting at the stop; a request still being
    // answered gets a moment, then the connection is cut.
    let mut http = http;
    if tokio::time::timeout(AFTER_DEADLINE, &mut http)
        .await
        .is_err()
    {
        http.abort();
    }
    tracing::info!(abandoned, leases, "logferry daemon stopped.");
    let schedules = shared.health().schedules;
    Ok(DaemonReport {
        uptime_s: shared.started.elapsed().as_secs(),
        abandoned,
        leases_handed_back: leases,
        schedules,
    })
}

/// Keeps a [`crate::measure::Sample`] of source lag and memory in the
/// ledger every minute, and one at the stop, for `logferry kpi` and
/// `logferry report`.
async fn sample_loop(ctx: Ctx, stop: Arc<AtomicBool>, shared: Arc<Shared>) {
    let ledger = ctx.ledger();
    let holder = logferry_core::ledger::Holder::this_process();
    let mut last = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping || last.elapsed() >= crate::measure::SAMPLE_EVERY {
            last = Instant::now();
            shared.sample();
            let lag_ms = shared
                .streams
                .as_ref()
                .map(|s| {
                    s.snapshot()
                        .into_iter()
                        .flat_map(|(stream, st)| {
                            st.lag_ms
                                .into_iter()
                                .map(move |(shard, ms)| (format!("{stream}/{shard}"), ms))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let now = Utc::now();
            let sample = crate::measure::Sample {
                at: now,
                lag_ms,
                rss_bytes: crate::metrics::rss_bytes().unwrap_or(0),
                memory_budget: shared.memory_budget,
            };
            let name = format!(
                "runs/daemon/{}-{}.json",
                now.format("%Y%m%dT%H%M%SZ"),
                &logferry_core::ids::hash_hex(holder.id.as_bytes())[..8]
            );
            if let Err(e) = ledger.put_once(&name, &sample).await {
                tracing::warn!(error = %e, "Could not keep the daemon's sample.");
            }
            if let Some(streams) = shared.streams.as_ref().filter(|_| !stopping) {
                let report = logferry_forward::KinesisReport {
                    decode: streams.landed(),
                    duration_ms: crate::measure::SAMPLE_EVERY.as_millis() as u64,
                    ..Default::default()
                };
                shared.keep_kinesis(&ctx, report).await;
            }
        }
        if stopping {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn inbox_loop(inbox: Inbox, ctx: Ctx, stop: Arc<AtomicBool>, shared: Arc<Shared>) {
    let interval = ctx.settings.daemon.inbox_interval;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        match inbox.scan(&ctx, &stop).await {
            Ok(r) => {
                *shared.inbox_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    r.failed.first().map(|(n, e)| format!("{n}: {e}"));
                let store = crate::metrics::store_kind(&ctx.settings.lake_url);
                for f in &r.forwarded {
                    shared.metrics.forward_report(f, store);
                }
                for (outcome, n) in [
                    ("forwarded", r.forwarded.len() as u64),
                    ("failed", r.failed.len() as u64),
                    ("corrupt", r.corrupt),
                ] {
                    shared.metrics.inc("inbox_objects", &[outcome], n);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Looking at the inbox failed; trying again.");
                *shared.inbox_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            }
        }
        let rest = interval.saturating_sub(t0.elapsed());
        let until = Instant::now() + rest;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50).min(until - Instant::now())).await;
        }
    }
}

/// Fires the schedules: each at its times, one firing of a schedule at a
/// time (a firing due while the last still runs is skipped and counted).
/// The `run` and `seal` jobs take turns on one pipeline; backfills have
/// their own.
async fn schedule_loop(
    schedules: Vec<Schedule>,
    pipeline: Arc<Pipeline>,
    backfills: Arc<Pipeline>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
) {
    let turns = Arc::new(Mutex::new(()));
    let mut next: Vec<Option<DateTime<Utc>>> =
        schedules.iter().map(|s| s.next_after(Utc::now())).collect();
    let running: Vec<Arc<AtomicBool>> = schedules
        .iter()
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let mut jobs: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    for (s, n) in schedules.iter().zip(&next) {
        shared.set_schedule(&s.name, |st| {
            st.job = Some(s.job);
            st.next = *n;
        });
    }
    while !stop.load(Ordering::Relaxed) {
        let now = Utc::now();
        for (i, s) in schedules.iter().enumerate() {
            let Some(at) = next[i] else { continue };
            if at > now {
                continue;
            }
            next[i] = s.next_after(now);
            shared.set_schedule(&s.name, |st| st.next = next[i]);
            if running[i].swap(true, Ordering::Relaxed) {
                shared.set_schedule(&s.name, |st| st.skipped += 1);
                shared
                    .metrics
                    .inc("schedule_runs", &[&s.name, "skipped"], 1);
                continue;
            }
            let p = if s.job == Job::Backfill {
                backfills.clone()
            } else {
                pipeline.clone()
            };
            let (flag, shared, turns, s) =
                (running[i].clone(), shared.clone(), turns.clone(), s.clone());
            jobs.spawn(async move {
                let _turn = if s.job == Job::Backfill {
                    None
                } else {
                    Some(turns.lock().await)
                };
                shared.set_schedule(&s.name, |st| {
                    st.running = true;
                    st.last_started = Some(Utc::now());
                });
                let r = crate::jobs::run_job(&p, Some(&s.name), s.job, true).await;
                let (outcome, error) = match &r {
                    Ok(j) if !j.failed() => ("ok", None),
                    Ok(j) => ("failed", Some(j.summary().failures.join("; "))),
                    Err(e) => ("failed", Some(e.to_string())),
                };
                match (&r, &error) {
                    (_, Some(e)) => {
                        tracing::error!(schedule = %s.name, job = %s.job, error = %e, "Scheduled job failed.")
                    }
                    (Ok(j), None) => {
                        let sum = j.summary();
                        if sum.worked > 0 || sum.backfills > 0 {
                            tracing::info!(
                                schedule = %s.name,
                                job = %s.job,
                                worked = sum.worked,
                                backfills = sum.backfills,
                                backfills_complete = sum.backfills_complete,
                                "Scheduled job done."
                            );
                        }
                    }
                    (Err(_), None) => {}
                }
                shared
                    .metrics
                    .inc("schedule_runs", &[&s.name, outcome], 1);
                if outcome == "ok" {
                    shared.metrics.set(
                        "schedule_last_success",
                        &[&s.name],
                        Utc::now().timestamp_millis() as f64 / 1000.0,
                    );
                }
                shared.set_schedule(&s.name, |st| {
                    st.running = false;
                    st.last = Some(outcome.into());
                    st.last_finished = Some(Utc::now());
                    st.last_error = error;
                });
                flag.store(false, Ordering::Relaxed);
            });
        }
        while let Some(done) = jobs.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "A scheduled job task died.");
            }
        }
        let wake = next
            .iter()
            .flatten()
            .min()
            .map(|t| (*t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_millis(200));
        tokio::time::sleep(wake).await;
    }
    // Let the jobs in progress finish (the pipeline starts no new window).
    while let Some(done) = jobs.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "A scheduled job task died.");
        }
    }
}
