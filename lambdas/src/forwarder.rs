//! The client-side forwarder: a Lambda in a client account, subscribed to
//! its CloudWatch Logs log groups, that puts each event into the tenant's
//! Kinesis stream in the central account (through a role it assumes there).
//!
//! What it writes is what `logferry forward --kinesis` and the daemon read:
//! each Kinesis record is a gzip'd CloudWatch Logs envelope (the log group,
//! the log stream and some of the invocation's events, ids kept as
//! written), as a CloudWatch Logs subscription to Kinesis writes it. An
//! invocation's events are split into records of at most
//! `record_bytes` of envelope JSON (under Kinesis' 1 MiB per record), and the
//! records into PutRecords calls within Kinesis' limits (500 records, 5 MiB).
//! Partition keys hash the log group, stream and first event id, so records
//! spread over the shards.
//!
//! PutRecords answers per record: the records that failed with a retryable
//! code (`ProvisionedThroughputExceededException`, `InternalFailure`), and
//! every record of a call that failed as a whole with a retryable error, are
//! sent again, and only those, with exponential backoff and jitter, up to
//! `max_attempts` calls per record or until the invocation's deadline is
//! near. What is still undelivered then, or was refused for good (access
//! denied, no such stream, KMS), goes to the dead-letter prefix in S3, one
//! object per reason, in the format `logferry forward --format cloudwatch`
//! reads (one base64 gzip envelope per line). If that write fails too, the
//! invocation fails and Lambda retries it: the records already delivered are
//! then sent again, which logferry's dedupe (by CloudWatch event id) absorbs.
//!
//! Metrics, as EMF lines: `PutRecordsOk`, `PutRecordsThrottled`,
//! `PutRecordsFailed` (records dead-lettered), `PutRecordsDuration` (all
//! calls of the invocation, retries and waits included), and
//! `SubscriptionLatency` (arrival at the forwarder minus event time, per
//! event).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use chrono::Utc;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use serde_json::Value;

use logferry_core::config::AwsSettings;
use logferry_core::storage::Location;
use logferry_forward::cwl;
use logferry_observe::Component;
use logferry_observe::emf::Emf;
use logferry_observe::histo::Histo;

use crate::{Error, Result};

/// Kinesis' limits on PutRecords.
pub mod limits {
    /// Records per call.
    pub const RECORDS_PER_CALL: usize = 500;
    /// Bytes per call (data and partition keys).
    pub const BYTES_PER_CALL: usize = 5 << 20;
    /// Bytes per record (data and partition key).
    pub const BYTES_PER_RECORD: usize = 1 << 20;
}

/// Largest decompressed subscription payload accepted (CloudWatch Logs
/// sends at most about 1 MB; the margin keeps a hostile payload bounded).
const MAX_PAYLOAD: usize = 16 << 20;

/// Largest `record_bytes`: gzip adds at most a few hundred bytes to what
/// does not compress, so an envelope of this size stays under 1 MiB.
const MAX_RECORD_BYTES: usize = 1_000_000;

/// The forwarder's settings, from its environment (the rendered templates
/// set them).
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// `LOGFERRY_FORWARDER_STREAM`: the tenant stream, a name or an ARN.
    pub stream: String,
    /// `LOGFERRY_FORWARDER_ROLE_ARN`: the role to assume in the central
    /// account (none: the function's own credentials).
    pub role_arn: Option<String>,
    /// `LOGFERRY_FORWARDER_EXTERNAL_ID`: the external id that role requires.
    pub external_id: Option<String>,
    /// `LOGFERRY_FORWARDER_DLQ`: `s3://bucket/prefix` for what cannot be
    /// delivered (required: nothing is dropped).
    pub dlq: String,
    /// `LOGFERRY_FORWARDER_MAX_ATTEMPTS`: PutRecords calls per record
    /// (default 8).
    pub max_attempts: u32,
    /// `LOGFERRY_FORWARDER_RECORD_BYTES`: envelope JSON per Kinesis record
    /// before gzip (default 262,144, at most 1,000,000).
    pub record_bytes: usize,
    /// `LOGFERRY_FORWARDER_BACKOFF_MS`: first retry delay (default 100).
    pub backoff: Duration,
    /// `LOGFERRY_FORWARDER_TIMEOUT_MS`: longest wait for one PutRecords
    /// call (default 10,000); a call that takes longer is sent again.
    pub call_timeout: Duration,
    /// `LOGFERRY_METRICS_NAMESPACE` (default `logferry`).
    pub namespace: String,
    /// `LOGFERRY_ENVIRONMENT` (default `production`).
    pub environment: String,
    /// `LOGFERRY_TENANT`: the tenant, as the metrics' Tenant dimension.
    pub tenant: Option<String>,
    /// AWS region and endpoint (`AWS_REGION`, `AWS_ENDPOINT_URL`), for the
    /// dead-letter bucket.
    pub aws: AwsSettings,
}

