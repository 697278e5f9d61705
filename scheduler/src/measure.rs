//! What the pipeline measured over a range, read back from the ledger: the
//! window run reports (`runs/<day>/`), the forward reports
//! (`runs/forward/`), the daemon's samples of source lag and memory
//! (`runs/daemon/`) and the load tests' PutRecords counts
//! (`runs/loadtest/`). `logferry kpi`, `logferry cost` and `logferry
//! report` are computed from it; nothing is estimated that was counted.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use logferry_core::ledger::Ledger;
use logferry_forward::{ForwardReport, KinesisReport};
use logferry_observe::Histo;
use logferry_observe::cost::{CostReport, Usage};
use logferry_observe::kpi::{KpiInputs, KpiResult};
use logferry_observe::report::{LatencyPoint, ReportData, Series, StageRow};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::pipeline::RunReport;

/// What the daemon samples every `SAMPLE_EVERY`: source lag per shard and
/// memory. Kept under `runs/daemon/<time>-<holder>.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    /// When.
    pub at: DateTime<Utc>,
    /// MillisBehindLatest per `stream/shard`.
    pub lag_ms: BTreeMap<String, i64>,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// daemon.memory_budget, bytes.
    pub memory_budget: u64,
}

/// How often the daemon keeps a [`Sample`].
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What a load test put into the tenants' streams (`runs/loadtest/`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PutRecordsCount {
    /// When the test ended.
    pub at: DateTime<Utc>,
    /// Records put and acknowledged.
    pub ok: u64,
    /// Records attempted (retries not counted twice).
    pub attempted: u64,
    /// Records the service throttled (and that were retried).
    pub throttled: u64,
}

/// Everything measured in a range.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Start of the range.
    pub since: DateTime<Utc>,
    /// End of the range.
    pub until: DateTime<Utc>,
    /// Window runs that started in it.
    pub runs: Vec<RunReport>,
    /// File and inbox forwards.
    pub forwards: Vec<(DateTime<Utc>, ForwardReport)>,
    /// Kinesis forwards.
    pub kinesis: Vec<(DateTime<Utc>, KinesisReport)>,
    /// The daemon's samples.
    pub samples: Vec<Sample>,
    /// Load tests' PutRecords.
    pub put_records: Vec<PutRecordsCount>,
}

/// Parses `24h`, `30m`, `7d`, `90s` (the `--since` argument).
pub fn parse_since(s: &str) -> Result<Duration> {
    let d = logferry_core::config::parse_duration("--since", s)?;
    Duration::from_std(d).map_err(|e| Error::Config(format!("--since {s}: {e}")))
}

