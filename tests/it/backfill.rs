//! Backfills: a changed rule recomputed over a range (for every tenant, or
//! some), an ad-hoc query loaded into a table of its own, a lost partition
//! loaded again; each resumable (the second run finds everything done) and
//! planned first. The crash walk (`crash.rs`) kills a backfill between a
//! partition's load and its done marker.

use std::path::Path;

use crate::common::*;
use crate::procs::*;

/// A copy of the repository's `sql/` to change.
fn sql_copy(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql");
    let dst = dir.join("sql");
    for sub in ["", "rules", "rollups"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "sql") {
                std::fs::copy(e.path(), dst.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    dst
}

fn json(env: &Env, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&step_ok(env, &strings(args))).unwrap()
}

fn count(env: &Env, q: &str) -> u64 {
    let out = step_ok(env, &strings(&["sql", "--format", "csv", q]));
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

const RANGE: [&str; 4] = ["--from", "2026-01-15", "--to", "2026-01-15"];

#[test]
fn a_changed_rule_is_backfilled_over_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let sql = sql_copy(dir.path());
    let env = Env::new(&format!("[aggregate]\nsql_dir = \"{}\"\n", sql.display()));
    let w = workload(env.data_dir());
    for s in forward_steps(&w) {
        step_ok(&env, &s);
    }
    step_ok(&env, &strings(&["run"]));
    let debug = count(&env, "SELECT count(*) FROM warehouse WHERE level = 'DEBUG'");
    assert!(debug > 0);
    let windows = count(
        &env,
        "SELECT count(DISTINCT date_trunc('hour', \"timestamp\")) FROM warehouse",
    );

    // The rule changes: DEBUG is no longer a level.
    let rule = sql.join("rules/invalid_level.sql");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(&rule, text.replace("'DEBUG', ", "")).unwrap();

    let mut plan_args = vec!["backfill", "--plan", "--json"];
    plan_args.extend(RANGE);
    let plan = json(&env, &plan_args);
    assert_eq!(plan["partitions"], windows, "{plan:#}");
    assert_eq!(plan["jobs_per_table"]["log_records"], windows);
    assert_eq!(plan["complete"], false);

    let mut args = vec!["backfill", "--json"];
    args.extend(RANGE);
    let r = json(&env, &args);
    assert_eq!(r["complete"], true, "{r:#}");
    assert_eq!(r["done"].as_array().unwrap().len() as u64, windows);
    assert_eq!(
        count(&env, "SELECT count(*) FROM warehouse WHERE level = 'DEBUG'"),
        0
    );
    let refused = count(
        &env,
        "SELECT count(*) FROM dlq WHERE reason = 'invalid_level' AND detail LIKE 'level DEBUG%'",
    );
    assert_eq!(refused, debug);
    // Resumable: the same backfill again finds every partition done.
    let again = json(&env, &args);
    assert!(all_skipped(&again), "{again:#}");
    let o = outcome(&env);
    assert!(!o.rows.is_empty());

    // Another change, for one tenant only: WARN is refused for tenant-0001,
    // every other tenant keeps its WARN records.
    let warn_before = count(
        &env,
        "SELECT count(*) FROM warehouse WHERE level = 'WARN' AND tenant_id <> 'tenant-0001'",
    );
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(&rule, text.replace("'WARN', ", "")).unwrap();
    let mut one = vec!["backfill", "--tenant", "tenant-0001", "--json"];
    one.extend(RANGE);
    let r = json(&env, &one);
    assert_eq!(r["complete"], true, "{r:#}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM warehouse WHERE level = 'WARN' AND tenant_id = 'tenant-0001'"
        ),
        0
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM warehouse WHERE level = 'WARN' AND tenant_id <> 'tenant-0001'"
        ),
        warn_before
    );
    outcome(&env);
    assert_isolated(&env);
}

