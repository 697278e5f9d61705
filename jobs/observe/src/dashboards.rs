//! Dashboards and alerts rendered from the metric catalogue and the KPI
//! thresholds: a CloudWatch dashboard body, a Cloud Monitoring dashboard,
//! Prometheus alerting rules and a CloudFormation template of CloudWatch
//! alarms. No logferry metric name is written here: each one comes from
//! [`CATALOG`] (`prometheus_name`, `sample_name`, `emf`), each threshold from
//! [`Thresholds`] or from the catalogue's guide targets, so renaming a metric
//! or moving a threshold changes every artefact at once (and breaks a test
//! rather than an alert).
//!
//! How a catalogue metric appears in CloudWatch follows [`crate::emf`]: the
//! dimensions are `Component`, `Environment` and, for per-tenant metrics,
//! `Tenant` ([`emf_dimensions`]); the `stage` label is the emitting
//! `Component`; bounded enumeration labels (`outcome`, `operation`,
//! `handler`) are folded into the metric name as a qualifier, `Records` +
//! `Received` ([`emf_metric_name`]); `stream` and `shard` are not
//! dimensions (the per-stream view is AWS/Kinesis's own). The dashboard
//! therefore finds qualified and per-component series with `SEARCH`
//! expressions, and the alarms that need one exact series name it with
//! [`emf_metric_name`] and the catalogue's component.
//!
//! Label values that the catalogue names only in its help texts (`ok`,
//! `failed`, `export_upload`, ...) are constants here, and a test checks
//! each one against the help text of the metric it labels.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::catalog::{self, CATALOG, Direction, Kind, MetricDef, Unit};
use crate::kpi::{self, KpiDef, KpiInputs, KpiStatus, Thresholds};

/// What the dashboards and alerts are rendered for: the deployment's names
/// and its KPI thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardInput {
    /// CloudWatch namespace of the EMF metrics, e.g. `logferry`.
    pub namespace: String,
    /// The EMF `Environment` dimension, e.g. `production`.
    pub environment: String,
    /// AWS region of the streams, the Lambdas and the dashboard.
    pub region: String,
    /// Tenant ids (the EMF `Tenant` dimension).
    pub tenants: Vec<String>,
    /// The tenants' Kinesis stream names.
    pub streams: Vec<String>,
    /// Client forwarder Lambda function names (may be empty).
    pub forwarder_functions: Vec<String>,
    /// logferry's own Lambda function name, e.g. `logferry`.
    pub lambda_function: String,
    /// GCP project of the export bucket and the BigQuery dataset.
    pub gcp_project: String,
    /// BigQuery dataset the load jobs write.
    pub bigquery_dataset: String,
    /// GCS export bucket name.
    pub export_bucket: String,
    /// KPI targets and critical thresholds (`[kpi]`).
    pub thresholds: Thresholds,
}

// Label values the catalogue's help texts name (checked by a test).
const OK: &str = "ok";
const FAILED: &str = "failed";
const THROTTLED: &str = "throttled";
const EXPORT_UPLOAD: &str = "export_upload";
const LOAD_JOB: &str = "load_job";
const RECEIVED: &str = "received";
const LOADED: &str = "loaded";
/// The stage the guide's per-batch Lambda Duration target is for.
const FORWARD_STAGE: &str = "forward";
/// Outcomes of `put_records`.
const PUT_OUTCOMES: [&str; 3] = [OK, THROTTLED, FAILED];
/// Outcomes of `operations`.
const OPERATION_OUTCOMES: [&str; 2] = [OK, FAILED];

// KPI ids of `kpi::table` (a test checks every one gets its rules).
const KPI_E2E: &str = "e2e_latency_p95";
const KPI_FORWARDER: &str = "forwarder_success";
const KPI_LAG: &str = "stream_lag";
const KPI_TRANSFER: &str = "transfer_success";
const KPI_LOAD: &str = "load_success";
const KPI_COST: &str = "cost_per_million";

// AWS's own metrics (not logferry's: the catalogue does not hold them).
const LAMBDA_NS: &str = "AWS/Lambda";
const KINESIS_NS: &str = "AWS/Kinesis";
const ITERATOR_AGE: &str = "GetRecords.IteratorAgeMilliseconds";
const INCOMING_RECORDS: &str = "IncomingRecords";
const WRITE_EXCEEDED: &str = "WriteProvisionedThroughputExceeded";
const READ_EXCEEDED: &str = "ReadProvisionedThroughputExceeded";

/// CloudWatch period of the dashboard's graphs, seconds.
const PERIOD: u32 = 300;

// ---------------------------------------------------------------------------
// The catalogue as CloudWatch sees it.

/// How a catalogue label shows in an EMF line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmfLabel {
    /// The `Tenant` dimension.
    Tenant,
    /// The emitting stage: the `Component` dimension.
    Component,
    /// Folded into the metric name (`Records` + `Accepted`).
    Qualifier,
    /// Not in the EMF line (per stream/shard detail is AWS/Kinesis's).
    Dropped,
}

fn emf_label(label: &str) -> EmfLabel {
    match label {
        "tenant" => EmfLabel::Tenant,
        "stage" => EmfLabel::Component,
        "stream" | "shard" => EmfLabel::Dropped,
        _ => EmfLabel::Qualifier,
    }
}

/// The EMF dimension names of a catalogue metric, as [`crate::emf::Emf`]
/// writes them: `Component`, `Environment`, and `Tenant` when the metric is
/// per tenant.
pub fn emf_dimensions(d: &MetricDef) -> Vec<&'static str> {
    let mut dims = vec!["Component", "Environment"];
    if d.labels.iter().any(|l| emf_label(l) == EmfLabel::Tenant) {
        dims.push("Tenant");
    }
    dims
}

/// The CloudWatch metric name of `d` for these label values: the EMF name
/// followed by the values of its qualifier labels (`outcome`, `operation`,
/// `handler`), each in PascalCase and in the catalogue's label order, the
/// `qualifier` argument of [`crate::emf::Emf::metric`]. `None` when `d` has
/// no EMF name or a qualifier label has no value in `values`.
pub fn emf_metric_name(d: &MetricDef, values: &[(&str, &str)]) -> Option<String> {
    let mut name = d.emf?.to_string();
    for l in d.labels {
        if emf_label(l) == EmfLabel::Qualifier {
            let (_, v) = values.iter().find(|(k, _)| k == l)?;
            name.push_str(&pascal(v));
        }
    }
    Some(name)
}

fn has_qualifiers(d: &MetricDef) -> bool {
    d.labels.iter().any(|l| emf_label(l) == EmfLabel::Qualifier)
}

fn has_stage(d: &MetricDef) -> bool {
    d.labels.iter().any(|l| emf_label(l) == EmfLabel::Component)
}

fn per_tenant(d: &MetricDef) -> bool {
    d.labels.contains(&"tenant")
}

/// `export_upload` -> `ExportUpload`, `logs-tenant-a` -> `LogsTenantA`.
fn pascal(s: &str) -> String {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// A number as PromQL, CloudWatch and JSON read it (Rust never writes an
/// exponent).
fn num(v: f64) -> String {
    format!("{v}")
}

/// `1 - v` without the float noise (`1 - 0.999` is 0.001).
fn complement(v: f64) -> f64 {
    ((1.0 - v) * 1e12).round() / 1e12
}

/// `v` seconds in `unit` (milliseconds for Kinesis lag).
fn from_seconds(v: f64, unit: Unit) -> f64 {
    match unit {
        Unit::Milliseconds => v * 1000.0,
        _ => v,
    }
}

/// `v` (in `unit`) in milliseconds, AWS/Lambda's and AWS/Kinesis's unit.
fn to_ms(v: f64, unit: Unit) -> f64 {
    match unit {
        Unit::Seconds | Unit::Timestamp => v * 1000.0,
        _ => v,
    }
}

/// The KPI measured directly on metric `d`, if exactly one is.
fn direct_kpi(d: &MetricDef, t: &Thresholds) -> Option<KpiDef> {
    let mut ks = kpi::table(t)
        .into_iter()
        .filter(|k| kpi_metric(k.id) == Some(d.name));
    let k = ks.next()?;
    ks.next().is_none().then_some(k)
}

/// The catalogue metric a KPI is computed from.
fn kpi_metric(id: &str) -> Option<&'static str> {
    let name = match id {
        KPI_E2E => "end_to_end_latency",
        KPI_FORWARDER => "put_records",
        KPI_LAG => "source_lag",
        KPI_TRANSFER | KPI_LOAD => "operations",
        KPI_COST => "kpi_status",
        _ => return None,
    };
    catalog::get(name).map(|d| d.name)
}

/// A KPI bound in the unit of the metric it is measured on.
fn kpi_in_unit(k: &KpiDef, d: &MetricDef, v: f64) -> f64 {
    if k.unit == "s" {
        from_seconds(v, d.unit)
    } else {
        v
    }
}

/// The KPI's target and critical bound as the KPI table writes them.
fn kpi_texts(k: &KpiDef, t: &Thresholds) -> (String, String) {
    kpi::evaluate(&KpiInputs::default(), t)
        .into_iter()
        .find(|r| r.id == k.id)
        .map(|r| (r.target, r.critical))
        .unwrap_or_default()
}

fn unit_label(u: Unit) -> &'static str {
    match u {
        Unit::Count => "count",
        Unit::Seconds | Unit::Timestamp => "seconds",
        Unit::Milliseconds => "milliseconds",
        Unit::Bytes => "bytes",
        Unit::Ratio => "ratio",
    }
}

// ---------------------------------------------------------------------------
// CloudWatch dashboard.

/// A double-quoted exact term of a CloudWatch SEARCH (`"` `\` `(` `)` and
/// the enclosing `'` escaped).
fn cw_exact(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '(' | ')' | '\'') {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

/// The metric-name term of a SEARCH for `d`: exact when CloudWatch holds it
/// under its EMF name alone, a (case-sensitive, composite-token) partial
/// match when qualifiers follow it, excluding the other EMF names that
/// contain it (`Records` is not `PutRecords`).
fn cw_name_term(d: &MetricDef, emf: &str) -> String {
    if !has_qualifiers(d) {
        return format!("MetricName={}", cw_exact(emf));
    }
    let mut term = format!("MetricName={emf}");
    for other in CATALOG.iter().filter_map(|o| o.emf) {
        if other != emf && other.contains(emf) {
            term.push_str(&format!(" NOT MetricName={other}"));
        }
    }
    term
}

/// A SEARCH over `d`'s EMF schema in the environment, with `term` naming the
/// metric(s).
fn cw_search(i: &DashboardInput, d: &MetricDef, term: &str, stat: &str) -> String {
    let mut schema = vec![cw_exact(&i.namespace)];
    schema.extend(emf_dimensions(d).into_iter().map(String::from));
    format!(
        "SEARCH('{{{}}} {term} Environment={}', '{stat}', {PERIOD})",
        schema.join(","),
        cw_exact(&i.environment)
    )
}

/// The dynamic label of a SEARCH's series: its dimensions and name.
fn cw_search_label(d: &MetricDef) -> String {
    let mut parts: Vec<String> = emf_dimensions(d)
        .into_iter()
        .filter(|dim| *dim != "Environment")
        .map(|dim| format!("${{PROP('Dim.{dim}')}}"))
        .collect();
    parts.push("${PROP('MetricName')}".into());
    parts.join(" ")
}

fn cw_stat(d: &MetricDef) -> &'static str {
    match d.kind {
        Kind::Counter => "Sum",
        Kind::Histogram => "p95",
        Kind::Gauge => "Maximum",
    }
}

/// The lines of a graph of `d` and the next expression id.
fn cw_emf_lines(i: &DashboardInput, d: &MetricDef, next: &mut usize) -> Vec<Value> {
    let Some(emf) = d.emf else {
        return Vec::new();
    };
    let stat = cw_stat(d);
    let exact_ok = !has_qualifiers(d) && !has_stage(d);
    if exact_ok && (!per_tenant(d) || !i.tenants.is_empty()) {
        let base = vec![
            json!(i.namespace),
            json!(emf),
            json!("Component"),
            json!(d.component.as_str()),
            json!("Environment"),
            json!(i.environment),
        ];
        if per_tenant(d) {
            return i
                .tenants
                .iter()
                .map(|t| {
                    let mut l = base.clone();
                    l.extend([json!("Tenant"), json!(t), json!({"stat": stat, "label": t})]);
                    Value::Array(l)
                })
                .collect();
        }
        let mut l = base;
        l.push(json!({"stat": stat, "label": emf}));
        return vec![Value::Array(l)];
    }
    *next += 1;
    vec![json!([{
        "expression": cw_search(i, d, &cw_name_term(d, emf), stat),
        "id": format!("e{next}"),
        "label": cw_search_label(d),
        "period": PERIOD,
    }])]
}

