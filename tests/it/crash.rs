//! Crash at every step: for each named crash point, the pipeline runs as real
//! processes until one dies there (`LOGFERRY_CRASH_AT`, an abort: no
//! destructors, no flushes), then runs again to completion; the warehouse
//! must then hold exactly the rows of a run that never crashed (nothing
//! missing, nothing twice), the DLQ the same entries, and `reconcile` must
//! balance with the same counts. The walk fails when a point is never
//! reached, so the list of points cannot rot. Only in `failpoints` builds.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;

use logferry_core::failpoint::POINTS;
use logferry_forward::workload::Expected;

use crate::common::*;
use crate::procs::*;

/// Runs `steps`; with `crash_at`, steps run with the crash point armed
/// until one dies there, which is then run again, unarmed, as are the
/// rest. Returns whether the point was reached.
fn walk(env: &Env, steps: &[Step], crash_at: Option<&str>) -> bool {
    let mut crashed = false;
    for step in steps {
        if let Some(point) = crash_at.filter(|_| !crashed) {
            let out = logferry(env, step)
                .env("LOGFERRY_CRASH_AT", point)
                .output()
                .unwrap();
            if out.status.success() {
                continue;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.signal() == Some(6) && stderr.contains(&format!("crashing at {point}")),
                "logferry {step:?} with {point} armed failed otherwise ({}):\n{stderr}",
                out.status
            );
            crashed = true;
        }
        step_ok(env, step);
    }
    crashed
}

/// Where and how a walk runs.
struct Walk {
    name: &'static str,
    backend: Backend,
    /// Config appended to the environment's.
    extra: String,
    /// `[[tenant]]` tables.
    tenants: String,
    /// The pipeline, as CLI invocations (input paths are absolute).
    steps: Vec<Step>,
    /// Points this walk cannot reach, with the reason.
    unreachable: BTreeMap<&'static str, &'static str>,
}

impl Walk {
    fn env(&self) -> Env {
        Env::with_tenants(self.backend, &self.extra, &self.tenants).unwrap()
    }

    /// Walks every reachable point, two at a time; returns the points
    /// reached. Each walk ends exactly as the walk that never crashed.
    fn run(&self) -> BTreeSet<&'static str> {
        let t0 = std::time::Instant::now();
        let clean = self.env();
        assert!(!walk(&clean, &self.steps, None));
        let want = outcome(&clean);
        assert!(!want.rows.is_empty());
        let distinct: BTreeSet<&String> = want.rows.iter().collect();
        assert_eq!(distinct.len(), want.rows.len(), "a clean run loaded twice");

        let todo: Vec<&'static str> = POINTS
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !self.unreachable.contains_key(p))
            .collect();
        let next = Mutex::new(todo.clone().into_iter());
        let reached = Mutex::new(BTreeSet::new());
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    loop {
                        let Some(point) = next.lock().unwrap().next() else {
                            return;
                        };
                        let env = self.env();
                        if walk(&env, &self.steps, Some(point)) {
                            reached.lock().unwrap().insert(point);
                        }
                        let got = outcome(&env);
                        assert_eq!(
                            got.rows.len(),
                            want.rows.len(),
                            "{}: after a crash at {point}: rows",
                            self.name
                        );
                        assert!(
                            got == want,
                            "{}: after a crash at {point} the pipeline ended otherwise:\n{}",
                            self.name,
                            differences(&got, &want)
                        );
                        assert_isolated(&env);
                        // Nothing is left half done: another run finds no work.
                        let again = step_ok(&env, &strings(&["run"]));
                        assert!(
                            again.contains("Nothing to do"),
                            "{}: after {point}: {again}",
                            self.name
                        );
                    }
                });
            }
        });
        let reached = reached.into_inner().unwrap();
        let missed: Vec<_> = todo.iter().filter(|p| !reached.contains(*p)).collect();
        assert!(
            missed.is_empty(),
            "{}: crash points never reached: {missed:?}",
            self.name
        );
        eprintln!(
            "{}: {} of {} crash points walked and survived in {:.1} s",
            self.name,
            reached.len(),
            POINTS.len(),
            t0.elapsed().as_secs_f64()
        );
        reached
    }
}

/// What differs between two outcomes, for people.
fn differences(got: &Outcome, want: &Outcome) -> String {
    let g: BTreeSet<&String> = got.rows.iter().collect();
    let w: BTreeSet<&String> = want.rows.iter().collect();
    let short = |r: &&String| r.chars().take(120).collect::<String>();
    let extra: Vec<String> = g.difference(&w).take(5).map(short).collect();
    let missing: Vec<String> = w.difference(&g).take(5).map(short).collect();
    let dlq_g: BTreeSet<&str> = got.dlq.lines().collect();
    let dlq_w: BTreeSet<&str> = want.dlq.lines().collect();
    format!(
        "rows {} vs {}; extra {extra:?}; missing {missing:?}\n\
         dlq only got {:?}\ndlq only want {:?}\ntenants got {}\ntenants want {}",
        got.rows.len(),
        want.rows.len(),
        dlq_g.difference(&dlq_w).collect::<Vec<_>>(),
        dlq_w.difference(&dlq_g).collect::<Vec<_>>(),
        got.tenants,
        want.tenants
    )
}

