//! `logferry reconcile`: per tenant, what was received against what was
//! loaded, dead-lettered or removed as a duplicate, counted from the data
//! itself (landing and dead-letter objects, the warehouse's tables), not from
//! the stages' own reports.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use serde::{Deserialize, Serialize};

use logferry_core::partition::Window;
use logferry_core::schema::LOG_RECORDS_TABLE;

use crate::context::Ctx;
use crate::error::Result;

/// Counts of one tenant key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantBalance {
    /// Items received: landing rows plus forward refusals.
    pub received: u64,
    /// Items dead-lettered by either stage.
    pub dead_lettered: u64,
    /// Exact redeliveries (landing rows beyond the first copy of an event).
    pub duplicates: u64,
    /// Rows in the warehouse.
    pub loaded: u64,
    /// received = loaded + dead_lettered + duplicates.
    pub balanced: bool,
}

/// The reconciliation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reconciliation {
    /// The window, or `null` for everything.
    pub window: Option<String>,
    /// True when every tenant balances.
    pub balanced: bool,
    /// By tenant key (`_unknown` for items refused before a tenant was known).
    pub tenants: BTreeMap<String, TenantBalance>,
    /// Sums over all tenants.
    pub totals: TenantBalance,
}

async fn counts(
    s: &datafusion::prelude::SessionContext,
    q: &str,
) -> Result<Vec<(String, i64, i64)>> {
    let mut out = Vec::new();
    for b in crate::sql::query(s, q).await? {
        let t = b.column(0).as_string::<i32>();
        let x = b.column(1).as_primitive::<Int64Type>();
        let y = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((
                t.value(i).to_string(),
                if x.is_null(i) { 0 } else { x.value(i) },
                if y.is_null(i) { 0 } else { y.value(i) },
            ));
        }
    }
    Ok(out)
}

/// Reconciles one window or everything.
pub async fn reconcile(ctx: &Ctx, window: Option<Window>) -> Result<Reconciliation> {
    // The warehouse's own counts come from count_by_tenant (BigQuery: a
    // COUNT per tenant); the SQL session only serves the lake's tables.
    let (s, _files) = crate::sql::session_for(ctx, window, Some("")).await?;
    let mut tenants: BTreeMap<String, TenantBalance> = BTreeMap::new();
    // Copies of each event within its window: the first is the record, the
    // rest are exact redeliveries.
    for (t, rows, dups) in counts(
        &s,
        "SELECT tenant_id, CAST(sum(copies) AS BIGINT), CAST(sum(copies - 1) AS BIGINT) FROM ( \
           SELECT tenant_id, count(*) AS copies FROM landing \
           GROUP BY tenant_id, date_trunc('hour', \"timestamp\"), event_id) AS events \
         GROUP BY tenant_id",
    )
    .await?
    {
        let e = tenants.entry(t).or_default();
        e.received += rows as u64;
        e.duplicates += dups as u64;
    }
    for (t, all, forward) in counts(
        &s,
        "SELECT tenant_id, count(*), CAST(sum(CASE WHEN stage = 'forward' THEN 1 ELSE 0 END) AS BIGINT) \
         FROM dlq GROUP BY tenant_id",
    )
    .await?
    {
        let e = tenants.entry(t).or_default();
        e.dead_lettered += all as u64;
        e.received += forward as u64;
    }
    for (t, n) in ctx
        .warehouse
        .as_dyn()
        .count_by_tenant(LOG_RECORDS_TABLE, window)
        .await?
    {
        tenants.entry(t).or_default().loaded += n;
    }
    let mut totals = TenantBalance::default();
    for b in tenants.values_mut() {
        b.balanced = b.received == b.loaded + b.dead_lettered + b.duplicates;
        totals.received += b.received;
        totals.dead_lettered += b.dead_lettered;
        totals.duplicates += b.duplicates;
        totals.loaded += b.loaded;
    }
    totals.balanced = totals.received == totals.loaded + totals.dead_lettered + totals.duplicates;
    let balanced = tenants.values().all(|b| b.balanced);
    Ok(Reconciliation {
        window: window.map(|w| w.to_string()),
        balanced,
        tenants,
        totals,
    })
}