fn cw_annotation(label: String, value: f64, critical: bool, right: bool) -> Value {
    json!({
        "label": label,
        "value": value,
        "color": if critical { "#d62728" } else { "#ff7f0e" },
        "yAxis": if right { "right" } else { "left" },
    })
}

/// A metric widget (placed later).
fn cw_widget(
    i: &DashboardInput,
    title: &str,
    metrics: Vec<Value>,
    stat: &str,
    annotations: Vec<Value>,
    left: &str,
    right: Option<&str>,
) -> Value {
    let mut y = json!({"left": {"label": left, "showUnits": false, "min": 0}});
    if let Some(r) = right {
        y["right"] = json!({"label": r, "showUnits": false, "min": 0});
    }
    let mut props = json!({
        "title": title,
        "region": i.region,
        "view": "timeSeries",
        "stacked": false,
        "stat": stat,
        "period": PERIOD,
        "metrics": metrics,
        "yAxis": y,
    });
    if !annotations.is_empty() {
        props["annotations"] = json!({"horizontal": annotations});
    }
    json!({"type": "metric", "width": 12, "height": 6, "properties": props})
}

/// The forwarders' Lambda Duration target of the guide, in ms.
fn lambda_duration_target_ms() -> Option<(f64, &'static str)> {
    CATALOG
        .iter()
        .find(|d| d.guide == Some("Lambda Duration"))
        .and_then(|d| d.target.map(|t| (to_ms(t.value, d.unit), t.text)))
}

fn cw_lambda_widget(i: &DashboardInput, title: &str, functions: &[String]) -> Value {
    let mut metrics = Vec::new();
    let line = |name: &str, f: Option<&str>, stat: &str, right: bool| {
        let mut l = vec![json!(LAMBDA_NS), json!(name)];
        if let Some(f) = f {
            l.extend([json!("FunctionName"), json!(f)]);
        }
        let who = f.unwrap_or("all functions");
        let mut o = json!({"stat": stat, "label": format!("{who} {name}")});
        if right {
            o["yAxis"] = json!("right");
        }
        l.push(o);
        Value::Array(l)
    };
    let fs: Vec<Option<&str>> = if functions.is_empty() {
        // AWS/Lambda's account-wide series (no dimension) always exist.
        vec![None]
    } else {
        functions.iter().map(|f| Some(f.as_str())).collect()
    };
    for f in fs {
        metrics.push(line("Invocations", f, "Sum", false));
        metrics.push(line("Errors", f, "Sum", false));
        metrics.push(line("Throttles", f, "Sum", false));
        metrics.push(line("Duration", f, "p95", true));
    }
    let ann = lambda_duration_target_ms()
        .map(|(v, text)| {
            vec![cw_annotation(
                format!("Lambda Duration {text}"),
                v,
                false,
                true,
            )]
        })
        .unwrap_or_default();
    cw_widget(
        i,
        title,
        metrics,
        "Sum",
        ann,
        "count",
        Some("Duration p95 (ms)"),
    )
}

fn cw_kinesis_widget(i: &DashboardInput) -> Value {
    let mut metrics = Vec::new();
    let series = [
        (INCOMING_RECORDS, "Sum", false),
        (WRITE_EXCEEDED, "Sum", false),
        (READ_EXCEEDED, "Sum", false),
        (ITERATOR_AGE, "Maximum", true),
    ];
    if i.streams.is_empty() {
        for (n, (name, stat, right)) in series.iter().enumerate() {
            let mut e = json!({
                "expression": format!(
                    "SEARCH('{{{},StreamName}} MetricName={}', '{stat}', {PERIOD})",
                    cw_exact(KINESIS_NS),
                    cw_exact(name)
                ),
                "id": format!("k{n}"),
                "label": format!("${{PROP('Dim.StreamName')}} {name}"),
                "period": PERIOD,
            });
            if *right {
                e["yAxis"] = json!("right");
            }
            metrics.push(json!([e]));
        }
    }
    for s in &i.streams {
        for (name, stat, right) in series {
            let mut o = json!({"stat": stat, "label": format!("{s} {name}")});
            if right {
                o["yAxis"] = json!("right");
            }
            metrics.push(json!([KINESIS_NS, name, "StreamName", s, o]));
        }
    }
    let t = &i.thresholds;
    let ann = vec![
        cw_annotation(
            format!("lag target < {} s", num(t.stream_lag_target_s)),
            from_seconds(t.stream_lag_target_s, Unit::Milliseconds),
            false,
            true,
        ),
        cw_annotation(
            format!("lag critical < {} s", num(t.stream_lag_critical_s)),
            from_seconds(t.stream_lag_critical_s, Unit::Milliseconds),
            true,
            true,
        ),
    ];
    cw_widget(
        i,
        "Tenant Kinesis Streams",
        metrics,
        "Sum",
        ann,
        "records / throttled requests",
        Some("IteratorAge (ms)"),
    )
}

/// Annotations at `d`'s guide target or its KPI's bounds, on `right` or
/// left.
fn cw_target_annotations(d: &MetricDef, t: &Thresholds, right: bool) -> Vec<Value> {
    if let Some(k) = direct_kpi(d, t) {
        let (target, critical) = kpi_texts(&k, t);
        return vec![
            cw_annotation(
                format!("{} target {target}", k.name),
                kpi_in_unit(&k, d, k.target),
                false,
                right,
            ),
            cw_annotation(
                format!("{} critical {critical}", k.name),
                kpi_in_unit(&k, d, k.critical),
                true,
                right,
            ),
        ];
    }
    d.target
        .map(|g| {
            vec![cw_annotation(
                format!("{} {}", d.guide.unwrap_or(d.name), g.text),
                g.value,
                false,
                right,
            )]
        })
        .unwrap_or_default()
}

/// The graph of one EMF metric: its series, and for a success-rate target
/// (a counter with outcomes) the share of `ok` on the right axis.
fn cw_emf_widget(i: &DashboardInput, d: &MetricDef) -> Option<Value> {
    let emf = d.emf?;
    let mut next = 0;
    let mut metrics = cw_emf_lines(i, d, &mut next);
    let ratio = d.kind == Kind::Counter
        && d.labels.contains(&"outcome")
        && d.target.is_some_and(|g| g.direction == Direction::Above);
    let (ann, right) = if ratio {
        let ok_name = emf_metric_name(d, &[("outcome", OK)])?;
        let ok = cw_search(i, d, &format!("MetricName={}", cw_exact(&ok_name)), "Sum");
        let all = metrics
            .first()
            .and_then(|l| l.get(0))
            .and_then(|e| e.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("e1")
            .to_string();
        metrics.push(json!([{"expression": ok, "id": "eok", "label": ok_name, "visible": false}]));
        metrics.push(json!([{
            "expression": format!("SUM(eok)/SUM({all})"),
            "id": "rate",
            "label": format!("{emf} success"),
            "yAxis": "right",
        }]));
        (
            cw_target_annotations(d, &i.thresholds, true),
            Some("success ratio"),
        )
    } else {
        (cw_target_annotations(d, &i.thresholds, false), None)
    };
    let title = format!("{}: {emf} ({})", d.component.as_str(), d.unit.cloudwatch());
    Some(cw_widget(
        i,
        &title,
        metrics,
        cw_stat(d),
        ann,
        d.unit.cloudwatch(),
        right,
    ))
}

/// The guide's "Cross-Cloud Transfer": the Export component's EMF metrics
/// and the export uploads by outcome.
fn cw_transfer_widget(i: &DashboardInput) -> Value {
    let mut metrics = Vec::new();
    let mut ann = Vec::new();
    let mut next = 100;
    for d in CATALOG
        .iter()
        .filter(|d| d.component == catalog::Component::Export && d.emf.is_some())
    {
        metrics.extend(cw_emf_lines(i, d, &mut next));
        ann.extend(cw_target_annotations(d, &i.thresholds, false));
    }
    if let Some(d) = catalog::get("operations")
        && let Some(emf) = d.emf
    {
        // `Operations` + `ExportUpload` matches every outcome's series.
        let term = format!("MetricName={emf}{}", pascal(EXPORT_UPLOAD));
        metrics.push(json!([{
            "expression": cw_search(i, d, &term, "Sum"),
            "id": "uploads",
            "label": cw_search_label(d),
            "yAxis": "right",
            "period": PERIOD,
        }]));
    }
    cw_widget(
        i,
        "Cross-Cloud Transfer",
        metrics,
        "p95",
        ann,
        "seconds",
        Some("export uploads"),
    )
}

/// Places widgets two to a row of CloudWatch's 24 columns.
fn cw_place(widgets: Vec<Value>) -> Vec<Value> {
    widgets
        .into_iter()
        .enumerate()
        .map(|(n, mut w)| {
            let n = n as u64;
            w["x"] = json!((n % 2) * 12);
            w["y"] = json!((n / 2) * 6);
            w
        })
        .collect()
}

/// A CloudWatch dashboard body (what `PutDashboard` takes as
/// `DashboardBody`): the guide's "Client Log Forwarders" (AWS/Lambda per
/// forwarder function, or account-wide when none is configured), "Tenant
/// Kinesis Streams" (AWS/Kinesis per stream, with the lag KPI's bounds),
/// "Cross-Cloud Transfer", logferry's own Lambda, and one graph per EMF
/// metric of the catalogue with its guide target or KPI bounds as
/// horizontal annotations, in the metric's unit.
pub fn cloudwatch_dashboard(i: &DashboardInput) -> Value {
    let mut widgets = vec![
        cw_lambda_widget(i, "Client Log Forwarders", &i.forwarder_functions),
        cw_kinesis_widget(i),
        cw_transfer_widget(i),
        cw_lambda_widget(
            i,
            &format!("logferry Lambda ({})", i.lambda_function),
            std::slice::from_ref(&i.lambda_function),
        ),
    ];
    let mut emf: Vec<&MetricDef> = CATALOG
        .iter()
        .filter(|d| d.emf.is_some() && d.component != catalog::Component::Export)
        .collect();
    emf.sort_by_key(|d| d.component);
    widgets.extend(emf.into_iter().filter_map(|d| cw_emf_widget(i, d)));
    json!({
        "start": "-PT6H",
        "periodOverride": "inherit",
        "widgets": cw_place(widgets),
    })
}

// ---------------------------------------------------------------------------
// Cloud Monitoring dashboard.

fn gmp_kind(k: Kind) -> &'static str {
    match k {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    }
}

