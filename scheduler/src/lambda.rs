//! AWS Lambda handlers, as plain async functions (the `logferry-lambda`
//! binary wires them to the Lambda runtime; the tests call them directly):
//!
//! - CloudWatch Logs subscription events (`{"awslogs":{"data":...}}`): the
//!   payload goes through the same decoder as files, tenant from the log
//!   group;
//! - Kinesis events (`{"Records":[{"eventSource":"aws:kinesis",...}]}`): the
//!   tenant from the stream of `eventSourceARN`; a batch whose objects could
//!   not be written reports its records as batch item failures, so Lambda
//!   retries exactly those;
//! - EventBridge Scheduler invocations of a `[[schedule]]`, whose input is
//!   `{"logferry":{"schedule":"<name>","job":"<job>"}}` (what `logferry
//!   schedule export` writes): that job, once;
//! - EventBridge rule events (`{"detail-type":"Scheduled Event",...}`): one
//!   full `run` of every window with unprocessed data.
//!
//! Object names derive from the records (shard and sequence range, or the
//! payload's hash), so a retried invocation finds its own earlier objects.

use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::streams::KinesisEventResponse;
use base64::Engine;
use chrono::Utc;
use serde::Serialize;
use serde::de::Deserialize;
use serde_json::Value;

use logferry_core::ids::hash_hex;
use logferry_core::ledger::Ledger;
use logferry_core::partition::STATE;
use logferry_core::storage::writer_properties;
use logferry_forward::batcher::{ChunkSink, DecodeStats};
use logferry_forward::decode::{Decoder, ItemCtx, Pos};
use logferry_forward::kinesis::land;

use logferry_observe::Component;
use logferry_observe::emf::Emf;

use crate::context::Ctx;
use crate::error::{Error, Result};

/// What a CloudWatch Logs invocation did.
#[derive(Debug, Clone, Serialize)]
pub struct LogsOutcome {
    /// Decoder counts.
    pub decode: DecodeStats,
    /// Objects written.
    pub objects: u64,
    /// Objects found already written (a retried invocation).
    pub objects_existing: u64,
}

/// The kind of event an invocation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// CloudWatch Logs subscription.
    Logs,
    /// Kinesis event source mapping.
    Kinesis,
    /// EventBridge Scheduler: a configured schedule's job.
    Job,
    /// EventBridge rule schedule.
    Schedule,
}

/// Tells the event kinds apart by their shape.
pub fn kind(v: &Value) -> Option<EventKind> {
    if v.pointer("/awslogs/data").is_some() {
        Some(EventKind::Logs)
    } else if v.pointer("/Records/0/eventSource").and_then(Value::as_str) == Some("aws:kinesis") {
        Some(EventKind::Kinesis)
    } else if v.pointer("/logferry/schedule").is_some() || v.pointer("/logferry/job").is_some() {
        Some(EventKind::Job)
    } else if v.get("detail-type").is_some() && v.get("source").is_some() {
        Some(EventKind::Schedule)
    } else {
        None
    }
}

/// A CloudWatch Logs subscription event.
pub async fn handle_logs(ctx: &Ctx, event: &Value) -> Result<LogsOutcome> {
    let data = event
        .pointer("/awslogs/data")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::BadInput("awslogs.data is missing".into()))?;
    let now = ctx.now().timestamp_micros();
    let ids = ctx.tenant_ids();
    let mut decoder = Decoder::new(&ctx.settings.forward, &ctx.settings.tenants, now);
    let mut sink = ChunkSink::new(ids.len(), now);
    let input = "lambda:cloudwatch-logs";
    let item = ItemCtx {
        input,
        ingest_us: Utc::now().timestamp_micros(),
    };
    // The same path as a line of a subscription file: base64, bounded
    // gunzip, envelope; refusals are dead-lettered, never errors.
    decoder.cloudwatch_line(data.as_bytes(), &item, 1, &mut sink);
    let out = sink.finish(&ids).map_err(Error::Fatal)?;
    let decode = out.stats.clone();
    let id = format!("lambda-logs-{}", hash_hex(data.as_bytes()));
    let props = writer_properties(&ctx.settings.parquet)?;
    let ledger = Ledger::new(ctx.lake.store.clone(), STATE);
    let (objects, objects_existing) = land(&ctx.lake, &ledger, &props, &ids, out, &id).await?;
    Ok(LogsOutcome {
        decode,
        objects,
        objects_existing,
    })
}

