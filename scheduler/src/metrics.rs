//! What the daemon serves on `/metrics` (Prometheus text, `prometheus-client`):
//! one family per entry of the metric catalogue
//! ([`logferry_observe::catalog`]), named, typed, labelled and described
//! from it; a name or label set outside the catalogue is a programming
//! error. Beside the cumulative series, the process keeps a sliding window
//! (per minute, `daemon.metrics_window` long) of end-to-end latencies,
//! dead letters, success rates and source lag, which the quantile and KPI
//! gauges are computed from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit as PromUnit};

use logferry_forward::batcher::DecodeStats;
use logferry_observe::Histo;
use logferry_observe::catalog::{CATALOG, Kind, MetricDef, Unit};
use logferry_observe::kpi::{KpiInputs, KpiResult, Thresholds};

/// Label values, named by the catalogue.
type Labels = Vec<(&'static str, String)>;

/// Builds a metric's histograms with its catalogue buckets.
#[derive(Debug, Clone)]
struct Buckets(Arc<Vec<f64>>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug)]
enum Fam {
    Counter(Family<Labels, Counter>),
    Gauge(Family<Labels, FloatGauge>),
    Histogram(Family<Labels, Histogram, Buckets>),
}

/// One minute of what the sliding window keeps.
#[derive(Debug, Default, Clone)]
struct Minute {
    /// Minute since the Unix epoch.
    at: i64,
    e2e: BTreeMap<String, Histo>,
    received: BTreeMap<String, u64>,
    dead_lettered: BTreeMap<String, u64>,
    /// Operation → (ok, attempted).
    ops: BTreeMap<&'static str, (u64, u64)>,
    max_lag_ms: Option<f64>,
}

/// The last minutes, oldest first.
#[derive(Debug, Default)]
struct Window {
    minutes: VecDeque<Minute>,
    span: usize,
}

impl Window {
    fn now(&mut self) -> &mut Minute {
        let at = chrono::Utc::now().timestamp().div_euclid(60);
        if self.minutes.back().is_none_or(|m| m.at != at) {
            self.minutes.push_back(Minute {
                at,
                ..Minute::default()
            });
        }
        while self
            .minutes
            .front()
            .is_some_and(|m| m.at <= at - self.span as i64)
        {
            self.minutes.pop_front();
        }
        // Just pushed, or already there.
        self.minutes.back_mut().expect("the current minute")
    }
}

/// What the sliding window holds, summed.
#[derive(Debug, Default, Clone)]
pub struct WindowTotals {
    /// End-to-end latency per tenant.
    pub e2e: BTreeMap<String, Histo>,
    /// Records received per tenant.
    pub received: BTreeMap<String, u64>,
    /// Records dead-lettered per tenant.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Operation → (ok, attempted).
    pub ops: BTreeMap<&'static str, (u64, u64)>,
    /// Largest source lag seen, ms.
    pub max_lag_ms: Option<f64>,
}

impl WindowTotals {
    /// The KPI inputs the window gives (cost is the `cost` command's).
    pub fn kpi_inputs(&self) -> KpiInputs {
        let mut e2e = Histo::new();
        for h in self.e2e.values() {
            e2e.merge(h);
        }
        KpiInputs {
            e2e,
            put_records: self.ops.get("put_records").copied(),
            stream_lag_ms: self.max_lag_ms,
            transfer: self.ops.get("export_upload").copied(),
            loads: self.ops.get("load_job").copied(),
            cost_per_million_usd: None,
        }
    }
}

/// The metrics of one process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    families: HashMap<&'static str, (&'static MetricDef, Fam)>,
    window: std::sync::Mutex<Window>,
    thresholds: Thresholds,
    /// Records by (stage, outcome), every tenant, since the start.
    tallies: std::sync::Mutex<BTreeMap<(String, String), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Duration::from_secs(900), Thresholds::default())
    }
}

