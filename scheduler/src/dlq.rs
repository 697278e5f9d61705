//! The dead-letter queue: a summary (`logferry dlq ls`), and replay
//! (`logferry dlq replay`) of forward refusals once their cause is fixed (a
//! tenant added, a limit raised).
//!
//! Replay works one dead-letter object at a time, under a lease: every
//! entry the filters select is decoded again from its raw payload with the
//! current configuration; what passes lands (under names derived from the
//! object, so a second attempt finds its own landing objects); what still
//! fails, and every entry the filters left out, goes to one replacement
//! object in the same partition. A ledger record then says the replacement
//! supersedes the original, and the `dlq` table (and so `reconcile`) reads
//! the replacement only: every item is counted once, as loaded or as dead
//! letter with its current reason.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use chrono::Utc;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use logferry_aggregate::catalog::LakeFiles;
use logferry_core::dlq::DlqRow;
use logferry_core::ids::hash_hex;
use logferry_core::partition::{HOUR_US, UNKNOWN_TENANT, Window, parse_partition};
use logferry_core::records::{Superseded, superseded_key};
use logferry_core::storage::{read_parquet, writer_properties};
use logferry_forward::batcher::ChunkSink;
use logferry_forward::decode::{Decoder, Emit, ItemCtx, Pos};
use logferry_forward::kinesis::land;

use crate::context::Ctx;
use crate::error::{Error, Result};

/// Which dead letters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `forward` or `aggregate`.
    pub stage: Option<String>,
    /// Reason codes (any of them); empty: every reason.
    pub reasons: Vec<String>,
    /// Tenant key (`_unknown` included).
    pub tenant: Option<String>,
    /// First window (by the object's partition: arrival hour for forward
    /// refusals, the window for rule violations).
    pub from: Option<Window>,
    /// Last window, included.
    pub to: Option<Window>,
}

impl Filter {
    fn object(&self, path: &str) -> bool {
        let k = parse_partition(&Path::from(path));
        self.stage
            .as_ref()
            .is_none_or(|s| k.stage.as_ref() == Some(s))
            && self
                .tenant
                .as_ref()
                .is_none_or(|t| k.tenant.as_ref() == Some(t))
            && self.from.is_none_or(|f| k.window.is_some_and(|w| w >= f))
            && self.to.is_none_or(|t| k.window.is_some_and(|w| w <= t))
    }

    fn reason(&self, r: &str) -> bool {
        self.reasons.is_empty() || self.reasons.iter().any(|x| x == r)
    }
}

/// One line of `dlq ls`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Summary {
    /// Stage.
    pub stage: String,
    /// Reason code.
    pub reason: String,
    /// Tenant key.
    pub tenant: String,
    /// Partition hour (`YYYY-MM-DDTHH`).
    pub hour: String,
    /// Entries.
    pub count: u64,
    /// Entries whose raw payload is whole (replayable).
    pub replayable: u64,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Dead-letter objects replayed.
    pub objects: u64,
    /// Entries selected.
    pub selected: u64,
    /// Entries that passed and landed.
    pub landed: u64,
    /// Entries dead-lettered again, by current reason.
    pub failed_again: BTreeMap<String, u64>,
    /// Selected entries that cannot be replayed (payload cut at
    /// `forward.dlq_raw_limit`, or none kept), kept as they were.
    pub not_replayable: u64,
    /// Objects another replay held.
    pub busy: u64,
}

