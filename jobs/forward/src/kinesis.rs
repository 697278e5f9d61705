//! The Kinesis source: every shard of every tenant stream, read with
//! GetRecords within the service's limits, decoded with the same decoders as
//! files, landed per tenant and hour, and checkpointed.
//!
//! Exactly once, by construction:
//! - a shard's checkpoint (the last sequence number landed) is committed to
//!   the ledger only after every object holding its records is durable;
//! - landing objects are named after the shard and the sequence range they
//!   hold, so a replay after a crash (from the checkpoint, with the same
//!   flush bounds) finds its own earlier objects instead of writing others;
//!   if the bounds differ, the records' event ids (shard and sequence
//!   number) are the same and dedupe removes the second copy;
//! - a child shard is read only once its parents are finished (drained to
//!   their end and checkpointed), so records of one key stay in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use chrono::{DateTime, Utc};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use logferry_core::config::{AwsSettings, Settings, Tenant};
use logferry_core::failpoint;
use logferry_core::ledger::{Holder, Lease, Ledger};
use logferry_core::partition::{STATE, Stage, TenantId, Window, dlq_file, landing_file};
use logferry_core::storage::{Created, Location, writer_properties};

use crate::batcher::{ChunkOut, ChunkSink, DecodeStats};
use crate::decode::{Decoder, ItemCtx};
use crate::error::{Error, Result};
use crate::job::write_object;

/// A shard's progress in the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// Last sequence number landed.
    pub sequence_number: Option<String>,
    /// True once the shard is closed and read to its end.
    pub finished: bool,
    /// Records landed from the shard in total.
    pub records: u64,
    /// When it was committed.
    pub updated_at: DateTime<Utc>,
}

/// Ledger key of a shard's checkpoint.
pub fn checkpoint_key(stream: &str, shard: &str) -> String {
    format!("checkpoints/{stream}/{shard}")
}

/// A Kinesis client from the standard AWS environment, with the configured
/// region and endpoint overrides.
pub async fn client(aws: &AwsSettings) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(aws.max_attempts)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(10)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(aws.request_timeout)
                .build(),
        );
    if let Some(r) = &aws.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(e) = &aws.endpoint {
        loader = loader.endpoint_url(e);
    }
    Client::new(&loader.load().await)
}

/// What one shard read did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardReport {
    /// Stream.
    pub stream: String,
    /// Shard id.
    pub shard: String,
    /// Kinesis records read.
    pub kinesis_records: u64,
    /// GetRecords calls.
    pub calls: u64,
    /// Calls the service throttled (after the SDK's own retries).
    pub throttled: u64,
    /// Iterators that expired and were renewed.
    pub expired_iterators: u64,
    /// Landing and DLQ objects written.
    pub objects: u64,
    /// Objects found already written (a replay).
    pub objects_existing: u64,
    /// Largest MillisBehindLatest seen: the source lag (IteratorAge).
    pub max_millis_behind_latest: i64,
    /// MillisBehindLatest of the last call.
    pub last_millis_behind_latest: i64,
    /// True when the shard was read to its end.
    pub finished: bool,
    /// Last sequence number checkpointed.
    pub checkpoint: Option<String>,
}

/// What one `forward --kinesis` did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KinesisReport {
    /// Per shard.
    pub shards: Vec<ShardReport>,
    /// Shards left to the forwarder that held their lease (`stream/shard`).
    #[serde(default)]
    pub busy_shards: Vec<String>,
    /// Streams whose reader failed (`--once`: the others were read; when
    /// following, failed readers are restarted and counted here).
    #[serde(default)]
    pub failed_streams: BTreeMap<String, String>,
    /// Restarts of failed stream readers (following).
    #[serde(default)]
    pub restarts: u64,
    /// What the decoder made of the records.
    pub decode: DecodeStats,
    /// Wall time.
    pub duration_ms: u64,
}

impl KinesisReport {
    /// Largest source lag over the shards.
    pub fn max_lag_ms(&self) -> i64 {
        self.shards
            .iter()
            .map(|s| s.max_millis_behind_latest)
            .max()
            .unwrap_or(0)
    }
}

