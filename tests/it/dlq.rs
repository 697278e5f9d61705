//! DLQ replay, round trip: a tenant missing from the configuration has its
//! records refused (`unknown_tenant`); once it is added, `dlq replay`
//! decodes them again and a run loads them, and the pipeline then holds
//! exactly what it would have held had the tenant been there from the
//! start: every item counted once, as loaded or dead-lettered with its
//! current reason.

use crate::common::*;
use crate::procs::*;

fn replay_round_trip(backend: Backend) {
    // The emulator has no partition decorators, so it cannot replace a
    // partition: there every window stays open (a long allowance) and the
    // runs append increments.
    let (run, vars): (Vec<String>, Vec<(String, String)>) = match backend {
        Backend::Embedded => (strings(&["run"]), vec![]),
        Backend::Emulators => (
            strings(&["run", "--micro-batch"]),
            vec![("LOGFERRY__WAREHOUSE__SEAL_AFTER".into(), "48h".into())],
        ),
    };
    let all = logferry_forward::workload::tenants_toml(TENANTS);
    // The last tenant's [[tenant]] table, left out at first.
    let cut = all.rfind("[[tenant]]").unwrap();
    let (without, last) = all.split_at(cut);
    let Some(mut env) = Env::with_tenants(backend, "", without) else {
        return;
    };
    env.vars = vars.clone();
    let inputs = tempfile::tempdir().unwrap();
    let w = workload(inputs.path());
    for s in forward_steps(&w) {
        step_ok(&env, &s);
    }
    step_ok(&env, &run);
    let ls = step_ok(
        &env,
        &strings(&["dlq", "ls", "--reason", "unknown_tenant", "--json"]),
    );
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let refused: u64 = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert!(refused > 0, "{ls:#}");

    // The tenant is added; its refusals are replayed; a run loads them.
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("{config}\n{last}")).unwrap();
    let r = step_ok(
        &env,
        &strings(&["dlq", "replay", "--reason", "unknown_tenant", "--json"]),
    );
    let r: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert!(r["landed"].as_u64().unwrap() > 0, "{r:#}");
    // Replaying again finds nothing left to do for them: every item is
    // counted once.
    let again = step_ok(
        &env,
        &strings(&["dlq", "replay", "--reason", "unknown_tenant", "--json"]),
    );
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["landed"], 0, "{again:#}");
    step_ok(&env, &run);

    // As if the tenant had been configured from the start.
    let Some(mut clean) = Env::with_tenants(backend, "", &all) else {
        return;
    };
    clean.vars = vars;
    for s in forward_steps(&w) {
        step_ok(&clean, &s);
    }
    step_ok(&clean, &run);
    let (got, want) = (outcome(&env), outcome(&clean));
    assert_eq!(got.tenants, want.tenants);
    assert_eq!(got.dlq, want.dlq);
    assert_eq!(got.rows.len(), want.rows.len());
    assert_eq!(got, want);
    assert_isolated(&env);
}

#[test]
fn dlq_replay_round_trip() {
    replay_round_trip(Backend::Embedded);
}

#[test]
fn dlq_replay_round_trip_on_emulators() {
    replay_round_trip(Backend::Emulators);
}

/// Rule violations are not replayed: their window's backfill recomputes
/// them.
#[test]
fn aggregate_refusals_are_left_to_backfills() {
    let env = Env::new("");
    let out = logferry(&env, &strings(&["dlq", "replay", "--stage", "aggregate"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("logferry backfill"));
}
