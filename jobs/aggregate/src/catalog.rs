//! The lake as SQL tables, for `logferry sql`, `reconcile` and `status`:
//! `landing` (every landing object), `dlq` (forward refusals and the
//! committed runs' rule violations), `curated` and one table per rollup (the
//! committed runs' objects only, so a crashed or superseded run is never
//! read).

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use object_store::path::Path;

use logferry_core::ledger::Ledger;
use logferry_core::partition::{DLQ, LANDING, STATE};
use logferry_core::schema::{dead_letter_schema, log_record_schema};
use logferry_core::storage::{Location, list_all, parquet_schema};

use crate::error::Result;
use crate::session::{parquet_table, register_store};
use crate::window::AggregateRecord;

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

/// Registers `landing`, `dlq`, `curated` and the rollup tables of `lake`.
/// Returns the committed runs it read.
pub async fn register_lake(
    ctx: &SessionContext,
    lake: &Location,
) -> Result<BTreeMap<String, AggregateRecord>> {
    register_store(ctx, "lake", lake.store.clone())?;
    let ledger = Ledger::new(lake.store.clone(), STATE);
    let runs = committed_runs(&ledger).await?;
    ctx.register_table(
        "landing",
        parquet_table("lake", log_record_schema(), Some(LANDING), &[])?,
    )?;

    let mut dlq: Vec<String> = list_all(
        lake.store.as_ref(),
        &Path::from(format!("{DLQ}/stage=forward")),
    )
    .await?
    .into_iter()
    .map(|m| m.location.to_string())
    .filter(|p| p.ends_with(".parquet"))
    .collect();
    let mut curated = Vec::new();
    let mut rollups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in runs.values() {
        dlq.extend(r.dlq.iter().map(|f| f.path.clone()));
        curated.extend(r.curated.iter().map(|f| f.path.clone()));
        for f in &r.rollups {
            if let Some(t) = &f.table {
                rollups.entry(t.clone()).or_default().push(f.path.clone());
            }
        }
    }
    ctx.register_table("dlq", parquet_table("lake", dead_letter_schema(), None, &dlq)?)?;
    ctx.register_table(
        "curated",
        parquet_table("lake", log_record_schema(), None, &curated)?,
    )?;
    for (name, files) in rollups {
        let schema = parquet_schema(lake.store.as_ref(), &Path::from(files[0].as_str())).await?;
        ctx.register_table(name.as_str(), parquet_table("lake", schema, None, &files)?)?;
    }
    Ok(runs)
}