impl ForwarderConfig {
    /// Reads the settings from environment variables.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let get = |k: &str| vars.get(k).map(|v| v.trim().to_string());
        let num = |k: &str, default: u64| -> Result<u64> {
            match get(k) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| Error::Config(format!("{k}={v:?}: not a whole number"))),
            }
        };
        let stream = get("LOGFERRY_FORWARDER_STREAM").ok_or_else(|| {
            Error::Config(
                "LOGFERRY_FORWARDER_STREAM (the tenant's Kinesis stream) is not set".into(),
            )
        })?;
        let dlq = get("LOGFERRY_FORWARDER_DLQ").ok_or_else(|| {
            Error::Config(
                "LOGFERRY_FORWARDER_DLQ (s3://bucket/prefix for undeliverable records) is not set"
                    .into(),
            )
        })?;
        if !dlq.starts_with("s3://") && !dlq.starts_with("file://") {
            return Err(Error::Config(format!(
                "LOGFERRY_FORWARDER_DLQ={dlq:?}: expected s3://bucket/prefix"
            )));
        }
        let max_attempts = num("LOGFERRY_FORWARDER_MAX_ATTEMPTS", 8)?;
        if !(1..=100).contains(&max_attempts) {
            return Err(Error::Config(format!(
                "LOGFERRY_FORWARDER_MAX_ATTEMPTS={max_attempts}: expected 1 to 100"
            )));
        }
        let record_bytes = num("LOGFERRY_FORWARDER_RECORD_BYTES", 256 << 10)? as usize;
        if !(4096..=MAX_RECORD_BYTES).contains(&record_bytes) {
            return Err(Error::Config(format!(
                "LOGFERRY_FORWARDER_RECORD_BYTES={record_bytes}: expected 4096 to {MAX_RECORD_BYTES}"
            )));
        }
        let aws = AwsSettings {
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            endpoint: get("AWS_ENDPOINT_URL"),
            allow_http: get("AWS_ENDPOINT_URL").is_some_and(|e| e.starts_with("http://")),
            // logferry's [aws] defaults.
            multipart_threshold: 64 << 20,
            max_attempts: 6,
            request_timeout: Duration::from_secs(60),
            retry_budget: Duration::from_secs(120),
        };
        Ok(ForwarderConfig {
            stream,
            role_arn: get("LOGFERRY_FORWARDER_ROLE_ARN"),
            external_id: get("LOGFERRY_FORWARDER_EXTERNAL_ID"),
            dlq,
            max_attempts: max_attempts as u32,
            record_bytes,
            backoff: Duration::from_millis(num("LOGFERRY_FORWARDER_BACKOFF_MS", 100)?),
            call_timeout: Duration::from_millis(
                num("LOGFERRY_FORWARDER_TIMEOUT_MS", 10_000)?.max(100),
            ),
            namespace: get("LOGFERRY_METRICS_NAMESPACE").unwrap_or_else(|| "logferry".into()),
            environment: get("LOGFERRY_ENVIRONMENT").unwrap_or_else(|| "production".into()),
            tenant: get("LOGFERRY_TENANT"),
            aws,
        })
    }
}

/// One Kinesis record to put.
#[derive(Debug, Clone)]
pub struct Rec {
    /// Partition key.
    pub key: String,
    /// gzip'd envelope.
    pub data: Bytes,
    /// Log events it holds.
    pub events: usize,
}

impl Rec {
    /// What the record counts against Kinesis' size limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }
}

/// A PutRecords call that failed as a whole.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The service's error code, or the kind of failure (`Timeout`,
    /// `Dispatch`).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// Whether sending the same records again may succeed.
    pub retryable: bool,
}

/// Where records go: the tenant's Kinesis stream (or, in tests, a stand-in
/// that fails on purpose).
#[async_trait]
pub trait Streams: Send + Sync {
    /// Puts `batch` (within Kinesis' limits) and returns, per record, its
    /// error code (`None`: delivered).
    async fn put(&self, batch: &[Rec]) -> std::result::Result<Vec<Option<String>>, CallError>;
}