/// A Kinesis event. Returns the batch item failures to report.
pub async fn handle_kinesis(ctx: &Ctx, event: &Value) -> Result<KinesisEventResponse> {
    let ev = KinesisEvent::deserialize(event)
        .map_err(|e| Error::BadInput(format!("not a Kinesis event: {e}")))?;
    let ids = ctx.tenant_ids();
    let now = ctx.now().timestamp_micros();
    let props = writer_properties(&ctx.settings.parquet)?;
    let ledger = Ledger::new(ctx.lake.store.clone(), STATE);
    let mut response = KinesisEventResponse::default();
    // One event may hold records of several shards (and streams): group
    // them so that object names follow each shard's sequence range.
    let mut groups: std::collections::BTreeMap<(String, String), Vec<usize>> = Default::default();
    for (i, r) in ev.records.iter().enumerate() {
        let stream = r
            .event_source_arn
            .as_deref()
            .and_then(|a| a.rsplit_once(":stream/").map(|(_, s)| s.to_string()))
            .unwrap_or_default();
        let shard = r
            .event_id
            .as_deref()
            .and_then(|e| e.split_once(':').map(|(s, _)| s.to_string()))
            .unwrap_or_else(|| "shardId-unknown".into());
        groups.entry((stream, shard)).or_default().push(i);
    }
    for ((stream, shard), idx) in groups {
        let mut decoder = Decoder::new(&ctx.settings.forward, &ctx.settings.tenants, now);
        let arrival = ev.records[idx[0]]
            .kinesis
            .approximate_arrival_timestamp
            .timestamp_micros();
        let mut sink = ChunkSink::new(ids.len(), arrival);
        let input = format!("lambda:kinesis:{stream}/{shard}");
        let item = ItemCtx {
            input: &input,
            ingest_us: Utc::now().timestamp_micros(),
        };
        let tenant = ctx.settings.tenants.by_stream(&stream);
        for &i in &idx {
            let k = &ev.records[i].kinesis;
            match tenant {
                Some(t) => decoder.kinesis_record(
                    &k.data,
                    t,
                    &stream,
                    &shard,
                    &k.sequence_number,
                    &item,
                    &mut sink,
                ),
                None => decoder.unknown_stream(
                    &k.data,
                    &stream,
                    &item,
                    Pos::Record(&k.sequence_number),
                    &mut sink,
                ),
            }
        }
        let first = &ev.records[idx[0]].kinesis.sequence_number;
        let last = &ev.records[idx[idx.len() - 1]].kinesis.sequence_number;
        let id = format!("lambda-kinesis-{stream}-{shard}-{first}-{last}");
        let landed = match sink.finish(&ids) {
            Ok(out) => land(&ctx.lake, &ledger, &props, &ids, out, &id)
                .await
                .map_err(Error::from),
            Err(e) => Err(Error::Fatal(e)),
        };
        if let Err(e) = landed {
            // Lambda retries from the first failed item of each shard.
            tracing::error!(error = %e, %stream, %shard, "Landing a Kinesis batch failed.");
            response.add_failure(first.clone());
        }
    }
    Ok(response)
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
    let handler = match kind {
        Some(EventKind::Logs) => "Logs",
        Some(EventKind::Kinesis) => "Kinesis",
        Some(EventKind::Job) => "Job",
        Some(EventKind::Schedule) => "Schedule",
        None => "Unknown",
    };
    let component = match kind {
        Some(EventKind::Logs | EventKind::Kinesis) | None => Component::Forward,
        _ => Component::Pipeline,
    };
    emf.push(
        Emf::new(
            &ctx.settings.metrics.namespace,
            component,
            &ctx.settings.metrics.environment,
            None,
        )
        .metric(
            "lambda_invocations",
            if result.is_ok() { "Ok" } else { "Failed" },
            1.0,
        )
        .metric("stage_duration", "", t0.elapsed().as_secs_f64())
        .metric("lambda_invocations", handler, 1.0),
    );
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
    let m = &ctx.settings.metrics;
    let doc =
        |c: Component, tenant: Option<&str>| Emf::new(&m.namespace, c, &m.environment, tenant);
    match kind {
        Some(EventKind::Logs) => {
            let out = handle_logs(ctx, event).await?;
            for (tenant, c) in &out.decode.tenants {
                emf.push(
                    doc(Component::Forward, Some(tenant))
                        .metric("records", "Received", c.received as f64)
                        .metric("records", "Accepted", c.accepted as f64)
                        .metric("records", "DeadLettered", c.dead_lettered as f64),
                );
            }
            emf.push(doc(Component::Forward, None).metric(
                "batch_size",
                "",
                out.decode.received as f64,
            ));
            Ok(serde_json::to_value(out)?)
        }
        Some(EventKind::Kinesis) => {
            let n = event
                .pointer("/Records")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            // Lambda's IteratorAge: how long the oldest record waited.
            let oldest = event
                .pointer("/Records")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.pointer("/kinesis/approximateArrivalTimestamp"))
                .filter_map(Value::as_f64)
                .reduce(f64::min);
            let out = handle_kinesis(ctx, event).await?;
            let mut d = doc(Component::TenantStreams, None);
            if let Some(t) = oldest {
                let age_ms = (Utc::now().timestamp_millis() as f64 - t * 1000.0).max(0.0);
                d = d.metric("source_lag", "", age_ms);
                emf.push(d);
            }
            emf.push(
                doc(Component::Forward, None)
                    .metric("batch_size", "", n as f64)
                    .metric("records", "Received", n as f64)
                    .metric(
                        "records",
                        "BatchItemFailures",
                        out.batch_item_failures.len() as f64,
                    ),
            );
            Ok(serde_json::to_value(out)?)
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

/// base64 of gzip of `json`: how CloudWatch Logs wraps a subscription
/// payload (for tests and tools).
pub fn awslogs_data(json: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(json.as_bytes())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(enc.finish()?))
}