#[test]
fn an_ad_hoc_query_is_backfilled_into_its_own_table() {
    let env = Env::new("");
    let w = workload(env.data_dir());
    for s in forward_steps(&w) {
        step_ok(&env, &s);
    }
    step_ok(&env, &strings(&["run"]));
    let q = env.data_dir().join("per_service.sql");
    std::fs::write(
        &q,
        "SELECT tenant_id, service, date_trunc('hour', \"timestamp\") AS hour, count(*) AS records \
         FROM curated GROUP BY 1, 2, 3",
    )
    .unwrap();
    let mut args = vec![
        "backfill",
        "--sql",
        q.to_str().unwrap(),
        "--table",
        "per_service_hourly",
        "--json",
    ];
    args.extend(RANGE);
    let r = json(&env, &args);
    assert_eq!(r["complete"], true, "{r:#}");
    let total = count(&env, "SELECT count(*) FROM warehouse");
    assert_eq!(
        count(
            &env,
            "SELECT CAST(sum(records) AS BIGINT) FROM warehouse_per_service_hourly"
        ),
        total
    );
    // Again: nothing loaded twice.
    let again = json(&env, &args);
    assert!(all_skipped(&again), "{again:#}");
    assert_eq!(
        count(
            &env,
            "SELECT CAST(sum(records) AS BIGINT) FROM warehouse_per_service_hourly"
        ),
        total
    );
}

/// A pipeline run to its end that then loses an hour of log_records;
/// returns what it held before.
fn lose_an_hour(env: &Env) -> Outcome {
    let w = workload(env.data_dir());
    for s in forward_steps(&w) {
        step_ok(env, &s);
    }
    step_ok(env, &strings(&["run"]));
    let want = outcome(env);
    let meta = env
        .data_dir()
        .join("warehouse/_meta/tables/log_records/hour=2026-01-15T10");
    assert!(meta.is_dir());
    std::fs::remove_dir_all(&meta).unwrap();
    let lost = logferry(env, &strings(&["reconcile"])).output().unwrap();
    assert!(!lost.status.success(), "the lost hour shows as not loaded");
    want
}

#[test]
fn a_lost_partition_is_loaded_again() {
    let env = Env::new("");
    let want = lose_an_hour(&env);
    let mut args = vec!["backfill", "--reload", "--json"];
    args.extend(RANGE);
    let r = json(&env, &args);
    assert_eq!(r["complete"], true, "{r:#}");
    let jobs: u64 = r["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["jobs"].as_u64().unwrap())
        .sum();
    assert!(
        jobs >= 4,
        "every partition of the range was loaded again: {r:#}"
    );
    assert_eq!(outcome(&env), want);
}

/// A queued backfill is the backfill job's (the daemon's `backfills`
/// schedule), run to its end and then taken off the queue.
#[test]
fn a_queued_backfill_runs_in_the_backfill_job() {
    let env = Env::new("");
    let want = lose_an_hour(&env);
    let mut args = vec!["backfill", "--reload", "--queue", "--json"];
    args.extend(RANGE);
    let queued = json(&env, &args);
    assert!(queued["queued"].is_string(), "{queued:#}");
    let lost = logferry(&env, &strings(&["reconcile"])).output().unwrap();
    assert!(!lost.status.success(), "queued, not run");
    let job = json(&env, &["job", "backfills", "--json"]);
    assert_eq!(job["backfills"][0]["id"], queued["queued"], "{job:#}");
    assert_eq!(job["backfills"][0]["complete"], true, "{job:#}");
    assert_eq!(outcome(&env), want);
    let job = json(&env, &["job", "backfills", "--json"]);
    assert_eq!(job["backfills"], serde_json::json!([]), "{job:#}");
}

/// True when a backfill report found every partition done already.
fn all_skipped(report: &serde_json::Value) -> bool {
    report["done"]
        .as_array()
        .is_some_and(|d| d.iter().all(|p| p["state"] == "skipped"))
}
