//! The metric catalogue: one declarative list of every metric logferry
//! emits. The daemon's Prometheus registry is built from it, the Lambda
//! handlers' EMF lines name their metrics from it, and the dashboards and
//! alerts are rendered from it; a metric not in this list cannot be
//! emitted.
//!
//! Rows follow the performance guide's tables where one applies (`guide`
//! names the row, `target` carries its target). Labels are bounded: tenants
//! come from the configuration (plus `_unknown`), streams and shards from
//! the configured streams, schedules from `[[schedule]]`; never request or
//! record ids.

use serde::Serialize;

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Only goes up (Prometheus `_total`).
    Counter,
    /// A value now.
    Gauge,
    /// A distribution (Prometheus buckets).
    Histogram,
}

/// The unit of a metric's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A count of things.
    Count,
    /// Seconds.
    Seconds,
    /// Milliseconds (Kinesis reports its lag so).
    Milliseconds,
    /// Bytes.
    Bytes,
    /// A share between 0 and 1.
    Ratio,
    /// Unix time in seconds.
    Timestamp,
}

impl Unit {
    /// The Prometheus name suffix (`None`: no suffix).
    pub fn prometheus_suffix(self) -> Option<&'static str> {
        match self {
            Unit::Seconds | Unit::Timestamp => Some("seconds"),
            Unit::Milliseconds => Some("milliseconds"),
            Unit::Bytes => Some("bytes"),
            Unit::Ratio => Some("ratio"),
            Unit::Count => None,
        }
    }

    /// The CloudWatch unit name.
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds | Unit::Timestamp => "Seconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
            Unit::Ratio => "None",
        }
    }
}

/// The part of the pipeline a metric belongs to (the EMF `Component`
/// dimension, the dashboards' sections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Component {
    /// The client-side forwarder's writes into the tenant streams.
    Forwarder,
    /// The tenant Kinesis streams, as logferry reads them.
    TenantStreams,
    /// Decode and land in S3 (`forward`, the lander Lambda).
    Forward,
    /// Dedupe, rules and rollups (the guide's aggregation Lambda).
    Aggregate,
    /// Over the transit link to the export bucket (the export Lambda).
    Export,
    /// BigQuery load jobs.
    Warehouse,
    /// The pipeline as a whole.
    Pipeline,
    /// The long-running process.
    Daemon,
}

impl Component {
    /// The name used as the EMF `Component` dimension and in dashboards.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Forwarder => "Forwarder",
            Component::TenantStreams => "TenantStreams",
            Component::Forward => "Forward",
            Component::Aggregate => "Aggregate",
            Component::Export => "Export",
            Component::Warehouse => "Warehouse",
            Component::Pipeline => "Pipeline",
            Component::Daemon => "Daemon",
        }
    }
}

/// Which way a target points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Good when below the target.
    Below,
    /// Good when above the target.
    Above,
}

/// The guide's target for a metric, in the metric's own unit (for
/// histograms: of their 95th percentile; for counters: of their rate of
/// increase, or of the ratio named).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// Good side.
    pub direction: Direction,
    /// The target value.
    pub value: f64,
    /// As the guide writes it.
    pub text: &'static str,
}

/// One metric.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MetricDef {
    /// Name without the `logferry_` prefix and unit suffix.
    pub name: &'static str,
    /// Series kind.
    pub kind: Kind,
    /// Unit of the values.
    pub unit: Unit,
    /// Label names, in the order callers give the values.
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
    /// Part of the pipeline.
    pub component: Component,
    /// The guide's row this metric answers, if any.
    pub guide: Option<&'static str>,
    /// The guide's target, if it gives one.
    pub target: Option<Target>,
    /// The CloudWatch metric name when the Lambda handlers emit it as EMF.
    pub emf: Option<&'static str>,
}

impl MetricDef {
    /// The full Prometheus name of the series family (counters without
    /// `_total`, which the exposition adds).
    pub fn prometheus_name(&self) -> String {
        match self.unit.prometheus_suffix() {
            Some(s) => format!("logferry_{}_{s}", self.name),
            None => format!("logferry_{}", self.name),
        }
    }

