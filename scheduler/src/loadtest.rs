//! `logferry loadtest`: k6's shape, run against logferry's real entry points.
//!
//! A scenario is a TOML file that mirrors k6's `options` object, with k6's
//! option names: `[scenarios.NAME]` with `executor` (`constant-arrival-rate`
//! or `ramping-arrival-rate`, the open model: records arrive at the rate
//! whatever the pipeline does), `rate`, `timeUnit`, `duration`,
//! `startRate`, `startTime`, `stages = [{ duration, target }]` and
//! `tags = { tenant = "…" }`; `[thresholds]` in k6's syntax
//! (`e2e_latency = ["p(95)<30000"]`). A `[logferry]` table sets the record
//! mix (`bad_fraction`, `duplicate_fraction`) and the pipeline's pace
//! during the test (`micro_batch_interval`, `batch_max_age`).
//!
//! The test runs the daemon in this process, on the configuration's lake
//! and warehouse, with a `run` schedule at `micro_batch_interval`, then
//! sends records: on the embedded default as NDJSON objects dropped into
//! the inbox; on the emulators (or real AWS) with PutRecords into the
//! tenants' Kinesis streams, which the daemon follows. Each record's event
//! time is the moment it was sent, so its end-to-end latency is sent →
//! queryable. When the last record is sent it waits until every good record
//! is queryable (or `--drain-timeout` passes: the rest are lost), stops the
//! daemon, reconciles (sent = received = loaded + dead-lettered +
//! duplicates), prints k6's end-of-test summary, and exits 99 when a
//! threshold failed (k6's code).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use logferry_observe::Histo;
use logferry_observe::report::{ThresholdRow, TrendRow};

use crate::cli::{Global, LoadTarget, LoadtestArgs};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The built-in scenarios: the performance guide's k6 scripts.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "client-log-generation",
        include_str!("../../scenarios/client-log-generation.toml"),
    ),
    (
        "multi-tenant-load",
        include_str!("../../scenarios/multi-tenant-load.toml"),
    ),
    (
        "end-to-end-pipeline",
        include_str!("../../scenarios/end-to-end-pipeline.toml"),
    ),
    ("benchmark", include_str!("../../scenarios/benchmark.toml")),
    (
        "benchmark-emulators",
        include_str!("../../scenarios/benchmark-emulators.toml"),
    ),
];

/// One `{ duration, target }` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// k6 duration (`30s`, `5m`, `1h`).
    pub duration: String,
    /// Target rate at the stage's end (per timeUnit).
    pub target: f64,
}

/// `[scenarios.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScenarioConfig {
    /// `constant-arrival-rate` or `ramping-arrival-rate`.
    pub executor: String,
    /// Records per timeUnit (constant-arrival-rate).
    pub rate: Option<f64>,
    /// The rate's unit (default `1s`).
    pub time_unit: Option<String>,
    /// How long (constant-arrival-rate).
    pub duration: Option<String>,
    /// Rate at the start (ramping-arrival-rate).
    pub start_rate: Option<f64>,
    /// Stages (ramping-arrival-rate).
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Delay before the scenario starts.
    pub start_time: Option<String>,
    /// `tenant` names the tenant whose records it sends.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// k6 virtual-user options, accepted for compatibility (the open model
    /// needs none here: records are sent, not requested).
    #[serde(rename = "preAllocatedVUs")]
    pub pre_allocated_vus: Option<u64>,
    /// See `preAllocatedVUs`.
    #[serde(rename = "maxVUs")]
    pub max_vus: Option<u64>,
}

/// `[logferry]`: the record mix and the pipeline's pace during the test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    /// Share of records that are bad (malformed JSON, a missing field, an
    /// event time past forward.max_age, an unknown stream), each refused
    /// with its reason.
    pub bad_fraction: f64,
    /// Share of exact redeliveries of a record already sent (the embedded
    /// target only: through Kinesis, a record put again is a new record).
    pub duplicate_fraction: f64,
    /// The `run` schedule during the test.
    pub micro_batch_interval: String,
    /// forward.batch_max_age during the test (Kinesis: how long a buffer
    /// waits before it lands).
    pub batch_max_age: String,
    /// Bytes of each record's message.
    pub message_bytes: usize,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            bad_fraction: 0.0,
            duplicate_fraction: 0.0,
            micro_batch_interval: "1s".into(),
            batch_max_age: "1s".into(),
            message_bytes: 120,
        }
    }
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The scenarios, by name.
    pub scenarios: BTreeMap<String, ScenarioConfig>,
    /// Metric → threshold expressions.
    #[serde(default)]
    pub thresholds: BTreeMap<String, Vec<String>>,
    /// Record mix and pace.
    #[serde(default)]
    pub logferry: Mix,
}