/// A Cloud Monitoring filter string value.
fn gq(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The filter of a logferry series in Google Managed Service for
/// Prometheus: `prometheus.googleapis.com/<sample name>/<kind>`.
fn gmp_filter(d: &MetricDef, labels: &[(&str, &str)]) -> String {
    let mut f = format!(
        "metric.type={} resource.type=\"prometheus_target\"",
        gq(&format!(
            "prometheus.googleapis.com/{}/{}",
            d.sample_name(),
            gmp_kind(d.kind)
        ))
    );
    for (k, v) in labels {
        f.push_str(&format!(" metric.label.{}={}", gq(k), gq(v)));
    }
    f
}

fn group_by(labels: &[&str]) -> Vec<String> {
    labels
        .iter()
        .map(|l| format!("metric.label.{}", gq(l)))
        .collect()
}

fn gcp_agg(aligner: &str, reducer: &str, by: Vec<String>) -> Value {
    json!({
        "alignmentPeriod": "60s",
        "perSeriesAligner": aligner,
        "crossSeriesReducer": reducer,
        "groupByFields": by,
    })
}

/// The aggregation that makes a logferry series readable: P95 of a
/// histogram, rate of a counter, maximum of a gauge; by `by`.
fn gmp_agg(d: &MetricDef, by: &[&str]) -> Value {
    let by = group_by(by);
    match d.kind {
        Kind::Histogram => gcp_agg("ALIGN_DELTA", "REDUCE_PERCENTILE_95", by),
        Kind::Counter => gcp_agg("ALIGN_RATE", "REDUCE_SUM", by),
        Kind::Gauge => gcp_agg("ALIGN_MAX", "REDUCE_MAX", by),
    }
}

fn gcp_data_set(filter: String, aggregation: Value, legend: Option<String>) -> Value {
    let mut ds = json!({
        "timeSeriesQuery": {"timeSeriesFilter": {"filter": filter, "aggregation": aggregation}},
        "plotType": "LINE",
        "minAlignmentPeriod": "60s",
    });
    if let Some(l) = legend {
        ds["legendTemplate"] = json!(l);
    }
    ds
}

fn gcp_threshold(label: String, value: f64, critical: bool, bad: Direction) -> Value {
    json!({
        "label": label,
        "value": value,
        "color": if critical { "RED" } else { "YELLOW" },
        "direction": match bad {
            Direction::Above => "ABOVE",
            Direction::Below => "BELOW",
        },
        "targetAxis": "Y1",
    })
}

/// The side a metric is bad on.
fn bad_side(good: Direction) -> Direction {
    match good {
        Direction::Below => Direction::Above,
        Direction::Above => Direction::Below,
    }
}

fn gcp_tile(title: &str, data_sets: Vec<Value>, thresholds: Vec<Value>, y: &str) -> Value {
    let mut chart = json!({
        "dataSets": data_sets,
        "chartOptions": {"mode": "COLOR"},
        "yAxis": {"label": y, "scale": "LINEAR"},
    });
    if !thresholds.is_empty() {
        chart["thresholds"] = json!(thresholds);
    }
    json!({"width": 6, "height": 4, "widget": {"title": title, "xyChart": chart}})
}

/// (label, value) pairs.
type LabelValues<'a> = &'a [(&'a str, &'a str)];

/// The tile of a logferry metric, with its KPI's bounds or its guide
/// target as thresholds.
fn gmp_tile(
    title: &str,
    d: &MetricDef,
    by: &[&str],
    sets: &[(LabelValues, Option<String>)],
    t: &Thresholds,
) -> Value {
    let data_sets = sets
        .iter()
        .map(|(labels, legend)| gcp_data_set(gmp_filter(d, labels), gmp_agg(d, by), legend.clone()))
        .collect();
    let mut th = Vec::new();
    if let Some(k) = direct_kpi(d, t) {
        let (target, critical) = kpi_texts(&k, t);
        let bad = bad_side(k.direction);
        th.push(gcp_threshold(
            format!("target {target}"),
            kpi_in_unit(&k, d, k.target),
            false,
            bad,
        ));
        th.push(gcp_threshold(
            format!("critical {critical}"),
            kpi_in_unit(&k, d, k.critical),
            true,
            bad,
        ));
    } else if let Some(g) = d.target {
        let stage = if has_stage(d) {
            format!(" (stage {FORWARD_STAGE})")
        } else {
            String::new()
        };
        th.push(gcp_threshold(
            format!("guide {}{stage}", g.text),
            g.value,
            false,
            bad_side(g.direction),
        ));
    }
    gcp_tile(title, data_sets, th, unit_label(d.unit))
}

/// A Cloud Monitoring dashboard (`gcloud monitoring dashboards create
/// --config-from-file`): BigQuery load-job ingestion and storage of the
/// dataset, bytes into the export bucket, BigQuery query execution times
/// (as the guide), and logferry's own series through Google Managed Service
/// for Prometheus: end-to-end latency P95 per tenant (with the KPI's target
/// and critical bound), records received and loaded per tenant, source lag
/// per stream, bytes over the transit link, the KPI status, and every other
/// catalogue metric with a guide target. Tiles are 6 wide, two to a row of
/// 12 columns.
pub fn gcp_dashboard(i: &DashboardInput) -> Value {
    let t = &i.thresholds;
    let dataset = format!(
        "resource.type=\"bigquery_dataset\" resource.label.\"project_id\"={} resource.label.\"dataset_id\"={}",
        gq(&i.gcp_project),
        gq(&i.bigquery_dataset)
    );
    let mut tiles = vec![
        gcp_tile(
            &format!("BigQuery load jobs: rows uploaded to {}", i.bigquery_dataset),
            vec![gcp_data_set(
                format!(
                    "metric.type=\"bigquery.googleapis.com/storage/uploaded_row_count\" {dataset}"
                ),
                gcp_agg(
                    "ALIGN_RATE",
                    "REDUCE_SUM",
                    vec!["metric.label.\"table\"".into(), "metric.label.\"api\"".into()],
                ),
                None,
            )],
            vec![],
            "rows/s",
        ),
        gcp_tile(
            &format!("BigQuery stored bytes: {}", i.bigquery_dataset),
            vec![gcp_data_set(
                format!("metric.type=\"bigquery.googleapis.com/storage/stored_bytes\" {dataset}"),
                gcp_agg(
                    "ALIGN_MEAN",
                    "REDUCE_SUM",
                    vec!["metric.label.\"table\"".into()],
                ),
                None,
            )],
            vec![],
            "bytes",
        ),
        gcp_tile(
            &format!("Export bucket gs://{}: bytes received", i.export_bucket),
            vec![gcp_data_set(
                format!(
                    "metric.type=\"storage.googleapis.com/network/received_bytes_count\" resource.type=\"gcs_bucket\" resource.label.\"bucket_name\"={}",
                    gq(&i.export_bucket)
                ),
                gcp_agg("ALIGN_RATE", "REDUCE_SUM", vec![]),
                None,
            )],
            vec![],
            "bytes/s",
        ),
        gcp_tile(
            "BigQuery query execution times",
            ["50", "95"]
                .iter()
                .map(|p| {
                    gcp_data_set(
                        format!(
                            "metric.type=\"bigquery.googleapis.com/query/execution_times\" resource.label.\"project_id\"={}",
                            gq(&i.gcp_project)
                        ),
                        gcp_agg(&format!("ALIGN_PERCENTILE_{p}"), "REDUCE_MAX", vec![]),
                        Some(format!("P{p}")),
                    )
                })
                .collect(),
            vec![],
            "seconds",
        ),
    ];
    let mut tiled = BTreeSet::new();
    if let Some(d) = catalog::get("end_to_end_latency") {
        tiled.insert(d.name);
        tiles.push(gmp_tile(
            "End-to-end latency P95 by tenant (event time to queryable)",
            d,
            &["tenant"],
            &[(&[], None)],
            t,
        ));
    }
    if let Some(d) = catalog::get("records") {
        tiled.insert(d.name);
        tiles.push(gmp_tile(
            "Records per tenant: received and loaded",
            d,
            &["tenant"],
            &[
                (
                    &[("outcome", RECEIVED)],
                    Some(format!("${{metric.labels.tenant}} {RECEIVED}")),
                ),
                (
                    &[("outcome", LOADED)],
                    Some(format!("${{metric.labels.tenant}} {LOADED}")),
                ),
            ],
            t,
        ));
    }
    if let Some(d) = catalog::get("source_lag") {
        tiled.insert(d.name);
        tiles.push(gmp_tile(
            "Tenant stream source lag (largest shard)",
            d,
            &["stream"],
            &[(&[], None)],
            t,
        ));
    }
    if let Some(d) = catalog::get("transit") {
        tiled.insert(d.name);
        tiles.push(gmp_tile(
            "Bytes over the transit link",
            d,
            &["kind"],
            &[(&[], None)],
            t,
        ));
    }
    if let Some(d) = catalog::get("kpi_status") {
        tiled.insert(d.name);
        let mut tile = gmp_tile(
            "KPI status (0 pass, 1 warn, 2 fail, -1 no data)",
            d,
            &["kpi"],
            &[(&[], None)],
            t,
        );
        tile["widget"]["xyChart"]["thresholds"] = json!([
            gcp_threshold(
                "warn".into(),
                KpiStatus::Warn.gauge() as f64,
                false,
                Direction::Above
            ),
            gcp_threshold(
                "fail".into(),
                KpiStatus::Fail.gauge() as f64,
                true,
                Direction::Above
            ),
        ]);
        tiles.push(tile);
    }
    for d in CATALOG
        .iter()
        .filter(|d| d.target.is_some() && d.kind != Kind::Counter && !tiled.contains(d.name))
    {
        let title = format!("{} ({})", d.guide.unwrap_or(d.name), d.prometheus_name());
        tiles.push(gmp_tile(&title, d, d.labels, &[(&[], None)], t));
    }
    let tiles: Vec<Value> = tiles
        .into_iter()
        .enumerate()
        .map(|(n, mut tile)| {
            let n = n as u64;
            tile["xPos"] = json!((n % 2) * 6);
            tile["yPos"] = json!((n / 2) * 4);
            tile
        })
        .collect();
    json!({
        "displayName": format!("logferry {}: pipeline performance", i.environment),
        "mosaicLayout": {"columns": 12, "tiles": tiles},
    })
}

// ---------------------------------------------------------------------------
// Prometheus alerting rules.

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Warning,
    Critical,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alerting rule.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    alert: String,
    expr: String,
    for_: &'static str,
    severity: Severity,
    labels: Vec<(&'static str, String)>,
    summary: String,
    description: String,
}

/// A rule group.
#[derive(Debug, Clone, PartialEq)]
struct Group {
    name: &'static str,
    rules: Vec<Rule>,
}

/// A PromQL string literal.
fn pq(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `{a="x",b="y"}` (empty when no matcher).
fn matchers(m: &[(&str, &str)]) -> String {
    if m.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", pq(v))).collect();
    format!("{{{}}}", inner.join(","))
}

/// `sum by (a, b) ` or `sum `.
fn agg_by(op: &str, by: &[&str]) -> String {
    if by.is_empty() {
        format!("{op} ")
    } else {
        format!("{op} by ({}) ", by.join(", "))
    }
}

/// The alerting comparison for a good `direction`.
fn bad_op(direction: Direction) -> &'static str {
    match direction {
        Direction::Below => ">",
        Direction::Above => "<",
    }
}

/// `{{ $value }}` rendered for a value in `unit`.
fn value_tmpl(unit: Unit, share: bool) -> &'static str {
    if share {
        return "{{ $value | humanizePercentage }}";
    }
    match unit {
        Unit::Seconds | Unit::Timestamp => "{{ $value | humanizeDuration }}",
        Unit::Milliseconds => "{{ $value }} ms",
        Unit::Bytes => "{{ $value | humanize1024 }}B",
        Unit::Ratio => "{{ $value | humanizePercentage }}",
        Unit::Count => "{{ $value }}",
    }
}

/// `tenant {{ $labels.tenant }}: ` for the labels an alert keeps.
fn labels_tmpl(by: &[&str]) -> String {
    by.iter()
        .map(|l| format!("{l} {{{{ $labels.{l} }}}}: "))
        .collect()
}

/// Help text safe inside an annotation template.
fn help(d: &MetricDef) -> String {
    d.help.replace("{{", "{ {").replace("}}", "} }")
}

