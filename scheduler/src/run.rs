//! `logferry run`: every window with pending landing data (or one window) is
//! aggregated, exported and loaded, in window order. A window leaves the
//! pending set only once it is loaded, so a run that dies part-way is
//! completed by the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use logferry_aggregate::{Aggregator, Outcome, SqlProgram};
use logferry_core::ids::IdHasher;
use logferry_core::ledger::Holder;
use logferry_core::partition::{Window, parse_partition};
use logferry_core::records::WindowCounts;
use logferry_export::{ExportOutcome, Exporter, LoadState, PartitionId, Partitioning, SealRecord};

use crate::context::Ctx;

/// What happened to one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowReport {
    /// `YYYY-MM-DDTHH`.
    pub window: String,
    /// `done`, `up_to_date` or `no_data`.
    pub aggregate: String,
    /// `loaded`, `appended`, `awaiting_seal`, `up_to_date` or `skipped`.
    pub export: String,
    /// Aggregate run id.
    pub run_id: Option<String>,
    /// Counts by tenant (of the committed run).
    pub counts: BTreeMap<String, WindowCounts>,
    /// Rows in the warehouse's log_records partition.
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
    /// Event time of the window's 95th-percentile latency to queryable, ms.
    pub e2e_latency_p95_ms: Option<i64>,
    /// Median latency from event time to queryable, ms.
    pub e2e_latency_p50_ms: Option<i64>,
}

impl WindowReport {
    /// A window in these stage states, nothing done yet.
    fn new(w: Window, aggregate: &str, export: &str) -> Self {
        WindowReport {
            window: w.to_string(),
            aggregate: aggregate.into(),
            export: export.into(),
            run_id: None,
            counts: BTreeMap::new(),
            rows_loaded: 0,
            load_jobs: 0,
            bytes_sent: 0,
            compression_ratio: 0.0,
            curated_bytes: 0,
            aggregate_ms: 0,
            export_ms: 0,
            e2e_latency_p95_ms: None,
            e2e_latency_p50_ms: None,
        }
    }
}

/// What one `run` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Report id.
    pub run: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Wall time.
    pub duration_ms: u64,
    /// Per window.
    pub windows: Vec<WindowReport>,
    /// Day partitions sealed (daily partitioning).
    pub seals: Vec<SealRecord>,
}

impl RunReport {
    /// Windows where something was done.
    pub fn worked(&self) -> usize {
        self.windows
            .iter()
            .filter(|w| {
                w.aggregate == "done"
                    || !matches!(w.export.as_str(), "up_to_date" | "skipped" | "busy")
            })
            .count()
            + self.seals.len()
    }
}

/// What `run` should do.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Only this window (and its day's seal).
    pub window: Option<Window>,
    /// Seal every day with exported windows now, before its lateness
    /// allowance (backfills, tests).
    pub seal: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Wait for windows another run holds, instead of leaving them to it.
    pub wait: bool,
}