/// A scenario's arrival rate over time.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Seconds from the test's start to the scenario's.
    pub start_s: f64,
    /// (length s, rate at start /s, rate at end /s).
    pub segments: Vec<(f64, f64, f64)>,
}

impl Plan {
    /// Length in seconds.
    pub fn length_s(&self) -> f64 {
        self.start_s + self.segments.iter().map(|s| s.0).sum::<f64>()
    }

    /// Records due from the test's start to `t` seconds (the integral of
    /// the rate).
    pub fn due(&self, t: f64) -> f64 {
        let mut at = self.start_s;
        let mut n = 0.0;
        for (len, a, b) in &self.segments {
            if t <= at {
                break;
            }
            let dt = (t - at).min(*len);
            let r_end = a + (b - a) * dt / len.max(1e-9);
            n += (a + r_end) / 2.0 * dt;
            at += len;
        }
        n
    }

    /// The rate at `t` seconds, per second.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut at = self.start_s;
        for (len, a, b) in &self.segments {
            if t < at + len && t >= at {
                return a + (b - a) * (t - at) / len.max(1e-9);
            }
            at += len;
        }
        0.0
    }
}

fn secs(what: &str, s: &str) -> Result<f64> {
    Ok(logferry_core::config::parse_duration(what, s)?.as_secs_f64())
}

