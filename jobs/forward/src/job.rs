//! The forward job: an input (file or stdin, NDJSON or CloudWatch Logs
//! payloads) decoded on one thread, batched, and written to the lake by a
//! writer that encodes Parquet on the other core. Landing objects are marked
//! pending in the ledger once durable, so `run` finds their windows.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use chrono::Utc;
use object_store::ObjectStore;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use logferry_core::config::Settings;
use logferry_core::failpoint;
use logferry_core::ledger::Ledger;
use logferry_core::metrics::{LatencyRecorder, LatencyStats};
use logferry_core::partition::pending_marker;
use logferry_core::storage::{Created, Location, encode_parquet, put_create, writer_properties};

use crate::batcher::{Batcher, ChunkOut, ChunkSink, DecodeStats, Flush};
use crate::decode::{Decoder, ItemCtx, Pos};
use crate::error::{Error, Result};
use crate::reader::{Chunk, read_lines};
use crate::reason::Reason;

/// Input encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON record per line; the tenant comes from the stream field.
    Ndjson,
    /// One base64(gzip(CloudWatch Logs envelope)) per line.
    Cloudwatch,
}

/// A reader handed over once (an object streamed from a store, through a
/// decompressor).
pub type SharedReader = Arc<std::sync::Mutex<Option<Box<dyn std::io::Read + Send>>>>;

/// Where records come from.
#[derive(Clone)]
pub enum Input {
    /// A file, read once (deterministic batches).
    File(PathBuf),
    /// Standard input, read as a stream (age-based flushes).
    Stdin,
    /// A reader with a name, read once like a file (deterministic batches).
    Reader {
        /// Name used in DLQ entries and reports (the object's URL).
        name: String,
        /// The bytes.
        reader: SharedReader,
    },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Input({})", self.name())
    }
}

impl Input {
    /// An input read from `reader`, named `name`.
    pub fn reader(name: impl Into<String>, reader: Box<dyn std::io::Read + Send>) -> Self {
        Input::Reader {
            name: name.into(),
            reader: Arc::new(std::sync::Mutex::new(Some(reader))),
        }
    }

    /// Name used in DLQ entries and reports.
    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "stdin".into(),
            Input::Reader { name, .. } => name.clone(),
        }
    }
}

/// What one forward run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ForwardReport {
    /// Input name.
    pub input: String,
    /// Input format.
    pub format: Option<Format>,
    /// Bytes read.
    pub input_bytes: u64,
    /// Blank lines skipped.
    pub blank_lines: u64,
    /// What the decoder made of the input.
    pub decode: DecodeStats,
    /// Landing objects written.
    pub landing_files: u64,
    /// Landing objects found already written by an earlier run.
    pub landing_files_existing: u64,
    /// Rows in the landing objects written.
    pub landing_rows: u64,
    /// Bytes of the landing objects written.
    pub landing_bytes: u64,
    /// Dead-letter objects written.
    pub dlq_files: u64,
    /// Dead-letter objects found already written.
    pub dlq_files_existing: u64,
    /// Bytes of the dead-letter objects written.
    pub dlq_bytes: u64,
    /// Object store put latency.
    pub put_latency: LatencyStats,
    /// Wall time.
    pub duration_ms: u64,
    /// Records (and refused items) per second.
    pub records_per_s: f64,
    /// Input megabytes per second.
    pub mb_per_s: f64,
}

#[derive(Debug, Default)]
struct WriteStats {
    landing_files: u64,
    landing_files_existing: u64,
    landing_rows: u64,
    landing_bytes: u64,
    dlq_files: u64,
    dlq_files_existing: u64,
    dlq_bytes: u64,
    latency: LatencyRecorder,
}

pub(crate) struct Written {
    pub(crate) landing: bool,
    pub(crate) created: Created,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) latency: Duration,
}

impl WriteStats {
    fn add(&mut self, w: Written) {
        self.latency.record(w.latency);
        match (w.landing, w.created) {
            (true, Created::New) => {
                self.landing_files += 1;
                self.landing_rows += w.rows;
                self.landing_bytes += w.bytes;
            }
            (true, Created::Existed) => self.landing_files_existing += 1,
            (false, Created::New) => {
                self.dlq_files += 1;
                self.dlq_bytes += w.bytes;
            }
            (false, Created::Existed) => self.dlq_files_existing += 1,
        }
    }
}

/// Writes one flush and returns its share of the memory budget.
async fn write_one(
    f: Flush,
    store: Arc<dyn ObjectStore>,
    ledger: Ledger,
    props: WriterProperties,
) -> Result<Written> {
    let Flush {
        path,
        batches,
        landing,
        ticket,
    } = f;
    let written = write_object(&store, &ledger, props, path, batches, landing).await;
    drop(ticket);
    written
}

