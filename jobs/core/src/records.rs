//! Ledger documents shared by the stages: what an aggregate run of a window
//! read, wrote and counted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::partition::Window;

/// Per-tenant counts of one window run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCounts {
    /// Landing rows read.
    pub input: u64,
    /// Exact redeliveries removed.
    pub duplicates: u64,
    /// Rows that broke a rule (dead-lettered).
    pub dead_lettered: u64,
    /// Rows kept.
    pub curated: u64,
}

/// Event-time quantiles of the curated rows (for end-to-end latency).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventTimeStats {
    /// Rows.
    pub count: u64,
    /// Earliest, microseconds.
    pub min_us: i64,
    /// 5th percentile: the event time of the 95th-percentile latency.
    pub p05_us: i64,
    /// Median.
    pub p50_us: i64,
    /// Latest.
    pub max_us: i64,
}

/// How old a run's curated rows were at one moment, per tenant: since
/// their event time and since logferry ingested them. Shifted to the moment
/// their load job finished, these are the rows' end-to-end latencies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowAges {
    /// The moment, Unix microseconds.
    pub at_us: i64,
    /// Per tenant.
    pub tenants: BTreeMap<String, TenantAges>,
}

/// Ages (or latencies) of one tenant's rows, ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantAges {
    /// Since the event time.
    pub event: logferry_observe::Histo,
    /// Since ingest.
    pub ingest: logferry_observe::Histo,
}

impl RowAges {
    /// The rows' latencies if they became queryable at `queryable_us`.
    pub fn latencies_at(&self, queryable_us: i64) -> BTreeMap<String, TenantAges> {
        let by_ms = (queryable_us - self.at_us) as f64 / 1000.0;
        self.tenants
            .iter()
            .map(|(t, a)| {
                (
                    t.clone(),
                    TenantAges {
                        event: a.event.shifted(by_ms),
                        ingest: a.ingest.shifted(by_ms),
                    },
                )
            })
            .collect()
    }
}

/// Ledger key of a window's aggregate record.
pub fn aggregate_key(w: Window) -> String {
    format!("windows/{}/aggregate", w.partition())
}

/// A landing object read by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Path in the lake.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Tenant partition.
    pub tenant: String,
}

/// An object a run wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path in its store.
    pub path: String,
    /// Rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// Tenant, for per-tenant objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Table, for rollup objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// The ledger record of a window's last aggregate run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AggregateRecord {
    /// `YYYY-MM-DDTHH`.
    pub window: String,
    /// Hash of the program and the input manifest; names every output.
    pub run_id: String,
    /// Hash of the SQL program.
    pub program_hash: String,
    /// Landing objects read.
    pub inputs: Vec<InputFile>,
    /// Curated objects, one per tenant.
    pub curated: Vec<FileRef>,
    /// Rollup objects, one per rollup.
    pub rollups: Vec<FileRef>,
    /// Dead-letter objects of rule violations, one per tenant.
    pub dlq: Vec<FileRef>,
    /// Counts by tenant.
    pub counts: BTreeMap<String, WindowCounts>,
    /// Event-time quantiles of the curated rows.
    pub event_time: EventTimeStats,
    /// Ages of the curated rows when the run read them, per tenant.
    #[serde(default)]
    pub ages: RowAges,
    /// Bytes the run's queries spilled to disk (past the memory limit).
    #[serde(default)]
    pub spilled_bytes: u64,
    /// When the run committed.
    pub finished_at: DateTime<Utc>,
    /// Run time.
    pub duration_ms: u64,
}

impl AggregateRecord {
    /// Every object the run wrote.
    pub fn outputs(&self) -> impl Iterator<Item = &FileRef> {
        self.curated.iter().chain(&self.rollups).chain(&self.dlq)
    }
}