/// A per-record code worth another try.
pub fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException" | "InternalFailure" | "ServiceUnavailable"
    )
}

/// A code that means throttling.
fn throttle_code(code: &str) -> bool {
    code.contains("ProvisionedThroughputExceeded") || code.contains("Throttl")
}

/// The Kinesis stream of the central account.
#[derive(Debug, Clone)]
pub struct Kinesis {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl Kinesis {
    /// A client for `cfg.stream`, with the assumed role's credentials when
    /// `cfg.role_arn` is set. The SDK's own retries are off: the forwarder
    /// retries exactly the records that failed.
    pub async fn connect(cfg: &ForwarderConfig) -> Self {
        use aws_config::BehaviorVersion;
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let base = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(cfg.call_timeout)
                    .build(),
            )
            .load()
            .await;
        let conf = match &cfg.role_arn {
            None => aws_sdk_kinesis::config::Builder::from(&base).build(),
            Some(role) => {
                let mut p = aws_config::sts::AssumeRoleProvider::builder(role.clone())
                    .session_name("logferry-forwarder")
                    .configure(&base);
                if let Some(id) = &cfg.external_id {
                    p = p.external_id(id.clone());
                }
                aws_sdk_kinesis::config::Builder::from(&base)
                    .credentials_provider(p.build().await)
                    .build()
            }
        };
        Kinesis {
            client: aws_sdk_kinesis::Client::from_conf(conf),
            stream: cfg.stream.clone(),
        }
    }
}

#[async_trait]
impl Streams for Kinesis {
    async fn put(&self, batch: &[Rec]) -> std::result::Result<Vec<Option<String>>, CallError> {
        use aws_sdk_kinesis::error::SdkError;
        use aws_sdk_kinesis::operation::put_records::PutRecordsError;
        use aws_sdk_kinesis::primitives::Blob;
        use aws_sdk_kinesis::types::PutRecordsRequestEntry;
        let entries = batch
            .iter()
            .map(|r| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&r.key)
                    .data(Blob::new(r.data.to_vec()))
                    .build()
                    .map_err(|e| CallError {
                        code: "InvalidRequest".into(),
                        message: e.to_string(),
                        retryable: false,
                    })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut req = self.client.put_records().set_records(Some(entries));
        req = if self.stream.starts_with("arn:") {
            req.stream_arn(&self.stream)
        } else {
            req.stream_name(&self.stream)
        };
        match req.send().await {
            Ok(out) => {
                let codes: Vec<Option<String>> =
                    out.records.into_iter().map(|r| r.error_code).collect();
                if codes.len() != batch.len() {
                    return Err(CallError {
                        code: "InternalFailure".into(),
                        message: format!(
                            "PutRecords answered for {} records of {}",
                            codes.len(),
                            batch.len()
                        ),
                        retryable: true,
                    });
                }
                Ok(codes)
            }
            Err(e) => {
                let (code, retryable) = match &e {
                    SdkError::TimeoutError(_) => ("Timeout".to_string(), true),
                    SdkError::DispatchFailure(_) => ("Dispatch".to_string(), true),
                    SdkError::ResponseError(_) => ("ResponseError".to_string(), true),
                    SdkError::ServiceError(s) => {
                        let status = s.raw().status().as_u16();
                        let code = s.err().meta().code().unwrap_or("Unknown").to_string();
                        let retryable = matches!(
                            s.err(),
                            PutRecordsError::ProvisionedThroughputExceededException(_)
                        ) || status >= 500
                            || status == 429
                            || throttle_code(&code);
                        (code, retryable)
                    }
                    _ => ("Unknown".to_string(), true),
                };
                Err(CallError {
                    code,
                    message: aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
                    retryable,
                })
            }
        }
    }
}

/// Why records were dead-lettered (the DLQ prefix's folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// Still throttled or failing after every attempt.
    RetriesExhausted,
    /// The invocation's deadline came before the records went through.
    Deadline,
    /// Refused for good (access denied, no such stream, KMS).
    Rejected,
    /// The subscription payload itself could not be read.
    CorruptPayload,
}

impl DeadReason {
    /// The folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::RetriesExhausted => "retries_exhausted",
            DeadReason::Deadline => "deadline",
            DeadReason::Rejected => "rejected",
            DeadReason::CorruptPayload => "corrupt_payload",
        }
    }
}

