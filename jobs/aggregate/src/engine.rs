//! The SQL program run over one window: dedupe, rules, curated rows, rejected
//! rows and rollups, with per-tenant counts that reconcile exactly:
//! input = curated + rejected + duplicates.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use logferry_core::schema::log_record_schema;

use crate::error::{Error, Result};
use crate::keys::KeySet;
use crate::program::{SqlFile, SqlProgram};
use crate::session::{conform, plain_schema};

pub use logferry_core::records::{EventTimeStats, WindowCounts};

/// One rollup's result.
#[derive(Debug, Clone)]
pub struct RollupOutput {
    /// Rollup (table) name.
    pub name: String,
    /// Result schema.
    pub schema: SchemaRef,
    /// Rows.
    pub batches: Vec<RecordBatch>,
}

/// Everything the program produced for a window.
#[derive(Debug, Clone)]
pub struct EngineOutput {
    /// Curated rows (`log_record`), sorted by tenant, time and event id.
    pub curated: Vec<RecordBatch>,
    /// Rejected rows: `log_record` columns, then `reason` and `detail`.
    pub rejected: Vec<RecordBatch>,
    /// Rollups in name order.
    pub rollups: Vec<RollupOutput>,
    /// Counts by tenant.
    pub counts: BTreeMap<String, WindowCounts>,
    /// Event-time quantiles of the curated rows.
    pub event_time: EventTimeStats,
}

fn sql_err(f: &SqlFile, e: impl std::fmt::Display) -> Error {
    Error::Sql {
        file: f.origin.clone(),
        message: e.to_string(),
    }
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Counts rows per value of a string column.
pub fn count_by(
    batches: &[RecordBatch],
    column: &str,
    into: &mut BTreeMap<String, u64>,
) -> Result<()> {
    for b in batches {
        let idx = b.schema().index_of(column)?;
        let col = b.column(idx);
        let strings = col.as_string_opt::<i32>().ok_or_else(|| {
            Error::Internal(format!(
                "column {column} is {}, not a string",
                col.data_type()
            ))
        })?;
        for v in strings.iter() {
            *into.entry(v.unwrap_or("").to_string()).or_default() += 1;
        }
    }
    Ok(())
}

fn violations_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
    ]))
}

fn replace_table(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(())
}

/// Runs the whole program. `window_input` must be registered in `ctx`.
pub async fn run(ctx: &SessionContext, program: &SqlProgram) -> Result<EngineOutput> {
    run_with(ctx, program, None, true).await
}

/// Keeps the rows whose key `seen` does not hold: the rest are copies of
/// records an earlier run of the window kept or refused.
fn unseen(batches: Vec<RecordBatch>, seen: &KeySet) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let s = b.schema();
        let tenants = b
            .column(s.index_of("tenant_id")?)
            .as_string::<i32>()
            .clone();
        let events = b.column(s.index_of("event_id")?).as_string::<i32>().clone();
        let keys: Vec<u128> = (0..b.num_rows())
            .map(|i| crate::keys::key(tenants.value(i), events.value(i)))
            .collect();
        let keep: arrow::array::BooleanArray = seen
            .contains_keys(&keys)?
            .into_iter()
            .map(|held| Some(!held))
            .collect();
        out.push(arrow::compute::filter_record_batch(&b, &keep)?);
    }
    Ok(out)
}

