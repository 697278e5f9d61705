//! The lander: CloudWatch Logs subscription events and Kinesis events,
//! decoded and landed in the lake as Parquet.
//!
//! - CloudWatch Logs (`{"awslogs":{"data":...}}`): the payload goes through
//!   the same decoder as files, the tenant from the log group;
//! - Kinesis (`{"Records":[{"eventSource":"aws:kinesis",...}]}`): the tenant
//!   from the stream of `eventSourceARN`; a batch whose objects could not be
//!   written reports its records as batch item failures, so Lambda retries
//!   exactly those.
//!
//! Object names derive from the records (shard and sequence range, or the
//! payload's hash), so a retried invocation finds its own earlier objects.

use std::sync::Arc;

use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::streams::KinesisEventResponse;
use base64::Engine;
use chrono::Utc;
use serde::Serialize;
use serde::de::Deserialize;
use serde_json::Value;

use logferry_core::config::Settings;
use logferry_core::ids::hash_hex;
use logferry_core::ledger::Ledger;
use logferry_core::partition::STATE;
use logferry_core::storage::{Location, writer_properties};
use logferry_forward::batcher::{ChunkSink, DecodeStats};
use logferry_forward::decode::{Decoder, ItemCtx, Pos};
use logferry_forward::kinesis::land;
use logferry_observe::Component;
use logferry_observe::emf::Emf;

use crate::{Error, Result};

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

impl EventKind {
    /// The name used in the `LambdaInvocations` metric.
    pub fn as_str(kind: Option<Self>) -> &'static str {
        match kind {
            Some(EventKind::Logs) => "Logs",
            Some(EventKind::Kinesis) => "Kinesis",
            Some(EventKind::Job) => "Job",
            Some(EventKind::Schedule) => "Schedule",
            None => "Unknown",
        }
    }
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

/// The lander: validated settings and the lake.
#[derive(Clone)]
pub struct Lander {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The lake.
    pub lake: Location,
}

impl std::fmt::Debug for Lander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lander")
            .field("lake", &self.settings.lake_url)
            .finish()
    }
}

impl Lander {
    /// A lander over settings and the lake they name.
    pub fn new(settings: Arc<Settings>, lake: Location) -> Self {
        Lander { settings, lake }
    }

    /// Opens the lake of validated settings.
    pub fn open(settings: Arc<Settings>) -> Result<Self> {
        let lake = Location::open_with(&settings.lake_url, &settings.aws)?;
        Ok(Lander { settings, lake })
    }

