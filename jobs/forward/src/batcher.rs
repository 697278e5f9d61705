//! Micro-batching, in two halves so that decoding runs on every core:
//!
//! - a [`ChunkSink`] per decode worker collects what one chunk of input
//!   decoded to, per tenant and hour (landing) and per tenant key (DLQ), as
//!   small Arrow batches with a digest of their event ids;
//! - the [`Batcher`] takes the chunks back in input order and keeps one buffer
//!   per tenant and hour. A buffer becomes one Parquet object when it reaches
//!   its record or byte bound, when all buffers together pass the memory bound
//!   (largest first), when it gets too old (streaming inputs only), and at the
//!   end of the input.
//!
//! Object names are hashes of the digests of what they hold, in input order,
//! and chunk boundaries depend only on the input's bytes, so the same input
//! always lands under the same names, however many workers decoded it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use logferry_core::config::{ForwardSettings, Tenant};
use logferry_core::ids::IdHasher;
use logferry_core::partition::{HOUR_US, Stage, TenantId, Window, dlq_file, landing_file};

use crate::batch::{DlqBuilder, DlqRow, LandingBuilder, LandingRow};
use crate::decode::Emit;

/// A finished batch on its way to the lake.
#[derive(Debug)]
pub struct Flush {
    /// Object path.
    pub path: Path,
    /// The rows, in input order.
    pub batches: Vec<RecordBatch>,
    /// For landing objects: window, tenant and batch id (to mark them pending).
    pub landing: Option<(Window, String, String)>,
    /// The flush's share of the in-flight memory budget, returned when the
    /// flush is dropped (written or failed).
    pub ticket: Ticket,
}

/// Bytes of flushes handed to the writer and not yet written. The batcher
/// waits for room before handing over another, so the memory held by
/// batches in flight stays under the same bound as the open buffers.
#[derive(Debug)]
pub struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            max,
        })
    }

    /// Waits until `bytes` fit (or nothing is in flight), then takes them.
    pub fn acquire(self: &Arc<Self>, bytes: usize) -> Ticket {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + bytes > self.max {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += bytes;
        Ticket {
            budget: Some(self.clone()),
            bytes,
        }
    }

    /// Bytes in flight.
    pub fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A share of a [`Budget`], returned on drop.
#[derive(Debug)]
pub struct Ticket {
    budget: Option<Arc<Budget>>,
    bytes: usize,
}

impl Ticket {
    /// A ticket of no budget (tests).
    pub fn none() -> Self {
        Ticket {
            budget: None,
            bytes: 0,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            let mut used = b.used.lock().unwrap_or_else(|e| e.into_inner());
            *used = used.saturating_sub(self.bytes);
            b.freed.notify_all();
        }
    }
}

/// Counts of one tenant key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantCounts {
    /// Items received.
    pub received: u64,
    /// Records accepted for landing.
    pub accepted: u64,
    /// Items dead-lettered.
    pub dead_lettered: u64,
}

/// What the decoder made of the input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DecodeStats {
    /// Items received (records, plus envelopes refused as a whole).
    pub received: u64,
    /// Records accepted.
    pub accepted: u64,
    /// Items dead-lettered.
    pub dead_lettered: u64,
    /// CloudWatch Logs control messages skipped.
    pub control_messages: u64,
    /// Dead-lettered items by reason code.
    pub by_reason: BTreeMap<String, u64>,
    /// Counts by tenant key.
    pub tenants: BTreeMap<String, TenantCounts>,
    /// Landing objects produced.
    pub landing_batches: u64,
    /// Dead-letter objects produced.
    pub dlq_batches: u64,
}

impl DecodeStats {
    /// Adds another count of items to this one.
    pub(crate) fn merge(&mut self, o: DecodeStats) {
        self.received += o.received;
        self.accepted += o.accepted;
        self.dead_lettered += o.dead_lettered;
        self.control_messages += o.control_messages;
        for (k, v) in o.by_reason {
            *self.by_reason.entry(k).or_default() += v;
        }
        for (k, v) in o.tenants {
            let c = self.tenants.entry(k).or_default();
            c.received += v.received;
            c.accepted += v.accepted;
            c.dead_lettered += v.dead_lettered;
        }
        self.landing_batches += o.landing_batches;
        self.dlq_batches += o.dlq_batches;
    }