/// Every dead-letter object the `dlq` table reads (replaced ones left out).
async fn dlq_objects(ctx: &Ctx) -> Result<Vec<String>> {
    let files = LakeFiles::load(&ctx.lake, None).await?;
    Ok(files
        .dlq_forward
        .into_iter()
        .chain(files.dlq_aggregate)
        .collect())
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a arrow::array::ArrayRef> {
    b.column_by_name(name)
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    match col(b, name).and_then(|c| c.as_string_opt::<i32>()) {
        Some(a) => (0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
            .collect(),
        None => vec![None; b.num_rows()],
    }
}

/// `dlq ls`: entries by stage, reason, tenant and hour.
pub async fn ls(ctx: &Ctx, filter: &Filter) -> Result<Vec<Summary>> {
    let mut out: BTreeMap<(String, String, String, String), (u64, u64)> = BTreeMap::new();
    for path in dlq_objects(ctx).await? {
        if !filter.object(&path) {
            continue;
        }
        let k = parse_partition(&Path::from(path.as_str()));
        let hour = k.window.map(|w| w.to_string()).unwrap_or_default();
        for b in read_parquet(ctx.lake.store.as_ref(), &Path::from(path.as_str())).await? {
            let reasons = strings(&b, "reason");
            let truncated = col(&b, "raw_truncated").and_then(|c| c.as_boolean_opt().cloned());
            for (i, r) in reasons.iter().enumerate() {
                let r = r.clone().unwrap_or_default();
                if !filter.reason(&r) {
                    continue;
                }
                let e = out
                    .entry((
                        k.stage.clone().unwrap_or_default(),
                        r,
                        k.tenant.clone().unwrap_or_default(),
                        hour.clone(),
                    ))
                    .or_default();
                e.0 += 1;
                if truncated.as_ref().is_some_and(|t| !t.value(i)) {
                    e.1 += 1;
                }
            }
        }
    }
    Ok(out
        .into_iter()
        .map(
            |((stage, reason, tenant, hour), (count, replayable))| Summary {
                stage,
                reason,
                tenant,
                hour,
                count,
                replayable,
            },
        )
        .collect())
}

/// Splits `kinesis:stream/shard` (or `lambda:kinesis:stream/shard`).
fn kinesis_input(input: &str) -> Option<(&str, &str)> {
    let rest = input
        .strip_prefix("lambda:kinesis:")
        .or_else(|| input.strip_prefix("kinesis:"))?;
    rest.split_once('/')
}

/// The sequence number of a `sequence S ...` position.
fn sequence(position: &str) -> Option<&str> {
    position.strip_prefix("sequence ")?.split(' ').next()
}

/// One dead-letter row, read back.
struct Entry {
    reason: String,
    detail: String,
    tenant: String,
    source: Option<String>,
    event_id: Option<String>,
    timestamp: Option<i64>,
    ingest: i64,
    input: String,
    position: String,
    raw: Vec<u8>,
    raw_bytes: u64,
    truncated: bool,
    payload: Option<String>,
}

fn entries(b: &RecordBatch) -> Result<Vec<Entry>> {
    let s = |n| strings(b, n);
    let (reason, detail, tenant, source, event, input, position, payload) = (
        s("reason"),
        s("detail"),
        s("tenant_id"),
        s("source"),
        s("event_id"),
        s("input"),
        s("position"),
        s("payload"),
    );
    let ts = |n: &str| -> Vec<Option<i64>> {
        match col(b, n).and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>()) {
            Some(a) => (0..a.len())
                .map(|i| (!a.is_null(i)).then(|| a.value(i)))
                .collect(),
            None => vec![None; b.num_rows()],
        }
    };
    let (timestamp, ingest) = (ts("timestamp"), ts("ingest_time"));
    let raw = col(b, "raw")
        .and_then(|c| c.as_binary_opt::<i32>().cloned())
        .ok_or_else(|| Error::BadInput("a dead-letter object without its raw column".into()))?;
    let raw_bytes = col(b, "raw_bytes").and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
    let truncated = col(b, "raw_truncated").and_then(|c| c.as_boolean_opt().cloned());
    Ok((0..b.num_rows())
        .map(|i| Entry {
            reason: reason[i].clone().unwrap_or_default(),
            detail: detail[i].clone().unwrap_or_default(),
            tenant: tenant[i].clone().unwrap_or_else(|| UNKNOWN_TENANT.into()),
            source: source[i].clone(),
            event_id: event[i].clone(),
            timestamp: timestamp[i],
            ingest: ingest[i].unwrap_or(0),
            input: input[i].clone().unwrap_or_default(),
            position: position[i].clone().unwrap_or_default(),
            raw: if raw.is_null(i) {
                Vec::new()
            } else {
                raw.value(i).to_vec()
            },
            raw_bytes: raw_bytes.as_ref().map_or(0, |r| r.value(i).max(0) as u64),
            truncated: truncated.as_ref().is_some_and(|t| t.value(i)),
            payload: payload[i].clone(),
        })
        .collect())
}

/// What an entry's raw payload is, from its `payload` column, or (objects
/// written before it existed) from its input and position.
fn payload_kind(e: &Entry) -> Option<&str> {
    if let Some(p) = &e.payload {
        return Some(p.as_str());
    }
    if kinesis_input(&e.input).is_some() {
        return Some(if e.position.contains(" event ") {
            "cloudwatch_event"
        } else if e.position.contains(" line ") {
            "record_line"
        } else {
            "kinesis_record"
        });
    }
    if e.input == "lambda:cloudwatch-logs" {
        return Some("cloudwatch_line");
    }
    if e.position.contains(" event ") {
        return Some("cloudwatch_event");
    }
    // A file line: a JSON record or a base64 envelope.
    (e.raw.first() == Some(&b'{')).then_some("ndjson_line")
}

/// Passes what a replayed entry decodes to on to the sink, counting it.
struct Counting<'s> {
    sink: &'s mut ChunkSink,
    accepted: u64,
    refused: BTreeMap<String, u64>,
}