/// Writes one object: encode (on a blocking thread), create-once put, then
/// for landing objects the pending marker. The marker comes after the object
/// is durable; if the process dies between the two, the rerun finds the
/// object, skips the write and still places the marker.
pub(crate) async fn write_object(
    store: &Arc<dyn ObjectStore>,
    ledger: &Ledger,
    props: WriterProperties,
    path: object_store::path::Path,
    batches: Vec<arrow::record_batch::RecordBatch>,
    landing: Option<(logferry_core::partition::Window, String, String)>,
) -> Result<Written> {
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    let bytes = tokio::task::spawn_blocking(move || -> Result<bytes::Bytes> {
        let Some(first) = batches.first() else {
            return Err(Error::Internal("empty flush".into()));
        };
        let schema = first.schema();
        Ok(encode_parquet(&schema, &batches, &props)?)
    })
    .await
    .map_err(|e| Error::Internal(format!("encoder task failed: {e}")))??;
    let size = bytes.len() as u64;
    let t0 = Instant::now();
    let created = put_create(store.as_ref(), &path, bytes).await?;
    let latency = t0.elapsed();
    if let Some((window, tenant, batch_id)) = &landing {
        failpoint::hit("forward.after_landing_put");
        ledger
            .mark(&pending_marker(*window, tenant, batch_id))
            .await?;
        failpoint::hit("forward.after_pending_marker");
    } else {
        failpoint::hit("forward.after_dlq_put");
    }
    Ok(Written {
        landing: landing.is_some(),
        created,
        rows,
        bytes: size,
        latency,
    })
}

async fn write_all(
    mut rx: tokio::sync::mpsc::Receiver<Flush>,
    store: Arc<dyn ObjectStore>,
    ledger: Ledger,
    props: WriterProperties,
) -> Result<WriteStats> {
    let mut stats = WriteStats::default();
    let mut inflight: JoinSet<Result<Written>> = JoinSet::new();
    while let Some(f) = rx.recv().await {
        while inflight.len() >= 2 {
            if let Some(r) = inflight.join_next().await {
                stats.add(r.map_err(|e| Error::Internal(format!("writer task: {e}")))??);
            }
        }
        inflight.spawn(write_one(f, store.clone(), ledger.clone(), props.clone()));
    }
    while let Some(r) = inflight.join_next().await {
        stats.add(r.map_err(|e| Error::Internal(format!("writer task: {e}")))??);
    }
    Ok(stats)
}

/// Forwards inputs into a lake.
#[derive(Debug, Clone)]
pub struct Forwarder {
    settings: Arc<Settings>,
    lake: Location,
    ledger: Ledger,
}

impl Forwarder {
    /// A forwarder writing to `lake`, with its ledger under `_state/`.
    pub fn new(settings: Arc<Settings>, lake: Location) -> Self {
        let ledger = Ledger::new(lake.store.clone(), logferry_core::partition::STATE);
        Forwarder {
            settings,
            lake,
            ledger,
        }
    }

    /// Reads `input` to its end and lands it. `progress` advances with the
    /// bytes read.
    pub async fn forward(
        &self,
        input: &Input,
        format: Format,
        progress: Arc<AtomicU64>,
    ) -> Result<ForwardReport> {
        if self.settings.tenants.is_empty() {
            return Err(Error::Core(logferry_core::Error::Config(
                "no [[tenant]] is configured: every record would be refused as unknown_tenant. \
                 Give a config file with --config (see README)"
                    .into(),
            )));
        }
        let start = Instant::now();
        let props = writer_properties(&self.settings.parquet)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Flush>(2);
        let writer = tokio::spawn(write_all(
            rx,
            self.lake.store.clone(),
            self.ledger.clone(),
            props,
        ));
        let settings = self.settings.clone();
        let input2 = input.clone();
        let blank = Arc::new(AtomicU64::new(0));
        let blank2 = blank.clone();
        let progress2 = progress.clone();
        let decode = tokio::task::spawn_blocking(move || {
            decode_input(&settings, &input2, format, tx, progress2, blank2)
        });
        let decoded = decode
            .await
            .map_err(|e| Error::Internal(format!("decoder task failed: {e}")));
        let written = writer
            .await
            .map_err(|e| Error::Internal(format!("writer task failed: {e}")))?;
        // A writer error explains a decoder that stopped early: report it first.
        let written = written?;
        let decode_stats = decoded??;
        let elapsed = start.elapsed();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let input_bytes = progress.load(Ordering::Relaxed);
        Ok(ForwardReport {
            input: input.name(),
            format: Some(format),
            input_bytes,
            blank_lines: blank.load(Ordering::Relaxed),
            records_per_s: decode_stats.received as f64 / secs,
            mb_per_s: input_bytes as f64 / 1e6 / secs,
            decode: decode_stats,
            landing_files: written.landing_files,
            landing_files_existing: written.landing_files_existing,
            landing_rows: written.landing_rows,
            landing_bytes: written.landing_bytes,
            dlq_files: written.dlq_files,
            dlq_files_existing: written.dlq_files_existing,
            dlq_bytes: written.dlq_bytes,
            put_latency: written.latency.stats(),
            duration_ms: elapsed.as_millis() as u64,
        })
    }
}