    /// What these counts hold beyond `earlier`'s (counts only grow).
    pub fn since(&self, earlier: &DecodeStats) -> DecodeStats {
        let mut d = DecodeStats {
            received: self.received.saturating_sub(earlier.received),
            accepted: self.accepted.saturating_sub(earlier.accepted),
            dead_lettered: self.dead_lettered.saturating_sub(earlier.dead_lettered),
            control_messages: self
                .control_messages
                .saturating_sub(earlier.control_messages),
            landing_batches: self.landing_batches.saturating_sub(earlier.landing_batches),
            dlq_batches: self.dlq_batches.saturating_sub(earlier.dlq_batches),
            ..DecodeStats::default()
        };
        for (k, v) in &self.by_reason {
            let n = v.saturating_sub(earlier.by_reason.get(k).copied().unwrap_or(0));
            if n > 0 {
                d.by_reason.insert(k.clone(), n);
            }
        }
        for (k, v) in &self.tenants {
            let e = earlier.tenants.get(k).cloned().unwrap_or_default();
            let c = TenantCounts {
                received: v.received.saturating_sub(e.received),
                accepted: v.accepted.saturating_sub(e.accepted),
                dead_lettered: v.dead_lettered.saturating_sub(e.dead_lettered),
            };
            if c != TenantCounts::default() {
                d.tenants.insert(k.clone(), c);
            }
        }
        d
    }

    /// Adds another count of items to this one.
    pub fn add(&mut self, o: &DecodeStats) {
        self.merge(o.clone());
    }
}

/// One part of a decoded chunk: the rows of one buffer key.
#[derive(Debug)]
pub struct Part {
    /// The rows.
    pub batch: RecordBatch,
    /// Digest of the part's ids (event ids; reason, raw and position for DLQ).
    pub digest: u128,
    /// Decoded bytes (for the memory bound).
    pub bytes: usize,
}

/// What one chunk of input decoded to.
#[derive(Debug, Default)]
pub struct ChunkOut {
    /// Landing parts by (tenant index, hours since the epoch).
    pub landing: Vec<((usize, i64), Part)>,
    /// Dead-letter parts by (tenant key, hour of arrival).
    pub dlq: Vec<((String, i64), Part)>,
    /// Counts.
    pub stats: DecodeStats,
}

struct Building<B> {
    builder: B,
    ids: Xxh3,
}

/// Collects one chunk's decoded items (one per decode worker).
pub struct ChunkSink {
    landing: HashMap<(usize, i64), Building<LandingBuilder>>,
    dlq: HashMap<(String, i64), Building<DlqBuilder>>,
    dlq_hour: i64,
    accepted_by_tenant: Vec<u64>,
    stats: DecodeStats,
    failed: Option<String>,
}

impl std::fmt::Debug for ChunkSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSink").finish()
    }
}

impl ChunkSink {
    /// A sink for `tenants` tenants; dead-letter entries are filed under the
    /// hour holding `now_us` (the hour of arrival by the validating clock).
    pub fn new(tenants: usize, now_us: i64) -> Self {
        ChunkSink {
            landing: HashMap::new(),
            dlq: HashMap::new(),
            dlq_hour: now_us.div_euclid(HOUR_US),
            accepted_by_tenant: vec![0; tenants],
            stats: DecodeStats::default(),
            failed: None,
        }
    }

    /// The chunk's parts, in key order, and its counts.
    pub fn finish(mut self, tenant_ids: &[String]) -> Result<ChunkOut, String> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut out = ChunkOut::default();
        let mut landing: Vec<_> = self.landing.into_iter().collect();
        landing.sort_by_key(|(k, _)| *k);
        for (k, mut b) in landing {
            let bytes = b.builder.bytes();
            let batch = b.builder.finish().map_err(|e| e.to_string())?;
            out.landing.push((
                k,
                Part {
                    batch,
                    digest: b.ids.digest128(),
                    bytes,
                },
            ));
        }
        let mut dlq: Vec<_> = self.dlq.into_iter().collect();
        dlq.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, mut b) in dlq {
            let bytes = b.builder.bytes();
            let batch = b.builder.finish().map_err(|e| e.to_string())?;
            out.dlq.push((
                k,
                Part {
                    batch,
                    digest: b.ids.digest128(),
                    bytes,
                },
            ));
        }
        for (i, n) in self.accepted_by_tenant.iter().enumerate() {
            if *n > 0 {
                let c = self.stats.tenants.entry(tenant_ids[i].clone()).or_default();
                c.accepted += n;
                c.received += n;
            }
        }
        out.stats = self.stats;
        Ok(out)
    }
}