impl ScenarioFile {
    /// Reads a file, or a built-in scenario by name.
    pub fn load(name_or_path: &str) -> Result<Self> {
        let text = match BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            Some((_, t)) => (*t).to_string(),
            None => std::fs::read_to_string(name_or_path).map_err(|e| {
                Error::Config(format!(
                    "scenario {name_or_path}: {e} (built-in scenarios: {})",
                    BUILT_IN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        toml::from_str(&text).map_err(|e| Error::Config(format!("scenario {name_or_path}: {e}")))
    }

    /// The arrival plans, durations scaled by `scale`.
    pub fn plans(&self, scale: f64) -> Result<Vec<Plan>> {
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(Error::Config(format!(
                "--time-scale {scale} must be positive"
            )));
        }
        let mut out = Vec::new();
        for (name, s) in &self.scenarios {
            let what = format!("scenarios.{name}");
            let unit = secs(
                &format!("{what}.timeUnit"),
                s.time_unit.as_deref().unwrap_or("1s"),
            )?;
            let per_s = |r: f64| r / unit.max(1e-9);
            let segments = match s.executor.as_str() {
                "constant-arrival-rate" => {
                    let rate = s.rate.ok_or_else(|| {
                        Error::Config(format!("{what}: constant-arrival-rate needs rate"))
                    })?;
                    let d = s.duration.as_deref().ok_or_else(|| {
                        Error::Config(format!("{what}: constant-arrival-rate needs duration"))
                    })?;
                    vec![(secs(&what, d)? * scale, per_s(rate), per_s(rate))]
                }
                "ramping-arrival-rate" => {
                    if s.stages.is_empty() {
                        return Err(Error::Config(format!(
                            "{what}: ramping-arrival-rate needs stages"
                        )));
                    }
                    let mut from = per_s(s.start_rate.unwrap_or(0.0));
                    let mut segs = Vec::new();
                    for st in &s.stages {
                        let to = per_s(st.target);
                        segs.push((secs(&what, &st.duration)? * scale, from, to));
                        from = to;
                    }
                    segs
                }
                other => {
                    return Err(Error::Config(format!(
                        "{what}: executor {other:?} is not supported (constant-arrival-rate, ramping-arrival-rate: the open model)"
                    )));
                }
            };
            let tenant = s.tags.get("tenant").cloned().ok_or_else(|| {
                Error::Config(format!("{what}: tags.tenant names the tenant it sends for"))
            })?;
            let start_s = match &s.start_time {
                Some(t) => secs(&format!("{what}.startTime"), t)? * scale,
                None => 0.0,
            };
            out.push(Plan {
                name: name.clone(),
                tenant,
                start_s,
                segments,
            });
        }
        if out.is_empty() {
            return Err(Error::Config("the scenario file has no [scenarios]".into()));
        }
        Ok(out)
    }
}

/// A parsed k6 threshold: `p(95)<30000`, `avg<=200`, `rate<0.01`,
/// `count==0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The aggregation: `p(95)`, `avg`, `min`, `med`, `max`, `rate`,
    /// `count`.
    pub agg: String,
    /// `<`, `<=`, `>`, `>=`, `==`, `!=`.
    pub op: String,
    /// The bound.
    pub value: f64,
}

impl Threshold {
    /// Parses an expression.
    pub fn parse(expr: &str) -> Result<Self> {
        let e: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        let at = e
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| Error::Config(format!("threshold {expr:?}: no comparison")))?;
        let (agg, rest) = e.split_at(at);
        let op_len = if rest.get(1..2) == Some("=") { 2 } else { 1 };
        let (op, v) = rest.split_at(op_len);
        let ok_agg = matches!(agg, "avg" | "min" | "med" | "max" | "rate" | "count")
            || (agg.starts_with("p(")
                && agg.ends_with(')')
                && agg[2..agg.len() - 1].parse::<f64>().is_ok());
        if !ok_agg || !matches!(op, "<" | "<=" | ">" | ">=" | "==" | "!=") {
            return Err(Error::Config(format!(
                "threshold {expr:?} is not k6 syntax"
            )));
        }
        let value = v
            .parse()
            .map_err(|_| Error::Config(format!("threshold {expr:?}: {v:?} is not a number")))?;
        Ok(Threshold {
            agg: agg.into(),
            op: op.into(),
            value,
        })
    }

    /// True when `x` satisfies it.
    pub fn holds(&self, x: f64) -> bool {
        match self.op.as_str() {
            "<" => x < self.value,
            "<=" => x <= self.value,
            ">" => x > self.value,
            ">=" => x >= self.value,
            "==" => x == self.value,
            _ => x != self.value,
        }
    }
}

/// A k6 metric's values, for thresholds and the summary.
#[derive(Debug, Clone)]
enum Measure {
    Trend(Histo),
    Rate { hits: u64, total: u64 },
    Counter { count: u64, per_s: f64 },
}

impl Measure {
    fn value(&self, agg: &str) -> Option<f64> {
        match (self, agg) {
            (Measure::Trend(h), "avg") => h.mean(),
            (Measure::Trend(h), "min") => (h.count > 0).then_some(h.min_ms),
            (Measure::Trend(h), "max") => (h.count > 0).then_some(h.max_ms),
            (Measure::Trend(h), "med") => h.quantile(0.5),
            (Measure::Trend(h), p) if p.starts_with("p(") => {
                let q: f64 = p[2..p.len() - 1].parse().ok()?;
                h.quantile(q / 100.0)
            }
            (Measure::Rate { hits, total }, "rate") => Some(if *total == 0 {
                0.0
            } else {
                *hits as f64 / *total as f64
            }),
            (Measure::Counter { count, .. }, "count") => Some(*count as f64),
            (Measure::Counter { per_s, .. }, "rate") => Some(*per_s),
            _ => None,
        }
    }
}

/// What a load test measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadtestReport {
    /// Scenario file or built-in name.
    pub scenario: String,
    /// `embedded` or `emulators`.
    pub target: String,
    /// The time scale.
    pub time_scale: f64,
    /// Seconds spent sending.
    pub send_s: f64,
    /// Seconds from the first record sent to the last one queryable.
    pub duration_s: f64,
    /// Records sent: good, bad, redeliveries.
    pub sent: u64,
    /// Good records sent.
    pub sent_good: u64,
    /// Bad records sent.
    pub sent_bad: u64,
    /// Redeliveries sent.
    pub sent_duplicates: u64,
    /// Records logferry received.
    pub received: u64,
    /// Records made queryable.
    pub loaded: u64,
    /// Records dead-lettered (with a reason).
    pub dead_lettered: u64,
    /// Redeliveries dropped by dedupe.
    pub duplicates: u64,
    /// Good records not queryable by the drain timeout.
    pub lost: u64,
    /// sent = received = loaded + dead_lettered + duplicates.
    pub reconciled: bool,
    /// Records per second sent, over the sending time.
    pub sent_per_s: f64,
    /// Records per second made queryable, first sent to last queryable.
    pub loaded_per_s: f64,
    /// The trends (ms).
    pub trends: Vec<TrendRow>,
    /// The thresholds.
    pub thresholds: Vec<ThresholdRow>,
    /// PutRecords: (ok, attempted, throttled) records.
    pub put_records: Option<(u64, u64, u64)>,
    /// CPU seconds of this process (the daemon and the sender).
    pub cpu_s: f64,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: u64,
}

impl LoadtestReport {
    /// True when every threshold held.
    pub fn passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.ok)
    }
}

/// Seeded generator of the test's records.
struct Gen {
    rng: fastrand::Rng,
    run: String,
    seq: u64,
    mix: Mix,
    sent_lines: Vec<String>,
    good: u64,
    bad: u64,
    dups: u64,
    filler: String,
    duplicates_allowed: bool,
}

const LEVELS: [&str; 5] = ["INFO", "INFO", "INFO", "WARN", "ERROR"];

