//! `logferry status`: every window the lake knows, with the state of each
//! stage: what landed, whether the committed run (and, for an open window,
//! its increments) covers exactly the landed objects, whether that is what
//! the warehouse holds, and whether the window is failing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use logferry_aggregate::catalog::{committed_runs, open_chains};
use logferry_core::partition::{LANDING, Window, parse_partition};
use logferry_core::records::{Appended, appended_key};
use logferry_core::storage::list_all;
use logferry_export::{ExportRecord, LoadState, SealRecord};

use crate::context::Ctx;
use crate::error::Result;
use crate::failures::{Failures, Subject};
use crate::state::{AggregateStatus, ExportStatus, Health};

/// One window's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowStatus {
    /// `YYYY-MM-DDTHH`.
    pub window: String,
    /// Landing objects.
    pub landed_files: u64,
    /// Landing bytes.
    pub landed_bytes: u64,
    /// Tenants with landed data.
    pub tenants: u64,
    /// Where the aggregate stands.
    pub aggregate: AggregateStatus,
    /// Committed full run.
    pub run_id: Option<String>,
    /// Increments on top of it (an open window).
    pub increments: u64,
    /// Curated rows of the run and its increments.
    pub curated_rows: u64,
    /// Where the warehouse stands.
    pub export: ExportStatus,
    /// Rows of the window in the warehouse's log_records table.
    pub rows_loaded: u64,
    /// Load job ids of the loaded run.
    pub load_jobs: Vec<String>,
    /// Whether its processing fails.
    pub health: Health,
    /// Failed attempts in a row.
    #[serde(default)]
    pub attempts: u32,
    /// When the next attempt is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What landed in one window.
#[derive(Debug, Default)]
struct Landed {
    files: u64,
    bytes: u64,
    tenants: BTreeSet<String>,
    objects: BTreeSet<(String, u64)>,
}

/// States of every window.
pub async fn status(ctx: &Ctx) -> Result<Vec<WindowStatus>> {
    let ledger = ctx.ledger();
    let mut landed: BTreeMap<String, Landed> = BTreeMap::new();
    for m in list_all(ctx.lake.store.as_ref(), &Path::from(LANDING)).await? {
        let k = parse_partition(&m.location);
        if let Some(w) = k.window {
            let e = landed.entry(w.to_string()).or_default();
            e.files += 1;
            e.bytes += m.size;
            e.tenants.insert(k.tenant.unwrap_or_default());
            e.objects.insert((m.location.to_string(), m.size));
        }
    }
    let runs = committed_runs(&ledger).await?;
    let chains = open_chains(&ledger, &runs).await?;
    let exports: BTreeMap<String, ExportRecord> = ledger
        .latest_under::<ExportRecord>("windows", |k| k.ends_with("/export"))
        .await?
        .into_values()
        .map(|v| (v.value.window.clone(), v.value))
        .collect();
    let seals: BTreeMap<String, SealRecord> = ledger
        .latest_under::<SealRecord>("days", |k| k.ends_with("/seal"))
        .await?
        .into_values()
        .map(|v| (v.value.day.clone(), v.value))
        .collect();
    let failures = Failures::load(&ledger, ctx.settings.run).await?;
    let windows: BTreeSet<String> = landed
        .keys()
        .chain(runs.keys())
        .chain(exports.keys())
        .chain(chains.keys())
        .cloned()
        .collect();
    let mut out = Vec::new();
    for w in windows {
        let l = landed.remove(&w).unwrap_or_default();
        let run = runs.get(&w);
        let chain = chains.get(&w).map(Vec::as_slice).unwrap_or_default();
        let covered: BTreeSet<(String, u64)> = run
            .iter()
            .flat_map(|r| r.inputs.iter())
            .chain(chain.iter().flat_map(|i| i.inputs.iter()))
            .map(|i| (i.path.clone(), i.size))
            .collect();
        let aggregate = match (run, chain.is_empty()) {
            (None, true) => AggregateStatus::Pending,
            _ if covered != l.objects => AggregateStatus::Stale,
            (_, false) => AggregateStatus::Open,
            (Some(_), true) => AggregateStatus::Done,
        };
        let exp = exports.get(&w);
        let sealed = seals
            .get(w.get(..10).unwrap_or_default())
            .and_then(|s| s.windows.get(&w));
        let mut rows_loaded = 0;
        let export = if !chain.is_empty() {
            let window = Window::parse(&w)?;
            let appended = ledger.latest::<Appended>(&appended_key(window)).await?;
            rows_loaded = appended.map_or(0, |a| a.value.rows);
            ExportStatus::Appended
        } else {
            match (run, exp) {
                (_, None) => ExportStatus::Pending,
                (Some(r), Some(e)) if e.aggregate_run_id == r.run_id => {
                    if sealed == Some(&r.run_id) {
                        ExportStatus::Sealed
                    } else if e.loaded_run.as_ref() == Some(&r.run_id) {
                        match e.state {
                            LoadState::Appended => ExportStatus::Appended,
                            _ => ExportStatus::Loaded,
                        }
                    } else {
                        ExportStatus::AwaitingSeal
                    }
                }
                _ => ExportStatus::Stale,
            }
        };
        if matches!(
            export,
            ExportStatus::Loaded | ExportStatus::Appended | ExportStatus::Sealed
        ) && chain.is_empty()
        {
            rows_loaded = exp.map_or(0, |e| {
                e.exported_rows(logferry_core::schema::LOG_RECORDS_TABLE)
            });
        }
        let failure = Window::parse(&w)
            .ok()
            .and_then(|win| failures.get(&Subject::Window(win)));
        out.push(WindowStatus {
            window: w,
            landed_files: l.files,
            landed_bytes: l.bytes,
            tenants: l.tenants.len() as u64,
            aggregate,
            run_id: run.map(|r| r.run_id.clone()),
            increments: chain.len() as u64,
            curated_rows: run.map_or(0, |r| r.curated.iter().map(|f| f.rows).sum::<u64>())
                + chain.iter().map(|i| i.curated_rows()).sum::<u64>(),
            export,
            rows_loaded,
            load_jobs: exp
                .map(|e| e.tables.iter().filter_map(|t| t.job_id.clone()).collect())
                .unwrap_or_default(),
            health: failure.map_or(Health::Ok, |f| f.health()),
            attempts: failure.map_or(0, |f| f.attempts),
            next_attempt_at: failure.and_then(|f| f.next_attempt_at),
            error: failure.map(|f| f.error.clone()),
        });
    }
    Ok(out)
}