fn part_ids(h: &mut Xxh3, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

impl Emit for ChunkSink {
    fn accept(&mut self, tenant: &Tenant, row: &LandingRow<'_, '_>) {
        let hour = row.record.timestamp_us.div_euclid(HOUR_US);
        let b = self
            .landing
            .entry((tenant.index, hour))
            .or_insert_with(|| Building {
                builder: LandingBuilder::new(),
                ids: Xxh3::new(),
            });
        b.builder.push(row);
        part_ids(&mut b.ids, row.event_id.as_bytes());
        self.stats.received += 1;
        self.stats.accepted += 1;
        match self.accepted_by_tenant.get_mut(tenant.index) {
            Some(n) => *n += 1,
            None => self.failed = Some(format!("tenant index {} out of range", tenant.index)),
        }
    }

    fn reject(&mut self, row: &DlqRow<'_>) {
        let b = self
            .dlq
            .entry((row.tenant_key.to_string(), self.dlq_hour))
            .or_insert_with(|| Building {
                builder: DlqBuilder::new(),
                ids: Xxh3::new(),
            });
        b.builder.push(row);
        part_ids(&mut b.ids, row.reason.as_bytes());
        part_ids(&mut b.ids, row.raw);
        part_ids(&mut b.ids, row.position.as_bytes());
        self.stats.received += 1;
        self.stats.dead_lettered += 1;
        *self
            .stats
            .by_reason
            .entry(row.reason.to_string())
            .or_default() += 1;
        let c = self
            .stats
            .tenants
            .entry(row.tenant_key.to_string())
            .or_default();
        c.received += 1;
        c.dead_lettered += 1;
    }

    fn control(&mut self) {
        self.stats.control_messages += 1;
    }
}

struct Open {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    ids: IdHasher,
    opened: Instant,
}

impl Open {
    fn new() -> Self {
        Open {
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            ids: IdHasher::new(),
            opened: Instant::now(),
        }
    }

    fn add(&mut self, p: Part) {
        self.rows += p.batch.num_rows();
        self.bytes += p.bytes;
        self.ids.part(&p.digest.to_le_bytes());
        self.batches.push(p.batch);
    }
}

/// Key of an open buffer of either kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum BufKey {
    Landing((usize, i64)),
    Dlq((String, i64)),
}

/// Where flushes go; `false` when the receiving side is gone.
pub trait FlushSink {
    /// Hands over a flush, blocking while the writer is behind.
    fn send(&mut self, f: Flush) -> bool;
}

impl FlushSink for tokio::sync::mpsc::Sender<Flush> {
    fn send(&mut self, f: Flush) -> bool {
        self.blocking_send(f).is_ok()
    }
}

impl FlushSink for Vec<Flush> {
    fn send(&mut self, f: Flush) -> bool {
        self.push(f);
        true
    }
}

/// Assembles decoded chunks, in input order, into landing and dead-letter
/// objects.
pub struct Batcher<S: FlushSink> {
    max_records: usize,
    max_bytes: usize,
    max_age: Duration,
    max_buffered: usize,
    streaming: bool,
    tenant_ids: Vec<String>,
    open: HashMap<BufKey, Open>,
    buffered: usize,
    budget: Arc<Budget>,
    sink: S,
    failed: Option<String>,
    stats: DecodeStats,
}

impl<S: FlushSink> std::fmt::Debug for Batcher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("buffered", &self.buffered)
            .finish()
    }
}