    /// The name of the sample Prometheus stores: counters end in `_total`.
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.prometheus_name()),
            _ => self.prometheus_name(),
        }
    }

    /// Histogram bucket upper bounds, in the metric's unit.
    pub fn buckets(&self) -> Vec<f64> {
        match (self.kind, self.unit) {
            (Kind::Histogram, Unit::Count) => {
                let mut b = Vec::new();
                let mut v = 1.0;
                while v <= 1e7 {
                    b.extend([v, 2.5 * v, 5.0 * v]);
                    v *= 10.0;
                }
                b
            }
            (Kind::Histogram, Unit::Bytes) => (10..=30).map(|p| f64::from(1u32 << p)).collect(),
            (Kind::Histogram, _) if self.name.contains("latency") => latency_buckets(),
            (Kind::Histogram, _) => vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
                300.0, 600.0, 1800.0,
            ],
            _ => Vec::new(),
        }
    }
}

/// End-to-end latency buckets, seconds: 100 ms steps to 10 s, then coarser
/// to an hour (the guide's 30 s target and 60 s critical are bounds).
fn latency_buckets() -> Vec<f64> {
    let mut b: Vec<f64> = (1..=100).map(|i| f64::from(i) / 10.0).collect();
    b.extend([
        15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]);
    b
}

const fn below(value: f64, text: &'static str) -> Option<Target> {
    Some(Target {
        direction: Direction::Below,
        value,
        text,
    })
}

const fn above(value: f64, text: &'static str) -> Option<Target> {
    Some(Target {
        direction: Direction::Above,
        value,
        text,
    })
}

const fn def(
    name: &'static str,
    kind: Kind,
    unit: Unit,
    labels: &'static [&'static str],
    component: Component,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        unit,
        labels,
        help,
        component,
        guide: None,
        target: None,
        emf: None,
    }
}

const fn guide(mut d: MetricDef, row: &'static str, target: Option<Target>) -> MetricDef {
    d.guide = Some(row);
    d.target = target;
    d
}

const fn emf(mut d: MetricDef, name: &'static str) -> MetricDef {
    d.emf = Some(name);
    d
}

use Component as C;
use Kind::{Counter, Gauge, Histogram};
use Unit::{Bytes, Count, Milliseconds, Ratio, Seconds, Timestamp};