/// The expression of a KPI's rule at `bound`, the labels it keeps and its
/// value's unit, or `None` when the catalogue lacks what it needs.
fn kpi_expr(k: &KpiDef, sev: Severity, bound: f64) -> Option<(String, Vec<&'static str>, String)> {
    let d = catalog::get(kpi_metric(k.id)?)?;
    let op = bad_op(k.direction);
    let v = num(kpi_in_unit(k, d, bound));
    let keep = |drop: &[&str]| -> Vec<&'static str> {
        d.labels
            .iter()
            .copied()
            .filter(|l| !drop.contains(l))
            .collect()
    };
    match k.id {
        KPI_E2E => {
            let by = keep(&[]);
            let mut with_le = vec!["le"];
            with_le.extend(&by);
            let expr = format!(
                "histogram_quantile(0.95, {}(rate({}_bucket[5m]))) {op} {v}",
                agg_by("sum", &with_le),
                d.prometheus_name()
            );
            let summary = format!(
                "{}end-to-end latency P95 is {}",
                labels_tmpl(&by),
                value_tmpl(d.unit, false)
            );
            Some((expr, by, summary))
        }
        KPI_FORWARDER => {
            d.labels.contains(&"outcome").then_some(())?;
            let by = keep(&["outcome"]);
            let s = d.sample_name();
            let expr = format!(
                "{}(rate({s}{}[5m])) / {}(rate({s}[5m])) {op} {v}",
                agg_by("sum", &by),
                matchers(&[("outcome", OK)]),
                agg_by("sum", &by)
            );
            let summary = format!(
                "{}PutRecords success is {}",
                labels_tmpl(&by),
                value_tmpl(d.unit, true)
            );
            Some((expr, by, summary))
        }
        KPI_LAG => {
            d.labels.contains(&"stream").then_some(())?;
            let by = vec!["stream"];
            let expr = format!("{}({}) {op} {v}", agg_by("max", &by), d.prometheus_name());
            let summary = format!(
                "{}the largest shard is {} behind",
                labels_tmpl(&by),
                value_tmpl(d.unit, false)
            );
            Some((expr, by, summary))
        }
        KPI_TRANSFER | KPI_LOAD => {
            (d.labels.contains(&"operation") && d.labels.contains(&"outcome")).then_some(())?;
            let operation = if k.id == KPI_TRANSFER {
                EXPORT_UPLOAD
            } else {
                LOAD_JOB
            };
            let s = d.sample_name();
            let expr = format!(
                "sum(increase({s}{}[1h])) / sum(increase({s}{}[1h])) {op} {v}",
                matchers(&[("operation", operation), ("outcome", OK)]),
                matchers(&[("operation", operation)])
            );
            let summary = format!(
                "{operation} success over the last hour is {}",
                value_tmpl(d.unit, true)
            );
            Some((expr, vec![], summary))
        }
        KPI_COST => {
            d.labels.contains(&"kpi").then_some(())?;
            let (cmp, status) = match sev {
                Severity::Warning => (">=", KpiStatus::Warn),
                Severity::Critical => ("==", KpiStatus::Fail),
            };
            let expr = format!(
                "{}{} {cmp} {}",
                d.prometheus_name(),
                matchers(&[("kpi", k.id)]),
                status.gauge()
            );
            let summary = format!(
                "{} is {} (the daemon's evaluation over its window)",
                k.name,
                status.as_str()
            );
            Some((expr, vec![], summary))
        }
        _ => None,
    }
}

/// One warning and one critical rule per KPI of the table.
fn kpi_rules(t: &Thresholds) -> Vec<Rule> {
    let mut rules = Vec::new();
    for k in kpi::table(t) {
        let (target, critical) = kpi_texts(&k, t);
        for (sev, bound) in [
            (Severity::Warning, k.target),
            (Severity::Critical, k.critical),
        ] {
            let Some((expr, _, summary)) = kpi_expr(&k, sev, bound) else {
                continue;
            };
            let missed = match sev {
                Severity::Warning => {
                    format!("misses its target {target} (critical bound {critical})")
                }
                Severity::Critical => {
                    format!("is past its critical bound {critical} (target {target})")
                }
            };
            rules.push(Rule {
                alert: format!("Logferry{}", pascal(k.id)),
                expr,
                for_: "5m",
                severity: sev,
                labels: vec![("kpi", k.id.to_string())],
                summary,
                description: format!("KPI {} {missed}.", k.name),
            });
        }
    }
    rules
}

/// Whether a KPI rule already watches `d`.
fn kpi_watched(d: &MetricDef, t: &Thresholds) -> bool {
    direct_kpi(d, t).is_some()
}

/// A warning per catalogue metric whose guide target no KPI covers.
fn target_rules(t: &Thresholds) -> Vec<Rule> {
    let mut rules = Vec::new();
    for d in CATALOG.iter().filter(|d| !kpi_watched(d, t)) {
        let Some(g) = d.target else { continue };
        let op = bad_op(g.direction);
        let v = num(g.value);
        let by: Vec<&str> = d.labels.to_vec();
        // A stage's target is the guide's per-batch Lambda Duration: the
        // forward stage's (aggregates, exports and load jobs have their own).
        let sel = if has_stage(d) {
            matchers(&[("stage", FORWARD_STAGE)])
        } else {
            String::new()
        };
        let (alert, expr, what) = match (d.kind, g.direction) {
            (Kind::Histogram, _) => {
                let mut with_le = vec!["le"];
                with_le.extend(&by);
                (
                    format!("Logferry{}P95", pascal(d.name)),
                    format!(
                        "histogram_quantile(0.95, {}(rate({}_bucket{sel}[5m]))) {op} {v}",
                        agg_by("sum", &with_le),
                        d.prometheus_name()
                    ),
                    format!("P95 is {}", value_tmpl(d.unit, false)),
                )
            }
            (Kind::Gauge, _) => (
                format!("Logferry{}", pascal(d.name)),
                format!("{}{sel} {op} {v}", d.prometheus_name()),
                format!("is {}", value_tmpl(d.unit, false)),
            ),
            (Kind::Counter, Direction::Below) => (
                format!("Logferry{}", pascal(d.name)),
                format!(
                    "{}(increase({}{sel}[5m])) {op} {v}",
                    agg_by("sum", &by),
                    d.sample_name()
                ),
                format!("{} in 5 minutes", value_tmpl(d.unit, false)),
            ),
            // A success share needs its outcomes: only KPIs have them.
            (Kind::Counter, Direction::Above) => continue,
        };
        let row = d.guide.unwrap_or(d.name);
        rules.push(Rule {
            alert,
            expr,
            for_: "5m",
            severity: Severity::Warning,
            labels: vec![("component", d.component.as_str().to_string())],
            summary: format!("{}{row} {what} (guide target {})", labels_tmpl(&by), g.text),
            description: format!("{}: {}.", d.sample_name(), help(d)),
        });
    }
    rules
}

/// Streams down, failed windows, failing schedules.
fn operational_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    if let Some(d) = catalog::get("stream_up") {
        rules.push(Rule {
            alert: "LogferryStreamDown".into(),
            expr: format!("{} == 0", d.prometheus_name()),
            for_: "5m",
            severity: Severity::Critical,
            labels: vec![],
            summary: format!("{}the stream's reader is down", labels_tmpl(d.labels)),
            description: format!(
                "{}: {}. Its records wait in the stream; they are lost once they pass its retention.",
                d.prometheus_name(),
                help(d)
            ),
        });
    }
    if let Some(d) = catalog::get("windows") {
        rules.push(Rule {
            alert: "LogferryWindowsFailed".into(),
            expr: format!("{}{} > 0", d.prometheus_name(), matchers(&[("state", FAILED)])),
            for_: "5m",
            severity: Severity::Critical,
            labels: vec![],
            summary: "{{ $value }} windows failed and stopped retrying".into(),
            description: format!(
                "{}: {}. Their records are in the lake but not in BigQuery until the windows are run again.",
                d.prometheus_name(),
                help(d)
            ),
        });
    }
    if let Some(d) = catalog::get("schedule_runs") {
        let by: Vec<&str> = d
            .labels
            .iter()
            .copied()
            .filter(|l| *l != "outcome")
            .collect();
        rules.push(Rule {
            alert: "LogferryScheduleFailing".into(),
            expr: format!(
                "{}(increase({}{}[15m])) > 0",
                agg_by("sum", &by),
                d.sample_name(),
                matchers(&[("outcome", FAILED)])
            ),
            for_: "1m",
            severity: Severity::Warning,
            labels: vec![],
            summary: format!(
                "{}{{{{ $value }}}} failed runs in 15 minutes",
                labels_tmpl(&by)
            ),
            description: format!("{}: {}.", d.sample_name(), help(d)),
        });
    }
    rules
}

fn alert_groups(t: &Thresholds) -> Vec<Group> {
    vec![
        Group {
            name: "logferry-kpi",
            rules: kpi_rules(t),
        },
        Group {
            name: "logferry-guide-targets",
            rules: target_rules(t),
        },
        Group {
            name: "logferry-operations",
            rules: operational_rules(),
        },
    ]
}

/// A YAML double-quoted scalar.
fn yq(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                o.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn rules_yaml(groups: &[Group]) -> String {
    let mut y = String::from(
        "# Prometheus alerting rules for logferry, rendered from its metric catalogue\n\
         # and the [kpi] thresholds: warning at a KPI's target, critical at its\n\
         # critical bound; warnings at the guide's other targets; operational alerts.\n\
         groups:\n",
    );
    for g in groups {
        y.push_str(&format!("  - name: {}\n    rules:\n", yq(g.name)));
        for r in &g.rules {
            y.push_str(&format!("      - alert: {}\n", yq(&r.alert)));
            y.push_str(&format!("        expr: {}\n", yq(&r.expr)));
            y.push_str(&format!("        for: {}\n", yq(r.for_)));
            y.push_str("        labels:\n");
            y.push_str(&format!(
                "          severity: {}\n",
                yq(r.severity.as_str())
            ));
            for (k, v) in &r.labels {
                y.push_str(&format!("          {k}: {}\n", yq(v)));
            }
            y.push_str("        annotations:\n");
            y.push_str(&format!("          summary: {}\n", yq(&r.summary)));
            y.push_str(&format!("          description: {}\n", yq(&r.description)));
        }
    }
    y
}

/// Prometheus alerting rules (a `rule_files` entry): per KPI a warning at
/// its target and a critical alert at its critical bound (end-to-end P95
/// per tenant, PutRecords success per stream, source lag per stream,
/// transfer and load success, cost per million through `kpi_status`); a
/// warning at each other guide target of the catalogue (DLQ share, memory
/// pressure, stage and write latencies...); and operational alerts
/// (a stream's reader down, failed windows, a failing schedule).
pub fn prometheus_alerts(i: &DashboardInput) -> String {
    rules_yaml(&alert_groups(&i.thresholds))
}

// ---------------------------------------------------------------------------
// CloudWatch alarms (CloudFormation).

/// The alarms being built, under unique alphanumeric logical ids.
struct Alarms<'a> {
    i: &'a DashboardInput,
    resources: Map<String, Value>,
    ids: BTreeSet<String>,
}

/// What an alarm watches.
#[derive(Debug, Clone)]
enum Watch {
    /// One metric: namespace, name, dimensions, statistic, period.
    Metric(String, String, Vec<(String, String)>, &'static str, u32),
    /// Metric math or a Metrics Insights query over `Metrics`.
    Queries(Vec<Value>),
}

/// One alarm's settings.
struct AlarmSpec {
    id: Vec<String>,
    name: String,
    description: String,
    watch: Watch,
    op: &'static str,
    threshold: f64,
    evaluation_periods: u32,
    datapoints: u32,
}

impl Alarms<'_> {
    fn add(&mut self, a: AlarmSpec) {
        let base: String = a.id.iter().map(|p| pascal(p)).collect::<String>();
        let mut base: String = base.chars().take(240).collect();
        if base.is_empty() {
            base = "Alarm".into();
        }
        let mut id = base.clone();
        let mut n = 2;
        while self.ids.contains(&id) {
            id = format!("{base}{n}");
            n += 1;
        }
        self.ids.insert(id.clone());
        let name: String = format!("{}-{} {}", self.i.namespace, self.i.environment, a.name)
            .chars()
            .take(255)
            .collect();
        let description: String = a.description.chars().take(1024).collect();
        let mut p = json!({
            "AlarmName": name,
            "AlarmDescription": description,
            "ActionsEnabled": true,
            "AlarmActions": [{"Ref": "AlarmTopicArn"}],
            "OKActions": [{"Ref": "AlarmTopicArn"}],
            "ComparisonOperator": a.op,
            "Threshold": a.threshold,
            "EvaluationPeriods": a.evaluation_periods,
            "DatapointsToAlarm": a.datapoints,
            "TreatMissingData": "notBreaching",
        });
        match a.watch {
            Watch::Metric(ns, metric, dims, stat, period) => {
                p["Namespace"] = json!(ns);
                p["MetricName"] = json!(metric);
                p["Dimensions"] = json!(
                    dims.iter()
                        .map(|(k, v)| json!({"Name": k, "Value": v}))
                        .collect::<Vec<_>>()
                );
                p["Period"] = json!(period);
                if stat.starts_with('p') {
                    p["ExtendedStatistic"] = json!(stat);
                } else {
                    p["Statistic"] = json!(stat);
                }
            }
            Watch::Queries(q) => p["Metrics"] = json!(q),
        }
        self.resources.insert(
            id,
            json!({"Type": "AWS::CloudWatch::Alarm", "Properties": p}),
        );
    }
}

fn op_for(bad: Direction) -> &'static str {
    match bad {
        Direction::Above => "GreaterThanThreshold",
        Direction::Below => "LessThanThreshold",
    }
}