impl Emit for Counting<'_> {
    fn accept(
        &mut self,
        tenant: &logferry_core::config::Tenant,
        row: &logferry_forward::batch::LandingRow<'_, '_>,
    ) {
        self.accepted += 1;
        self.sink.accept(tenant, row);
    }

    fn reject(&mut self, row: &DlqRow<'_>) {
        *self.refused.entry(row.reason.to_string()).or_default() += 1;
        self.sink.reject(row);
    }

    fn control(&mut self) {
        self.sink.control();
    }
}

/// A position as dead letters write it (`line 3`, `line 3 event 2`,
/// `sequence 49…`, `sequence 49… event 2`, `sequence 49… line 2`), read back.
fn parse_pos(p: &str) -> Option<Pos<'_>> {
    let words: Vec<&str> = p.split(' ').collect();
    let n = |s: &str| s.parse::<u64>().ok();
    Some(match words.as_slice() {
        ["line", l] => Pos::Line(n(l)?),
        ["line", l, "event", e] => Pos::LineEvent(n(l)?, n(e)? as usize),
        ["sequence", s] => Pos::Record(s),
        ["sequence", s, "event", e] => Pos::RecordEvent(s, n(e)? as usize),
        ["sequence", s, "line", l] => Pos::RecordLine(s, n(l)? as usize),
        _ => return None,
    })
}

/// Decodes one entry again into `sink`; false when it cannot be replayed.
fn redecode(ctx: &Ctx, d: &mut Decoder<'_>, e: &Entry, sink: &mut dyn Emit) -> bool {
    if e.truncated || e.raw.is_empty() {
        return false;
    }
    let item = ItemCtx {
        input: &e.input,
        ingest_us: e.ingest,
    };
    // Refused again, an item keeps its place in its input.
    let Some(pos) = parse_pos(&e.position) else {
        return false;
    };
    let line = match pos {
        Pos::Line(l) | Pos::LineEvent(l, _) => l,
        _ => 1,
    };
    let tenants = &ctx.settings.tenants;
    match payload_kind(e) {
        Some("ndjson_line") => d.ndjson_line(&e.raw, &item, pos, sink),
        Some("cloudwatch_line") => d.cloudwatch_line(&e.raw, &item, line, sink),
        Some("kinesis_record") => {
            let (stream, shard) = kinesis_input(&e.input).unwrap_or(("", ""));
            let seq = sequence(&e.position).unwrap_or_default();
            match tenants.by_stream(stream) {
                Some(t) => d.kinesis_record(&e.raw, t, stream, shard, seq, &item, sink),
                None => d.unknown_stream(&e.raw, stream, &item, pos, sink),
            }
        }
        Some("record_line") => {
            let (stream, _) = kinesis_input(&e.input).unwrap_or(("", ""));
            let (Some(t), Some(id)) = (tenants.by_stream(stream), e.event_id.as_deref()) else {
                return false;
            };
            d.json_record(&e.raw, t, stream, id, &item, pos, sink);
        }
        Some("cloudwatch_event") => {
            let (Some(group), Some(id)) = (e.source.as_deref(), e.event_id.as_deref()) else {
                return false;
            };
            let Some(t) = tenants.by_log_group(group) else {
                return false;
            };
            d.cloudwatch_event(&e.raw, t, group, id, e.timestamp, &item, pos, sink);
        }
        _ => return false,
    }
    true
}

