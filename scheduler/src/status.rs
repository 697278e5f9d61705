//! `logferry status`: every window the lake knows, with the state of each
//! stage: what landed, whether the committed aggregate run covers exactly the
//! landed objects, and whether that run is what the warehouse holds.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use logferry_aggregate::catalog::committed_runs;
use logferry_core::ledger::Ledger;
use logferry_core::partition::{LANDING, STATE, parse_partition};
use logferry_core::storage::list_all;
use logferry_export::{ExportRecord, LoadState, SealRecord};

use crate::context::Ctx;

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
    /// `pending` (never aggregated), `stale` (new data since) or `done`.
    pub aggregate: String,
    /// Committed aggregate run.
    pub run_id: Option<String>,
    /// Curated rows of that run.
    pub curated_rows: u64,
    /// `pending` (not exported), `stale` (an older run is exported),
    /// `loaded` (its hourly partition), `appended` (to its day), `sealed`
    /// (its day's seal loaded this run) or `awaiting_seal`.
    pub export: String,
    /// Rows in the warehouse's log_records partition.
    pub rows_loaded: u64,
    /// Load job ids of the loaded run.
    pub load_jobs: Vec<String>,
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
    let ledger = Ledger::new(ctx.lake.store.clone(), STATE);
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
    let windows: BTreeSet<String> = landed
        .keys()
        .chain(runs.keys())
        .chain(exports.keys())
        .cloned()
        .collect();
    let mut out = Vec::new();
    for w in windows {
        let l = landed.remove(&w).unwrap_or_default();
        let run = runs.get(&w);
        let aggregate = match run {
            None => "pending",
            Some(r) => {
                let inputs: BTreeSet<(String, u64)> =
                    r.inputs.iter().map(|i| (i.path.clone(), i.size)).collect();
                if inputs == l.objects { "done" } else { "stale" }
            }
        };
        let exp = exports.get(&w);
        let sealed = seals
            .get(w.get(..10).unwrap_or_default())
            .and_then(|s| s.windows.get(&w));
        let export = match (run, exp) {
            (_, None) => "pending",
            (Some(r), Some(e)) if e.aggregate_run_id == r.run_id => {
                if sealed == Some(&r.run_id) {
                    "sealed"
                } else if e.loaded_run.as_ref() == Some(&r.run_id) {
                    match e.state {
                        LoadState::Appended => "appended",
                        _ => "loaded",
                    }
                } else {
                    "awaiting_seal"
                }
            }
            _ => "stale",
        };
        out.push(WindowStatus {
            window: w,
            landed_files: l.files,
            landed_bytes: l.bytes,
            tenants: l.tenants.len() as u64,
            aggregate: aggregate.into(),
            run_id: run.map(|r| r.run_id.clone()),
            curated_rows: run.map_or(0, |r| r.curated.iter().map(|f| f.rows).sum()),
            export: export.into(),
            rows_loaded: match export {
                "loaded" | "appended" | "sealed" => exp.map_or(0, |e| {
                    e.exported_rows(logferry_core::schema::LOG_RECORDS_TABLE)
                }),
                _ => 0,
            },
            load_jobs: exp
                .map(|e| e.tables.iter().filter_map(|t| t.job_id.clone()).collect())
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Prints window states for people.
pub fn print(rows: &[WindowStatus]) {
    if rows.is_empty() {
        println!("The lake is empty: forward some data first (see `logferry forward --help`).");
        return;
    }
    println!(
        "{:<14} {:>7} {:>10} {:>8} {:>10} {:>12} {:>14} {:>12}",
        "window", "files", "bytes", "tenants", "aggregate", "curated", "export", "loaded"
    );
    for r in rows {
        println!(
            "{:<14} {:>7} {:>10} {:>8} {:>10} {:>12} {:>14} {:>12}",
            r.window,
            r.landed_files,
            r.landed_bytes,
            r.tenants,
            r.aggregate,
            r.curated_rows,
            r.export,
            r.rows_loaded
        );
    }
}
