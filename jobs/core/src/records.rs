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
