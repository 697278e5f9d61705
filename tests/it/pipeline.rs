//! The pipeline end to end on the embedded default, checked item by item
//! against the generator's labels.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::AsArray;

use logferry_forward::workload::{Expected, Outcome};

use crate::common::*;

/// Every labelled item ends where its label says: forward refusals by
/// position and reason, rule violations and duplicates by count per tenant,
/// and every tenant balances exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_workload_lands_exactly_as_labelled() {
    labelled_workload(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_workload_lands_exactly_as_labelled_on_emulators() {
    labelled_workload(Backend::Emulators).await;
}

async fn labelled_workload(backend: Backend) {
    let Some(env) = Env::on(backend, "") else {
        return;
    };
    let w = env.generate(&Env::spec(6000, SEED), "input");
    let labels = labels(&w);
    let expected = Expected::from_labels(&labels);
    let fwd = env.forward_both(&w).await;
    let run = env.run().await;
    assert!(
        run.windows
            .iter()
            .all(|w| w.aggregate == "done" && w.export == env.loaded_state())
    );
    // Shipped compressed: the export reports bytes sent and the ratio (a
    // window of a few dozen rows is mostly Parquet footer, so only the full
    // ones are held to it).
    assert!(run.windows.iter().all(|w| w.bytes_sent > 0));
    assert!(
        run.windows
            .iter()
            .filter(|w| w.rows_loaded > 1000)
            .all(|w| w.compression_ratio > 1.5),
        "{:?}",
        run.windows
    );

    // Every kind the pipeline must handle was generated.
    for kind in [
        "malformed_json",
        "invalid_utf8",
        "missing_source",
        "unknown_stream",
        "unknown_tenant_claim",
        "cross_tenant",
        "missing_field",
        "wrong_type",
        "ts_future",
        "ts_past",
        "oversized_message",
        "oversized_record",
        "invalid_level",
        "empty_message",
        "invalid_service",
        "coerced_iso_timestamp",
        "coerced_lowercase_level",
        "coerced_no_tenant_field",
        "coerced_no_timestamp",
        "shared_request_id",
        "duplicate_exact",
        "missing_event_id",
        "corrupt_bad_base64",
        "corrupt_not_gzip",
        "corrupt_truncated_gzip",
        "corrupt_bad_json",
        "unknown_log_group",
        "account_not_allowed",
        "gzip_bomb",
        "too_many_events",
        "control_message",
        "escaped_controls",
    ] {
        assert!(
            expected.kinds.contains_key(kind),
            "the workload has no {kind}"
        );
    }

    // The forward stage's own counts agree with the labels.
    let control: u64 = fwd.iter().map(|f| f.decode.control_messages).sum();
    assert_eq!(control, expected.control_messages);
    let refused: u64 = fwd.iter().map(|f| f.decode.dead_lettered).sum();
    let want_refused: u64 = labels
        .iter()
        .filter(|l| l.outcome == Outcome::DlqForward)
        .count() as u64;
    assert_eq!(refused, want_refused);

    // Each forward refusal, item by item: (input, position) -> reason.
    let mut found: BTreeMap<(String, String), String> = BTreeMap::new();
    for b in env
        .query("SELECT input, position, reason, tenant_id FROM dlq WHERE stage = 'forward'")
        .await
    {
        let (i, p, r, t) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
            b.column(2).as_string::<i32>(),
            b.column(3).as_string::<i32>(),
        );
        for k in 0..b.num_rows() {
            let file = if i.value(k).ends_with(".ndjson") {
                "ndjson"
            } else {
                "cloudwatch"
            };
            let prev = found.insert(
                (file.to_string(), p.value(k).to_string()),
                format!("{}@{}", r.value(k), t.value(k)),
            );
            assert!(prev.is_none(), "two DLQ entries for {file} {}", p.value(k));
        }
    }
    let mut want: BTreeMap<(String, String), String> = BTreeMap::new();
    for l in labels.iter().filter(|l| l.outcome == Outcome::DlqForward) {
        let pos = match l.event {
            Some(e) => format!("line {} event {e}", l.line),
            None => format!("line {}", l.line),
        };
        want.insert(
            (l.format.clone(), pos),
            format!("{}@{}", l.reason.clone().unwrap(), l.tenant),
        );
    }
    let diff: Vec<_> = want
        .iter()
        .filter(|(k, v)| found.get(*k) != Some(v))
        .map(|(k, v)| format!("{k:?}: want {v}, found {:?}", found.get(k)))
        .chain(
            found
                .keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("{k:?}: unexpected")),
        )
        .take(20)
        .collect();
    assert!(
        diff.is_empty(),
        "forward DLQ differs from the labels:\n{}",
        diff.join("\n")
    );

    // Rule violations and every other count, per tenant and reason.
    let dlq = env
        .counts("SELECT stage || '/' || reason || '@' || tenant_id, count(*) FROM dlq GROUP BY 1")
        .await;
    let mut want_dlq: BTreeMap<String, u64> = BTreeMap::new();
    for l in &labels {
        let stage = match l.outcome {
            Outcome::DlqForward => "forward",
            Outcome::DlqAggregate => "aggregate",
            _ => continue,
        };
        *want_dlq
            .entry(format!(
                "{stage}/{}@{}",
                l.reason.as_deref().unwrap(),
                l.tenant
            ))
            .or_default() += 1;
    }
    assert_eq!(dlq, want_dlq);

    // Reconcile: exactly the labelled counts for every tenant, and balanced.
    let rec = env.reconcile().await;
    assert!(rec.balanced, "{rec:?}");
    let got = tenant_counts(&rec);
    let want: BTreeMap<String, (u64, u64, u64, u64)> = expected
        .tenants
        .iter()
        .map(|(t, c)| {
            (
                t.clone(),
                (c.received, c.loaded, c.dead_lettered, c.duplicates),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        expected.totals().duplicates > 50,
        "too few duplicates to prove dedupe"
    );

    // The warehouse holds each event once, and every record that shared a
    // request_id with another is there.
    assert_eq!(
        env.scalar("SELECT count(*) FROM (SELECT tenant_id, event_id FROM warehouse GROUP BY 1, 2 HAVING count(*) > 1)")
            .await,
        0
    );
    let shared = labels
        .iter()
        .filter(|l| l.kind == "shared_request_id")
        .count() as i64;
    assert!(shared > 10);
    let reused = env
        .scalar("SELECT CAST(count(*) AS BIGINT) FROM (SELECT tenant_id, request_id FROM warehouse GROUP BY 1, 2 HAVING count(*) > 1)")
        .await;
    assert!(
        reused >= shared / 2,
        "records sharing a request_id were removed: {reused} < {shared}/2"
    );

    // Coercions as documented: lower-case levels are upper-cased, ISO
    // timestamps read, and every loaded level is a known one.
    let levels = env
        .counts("SELECT level, count(*) FROM warehouse GROUP BY 1")
        .await;
    assert!(
        levels
            .keys()
            .all(|l| ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"].contains(&l.as_str())),
        "{levels:?}"
    );

    check_isolation(&env).await;
    crate::procs::assert_isolated(&env);
}

/// Every row of every tenant partition (landing, dlq, curated) carries that
/// tenant, every landing and curated row came from one of its tenant's
/// sources, and so does every row the warehouse holds.
async fn check_isolation(env: &Env) {
    let ctx = env.ctx().await;
    let store = ctx.lake.store.as_ref();
    let mut checked = 0;
    for area in ["landing", "curated", "dlq"] {
        let objects =
            logferry_core::storage::list_all(store, &object_store::path::Path::from(area))
                .await
                .unwrap();
        for m in objects
            .iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
        {
            let t = logferry_core::partition::parse_partition(&m.location)
                .tenant
                .unwrap();
            for b in logferry_core::storage::read_parquet(store, &m.location)
                .await
                .unwrap()
            {
                let tenants = b
                    .column_by_name("tenant_id")
                    .unwrap()
                    .as_string::<i32>()
                    .clone();
                for i in 0..b.num_rows() {
                    assert_eq!(tenants.value(i), t, "{}", m.location);
                    checked += 1;
                }
                if area != "dlq" {
                    let sources = b
                        .column_by_name("source")
                        .unwrap()
                        .as_string::<i32>()
                        .clone();
                    for i in 0..b.num_rows() {
                        let s = sources.value(i);
                        assert!(
                            s == format!("logs-{t}") || s.starts_with(&format!("/tenants/{t}/")),
                            "{} holds a record from source {s}",
                            m.location
                        );
                    }
                }
            }
        }
    }
    assert!(checked > 1000);
    // The warehouse holds every tenant in one table: each row must still
    // come from its own tenant's sources.
    let strays = env
        .scalar(
            "SELECT count(*) FROM warehouse WHERE NOT (source = 'logs-' || tenant_id \
             OR starts_with(source, '/tenants/' || tenant_id || '/'))",
        )
        .await;
    assert_eq!(strays, 0);
    assert!(env.scalar("SELECT count(*) FROM warehouse").await > 1000);
}

/// Running any stage again changes nothing: forward finds its own objects,
/// run finds every window up to date, the warehouse holds the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_every_stage_is_idempotent() {
    rerun_idempotent(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_every_stage_is_idempotent_on_emulators() {
    rerun_idempotent(Backend::Emulators).await;
}

async fn rerun_idempotent(backend: Backend) {
    let Some(env) = Env::on(backend, "") else {
        return;
    };
    let w = env.generate(&Env::spec(3000, 7), "input");
    let first = env.forward_both(&w).await;
    env.run().await;
    let before = env.reconcile().await;
    let wh_files = parquet_files(&env.data_dir().join("warehouse"));
    let wh_rows = env.scalar("SELECT count(*) FROM warehouse").await;

    let again = env.forward_both(&w).await;
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(b.landing_files, 0, "re-forwarding wrote landing objects");
        assert_eq!(b.dlq_files, 0, "re-forwarding wrote DLQ objects");
        assert_eq!(b.landing_files_existing, a.landing_files);
        assert_eq!(b.dlq_files_existing, a.dlq_files);
    }
    let run = env.run().await;
    assert_eq!(run.worked(), 0, "{run:?}");
    assert!(
        run.windows
            .iter()
            .all(|w| w.aggregate == "up_to_date" && w.export == "up_to_date")
    );
    let run = env.run().await;
    assert!(run.windows.is_empty(), "a second run found pending windows");
    let after = env.reconcile().await;
    assert_eq!(before.tenants, after.tenants);
    assert!(after.balanced);
    assert_eq!(wh_files, parquet_files(&env.data_dir().join("warehouse")));
    assert_eq!(wh_rows, env.scalar("SELECT count(*) FROM warehouse").await);

    // An explicit window re-run is also a no-op.
    let w0 = logferry_core::partition::Window::parse(&before_window(&env).await).unwrap();
    let r = logferry::pipeline::run(
        &env.ctx().await,
        logferry::pipeline::RunOptions {
            window: Some(w0),
            quiet: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.windows[0].aggregate, "up_to_date");
    assert_eq!(r.windows[0].export, "up_to_date");
    crate::procs::assert_isolated(&env);
}

async fn before_window(env: &Env) -> String {
    logferry::status::status(&env.ctx().await).await.unwrap()[0]
        .window
        .clone()
}

/// New data for an old window redoes exactly that window, and the load
/// replaces the window's partition instead of adding to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_data_redoes_exactly_its_window() {
    let env = Env::new("");
    let w = env.generate(&Env::spec(2000, 3), "first");
    env.forward_both(&w).await;
    let first = env.run().await;
    assert!(first.windows.len() >= 3, "{:?}", first.windows.len());
    let status = logferry::status::status(&env.ctx().await).await.unwrap();
    assert!(
        status
            .iter()
            .all(|s| s.aggregate == "done" && s.export == "loaded")
    );

    // Late records: good ones for the oldest window only.
    let target = &status[0].window;
    let start = chrono::DateTime::parse_from_rfc3339(&format!("{target}:00:00Z"))
        .unwrap()
        .timestamp_millis();
    let mut late = String::new();
    for i in 0..25 {
        late.push_str(&format!(
            "{{\"timestamp\":{},\"level\":\"INFO\",\"service\":\"late-svc\",\"message\":\"late record {i}\",\"stream\":\"logs-tenant-0001\"}}\n",
            start + 1000 * i
        ));
    }
    let path = env.data_dir().join("late.ndjson");
    std::fs::write(&path, late).unwrap();
    let before = env.scalar(&format!(
        "SELECT count(*) FROM warehouse WHERE date_trunc('hour', \"timestamp\") = TIMESTAMP '{target}:00:00Z'"
    ))
    .await;
    env.forward(&path, logferry_forward::Format::Ndjson).await;
    let st = logferry::status::status(&env.ctx().await).await.unwrap();
    let stale: Vec<_> = st
        .iter()
        .filter(|s| s.aggregate != "done")
        .map(|s| s.window.clone())
        .collect();
    assert_eq!(stale, vec![target.clone()]);

    let second = env.run().await;
    let redone: Vec<_> = second
        .windows
        .iter()
        .filter(|w| w.aggregate == "done")
        .map(|w| w.window.clone())
        .collect();
    assert_eq!(redone, vec![target.clone()]);
    let after = env.scalar(&format!(
        "SELECT count(*) FROM warehouse WHERE date_trunc('hour', \"timestamp\") = TIMESTAMP '{target}:00:00Z'"
    ))
    .await;
    assert_eq!(after, before + 25, "the window was not replaced exactly");
    assert_eq!(
        env.scalar("SELECT count(*) FROM warehouse WHERE service = 'late-svc'")
            .await,
        25
    );
    let rec = env.reconcile().await;
    assert!(rec.balanced);
    // Superseded outputs are gone: one curated object per tenant and window.
    let curated = parquet_files(&env.data_dir().join("lake/curated"));
    let distinct: BTreeSet<_> = curated
        .iter()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    assert_eq!(curated.len(), distinct.len());
    crate::procs::assert_isolated(&env);
}

/// The same workload, split into many small objects by a tight memory
/// bound (applied after each chunk of input), lands the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bound_changes_batching_not_results() {
    let a = Env::new("");
    let b = Env::new("[parquet]\nrow_group_rows = 64\n");
    std::fs::write(
        &b.config,
        std::fs::read_to_string(&b.config).unwrap().replace(
            "batch_max_records = 700",
            "batch_max_records = 700\nmax_buffered_bytes = 20000",
        ),
    )
    .unwrap();
    let mut spec = Env::spec(12_000, 11);
    spec.cloudwatch_share = 0.1;
    let (wa, wb) = (a.generate(&spec, "in"), b.generate(&spec, "in"));
    let fa = a.forward_both(&wa).await;
    let fb = b.forward_both(&wb).await;
    let files =
        |f: &[logferry_forward::ForwardReport]| f.iter().map(|r| r.landing_files).sum::<u64>();
    assert!(files(&fb) > files(&fa), "{} vs {}", files(&fb), files(&fa));
    a.run().await;
    b.run().await;
    assert_eq!(a.reconcile().await.tenants, b.reconcile().await.tenants);
    crate::procs::assert_isolated(&a);
    crate::procs::assert_isolated(&b);
}

/// Daily partitions: windows are appended as they complete; late data for
/// an appended window waits for the seal; the seal (forced with --seal, or
/// due once the day is past its lateness allowance) replaces the day with
/// every window's current rows, and runs again only when a window changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_partitions_append_then_seal() {
    let env = Env::new("[warehouse]\npartitioning = \"day\"\nseal_after = \"2h\"\n");
    let w = env.generate(&Env::spec(2000, 13), "first");
    env.forward_both(&w).await;
    let first = env.run().await;
    assert!(
        first.windows.iter().all(|w| w.export == "appended"),
        "{:?}",
        first.windows
    );
    assert!(first.seals.is_empty(), "sealed before the day ended");
    let before = env.reconcile().await;
    assert!(before.balanced);

    // Late records for the first window: exported, but awaiting the seal.
    let status = logferry::status::status(&env.ctx().await).await.unwrap();
    let target = status[0].window.clone();
    let start = chrono::DateTime::parse_from_rfc3339(&format!("{target}:00:00Z"))
        .unwrap()
        .timestamp_millis();
    let late: String = (0..10)
        .map(|i| {
            format!(
                "{{\"timestamp\":{},\"level\":\"INFO\",\"service\":\"late\",\"message\":\"late {i}\",\"stream\":\"logs-tenant-0002\"}}\n",
                start + i
            )
        })
        .collect();
    let path = env.data_dir().join("late.ndjson");
    std::fs::write(&path, late).unwrap();
    env.forward(&path, logferry_forward::Format::Ndjson).await;
    let second = env.run().await;
    assert_eq!(second.windows.len(), 1);
    assert_eq!(second.windows[0].export, "awaiting_seal");
    let st = logferry::status::status(&env.ctx().await).await.unwrap();
    assert_eq!(
        st.iter().find(|s| s.window == target).unwrap().export,
        "awaiting_seal"
    );
    assert!(
        !env.reconcile().await.balanced,
        "the late rows are not loaded yet"
    );

    // The seal replaces the day with every window's current objects.
    let sealed = logferry::pipeline::run(
        &env.ctx().await,
        logferry::pipeline::RunOptions {
            seal: true,
            quiet: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(sealed.seals.len(), 1);
    let rec = env.reconcile().await;
    assert!(rec.balanced, "{rec:?}");
    assert_eq!(rec.totals.loaded, before.totals.loaded + 10);
    assert_eq!(
        env.scalar("SELECT count(*) FROM warehouse WHERE service = 'late'")
            .await,
        10
    );
    let st = logferry::status::status(&env.ctx().await).await.unwrap();
    assert!(st.iter().all(|s| s.export == "sealed"), "{st:?}");
    // Nothing changed: no second seal, even when due by the clock.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(NOW, "2026-01-16T03:00:00Z");
    std::fs::write(&env.config, text).unwrap();
    let again = env.run().await;
    assert!(again.seals.is_empty());
    assert_eq!(env.reconcile().await.tenants, rec.tenants);
    crate::procs::assert_isolated(&env);
}