/// Runs the program; with `seen`, records whose key it holds count as
/// duplicates (an increment of an open window); without `rollups`, no
/// rollup is computed (they are computed over the whole window).
pub async fn run_with(
    ctx: &SessionContext,
    program: &SqlProgram,
    seen: Option<&KeySet>,
    rollups: bool,
) -> Result<EngineOutput> {
    let log_schema = log_record_schema();

    let mut input = BTreeMap::new();
    count_by(
        &query(ctx, "SELECT tenant_id FROM window_input").await?,
        "tenant_id",
        &mut input,
    )?;

    let deduped = ctx
        .sql(&program.dedupe.sql)
        .await
        .map_err(|e| sql_err(&program.dedupe, e))?
        .collect()
        .await
        .map_err(|e| sql_err(&program.dedupe, e))?
        .iter()
        .map(|b| conform(b, &log_schema))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| sql_err(&program.dedupe, format!("result is not a log_record: {e}")))?;
    let deduped = match seen {
        Some(seen) if !seen.is_empty() => unseen(deduped, seen)?,
        _ => deduped,
    };
    let mut deduped_counts = BTreeMap::new();
    count_by(&deduped, "tenant_id", &mut deduped_counts)?;
    replace_table(ctx, "deduped", log_schema.clone(), deduped)?;

    // Rules in name order; a row that breaks several keeps the first reason.
    let mut first: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for rule in &program.rules {
        let sql = format!(
            "SELECT CAST(tenant_id AS VARCHAR) AS tenant_id, CAST(event_id AS VARCHAR) AS event_id, \
             CAST(detail AS VARCHAR) AS detail FROM ({}) AS rule_rows",
            rule.sql
        );
        let rows = ctx.sql(&sql).await.map_err(|e| sql_err(rule, e))?;
        let rows = rows.collect().await.map_err(|e| sql_err(rule, e))?;
        for b in &rows {
            let (t, e, d) = (
                b.column(0).as_string::<i32>(),
                b.column(1).as_string::<i32>(),
                b.column(2).as_string::<i32>(),
            );
            for i in 0..b.num_rows() {
                let key = (t.value(i).to_string(), e.value(i).to_string());
                let detail = if d.is_null(i) {
                    String::new()
                } else {
                    d.value(i).to_string()
                };
                first
                    .entry(key)
                    .or_insert_with(|| (rule.name.clone(), detail));
            }
        }
    }
    let mut cols = [
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    ];
    let mut violation_counts: BTreeMap<String, u64> = BTreeMap::new();
    for ((t, e), (r, d)) in &first {
        cols[0].append_value(t);
        cols[1].append_value(e);
        cols[2].append_value(r);
        cols[3].append_value(d);
        *violation_counts.entry(t.clone()).or_default() += 1;
    }
    let vschema = violations_schema();
    let vbatch = RecordBatch::try_new(
        vschema.clone(),
        cols.iter_mut().map(|c| Arc::new(c.finish()) as _).collect(),
    )?;
    replace_table(ctx, "violations", vschema, vec![vbatch])?;

    let curated: Vec<RecordBatch> = query(
        ctx,
        "SELECT d.* FROM deduped d LEFT ANTI JOIN violations v \
         ON d.tenant_id = v.tenant_id AND d.event_id = v.event_id \
         ORDER BY d.tenant_id, d.\"timestamp\", d.event_id",
    )
    .await?
    .iter()
    .map(|b| conform(b, &log_schema))
    .collect::<Result<_>>()?;
    let rejected = query(
        ctx,
        "SELECT d.*, v.reason, v.detail FROM deduped d JOIN violations v \
         ON d.tenant_id = v.tenant_id AND d.event_id = v.event_id \
         ORDER BY d.tenant_id, d.event_id",
    )
    .await?;
    let mut curated_counts = BTreeMap::new();
    count_by(&curated, "tenant_id", &mut curated_counts)?;
    let event_time = event_time_stats(&curated);
    replace_table(ctx, "curated", log_schema.clone(), curated.clone())?;

    let with_rollups = rollups;
    let mut rollups = Vec::new();
    for r in program.rollups.iter().filter(|_| with_rollups) {
        let df = ctx.sql(&r.sql).await.map_err(|e| sql_err(r, e))?;
        let schema = plain_schema(df.schema().as_arrow());
        let batches = df
            .collect()
            .await
            .map_err(|e| sql_err(r, e))?
            .iter()
            .map(|b| conform(b, &schema))
            .collect::<Result<Vec<_>>>()?;
        rollups.push(RollupOutput {
            name: r.name.clone(),
            schema,
            batches,
        });
    }

    let mut counts: BTreeMap<String, WindowCounts> = BTreeMap::new();
    for (t, n) in &input {
        let kept = deduped_counts.get(t).copied().unwrap_or(0);
        counts.insert(
            t.clone(),
            WindowCounts {
                input: *n,
                duplicates: n - kept,
                dead_lettered: violation_counts.get(t).copied().unwrap_or(0),
                curated: curated_counts.get(t).copied().unwrap_or(0),
            },
        );
    }
    for (t, c) in &counts {
        if c.input != c.duplicates + c.dead_lettered + c.curated {
            return Err(Error::Internal(format!(
                "tenant {t}: {} rows in, {} duplicates + {} rejected + {} curated out",
                c.input, c.duplicates, c.dead_lettered, c.curated
            )));
        }
    }
    Ok(EngineOutput {
        curated,
        rejected,
        rollups,
        counts,
        event_time,
    })
}

fn event_time_stats(curated: &[RecordBatch]) -> EventTimeStats {
    let mut ts: Vec<i64> = Vec::new();
    for b in curated {
        if let Some(col) = b.column_by_name("timestamp")
            && let Some(a) = col.as_primitive_opt::<TimestampMicrosecondType>()
        {
            ts.extend(a.values().iter().copied());
        }
    }
    if ts.is_empty() {
        return EventTimeStats::default();
    }
    ts.sort_unstable();
    // Nearest-rank quantile.
    let at = |q: f64| ts[((q * ts.len() as f64).ceil() as usize).clamp(1, ts.len()) - 1];
    EventTimeStats {
        count: ts.len() as u64,
        min_us: ts[0],
        p05_us: at(0.05),
        p50_us: at(0.5),
        max_us: ts[ts.len() - 1],
    }
}