/// What one invocation did. `events = delivered_events +
/// dead_lettered_events` always holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForwardOutcome {
    /// Log events in the subscription payload.
    pub events: u64,
    /// Kinesis records they were packed into.
    pub records: u64,
    /// Records delivered.
    pub delivered_records: u64,
    /// Events in the records delivered.
    pub delivered_events: u64,
    /// Records dead-lettered.
    pub dead_lettered_records: u64,
    /// Events in the records dead-lettered.
    pub dead_lettered_events: u64,
    /// PutRecords calls made.
    pub calls: u64,
    /// Records (and calls' records) answered with throttling.
    pub throttled: u64,
    /// Records sent again after a failure.
    pub retried: u64,
    /// Time in PutRecords, waits between retries included, seconds.
    pub put_seconds: f64,
    /// Dead-letter objects written (their keys under the prefix).
    pub dead_letter_objects: Vec<String>,
    /// Subscription payloads that could not be read (dead-lettered as
    /// they came: their events cannot be counted).
    pub corrupt_payloads: u64,
    /// A CloudWatch Logs control message (no events).
    pub control: bool,
}

/// Packs an envelope's events into Kinesis records of at most
/// `record_bytes` of envelope JSON each, ids and messages as written.
pub fn pack(env: &cwl::Envelope<'_>, record_bytes: usize) -> Result<Vec<Rec>> {
    let head = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": env.owner,
        "logGroup": env.log_group,
        "logStream": env.log_stream,
        "subscriptionFilters": ["logferry-forwarder"],
    })
    .to_string();
    // `{...head...,"logEvents":[` + events + `]}`
    let frame = head.len() + r#","logEvents":[]"#.len();
    let mut out = Vec::new();
    let mut events: Vec<Vec<u8>> = Vec::new();
    let mut size = frame;
    let flush = |events: &mut Vec<Vec<u8>>, out: &mut Vec<Rec>| -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut json = Vec::with_capacity(frame + events.iter().map(Vec::len).sum::<usize>());
        json.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        json.extend_from_slice(br#","logEvents":["#);
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(e);
        }
        json.extend_from_slice(b"]}");
        let key = partition_key(env, &events[0]);
        let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
        std::io::Write::write_all(&mut gz, &json)
            .map_err(|e| Error::Fatal(format!("gzip: {e}")))?;
        let data = gz
            .finish()
            .map_err(|e| Error::Fatal(format!("gzip: {e}")))?;
        let rec = Rec {
            key,
            data: Bytes::from(data),
            events: events.len(),
        };
        if rec.size() > limits::BYTES_PER_RECORD {
            return Err(Error::Fatal(format!(
                "a packed record is {} bytes, over Kinesis' 1 MiB",
                rec.size()
            )));
        }
        out.push(rec);
        events.clear();
        Ok(())
    };
    for e in &env.log_events {
        let mut one = Vec::with_capacity(e.message.len() + 64);
        one.extend_from_slice(br#"{"id":"#);
        one.extend_from_slice(e.id.get().as_bytes());
        one.extend_from_slice(br#","timestamp":"#);
        one.extend_from_slice(e.timestamp.to_string().as_bytes());
        one.extend_from_slice(br#","message":"#);
        serde_json::to_writer(&mut one, e.message.as_ref())?;
        one.push(b'}');
        // CloudWatch Logs events are at most 256 KiB; one larger than a
        // record travels alone, within Kinesis' 1 MiB.
        if one.len() + frame > MAX_RECORD_BYTES {
            return Err(Error::BadInput(format!(
                "a log event of {} bytes cannot fit one Kinesis record",
                one.len()
            )));
        }
        if !events.is_empty() && size + 1 + one.len() > record_bytes {
            flush(&mut events, &mut out)?;
            size = frame;
        }
        size += one.len() + usize::from(!events.is_empty());
        events.push(one);
    }
    flush(&mut events, &mut out)?;
    Ok(out)
}

/// A partition key from the log group, the log stream and the record's
/// first event: the same records always go to the same shard, different
/// ones spread evenly (Kinesis hashes the key with MD5).
fn partition_key(env: &cwl::Envelope<'_>, first_event: &[u8]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(env.log_group.as_bytes());
    h.update(b"\0");
    h.update(env.log_stream.as_bytes());
    h.update(b"\0");
    h.update(first_event);
    format!("{:032x}", h.digest128())
}

/// Splits records into PutRecords calls within Kinesis' limits, in order.
pub fn batches(recs: &[usize], all: &[Rec]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &i in recs {
        let size = all[i].size();
        let full = out.last().is_none_or(|b| {
            b.len() >= limits::RECORDS_PER_CALL || bytes + size > limits::BYTES_PER_CALL
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        if let Some(b) = out.last_mut() {
            b.push(i);
        }
        bytes += size;
    }
    out
}

/// Records the deliveries could not place, by reason.
type Dead = std::collections::BTreeMap<DeadReason, Vec<usize>>;

/// Puts `recs` into `streams`, retrying exactly what failed, until every
/// record is delivered or dead (returned by reason, with the last error).
pub async fn deliver(
    streams: &dyn Streams,
    recs: &[Rec],
    max_attempts: u32,
    backoff: Duration,
    deadline: Option<Instant>,
    out: &mut ForwardOutcome,
) -> (Dead, Option<String>) {
    let t0 = Instant::now();
    let mut dead = Dead::new();
    let mut last_error = None;
    let mut pending: Vec<usize> = (0..recs.len()).collect();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(backoff)
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    let mut attempt = 0;
    while !pending.is_empty() {
        attempt += 1;
        let mut again = Vec::new();
        for batch in batches(&pending, recs) {
            let part: Vec<Rec> = batch.iter().map(|&i| recs[i].clone()).collect();
            out.calls += 1;
            match streams.put(&part).await {
                Ok(codes) => {
                    for (&i, code) in batch.iter().zip(codes) {
                        match code {
                            None => {
                                out.delivered_records += 1;
                                out.delivered_events += recs[i].events as u64;
                            }
                            Some(c) => {
                                if throttle_code(&c) {
                                    out.throttled += 1;
                                }
                                if retryable_code(&c) {
                                    again.push(i);
                                } else {
                                    dead.entry(DeadReason::Rejected).or_default().push(i);
                                }
                                last_error = Some(c);
                            }
                        }
                    }
                }
                Err(e) => {
                    if throttle_code(&e.code) {
                        out.throttled += batch.len() as u64;
                    }
                    tracing::warn!(code = %e.code, error = %e.message, records = batch.len(),
                        retryable = e.retryable, "PutRecords failed.");
                    if e.retryable {
                        again.extend(&batch);
                    } else {
                        dead.entry(DeadReason::Rejected).or_default().extend(&batch);
                    }
                    last_error = Some(format!("{}: {}", e.code, e.message));
                }
            }
        }
        pending = again;
        if pending.is_empty() {
            break;
        }
        if attempt >= max_attempts {
            dead.entry(DeadReason::RetriesExhausted)
                .or_default()
                .append(&mut pending);
            break;
        }
        let wait = delays.next().unwrap_or(backoff);
        // Leave the dead-letter write time before Lambda stops the function.
        if deadline.is_some_and(|d| Instant::now() + wait + Duration::from_secs(2) > d) {
            dead.entry(DeadReason::Deadline)
                .or_default()
                .append(&mut pending);
            break;
        }
        out.retried += pending.len() as u64;
        tokio::time::sleep(wait).await;
    }
    out.put_seconds += t0.elapsed().as_secs_f64();
    (dead, last_error)
}

/// The forwarder: where records go and where undeliverable ones are kept.
pub struct Forwarder {
    /// Settings.
    pub config: ForwarderConfig,
    streams: Arc<dyn Streams>,
    dlq: Location,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("stream", &self.config.stream)
            .field("dlq", &self.config.dlq)
            .finish()
    }
}

impl Forwarder {
    /// The forwarder of `config`, putting into the central account's stream.
    pub async fn connect(config: ForwarderConfig) -> Result<Self> {
        let streams = Arc::new(Kinesis::connect(&config).await);
        Self::with_streams(config, streams)
    }

    /// The forwarder of `config`, putting into `streams`.
    pub fn with_streams(config: ForwarderConfig, streams: Arc<dyn Streams>) -> Result<Self> {
        let dlq = Location::open_with(&config.dlq, &config.aws)?;
        Ok(Forwarder {
            config,
            streams,
            dlq,
        })
    }

    /// One CloudWatch Logs subscription event. `request_id` names the
    /// dead-letter objects; `deadline` is the invocation's.
    pub async fn forward(
        &self,
        event: &Value,
        request_id: &str,
        deadline: Option<Instant>,
    ) -> Result<(ForwardOutcome, Histo)> {
        let mut out = ForwardOutcome::default();
        let mut latency = Histo::default();
        let data = event
            .pointer("/awslogs/data")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::BadInput(
                    "not a CloudWatch Logs subscription event (awslogs.data is missing)".into(),
                )
            })?;
        let arrival_ms = Utc::now().timestamp_millis();
        let mut json = Vec::new();
        let decoded = cwl::decode_base64(data.as_bytes()).and_then(|gz| {
            cwl::gunzip_bounded(&gz, MAX_PAYLOAD, &mut json)?;
            cwl::parse_envelope(&json, usize::MAX)
        });
        let env = match decoded {
            Ok(cwl::Decoded::Control) => {
                out.control = true;
                return Ok((out, latency));
            }
            Ok(cwl::Decoded::Data(env)) => env,
            Err(rejection) => {
                // Kept as it came, for inspection: no retry can fix it.
                tracing::error!(reason = ?rejection.reason, detail = %rejection.detail,
                    "The subscription payload cannot be read; dead-lettering it.");
                let key = self
                    .dead_letter(DeadReason::CorruptPayload, request_id, &[data.as_bytes()])
                    .await?;
                out.corrupt_payloads = 1;
                out.dead_letter_objects.push(key);
                return Ok((out, latency));
            }
        };
        out.events = env.log_events.len() as u64;
        for e in &env.log_events {
            latency.record((arrival_ms - e.timestamp).max(0) as f64);
        }
        let recs = pack(&env, self.config.record_bytes)?;
        out.records = recs.len() as u64;
        let (dead, last_error) = deliver(
            self.streams.as_ref(),
            &recs,
            self.config.max_attempts,
            self.config.backoff,
            deadline,
            &mut out,
        )
        .await;
        let b64 = base64::engine::general_purpose::STANDARD;
        for (reason, idx) in dead {
            use base64::Engine;
            let lines: Vec<String> = idx.iter().map(|&i| b64.encode(&recs[i].data)).collect();
            let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let key = self.dead_letter(reason, request_id, &refs).await?;
            let events: usize = idx.iter().map(|&i| recs[i].events).sum();
            tracing::error!(reason = reason.as_str(), records = idx.len(), events,
                last_error = last_error.as_deref().unwrap_or(""), object = %key,
                "Records could not be delivered; dead-lettered.");
            out.dead_lettered_records += idx.len() as u64;
            out.dead_lettered_events += events as u64;
            out.dead_letter_objects.push(key);
        }
        Ok((out, latency))
    }

    /// Writes `lines` (one base64 gzip envelope each) under
    /// `<prefix>/<stream>/<reason>/<date>/<request id>-<hash>.cwl`, once.
    async fn dead_letter(
        &self,
        reason: DeadReason,
        request_id: &str,
        lines: &[&[u8]],
    ) -> Result<String> {
        let mut body = Vec::new();
        for l in lines {
            body.extend_from_slice(l);
            body.push(b'\n');
        }
        let stream = self
            .config
            .stream
            .rsplit_once('/')
            .map_or(self.config.stream.as_str(), |(_, s)| s);
        let hash = xxhash_rust::xxh3::xxh3_64(&body);
        let key = format!(
            "{stream}/{}/{}/{}-{hash:016x}.cwl",
            reason.as_str(),
            Utc::now().format("%Y-%m-%d"),
            sanitize(request_id),
        );
        self.dlq
            .put_create(
                &object_store::path::Path::from(key.as_str()),
                Bytes::from(body),
            )
            .await
            .map_err(|e| Error::DeadLetter(format!("{}/{key}: {e}", self.config.dlq)))?;
        Ok(key)
    }

    /// The EMF document of an invocation.
    pub fn emf(&self, out: &ForwardOutcome, latency: &Histo) -> Emf {
        let c = &self.config;
        let mut d = Emf::new(
            &c.namespace,
            Component::Forwarder,
            &c.environment,
            c.tenant.as_deref(),
        )
        .metric("put_records", "Ok", out.delivered_records as f64)
        .metric("put_records", "Throttled", out.throttled as f64)
        .metric("put_records", "Failed", out.dead_lettered_records as f64)
        .metric("put_records_duration", "", out.put_seconds);
        let values: Vec<f64> = (1..=100)
            .filter_map(|i| latency.quantile(f64::from(i) / 100.0))
            .collect();
        if !values.is_empty() {
            d = d.metric_values("subscription_latency", values);
        }
        d
    }

    /// Any event: the response body, after printing the invocation's EMF
    /// line on standard output.
    pub async fn handle(
        &self,
        event: Value,
        request_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Value> {
        let (out, latency) = self.forward(&event, request_id, deadline).await?;
        println!(
            "{}",
            self.emf(&out, &latency).line(Utc::now().timestamp_millis())
        );
        tracing::info!(
            events = out.events,
            records = out.records,
            delivered = out.delivered_records,
            dead_lettered = out.dead_lettered_records,
            calls = out.calls,
            throttled = out.throttled,
            "Forwarded."
        );
        Ok(serde_json::to_value(out)?)
    }
}

/// A request id as a file name: letters, digits, `-` and `_`.
fn sanitize(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if s.is_empty() { "unknown".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn envelope(n: usize, msg_len: usize) -> String {
        let events: Vec<Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "id": format!("{:056}", i),
                    "timestamp": 1_767_225_600_000i64 + i as i64,
                    "message": format!("{{\"m\":\"{}\"}}", "x".repeat(msg_len)),
                })
            })
            .collect();
        serde_json::json!({
            "messageType": "DATA_MESSAGE",
            "owner": "111122223333",
            "logGroup": "/tenants/acme/api",
            "logStream": "s",
            "subscriptionFilters": ["f"],
            "logEvents": events,
        })
        .to_string()
    }

    fn unpack(r: &Rec) -> Value {
        let mut out = Vec::new();
        cwl::gunzip_bounded(&r.data, 1 << 24, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn packing_keeps_every_event_in_order_within_the_record_size() {
        let text = envelope(1000, 500);
        let cwl::Decoded::Data(env) = cwl::parse_envelope(text.as_bytes(), usize::MAX).unwrap()
        else {
            panic!("data");
        };
        let recs = pack(&env, 64 << 10).unwrap();
        assert!(recs.len() >= 8, "{} records", recs.len());
        let mut ids = Vec::new();
        for r in &recs {
            let v = unpack(r);
            let json_len = v.to_string().len();
            assert!(json_len <= 64 << 10, "{json_len}");
            assert_eq!(v["logGroup"], "/tenants/acme/api");
            let evs = v["logEvents"].as_array().unwrap();
            assert_eq!(evs.len(), r.events);
            ids.extend(evs.iter().map(|e| e["id"].as_str().unwrap().to_string()));
            // What logferry's Kinesis decoder reads.
            assert!(matches!(
                cwl::parse_envelope(v.to_string().as_bytes(), usize::MAX).unwrap(),
                cwl::Decoded::Data(_)
            ));
        }
        let want: Vec<String> = (0..1000).map(|i| format!("{:056}", i)).collect();
        assert_eq!(ids, want);
        let keys: std::collections::HashSet<_> = recs.iter().map(|r| &r.key).collect();
        assert_eq!(keys.len(), recs.len(), "partition keys differ per record");
    }

    #[test]
    fn calls_stay_within_kinesis_limits() {
        let big = |n| Rec {
            key: "k".into(),
            data: Bytes::from(vec![0u8; n]),
            events: 1,
        };
        let recs: Vec<Rec> = (0..1200).map(|_| big(100)).collect();
        let idx: Vec<usize> = (0..recs.len()).collect();
        let b = batches(&idx, &recs);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        let recs: Vec<Rec> = (0..12).map(|_| big(1_000_000)).collect();
        let idx: Vec<usize> = (0..recs.len()).collect();
        let b = batches(&idx, &recs);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5, 2]);
        for call in &b {
            assert!(call.iter().map(|&i| recs[i].size()).sum::<usize>() <= limits::BYTES_PER_CALL);
        }
    }

    /// Answers from a script: per call, per record, a code or success; a
    /// whole-call failure when the script says so.
    type Answer = Box<dyn Fn(usize, &Rec) -> Result<Option<String>, CallError> + Send + Sync>;

    struct Scripted {
        calls: Mutex<Vec<Vec<String>>>,
        answer: Answer,
    }

    #[async_trait]
    impl Streams for Scripted {
        async fn put(&self, batch: &[Rec]) -> std::result::Result<Vec<Option<String>>, CallError> {
            let n = {
                let mut c = self.calls.lock().unwrap();
                c.push(batch.iter().map(|r| r.key.clone()).collect());
                c.len()
            };
            batch.iter().map(|r| (self.answer)(n, r)).collect()
        }
    }

    fn recs(n: usize) -> Vec<Rec> {
        (0..n)
            .map(|i| Rec {
                key: format!("k{i}"),
                data: Bytes::from(vec![1u8; 10]),
                events: 2,
            })
            .collect()
    }

    #[tokio::test]
    async fn only_the_failed_records_are_sent_again() {
        // Call 1: every third record throttled; call 2: one internal
        // failure; call 3: all through.
        let s = Scripted {
            calls: Mutex::default(),
            answer: Box::new(|call, r| {
                let i: usize = r.key[1..].parse().unwrap();
                Ok(match call {
                    1 if i.is_multiple_of(3) => {
                        Some("ProvisionedThroughputExceededException".into())
                    }
                    2 if i == 3 => Some("InternalFailure".into()),
                    _ => None,
                })
            }),
        };
        let all = recs(10);
        let mut out = ForwardOutcome::default();
        let (dead, _) = deliver(&s, &all, 5, Duration::from_millis(1), None, &mut out).await;
        assert!(dead.is_empty());
        let calls = s.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1], vec!["k0", "k3", "k6", "k9"]);
        assert_eq!(calls[2], vec!["k3"]);
        assert_eq!(out.delivered_records, 10);
        assert_eq!(out.delivered_events, 20);
        assert_eq!(out.throttled, 4);
        assert_eq!(out.retried, 5);
    }

    #[tokio::test]
    async fn what_cannot_be_delivered_is_dead_by_reason() {
        let s = Scripted {
            calls: Mutex::default(),
            answer: Box::new(|_, r| {
                Ok(match r.key.as_str() {
                    "k0" => Some("ProvisionedThroughputExceededException".into()),
                    "k1" => Some("KMSAccessDeniedException".into()),
                    _ => None,
                })
            }),
        };
        let all = recs(4);
        let mut out = ForwardOutcome::default();
        let (dead, last) = deliver(&s, &all, 3, Duration::from_millis(1), None, &mut out).await;
        assert_eq!(dead[&DeadReason::RetriesExhausted], vec![0]);
        assert_eq!(dead[&DeadReason::Rejected], vec![1]);
        assert_eq!(out.delivered_records, 2);
        assert_eq!(out.calls, 3);
        assert!(last.is_some());
        // A whole call refused for good: every record dead at once.
        let s = Scripted {
            calls: Mutex::default(),
            answer: Box::new(|_, _| {
                Err(CallError {
                    code: "ResourceNotFoundException".into(),
                    message: "no such stream".into(),
                    retryable: false,
                })
            }),
        };
        let mut out = ForwardOutcome::default();
        let (dead, _) = deliver(&s, &all, 3, Duration::from_millis(1), None, &mut out).await;
        assert_eq!(dead[&DeadReason::Rejected], vec![0, 1, 2, 3]);
        assert_eq!(out.calls, 1);
        // A near deadline stops the retries.
        let s = Scripted {
            calls: Mutex::default(),
            answer: Box::new(|_, _| Ok(Some("ProvisionedThroughputExceededException".into()))),
        };
        let mut out = ForwardOutcome::default();
        let soon = Instant::now() + Duration::from_millis(500);
        let (dead, _) = deliver(&s, &all, 8, Duration::from_millis(1), Some(soon), &mut out).await;
        assert_eq!(dead[&DeadReason::Deadline].len(), 4);
        assert_eq!(out.calls, 1);
        assert_eq!(out.throttled, 4);
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        let e = ForwarderConfig::from_env([]).unwrap_err().to_string();
        assert!(e.contains("LOGFERRY_FORWARDER_STREAM"), "{e}");
        let base = || {
            vec![
                (
                    "LOGFERRY_FORWARDER_STREAM".to_string(),
                    "logs-acme".to_string(),
                ),
                (
                    "LOGFERRY_FORWARDER_DLQ".to_string(),
                    "s3://b/dlq".to_string(),
                ),
            ]
        };
        let c = ForwarderConfig::from_env(base()).unwrap();
        assert_eq!((c.max_attempts, c.record_bytes), (8, 256 << 10));
        let mut v = base();
        v.push(("LOGFERRY_FORWARDER_RECORD_BYTES".into(), "2000000".into()));
        let e = ForwarderConfig::from_env(v).unwrap_err().to_string();
        assert!(e.contains("LOGFERRY_FORWARDER_RECORD_BYTES"), "{e}");
        let mut v = base();
        v[1].1 = "bucket/dlq".into();
        assert!(ForwarderConfig::from_env(v).is_err());
    }
}