impl Gen {
    fn line(&mut self, tenant_stream: &str) -> String {
        let now = Utc::now();
        self.seq += 1;
        let roll = self.rng.f64();
        // Redeliveries only where they are redeliveries (not through
        // Kinesis, where a record put again is a new one).
        let dup_share = if self.duplicates_allowed {
            self.mix.duplicate_fraction
        } else {
            0.0
        };
        if roll < dup_share && !self.sent_lines.is_empty() {
            self.dups += 1;
            let i = self.rng.usize(..self.sent_lines.len());
            return self.sent_lines[i].clone();
        }
        if roll < dup_share + self.mix.bad_fraction {
            self.bad += 1;
            return match self.seq % 4 {
                0 => format!("{{\"timestamp\": \"{}\", \"message\": ", now.to_rfc3339()),
                1 => serde_json::json!({"timestamp": now.to_rfc3339(), "level": "INFO", "service": "svc", "stream": tenant_stream}).to_string(),
                2 => serde_json::json!({"timestamp": (now - chrono::Duration::days(400)).to_rfc3339(), "level": "INFO", "service": "svc", "message": "old", "stream": tenant_stream}).to_string(),
                _ => serde_json::json!({"timestamp": now.to_rfc3339(), "level": "INFO", "service": "svc", "message": "stray", "stream": "no-such-stream"}).to_string(),
            };
        }
        self.good += 1;
        let line = serde_json::json!({
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": LEVELS[self.rng.usize(..LEVELS.len())],
            "service": format!("svc-{}", self.rng.u8(..8)),
            "message": format!("GET /api/items/{} 200 {}", self.rng.u32(..100_000), &self.filler),
            "request_id": format!("lt-{}-{}", self.run, self.seq),
            "stream": tenant_stream,
        })
        .to_string();
        if self.duplicates_allowed && self.sent_lines.len() < 10_000 {
            self.sent_lines.push(line.clone());
        }
        line
    }
}