impl<S: FlushSink> Batcher<S> {
    /// A batcher for `tenants` (by index) sending to `sink`. `streaming`
    /// enables age-based flushes.
    pub fn new(settings: &ForwardSettings, tenants: &[Tenant], streaming: bool, sink: S) -> Self {
        Batcher {
            max_records: settings.batch_max_records,
            max_bytes: settings.batch_max_bytes,
            max_age: settings.batch_max_age,
            max_buffered: settings.max_buffered_bytes,
            streaming,
            tenant_ids: tenants.iter().map(|t| t.id.to_string()).collect(),
            open: HashMap::new(),
            buffered: 0,
            budget: Budget::new(settings.max_buffered_bytes),
            sink,
            failed: None,
            stats: DecodeStats::default(),
        }
    }

    /// Tenant ids by index.
    pub fn tenant_ids(&self) -> &[String] {
        &self.tenant_ids
    }

    /// Bytes held in open buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    fn flush(&mut self, key: &BufKey) {
        let Some(open) = self.open.remove(key) else {
            return;
        };
        self.buffered -= open.bytes;
        let id = open.ids.hex();
        let (path, landing) = match key {
            BufKey::Landing((t, hour)) => {
                let tenant = self.tenant_ids[*t].clone();
                let (Ok(tid), Some(w)) = (TenantId::new(&tenant), Window::from_hour_index(*hour))
                else {
                    self.failed = Some(format!("no valid partition for {tenant} hour {hour}"));
                    return;
                };
                self.stats.landing_batches += 1;
                (landing_file(&tid, w, &id), Some((w, tenant, id)))
            }
            BufKey::Dlq((tenant_key, hour)) => {
                let Some(w) = Window::from_hour_index(*hour) else {
                    self.failed = Some(format!("no valid window for hour {hour}"));
                    return;
                };
                self.stats.dlq_batches += 1;
                (dlq_file(Stage::Forward, tenant_key, w, &id), None)
            }
        };
        if self.failed.is_some() {
            return;
        }
        let ticket = self.budget.acquire(open.bytes);
        if !self.sink.send(Flush {
            path,
            batches: open.batches,
            landing,
            ticket,
        }) {
            self.failed = Some("the lake writer stopped".into());
        }
    }

    /// Flushes the largest buffers until the open buffers hold at most half
    /// the memory bound; ties broken by key so the same input always flushes
    /// the same way.
    fn relieve(&mut self) {
        let mut sizes: Vec<(usize, BufKey)> = self
            .open
            .iter()
            .map(|(k, v)| (v.bytes, k.clone()))
            .collect();
        sizes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, key) in sizes {
            if self.buffered <= self.max_buffered / 2 {
                break;
            }
            self.flush(&key);
        }
    }

    fn add(&mut self, key: BufKey, part: Part) {
        self.buffered += part.bytes;
        let open = self.open.entry(key.clone()).or_insert_with(Open::new);
        open.add(part);
        if open.rows >= self.max_records || open.bytes >= self.max_bytes {
            self.flush(&key);
        }
    }

    /// Takes the next chunk, in input order.
    pub fn absorb(&mut self, out: ChunkOut) -> Result<(), String> {
        self.stats.merge(out.stats);
        for (k, p) in out.landing {
            self.add(BufKey::Landing(k), p);
        }
        for (k, p) in out.dlq {
            self.add(BufKey::Dlq(k), p);
        }
        if self.buffered > self.max_buffered {
            self.relieve();
        }
        self.maintain()
    }

    /// Applies the age bound (streaming inputs only). Returns the writer's
    /// failure, if it failed.
    pub fn maintain(&mut self) -> Result<(), String> {
        if self.streaming {
            let age = self.max_age;
            let mut old: Vec<BufKey> = self
                .open
                .iter()
                .filter(|(_, v)| v.opened.elapsed() >= age)
                .map(|(k, _)| k.clone())
                .collect();
            old.sort();
            for k in old {
                self.flush(&k);
            }
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Flushes every open buffer (in key order) and returns the statistics
    /// and the sink.
    pub fn finish(mut self) -> Result<(DecodeStats, S), String> {
        let mut keys: Vec<BufKey> = self.open.keys().cloned().collect();
        keys.sort();
        for k in keys {
            self.flush(&k);
        }
        match self.failed {
            Some(e) => Err(e),
            None => Ok((self.stats, self.sink)),
        }
    }
}
