//! Memory bounded by configuration: a window far larger than the aggregate's
//! memory pool runs (its sorts spill, its intermediate rows go to scratch
//! files, its outputs are written in bounded objects) and lands exactly what
//! an unbounded run lands.

use std::collections::BTreeMap;

use crate::common::*;

/// Rows of every table, per tenant, with a digest of their content.
async fn digest(env: &Env) -> BTreeMap<String, u64> {
    let mut out = env
        .counts(
            "SELECT tenant_id || ' ' || CAST(sum(length(message)) AS VARCHAR) || ' ' || \
             CAST(sum(CAST(\"timestamp\" AS BIGINT) % 1000003) AS VARCHAR), count(*) \
             FROM warehouse GROUP BY tenant_id",
        )
        .await;
    out.extend(
        env.counts(
            "SELECT 'errors ' || tenant_id || ' ' || CAST(sum(errors) AS VARCHAR), sum(records) \
             FROM warehouse_error_rate GROUP BY tenant_id",
        )
        .await,
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_larger_than_the_memory_limit_spills_and_lands_the_same_rows() {
    let free = Env::new("");
    // A 32 MiB pool (the least allowed) for a window of some 60 MB of
    // rows, and objects of 1,000 rows (each tenant's rows in several).
    let bounded = Env::new("[aggregate]\nmemory_limit = 33554432\nobject_rows = 1000\n");
    let mut spec = Env::spec(60_000, 23);
    spec.cloudwatch_share = 0.0;
    spec.span_ms = 20 * 60 * 1000;
    for env in [&free, &bounded] {
        let w = env.generate(&spec, "in");
        env.forward(&w.ndjson, logferry_forward::Format::Ndjson)
            .await;
    }
    let a = free.run().await;
    let b = bounded.run().await;
    assert!(
        a.windows.iter().all(|w| w.spilled_bytes == 0),
        "{:?}",
        a.windows
    );
    let big = b
        .windows
        .iter()
        .filter(|w| w.rows_loaded > 5000)
        .collect::<Vec<_>>();
    assert!(!big.is_empty(), "{:?}", b.windows);
    for w in &big {
        assert!(w.spilled_bytes > 0, "window {} did not spill", w.window);
        assert_eq!(w.aggregate, "done");
        assert_eq!(w.export, bounded.loaded_state());
    }
    // Several curated objects per tenant, each exported and loaded.
    let lake = bounded.data_dir().join("lake/curated");
    let objects = parquet_files(&lake).len();
    let tenants: usize = b.windows.iter().map(|w| w.counts.len()).sum();
    assert!(
        objects > tenants,
        "{objects} objects for {tenants} tenant windows"
    );
    assert_eq!(
        free.reconcile().await.tenants,
        bounded.reconcile().await.tenants
    );
    assert_eq!(digest(&free).await, digest(&bounded).await);
    assert_eq!(
        a.windows
            .iter()
            .map(|w| (&w.window, &w.counts))
            .collect::<Vec<_>>(),
        b.windows
            .iter()
            .map(|w| (&w.window, &w.counts))
            .collect::<Vec<_>>()
    );
    // Scratch files are gone once the windows are done.
    let spill = bounded.data_dir().join("spill");
    let left: Vec<_> = std::fs::read_dir(&spill).unwrap().collect();
    assert!(left.is_empty(), "{left:?} left in {}", spill.display());
}
