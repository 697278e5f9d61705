//! Micro-batching: per tenant and hour for landing records, per tenant key and
//! hour for dead-letter entries. A buffer becomes one Parquet object when it
//! reaches its record or byte bound, when all buffers together pass the memory
//! bound (largest first), when it gets too old (streaming inputs only), and at
//! the end of the input. Object names are content hashes of what they hold,
//! so the same input always lands under the same names.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use logferry_core::config::{ForwardSettings, Tenant};
use logferry_core::ids::IdHasher;
use logferry_core::partition::{Stage, Window, dlq_file, landing_file};

use crate::batch::{DlqBuilder, DlqRow, LandingBuilder, LandingRow};
use crate::decode::Emit;

/// A finished batch on its way to the lake.
#[derive(Debug)]
pub struct Flush {
    /// Object path.
    pub path: Path,
    /// The rows.
    pub batch: RecordBatch,
    /// For landing objects: the window and tenant (to mark them pending).
    pub landing: Option<(Window, String, String)>,
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

/// Key of an open buffer of either kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum BufKey {
    Landing((usize, Window)),
    Dlq((String, Window)),
}

struct Open<B> {
    builder: B,
    ids: IdHasher,
    opened: Instant,
}

impl<B: Default> Open<B> {
    fn new() -> Self {
        Open {
            builder: B::default(),
            ids: IdHasher::new(),
            opened: Instant::now(),
        }
    }
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

/// The batching side of the forward stage.
pub struct Batcher<S: FlushSink> {
    max_records: usize,
    max_bytes: usize,
    max_age: Duration,
    max_buffered: usize,
    streaming: bool,
    tenant_ids: Vec<String>,
    landing: HashMap<(usize, Window), Open<LandingBuilder>>,
    dlq: HashMap<(String, Window), Open<DlqBuilder>>,
    buffered: usize,
    dlq_window: Window,
    accepted_by_tenant: Vec<u64>,
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
            landing: HashMap::new(),
            dlq: HashMap::new(),
            buffered: 0,
            dlq_window: Window::containing(chrono::Utc::now()),
            accepted_by_tenant: vec![0; tenants.len()],
            sink,
            failed: None,
            stats: DecodeStats::default(),
        }
    }

    /// Sets the hour that dead-letter entries are filed under: the hour of
    /// arrival, by the clock the decoder validates against (the configured
    /// reference time, if any, else the wall clock).
    pub fn set_dlq_window(&mut self, w: Window) {
        self.dlq_window = w;
    }

    /// Bytes held in open buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    fn send(&mut self, f: Flush) {
        if self.failed.is_none() && !self.sink.send(f) {
            self.failed = Some("the lake writer stopped".into());
        }
    }

    fn flush_landing(&mut self, key: (usize, Window)) {
        let Some(mut open) = self.landing.remove(&key) else {
            return;
        };
        self.buffered -= open.builder.bytes();
        let tenant = self.tenant_ids[key.0].clone();
        match open.builder.finish() {
            Ok(batch) => {
                let id = open.ids.hex();
                let path = landing_file(
                    &logferry_core::partition::TenantId::new(&tenant)
                        .expect("configured tenant ids are valid"),
                    key.1,
                    &id,
                );
                self.stats.landing_batches += 1;
                self.send(Flush {
                    path,
                    batch,
                    landing: Some((key.1, tenant, id)),
                });
            }
            Err(e) => self.failed = Some(format!("building a landing batch: {e}")),
        }
    }

    fn flush_dlq(&mut self, key: (String, Window)) {
        let Some(mut open) = self.dlq.remove(&key) else {
            return;
        };
        self.buffered -= open.builder.bytes();
        match open.builder.finish() {
            Ok(batch) => {
                let path = dlq_file(Stage::Forward, &key.0, key.1, &open.ids.hex());
                self.stats.dlq_batches += 1;
                self.send(Flush {
                    path,
                    batch,
                    landing: None,
                });
            }
            Err(e) => self.failed = Some(format!("building a dead-letter batch: {e}")),
        }
    }

    /// Flushes the largest landing buffers until the open buffers hold at
    /// most half the memory bound.
    fn relieve(&mut self) {
        // Largest first, landing and dead-letter buffers alike; ties broken
        // by key so the same input always flushes the same way.
        let mut sizes: Vec<(usize, BufKey)> = self
            .landing
            .iter()
            .map(|(k, v)| (v.builder.bytes(), BufKey::Landing(*k)))
            .chain(
                self.dlq
                    .iter()
                    .map(|(k, v)| (v.builder.bytes(), BufKey::Dlq(k.clone()))),
            )
            .collect();
        sizes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, key) in sizes {
            if self.buffered <= self.max_buffered / 2 {
                break;
            }
            match key {
                BufKey::Landing(k) => self.flush_landing(k),
                BufKey::Dlq(k) => self.flush_dlq(k),
            }
        }
    }

    /// Applies the age bound (streaming inputs only). Returns the writer's
    /// failure, if it failed.
    pub fn maintain(&mut self) -> Result<(), String> {
        if self.streaming {
            let age = self.max_age;
            let old: Vec<_> = self
                .landing
                .iter()
                .filter(|(_, v)| v.opened.elapsed() >= age)
                .map(|(k, _)| *k)
                .collect();
            for k in old {
                self.flush_landing(k);
            }
            let old: Vec<_> = self
                .dlq
                .iter()
                .filter(|(_, v)| v.opened.elapsed() >= age)
                .map(|(k, _)| k.clone())
                .collect();
            for k in old {
                self.flush_dlq(k);
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
        let mut keys: Vec<_> = self.landing.keys().copied().collect();
        keys.sort();
        for k in keys {
            self.flush_landing(k);
        }
        let mut keys: Vec<_> = self.dlq.keys().cloned().collect();
        keys.sort();
        for k in keys {
            self.flush_dlq(k);
        }
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut stats = self.stats;
        for (i, n) in self.accepted_by_tenant.iter().enumerate() {
            if *n > 0 {
                let c = stats.tenants.entry(self.tenant_ids[i].clone()).or_default();
                c.accepted += n;
                c.received += n;
            }
        }
        Ok((stats, self.sink))
    }
}

impl<S: FlushSink> Emit for Batcher<S> {
    fn accept(&mut self, tenant: &Tenant, row: &LandingRow<'_, '_>) {
        let Some(window) = Window::from_micros(row.record.timestamp_us) else {
            // Unreachable for validated records (their time is in range);
            // refusing here keeps the count honest if it ever is reached.
            self.failed = Some(format!("record {} has no valid window", row.event_id));
            return;
        };
        let key = (tenant.index, window);
        let open = self.landing.entry(key).or_insert_with(Open::new);
        let before = open.builder.bytes();
        open.builder.push(row);
        open.ids.part(row.event_id.as_bytes());
        let (rows, bytes) = (open.builder.rows(), open.builder.bytes());
        self.buffered += bytes - before;
        self.stats.received += 1;
        self.stats.accepted += 1;
        self.accepted_by_tenant[tenant.index] += 1;
        if rows >= self.max_records || bytes >= self.max_bytes {
            self.flush_landing(key);
        }
        if self.buffered > self.max_buffered {
            self.relieve();
        }
    }

    fn reject(&mut self, row: &DlqRow<'_>) {
        let key = (row.tenant_key.to_string(), self.dlq_window);
        let open = self.dlq.entry(key.clone()).or_insert_with(Open::new);
        let before = open.builder.bytes();
        open.builder.push(row);
        open.ids
            .part(row.reason.as_bytes())
            .part(row.raw)
            .part(row.position.as_bytes());
        let (rows, bytes) = (open.builder.rows(), open.builder.bytes());
        self.buffered += bytes - before;
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
        if rows >= self.max_records || bytes >= self.max_bytes {
            self.flush_dlq(key);
        }
        if self.buffered > self.max_buffered {
            self.relieve();
        }
    }

    fn control(&mut self) {
        self.stats.control_messages += 1;
    }
}