/// Every metric.
pub const CATALOG: &[MetricDef] = &[
    // Records through each stage.
    emf(
        guide(
            def(
                "records",
                Counter,
                Count,
                &["stage", "tenant", "outcome"],
                C::Pipeline,
                "Records through each stage, by tenant and outcome (received, accepted, dead_lettered, duplicate, curated, loaded)",
            ),
            "IncomingRecords / RecordsProcessed / RecordsFailed",
            None,
        ),
        "Records",
    ),
    guide(
        def(
            "dlq",
            Gauge,
            Ratio,
            &["tenant"],
            C::Pipeline,
            "Share of the tenant's received records dead-lettered, over the daemon's sliding window",
        ),
        "DLQ Messages",
        below(0.0001, "< 0.01%"),
    ),
    emf(
        guide(
            def(
                "batch_size",
                Histogram,
                Count,
                &["stage"],
                C::Pipeline,
                "Records per batch: per landing object (forward), per increment or window run (aggregate), per load job (load)",
            ),
            "Batch Size",
            None,
        ),
        "BatchSize",
    ),
    emf(
        guide(
            def(
                "stage_duration",
                Histogram,
                Seconds,
                &["stage"],
                C::Pipeline,
                "Time of one stage's work: a forward of an object or Lambda batch, an aggregate, an export, a load job",
            ),
            "Lambda Duration",
            below(5.0, "< 5000ms"),
        ),
        "BatchProcessingDuration",
    ),
    def(
        "window_duration",
        Histogram,
        Seconds,
        &["mode"],
        C::Pipeline,
        "Wall time of one window's run (aggregate, export, load), by mode",
    ),
    guide(
        def(
            "object_write_latency",
            Histogram,
            Seconds,
            &["store"],
            C::Forward,
            "Latency of one object write: landing and dead-letter objects to the lake (s3 or local), exports to the export bucket (gcs or local)",
        ),
        "S3 Write Latency",
        below(0.5, "< 500ms"),
    ),
    emf(
        guide(
            def(
                "merge_duration",
                Histogram,
                Seconds,
                &[],
                C::Aggregate,
                "Cross-stream aggregation: the multi-tenant dedupe, rules and rollups of one window or increment",
            ),
            "Cross-Stream Aggregation Time",
            below(2.0, "< 2000ms"),
        ),
        "CrossStreamAggregationTime",
    ),
    emf(
        guide(
            def(
                "source_lag",
                Gauge,
                Milliseconds,
                &["stream", "shard"],
                C::TenantStreams,
                "MillisBehindLatest of the shard's last GetRecords (Kinesis IteratorAge)",
            ),
            "IteratorAge",
            below(1000.0, "< 1000ms"),
        ),
        "IteratorAge",
    ),
    def(
        "stream_up",
        Gauge,
        Count,
        &["stream"],
        C::TenantStreams,
        "1 while the stream's reader runs, 0 while it waits to be restarted",
    ),
    def(
        "stream_restarts",
        Counter,
        Count,
        &["stream"],
        C::TenantStreams,
        "Restarts of a stream's reader after it failed",
    ),
    guide(
        def(
            "get_records_throttled",
            Counter,
            Count,
            &["stream"],
            C::TenantStreams,
            "GetRecords calls the service throttled (after the SDK's retries)",
        ),
        "ReadProvisionedThroughputExceeded",
        below(0.0, "0"),
    ),
    emf(
        guide(
            def(
                "put_records",
                Counter,
                Count,
                &["stream", "outcome"],
                C::Forwarder,
                "Records logferry put into a tenant stream, by outcome (ok, throttled, failed): PutRecords success",
            ),
            "Kinesis PutRecords Success",
            above(0.999, "> 99.9%"),
        ),
        "PutRecords",
    ),
    emf(
        guide(
            def(
                "put_records_duration",
                Histogram,
                Seconds,
                &["stream"],
                C::Forwarder,
                "Time of one PutRecords call, retries included",
            ),
            "Lambda → Kinesis write latency",
            None,
        ),
        "PutRecordsDuration",
    ),
    emf(
        guide(
            def(
                "subscription_latency",
                Histogram,
                Milliseconds,
                &[],
                C::Forwarder,
                "Time from a log event to its arrival at the client-side forwarder (the forwarder Lambda's EMF)",
            ),
            "CloudWatch Subscription Filter Latency",
            below(1000.0, "< 1000ms"),
        ),
        "SubscriptionLatency",
    ),
    emf(
        guide(
            def(
                "operations",
                Counter,
                Count,
                &["operation", "outcome"],
                C::Pipeline,
                "Attempts of the operations whose success rates are KPIs (lake_write, export_upload, load_job, window), by outcome (ok, failed)",
            ),
            "Cross-Cloud Transfer Success / BigQuery Insert Success",
            None,
        ),
        "Operations",
    ),
    guide(
        def(
            "load_job_duration",
            Histogram,
            Seconds,
            &["table"],
            C::Warehouse,
            "Time of one load job, submitted to done",
        ),
        "BigQuery load latency",
        None,
    ),
    def(
        "load_jobs_left",
        Gauge,
        Count,
        &["table"],
        C::Warehouse,
        "Load jobs logferry may still run on the table today (BigQuery's quota, less headroom)",
    ),
    emf(
        guide(
            def(
                "export_duration",
                Histogram,
                Seconds,
                &[],
                C::Export,
                "Time of one window's export over the transit link and its load",
            ),
            "Export Lambda Duration",
            below(10.0, "< 10000ms"),
        ),
        "ExportLambdaDuration",
    ),
    emf(
        guide(
            def(
                "transit",
                Counter,
                Bytes,
                &["kind"],
                C::Export,
                "Bytes over the transit link (kind=compressed, what is billed) and what they hold uncompressed (kind=uncompressed)",
            ),
            "Data Transfer Costs",
            None,
        ),
        "TransitBytes",
    ),
    def(
        "compression",
        Gauge,
        Ratio,
        &[],
        C::Export,
        "Uncompressed over compressed bytes of the last export",
    ),
    emf(
        guide(
            def(
                "end_to_end_latency",
                Histogram,
                Seconds,
                &["tenant"],
                C::Pipeline,
                "Per record: event time to queryable (its load job finished)",
            ),
            "End-to-End Latency",
            below(30.0, "P95 < 30 s"),
        ),
        "EndToEndLatency",
    ),
    def(
        "ingest_latency",
        Histogram,
        Seconds,
        &["tenant"],
        C::Pipeline,
        "Per record: ingest (decoded by logferry) to queryable, logferry's own share of the end-to-end latency",
    ),
    def(
        "end_to_end_latency_window",
        Gauge,
        Seconds,
        &["tenant", "quantile"],
        C::Pipeline,
        "Quantiles (0.5, 0.95, 0.99) of event time to queryable over the daemon's sliding window",
    ),
    def(
        "kpi_status",
        Gauge,
        Count,
        &["kpi"],
        C::Pipeline,
        "The KPI over the daemon's sliding window: 0 pass, 1 warn, 2 fail, -1 no data",
    ),
    guide(
        def(
            "memory_in_use",
            Gauge,
            Bytes,
            &[],
            C::Daemon,
            "Resident memory of the process",
        ),
        "Memory Pressure",
        None,
    ),
    def(
        "memory_budget",
        Gauge,
        Bytes,
        &[],
        C::Daemon,
        "The memory the process is allowed (daemon.memory_budget)",
    ),
    guide(
        def(
            "memory_pressure",
            Gauge,
            Ratio,
            &[],
            C::Daemon,
            "Resident memory over the budget",
        ),
        "Memory Pressure",
        below(0.8, "< 80%"),
    ),
    def(
        "window_runs",
        Counter,
        Count,
        &["mode", "aggregate", "export"],
        C::Pipeline,
        "Window runs, by mode and what the aggregate and export steps did",
    ),
    def(
        "windows",
        Gauge,
        Count,
        &["state"],
        C::Pipeline,
        "Windows by state: pending (unprocessed data), open (increments not yet sealed), retrying, failed",
    ),
    def(
        "schedule_runs",
        Counter,
        Count,
        &["schedule", "outcome"],
        C::Daemon,
        "Schedule firings, by outcome (ok, failed, skipped: the previous run was still going)",
    ),
    def(
        "schedule_last_success",
        Gauge,
        Timestamp,
        &["schedule"],
        C::Daemon,
        "When the schedule's job last succeeded, Unix time",
    ),
    def(
        "inbox_objects",
        Counter,
        Count,
        &["outcome"],
        C::Forward,
        "Inbox objects, by outcome (forwarded, failed, corrupt)",
    ),
    emf(
        def(
            "lambda_invocations",
            Counter,
            Count,
            &["handler", "outcome"],
            C::Forward,
            "Lambda invocations by handler (logs, kinesis, job, schedule) and outcome (ok, failed)",
        ),
        "Invocations",
    ),
];