/// Decodes one chunk into its parts.
#[allow(clippy::too_many_arguments)]
fn decode_chunk(
    decoder: &mut Decoder<'_>,
    settings: &Settings,
    format: Format,
    chunk: &Chunk,
    input_name: &str,
    max_line: usize,
    too_long: Reason,
    tenant_ids: &[String],
) -> std::result::Result<ChunkOut, String> {
    let now_us = settings
        .forward
        .reference_time
        .unwrap_or_else(Utc::now)
        .timestamp_micros();
    decoder.set_now(now_us);
    let mut sink = ChunkSink::new(tenant_ids.len(), now_us);
    let ctx = ItemCtx {
        input: input_name,
        ingest_us: Utc::now().timestamp_micros(),
    };
    for it in &chunk.items {
        let line = chunk.line(it);
        let pos = Pos::Line(it.number);
        if it.too_long {
            decoder.oversized(too_long, line, it.total_len, max_line, &ctx, pos, &mut sink);
            continue;
        }
        match format {
            Format::Ndjson => decoder.ndjson_line(line, &ctx, pos, &mut sink),
            Format::Cloudwatch => decoder.cloudwatch_line(line, &ctx, it.number, &mut sink),
        }
    }
    sink.finish(tenant_ids)
}

/// Reads, decodes and batches the input: a reader thread cuts the input into
/// chunks of whole lines, one decode worker per core decodes them, and this
/// thread takes them back in input order into the batcher.
fn decode_input(
    settings: &Settings,
    input: &Input,
    format: Format,
    tx: tokio::sync::mpsc::Sender<Flush>,
    progress: Arc<AtomicU64>,
    blank: Arc<AtomicU64>,
) -> Result<DecodeStats> {
    let f = &settings.forward;
    // A CloudWatch Logs line is base64 of a gzip payload: bounded by the
    // envelope limit (compressed data is at most a little larger than its
    // input), not by the record limit.
    let (max_line, too_long) = match format {
        Format::Ndjson => (f.max_record_bytes, Reason::OversizedRecord),
        Format::Cloudwatch => (
            f.max_envelope_bytes / 3 * 4 + 4096,
            Reason::EnvelopeTooLarge,
        ),
    };
    let keep = f.dlq_raw_limit.min(max_line);
    let streaming = matches!(input, Input::Stdin);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16);
    let input_name = input.name();
    let reader_input: Box<dyn std::io::Read + Send> =
        match input {
            Input::File(path) => Box::new(
                std::fs::File::open(path)
                    .map_err(|e| Error::Core(logferry_core::Error::io(path.display(), e)))?,
            ),
            Input::Stdin => Box::new(std::io::stdin()),
            Input::Reader { name, reader } => reader
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| Error::Internal(format!("input {name} was read already")))?,
        };
    let tenant_ids: Vec<String> = settings
        .tenants
        .all()
        .iter()
        .map(|t| t.id.to_string())
        .collect();

    std::thread::scope(|scope| -> Result<DecodeStats> {
        let mut to_workers = Vec::with_capacity(workers);
        let mut from_workers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (in_tx, in_rx) = std::sync::mpsc::sync_channel::<std::io::Result<Chunk>>(1);
            let (out_tx, out_rx) =
                std::sync::mpsc::sync_channel::<std::result::Result<ChunkOut, String>>(1);
            to_workers.push(in_tx);
            from_workers.push(out_rx);
            let (tenant_ids, input_name) = (&tenant_ids, &input_name);
            std::thread::Builder::new()
                .name("logferry-decode".into())
                .spawn_scoped(scope, move || {
                    let mut decoder = Decoder::new(f, &settings.tenants, 0);
                    for chunk in in_rx {
                        let out = chunk
                            .map_err(|e| format!("reading {input_name}: {e}"))
                            .and_then(|c| {
                                decode_chunk(
                                    &mut decoder,
                                    settings,
                                    format,
                                    &c,
                                    input_name,
                                    max_line,
                                    too_long,
                                    tenant_ids,
                                )
                            });
                        if out_tx.send(out).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("cannot start a decode worker: {e}")))?;
        }
        std::thread::Builder::new()
            .name("logferry-read".into())
            .spawn_scoped(scope, move || {
                let mut next = 0usize;
                let emit = |c: std::io::Result<Chunk>| {
                    let ok = to_workers[next % to_workers.len()].send(c).is_ok();
                    next += 1;
                    ok
                };
                read_lines(
                    BufReader::with_capacity(1 << 20, reader_input),
                    max_line,
                    keep,
                    emit,
                    progress,
                    blank,
                );
            })
            .map_err(|e| Error::Internal(format!("cannot start the reader thread: {e}")))?;

        let mut batcher = Batcher::new(f, settings.tenants.all(), streaming, tx);
        let tick = Duration::from_millis(250);
        let mut next = 0usize;
        loop {
            match from_workers[next % workers].recv_timeout(tick) {
                Ok(Ok(out)) => {
                    batcher.absorb(out).map_err(Error::Writer)?;
                    next += 1;
                }
                Ok(Err(e)) => return Err(Error::Internal(e)),
                Err(RecvTimeoutError::Timeout) => batcher.maintain().map_err(Error::Writer)?,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let (stats, _tx) = batcher.finish().map_err(Error::Writer)?;
        Ok(stats)
    })
}
