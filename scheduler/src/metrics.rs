//! What the daemon serves on `/metrics` (Prometheus text, `prometheus-client`):
//! records through each stage per tenant, window runs and states, stream
//! health and source lag, schedule runs, inbox objects, load job quota left,
//! and end-to-end latency per record (event time to queryable). Labels are
//! bounded: tenants come from the configuration (and `_unknown`), streams and
//! shards from the configured streams, schedules from `[[schedule]]`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use logferry_forward::batcher::DecodeStats;

/// `{stage, tenant, outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    /// `forward`, `aggregate` or `load`.
    pub stage: &'static str,
    /// Tenant id, or `_unknown`.
    pub tenant: String,
    /// `received`, `accepted`, `dead_lettered`, `duplicate`, `curated`, `loaded`.
    pub outcome: &'static str,
}

/// `{mode, aggregate, export}` of a window run.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowRunLabels {
    /// `full`, `micro_batch` or `seal`.
    pub mode: &'static str,
    /// The aggregate step.
    pub aggregate: &'static str,
    /// The export step.
    pub export: &'static str,
}

/// `{state}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `pending`, `open`, `retrying` or `failed`.
    pub state: &'static str,
}

/// `{stream}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// Kinesis stream.
    pub stream: String,
}

/// `{stream, shard}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    /// Kinesis stream.
    pub stream: String,
    /// Shard id.
    pub shard: String,
}

/// `{schedule, outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleLabels {
    /// `[[schedule]]` name.
    pub schedule: String,
    /// `ok`, `failed`, `skipped` (the previous run was still going).
    pub outcome: &'static str,
}

/// `{schedule}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleName {
    /// `[[schedule]]` name.
    pub schedule: String,
}

/// `{tenant}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant id.
    pub tenant: String,
}

/// `{outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `forwarded`, `failed` or `ignored`.
    pub outcome: &'static str,
}

/// `{table}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// Warehouse table.
    pub table: String,
}

/// Latency buckets, seconds: 100 ms steps to 10 s, then coarser to an hour.
fn latency_buckets() -> Vec<f64> {
    let mut b: Vec<f64> = (1..=100).map(|i| f64::from(i) / 10.0).collect();
    b.extend([
        15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]);
    b
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The metrics of one process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Records through each stage.
    pub records: Family<RecordLabels, Counter>,
    /// Window runs by what they did.
    pub window_runs: Family<WindowRunLabels, Counter>,
    /// Windows by state, as of the last run.
    pub windows: Family<StateLabels, Gauge>,
    /// 1 while a stream's reader runs, 0 while it waits to be restarted.
    pub stream_up: Family<StreamLabels, Gauge>,
    /// Restarts of a stream's reader after it failed.
    pub stream_restarts: Family<StreamLabels, Counter>,
    /// MillisBehindLatest of a shard's last GetRecords (IteratorAge).
    pub source_lag: Family<ShardLabels, Gauge>,
    /// Schedule firings by outcome.
    pub schedule_runs: Family<ScheduleLabels, Counter>,
    /// When a schedule's job last succeeded (Unix seconds).
    pub schedule_last_success: Family<ScheduleName, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Inbox objects by outcome.
    pub inbox_objects: Family<OutcomeLabels, Counter>,
    /// Load jobs left today per table (BigQuery's quota).
    pub load_jobs_left: Family<TableLabels, Gauge>,
    /// Event time to queryable in the warehouse, per record.
    pub e2e_latency: Family<TenantLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered under `logferry_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("logferry");
        let m = Metrics {
            records: Family::default(),
            window_runs: Family::default(),
            windows: Family::default(),
            stream_up: Family::default(),
            stream_restarts: Family::default(),
            source_lag: Family::default(),
            schedule_runs: Family::default(),
            schedule_last_success: Family::default(),
            inbox_objects: Family::default(),
            load_jobs_left: Family::default(),
            e2e_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            registry: Registry::default(),
        };
        registry.register(
            "records",
            "Records through each stage, by tenant and outcome",
            m.records.clone(),
        );
        registry.register(
            "window_runs",
            "Window runs, by mode and what the aggregate and export steps did",
            m.window_runs.clone(),
        );
        registry.register(
            "windows",
            "Windows by state: pending (unprocessed data), open (increments not yet sealed), retrying, failed",
            m.windows.clone(),
        );
        registry.register(
            "stream_up",
            "1 while the stream's reader runs, 0 while it waits to be restarted",
            m.stream_up.clone(),
        );
        registry.register(
            "stream_restarts",
            "Restarts of a stream's reader after it failed",
            m.stream_restarts.clone(),
        );
        registry.register_with_unit(
            "source_lag",
            "MillisBehindLatest of the shard's last GetRecords (Kinesis IteratorAge)",
            Unit::Other("milliseconds".into()),
            m.source_lag.clone(),
        );
        registry.register(
            "schedule_runs",
            "Schedule firings, by outcome",
            m.schedule_runs.clone(),
        );
        registry.register_with_unit(
            "schedule_last_success",
            "When the schedule's job last succeeded, Unix time",
            Unit::Seconds,
            m.schedule_last_success.clone(),
        );
        registry.register(
            "inbox_objects",
            "Inbox objects, by outcome",
            m.inbox_objects.clone(),
        );
        registry.register(
            "load_jobs_left",
            "Load jobs logferry may still run on the table today (BigQuery's quota, less headroom)",
            m.load_jobs_left.clone(),
        );
        registry.register_with_unit(
            "end_to_end_latency",
            "Event time to queryable in the warehouse, per record",
            Unit::Seconds,
            m.e2e_latency.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts what a forward decoded, by tenant.
    pub fn forwarded(&self, d: &DecodeStats) {
        for (tenant, c) in &d.tenants {
            for (outcome, n) in [
                ("received", c.received),
                ("accepted", c.accepted),
                ("dead_lettered", c.dead_lettered),
            ] {
                self.records
                    .get_or_create(&RecordLabels {
                        stage: "forward",
                        tenant: tenant.clone(),
                        outcome,
                    })
                    .inc_by(n);
            }
        }
    }

    /// Counts one stage outcome of a tenant.
    pub fn count(&self, stage: &'static str, tenant: &str, outcome: &'static str, n: u64) {
        self.records
            .get_or_create(&RecordLabels {
                stage,
                tenant: tenant.to_string(),
                outcome,
            })
            .inc_by(n);
    }

    /// Observes the end-to-end latency of records of `tenant` with these
    /// event times (microseconds), queryable since `at_us`.
    pub fn latencies(&self, tenant: &str, event_times_us: &[i64], at_us: i64) {
        let h = self.e2e_latency.get_or_create(&TenantLabels {
            tenant: tenant.to_string(),
        });
        for t in event_times_us {
            h.observe((at_us - t).max(0) as f64 / 1e6);
        }
    }
}