    /// A CloudWatch Logs subscription event.
    pub async fn logs(&self, event: &Value) -> Result<LogsOutcome> {
        let data = event
            .pointer("/awslogs/data")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::BadInput("awslogs.data is missing".into()))?;
        let now = self.settings.now().timestamp_micros();
        let ids = self.settings.tenant_ids();
        let mut decoder = Decoder::new(&self.settings.forward, &self.settings.tenants, now);
        let mut sink = ChunkSink::new(ids.len(), now);
        let item = ItemCtx {
            input: "lambda:cloudwatch-logs",
            ingest_us: Utc::now().timestamp_micros(),
        };
        // The same path as a line of a subscription file: base64, bounded
        // gunzip, envelope; refusals are dead-lettered, never errors.
        decoder.cloudwatch_line(data.as_bytes(), &item, 1, &mut sink);
        let out = sink.finish(&ids).map_err(Error::Fatal)?;
        let decode = out.stats.clone();
        let id = format!("lambda-logs-{}", hash_hex(data.as_bytes()));
        let props = writer_properties(&self.settings.parquet)?;
        let ledger = Ledger::new(self.lake.store.clone(), STATE);
        let (objects, objects_existing) = land(&self.lake, &ledger, &props, &ids, out, &id).await?;
        Ok(LogsOutcome {
            decode,
            objects,
            objects_existing,
        })
    }

    /// A Kinesis event. Returns the batch item failures to report.
    pub async fn kinesis(&self, event: &Value) -> Result<KinesisEventResponse> {
        let ev = KinesisEvent::deserialize(event)
            .map_err(|e| Error::BadInput(format!("not a Kinesis event: {e}")))?;
        let ids = self.settings.tenant_ids();
        let now = self.settings.now().timestamp_micros();
        let props = writer_properties(&self.settings.parquet)?;
        let ledger = Ledger::new(self.lake.store.clone(), STATE);
        let mut response = KinesisEventResponse::default();
        // One event may hold records of several shards (and streams): group
        // them so that object names follow each shard's sequence range.
        let mut groups: std::collections::BTreeMap<(String, String), Vec<usize>> =
            Default::default();
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
            let mut decoder = Decoder::new(&self.settings.forward, &self.settings.tenants, now);
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
            let tenant = self.settings.tenants.by_stream(&stream);
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
                Ok(out) => land(&self.lake, &ledger, &props, &ids, out, &id)
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

    /// A CloudWatch Logs or Kinesis event; its metrics are added to `emf`.
    /// Other kinds are refused: schedules run on `logferry-lambda`.
    pub async fn dispatch(
        &self,
        kind: Option<EventKind>,
        event: &Value,
        emf: &mut Vec<Emf>,
    ) -> Result<Value> {
        let m = &self.settings.metrics;
        let doc =
            |c: Component, tenant: Option<&str>| Emf::new(&m.namespace, c, &m.environment, tenant);
        match kind {
            Some(EventKind::Logs) => {
                let out = self.logs(event).await?;
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
                let records = event.pointer("/Records").and_then(Value::as_array);
                let n = records.map_or(0, Vec::len);
                // Lambda's IteratorAge: how long the oldest record waited.
                let oldest = records
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.pointer("/kinesis/approximateArrivalTimestamp"))
                    .filter_map(Value::as_f64)
                    .reduce(f64::min);
                let out = self.kinesis(event).await?;
                if let Some(t) = oldest {
                    let age_ms = (Utc::now().timestamp_millis() as f64 - t * 1000.0).max(0.0);
                    emf.push(doc(Component::TenantStreams, None).metric("source_lag", "", age_ms));
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
            other => Err(Error::BadInput(format!(
                "the lander takes CloudWatch Logs subscription and Kinesis events; this is {} \
                 (schedules and jobs run on logferry-lambda)",
                EventKind::as_str(other)
            ))),
        }
    }

    /// Any event: its response body and its EMF lines, the invocation's
    /// count and duration last.
    pub async fn handle_measured(&self, event: Value) -> (Result<Value>, Vec<String>) {
        let t0 = std::time::Instant::now();
        let kind = kind(&event);
        let mut emf = Vec::new();
        let result = self.dispatch(kind, &event, &mut emf).await;
        emf.push(invocation(
            &self.settings,
            Component::Forward,
            kind,
            result.is_ok(),
            t0,
        ));
        let at = Utc::now().timestamp_millis();
        (result, emf.iter().map(|e| e.line(at)).collect())
    }

    /// Any event, its EMF lines printed on standard output.
    pub async fn handle(&self, event: Value) -> Result<Value> {
        let (result, lines) = self.handle_measured(event).await;
        for l in lines {
            println!("{l}");
        }
        result
    }
}

/// The EMF document every invocation ends with: its outcome, its kind and
/// its duration.
pub fn invocation(
    settings: &Settings,
    component: Component,
    kind: Option<EventKind>,
    ok: bool,
    t0: std::time::Instant,
) -> Emf {
    let m = &settings.metrics;
    Emf::new(&m.namespace, component, &m.environment, None)
        .metric("lambda_invocations", if ok { "Ok" } else { "Failed" }, 1.0)
        .metric("stage_duration", "", t0.elapsed().as_secs_f64())
        .metric("lambda_invocations", EventKind::as_str(kind), 1.0)
}

/// base64 of gzip of `json`: how CloudWatch Logs wraps a subscription
/// payload (for tests and tools).
pub fn awslogs_data(json: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(json.as_bytes())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(enc.finish()?))
}