/// The shards that may be read now: not finished, and every parent either
/// finished or gone from the stream (trimmed past retention).
pub fn ready_shards<'a>(shards: &'a [Shard], finished: &BTreeSet<String>) -> Vec<&'a Shard> {
    let listed: BTreeSet<&str> = shards.iter().map(|s| s.shard_id()).collect();
    shards
        .iter()
        .filter(|s| !finished.contains(s.shard_id()))
        .filter(|s| {
            [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .all(|p| finished.contains(p) || !listed.contains(p))
        })
        .collect()
}

enum ReadError {
    Throttled,
    Expired,
    Fatal(String),
}

fn classify(e: &SdkError<GetRecordsError>) -> ReadError {
    match e {
        SdkError::ServiceError(se) => match se.err() {
            GetRecordsError::ProvisionedThroughputExceededException(_) => ReadError::Throttled,
            GetRecordsError::ExpiredIteratorException(_) => ReadError::Expired,
            GetRecordsError::InternalFailureException(_) => ReadError::Throttled,
            other if other.code() == Some("LimitExceededException") => ReadError::Throttled,
            _ => ReadError::Fatal(DisplayErrorContext(e).to_string()),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ReadError::Throttled
        }
        _ => ReadError::Fatal(DisplayErrorContext(e).to_string()),
    }
}

/// A shard being read: where its checkpoint stands.
struct Cursor {
    stream: String,
    shard: String,
    prev_version: Option<u64>,
    total: u64,
    report: ShardReport,
}

/// What one stream's reader returns: its shards' reports, the shards other
/// forwarders held, and what was decoded.
type StreamOutcome = (Vec<ShardReport>, Vec<String>, DecodeStats);

/// The records of one shard between two checkpoints.
struct Pending {
    sink: ChunkSink,
    first: Option<String>,
    last: Option<String>,
    records: u64,
    bytes: usize,
    opened: Instant,
}

/// How one stream's reader is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamState {
    /// True while the reader runs; false while it waits to be restarted.
    pub up: bool,
    /// Restarts after failures.
    pub restarts: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it last started or failed.
    pub since: DateTime<Utc>,
    /// MillisBehindLatest of each shard's last GetRecords.
    pub lag_ms: BTreeMap<String, i64>,
    /// Records read since the process started.
    pub records: u64,
}

/// The stream readers' health, shared with whoever reports it (the
/// daemon's `/readyz` and `/metrics`).
#[derive(Debug, Default)]
pub struct StreamHealth {
    streams: std::sync::Mutex<BTreeMap<String, StreamState>>,
    /// What the readers decoded and landed durably so far.
    landed: std::sync::Mutex<DecodeStats>,
}

impl StreamHealth {
    fn update(&self, stream: &str, f: impl FnOnce(&mut StreamState)) {
        let mut all = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let st = all
            .entry(stream.to_string())
            .or_insert_with(|| StreamState {
                up: true,
                restarts: 0,
                last_error: None,
                since: Utc::now(),
                lag_ms: BTreeMap::new(),
                records: 0,
            });
        f(st);
    }