/// The exact EMF series of `d` (catalogue component, environment).
fn emf_stat(i: &DashboardInput, d: &MetricDef, id: &str, name: String, period: u32) -> Value {
    json!({
        "Id": id,
        "MetricStat": {
            "Metric": {
                "Namespace": i.namespace,
                "MetricName": name,
                "Dimensions": [
                    {"Name": "Component", "Value": d.component.as_str()},
                    {"Name": "Environment", "Value": i.environment},
                ],
            },
            "Period": period,
            "Stat": "Sum",
        },
        "ReturnData": false,
    })
}

/// A success share of `d`'s qualified series: `ok` over all `outcomes`.
fn share_queries(
    i: &DashboardInput,
    d: &MetricDef,
    fixed: &[(&str, &str)],
    outcomes: &[&str],
    period: u32,
) -> Option<Vec<Value>> {
    let mut q = Vec::new();
    let mut ok_id = None;
    for (n, o) in outcomes.iter().enumerate() {
        let mut vals = fixed.to_vec();
        vals.push(("outcome", o));
        let id = format!("m{n}");
        if *o == OK {
            ok_id = Some(id.clone());
        }
        q.push(emf_stat(i, d, &id, emf_metric_name(d, &vals)?, period));
    }
    let ok = ok_id?;
    let all: Vec<String> = (0..outcomes.len())
        .map(|n| format!("FILL(m{n}, 0)"))
        .collect();
    q.push(json!({
        "Id": "share",
        "Expression": format!("FILL({ok}, 0) / ({})", all.join(" + ")),
        "Label": "success share",
        "ReturnData": true,
    }));
    Some(q)
}