/// The catalogue's entry named `name`.
pub fn get(name: &str) -> Option<&'static MetricDef> {
    CATALOG.iter().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_prometheus_valid() {
        let mut seen = BTreeSet::new();
        for d in CATALOG {
            assert!(seen.insert(d.prometheus_name()), "{} twice", d.name);
            assert!(
                d.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                d.name
            );
            for l in d.labels {
                assert!(!l.starts_with("__") && *l != "le" && *l != "request_id");
            }
            assert_eq!(d.kind == Kind::Histogram, !d.buckets().is_empty());
            let b = d.buckets();
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{}", d.name);
        }
    }

    #[test]
    fn the_guides_tables_are_covered() {
        for row in [
            "IteratorAge",
            "S3 Write Latency",
            "Cross-Stream Aggregation Time",
            "DLQ Messages",
            "Batch Size",
            "Export Lambda Duration",
            "Memory Pressure",
            "Kinesis PutRecords Success",
            "End-to-End Latency",
            "Data Transfer Costs",
        ] {
            assert!(
                CATALOG
                    .iter()
                    .any(|d| d.guide.is_some_and(|g| g.contains(row))),
                "{row}"
            );
        }
        assert_eq!(
            get("source_lag").map(|d| d.prometheus_name()),
            Some("logferry_source_lag_milliseconds".into())
        );
    }
}