    /// Every stream's state.
    pub fn snapshot(&self) -> BTreeMap<String, StreamState> {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the readers decoded and landed (durably, checkpoint to follow)
    /// since the process started, every stream together.
    pub fn landed(&self) -> DecodeStats {
        self.landed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True when every known stream's reader runs.
    pub fn all_up(&self) -> bool {
        self.snapshot().values().all(|s| s.up)
    }
}

/// Reads tenant streams into the lake.
#[derive(Debug, Clone)]
pub struct KinesisForwarder {
    settings: Arc<Settings>,
    lake: Location,
    ledger: Ledger,
    client: Client,
    props: WriterProperties,
    tenant_ids: Arc<Vec<String>>,
    holder: Holder,
    health: Arc<StreamHealth>,
}

impl KinesisForwarder {
    /// A forwarder into `lake`.
    pub async fn new(settings: Arc<Settings>, lake: Location) -> Result<Self> {
        let client = client(&settings.aws).await;
        Ok(KinesisForwarder {
            props: writer_properties(&settings.parquet)?,
            tenant_ids: Arc::new(
                settings
                    .tenants
                    .all()
                    .iter()
                    .map(|t| t.id.to_string())
                    .collect(),
            ),
            ledger: Ledger::new(lake.store.clone(), STATE),
            settings,
            lake,
            client,
            holder: Holder::this_process(),
            health: Arc::new(StreamHealth::default()),
        })
    }

    /// The readers' health.
    pub fn health(&self) -> Arc<StreamHealth> {
        self.health.clone()
    }

    /// The Kinesis client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads every configured stream. With `once`, every shard is read up
    /// to its current tip and the call returns; otherwise it follows the
    /// streams until `stop` is set, then flushes, checkpoints and returns.
    pub async fn run(&self, once: bool, stop: Arc<AtomicBool>) -> Result<KinesisReport> {
        let start = Instant::now();
        let streams: Vec<(String, Tenant)> = self
            .settings
            .tenants
            .all()
            .iter()
            .flat_map(|t| t.streams.iter().map(move |s| (s.clone(), t.clone())))
            .collect();
        if streams.is_empty() {
            return Err(Error::Core(logferry_core::Error::Config(
                "no [[tenant]] has streams: nothing to read from Kinesis".into(),
            )));
        }
        // One task per stream. A reader that fails is reported at once
        // (log, health, the report) and, when following, restarted after a
        // backoff while the other streams go on; with `once`, the others
        // are read to their tips and the run then fails naming it.
        let d = &self.settings.daemon;
        let mut tasks: tokio::task::JoinSet<(String, Tenant, u32, Result<StreamOutcome>)> =
            tokio::task::JoinSet::new();
        let spawn = |tasks: &mut tokio::task::JoinSet<_>,
                     stream: String,
                     tenant: Tenant,
                     failures: u32,
                     delay: Duration| {
            let me = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                if !delay.is_zero() {
                    // Sleep in steps, so that a stop is not held up.
                    let until = Instant::now() + delay;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now()))
                            .await;
                    }
                    if stop.load(Ordering::Relaxed) {
                        return (
                            stream,
                            tenant,
                            failures,
                            Ok((Vec::new(), Vec::new(), DecodeStats::default())),
                        );
                    }
                    me.health.update(&stream, |s| {
                        s.up = true;
                        s.since = Utc::now();
                    });
                }
                let started = Instant::now();
                let r = me.stream(&stream, &tenant, once, stop).await;
                // A reader that ran a good while before failing starts its
                // backoff afresh.
                let failures = if started.elapsed() > Duration::from_secs(60) {
                    0
                } else {
                    failures
                };
                (stream, tenant, failures, r)
            });
        };
        for (stream, tenant) in streams {
            self.health.update(&stream, |_| {});
            spawn(&mut tasks, stream, tenant, 0, Duration::ZERO);
        }
        let mut report = KinesisReport::default();
        while let Some(joined) = tasks.join_next().await {
            let (stream, tenant, failures, result) = match joined {
                Ok(v) => v,
                Err(e) => {
                    // A panicking reader: its stream is not known here.
                    tracing::error!(error = %e, "A stream reader task died.");
                    report
                        .failed_streams
                        .insert("?".into(), format!("stream task: {e}"));
                    continue;
                }
            };
            match result {
                Ok((shards, busy, stats)) => {
                    report.shards.extend(shards);
                    report.busy_shards.extend(busy);
                    report.decode.merge(stats);
                }
                Err(e) => {
                    let failures = failures + 1;
                    tracing::error!(%stream, error = %e, failures, "Stream reader failed.");
                    self.health.update(&stream, |s| {
                        s.up = false;
                        s.last_error = Some(e.to_string());
                        s.since = Utc::now();
                    });
                    report.failed_streams.insert(stream.clone(), e.to_string());
                    if !once && !stop.load(Ordering::Relaxed) {
                        let delay = d
                            .restart_backoff
                            .saturating_mul(1 << (failures - 1).min(16))
                            .min(d.restart_backoff_max);
                        tracing::warn!(%stream, delay_ms = delay.as_millis() as u64, "Restarting the stream reader.");
                        report.restarts += 1;
                        self.health.update(&stream, |s| s.restarts += 1);
                        spawn(&mut tasks, stream, tenant, failures, delay);
                    }
                }
            }
        }
        report.duration_ms = start.elapsed().as_millis() as u64;
        if once && !report.failed_streams.is_empty() {
            return Err(Error::Source(format!(
                "{} of the streams failed (the others were read): {}",
                report.failed_streams.len(),
                report
                    .failed_streams
                    .iter()
                    .map(|(s, e)| format!("{s}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        Ok(report)
    }

    async fn list_shards(&self, stream: &str) -> Result<Vec<Shard>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = self.client.list_shards().max_results(1000);
            // With a next token, the stream name must not be sent.
            let req = match token.take() {
                Some(t) => req.next_token(t),
                None => req.stream_name(stream),
            };
            let resp = req.send().await.map_err(|e| {
                Error::Source(format!("ListShards {stream}: {}", DisplayErrorContext(&e)))
            })?;
            out.extend(resp.shards.unwrap_or_default());
            match resp.next_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn stream(
        &self,
        stream: &str,
        tenant: &Tenant,
        once: bool,
        stop: Arc<AtomicBool>,
    ) -> Result<StreamOutcome> {
        let mut reports = Vec::new();
        let mut busy = BTreeSet::new();
        let mut stats = DecodeStats::default();
        // Shards read to their tip (--once) or to their end in this run.
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut running: BTreeSet<String> = BTreeSet::new();
        let mut tasks: tokio::task::JoinSet<Result<(ShardReport, DecodeStats)>> =
            tokio::task::JoinSet::new();
        loop {
            if !stop.load(Ordering::Relaxed) {
                let shards = self.list_shards(stream).await?;
                let cps = self
                    .ledger
                    .latest_under::<Checkpoint>(&format!("checkpoints/{stream}"), |_| true)
                    .await?;
                let finished: BTreeSet<String> = cps
                    .iter()
                    .filter(|(_, v)| v.value.finished)
                    .filter_map(|(k, _)| k.rsplit('/').next().map(str::to_string))
                    .collect();
                for s in ready_shards(&shards, &finished) {
                    let id = s.shard_id().to_string();
                    if done.contains(&id) || running.contains(&id) {
                        continue;
                    }
                    // One reader per shard: another forwarder reading it
                    // keeps it (until its lease lapses).
                    let key = format!("leases/shards/{stream}/{id}");
                    let Some(lease) = self
                        .ledger
                        .try_lease(&key, &self.holder, self.settings.kinesis.lease_ttl)
                        .await?
                    else {
                        tracing::info!(%stream, shard = %id, "Shard is read by another forwarder: skipped.");
                        busy.insert(format!("{stream}/{id}"));
                        if once {
                            done.insert(id);
                        }
                        continue;
                    };
                    busy.remove(&format!("{stream}/{id}"));
                    running.insert(id.clone());
                    let me = self.clone();
                    let (stream, tenant, stop) = (stream.to_string(), tenant.clone(), stop.clone());
                    tasks.spawn(
                        async move { me.shard(&stream, &tenant, &id, once, stop, lease).await },
                    );
                }
            }
            if tasks.is_empty() {
                if once || stop.load(Ordering::Relaxed) {
                    return Ok((reports, busy.into_iter().collect(), stats));
                }
                tokio::time::sleep(self.settings.kinesis.idle_interval).await;
                continue;
            }
            // A finished shard may make its children ready: look again when
            // a reader ends, and every half minute while following.
            let ended = if once {
                tasks.join_next().await
            } else {
                tokio::select! {
                    r = tasks.join_next() => r,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => None,
                }
            };
            if let Some(r) = ended {
                let (r, s) = r.map_err(|e| Error::Internal(format!("shard task: {e}")))??;
                running.remove(&r.shard);
                done.insert(r.shard.clone());
                stats.merge(s);
                reports.push(r);
            }
        }
    }

    async fn iterator(
        &self,
        stream: &str,
        shard: &str,
        after: Option<&str>,
    ) -> Result<Option<String>> {
        let req = self
            .client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard);
        let req = match after {
            Some(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None if self.settings.kinesis.start_at_latest => {
                req.shard_iterator_type(ShardIteratorType::Latest)
            }
            None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let resp = req.send().await.map_err(|e| {
            Error::Source(format!(
                "GetShardIterator {stream}/{shard}: {}",
                DisplayErrorContext(&e)
            ))
        })?;
        Ok(resp.shard_iterator)
    }

    fn new_pending(&self, arrival_us: i64) -> Pending {
        Pending {
            sink: ChunkSink::new(self.tenant_ids.len(), arrival_us),
            first: None,
            last: None,
            records: 0,
            bytes: 0,
            opened: Instant::now(),
        }
    }

    /// Lands what `p` holds and then checkpoints its last sequence number.
    async fn flush(&self, c: &mut Cursor, p: Pending, finished: bool) -> Result<DecodeStats> {
        let (stream, shard) = (c.stream.as_str(), c.shard.as_str());
        let Pending {
            sink,
            first,
            last,
            records,
            ..
        } = p;
        let out = sink.finish(&self.tenant_ids).map_err(Error::Writer)?;
        let stats = out.stats.clone();
        if let (Some(first), Some(last)) = (&first, &last) {
            let id = format!("kinesis-{stream}-{shard}-{first}-{last}");
            let (new, existing) = land(
                &self.lake,
                &self.ledger,
                &self.props,
                &self.tenant_ids,
                out,
                &id,
            )
            .await?;
            c.report.objects += new;
            c.report.objects_existing += existing;
            self.health
                .landed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(&stats);
        }
        failpoint::hit("kinesis.after_landing_put");
        // Everything above is durable: now the checkpoint may move.
        if last.is_some() || finished {
            c.total += records;
            let cp = Checkpoint {
                sequence_number: last.clone().or(c.report.checkpoint.clone()),
                finished,
                records: c.total,
                updated_at: Utc::now(),
            };
            let v = self
                .ledger
                .commit(&checkpoint_key(stream, shard), c.prev_version, &cp)
                .await?;
            c.prev_version = Some(v);
            c.report.checkpoint = cp.sequence_number;
            failpoint::hit("kinesis.after_checkpoint");
        }
        Ok(stats)
    }

    async fn shard(
        &self,
        stream: &str,
        tenant: &Tenant,
        shard: &str,
        once: bool,
        stop: Arc<AtomicBool>,
        mut lease: Lease,
    ) -> Result<(ShardReport, DecodeStats)> {
        let result = self
            .read_shard(stream, tenant, shard, once, stop, &mut lease)
            .await;
        lease.release().await?;
        result
    }

    async fn read_shard(
        &self,
        stream: &str,
        tenant: &Tenant,
        shard: &str,
        once: bool,
        stop: Arc<AtomicBool>,
        lease: &mut Lease,
    ) -> Result<(ShardReport, DecodeStats)> {
        let mut renewed = Instant::now();
        let k = &self.settings.kinesis;
        let f = &self.settings.forward;
        let cp = self
            .ledger
            .latest::<Checkpoint>(&checkpoint_key(stream, shard))
            .await?;
        let mut c = Cursor {
            stream: stream.to_string(),
            shard: shard.to_string(),
            prev_version: cp.as_ref().map(|c| c.version),
            total: cp.as_ref().map_or(0, |c| c.value.records),
            report: ShardReport {
                stream: stream.to_string(),
                shard: shard.to_string(),
                checkpoint: cp.as_ref().and_then(|c| c.value.sequence_number.clone()),
                ..Default::default()
            },
        };
        let mut stats = DecodeStats::default();
        let mut last_read: Option<String> = c.report.checkpoint.clone();
        let mut iterator = self.iterator(stream, shard, last_read.as_deref()).await?;
        let input = format!("kinesis:{stream}/{shard}");
        let mut decoder = Decoder::new(f, &self.settings.tenants, Utc::now().timestamp_micros());
        let mut pending: Option<Pending> = None;
        let mut next_call = Instant::now();
        let mut throttles = 0u32;
        loop {
            let Some(it) = iterator.clone() else {
                // The shard is closed and read to its end.
                let p = pending
                    .take()
                    .unwrap_or_else(|| self.new_pending(Utc::now().timestamp_micros()));
                stats.merge(self.flush(&mut c, p, true).await?);
                c.report.finished = true;
                return Ok((c.report, stats));
            };
            tokio::time::sleep_until(next_call.into()).await;
            if renewed.elapsed() > k.lease_ttl / 3 {
                lease.renew().await?;
                renewed = Instant::now();
            }
            c.report.calls += 1;
            let resp = match self
                .client
                .get_records()
                .shard_iterator(&it)
                .limit(k.max_records_per_call)
                .send()
                .await
            {
                Ok(r) => {
                    throttles = 0;
                    r
                }
                Err(e) => match classify(&e) {
                    ReadError::Throttled => {
                        c.report.throttled += 1;
                        throttles += 1;
                        if throttles > 20 {
                            return Err(Error::Source(format!(
                                "GetRecords {stream}/{shard}: still throttled after {throttles} tries: {}",
                                DisplayErrorContext(&e)
                            )));
                        }
                        next_call = Instant::now() + logferry_core::retry::backoff(throttles);
                        continue;
                    }
                    ReadError::Expired => {
                        c.report.expired_iterators += 1;
                        iterator = self.iterator(stream, shard, last_read.as_deref()).await?;
                        continue;
                    }
                    ReadError::Fatal(m) => {
                        return Err(Error::Source(format!("GetRecords {stream}/{shard}: {m}")));
                    }
                },
            };
            let lag = resp.millis_behind_latest.unwrap_or(0);
            let got = resp.records.len() as u64;
            self.health.update(stream, |s| {
                s.lag_ms.insert(shard.to_string(), lag);
                s.records += got;
            });
            c.report.last_millis_behind_latest = lag;
            c.report.max_millis_behind_latest = c.report.max_millis_behind_latest.max(lag);
            let now = f.reference_time.unwrap_or_else(Utc::now);
            decoder.set_now(now.timestamp_micros());
            let mut bytes = 0usize;
            let caught_up = resp.records.is_empty() && lag == 0;
            for r in resp.records {
                let arrival = r
                    .approximate_arrival_timestamp
                    .and_then(|t| t.to_millis().ok())
                    .map(|ms| ms * 1000)
                    .unwrap_or_else(|| now.timestamp_micros());
                let p = pending.get_or_insert_with(|| self.new_pending(arrival));
                let data = r.data.as_ref();
                bytes += data.len();
                let ctx = ItemCtx {
                    input: &input,
                    ingest_us: Utc::now().timestamp_micros(),
                };
                decoder.kinesis_record(
                    data,
                    tenant,
                    stream,
                    shard,
                    &r.sequence_number,
                    &ctx,
                    &mut p.sink,
                );
                p.first.get_or_insert_with(|| r.sequence_number.clone());
                p.last = Some(r.sequence_number.clone());
                p.records += 1;
                p.bytes += data.len();
                c.report.kinesis_records += 1;
                last_read = Some(r.sequence_number);
            }
            iterator = resp.next_shard_iterator;
            let stopping = stop.load(Ordering::Relaxed) || (once && caught_up);
            let full = pending.as_ref().is_some_and(|p| {
                p.records >= f.batch_max_records as u64
                    || p.bytes >= f.batch_max_bytes
                    || p.opened.elapsed() >= f.batch_max_age
            });
            if (full || stopping)
                && let Some(p) = pending.take()
            {
                stats.merge(self.flush(&mut c, p, false).await?);
            }
            if stopping && iterator.is_some() {
                return Ok((c.report, stats));
            }
            // Stay under 5 calls/s and the read budget per shard; idle at the tip.
            let spacing = k.min_call_interval.max(Duration::from_secs_f64(
                bytes as f64 / k.max_bytes_per_second as f64,
            ));
            next_call = Instant::now()
                + if caught_up {
                    spacing.max(k.idle_interval)
                } else {
                    spacing
                };
        }
    }
}

/// Writes what a chunk decoded to as landing and dead-letter objects named
/// `<id>` (deterministic for the records they hold), each create-once.
/// Returns (objects written, objects found already written).
pub async fn land(
    lake: &Location,
    ledger: &Ledger,
    props: &WriterProperties,
    tenant_ids: &[String],
    out: ChunkOut,
    id: &str,
) -> Result<(u64, u64)> {
    let (mut new, mut existing) = (0, 0);
    let mut count = |c: Created| match c {
        Created::New => new += 1,
        Created::Existed => existing += 1,
    };
    for ((t, hour), part) in out.landing {
        let tenant = tenant_ids
            .get(t)
            .ok_or_else(|| Error::Internal(format!("tenant index {t} out of range")))?;
        let (Ok(tid), Some(w)) = (TenantId::new(tenant), Window::from_hour_index(hour)) else {
            return Err(Error::Internal(format!(
                "no partition for {tenant} hour {hour}"
            )));
        };
        let written = write_object(
            &lake.store,
            ledger,
            props.clone(),
            landing_file(&tid, w, id),
            vec![part.batch],
            Some((w, tenant.clone(), id.to_string())),
        )
        .await?;
        count(written.created);
    }
    for ((key, hour), part) in out.dlq {
        let Some(w) = Window::from_hour_index(hour) else {
            return Err(Error::Internal(format!("no window for hour {hour}")));
        };
        let written = write_object(
            &lake.store,
            ledger,
            props.clone(),
            dlq_file(Stage::Forward, &key, w, id),
            vec![part.batch],
            None,
        )
        .await?;
        count(written.created);
    }
    Ok((new, existing))
}

/// Reports by stream, for printing.
pub fn by_stream(r: &KinesisReport) -> BTreeMap<String, Vec<&ShardReport>> {
    let mut m: BTreeMap<String, Vec<&ShardReport>> = BTreeMap::new();
    for s in &r.shards {
        m.entry(s.stream.clone()).or_default().push(s);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::SequenceNumberRange;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>) -> Shard {
        Shard::builder()
            .shard_id(id)
            .set_parent_shard_id(parent.map(str::to_string))
            .set_adjacent_parent_shard_id(adjacent.map(str::to_string))
            .sequence_number_range(
                SequenceNumberRange::builder()
                    .starting_sequence_number("1")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn parents_are_drained_before_children() {
        // 0 split into 1 and 2; 1 and 2 merged into 3.
        let shards = vec![
            shard("s0", None, None),
            shard("s1", Some("s0"), None),
            shard("s2", Some("s0"), None),
            shard("s3", Some("s1"), Some("s2")),
        ];
        let ids = |f: &BTreeSet<String>| -> Vec<String> {
            ready_shards(&shards, f)
                .iter()
                .map(|s| s.shard_id().to_string())
                .collect()
        };
        let mut finished = BTreeSet::new();
        assert_eq!(ids(&finished), ["s0"]);
        finished.insert("s0".to_string());
        assert_eq!(ids(&finished), ["s1", "s2"]);
        finished.insert("s1".to_string());
        assert_eq!(ids(&finished), ["s2"]);
        finished.insert("s2".to_string());
        assert_eq!(ids(&finished), ["s3"]);
        // A parent trimmed away (no longer listed) does not block its child.
        let orphan = vec![shard("s5", Some("gone"), None)];
        assert_eq!(ready_shards(&orphan, &BTreeSet::new()).len(), 1);
    }
}
