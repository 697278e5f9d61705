//! The lake as SQL tables, for `logferry sql`, `reconcile` and `status`:
//! `landing` (every landing object), `dlq` (forward refusals and the
//! committed runs' rule violations), `curated` and one table per rollup (the
//! committed runs' objects only, so a crashed or superseded run is never
//! read). An open window adds the objects of its chain of increments to
//! `curated` and `dlq`; its rollups are its last full run's.

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use object_store::path::Path;

use logferry_core::ledger::Ledger;
use logferry_core::partition::{DLQ, LANDING, STATE, Window, parse_partition};
use logferry_core::schema::{dead_letter_schema, log_record_schema};
use logferry_core::storage::{Location, list_all, parquet_schema};

use crate::error::Result;
use crate::session::{parquet_table, register_store};
use crate::window::{AggregateRecord, read_chain};
use logferry_core::records::{ChainHead, Increment, SUPERSEDED, Superseded, head_key};

/// Latest committed aggregate record of every window, by window.
pub async fn committed_runs(ledger: &Ledger) -> Result<BTreeMap<String, AggregateRecord>> {
    let all = ledger
        .latest_under::<AggregateRecord>("windows", |k| k.ends_with("/aggregate"))
        .await?;
    Ok(all
        .into_values()
        .map(|v| (v.value.window.clone(), v.value))
        .collect())
}

/// The objects that make up the lake's tables, optionally only those of one
/// window (by their partition path).
#[derive(Debug, Clone, Default)]
pub struct LakeFiles {
    /// Landing objects.
    pub landing: Vec<String>,
    /// Forward-stage dead-letter objects.
    pub dlq_forward: Vec<String>,
    /// Aggregate-stage dead-letter objects of committed runs.
    pub dlq_aggregate: Vec<String>,
    /// Curated objects of committed runs.
    pub curated: Vec<String>,
    /// Rollup objects of committed runs, by rollup.
    pub rollups: BTreeMap<String, Vec<String>>,
    /// The committed runs, by window.
    pub runs: BTreeMap<String, AggregateRecord>,
    /// The increments of open windows on top of their runs, by window.
    pub chains: BTreeMap<String, Vec<Increment>>,
}

/// The current chain of increments of every open window, by window.
pub async fn open_chains(
    ledger: &Ledger,
    runs: &BTreeMap<String, AggregateRecord>,
) -> Result<BTreeMap<String, Vec<Increment>>> {
    let mut out = BTreeMap::new();
    for key in ledger.list("open").await? {
        let Some(w) = parse_partition(&Path::from(key.as_str())).window else {
            continue;
        };
        let Some(head) = ledger.latest::<ChainHead>(&head_key(w)).await? else {
            continue;
        };
        let base = runs.get(&w.to_string()).map(|r| r.run_id.clone());
        if head.value.base_run_id != base || head.value.seq == 0 {
            continue;
        }
        out.insert(w.to_string(), read_chain(ledger, w, &head.value).await?);
    }
    Ok(out)
}

async fn list_parquet(
    lake: &Location,
    prefix: &str,
    window: Option<Window>,
) -> Result<Vec<String>> {
    Ok(list_all(lake.store.as_ref(), &Path::from(prefix))
        .await?
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
        .filter(|m| window.is_none() || parse_partition(&m.location).window == window)
        .map(|m| m.location.to_string())
        .collect())
}

impl LakeFiles {
    /// Lists the lake and reads the committed runs.
    pub async fn load(lake: &Location, window: Option<Window>) -> Result<Self> {
        let ledger = Ledger::new(lake.store.clone(), STATE);
        let mut runs = committed_runs(&ledger).await?;
        let mut chains = open_chains(&ledger, &runs).await?;
        if let Some(w) = window {
            runs.retain(|k, _| *k == w.to_string());
            chains.retain(|k, _| *k == w.to_string());
        }
        // Dead-letter objects a replay replaced are read as their
        // replacements only.
        let superseded: std::collections::HashSet<String> = ledger
            .latest_under::<Superseded>(SUPERSEDED, |_| true)
            .await?
            .into_values()
            .map(|v| v.value.path)
            .collect();
        let mut files = LakeFiles {
            landing: list_parquet(lake, LANDING, window).await?,
            dlq_forward: list_parquet(lake, &format!("{DLQ}/stage=forward"), window)
                .await?
                .into_iter()
                .filter(|p| !superseded.contains(p))
                .collect(),
            ..Default::default()
        };
        for r in runs.values() {
            files
                .dlq_aggregate
                .extend(r.dlq.iter().map(|f| f.path.clone()));
            files
                .curated
                .extend(r.curated.iter().map(|f| f.path.clone()));
            for f in &r.rollups {
                if let Some(t) = &f.table {
                    files
                        .rollups
                        .entry(t.clone())
                        .or_default()
                        .push(f.path.clone());
                }
            }
        }
        for inc in chains.values().flatten() {
            files
                .dlq_aggregate
                .extend(inc.dlq.iter().map(|f| f.path.clone()));
            files
                .curated
                .extend(inc.curated.iter().map(|f| f.path.clone()));
        }
        files.runs = runs;
        files.chains = chains;
        Ok(files)
    }
}

/// Registers `landing`, `dlq`, `curated` and the rollup tables of `lake`
/// (only one window's objects when `window` is given).
pub async fn register_lake(
    ctx: &SessionContext,
    lake: &Location,
    window: Option<Window>,
) -> Result<LakeFiles> {
    register_store(ctx, "lake", lake.store.clone())?;
    let files = LakeFiles::load(lake, window).await?;
    ctx.register_table(
        "landing",
        parquet_table("lake", log_record_schema(), None, &files.landing)?,
    )?;
    let dlq: Vec<String> = files
        .dlq_forward
        .iter()
        .chain(&files.dlq_aggregate)
        .cloned()
        .collect();
    ctx.register_table(
        "dlq",
        parquet_table("lake", dead_letter_schema(), None, &dlq)?,
    )?;
    ctx.register_table(
        "curated",
        parquet_table("lake", log_record_schema(), None, &files.curated)?,
    )?;
    for (name, paths) in &files.rollups {
        let schema = parquet_schema(lake.store.as_ref(), &Path::from(paths[0].as_str())).await?;
        ctx.register_table(name.as_str(), parquet_table("lake", schema, None, paths)?)?;
    }
    Ok(files)
}