/// One micro-batch increment of an open window: the landing objects it
/// processed (only those no earlier run of the window had seen), deduped
/// against every key the window already holds, and what it wrote. Kept
/// under `windows/<partition>/increments/<seq>-<id>.json`, written once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Increment {
    /// Position in the window's chain, from 1.
    pub seq: u64,
    /// Hash of the program, the base run, the previous increment and the
    /// inputs: names every output and the increment's load job.
    pub id: String,
    /// The full run the chain builds on (`None`: the window had none).
    pub base_run_id: Option<String>,
    /// The increment before this one (`None` for the first).
    pub prev_id: Option<String>,
    /// Landing objects read (new ones only).
    pub inputs: Vec<InputFile>,
    /// Curated objects, one per tenant.
    pub curated: Vec<FileRef>,
    /// Dead-letter objects of rule violations, one per tenant.
    pub dlq: Vec<FileRef>,
    /// Counts by tenant.
    pub counts: BTreeMap<String, WindowCounts>,
    /// Event-time quantiles of the curated rows.
    pub event_time: EventTimeStats,
    /// Ages of the curated rows when the increment read them, per tenant.
    #[serde(default)]
    pub ages: RowAges,
    /// When it committed.
    pub finished_at: DateTime<Utc>,
    /// Run time.
    pub duration_ms: u64,
    /// Curated rows of the window (full run and chain) with this increment.
    pub rows_after: u64,
}

impl Increment {
    /// Every object the increment wrote.
    pub fn outputs(&self) -> impl Iterator<Item = &FileRef> {
        self.curated.iter().chain(&self.dlq)
    }

    /// Rows it added to the window's curated records.
    pub fn curated_rows(&self) -> u64 {
        self.curated.iter().map(|f| f.rows).sum()
    }

    /// Ledger path (relative to `_state/`) of the increment document.
    pub fn doc_path(w: Window, seq: u64, id: &str) -> String {
        format!("{}/{seq:010}-{id}.json", increments_dir(w))
    }
}

/// Ledger prefix of a window's increment documents.
pub fn increments_dir(w: Window) -> String {
    format!("windows/{}/increments", w.partition())
}

/// Ledger key of a window's chain head: the last increment committed on
/// top of the window's full run. An increment is part of the window once
/// the head names it; a head whose base is not the window's current full
/// run is stale (a full run replaced the chain).
pub fn head_key(w: Window) -> String {
    format!("windows/{}/head", w.partition())
}

/// The chain head document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The full run the chain builds on.
    pub base_run_id: Option<String>,
    /// Increments in the chain.
    pub seq: u64,
    /// The last increment's id.
    pub last_id: String,
    /// Curated rows of base and increments together.
    pub curated_rows: u64,
}

/// Ledger key of what of a window's chain is in the warehouse.
pub fn appended_key(w: Window) -> String {
    format!("windows/{}/appended", w.partition())
}

/// Which increments of a chain the warehouse holds (appended in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The full run the chain builds on.
    pub base_run_id: Option<String>,
    /// Increments appended, from the first.
    pub seq: u64,
    /// The last appended increment's id.
    pub last_id: String,
    /// Rows of the window in the warehouse after the last append.
    pub rows: u64,
    /// When the last append finished (queryable from then on).
    pub finished_at: DateTime<Utc>,
}

/// Ledger marker of a window with a chain that its full run has not yet
/// replaced (the seal finds them here).
pub fn open_marker(w: Window) -> String {
    format!("open/{}", w.partition())
}

/// Ledger prefix of the records of replayed dead-letter objects.
pub const SUPERSEDED: &str = "dlq/superseded";

/// Ledger key of the record of a replayed dead-letter object.
pub fn superseded_key(path: &str) -> String {
    format!(
        "{SUPERSEDED}/{}",
        &crate::ids::hash_hex(path.as_bytes())[..24]
    )
}

/// Ledger record of a replayed dead-letter object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Superseded {
    /// The object replayed.
    pub path: String,
    /// Its replacement (still failing and unselected entries).
    pub replacement: Vec<String>,
    /// Entries that now landed.
    pub landed: u64,
    /// Entries that failed again.
    pub failed_again: u64,
    /// Entries left as they were (not selected, or not replayable).
    pub kept: u64,
    /// When.
    pub at: DateTime<Utc>,
}