/// Points no walk on the embedded backends reaches.
fn embedded_unreachable() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            "kinesis.after_landing_put",
            "no Kinesis on the embedded default",
        ),
        (
            "kinesis.after_checkpoint",
            "no Kinesis on the embedded default",
        ),
        (
            "export.after_submit",
            "the local warehouse has no load jobs",
        ),
        (
            "export.while_polling",
            "the local warehouse has no load jobs",
        ),
    ])
}

/// The embedded pipeline: both files forwarded with a micro-batch pass
/// after each (the open windows get increments, the others their full
/// runs), a full run (the increments replaced), a reload backfill of the
/// day and a DLQ replay.
fn embedded_steps(w: &logferry_forward::workload::Workload, last_run: &[&str]) -> Vec<Step> {
    let f = forward_steps(w);
    vec![
        f[0].clone(),
        strings(&["run", "--micro-batch"]),
        f[1].clone(),
        strings(&["run", "--micro-batch"]),
        strings(last_run),
        strings(&[
            "backfill",
            "--reload",
            "--from",
            "2026-01-15",
            "--to",
            "2026-01-15",
        ]),
        strings(&["dlq", "replay"]),
    ]
}

/// Every crash point on the embedded backends, hourly partitions (each
/// window replaces its partition) and daily ones (appended, then sealed);
/// plus the emulator walk's points, which together must cover them all.
#[test]
fn every_crash_point_is_survived_on_the_embedded_backends() {
    let inputs = tempfile::tempdir().unwrap();
    let w = workload(inputs.path());
    let tenants = logferry_forward::workload::tenants_toml(TENANTS);
    let steps = embedded_steps(&w, &["run"]);
    let mut hourly = embedded_unreachable();
    hourly.insert("seal.after_load", "hourly partitions are never sealed");
    let hour = Walk {
        name: "embedded, hourly partitions",
        backend: Backend::Embedded,
        extra: String::new(),
        tenants: tenants.clone(),
        steps: steps.clone(),
        unreachable: hourly,
    };
    let mut reached = hour.run();

    let day = Walk {
        name: "embedded, daily partitions sealed",
        backend: Backend::Embedded,
        extra: "[warehouse]\npartitioning = \"day\"\n".into(),
        tenants,
        steps: embedded_steps(&w, &["run", "--seal"]),
        unreachable: embedded_unreachable(),
    };
    reached.extend(day.run());

    // The clean outcome is the labelled one.
    let env = Env::new("");
    walk(&env, &steps, None);
    let expected = Expected::from_labels(&labels(&w));
    let got = outcome(&env).tenants;
    for (t, c) in &expected.tenants {
        let g = &got[t];
        assert_eq!(
            (
                g["received"].as_u64(),
                g["loaded"].as_u64(),
                g["dead_lettered"].as_u64(),
                g["duplicates"].as_u64()
            ),
            (
                Some(c.received),
                Some(c.loaded),
                Some(c.dead_lettered),
                Some(c.duplicates)
            ),
            "{t}"
        );
    }

    // Every point is reached somewhere: here, or on the emulators.
    let all: BTreeSet<&str> = POINTS.iter().map(|(p, _)| *p).collect();
    let emulator_only: BTreeSet<&str> = embedded_unreachable().keys().copied().collect();
    let covered: BTreeSet<&str> = reached.union(&emulator_only).copied().collect();
    assert_eq!(covered, all, "points no walk reaches");
}

/// Every crash point the real-service paths have, on the emulators: files
/// and Kinesis forwarded to S3, micro-batches appended, run, exported to
/// GCS and loaded into BigQuery with load jobs.
#[test]
fn every_crash_point_is_survived_on_the_emulators() {
    if emulators().is_none() {
        return;
    }
    let inputs = tempfile::tempdir().unwrap();
    let w = workload(inputs.path());
    let (tenants, mut steps) = kinesis_pipeline("crash", &w);
    let last = steps.pop().unwrap();
    steps.push(strings(&["run", "--micro-batch"]));
    steps.push(last);
    let walk = Walk {
        name: "emulators (S3, Kinesis, GCS, BigQuery)",
        backend: Backend::Emulators,
        extra: String::new(),
        tenants,
        steps,
        unreachable: BTreeMap::from([
            (
                "warehouse.after_files",
                "the local warehouse's point; BigQuery loads by job",
            ),
            (
                "warehouse.after_commit",
                "the local warehouse's point; BigQuery loads by job",
            ),
            (
                "seal.after_load",
                "bqemulator has no partition decorators (docs/emulators.md)",
            ),
            ("backfill.after_load", "walked on the embedded backends"),
            ("dlq.before_superseded", "walked on the embedded backends"),
        ]),
    };
    let reached = walk.run();
    assert!(reached.contains("kinesis.after_checkpoint"));
    assert!(reached.contains("export.while_polling"));
    assert!(reached.contains("increment.after_append"));
}