/// Runs a load test.
pub async fn main(g: &Global, a: &LoadtestArgs, quiet: bool) -> Result<ExitCode> {
    let file = ScenarioFile::load(&a.scenario)?;
    let plans = file.plans(a.time_scale)?;
    let mut thresholds = Vec::new();
    for (metric, exprs) in &file.thresholds {
        for e in exprs {
            thresholds.push((metric.clone(), e.clone(), Threshold::parse(e)?));
        }
    }
    let settings = settings_for(g, &plans, &file.logferry, a.target)?;
    let ctx = Ctx::from_settings(Arc::new(settings)).await?;
    let stream_of: BTreeMap<String, String> = plans
        .iter()
        .map(|p| {
            let t = ctx
                .settings
                .tenants
                .all()
                .iter()
                .find(|t| t.id.to_string() == p.tenant);
            let s = t
                .and_then(|t| t.streams.first().cloned())
                .unwrap_or_else(|| p.tenant.clone());
            (p.tenant.clone(), s)
        })
        .collect();
    let sender = match a.target {
        LoadTarget::Embedded => Sender::Inbox(logferry_core::storage::Location::open_with(
            &ctx.settings.daemon.inbox_url,
            &ctx.settings.aws,
        )?),
        LoadTarget::Emulators => {
            let client = logferry_forward::kinesis::client(&ctx.settings.aws).await;
            for s in stream_of.values() {
                ensure_stream(&client, s).await?;
            }
            Sender::Kinesis(client)
        }
    };
    let drain = secs("--drain-timeout", &a.drain_timeout)?;

    // The daemon, in this process.
    let metrics = Arc::new(Metrics::new(Duration::from_secs(86_400), ctx.settings.kpi));
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = {
        let (ctx, stop, metrics) = (ctx.clone(), stop.clone(), metrics.clone());
        tokio::spawn(async move {
            crate::daemon::run(
                ctx,
                crate::daemon::DaemonOptions {
                    listen: "127.0.0.1:0".parse().expect("an address"),
                    metrics: Some(metrics),
                },
                stop,
                false,
            )
            .await
        })
    };
    let started = Utc::now();
    let t0 = Instant::now();
    let length = plans.iter().map(Plan::length_s).fold(0.0, f64::max);
    let total_due: f64 = plans.iter().map(|p| p.due(length)).sum();
    if !quiet {
        eprintln!(
            "scenarios: {} ({}), {:.0} s, about {:.0} records, target {}",
            plans.len(),
            plans
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            length,
            total_due,
            match a.target {
                LoadTarget::Embedded => "embedded",
                LoadTarget::Emulators => "emulators",
            }
        );
    }
    let mut generator = Gen {
        rng: fastrand::Rng::with_seed(7),
        run: format!("{:x}", started.timestamp_micros()),
        seq: 0,
        mix: file.logferry.clone(),
        sent_lines: Vec::new(),
        good: 0,
        bad: 0,
        dups: 0,
        filler: "x".repeat(file.logferry.message_bytes.saturating_sub(24)),
        duplicates_allowed: a.target == LoadTarget::Embedded,
    };
    let mut sent_by: Vec<u64> = vec![0; plans.len()];
    let mut put = PutCounts::default();
    let tick = Duration::from_millis(250);
    let mut seq = 0u64;
    let mut last_print = Instant::now();
    loop {
        let t = t0.elapsed().as_secs_f64();
        let done = t >= length;
        let t = t.min(length);
        let mut batch: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, p) in plans.iter().enumerate() {
            let due = p.due(t).floor() as u64;
            let n = due.saturating_sub(sent_by[i]);
            sent_by[i] = due;
            let stream = &stream_of[&p.tenant];
            let lines = batch.entry(stream.clone()).or_default();
            for _ in 0..n {
                lines.push(generator.line(stream));
            }
        }
        seq += 1;
        sender
            .send(&generator.run, seq, batch, &mut put, &metrics)
            .await?;
        if !quiet && last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            let rate: f64 = plans.iter().map(|p| p.rate_at(t)).sum();
            eprintln!(
                "  {t:>6.1} s  sending {rate:>8.0} records/s  sent {:>9}  queryable {:>9}",
                generator.good + generator.bad + generator.dups,
                metrics.tally("load", "loaded")
            );
        }
        if done {
            break;
        }
        let next = tick.saturating_sub(Duration::from_secs_f64(
            (t0.elapsed().as_secs_f64() - t).max(0.0),
        ));
        tokio::time::sleep(next.max(Duration::from_millis(10))).await;
    }
    let send_s = t0.elapsed().as_secs_f64();
    // Drain: every good record queryable, or the timeout.
    let deadline = Instant::now() + Duration::from_secs_f64(drain);
    while metrics.tally("load", "loaded") < generator.good && Instant::now() < deadline {
        if daemon.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let duration_s = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    match daemon.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.context("the load test's daemon")),
        Err(e) => return Err(Error::Config(format!("the load test's daemon died: {e}"))),
    }
    if a.target == LoadTarget::Emulators {
        let count = crate::measure::PutRecordsCount {
            at: Utc::now(),
            ok: put.ok,
            attempted: put.attempted,
            throttled: put.throttled,
        };
        let name = format!(
            "runs/loadtest/{}-{}.json",
            count.at.format("%Y%m%dT%H%M%SZ"),
            generator.run
        );
        ctx.ledger().put_once(&name, &count).await?;
    }
    let sent = generator.good + generator.bad + generator.dups;
    let received = metrics.tally("forward", "received");
    let loaded = metrics.tally("load", "loaded");
    let dead_lettered =
        metrics.tally("forward", "dead_lettered") + metrics.tally("aggregate", "dead_lettered");
    let duplicates = metrics.tally("aggregate", "duplicate");
    let lost = generator.good.saturating_sub(loaded);
    let m = crate::measure::measured(&ctx, started).await?;
    let e2e = m.e2e();
    let ingest = m.ingest_latency();
    let mut measures: BTreeMap<&str, Measure> = BTreeMap::new();
    measures.insert("e2e_latency", Measure::Trend(e2e.clone()));
    measures.insert("ingest_latency", Measure::Trend(ingest.clone()));
    measures.insert(
        "dlq_rate",
        Measure::Rate {
            hits: dead_lettered,
            total: received,
        },
    );
    measures.insert(
        "lost_rate",
        Measure::Rate {
            hits: lost,
            total: generator.good,
        },
    );
    measures.insert(
        "records_sent",
        Measure::Counter {
            count: sent,
            per_s: sent as f64 / send_s.max(1e-9),
        },
    );
    measures.insert(
        "records_loaded",
        Measure::Counter {
            count: loaded,
            per_s: loaded as f64 / duration_s.max(1e-9),
        },
    );
    measures.insert(
        "records_lost",
        Measure::Counter {
            count: lost,
            per_s: lost as f64 / duration_s.max(1e-9),
        },
    );
    if put.attempted > 0 {
        measures.insert(
            "put_records_success",
            Measure::Rate {
                hits: put.ok,
                total: put.attempted,
            },
        );
    }
    let mut rows = Vec::new();
    for (metric, expr, th) in &thresholds {
        let value = measures.get(metric.as_str()).and_then(|m| m.value(&th.agg));
        rows.push(ThresholdRow {
            metric: metric.clone(),
            expression: expr.clone(),
            value: match value {
                Some(v) => format!("{}={}", th.agg, trim(v)),
                None => format!("{} not measured", th.agg),
            },
            ok: value.is_some_and(|v| th.holds(v)),
        });
    }
    let trend = |name: &str, h: &Histo| TrendRow {
        name: name.into(),
        unit: "ms".into(),
        avg: h.mean().unwrap_or_default(),
        min: if h.count > 0 { h.min_ms } else { 0.0 },
        med: h.quantile(0.5).unwrap_or_default(),
        max: h.max_ms,
        p90: h.quantile(0.9).unwrap_or_default(),
        p95: h.quantile(0.95).unwrap_or_default(),
    };
    let report = LoadtestReport {
        scenario: a.scenario.clone(),
        target: match a.target {
            LoadTarget::Embedded => "embedded".into(),
            LoadTarget::Emulators => "emulators".into(),
        },
        time_scale: a.time_scale,
        send_s,
        duration_s,
        sent,
        sent_good: generator.good,
        sent_bad: generator.bad,
        sent_duplicates: generator.dups,
        received,
        loaded,
        dead_lettered,
        duplicates,
        lost,
        reconciled: sent == received && received == loaded + dead_lettered + duplicates,
        sent_per_s: sent as f64 / send_s.max(1e-9),
        loaded_per_s: loaded as f64 / duration_s.max(1e-9),
        trends: vec![trend("e2e_latency", &e2e), trend("ingest_latency", &ingest)],
        thresholds: rows,
        put_records: (put.attempted > 0).then_some((put.ok, put.attempted, put.throttled)),
        cpu_s: cpu_seconds(),
        peak_rss_bytes: peak_rss(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    if let Some(path) = &a.report {
        let cost = crate::measure::cost(&ctx, &m).await?;
        let kpis = logferry_observe::kpi::evaluate(&m.kpi_inputs(&cost), &ctx.settings.kpi);
        let mut data = m.report_data(&kpis, &cost, &ctx.settings.kpi);
        data.title = format!("logferry load test: {}", a.scenario);
        data.thresholds = report.thresholds.clone();
        data.trends = report.trends.clone();
        data.summary.splice(
            0..0,
            [
                ("Records sent".to_string(), report.sent.to_string()),
                ("Records lost".to_string(), report.lost.to_string()),
                ("Reconciled".to_string(), report.reconciled.to_string()),
                (
                    "Sent per second".to_string(),
                    format!("{:.0}", report.sent_per_s),
                ),
                ("CPU seconds".to_string(), format!("{:.1}", report.cpu_s)),
                (
                    "Peak RSS".to_string(),
                    format!("{:.0} MiB", report.peak_rss_bytes as f64 / 1048576.0),
                ),
            ],
        );
        std::fs::write(path, logferry_observe::report::render_html(&data))
            .map_err(|e| Error::io(path.display(), e))?;
        if !quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(if report.passed() && report.reconciled {
        ExitCode::SUCCESS
    } else if !report.passed() {
        ExitCode::from(99)
    } else {
        ExitCode::FAILURE
    })
}

fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else {
        format!("{v:.0}ms")
    }
}

/// k6's end-of-test summary: thresholds first, then every metric.
pub fn print_summary(r: &LoadtestReport) {
    println!();
    println!("  █ THRESHOLDS");
    println!();
    let mut last = "";
    for t in &r.thresholds {
        if t.metric != last {
            println!("    {}", t.metric);
            last = &t.metric;
        }
        println!(
            "    {} '{}' {}",
            if t.ok { "✓" } else { "✗" },
            t.expression,
            t.value
        );
    }
    println!();
    println!("  █ TOTAL RESULTS");
    println!();
    let dots = |name: &str| format!("{name}{}", ".".repeat(34usize.saturating_sub(name.len())));
    for t in &r.trends {
        println!(
            "    {}: avg={} min={} med={} max={} p(90)={} p(95)={}",
            dots(&t.name),
            ms(t.avg),
            ms(t.min),
            ms(t.med),
            ms(t.max),
            ms(t.p90),
            ms(t.p95)
        );
    }
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            a as f64 * 100.0 / b as f64
        }
    };
    println!(
        "    {}: {:.4}% {} out of {}",
        dots("dlq_rate"),
        pct(r.dead_lettered, r.received),
        r.dead_lettered,
        r.received
    );
    println!(
        "    {}: {:.4}% {} out of {}",
        dots("lost_rate"),
        pct(r.lost, r.sent_good),
        r.lost,
        r.sent_good
    );
    if let Some((ok, n, throttled)) = r.put_records {
        println!(
            "    {}: {:.4}% {} out of {} ({} throttled, retried)",
            dots("put_records_success"),
            pct(ok, n),
            ok,
            n,
            throttled
        );
    }
    println!(
        "    {}: {} {:.1}/s (good {}, bad {}, redeliveries {})",
        dots("records_sent"),
        r.sent,
        r.sent_per_s,
        r.sent_good,
        r.sent_bad,
        r.sent_duplicates
    );
    println!(
        "    {}: {} {:.1}/s",
        dots("records_loaded"),
        r.loaded,
        r.loaded_per_s
    );
    println!(
        "    {}: received {} = loaded {} + dead-lettered {} + duplicates {}: {}",
        dots("reconcile"),
        r.received,
        r.loaded,
        r.dead_lettered,
        r.duplicates,
        if r.reconciled {
            "balanced"
        } else {
            "NOT BALANCED"
        }
    );
    println!(
        "    {}: {:.1} s CPU, peak RSS {:.0} MiB",
        dots("resources"),
        r.cpu_s,
        r.peak_rss_bytes as f64 / 1048576.0
    );
    println!();
    println!(
        "  sent for {:.1} s, queryable after {:.1} s{}",
        r.send_s,
        r.duration_s,
        if r.passed() {
            ""
        } else {
            "; some thresholds have failed"
        }
    );
}