fn prom_unit(u: Unit) -> Option<PromUnit> {
    match u {
        Unit::Count => None,
        Unit::Seconds | Unit::Timestamp => Some(PromUnit::Seconds),
        Unit::Bytes => Some(PromUnit::Bytes),
        Unit::Milliseconds => Some(PromUnit::Other("milliseconds".into())),
        Unit::Ratio => Some(PromUnit::Other("ratio".into())),
    }
}

impl Metrics {
    /// Every metric of the catalogue, registered under `logferry_`; the
    /// sliding window `window` long; KPIs against `thresholds`.
    pub fn new(window: Duration, thresholds: Thresholds) -> Self {
        let mut registry = Registry::with_prefix("logferry");
        let mut families = HashMap::new();
        for d in CATALOG {
            let fam = match d.kind {
                Kind::Counter => Fam::Counter(Family::default()),
                Kind::Gauge => Fam::Gauge(Family::default()),
                Kind::Histogram => {
                    Fam::Histogram(Family::new_with_constructor(Buckets(Arc::new(d.buckets()))))
                }
            };
            macro_rules! reg {
                ($m:expr) => {
                    match prom_unit(d.unit) {
                        Some(u) => registry.register_with_unit(d.name, d.help, u, $m.clone()),
                        None => registry.register(d.name, d.help, $m.clone()),
                    }
                };
            }
            match &fam {
                Fam::Counter(m) => reg!(m),
                Fam::Gauge(m) => reg!(m),
                Fam::Histogram(m) => reg!(m),
            }
            families.insert(d.name, (d, fam));
        }
        Metrics {
            registry,
            families,
            window: std::sync::Mutex::new(Window {
                minutes: VecDeque::new(),
                span: (window.as_secs() / 60).max(1) as usize,
            }),
            thresholds,
            tallies: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Records of `stage` with `outcome`, every tenant, since the start.
    pub fn tally(&self, stage: &str, outcome: &str) -> u64 {
        let t = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        t.get(&(stage.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }

    fn family(&self, name: &str, values: &[&str]) -> (&Fam, Labels) {
        let Some((d, fam)) = self.families.get(name) else {
            panic!("metric {name} is not in the catalogue");
        };
        assert_eq!(
            d.labels.len(),
            values.len(),
            "metric {name} takes labels {:?}",
            d.labels
        );
        let labels = d
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, (*v).to_string()))
            .collect();
        (fam, labels)
    }

    /// Adds `n` to a counter.
    pub fn inc(&self, name: &str, labels: &[&str], n: u64) {
        match self.family(name, labels) {
            (Fam::Counter(f), l) => {
                f.get_or_create(&l).inc_by(n);
            }
            _ => panic!("metric {name} is not a counter"),
        }
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, labels: &[&str], v: f64) {
        match self.family(name, labels) {
            (Fam::Gauge(f), l) => {
                f.get_or_create(&l).set(v);
            }
            _ => panic!("metric {name} is not a gauge"),
        }
    }

    /// Observes one value of a histogram, in its unit.
    pub fn observe(&self, name: &str, labels: &[&str], v: f64) {
        self.observe_n(name, labels, v, 1);
    }

    fn observe_n(&self, name: &str, labels: &[&str], v: f64, n: u64) {
        match self.family(name, labels) {
            (Fam::Histogram(f), l) => {
                let h = f.get_or_create(&l);
                for _ in 0..n {
                    h.observe(v);
                }
            }
            _ => panic!("metric {name} is not a histogram"),
        }
    }

    /// The Prometheus text exposition, the window's gauges brought up to
    /// date first.
    pub fn encode(&self) -> String {
        self.update_window_gauges();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in Prometheus' classic text format (0.0.4), for
    /// scrapers and tools that do not ask for OpenMetrics (promtool, curl):
    /// counter families are named with their `_total` suffix, and the
    /// OpenMetrics-only `# UNIT` and `# EOF` lines are left out.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode())
    }

    fn with_minute(&self, f: impl FnOnce(&mut Minute)) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        f(w.now());
    }

    /// Counts what a forward decoded, by tenant.
    pub fn forwarded(&self, d: &DecodeStats) {
        for (tenant, c) in &d.tenants {
            self.count("forward", tenant, "received", c.received);
            self.count("forward", tenant, "accepted", c.accepted);
            self.count("forward", tenant, "dead_lettered", c.dead_lettered);
        }
    }

    /// What one forward of an object did: its counts, its duration, the
    /// latency of its object writes, its batch sizes.
    pub fn forward_report(&self, r: &logferry_forward::ForwardReport, store: &str) {
        self.forwarded(&r.decode);
        self.observe(
            "stage_duration",
            &["forward"],
            r.duration_ms as f64 / 1000.0,
        );
        for ms in &r.put_latency.samples_ms {
            self.observe("object_write_latency", &[store], ms / 1000.0);
        }
        if r.landing_files > 0 {
            let per = r.landing_rows as f64 / r.landing_files as f64;
            for _ in 0..r.landing_files {
                self.observe("batch_size", &["forward"], per);
            }
        }
        self.operation("lake_write", r.landing_files + r.dlq_files, 0);
    }

    /// Counts one stage outcome of a tenant.
    pub fn count(&self, stage: &str, tenant: &str, outcome: &str, n: u64) {
        self.inc("records", &[stage, tenant, outcome], n);
        if n == 0 {
            return;
        }
        *self
            .tallies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((stage.to_string(), outcome.to_string()))
            .or_default() += n;
        let received = stage == "forward" && outcome == "received";
        let dead = outcome == "dead_lettered";
        if received || dead {
            self.with_minute(|m| {
                let map = if received {
                    &mut m.received
                } else {
                    &mut m.dead_lettered
                };
                *map.entry(tenant.to_string()).or_default() += n;
            });
        }
    }

    /// One attempt of an operation whose success rate is a KPI
    /// (`lake_write`, `export_upload`, `load_job`, `window`, `put_records`).
    pub fn operation(&self, op: &'static str, ok: u64, failed: u64) {
        if op != "put_records" {
            self.inc("operations", &[op, "ok"], ok);
            self.inc("operations", &[op, "failed"], failed);
        }
        if ok + failed > 0 {
            self.with_minute(|m| {
                let e = m.ops.entry(op).or_default();
                e.0 += ok;
                e.1 += ok + failed;
            });
        }
    }

    /// Records made queryable: their latencies from event time and from
    /// ingest, per tenant.
    pub fn latencies(&self, tenant: &str, e2e: &Histo, ingest: &Histo) {
        for (name, h) in [("end_to_end_latency", e2e), ("ingest_latency", ingest)] {
            for (ms, n) in h.points() {
                self.observe_n(name, &[tenant], ms / 1000.0, n);
            }
        }
        self.with_minute(|m| {
            m.e2e.entry(tenant.to_string()).or_default().merge(e2e);
        });
    }

    /// The source lag of a shard now (MillisBehindLatest).
    pub fn lag(&self, stream: &str, shard: &str, ms: f64) {
        self.set("source_lag", &[stream, shard], ms);
        self.with_minute(|m| {
            m.max_lag_ms = Some(m.max_lag_ms.map_or(ms, |l: f64| l.max(ms)));
        });
    }

    /// The sliding window, summed.
    pub fn window(&self) -> WindowTotals {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        w.now();
        let mut t = WindowTotals::default();
        for m in &w.minutes {
            for (k, h) in &m.e2e {
                t.e2e.entry(k.clone()).or_default().merge(h);
            }
            for (k, n) in &m.received {
                *t.received.entry(k.clone()).or_default() += n;
            }
            for (k, n) in &m.dead_lettered {
                *t.dead_lettered.entry(k.clone()).or_default() += n;
            }
            for (k, (ok, n)) in &m.ops {
                let e = t.ops.entry(*k).or_default();
                e.0 += ok;
                e.1 += n;
            }
            if let Some(l) = m.max_lag_ms {
                t.max_lag_ms = Some(t.max_lag_ms.map_or(l, |x: f64| x.max(l)));
            }
        }
        t
    }

    /// The KPIs over the sliding window.
    pub fn kpis(&self) -> Vec<KpiResult> {
        logferry_observe::kpi::evaluate(&self.window().kpi_inputs(), &self.thresholds)
    }

    fn update_window_gauges(&self) {
        let w = self.window();
        for (tenant, h) in &w.e2e {
            for (q, label) in [(0.5, "0.5"), (0.95, "0.95"), (0.99, "0.99")] {
                if let Some(ms) = h.quantile(q) {
                    self.set("end_to_end_latency_window", &[tenant, label], ms / 1000.0);
                }
            }
        }
        for (tenant, n) in &w.received {
            let dead = w.dead_lettered.get(tenant).copied().unwrap_or(0);
            self.set("dlq", &[tenant], dead as f64 / (*n).max(1) as f64);
        }
        for k in logferry_observe::kpi::evaluate(&w.kpi_inputs(), &self.thresholds) {
            self.set("kpi_status", &[&k.id], k.status.gauge() as f64);
        }
    }
}

/// OpenMetrics text → Prometheus text format 0.0.4.
fn to_prometheus_text(open: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The `store` label of a location: `s3`, `gcs` or `local`.
pub fn store_kind(url: &str) -> &'static str {
    if url.starts_with("s3://") {
        "s3"
    } else if url.starts_with("gs://") {
        "gcs"
    } else {
        "local"
    }
}

/// Resident memory of this process, bytes (Linux; `None` elsewhere).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_metric_is_exposed_with_its_name() {
        let m = Metrics::default();
        for d in CATALOG {
            let labels: Vec<&str> = d.labels.iter().map(|_| "x").collect();
            match d.kind {
                Kind::Counter => m.inc(d.name, &labels, 1),
                Kind::Gauge => m.set(d.name, &labels, 1.0),
                Kind::Histogram => m.observe(d.name, &labels, 1.0),
            }
        }
        let text = m.encode();
        for d in CATALOG {
            assert!(
                text.contains(&format!("# TYPE {} ", d.prometheus_name())),
                "{} missing",
                d.prometheus_name()
            );
            assert!(text.contains(&format!("# HELP {} {}", d.prometheus_name(), d.help)));
        }
        assert!(text.contains("logferry_records_total{stage=\"x\",tenant=\"x\",outcome=\"x\"} 1"));
        let classic = m.encode_prometheus();
        assert!(classic.contains("# TYPE logferry_records_total counter\n"));
        assert!(classic.contains("# HELP logferry_records_total Records"));
        assert!(classic.contains("# TYPE logferry_source_lag_milliseconds gauge\n"));
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }

    #[test]
    fn the_window_feeds_the_kpis() {
        let m = Metrics::default();
        let mut h = Histo::new();
        for _ in 0..100 {
            h.record(70_000.0);
        }
        m.latencies("acme", &h, &h);
        m.count("forward", "acme", "received", 1000);
        m.count("forward", "acme", "dead_lettered", 10);
        m.operation("load_job", 9, 1);
        let k = m.kpis();
        let get = |id: &str| k.iter().find(|k| k.id == id).map(|k| k.status);
        use logferry_observe::KpiStatus;
        assert_eq!(get("e2e_latency_p95"), Some(KpiStatus::Fail));
        assert_eq!(get("load_success"), Some(KpiStatus::Fail));
        assert_eq!(get("stream_lag"), Some(KpiStatus::NoData));
        let text = m.encode();
        assert!(
            text.contains("logferry_dlq_ratio{tenant=\"acme\"} 0.01"),
            "{text}"
        );
        assert!(text.contains("logferry_kpi_status{kpi=\"e2e_latency_p95\"} 2"));
        assert!(text.contains("logferry_end_to_end_latency_seconds_count{tenant=\"acme\"} 100"));
    }
}
