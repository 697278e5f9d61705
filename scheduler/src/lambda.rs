//! AWS Lambda handlers, as plain async functions (the `logferry-lambda`
//! binary wires them to the Lambda runtime; the tests call them directly).
//! This is the scheduled runner, which handles every kind of event:
//!
//! - CloudWatch Logs subscription and Kinesis events: landed in the lake,
//!   exactly as the lean `logferry-lander` does (`logferry_lambdas::lander`);
//! - EventBridge Scheduler invocations of a `[[schedule]]`, whose input is
//!   `{"logferry":{"schedule":"<name>","job":"<job>"}}` (what `logferry
//!   schedule export` writes): that job, once;
//! - EventBridge rule events (`{"detail-type":"Scheduled Event",...}`): one
//!   full `run` of every window with unprocessed data.

use chrono::Utc;
use serde_json::Value;

use logferry_lambdas::lander::Lander;
pub use logferry_lambdas::lander::{EventKind, LogsOutcome, awslogs_data, kind};
use logferry_observe::Component;
use logferry_observe::emf::Emf;

use crate::context::Ctx;
use crate::error::{Error, Result};

fn lander(ctx: &Ctx) -> Lander {
    Lander::new(ctx.settings.clone(), ctx.lake.clone())
}

/// A CloudWatch Logs subscription event.
pub async fn handle_logs(ctx: &Ctx, event: &Value) -> Result<LogsOutcome> {
    Ok(lander(ctx).logs(event).await?)
}

/// A Kinesis event. Returns the batch item failures to report.
pub async fn handle_kinesis(
    ctx: &Ctx,
    event: &Value,
) -> Result<aws_lambda_events::streams::KinesisEventResponse> {
    Ok(lander(ctx).kinesis(event).await?)
}

/// An EventBridge rule's scheduled event: one full run.
pub async fn handle_schedule(ctx: &Ctx, _event: &Value) -> Result<crate::pipeline::RunReport> {
    crate::pipeline::run(
        ctx,
        crate::pipeline::RunOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .await
}

/// An EventBridge Scheduler invocation: the named schedule's job (or the
/// job named, for schedules not in this configuration), once.
pub async fn handle_job(ctx: &Ctx, event: &Value) -> Result<crate::jobs::JobReport> {
    let name = event.pointer("/logferry/schedule").and_then(Value::as_str);
    let job = match (name, event.pointer("/logferry/job")) {
        (Some(n), _) if ctx.settings.schedules.iter().any(|s| s.name == n) => None,
        (_, Some(j)) => Some(
            serde_json::from_value::<logferry_core::schedule::Job>(j.clone())
                .map_err(|e| Error::BadInput(format!("logferry.job: {e}")))?,
        ),
        (Some(n), None) => {
            return Err(Error::Config(format!(
                "schedule {n:?} is not in this configuration's [[schedule]] entries"
            )));
        }
        (None, None) => return Err(Error::BadInput("logferry.schedule is missing".into())),
    };
    let pipeline = crate::pipeline::Pipeline::new(ctx)?;
    match job {
        Some(j) => crate::jobs::run_job(&pipeline, name, j, true).await,
        None => crate::jobs::run_schedule(&pipeline, name.unwrap_or_default(), true).await,
    }
}

/// Any event: dispatches on its shape and returns the response body, after
/// printing its metrics as CloudWatch Embedded Metric Format lines on
/// standard output. A job whose run failed returns an error, so that Lambda
/// reports (and EventBridge retries) it.
pub async fn handle(ctx: &Ctx, event: Value) -> Result<Value> {
    let (result, lines) = handle_measured(ctx, event).await;
    for l in lines {
        println!("{l}");
    }
    result
}

/// Like [`handle`], returning the EMF lines instead of printing them.
pub async fn handle_measured(ctx: &Ctx, event: Value) -> (Result<Value>, Vec<String>) {
    let t0 = std::time::Instant::now();
    let kind = kind(&event);
    let mut emf = Vec::new();
    let result = dispatch(ctx, kind, &event, &mut emf).await;
    let component = match kind {
        Some(EventKind::Logs | EventKind::Kinesis) | None => Component::Forward,
        _ => Component::Pipeline,
    };
    emf.push(logferry_lambdas::lander::invocation(
        &ctx.settings,
        component,
        kind,
        result.is_ok(),
        t0,
    ));
    let at = Utc::now().timestamp_millis();
    (result, emf.iter().map(|e| e.line(at)).collect())
}

/// 100 values, each standing for a hundredth of the records: what CloudWatch
/// computes percentiles over.
fn hundredths(h: &logferry_observe::Histo) -> Vec<f64> {
    (1..=100)
        .filter_map(|i| h.quantile(f64::from(i) / 100.0))
        .map(|ms| ms / 1000.0)
        .collect()
}

async fn dispatch(
    ctx: &Ctx,
    kind: Option<EventKind>,
    event: &Value,
    emf: &mut Vec<Emf>,
) -> Result<Value> {
    match kind {
        Some(EventKind::Logs | EventKind::Kinesis) => {
            Ok(lander(ctx).dispatch(kind, event, emf).await?)
        }
        Some(EventKind::Job) => {
            let r = handle_job(ctx, event).await?;
            if let Some(run) = &r.run {
                run_metrics(ctx, run, emf);
            }
            let body = serde_json::to_value(r.summary())?;
            if r.failed() {
                return Err(Error::Fatal(format!("job failed: {body}")));
            }
            Ok(body)
        }
        Some(EventKind::Schedule) => {
            let r = handle_schedule(ctx, event).await?;
            run_metrics(ctx, &r, emf);
            Ok(serde_json::json!({
                "windows": r.windows.len(),
                "worked": r.worked(),
                "seals": r.seals.len(),
                "failures": r.failures.len(),
            }))
        }
        None => Err(Error::BadInput(
            "unrecognised event: expected a CloudWatch Logs subscription, a Kinesis event, a \
             logferry schedule's input or an EventBridge scheduled event"
                .into(),
        )),
    }
}

/// EMF documents of a run: per tenant the rows made queryable and their
/// end-to-end latencies; the aggregate and export times and bytes shipped.
fn run_metrics(ctx: &Ctx, r: &crate::pipeline::RunReport, emf: &mut Vec<Emf>) {
    let m = &ctx.settings.metrics;
    let mut by_tenant: std::collections::BTreeMap<&str, logferry_observe::Histo> =
        Default::default();
    for w in &r.windows {
        for (t, l) in &w.latency {
            by_tenant.entry(t).or_default().merge(&l.event);
        }
    }
    for (t, h) in &by_tenant {
        let mut d = Emf::new(&m.namespace, Component::Pipeline, &m.environment, Some(t)).metric(
            "records",
            "Loaded",
            h.count as f64,
        );
        let values = hundredths(h);
        if !values.is_empty() {
            d = d.metric_values("end_to_end_latency", values);
        }
        emf.push(d);
    }
    let worked: Vec<_> = r.windows.iter().filter(|w| w.worked()).collect();
    if worked.is_empty() {
        return;
    }
    let sum =
        |f: fn(&crate::pipeline::WindowReport) -> u64| worked.iter().map(|w| f(w)).sum::<u64>();
    emf.push(
        Emf::new(&m.namespace, Component::Aggregate, &m.environment, None).metric(
            "merge_duration",
            "",
            sum(|w| w.aggregate_ms) as f64 / 1000.0,
        ),
    );
    emf.push(
        Emf::new(&m.namespace, Component::Export, &m.environment, None)
            .metric("export_duration", "", sum(|w| w.export_ms) as f64 / 1000.0)
            .metric("transit", "", sum(|w| w.bytes_sent) as f64),
    );
}

/// What `logferry debug lambda-invoke` saw: every run of the bootstrap.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalInvocations {
    /// The bootstrap.
    pub bootstrap: String,
    /// Its size, bytes.
    pub bytes: u64,
    /// Each run (a fresh process).
    pub runs: Vec<logferry_lambdas::runtime_api::Invoked>,
    /// Median process start to first answer, milliseconds.
    pub cold_start_ms_median: Option<f64>,
    /// Median process start to first `next`, milliseconds.
    pub init_ms_median: Option<f64>,
}