#[derive(Debug, Default)]
struct PutCounts {
    ok: u64,
    attempted: u64,
    throttled: u64,
}

enum Sender {
    Inbox(logferry_core::storage::Location),
    Kinesis(aws_sdk_kinesis::Client),
}

impl Sender {
    async fn send(
        &self,
        run: &str,
        seq: u64,
        batch: BTreeMap<String, Vec<String>>,
        put: &mut PutCounts,
        metrics: &Metrics,
    ) -> Result<()> {
        match self {
            Sender::Inbox(loc) => {
                let mut body = String::new();
                for lines in batch.values() {
                    for l in lines {
                        body.push_str(l);
                        body.push('\n');
                    }
                }
                if body.is_empty() {
                    return Ok(());
                }
                let path =
                    object_store::path::Path::from(format!("loadtest-{run}-{seq:07}.ndjson"));
                loc.store
                    .put_opts(
                        &path,
                        bytes::Bytes::from(body).into(),
                        object_store::PutOptions::default(),
                    )
                    .await
                    .map_err(|e| logferry_core::Error::storage(&path, e))?;
                Ok(())
            }
            Sender::Kinesis(client) => {
                let calls =
                    batch
                        .into_iter()
                        .filter(|(_, l)| !l.is_empty())
                        .flat_map(|(stream, lines)| {
                            lines
                                .chunks(500)
                                .map(|c| (stream.clone(), c.to_vec()))
                                .collect::<Vec<_>>()
                        });
                let results = futures::future::join_all(
                    calls.map(|(stream, lines)| put_records(client, stream, lines)),
                )
                .await;
                for r in results {
                    let (stream, ok, attempted, throttled, took) = r?;
                    put.ok += ok;
                    put.attempted += attempted;
                    put.throttled += throttled;
                    metrics.inc("put_records", &[&stream, "ok"], ok);
                    metrics.inc("put_records", &[&stream, "throttled"], throttled);
                    metrics.inc("put_records", &[&stream, "failed"], attempted - ok);
                    metrics.observe("put_records_duration", &[&stream], took);
                    metrics.operation("put_records", ok, attempted - ok);
                }
                Ok(())
            }
        }
    }
}