/// Takes the lease `key`, waiting for it when `wait`; `None` when another
/// runner holds it and we do not wait.
async fn lease(
    ledger: &logferry_core::ledger::Ledger,
    key: &str,
    holder: &Holder,
    ttl: std::time::Duration,
    wait: bool,
) -> Result<Option<logferry_core::ledger::Lease>> {
    loop {
        if let Some(l) = ledger.try_lease(key, holder, ttl).await? {
            return Ok(Some(l));
        }
        if !wait {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Windows with pending markers.
pub async fn pending_windows(agg: &Aggregator) -> Result<BTreeSet<Window>> {
    let mut out = BTreeSet::new();
    for key in agg.ledger().list("pending").await? {
        if let Some(w) = parse_partition(&object_store::path::Path::from(key.as_str())).window {
            out.insert(w);
        }
    }
    Ok(out)
}

/// Builds the aggregator and exporter of a context.
pub fn stages(ctx: &Ctx) -> Result<(Aggregator, Exporter)> {
    let program = Arc::new(
        SqlProgram::load(ctx.settings.sql_dir.as_deref()).context("loading the SQL program")?,
    );
    let agg = Aggregator::new(ctx.lake.clone(), program, &ctx.settings.parquet)?;
    let exp = Exporter::new(
        ctx.lake.clone(),
        ctx.export.clone(),
        ctx.warehouse.as_dyn(),
        ctx.settings.gcs.parallel_uploads,
    );
    Ok((agg, exp))
}

/// The pipeline's clock: the configured reference time, else the wall clock.
pub fn clock(ctx: &Ctx) -> DateTime<Utc> {
    ctx.settings.forward.reference_time.unwrap_or_else(Utc::now)
}

/// True when a day partition is past its lateness allowance.
pub fn seal_due(ctx: &Ctx, day: &PartitionId, force: bool) -> bool {
    let allowance =
        chrono::Duration::from_std(ctx.settings.seal_after).unwrap_or(chrono::Duration::hours(2));
    force || clock(ctx) >= day.end() + allowance
}

/// Runs the pipeline after forward over the given window, or every pending one.
pub async fn run(ctx: &Ctx, opts: RunOptions) -> Result<RunReport> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let (agg, exp) = stages(ctx)?;
    let partitioning = exp.warehouse().partitioning();
    let windows: Vec<Window> = match opts.window {
        Some(w) => vec![w],
        None => pending_windows(&agg).await?.into_iter().collect(),
    };
    let quiet = opts.quiet;
    let pb = crate::progress::bar(windows.len() as u64, "windows", false, quiet);
    let mut reports = Vec::new();
    let holder = Holder::this_process();
    let ttl = ctx.settings.lease_ttl;
    for w in windows {
        pb.set_message(w.to_string());
        // One runner per window: another run working on it now keeps it.
        let key = format!("leases/windows/{}", w.partition());
        let Some(mut held) = lease(agg.ledger(), &key, &holder, ttl, opts.wait).await? else {
            let by = agg.ledger().lease_holder(&key).await?.unwrap_or_default();
            tracing::warn!(window = %w, holder = %by, "Window is being processed by another run: left to it.");
            reports.push(WindowReport::new(w, "busy", "busy"));
            pb.inc(1);
            continue;
        };
        let at = Instant::now();
        let (state, record) = match agg
            .aggregate(w)
            .await
            .with_context(|| format!("aggregating window {w}"))?
        {
            Outcome::NoData => ("no_data", None),
            Outcome::UpToDate(r) => ("up_to_date", Some(r)),
            Outcome::Done(r) => ("done", Some(r)),
        };
        let aggregate_ms = at.elapsed().as_millis() as u64;
        let mut report = WindowReport {
            aggregate_ms: if state == "done" { aggregate_ms } else { 0 },
            ..WindowReport::new(w, state, "skipped")
        };
        if let Some(rec) = record {
            held.renew().await?;
            let et = Instant::now();
            let due = partitioning == Partitioning::Day
                && seal_due(ctx, &PartitionId::of(w, Partitioning::Day), opts.seal);
            let (estate, erec) = match exp
                .export(w, &rec, due)
                .await
                .with_context(|| format!("exporting window {w}"))?
            {
                ExportOutcome::UpToDate(r) => ("up_to_date", r),
                ExportOutcome::Done(r) => (
                    match r.state {
                        LoadState::Loaded => "loaded",
                        LoadState::Appended => "appended",
                        LoadState::AwaitingSeal => "awaiting_seal",
                    },
                    r,
                ),
            };
            logferry_core::failpoint::hit("run.before_clear_pending");
            agg.clear_pending(w, &rec.inputs).await?;
            report.export = estate.into();
            report.run_id = Some(rec.run_id.clone());
            report.rows_loaded = erec.rows(logferry_core::schema::LOG_RECORDS_TABLE);
            report.load_jobs = erec
                .tables
                .iter()
                .filter(|t| t.job_id.is_some() && !t.already_loaded)
                .count() as u64;
            report.bytes_sent = erec.bytes_sent;
            report.compression_ratio = erec.compression_ratio;
            report.curated_bytes = rec.curated.iter().map(|f| f.bytes).sum();
            report.counts = rec.counts.clone();
            if estate != "up_to_date" {
                report.export_ms = et.elapsed().as_millis() as u64;
            }
            if rec.event_time.count > 0 && erec.loaded_run.as_ref() == Some(&rec.run_id) {
                let loaded = erec.finished_at.timestamp_micros();
                report.e2e_latency_p95_ms = Some((loaded - rec.event_time.p05_us) / 1000);
                report.e2e_latency_p50_ms = Some((loaded - rec.event_time.p50_us) / 1000);
            }
        }
        held.release().await?;
        tracing::info!(window = %w, aggregate = %report.aggregate, export = %report.export, rows = report.rows_loaded, "Window processed.");
        reports.push(report);
        pb.inc(1);
    }
    pb.finish_and_clear();

    // Daily partitions: seal every day past its lateness allowance whose
    // windows changed since its last seal.
    let mut seals = Vec::new();
    if partitioning == Partitioning::Day {
        let exports = exp.all_exports().await?;
        let mut days: Vec<PartitionId> = exports
            .keys()
            .filter_map(|w| Window::parse(w).ok())
            .map(|w| PartitionId::of(w, Partitioning::Day))
            .filter(|d| opts.window.is_none_or(|w| d.contains(w)))
            .collect();
        days.sort();
        days.dedup();
        for day in days.into_iter().filter(|d| seal_due(ctx, d, opts.seal)) {
            let key = format!("leases/days/{}", day.key());
            let Some(held) = lease(agg.ledger(), &key, &holder, ttl, opts.wait).await? else {
                tracing::warn!(%day, "Day is being sealed by another run: left to it.");
                continue;
            };
            // The windows may have changed while we waited for the lease.
            let exports = exp.all_exports().await?;
            if let Some(s) = exp
                .seal(day, &exports)
                .await
                .with_context(|| format!("sealing {day}"))?
            {
                tracing::info!(day = %s.day, windows = s.windows.len(), "Sealed day partition.");
                seals.push(s);
            }
            held.release().await?;
        }
    }
    let report = RunReport {
        run: format!(
            "{}-{}",
            started_at.format("%Y%m%dT%H%M%SZ"),
            &IdHasher::new()
                .part(started_at.to_rfc3339().as_bytes())
                .part(&std::process::id().to_le_bytes())
                .hex()[..8]
        ),
        started_at,
        duration_ms: t0.elapsed().as_millis() as u64,
        windows: reports,
        seals,
    };
    if report.worked() > 0 {
        agg.ledger()
            .put_once(&format!("runs/{}.json", report.run), &report)
            .await?;
    }
    Ok(report)
}

/// Prints a run report for people.
pub fn print(report: &RunReport) {
    if report.windows.is_empty() && report.seals.is_empty() {
        println!("Nothing to do: no window has unprocessed data.");
        return;
    }
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "window", "aggregate", "export", "input", "dups", "rejected", "loaded", "p95 e2e s"
    );
    for w in &report.windows {
        let sum = |f: fn(&WindowCounts) -> u64| w.counts.values().map(f).sum::<u64>();
        println!(
            "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
            w.window,
            w.aggregate,
            w.export,
            sum(|c| c.input),
            sum(|c| c.duplicates),
            sum(|c| c.dead_lettered),
            w.rows_loaded,
            w.e2e_latency_p95_ms
                .map(|ms| format!("{:.1}", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into())
        );
    }
    for s in &report.seals {
        let rows: u64 = s
            .tables
            .iter()
            .filter(|t| t.table == logferry_core::schema::LOG_RECORDS_TABLE)
            .map(|t| t.rows)
            .sum();
        println!(
            "sealed day {}: {} windows, {rows} records, jobs {}",
            s.day,
            s.windows.len(),
            s.tables
                .iter()
                .map(|t| t.job_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let done = report.worked() - report.seals.len();
    let busy = report
        .windows
        .iter()
        .filter(|w| w.aggregate == "busy")
        .count();
    println!(
        "{} window(s) processed, {} up to date, {} left to another run, {} day(s) sealed, in {:.2} s",
        done,
        report.windows.len() - done - busy,
        busy,
        report.seals.len(),
        report.duration_ms as f64 / 1000.0
    );
}