/// The time a report's name starts with (`YYYYMMDDTHHMMSSZ-…`).
fn name_time(name: &str) -> Option<DateTime<Utc>> {
    let base = name.rsplit('/').next()?;
    let stamp = base.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

async fn read_under<T: serde::de::DeserializeOwned>(
    ledger: &Ledger,
    dir: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, T)>> {
    let mut out = Vec::new();
    let mut names = ledger.list(dir).await?;
    names.sort();
    for n in names {
        let Some(t) = name_time(&n) else { continue };
        if t < since - Duration::seconds(1) || t > until {
            continue;
        }
        // Reports of another kind under the same prefix are skipped.
        if let Ok(v) = ledger.get::<T>(&n).await {
            out.push((t, v));
        }
    }
    Ok(out)
}

/// Reads what was measured from `since` to now.
pub async fn measured(ctx: &Ctx, since: DateTime<Utc>) -> Result<Measured> {
    let ledger = ctx.ledger();
    let until = Utc::now();
    let mut runs = Vec::new();
    let mut day = since.date_naive();
    while day <= until.date_naive() {
        for (_, r) in read_under::<RunReport>(&ledger, &format!("runs/{day}"), since, until).await?
        {
            if r.started_at >= since {
                runs.push(r);
            }
        }
        match day.succ_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
    runs.sort_by_key(|r| r.started_at);
    let mut forwards = Vec::new();
    let mut kinesis = Vec::new();
    let ledger_names = ledger.list("runs/forward").await?;
    let mut names: Vec<&String> = ledger_names.iter().collect();
    names.sort();
    for n in names {
        let Some(t) = name_time(n) else { continue };
        if t < since - Duration::seconds(1) || t > until {
            continue;
        }
        let v: serde_json::Value = ledger.get(n).await?;
        if v.get("shards").is_some() {
            if let Ok(r) = serde_json::from_value::<KinesisReport>(v) {
                kinesis.push((t, r));
            }
        } else if let Ok(r) = serde_json::from_value::<ForwardReport>(v) {
            forwards.push((t, r));
        }
    }
    let samples = read_under::<Sample>(&ledger, "runs/daemon", since, until)
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let put_records = read_under::<PutRecordsCount>(&ledger, "runs/loadtest", since, until)
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    Ok(Measured {
        since,
        until,
        runs,
        forwards,
        kinesis,
        samples,
        put_records,
    })
}

impl Measured {
    /// Event time to queryable of every record made queryable, per tenant.
    pub fn e2e_by_tenant(&self) -> BTreeMap<String, Histo> {
        let mut out: BTreeMap<String, Histo> = BTreeMap::new();
        for r in &self.runs {
            for w in &r.windows {
                for (t, l) in &w.latency {
                    out.entry(t.clone()).or_default().merge(&l.event);
                }
            }
        }
        out
    }

    /// Ingest to queryable, all tenants.
    pub fn ingest_latency(&self) -> Histo {
        let mut h = Histo::new();
        for r in &self.runs {
            for w in &r.windows {
                for l in w.latency.values() {
                    h.merge(&l.ingest);
                }
            }
        }
        h
    }

    /// Event time to queryable, all tenants.
    pub fn e2e(&self) -> Histo {
        let mut h = Histo::new();
        for t in self.e2e_by_tenant().values() {
            h.merge(t);
        }
        h
    }

    /// Records received (forward reports).
    pub fn received(&self) -> u64 {
        self.forwards
            .iter()
            .map(|(_, f)| f.decode.received)
            .chain(self.kinesis.iter().map(|(_, k)| k.decode.received))
            .sum()
    }

    /// Records dead-lettered at forward and at the aggregate's rules.
    pub fn dead_letters_by_reason(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for d in self
            .forwards
            .iter()
            .map(|(_, f)| &f.decode)
            .chain(self.kinesis.iter().map(|(_, k)| &k.decode))
        {
            for (reason, n) in &d.by_reason {
                *out.entry(reason.clone()).or_default() += n;
            }
        }
        let rules: u64 = self
            .runs
            .iter()
            .flat_map(|r| &r.windows)
            .flat_map(|w| w.counts.values())
            .map(|c| c.dead_lettered)
            .sum();
        if rules > 0 {
            *out.entry("aggregate rules".into()).or_default() += rules;
        }
        out
    }

    fn largest_lag_ms(&self) -> Option<f64> {
        let from_samples = self
            .samples
            .iter()
            .flat_map(|s| s.lag_ms.values())
            .map(|v| *v as f64);
        let from_reads = self
            .kinesis
            .iter()
            .flat_map(|(_, k)| &k.shards)
            .map(|s| s.max_millis_behind_latest as f64);
        from_samples.chain(from_reads).reduce(f64::max)
    }

    fn operations(&self) -> ((u64, u64), (u64, u64)) {
        let (mut up_ok, mut up_failed, mut load_ok, mut load_failed) = (0, 0, 0, 0);
        for w in self.runs.iter().flat_map(|r| &r.windows) {
            up_ok += w.files_sent;
            load_ok += w.load_jobs;
            match w.failed_operation.as_deref() {
                Some("export_upload") => up_failed += 1,
                Some("load_job") => load_failed += 1,
                _ => {}
            }
        }
        ((up_ok, up_ok + up_failed), (load_ok, load_ok + load_failed))
    }

    /// The KPIs' inputs; the cost per million from `cost`.
    pub fn kpi_inputs(&self, cost: &CostReport) -> KpiInputs {
        let (transfer, loads) = self.operations();
        let put = self
            .put_records
            .iter()
            .fold((0, 0), |(ok, n), p| (ok + p.ok, n + p.attempted));
        KpiInputs {
            e2e: self.e2e(),
            put_records: (put.1 > 0).then_some(put),
            stream_lag_ms: self.largest_lag_ms(),
            transfer: (transfer.1 > 0).then_some(transfer),
            loads: (loads.1 > 0).then_some(loads),
            cost_per_million_usd: cost.per_million_usd,
        }
    }

    /// What the range used, for the cost model.
    pub fn usage(&self, ctx: &Ctx, lake_bytes: u64) -> Usage {
        let hours = (self.until - self.since).num_seconds().max(1) as f64 / 3600.0;
        let records = self.received();
        let rows_loaded: u64 = self.e2e().count;
        let input_bytes: u64 = self.forwards.iter().map(|(_, f)| f.input_bytes).sum();
        let bytes_known: u64 = self
            .forwards
            .iter()
            .filter(|(_, f)| f.input_bytes > 0)
            .map(|(_, f)| f.decode.received)
            .sum();
        let windows = || self.runs.iter().flat_map(|r| &r.windows);
        let sent: u64 = windows().map(|w| w.bytes_sent).sum();
        let uncompressed: f64 = windows()
            .map(|w| w.bytes_sent as f64 * w.compression_ratio.max(1.0))
            .sum();
        // Records whose size was not read (Kinesis) are as large as those
        // that were, or, with none read, as their uncompressed export.
        let input_bytes =
            match ((records - bytes_known.min(records)) * input_bytes).checked_div(bytes_known) {
                Some(unread) => input_bytes + unread,
                None => uncompressed as u64,
            };
        let streams: usize = ctx
            .settings
            .tenants
            .all()
            .iter()
            .map(|t| t.streams.len().max(1))
            .sum();
        let shards_read: std::collections::BTreeSet<(String, String)> = self
            .kinesis
            .iter()
            .flat_map(|(_, k)| &k.shards)
            .map(|s| (s.stream.clone(), s.shard.clone()))
            .collect();
        let shards = if shards_read.is_empty() {
            streams as u64 * ctx.settings.cost.shards_per_stream
        } else {
            shards_read.len() as u64
        };
        let worked = windows().filter(|w| w.worked()).count() as u64;
        let landing: u64 = self
            .forwards
            .iter()
            .map(|(_, f)| f.landing_files)
            .sum::<u64>()
            + self
                .kinesis
                .iter()
                .flat_map(|(_, k)| &k.shards)
                .map(|s| s.objects)
                .sum::<u64>();
        let dlq: u64 = self.forwards.iter().map(|(_, f)| f.dlq_files).sum();
        let outputs: u64 = windows()
            .filter(|w| w.aggregate.worked())
            .map(|w| w.counts.len() as u64 + 2)
            .sum();
        let compute_ms: u64 = self
            .forwards
            .iter()
            .map(|(_, f)| f.duration_ms)
            .chain(windows().map(|w| w.aggregate_ms + w.export_ms))
            .sum();
        Usage {
            hours,
            records,
            rows_loaded,
            input_bytes,
            shards,
            kinesis_records: records,
            kinesis_bytes: input_bytes,
            s3_puts: landing + dlq + outputs + worked * LEDGER_WRITES_PER_WINDOW_RUN,
            s3_gets: landing * GETS_PER_LANDING_OBJECT + worked * LEDGER_READS_PER_WINDOW_RUN,
            lake_bytes,
            egress_bytes: sent,
            gcs_uploads: windows().map(|w| w.files_sent).sum(),
            gcs_reads: windows().map(|w| w.files_sent).sum(),
            export_bytes: sent,
            load_jobs: windows().map(|w| w.load_jobs).sum(),
            warehouse_bytes: uncompressed as u64,
            compute_seconds: compute_ms as f64 / 1000.0,
            invocations: self.forwards.len() as u64 + worked,
        }
    }

    /// The report page's data; the latency chart's lines at the KPI's
    /// target and critical threshold (`t`).
    pub fn report_data(
        &self,
        kpis: &[KpiResult],
        cost: &CostReport,
        t: &logferry_observe::Thresholds,
    ) -> ReportData {
        let bucket = bucket_seconds(self.since, self.until);
        // Latency over time: records made queryable per time bucket.
        let mut by_time: BTreeMap<i64, Histo> = BTreeMap::new();
        let mut per_tenant: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
        let mut stages: BTreeMap<&str, Histo> = BTreeMap::new();
        for r in &self.runs {
            let t = r.started_at.timestamp() + (r.duration_ms / 1000) as i64;
            let b = t - t.rem_euclid(bucket);
            for w in &r.windows {
                for (tenant, l) in &w.latency {
                    by_time.entry(b).or_default().merge(&l.event);
                    *per_tenant
                        .entry(tenant.clone())
                        .or_default()
                        .entry(b)
                        .or_default() += l.event.count;
                }
                if w.aggregate.worked() {
                    stages
                        .entry("aggregate")
                        .or_default()
                        .record(w.aggregate_ms as f64);
                }
                if w.export.worked() {
                    stages
                        .entry("export")
                        .or_default()
                        .record(w.export_ms as f64);
                    if w.load_jobs > 0 {
                        stages
                            .entry("load")
                            .or_default()
                            .record(w.load_ms as f64 / w.load_jobs as f64);
                    }
                }
            }
        }
        for (_, f) in &self.forwards {
            stages
                .entry("forward")
                .or_default()
                .record(f.duration_ms as f64);
        }
        let latency = by_time
            .iter()
            .map(|(t, h)| LatencyPoint {
                t: *t as f64,
                p50_s: h.quantile(0.5).unwrap_or_default() / 1000.0,
                p95_s: h.quantile(0.95).unwrap_or_default() / 1000.0,
                records: h.count,
            })
            .collect();
        let throughput = per_tenant
            .into_iter()
            .map(|(name, pts)| Series {
                name,
                points: pts
                    .into_iter()
                    .map(|(t, n)| (t as f64, n as f64 / bucket as f64))
                    .collect(),
            })
            .collect();
        let mut lag: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in &self.samples {
            for (k, v) in &s.lag_ms {
                lag.entry(k.clone())
                    .or_default()
                    .push((s.at.timestamp() as f64, *v as f64));
            }
        }
        for (t, k) in &self.kinesis {
            for s in &k.shards {
                lag.entry(format!("{}/{}", s.stream, s.shard))
                    .or_default()
                    .push((t.timestamp() as f64, s.max_millis_behind_latest as f64));
            }
        }
        let stages = ["forward", "aggregate", "export", "load"]
            .iter()
            .filter_map(|s| {
                let h = stages.get(s)?;
                Some(StageRow {
                    stage: (*s).to_string(),
                    p50_s: h.quantile(0.5).unwrap_or_default() / 1000.0,
                    p95_s: h.quantile(0.95).unwrap_or_default() / 1000.0,
                    max_s: h.max_ms / 1000.0,
                    count: h.count,
                })
            })
            .collect();
        let mut cost_bars = vec![(
            "logferry (load jobs)".to_string(),
            cost.per_million_usd.unwrap_or(0.0),
        )];
        cost_bars.extend(
            cost.alternatives
                .iter()
                .map(|a| (a.name.clone(), a.per_million_usd)),
        );
        let e2e = self.e2e();
        let ingest = self.ingest_latency();
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2} s", v / 1000.0));
        ReportData {
            title: "logferry".into(),
            subtitle: format!(
                "{} to {} (UTC)",
                self.since.format("%Y-%m-%d %H:%M:%S"),
                self.until.format("%Y-%m-%d %H:%M:%S")
            ),
            generated_at: Utc::now().to_rfc3339(),
            summary: vec![
                ("Records received".into(), self.received().to_string()),
                ("Records made queryable".into(), e2e.count.to_string()),
                ("Window runs".into(), self.runs.len().to_string()),
                ("End-to-end P50".into(), ms(e2e.quantile(0.5))),
                ("End-to-end P95".into(), ms(e2e.quantile(0.95))),
                ("Ingest to queryable P95".into(), ms(ingest.quantile(0.95))),
                (
                    "Bytes over the transit link".into(),
                    cost.usage.egress_bytes.to_string(),
                ),
                (
                    "Cost per million records".into(),
                    cost.per_million_usd
                        .map_or("-".into(), |v| format!("${v:.4}")),
                ),
            ],
            thresholds: Vec::new(),
            trends: Vec::new(),
            kpis: kpis.to_vec(),
            latency,
            throughput,
            dead_letters: self.dead_letters_by_reason().into_iter().collect(),
            lag: lag
                .into_iter()
                .map(|(name, points)| Series { name, points })
                .collect(),
            stages,
            cost: cost_bars,
            cost_items: cost
                .lines
                .iter()
                .filter(|l| l.usd > 0.0)
                .map(|l| (l.item.clone(), l.per_million_usd))
                .collect(),
            latency_target_s: t.e2e_p95_target_s,
            latency_critical_s: t.e2e_p95_critical_s,
        }
    }
}

/// Modelled ledger traffic of one window run (lease, records, markers).
const LEDGER_WRITES_PER_WINDOW_RUN: u64 = 8;
/// Modelled ledger reads of one window run.
const LEDGER_READS_PER_WINDOW_RUN: u64 = 12;
/// A landing object is read as its footer, then its column chunks.
const GETS_PER_LANDING_OBJECT: u64 = 2;

/// Time buckets of the charts: about 60 over the range, at least a second.
fn bucket_seconds(since: DateTime<Utc>, until: DateTime<Utc>) -> i64 {
    let span = (until - since).num_seconds().max(1);
    let mut b = 1;
    for step in [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400,
    ] {
        b = step;
        if span / step <= 90 {
            break;
        }
    }
    b
}

/// Bytes the lake holds (landing, curated, DLQ, rollups).
pub async fn lake_bytes(ctx: &Ctx) -> Result<u64> {
    let mut total = 0;
    for p in ["landing", "curated", "dlq", "rollups"] {
        let path = object_store::path::Path::from(p);
        for m in logferry_core::storage::list_all(ctx.lake.store.as_ref(), &path).await? {
            total += m.size;
        }
    }
    Ok(total)
}

/// The cost of a range.
pub async fn cost(ctx: &Ctx, m: &Measured) -> Result<CostReport> {
    let usage = m.usage(ctx, lake_bytes(ctx).await?);
    Ok(logferry_observe::cost::compute(&usage, &ctx.settings.cost))
}