/// PutRecords of `lines`, retrying exactly the records that failed, with
/// backoff; returns (stream, ok, attempted, throttled, seconds taken).
async fn put_records(
    client: &aws_sdk_kinesis::Client,
    stream: String,
    lines: Vec<String>,
) -> Result<(String, u64, u64, u64, f64)> {
    let t0 = Instant::now();
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let attempted = lines.len() as u64;
    let mut pending: Vec<(usize, String)> = lines.into_iter().enumerate().collect();
    let mut throttled = 0;
    for attempt in 0..8u32 {
        if pending.is_empty() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
        }
        let entries: Vec<PutRecordsRequestEntry> = pending
            .iter()
            .map(|(i, l)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(l.as_bytes()))
                    .partition_key(format!("k{i}"))
                    .build()
                    .map_err(|e| Error::Config(format!("PutRecords entry: {e}")))
            })
            .collect::<Result<_>>()?;
        let out = match client
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(%stream, error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), "PutRecords failed; retrying.");
                continue;
            }
        };
        let mut still = Vec::new();
        for (entry, rec) in pending.into_iter().zip(out.records()) {
            if let Some(code) = rec.error_code() {
                if code.contains("ProvisionedThroughputExceeded") {
                    throttled += 1;
                }
                still.push(entry);
            }
        }
        pending = still;
    }
    let ok = attempted - pending.len() as u64;
    Ok((stream, ok, attempted, throttled, t0.elapsed().as_secs_f64()))
}