/// Keeps an entry as it is in the replacement object.
fn keep(e: &Entry, sink: &mut ChunkSink) {
    sink.reject(&DlqRow {
        stage: "forward",
        reason: &e.reason,
        detail: &e.detail,
        tenant_key: &e.tenant,
        source: e.source.as_deref(),
        event_id: e.event_id.as_deref(),
        timestamp_us: e.timestamp,
        ingest_us: e.ingest,
        input: &e.input,
        position: &e.position,
        raw: &e.raw,
        raw_bytes: e.raw_bytes,
        payload: e.payload.as_deref(),
    });
}

/// `dlq replay`: forward refusals matching `filter`, decoded again.
pub async fn replay(ctx: &Ctx, filter: &Filter) -> Result<ReplayReport> {
    if filter.stage.as_deref().is_some_and(|s| s != "forward") {
        return Err(Error::Config(
            "only forward refusals are replayed: rule violations (stage aggregate) are \
             recomputed with their window (logferry backfill)"
                .into(),
        ));
    }
    let filter = Filter {
        stage: Some("forward".into()),
        ..filter.clone()
    };
    let ledger = ctx.ledger();
    let holder = logferry_core::ledger::Holder::this_process();
    let props = writer_properties(&ctx.settings.parquet)?;
    let ids = ctx.tenant_ids();
    let mut report = ReplayReport::default();
    for path in dlq_objects(ctx).await? {
        if !filter.object(&path) {
            continue;
        }
        let batches = read_parquet(ctx.lake.store.as_ref(), &Path::from(path.as_str())).await?;
        let mut all = Vec::new();
        for b in &batches {
            all.extend(entries(b)?);
        }
        if !all.iter().any(|e| filter.reason(&e.reason)) {
            continue;
        }
        let lease_key = format!("leases/dlq/{}", &hash_hex(path.as_bytes())[..24]);
        let Some(lease) = ledger
            .try_lease(&lease_key, &holder, ctx.settings.lease_ttl)
            .await?
        else {
            report.busy += 1;
            continue;
        };
        // Another replay may have finished it meanwhile.
        if ledger
            .latest::<Superseded>(&superseded_key(&path))
            .await?
            .is_some()
        {
            lease.release().await?;
            continue;
        }
        let window = parse_partition(&Path::from(path.as_str()))
            .window
            .ok_or_else(|| Error::BadInput(format!("{path}: not in a dt=/hour= partition")))?;
        let mut sink = ChunkSink::new(ids.len(), window.start().timestamp_micros());
        let now = ctx.now().timestamp_micros();
        let mut decoder = Decoder::new(&ctx.settings.forward, &ctx.settings.tenants, now);
        let (mut kept, mut selected, mut unreplayable) = (0u64, 0u64, 0u64);
        let mut landed = 0u64;
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        for e in &all {
            if !filter.reason(&e.reason) {
                keep(e, &mut sink);
                kept += 1;
                continue;
            }
            selected += 1;
            let mut counting = Counting {
                sink: &mut sink,
                accepted: 0,
                refused: BTreeMap::new(),
            };
            if redecode(ctx, &mut decoder, e, &mut counting) {
                landed += counting.accepted;
                for (r, n) in counting.refused {
                    *refused.entry(r).or_default() += n;
                }
            } else {
                keep(e, &mut sink);
                unreplayable += 1;
            }
        }
        let out = sink.finish(&ids).map_err(Error::Fatal)?;
        let id = format!("replay-{}", &hash_hex(path.as_bytes())[..24]);
        let replacement: Vec<String> = out
            .dlq
            .iter()
            .map(|((key, hour), _)| {
                logferry_core::partition::dlq_file(
                    logferry_core::partition::Stage::Forward,
                    key,
                    Window::from_micros(hour * HOUR_US).unwrap_or(window),
                    &id,
                )
                .to_string()
            })
            .collect();
        land(&ctx.lake, &ledger, &props, &ids, out, &id).await?;
        logferry_core::failpoint::hit("dlq.before_superseded");
        let doc = Superseded {
            path: path.clone(),
            replacement,
            landed,
            failed_again: refused.values().sum(),
            kept: kept + unreplayable,
            at: Utc::now(),
        };
        match ledger.commit(&superseded_key(&path), None, &doc).await {
            // Another replay finished the same object first.
            Ok(_) | Err(logferry_core::Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        lease.release().await?;
        report.objects += 1;
        report.selected += selected;
        report.landed += landed;
        report.not_replayable += unreplayable;
        for (r, n) in refused {
            *report.failed_again.entry(r).or_default() += n;
        }
    }
    Ok(report)
}