impl LocalInvocations {
    /// True when every run answered every event with a response.
    pub fn ok(&self) -> bool {
        self.runs.iter().all(|r| {
            r.init_error.is_none() && r.exited.is_none() && r.outcomes.iter().all(|o| o.ok)
        }) && self.runs.iter().all(|r| !r.outcomes.is_empty())
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Runs `bootstrap` `runs` times against a local Lambda Runtime API, each
/// a fresh process handed every event of `events` (JSON files).
pub async fn invoke_local(
    bootstrap: &std::path::Path,
    events: &[std::path::PathBuf],
    env: &[String],
    runs: usize,
    timeout: std::time::Duration,
) -> Result<LocalInvocations> {
    let mut evs = Vec::new();
    for p in events {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p.display(), e))?;
        evs.push(
            serde_json::from_str::<Value>(&text)
                .map_err(|e| Error::BadInput(format!("{}: {e}", p.display())))?,
        );
    }
    let env = env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::Config(format!("--env {kv:?}: expected KEY=VALUE")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = std::fs::metadata(bootstrap)
        .map_err(|e| Error::io(bootstrap.display(), e))?
        .len();
    let mut out = Vec::new();
    for _ in 0..runs.max(1) {
        out.push(
            logferry_lambdas::runtime_api::invoke(bootstrap, &env, evs.clone(), timeout)
                .await
                .map_err(|e| Error::io(bootstrap.display(), e))?,
        );
    }
    Ok(LocalInvocations {
        bootstrap: bootstrap.display().to_string(),
        bytes,
        cold_start_ms_median: median(out.iter().filter_map(|r| r.cold_start_ms).collect()),
        init_ms_median: median(out.iter().filter_map(|r| r.init_ms).collect()),
        runs: out,
    })
}
