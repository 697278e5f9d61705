//! Concurrent runners, as real processes: two `logferry run` on the same
//! windows, and two forwarders on the same Kinesis shards. A lease in the
//! ledger (a conditional create, with an expiry) lets exactly one do each
//! piece of work; the other reports it and exits 0, or waits (`--wait`).
//! One runner is held inside its lease (`LOGFERRY_PAUSE_AT`) so that the
//! two always meet.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::procs::*;

fn spawn(env: &Env, args: &[&str], pause: Option<&str>) -> Child {
    let mut c = logferry(env, &strings(args));
    if let Some(p) = pause {
        c.env("LOGFERRY_PAUSE_AT", p);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until some lease under `prefix` is held.
fn await_lease(env: &Env, prefix: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = env.ctx().await;
        let ledger = logferry_core::ledger::Ledger::new(ctx.lake.store.clone(), "_state");
        let t0 = Instant::now();
        loop {
            // Listed are the keys' versions: `<key>/<version>`.
            for version in ledger.list(prefix).await.unwrap() {
                let key = version
                    .rsplit_once('/')
                    .map_or(version.as_str(), |(k, _)| k);
                if ledger.lease_holder(key).await.unwrap().is_some() {
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no lease under {prefix}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Window states of a `run --json` report.
fn states(report: &serde_json::Value) -> BTreeMap<String, String> {
    report["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["window"].as_str().unwrap().to_string(),
                w["aggregate"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn concurrent_runs(backend: Backend, wait: bool) {
    let Some(env) = Env::on(backend, "") else {
        return;
    };
    let clean = Env::on(backend, "").unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let w = workload(inputs.path());
    for s in forward_steps(&w) {
        step_ok(&env, &s);
        step_ok(&clean, &s);
    }
    step_ok(&clean, &strings(&["run"]));
    let want = outcome(&clean);

    // A holds its first window for 8 s, after its outputs, before commit.
    let a = spawn(
        &env,
        &["run", "--json"],
        Some("aggregate.after_outputs:8000"),
    );
    await_lease(&env, "leases/windows");
    let t0 = Instant::now();
    let b = if wait {
        spawn(&env, &["run", "--json", "--wait"], None)
    } else {
        spawn(&env, &["run", "--json"], None)
    };
    let (b, a) = (finish(b), finish(a));
    let (sa, sb) = (states(&a), states(&b));
    // Every window was done exactly once, by one of them.
    for win in sa.keys().chain(sb.keys()) {
        let done = [&sa, &sb]
            .iter()
            .filter(|s| s.get(win).map(String::as_str) == Some("done"))
            .count();
        assert_eq!(done, 1, "window {win}: A {sa:?}, B {sb:?}");
    }
    let busy: Vec<_> = sb.iter().filter(|(_, s)| *s == "busy").collect();
    if wait {
        // B waited for A's window instead of leaving it: none left busy,
        // and it found that window done.
        assert!(busy.is_empty(), "{sb:?}");
        assert!(sb.values().any(|s| s == "up_to_date"), "{sb:?}");
        assert!(t0.elapsed() > Duration::from_secs(2));
    } else {
        // B left A's window to it and said so.
        assert!(!busy.is_empty(), "B met no busy window: {sb:?}");
        assert!(
            busy.iter()
                .all(|(w, _)| sa.get(*w).map(String::as_str) == Some("done"))
        );
    }
    let again = step_ok(&env, &strings(&["run"]));
    assert!(again.contains("Nothing to do"), "{again}");
    assert_eq!(outcome(&env), want);
    assert_isolated(&env);
}

#[test]
fn two_runs_at_once_do_each_window_once() {
    concurrent_runs(Backend::Embedded, false);
}

#[test]
fn two_runs_at_once_the_second_waiting() {
    concurrent_runs(Backend::Embedded, true);
}

#[test]
fn two_runs_at_once_do_each_window_once_on_emulators() {
    concurrent_runs(Backend::Emulators, false);
}

/// Two forwarders on the same shards: each shard is read by one of them;
/// the other reports it busy. Nothing is landed twice or lost.
#[test]
fn two_forwarders_on_the_same_shards() {
    if emulators().is_none() {
        return;
    }
    let prefix = unique("pair");
    let streams = [format!("{prefix}-0"), format!("{prefix}-1")];
    let tenants = format!(
        "[[tenant]]\nid = \"tenant-0000\"\nstreams = [\"{}\"]\nlog_groups = [\"/tenants/tenant-0000/\"]\n\n\
         [[tenant]]\nid = \"tenant-0001\"\nstreams = [\"{}\"]\nlog_groups = [\"/tenants/tenant-0001/\"]\n",
        streams[0], streams[1]
    );
    let env = Env::with_tenants(Backend::Emulators, "", &tenants).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let k = kinesis(&env).await;
        create_streams(&k, &streams).await;
        put_records(
            &k,
            &streams[0],
            kinesis_payloads("tenant-0000", "tenant-0001", NOW_MS - 600_000),
        )
        .await;
        put_records(
            &k,
            &streams[1],
            kinesis_payloads("tenant-0001", "tenant-0000", NOW_MS - 600_000),
        )
        .await;
    });
    // A holds a shard for 8 s after landing its first object.
    let a = spawn(
        &env,
        &["forward", "--kinesis", "--once", "--json"],
        Some("kinesis.after_landing_put:8000"),
    );
    await_lease(&env, "leases/shards");
    let b = spawn(&env, &["forward", "--kinesis", "--once", "--json"], None);
    let (b, a) = (finish(b), finish(a));
    let read = |r: &serde_json::Value| -> BTreeMap<String, u64> {
        r["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    format!(
                        "{}/{}",
                        s["stream"].as_str().unwrap(),
                        s["shard"].as_str().unwrap()
                    ),
                    s["kinesis_records"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let (ra, rb) = (read(&a), read(&b));
    let busy_b: Vec<String> = b["busy_shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(!busy_b.is_empty(), "B met no busy shard: {b}");
    for s in &busy_b {
        assert!(
            ra.get(s).is_some_and(|n| *n > 0),
            "{s} busy for B, not read by A: {a}"
        );
    }
    // Each record was read once: by one forwarder or the other.
    let total: u64 = ra.values().chain(rb.values()).sum();
    // 46 Kinesis records per stream (43 lines, 3 envelopes).
    assert_eq!(total, 2 * 46, "A {ra:?}, B {rb:?}");
    for (s, n) in &rb {
        assert!(
            *n == 0 || ra.get(s).is_none_or(|m| *m == 0),
            "{s} read by both"
        );
    }
    step_ok(&env, &strings(&["run"]));
    let rec = outcome(&env).tenants;
    for t in ["tenant-0000", "tenant-0001"] {
        assert_eq!(rec[t]["received"], 54, "{rec}");
        assert_eq!(rec[t]["loaded"], 45, "{rec}");
        assert_eq!(rec[t]["duplicates"], 5, "{rec}");
    }
    assert_isolated(&env);
}