async fn ensure_stream(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<()> {
    if client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .is_ok()
    {
        return Ok(());
    }
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(1)
        .send()
        .await
        .map_err(|e| {
            Error::Config(format!(
                "creating the Kinesis stream {stream}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            ))
        })?;
    for _ in 0..100 {
        let s = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await;
        if let Ok(s) = s
            && s.stream_description_summary()
                .is_some_and(|d| d.stream_status().as_str() == "ACTIVE")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Config(format!(
        "the Kinesis stream {stream} did not become active"
    )))
}

/// The settings of the test: the configuration's, with the scenarios'
/// tenants added (and kept in `<data-dir>/logferry.toml` when the data dir
/// has no configuration of its own), and the pace of the test.
fn settings_for(
    g: &Global,
    plans: &[Plan],
    mix: &Mix,
    target: LoadTarget,
) -> Result<logferry_core::config::Settings> {
    use logferry_core::config::{Config, TenantConfig};
    let file = crate::context::config_file(g);
    let (mut config, _) = Config::load(file.as_deref(), std::env::vars())?;
    let mut added = Vec::new();
    for p in plans {
        if !config.tenants.iter().any(|t| t.id == p.tenant) && !added.contains(&p.tenant) {
            added.push(p.tenant.clone());
            config.tenants.push(TenantConfig {
                id: p.tenant.clone(),
                streams: vec![p.tenant.clone()],
                log_groups: Vec::new(),
                accounts: Vec::new(),
            });
        }
    }
    if !added.is_empty() {
        let own = g.data_dir.join(logferry_core::config::DATA_DIR_CONFIG);
        if g.config.is_none() {
            std::fs::create_dir_all(&g.data_dir).map_err(|e| Error::io(g.data_dir.display(), e))?;
            let mut text = std::fs::read_to_string(&own).unwrap_or_else(|_| {
                "# Tenants logferry loadtest set up for its scenarios.\n".to_string()
            });
            for t in &added {
                text.push_str(&format!(
                    "\n[[tenant]]\nid = \"{t}\"\nstreams = [\"{t}\"]\n"
                ));
            }
            std::fs::write(&own, text).map_err(|e| Error::io(own.display(), e))?;
            tracing::info!(tenants = ?added, file = %own.display(), "Set up the scenarios' tenants.");
        } else {
            tracing::warn!(tenants = ?added, "The scenarios' tenants are not in the configuration: added for this test only.");
        }
    }
    let mut s = config.validate(&g.data_dir)?;
    s.schedules = logferry_core::schedule::parse_all(&[logferry_core::schedule::ScheduleConfig {
        name: "loadtest-run".into(),
        job: logferry_core::schedule::Job::Run,
        expression: rate_expression(&mix.micro_batch_interval)?,
        timezone: "UTC".into(),
    }])?;
    s.daemon.inbox_interval = Duration::from_millis(200);
    s.daemon.kinesis = target == LoadTarget::Emulators;
    s.forward.batch_max_age =
        logferry_core::config::parse_duration("logferry.batch_max_age", &mix.batch_max_age)?;
    s.kinesis.idle_interval = s.kinesis.idle_interval.min(Duration::from_millis(200));
    Ok(s)
}

/// `1s` → `rate(1 second)`, `30s` → `rate(30 seconds)`.
fn rate_expression(d: &str) -> Result<String> {
    let s = logferry_core::config::parse_duration("logferry.micro_batch_interval", d)?.as_secs();
    if s == 0 {
        return Err(Error::Config(
            "logferry.micro_batch_interval must be at least 1s".into(),
        ));
    }
    Ok(if s == 1 {
        "rate(1 second)".into()
    } else {
        format!("rate({s} seconds)")
    })
}

/// CPU seconds this process used (user and system).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) at the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (11 and 12 after the state).
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process, bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_as_k6_writes_them() {
        let t = Threshold::parse("p(95)<30000").expect("parses");
        assert_eq!(
            (t.agg.as_str(), t.op.as_str(), t.value),
            ("p(95)", "<", 30000.0)
        );
        assert!(t.holds(29_999.0) && !t.holds(30_000.0));
        assert_eq!(
            Threshold::parse("rate <= 0.01").map(|t| t.op).ok(),
            Some("<=".into())
        );
        assert!(Threshold::parse("p95<3").is_err());
        assert!(Threshold::parse("avg<x").is_err());
    }

    #[test]
    fn built_in_scenarios_load_and_ramp() {
        for (name, _) in BUILT_IN {
            let f = ScenarioFile::load(name).expect("loads");
            assert!(!f.plans(1.0).expect("plans").is_empty(), "{name}");
        }
        let f = ScenarioFile::load("client-log-generation").expect("loads");
        let p = &f.plans(1.0).expect("plans")[0];
        // 0 → 100 over 2m, → 500 over 5m, → 1000 over 5m.
        assert_eq!(p.length_s(), 720.0);
        assert!((p.due(120.0) - 6000.0).abs() < 1e-6);
        assert!((p.due(720.0) - (6000.0 + 90_000.0 + 225_000.0)).abs() < 1e-6);
        assert!((p.rate_at(420.0) - 500.0).abs() < 1e-6);
        let scaled = &f.plans(0.01).expect("plans")[0];
        assert!((scaled.length_s() - 7.2).abs() < 1e-9);
        let m = ScenarioFile::load("multi-tenant-load").expect("loads");
        let tenants: Vec<String> = m
            .plans(1.0)
            .expect("plans")
            .into_iter()
            .map(|p| p.tenant)
            .collect();
        assert_eq!(tenants, ["tenant-a", "tenant-b", "tenant-c"]);
    }
}