/// A Metrics Insights string literal.
fn iq(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// One aggregated series of `d` over every component: a Metrics Insights
/// query (it has no percentiles: the maximum).
fn insights_max(i: &DashboardInput, d: &MetricDef, emf: &str) -> Vec<Value> {
    let schema: Vec<String> = std::iter::once(format!("\"{}\"", i.namespace.replace('"', "")))
        .chain(emf_dimensions(d).into_iter().map(String::from))
        .collect();
    vec![json!({
        "Id": "q",
        "Expression": format!(
            "SELECT MAX(\"{emf}\") FROM SCHEMA({}) WHERE Environment = {}",
            schema.join(", "),
            iq(&i.environment)
        ),
        "Period": 60,
        "Label": emf,
        "ReturnData": true,
    })]
}

/// A CloudFormation template of `AWS::CloudWatch::Alarm`s notifying the
/// `AlarmTopicArn` parameter: per stream the lag KPI on AWS/Kinesis
/// IteratorAge (warning at the target, critical at the critical bound, in
/// ms) and read/write throttling; per forwarder function its error share
/// (against the forwarder success KPI), throttles and Duration P95 (the
/// guide's Lambda Duration); logferry's own Lambda errors; the PutRecords,
/// transfer and load success KPIs as metric math over the EMF series; and
/// the guide targets of the other EMF metrics (ExportLambdaDuration,
/// BatchProcessingDuration). Returned as JSON text.
pub fn cloudwatch_alarms(i: &DashboardInput) -> String {
    let t = &i.thresholds;
    let mut a = Alarms {
        i,
        resources: Map::new(),
        ids: BTreeSet::new(),
    };
    let kpis = kpi::table(t);
    let kpi = |id: &str| kpis.iter().find(|k| k.id == id);

    for s in &i.streams {
        let dims = vec![("StreamName".to_string(), s.clone())];
        if let Some(k) = kpi(KPI_LAG) {
            let (target, critical) = kpi_texts(k, t);
            for (sev, bound, text) in [
                ("Warning", k.target, target),
                ("Critical", k.critical, critical),
            ] {
                a.add(AlarmSpec {
                    id: vec!["IteratorAge".into(), sev.into(), s.clone()],
                    name: format!("{s} IteratorAge {}", sev.to_lowercase()),
                    description: format!(
                        "{}: stream {s} is behind its reader by more than {text} (KPI {}) for 5 minutes.",
                        sev.to_lowercase(),
                        k.name
                    ),
                    watch: Watch::Metric(
                        KINESIS_NS.into(),
                        ITERATOR_AGE.into(),
                        dims.clone(),
                        "Maximum",
                        60,
                    ),
                    op: op_for(bad_side(k.direction)),
                    threshold: from_seconds(bound, Unit::Milliseconds),
                    evaluation_periods: 5,
                    datapoints: 5,
                });
            }
        }
        a.add(AlarmSpec {
            id: vec!["WriteThrottled".into(), s.clone()],
            name: format!("{s} {WRITE_EXCEEDED}"),
            description: format!(
                "warning: writes into stream {s} are throttled (guide target 0): the tenant may need more shards."
            ),
            watch: Watch::Metric(KINESIS_NS.into(), WRITE_EXCEEDED.into(), dims.clone(), "Sum", 60),
            op: "GreaterThanThreshold",
            threshold: 0.0,
            evaluation_periods: 5,
            datapoints: 3,
        });
        if let Some(d) = CATALOG.iter().find(|d| d.guide == Some(READ_EXCEEDED))
            && let Some(g) = d.target
        {
            a.add(AlarmSpec {
                id: vec!["ReadThrottled".into(), s.clone()],
                name: format!("{s} {READ_EXCEEDED}"),
                description: format!(
                    "warning: reads of stream {s} are throttled (guide target {}).",
                    g.text
                ),
                watch: Watch::Metric(KINESIS_NS.into(), READ_EXCEEDED.into(), dims, "Sum", 60),
                op: op_for(bad_side(g.direction)),
                threshold: g.value,
                evaluation_periods: 5,
                datapoints: 3,
            });
        }
    }

    for f in &i.forwarder_functions {
        let fdim = json!([{"Name": "FunctionName", "Value": f}]);
        if let Some(k) = kpi(KPI_FORWARDER) {
            for (sev, bound) in [("Warning", k.target), ("Critical", k.critical)] {
                let stat = |id: &str, metric: &str| {
                    json!({
                        "Id": id,
                        "MetricStat": {
                            "Metric": {"Namespace": LAMBDA_NS, "MetricName": metric, "Dimensions": fdim},
                            "Period": 300,
                            "Stat": "Sum",
                        },
                        "ReturnData": false,
                    })
                };
                a.add(AlarmSpec {
                    id: vec!["ForwarderErrors".into(), sev.into(), f.clone()],
                    name: format!("{f} error share {}", sev.to_lowercase()),
                    description: format!(
                        "{}: forwarder {f} fails more than {}% of its invocations (KPI {}).",
                        sev.to_lowercase(),
                        num(complement(bound) * 100.0),
                        k.name
                    ),
                    watch: Watch::Queries(vec![
                        stat("errors", "Errors"),
                        stat("invocations", "Invocations"),
                        json!({
                            "Id": "share",
                            "Expression": "errors / invocations",
                            "Label": "error share",
                            "ReturnData": true,
                        }),
                    ]),
                    op: "GreaterThanThreshold",
                    threshold: complement(bound),
                    evaluation_periods: 1,
                    datapoints: 1,
                });
            }
        }
        let fdims = vec![("FunctionName".to_string(), f.clone())];
        a.add(AlarmSpec {
            id: vec!["ForwarderThrottles".into(), f.clone()],
            name: format!("{f} Throttles"),
            description: format!("warning: forwarder {f} is throttled (guide target 0)."),
            watch: Watch::Metric(
                LAMBDA_NS.into(),
                "Throttles".into(),
                fdims.clone(),
                "Sum",
                60,
            ),
            op: "GreaterThanThreshold",
            threshold: 0.0,
            evaluation_periods: 5,
            datapoints: 3,
        });
        if let Some((ms, text)) = lambda_duration_target_ms() {
            a.add(AlarmSpec {
                id: vec!["ForwarderDuration".into(), f.clone()],
                name: format!("{f} Duration p95"),
                description: format!(
                    "warning: forwarder {f}'s Duration P95 is over the guide's Lambda Duration {text}."
                ),
                watch: Watch::Metric(LAMBDA_NS.into(), "Duration".into(), fdims, "p95", 300),
                op: "GreaterThanThreshold",
                threshold: ms,
                evaluation_periods: 3,
                datapoints: 2,
            });
        }
    }

    let own = vec![("FunctionName".to_string(), i.lambda_function.clone())];
    a.add(AlarmSpec {
        id: vec!["LambdaErrors".into(), i.lambda_function.clone()],
        name: format!("{} Errors", i.lambda_function),
        description: format!(
            "warning: logferry's Lambda {} failed invocations (a window run or a landing failed; it is retried).",
            i.lambda_function
        ),
        watch: Watch::Metric(LAMBDA_NS.into(), "Errors".into(), own, "Sum", 300),
        op: "GreaterThanThreshold",
        threshold: 0.0,
        evaluation_periods: 1,
        datapoints: 1,
    });

    // Success KPIs over the EMF series.
    let shares: [(&str, LabelValues, &[&str], u32); 3] = [
        (KPI_FORWARDER, &[], &PUT_OUTCOMES, 300),
        (
            KPI_TRANSFER,
            &[("operation", EXPORT_UPLOAD)],
            &OPERATION_OUTCOMES,
            3600,
        ),
        (
            KPI_LOAD,
            &[("operation", LOAD_JOB)],
            &OPERATION_OUTCOMES,
            3600,
        ),
    ];
    for (kid, fixed, outcomes, period) in shares {
        let (Some(k), Some(d)) = (kpi(kid), kpi_metric(kid).and_then(catalog::get)) else {
            continue;
        };
        let Some(q) = share_queries(i, d, fixed, outcomes, period) else {
            continue;
        };
        let (target, critical) = kpi_texts(k, t);
        for (sev, bound, text) in [
            ("Warning", k.target, target),
            ("Critical", k.critical, critical),
        ] {
            a.add(AlarmSpec {
                id: vec![pascal(kid), sev.into()],
                name: format!("{} {}", k.name, sev.to_lowercase()),
                description: format!(
                    "{}: {} is not {text} over {} minutes.",
                    sev.to_lowercase(),
                    k.name,
                    period / 60
                ),
                watch: Watch::Queries(q.clone()),
                op: op_for(bad_side(k.direction)),
                threshold: bound,
                evaluation_periods: 1,
                datapoints: 1,
            });
        }
    }

    // Guide targets (or KPI bounds) of the other EMF metrics.
    for d in CATALOG.iter() {
        let Some(emf) = d.emf else { continue };
        // Success shares are above; the lag KPI is alarmed per stream on
        // AWS/Kinesis's own IteratorAge.
        let kpi = direct_kpi(d, t);
        if d.kind == Kind::Counter || kpi.is_some_and(|k| k.id == KPI_LAG) {
            continue;
        }
        let (bad, bounds): (Direction, Vec<(&str, f64, String)>) = match (&kpi, d.target) {
            (Some(k), _) => {
                let (target, critical) = kpi_texts(k, t);
                (
                    bad_side(k.direction),
                    vec![
                        (
                            "Warning",
                            kpi_in_unit(k, d, k.target),
                            format!("KPI {} target {target}", k.name),
                        ),
                        (
                            "Critical",
                            kpi_in_unit(k, d, k.critical),
                            format!("KPI {} critical {critical}", k.name),
                        ),
                    ],
                )
            }
            (None, Some(g)) => (
                bad_side(g.direction),
                vec![(
                    "Warning",
                    g.value,
                    format!("guide {} {}", d.guide.unwrap_or(d.name), g.text),
                )],
            ),
            (None, None) => continue,
        };
        let stat = if d.kind == Kind::Histogram {
            "p95"
        } else {
            "Maximum"
        };
        // A stage's target is the guide's per-batch Lambda Duration: the
        // forward stage's (window runs take what a window takes).
        let component = if has_stage(d) {
            catalog::Component::Forward
        } else {
            d.component
        };
        let base = vec![
            ("Component".to_string(), component.as_str().to_string()),
            ("Environment".to_string(), i.environment.clone()),
        ];
        let watches: Vec<(Option<&String>, Watch)> =
            if has_qualifiers(d) || (per_tenant(d) && i.tenants.is_empty()) {
                vec![(None, Watch::Queries(insights_max(i, d, emf)))]
            } else if per_tenant(d) {
                i.tenants
                    .iter()
                    .map(|tn| {
                        let mut dims = base.clone();
                        dims.push(("Tenant".into(), tn.clone()));
                        (
                            Some(tn),
                            Watch::Metric(i.namespace.clone(), emf.into(), dims, stat, 300),
                        )
                    })
                    .collect()
            } else {
                vec![(
                    None,
                    Watch::Metric(i.namespace.clone(), emf.into(), base, stat, 300),
                )]
            };
        for (tenant, watch) in watches {
            for (sev, bound, text) in &bounds {
                let mut id = vec![emf.to_string(), sev.to_string()];
                let mut name = format!("{emf} {}", sev.to_lowercase());
                if let Some(tn) = tenant {
                    id.push(tn.clone());
                    name.push_str(&format!(" {tn}"));
                }
                a.add(AlarmSpec {
                    id,
                    name,
                    description: format!(
                        "{}: {emf}{} {} ({stat}) is past the {text} ({}).",
                        sev.to_lowercase(),
                        tenant
                            .map(|tn| format!(" of tenant {tn}"))
                            .unwrap_or_default(),
                        component.as_str(),
                        d.unit.cloudwatch()
                    ),
                    watch: watch.clone(),
                    op: op_for(bad),
                    threshold: *bound,
                    evaluation_periods: 3,
                    datapoints: 2,
                });
            }
        }
    }

    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!(
            "logferry {} CloudWatch alarms, rendered from the metric catalogue and the [kpi] thresholds",
            i.environment
        ),
        "Parameters": {
            "AlarmTopicArn": {
                "Type": "String",
                "Description": "SNS topic the alarms notify (ALARM and OK)",
                "AllowedPattern": "^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+(\\.fifo)?$",
            }
        },
        "Resources": Value::Object(a.resources),
    });
    format!("{template:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn input() -> DashboardInput {
        DashboardInput {
            namespace: "logferry".into(),
            environment: "production".into(),
            region: "us-east-1".into(),
            tenants: vec!["tenant-a".into(), "tenant-b".into()],
            streams: vec![
                "logs-tenant-a".into(),
                "logs_tenant-a".into(),
                "logs-tenant-b".into(),
            ],
            forwarder_functions: vec!["client-a-forwarder".into(), "client-b-forwarder".into()],
            lambda_function: "logferry".into(),
            gcp_project: "acme-analytics".into(),
            bigquery_dataset: "logferry".into(),
            export_bucket: "acme-logferry-export".into(),
            thresholds: Thresholds::default(),
        }
    }

    fn bare() -> DashboardInput {
        DashboardInput {
            tenants: vec![],
            streams: vec![],
            forwarder_functions: vec![],
            ..input()
        }
    }

    fn def(name: &str) -> &'static MetricDef {
        catalog::get(name).unwrap_or_else(|| panic!("{name} is not in the catalogue"))
    }

    /// Every widget's `metrics` lines, flattened to (widget title, line).
    fn cw_lines(body: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for w in body["widgets"].as_array().unwrap() {
            let title = w["properties"]["title"].as_str().unwrap().to_string();
            for l in w["properties"]["metrics"].as_array().unwrap() {
                out.push((title.clone(), l.clone()));
            }
        }
        out
    }

    /// The metric names a SEARCH or Insights query names (`MetricName=X`,
    /// `MAX("X")`), exact or partial.
    fn named_in_query(q: &str) -> Vec<String> {
        let mut names = Vec::new();
        for part in q.split("MetricName=").skip(1) {
            let n: String = part
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            names.push(n);
        }
        if let Some(rest) = q.split("MAX(\"").nth(1) {
            names.push(rest.chars().take_while(|c| *c != '"').collect());
        }
        names
    }

    /// Whether `name` is, or starts, a catalogue EMF name followed by
    /// qualifiers the metric has.
    fn is_emf_name(name: &str) -> bool {
        CATALOG.iter().any(|d| {
            d.emf
                .is_some_and(|e| name == e || (has_qualifiers(d) && name.starts_with(e)))
        })
    }

    #[test]
    fn cloudwatch_widgets_are_complete_and_placed() {
        for i in [input(), bare()] {
            let body = cloudwatch_dashboard(&i);
            let widgets = body["widgets"].as_array().unwrap();
            assert!(widgets.len() >= 4 + 5, "{}", widgets.len());
            let mut cells = BTreeSet::new();
            for w in widgets {
                let p = &w["properties"];
                let title = p["title"].as_str().unwrap();
                assert_eq!(w["type"], "metric", "{title}");
                assert!(!title.is_empty());
                assert_eq!(p["region"], json!(i.region), "{title}");
                assert!(p["stat"].is_string() && p["period"].is_u64(), "{title}");
                let metrics = p["metrics"].as_array().unwrap();
                assert!(!metrics.is_empty(), "{title}: no metrics");
                for l in metrics {
                    let l = l.as_array().unwrap();
                    assert!(!l.is_empty(), "{title}");
                    if let Some(e) = l[0].get("expression") {
                        let id = l[0]["id"].as_str().unwrap();
                        assert!(id.starts_with(|c: char| c.is_ascii_lowercase()), "{id}");
                        assert!(e.as_str().unwrap().len() <= 1024, "{e}");
                    } else {
                        // [namespace, name, (dim, value)*, {options}?]
                        let strings = l.iter().take_while(|v| v.is_string()).count();
                        assert!(strings >= 2 && strings % 2 == 0, "{title}: {l:?}");
                        assert!(
                            l.len() - strings <= 1 && l[l.len() - 1].is_object()
                                || l.len() == strings
                        );
                    }
                }
                for a in p["annotations"]["horizontal"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    assert!(
                        a["value"].is_f64() && a["label"].is_string(),
                        "{title}: {a}"
                    );
                }
                let (x, y) = (w["x"].as_u64().unwrap(), w["y"].as_u64().unwrap());
                let (wd, ht) = (w["width"].as_u64().unwrap(), w["height"].as_u64().unwrap());
                assert!(x + wd <= 24, "{title}");
                for cx in x..x + wd {
                    for cy in y..y + ht {
                        assert!(cells.insert((cx, cy)), "{title} overlaps at {cx},{cy}");
                    }
                }
            }
            let titles: Vec<&str> = widgets
                .iter()
                .map(|w| w["properties"]["title"].as_str().unwrap())
                .collect();
            for t in [
                "Client Log Forwarders",
                "Tenant Kinesis Streams",
                "Cross-Cloud Transfer",
            ] {
                assert!(titles.contains(&t), "{t} missing: {titles:?}");
            }
        }
    }

    #[test]
    fn cloudwatch_metrics_exist_in_the_catalogue_and_every_emf_metric_is_graphed() {
        let i = input();
        let body = cloudwatch_dashboard(&i);
        let mut graphed = BTreeSet::new();
        for (title, l) in cw_lines(&body) {
            if let Some(e) = l[0].get("expression").and_then(Value::as_str) {
                if e.starts_with("SEARCH") || e.contains("SEARCH(") {
                    assert!(e.contains("Environment=\"production\""), "{e}");
                    for n in named_in_query(e) {
                        if e.contains("logferry") {
                            assert!(is_emf_name(&n), "{title}: {n} is not a catalogue EMF name");
                            graphed.insert(n);
                        }
                    }
                }
                continue;
            }
            let ns = l[0].as_str().unwrap();
            let name = l[1].as_str().unwrap();
            if ns == i.namespace {
                let d = CATALOG
                    .iter()
                    .find(|d| d.emf == Some(name))
                    .unwrap_or_else(|| panic!("{title}: {name} is not a catalogue EMF name"));
                let dims: Vec<&str> = l.as_array().unwrap()[2..]
                    .iter()
                    .filter_map(Value::as_str)
                    .step_by(2)
                    .collect();
                assert_eq!(dims, emf_dimensions(d), "{title}: {name}");
                graphed.insert(name.to_string());
            } else {
                assert!([LAMBDA_NS, KINESIS_NS].contains(&ns), "{title}: {ns}");
            }
        }
        for d in CATALOG.iter().filter(|d| d.emf.is_some()) {
            let e = d.emf.unwrap();
            assert!(
                graphed.iter().any(|g| g.starts_with(e)),
                "{e} is on no graph: {graphed:?}"
            );
        }
    }

    #[test]
    fn cloudwatch_annotations_follow_the_targets_in_the_metrics_units() {
        let body = cloudwatch_dashboard(&input());
        let ann = |title_part: &str| -> Vec<f64> {
            body["widgets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| {
                    w["properties"]["title"]
                        .as_str()
                        .unwrap()
                        .contains(title_part)
                })
                .flat_map(|w| {
                    w["properties"]["annotations"]["horizontal"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|a| a["value"].as_f64().unwrap())
                .collect()
        };
        // IteratorAge in ms (the lag KPI), the EMF durations in seconds.
        assert_eq!(ann("Tenant Kinesis Streams"), vec![1000.0, 5000.0]);
        assert_eq!(ann(": IteratorAge"), vec![1000.0, 5000.0]);
        assert_eq!(ann("BatchProcessingDuration"), vec![5.0]);
        assert_eq!(ann("Cross-Cloud Transfer"), vec![10.0]);
        assert_eq!(ann("Client Log Forwarders"), vec![5000.0]);
        assert_eq!(ann("PutRecords"), vec![0.999, 0.99]);
        let mut t = input();
        t.thresholds.stream_lag_critical_s = 8.0;
        let body = cloudwatch_dashboard(&t);
        assert!(body.to_string().contains("\"value\":8000.0"));
    }

    #[test]
    fn emf_names_and_dimensions_match_the_emitter() {
        use crate::emf::Emf;
        let i = input();
        let d = def("records");
        let name = emf_metric_name(d, &[("outcome", RECEIVED), ("stage", "forward")]).unwrap();
        let doc = Emf::new(&i.namespace, d.component, &i.environment, Some("tenant-a"))
            .metric(d.name, &pascal(RECEIVED), 1.0)
            .to_value(0);
        assert!(doc.get(&name).is_some(), "{name} not in {doc}");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            json!(emf_dimensions(d))
        );
        let doc = Emf::new(&i.namespace, d.component, &i.environment, None).to_value(0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            json!(emf_dimensions(def("export_duration")))
        );
        assert_eq!(
            emf_metric_name(
                def("operations"),
                &[("operation", EXPORT_UPLOAD), ("outcome", OK)]
            )
            .as_deref(),
            Some("OperationsExportUploadOk")
        );
        assert_eq!(emf_metric_name(def("operations"), &[("outcome", OK)]), None);
        assert_eq!(pascal("logs_tenant-a"), "LogsTenantA");
    }

    #[test]
    fn label_values_are_the_catalogues() {
        let word = |d: &MetricDef, v: &str| {
            d.help
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == v)
        };
        for v in PUT_OUTCOMES {
            assert!(word(def("put_records"), v), "put_records outcome {v}");
        }
        for v in OPERATION_OUTCOMES.iter().chain(&[EXPORT_UPLOAD, LOAD_JOB]) {
            assert!(word(def("operations"), v), "operations {v}");
        }
        for v in [RECEIVED, LOADED] {
            assert!(word(def("records"), v), "records outcome {v}");
        }
        assert!(word(def("windows"), FAILED));
        assert!(word(def("stage_duration"), FORWARD_STAGE));
        assert!(word(def("schedule_runs"), FAILED));
        let ids: Vec<&str> = kpi::table(&Thresholds::default())
            .iter()
            .map(|k| k.id)
            .collect();
        for id in [
            KPI_E2E,
            KPI_FORWARDER,
            KPI_LAG,
            KPI_TRANSFER,
            KPI_LOAD,
            KPI_COST,
        ] {
            assert!(ids.contains(&id), "{id}");
            assert!(kpi_metric(id).is_some(), "{id}");
        }
    }

    #[test]
    fn gcp_tiles_fit_twelve_columns_without_overlapping() {
        let g = gcp_dashboard(&input());
        assert_eq!(g["mosaicLayout"]["columns"], 12);
        assert!(g["displayName"].as_str().unwrap().contains("production"));
        let tiles = g["mosaicLayout"]["tiles"].as_array().unwrap();
        assert!(tiles.len() >= 9, "{}", tiles.len());
        let mut cells = BTreeSet::new();
        for t in tiles {
            let title = t["widget"]["title"].as_str().unwrap();
            let (x, y) = (t["xPos"].as_u64().unwrap(), t["yPos"].as_u64().unwrap());
            let (w, h) = (t["width"].as_u64().unwrap(), t["height"].as_u64().unwrap());
            assert!(w > 0 && h > 0 && x + w <= 12, "{title}");
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(cells.insert((cx, cy)), "{title} overlaps at {cx},{cy}");
                }
            }
            let sets = t["widget"]["xyChart"]["dataSets"].as_array().unwrap();
            assert!(!sets.is_empty(), "{title}");
            for s in sets {
                let f = &s["timeSeriesQuery"]["timeSeriesFilter"];
                assert!(
                    f["filter"].as_str().unwrap().starts_with("metric.type=\""),
                    "{title}"
                );
                assert!(f["aggregation"]["perSeriesAligner"].is_string(), "{title}");
                assert_eq!(s["plotType"], "LINE");
            }
        }
    }

    #[test]
    fn gcp_metrics_exist_in_the_catalogue_and_carry_the_kpi_bounds() {
        let i = input();
        let g = gcp_dashboard(&i);
        let text = g.to_string();
        for want in [
            "bigquery.googleapis.com/storage/uploaded_row_count",
            "bigquery.googleapis.com/storage/stored_bytes",
            "storage.googleapis.com/network/received_bytes_count",
            "bigquery.googleapis.com/query/execution_times",
            "acme-logferry-export",
        ] {
            assert!(text.contains(want), "{want}");
        }
        let mut seen = BTreeSet::new();
        for t in g["mosaicLayout"]["tiles"].as_array().unwrap() {
            for s in t["widget"]["xyChart"]["dataSets"].as_array().unwrap() {
                let f = s["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
                    .as_str()
                    .unwrap();
                let Some(rest) = f.split("prometheus.googleapis.com/").nth(1) else {
                    continue;
                };
                let path: String = rest.chars().take_while(|c| *c != '"').collect();
                let (name, kind) = path.split_once('/').unwrap();
                let d = CATALOG
                    .iter()
                    .find(|d| d.sample_name() == name)
                    .unwrap_or_else(|| panic!("{name} is not a catalogue sample name"));
                assert_eq!(kind, gmp_kind(d.kind), "{name}");
                for l in f.split("metric.label.\"").skip(1) {
                    let l: String = l.chars().take_while(|c| *c != '"').collect();
                    assert!(d.labels.contains(&l.as_str()), "{name} has no label {l}");
                }
                seen.insert(d.name);
            }
        }
        for n in ["end_to_end_latency", "records", "source_lag", "transit"] {
            assert!(seen.contains(n), "{n} has no tile");
        }
        let e2e = g["mosaicLayout"]["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| {
                t["widget"]["title"]
                    .as_str()
                    .unwrap()
                    .starts_with("End-to-end")
            })
            .unwrap();
        let th: Vec<f64> = e2e["widget"]["xyChart"]["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["value"].as_f64().unwrap())
            .collect();
        assert_eq!(th, vec![30.0, 60.0]);
    }

    /// `logferry_*` identifiers in a PromQL expression.
    fn prom_names(expr: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = expr;
        while let Some(p) = rest.find("logferry_") {
            let n: String = rest[p..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[p + n.len()..];
            out.push(n);
        }
        out
    }

    #[test]
    fn prometheus_rules_name_catalogue_series_and_cover_every_kpi() {
        let t = Thresholds::default();
        let groups = alert_groups(&t);
        let rules: Vec<&Rule> = groups.iter().flat_map(|g| &g.rules).collect();
        for r in &rules {
            for n in prom_names(&r.expr) {
                let ok = CATALOG.iter().any(|d| {
                    n == d.sample_name()
                        || (d.kind == Kind::Histogram
                            && [format!("{}_bucket", d.prometheus_name())].contains(&n))
                });
                assert!(ok, "{}: {n} is not a catalogue series", r.alert);
            }
            assert!(!prom_names(&r.expr).is_empty(), "{}", r.alert);
        }
        for k in kpi::table(&t) {
            for sev in [Severity::Warning, Severity::Critical] {
                assert!(
                    rules.iter().any(|r| r.severity == sev
                        && r.labels.contains(&("kpi", k.id.to_string()))),
                    "KPI {} has no {} rule",
                    k.id,
                    sev.as_str()
                );
            }
        }
        let expr = |alert: &str, sev: Severity| {
            rules
                .iter()
                .find(|r| r.alert == alert && r.severity == sev)
                .map(|r| r.expr.clone())
                .unwrap_or_else(|| panic!("no {alert} {}", sev.as_str()))
        };
        assert_eq!(
            expr("LogferryE2eLatencyP95", Severity::Critical),
            "histogram_quantile(0.95, sum by (le, tenant) (rate(logferry_end_to_end_latency_seconds_bucket[5m]))) > 60"
        );
        assert_eq!(
            expr("LogferryStreamLag", Severity::Critical),
            "max by (stream) (logferry_source_lag_milliseconds) > 5000"
        );
        assert_eq!(
            expr("LogferryForwarderSuccess", Severity::Warning),
            "sum by (stream) (rate(logferry_put_records_total{outcome=\"ok\"}[5m])) / sum by (stream) (rate(logferry_put_records_total[5m])) < 0.999"
        );
        assert_eq!(
            expr("LogferryCostPerMillion", Severity::Critical),
            "logferry_kpi_status{kpi=\"cost_per_million\"} == 2"
        );
        assert_eq!(
            expr("LogferryDlq", Severity::Warning),
            "logferry_dlq_ratio > 0.0001"
        );
        assert_eq!(
            expr("LogferryMemoryPressure", Severity::Warning),
            "logferry_memory_pressure_ratio > 0.8"
        );
        assert!(expr("LogferryTransferSuccess", Severity::Critical).contains("export_upload"));
        assert!(expr("LogferryLoadSuccess", Severity::Warning).contains("load_job"));
        for a in [
            "LogferryStreamDown",
            "LogferryWindowsFailed",
            "LogferryScheduleFailing",
        ] {
            assert!(rules.iter().any(|r| r.alert == a), "{a}");
        }
        // Every guide target is watched by some rule.
        for d in CATALOG.iter().filter(|d| d.target.is_some()) {
            assert!(
                rules.iter().any(|r| prom_names(&r.expr)
                    .iter()
                    .any(|n| n.starts_with(&d.prometheus_name()))),
                "{}'s target has no rule",
                d.name
            );
        }
        // The thresholds are the configured ones.
        let mut moved = t;
        moved.stream_lag_critical_s = 7.5;
        let y = prometheus_alerts(&DashboardInput {
            thresholds: moved,
            ..input()
        });
        assert!(
            y.contains("(logferry_source_lag_milliseconds) > 7500"),
            "{y}"
        );
    }

    #[test]
    fn yaml_scalars_are_quoted_safely() {
        assert_eq!(yq("a \"b\" \\ c\nd: #e"), "\"a \\\"b\\\" \\\\ c\\nd: #e\"");
        assert_eq!(yq("\u{1}"), "\"\\x01\"");
        let y = prometheus_alerts(&input());
        assert!(y.starts_with("# "));
        for line in y.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let l = line.trim_start().trim_start_matches("- ");
            if let Some((_, v)) = l.split_once(": ") {
                assert!(v.starts_with('"') && v.ends_with('"'), "unquoted: {line}");
            }
        }
    }

    // ---- the real checkers ------------------------------------------------

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// `export NAME=value` from a file the repository's scripts write.
    fn from_env_file(file: &Path, name: &str) -> Option<PathBuf> {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().find_map(|l| {
            let v = l
                .trim()
                .strip_prefix("export ")?
                .strip_prefix(name)?
                .strip_prefix('=')?;
            Some(PathBuf::from(v.trim_matches('"')))
        })
    }

    fn on_path(bin: &str) -> Option<PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    }

    /// A checker: its environment variable, the env file a script writes,
    /// then the fallbacks; otherwise the test fails saying what to run.
    fn tool(var: &str, env_file: &str, fallbacks: &[PathBuf], hint: &str) -> PathBuf {
        if let Some(p) = std::env::var_os(var).map(PathBuf::from) {
            assert!(p.is_file(), "{var}={} is not a file: {hint}", p.display());
            return p;
        }
        from_env_file(&workspace().join(env_file), var)
            .filter(|p| p.is_file())
            .or_else(|| fallbacks.iter().find(|p| p.is_file()).cloned())
            .unwrap_or_else(|| panic!("{var} not set, not in {env_file}, no fallback: {hint}"))
    }

    fn promtool() -> PathBuf {
        let path = on_path("promtool").into_iter().collect::<Vec<_>>();
        tool(
            "LOGFERRY_PROMTOOL",
            "target/tools.env",
            &path,
            "run `bash scripts/tools.sh` (installs Prometheus's promtool and writes target/tools.env)",
        )
    }

    fn cfn_lint() -> PathBuf {
        let cache = std::env::var_os("LOGFERRY_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("logferry"))
            })
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/logferry")));
        let venv: Vec<PathBuf> = cache
            .map(|c| c.join("emulators/venv-tools/bin/cfn-lint"))
            .into_iter()
            .collect();
        tool(
            "LOGFERRY_CFN_LINT",
            "target/emulators.env",
            &venv,
            "run `bash scripts/emulators.sh start` (installs cfn-lint into its tools venv)",
        )
    }

    /// A fresh scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("logferry-dashboards-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn run(cmd: &mut Command) -> (bool, String) {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    #[test]
    fn promtool_checks_the_rules() {
        let promtool = promtool();
        let (_, version) = run(Command::new(&promtool).arg("--version"));
        eprintln!("{}", version.lines().next().unwrap_or_default());
        let dir = scratch("check");
        let file = dir.join("alerts.yml");
        std::fs::write(&file, prometheus_alerts(&input())).unwrap();
        let (ok, out) = run(Command::new(&promtool).arg("check").arg("rules").arg(&file));
        assert!(ok, "promtool check rules failed:\n{out}");
        let n: usize = alert_groups(&Thresholds::default())
            .iter()
            .map(|g| g.rules.len())
            .sum();
        assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
        // The checker rejects what is wrong.
        let broken = prometheus_alerts(&input()).replacen("> 5000", "> > 5000", 1);
        std::fs::write(&file, broken).unwrap();
        let (ok, out) = run(Command::new(&promtool).arg("check").arg("rules").arg(&file));
        assert!(!ok, "promtool accepted a broken expression:\n{out}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The annotations a rule renders for these label values and value.
    fn rendered(r: &Rule, labels: &[(&str, &str)], value: &str) -> Value {
        let fill = |s: &str| {
            let mut s = s.to_string();
            for (k, v) in labels {
                s = s.replace(&format!("{{{{ $labels.{k} }}}}"), v);
            }
            for t in [
                "{{ $value | humanizePercentage }}",
                "{{ $value | humanizeDuration }}",
                "{{ $value }}",
            ] {
                s = s.replace(t, value);
            }
            s
        };
        json!({"summary": fill(&r.summary), "description": fill(&r.description)})
    }

    #[test]
    fn promtool_unit_tests_fire_the_alerts() {
        let promtool = promtool();
        let i = input();
        let groups = alert_groups(&i.thresholds);
        let rule = |alert: &str, sev: Severity| -> &Rule {
            groups
                .iter()
                .flat_map(|g| &g.rules)
                .find(|r| r.alert == alert && r.severity == sev)
                .unwrap_or_else(|| panic!("no {alert}"))
        };
        let exp = |r: &Rule, labels: &[(&str, &str)], value: &str| {
            let mut l: Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            l.insert("severity".into(), json!(r.severity.as_str()));
            for (k, v) in &r.labels {
                l.insert(k.to_string(), json!(v));
            }
            json!({"exp_labels": l, "exp_annotations": rendered(r, labels, value)})
        };
        let lag = def("source_lag").prometheus_name();
        let e2e = format!("{}_bucket", def("end_to_end_latency").prometheus_name());
        let put = def("put_records").sample_name();
        let up = def("stream_up").prometheus_name();
        let status = def("kpi_status").prometheus_name();
        let ops = def("operations").sample_name();
        let (w, c) = (Severity::Warning, Severity::Critical);
        let lag_w = rule("LogferryStreamLag", w);
        let lag_c = rule("LogferryStreamLag", c);
        let e2e_w = rule("LogferryE2eLatencyP95", w);
        let e2e_c = rule("LogferryE2eLatencyP95", c);
        let put_w = rule("LogferryForwarderSuccess", w);
        let put_c = rule("LogferryForwarderSuccess", c);
        let tr_w = rule("LogferryTransferSuccess", w);
        let tr_c = rule("LogferryTransferSuccess", c);
        let cost_w = rule("LogferryCostPerMillion", w);
        let cost_c = rule("LogferryCostPerMillion", c);
        let down = rule("LogferryStreamDown", c);
        let tests = json!({
            "rule_files": ["alerts.yml"],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "1m",
                "input_series": [
                    {"series": format!("{lag}{{stream=\"hot\",shard=\"shardId-000000000000\"}}"), "values": "6000x15"},
                    {"series": format!("{lag}{{stream=\"hot\",shard=\"shardId-000000000001\"}}"), "values": "100x15"},
                    {"series": format!("{lag}{{stream=\"warm\",shard=\"shardId-000000000000\"}}"), "values": "2000x15"},
                    {"series": format!("{lag}{{stream=\"cool\",shard=\"shardId-000000000000\"}}"), "values": "500x15"},
                    // tenant-a: every record between 30 and 60 s (P95 58.5 s).
                    {"series": format!("{e2e}{{tenant=\"tenant-a\",le=\"30\"}}"), "values": "0x15"},
                    {"series": format!("{e2e}{{tenant=\"tenant-a\",le=\"60\"}}"), "values": "0+100x15"},
                    {"series": format!("{e2e}{{tenant=\"tenant-a\",le=\"+Inf\"}}"), "values": "0+100x15"},
                    // tenant-b: between 60 and 120 s (P95 117 s).
                    {"series": format!("{e2e}{{tenant=\"tenant-b\",le=\"60\"}}"), "values": "0x15"},
                    {"series": format!("{e2e}{{tenant=\"tenant-b\",le=\"120\"}}"), "values": "0+100x15"},
                    {"series": format!("{e2e}{{tenant=\"tenant-b\",le=\"+Inf\"}}"), "values": "0+100x15"},
                    // tenant-c: fast.
                    {"series": format!("{e2e}{{tenant=\"tenant-c\",le=\"1\"}}"), "values": "0+100x15"},
                    {"series": format!("{e2e}{{tenant=\"tenant-c\",le=\"+Inf\"}}"), "values": "0+100x15"},
                    // s1 98% ok, s2 99.5% ok, s3 all ok.
                    {"series": format!("{put}{{stream=\"s1\",outcome=\"ok\"}}"), "values": "0+980x15"},
                    {"series": format!("{put}{{stream=\"s1\",outcome=\"failed\"}}"), "values": "0+20x15"},
                    {"series": format!("{put}{{stream=\"s2\",outcome=\"ok\"}}"), "values": "0+995x15"},
                    {"series": format!("{put}{{stream=\"s2\",outcome=\"throttled\"}}"), "values": "0+5x15"},
                    {"series": format!("{put}{{stream=\"s3\",outcome=\"ok\"}}"), "values": "0+1000x15"},
                    {"series": format!("{up}{{stream=\"hot\"}}"), "values": "0x15"},
                    {"series": format!("{up}{{stream=\"cool\"}}"), "values": "1x15"},
                    {"series": format!("{status}{{kpi=\"cost_per_million\"}}"), "values": "2x15"},
                    {"series": format!("{status}{{kpi=\"e2e_latency_p95\"}}"), "values": "2x15"},
                    // export uploads 97% ok, load jobs all ok.
                    {"series": format!("{ops}{{operation=\"export_upload\",outcome=\"ok\"}}"), "values": "0+97x15"},
                    {"series": format!("{ops}{{operation=\"export_upload\",outcome=\"failed\"}}"), "values": "0+3x15"},
                    {"series": format!("{ops}{{operation=\"load_job\",outcome=\"ok\"}}"), "values": "0+10x15"},
                    {"series": format!("{ops}{{operation=\"load_job\",outcome=\"failed\"}}"), "values": "0x15"},
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "LogferryStreamLag", "exp_alerts": [
                        exp(lag_w, &[("stream", "hot")], "6000"),
                        exp(lag_c, &[("stream", "hot")], "6000"),
                        exp(lag_w, &[("stream", "warm")], "2000"),
                    ]},
                    // Not yet for its 5 minutes.
                    {"eval_time": "3m", "alertname": "LogferryStreamLag", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "LogferryE2eLatencyP95", "exp_alerts": [
                        exp(e2e_w, &[("tenant", "tenant-a")], "58.5s"),
                        exp(e2e_w, &[("tenant", "tenant-b")], "1m 57s"),
                        exp(e2e_c, &[("tenant", "tenant-b")], "1m 57s"),
                    ]},
                    {"eval_time": "10m", "alertname": "LogferryForwarderSuccess", "exp_alerts": [
                        exp(put_w, &[("stream", "s1")], "98%"),
                        exp(put_c, &[("stream", "s1")], "98%"),
                        exp(put_w, &[("stream", "s2")], "99.5%"),
                    ]},
                    {"eval_time": "10m", "alertname": "LogferryTransferSuccess", "exp_alerts": [
                        exp(tr_w, &[], "97%"),
                        exp(tr_c, &[], "97%"),
                    ]},
                    {"eval_time": "10m", "alertname": "LogferryLoadSuccess", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "LogferryCostPerMillion", "exp_alerts": [
                        exp(cost_w, &[], ""),
                        exp(cost_c, &[], ""),
                    ]},
                    {"eval_time": "10m", "alertname": "LogferryStreamDown", "exp_alerts": [
                        exp(down, &[("stream", "hot")], ""),
                    ]},
                ],
            }],
        });
        let dir = scratch("unit");
        std::fs::write(dir.join("alerts.yml"), prometheus_alerts(&i)).unwrap();
        // JSON is YAML: promtool reads it as its test file.
        let file = dir.join("alerts_test.yml");
        std::fs::write(&file, serde_json::to_string_pretty(&tests).unwrap()).unwrap();
        let (ok, out) = run(Command::new(&promtool).arg("test").arg("rules").arg(&file));
        assert!(ok, "promtool test rules failed:\n{out}");
        assert!(out.contains("SUCCESS"), "{out}");
        // A wrong expectation fails: the test can fail.
        let mut wrong = tests.clone();
        wrong["tests"][0]["alert_rule_test"][0]["exp_alerts"]
            .as_array_mut()
            .unwrap()
            .pop();
        std::fs::write(&file, serde_json::to_string_pretty(&wrong).unwrap()).unwrap();
        let (ok, out) = run(Command::new(&promtool).arg("test").arg("rules").arg(&file));
        assert!(!ok, "promtool accepted a missing alert:\n{out}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn alarms_template_has_unique_alphanumeric_ids_and_the_thresholds() {
        let i = input();
        let t: Value = serde_json::from_str(&cloudwatch_alarms(&i)).unwrap();
        assert_eq!(t["AWSTemplateFormatVersion"], "2010-09-09");
        assert_eq!(t["Parameters"]["AlarmTopicArn"]["Type"], "String");
        let res = t["Resources"].as_object().unwrap();
        let mut names = BTreeSet::new();
        for (id, r) in res {
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric()) && id.len() <= 255,
                "{id}"
            );
            assert_eq!(r["Type"], "AWS::CloudWatch::Alarm");
            let p = &r["Properties"];
            assert!(
                names.insert(p["AlarmName"].as_str().unwrap().to_string()),
                "{id}"
            );
            assert_eq!(p["AlarmActions"], json!([{"Ref": "AlarmTopicArn"}]), "{id}");
            assert!(
                p["Threshold"].is_number() && p["EvaluationPeriods"].is_u64(),
                "{id}"
            );
            if p["Namespace"] == json!(i.namespace) {
                let name = p["MetricName"].as_str().unwrap();
                assert!(is_emf_name(name), "{id}: {name}");
            }
            for q in p["Metrics"].as_array().into_iter().flatten() {
                if let Some(m) = q.pointer("/MetricStat/Metric")
                    && m["Namespace"] == json!(i.namespace)
                {
                    let name = m["MetricName"].as_str().unwrap();
                    assert!(is_emf_name(name), "{id}: {name}");
                }
                if let Some(e) = q["Expression"].as_str().filter(|e| e.starts_with("SELECT")) {
                    for n in named_in_query(e) {
                        assert!(is_emf_name(&n), "{id}: {n}");
                    }
                }
            }
        }
        // logs-tenant-a and logs_tenant-a sanitise alike and stay apart.
        assert!(res.contains_key("IteratorAgeCriticalLogsTenantA"));
        assert!(res.contains_key("IteratorAgeCriticalLogsTenantA2"));
        let p = |id: &str| &res[id]["Properties"];
        assert_eq!(p("IteratorAgeWarningLogsTenantB")["Threshold"], 1000.0);
        assert_eq!(p("IteratorAgeCriticalLogsTenantB")["Threshold"], 5000.0);
        assert_eq!(
            p("IteratorAgeCriticalLogsTenantB")["MetricName"],
            ITERATOR_AGE
        );
        assert_eq!(p("WriteThrottledLogsTenantB")["MetricName"], WRITE_EXCEEDED);
        assert_eq!(p("ExportLambdaDurationWarning")["Threshold"], 10.0);
        assert_eq!(p("ExportLambdaDurationWarning")["ExtendedStatistic"], "p95");
        assert_eq!(p("BatchProcessingDurationWarning")["Threshold"], 5.0);
        assert_eq!(
            p("BatchProcessingDurationWarning")["Dimensions"][0],
            json!({"Name": "Component", "Value": "Forward"})
        );
        // The end-to-end KPI per tenant, in the EMF unit (seconds).
        assert_eq!(p("EndToEndLatencyWarningTenantA")["Threshold"], 30.0);
        assert_eq!(p("EndToEndLatencyCriticalTenantB")["Threshold"], 60.0);
        assert_eq!(
            p("EndToEndLatencyCriticalTenantB")["Dimensions"][2],
            json!({"Name": "Tenant", "Value": "tenant-b"})
        );
        assert_eq!(p("ForwarderSuccessWarning")["Threshold"], 0.999);
        assert_eq!(p("ForwarderSuccessCritical")["Threshold"], 0.99);
        assert_eq!(
            p("ForwarderSuccessCritical")["ComparisonOperator"],
            "LessThanThreshold"
        );
        let put: Vec<&str> = p("ForwarderSuccessCritical")["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| {
                m.pointer("/MetricStat/Metric/MetricName")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(
            put,
            vec!["PutRecordsOk", "PutRecordsThrottled", "PutRecordsFailed"]
        );
        assert_eq!(p("TransferSuccessWarning")["Threshold"], 0.995);
        assert_eq!(p("LoadSuccessCritical")["Threshold"], 0.99);
        assert_eq!(p("ForwarderDurationClientAForwarder")["Threshold"], 5000.0);
        assert_eq!(
            p("ForwarderErrorsWarningClientAForwarder")["Threshold"],
            0.001
        );
        assert_eq!(
            p("ForwarderErrorsCriticalClientAForwarder")["Threshold"],
            0.01
        );
        // No streams, no forwarders: still a template with resources.
        let t: Value = serde_json::from_str(&cloudwatch_alarms(&bare())).unwrap();
        assert!(t["Resources"].as_object().unwrap().len() >= 5);
    }

    #[test]
    fn cfn_lint_accepts_the_alarms() {
        let lint = cfn_lint();
        let (_, version) = run(Command::new(&lint).arg("--version"));
        eprintln!("{}", version.trim());
        let dir = scratch("cfn");
        for (n, i) in [input(), bare()].iter().enumerate() {
            let file = dir.join(format!("alarms-{n}.json"));
            std::fs::write(&file, cloudwatch_alarms(i)).unwrap();
            let (ok, out) = run(Command::new(&lint)
                .arg(format!("--regions={}", i.region))
                .arg("--")
                .arg(&file));
            assert!(ok, "cfn-lint rejected the alarms:\n{out}");
        }
        // The linter rejects what is wrong.
        let mut t: Value = serde_json::from_str(&cloudwatch_alarms(&input())).unwrap();
        let first = t["Resources"]
            .as_object_mut()
            .unwrap()
            .values_mut()
            .next()
            .unwrap();
        first["Properties"]["ComparisonOperator"] = json!("GreaterThanOrNot");
        let file = dir.join("broken.json");
        std::fs::write(&file, t.to_string()).unwrap();
        let (ok, out) = run(Command::new(&lint).arg(&file));
        assert!(!ok, "cfn-lint accepted a bad ComparisonOperator:\n{out}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
