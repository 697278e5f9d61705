//! Runs over many windows: failures kept to their window (recorded,
//! retried with backoff, given up on, never blocking the others), and
//! micro-batches that cost what is new (increments deduplicated against
//! the window's keys, appended, then replaced by the window's full run).

use std::collections::BTreeSet;

use logferry::pipeline::{Mode, RunOptions};
use logferry_core::partition::Window;

use crate::common::*;
use crate::procs::*;

/// Every file under a directory, recursively.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn run_opts(mode: Mode) -> RunOptions {
    RunOptions {
        mode,
        quiet: true,
        ..Default::default()
    }
}

/// A window whose landing object is corrupt fails alone: the run loads
/// every other window, records the failure with its error, attempts and
/// next attempt, and exits 1 naming it; later runs skip it until its
/// backoff passes, give up on it after run.max_attempts, and load it once
/// it is fixed (`--retry-failed`).
#[test]
fn a_poisoned_window_fails_alone() {
    let env = Env::new("[run]\nmax_attempts = 2\nretry_backoff = \"1h\"\n");
    let w = workload(env.data_dir());
    for s in forward_steps(&w) {
        step_ok(&env, &s);
    }
    // Poison one landing object of one window.
    let landing = parquet_files(&env.data_dir().join("lake/landing"));
    let victim = landing
        .iter()
        .find(|p| p.to_string_lossy().contains("hour=10"))
        .unwrap()
        .clone();
    let good = std::fs::read(&victim).unwrap();
    std::fs::write(
        &victim,
        b"this is not parquet, it is a poisoned landing object",
    )
    .unwrap();
    let poisoned = "2026-01-15T10";

    let out = logferry(&env, &strings(&["run", "--json"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the run must say it failed");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failures = r["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{r:#}");
    assert_eq!(failures[0]["subject"], format!("window {poisoned}"));
    assert_eq!(failures[0]["kind"], "bad_input", "{r:#}");
    assert_eq!(failures[0]["attempts"], 1);
    assert!(failures[0]["next_attempt_at"].is_string());
    let loaded: BTreeSet<&str> = r["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["export"] == "loaded")
        .map(|w| w["window"].as_str().unwrap())
        .collect();
    assert!(loaded.len() >= 3, "the other windows load: {loaded:?}");
    assert!(!loaded.contains(poisoned));

    // Within its backoff it is not tried: the run has nothing to do.
    let again = step_ok(&env, &strings(&["run", "--json"]));
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["windows"][0]["aggregate"], "waiting", "{again:#}");
    let status = step_ok(&env, &strings(&["status", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let st = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["window"] == poisoned)
        .unwrap();
    assert_eq!(st["health"], "retrying", "{st:#}");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("parquet"),
        "{st:#}"
    );

    // The second failure is the last: given up on, shown as failed.
    let out = logferry(&env, &strings(&["run", "--retry-failed"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let status = step_ok(&env, &strings(&["status", "--json"]));
    assert!(status.contains("\"health\": \"failed\""), "{status}");
    let out = logferry(&env, &strings(&["run"])).output().unwrap();
    assert!(
        out.status.success(),
        "a window given up on does not fail every run"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("given up on earlier"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Fixed, and asked for: it loads, and the failure is cleared.
    std::fs::write(&victim, good).unwrap();
    step_ok(&env, &strings(&["run", "--retry-failed"]));
    let status = step_ok(&env, &strings(&["status", "--json"]));
    assert!(!status.contains("\"retrying\"") && !status.contains("\"health\": \"failed\""));
    let rec = outcome(&env);
    assert!(!rec.rows.is_empty());
    assert_isolated(&env);
}

/// Micro-batches: open windows (within warehouse.seal_after of the clock)
/// get increments that read only the landing objects no run has read,
/// drop every record the window already holds (exact redeliveries across
/// increments), and append; windows past their allowance load whole. The
/// warehouse then holds exactly what a full run of everything holds, and
/// the window's full run replaces the increments with the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micro_batches_append_what_is_new_exactly_once() {
    let env = Env::new("");
    let full = Env::new("");
    let mut spec = Env::spec(2000, 5);
    spec.duplicate_fraction = 0.0;
    let first = env.generate(&spec, "first");
    // The second input repeats a fifth of the first's lines (exact
    // redeliveries of records the open windows hold already) and adds new
    // ones.
    let mut spec2 = Env::spec(1500, 6);
    spec2.duplicate_fraction = 0.0;
    let second = env.generate(&spec2, "second");
    let repeated: Vec<u8> = std::fs::read(&first.ndjson)
        .unwrap()
        .split(|&b| b == b'\n')
        .step_by(5)
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect();
    let again = env.data_dir().join("again.ndjson");
    std::fs::write(&again, &repeated).unwrap();

    for e in [&env, &full] {
        e.forward_both(&first).await;
    }
    let ctx = env.ctx().await;
    let r1 = logferry::pipeline::run(&ctx, run_opts(Mode::MicroBatch))
        .await
        .unwrap();
    let open: BTreeSet<String> = r1
        .windows
        .iter()
        .filter(|w| w.aggregate == "increment")
        .map(|w| w.window.clone())
        .collect();
    // Event times span the three hours before the clock (12:00); with a
    // two-hour allowance the windows of 10:00 and 11:00 are open.
    assert_eq!(
        open,
        BTreeSet::from(["2026-01-15T10".to_string(), "2026-01-15T11".to_string()]),
        "{:#?}",
        r1.windows
    );
    assert!(
        r1.windows
            .iter()
            .any(|w| w.aggregate == "done" && w.export == "loaded")
    );
    for w in r1.windows.iter().filter(|w| w.aggregate == "increment") {
        assert_eq!((w.export.as_str(), w.increment), ("appended", Some(1)));
    }

    for e in [&env, &full] {
        e.forward_both(&second).await;
        e.forward(&again, logferry_forward::Format::Ndjson).await;
    }
    let r2 = logferry::pipeline::run(&ctx, run_opts(Mode::MicroBatch))
        .await
        .unwrap();
    let incs: Vec<_> = r2
        .windows
        .iter()
        .filter(|w| w.aggregate == "increment")
        .collect();
    assert_eq!(incs.len(), 2, "{:#?}", r2.windows);
    for w in &incs {
        assert_eq!(w.increment, Some(2));
        let dups: u64 = w.counts.values().map(|c| c.duplicates).sum();
        assert!(
            dups > 0,
            "the repeated lines are duplicates of increment 1: {w:#?}"
        );
    }
    // A micro-batch with nothing new costs nothing.
    let r3 = logferry::pipeline::run(&ctx, run_opts(Mode::MicroBatch))
        .await
        .unwrap();
    assert_eq!(r3.worked(), 0, "{:#?}", r3.windows);

    // What the warehouse holds equals a full run of everything.
    full.run().await;
    let rows = |e: &Env| outcome(e);
    let (got, want) = (rows(&env), rows(&full));
    assert_eq!(got.rows.len(), want.rows.len());
    assert_eq!(got, want);
    let status = logferry::status::status(&ctx).await.unwrap();
    for s in status.iter().filter(|s| open.contains(&s.window)) {
        assert_eq!(
            (s.aggregate.as_str(), s.export.as_str(), s.increments),
            ("open", "appended", 2),
            "{s:?}"
        );
    }

    // The full run replaces the increments with the same rows, and removes
    // them.
    let r4 = env.run().await;
    let replaced: BTreeSet<String> = r4
        .windows
        .iter()
        .filter(|w| w.aggregate == "done")
        .map(|w| w.window.clone())
        .collect();
    assert_eq!(replaced, open);
    assert_eq!(rows(&env), want);
    let leftover: Vec<_> = walk_files(&env.data_dir().join("lake/_state/windows"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/increments/"))
        .collect();
    assert!(
        leftover.is_empty(),
        "the replaced chains' documents are gone: {leftover:?}"
    );
    let curated = parquet_files(&env.data_dir().join("lake/curated"));
    let dirs: BTreeSet<_> = curated
        .iter()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    assert_eq!(
        curated.len(),
        dirs.len(),
        "one curated object per tenant and window"
    );
    let status = logferry::status::status(&ctx).await.unwrap();
    assert!(
        status
            .iter()
            .all(|s| s.aggregate == "done" && s.increments == 0)
    );
    assert_isolated(&env);
}

/// A window past its allowance is not given increments: a micro-batch
/// loads it whole, like `run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_windows_load_whole_in_a_micro_batch() {
    let env = Env::new("[warehouse]\nseal_after = \"0s\"\n");
    let w = env.generate(&Env::spec(800, 9), "in");
    env.forward_both(&w).await;
    let r = logferry::pipeline::run(&env.ctx().await, run_opts(Mode::MicroBatch))
        .await
        .unwrap();
    assert!(!r.windows.is_empty());
    assert!(
        r.windows
            .iter()
            .all(|w| w.aggregate == "done" && w.export == "loaded"),
        "{:#?}",
        r.windows
    );
    assert!(env.reconcile().await.balanced);
    let _ = Window::parse("2026-01-15T10").unwrap();
}
