//! The pipeline as real processes: the `logferry` binary run step by step
//! on a test environment, and what a finished pipeline holds, as the CLI
//! reports it (the crash and fault walks compare these).

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// One pipeline invocation: the arguments after `logferry`.
pub type Step = Vec<String>;

/// The binary, with this environment's config and data dir and nothing
/// inherited that would change what it does.
pub fn logferry(env: &Env, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logferry"));
    c.env_remove("LOGFERRY_CONFIG")
        .env_remove("LOGFERRY_CRASH_AT")
        .env_remove("LOGFERRY_FAULT_RATE")
        .env_remove("LOGFERRY_FAULT_AFTER")
        .env("LOGFERRY_LOG", "warn")
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .args(args)
        .arg("--config")
        .arg(&env.config)
        .arg("--data-dir")
        .arg(env.data_dir());
    c
}

/// Runs a step that must succeed; returns its stdout.
pub fn step_ok(env: &Env, args: &[String]) -> String {
    let out = logferry(env, args).output().unwrap();
    assert!(
        out.status.success(),
        "logferry {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What a finished pipeline holds, as the CLI reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Every warehouse row but its ingest time (the run's clock), sorted.
    pub rows: Vec<String>,
    /// DLQ entries per stage, reason and tenant.
    pub dlq: String,
    /// `reconcile --json`'s tenants.
    pub tenants: serde_json::Value,
}

pub fn outcome(env: &Env) -> Outcome {
    let sql = |q: &str| step_ok(env, &strings(&["sql", "--format", "csv", q]));
    let rows: Vec<String> = sql(
        "SELECT tenant_id, event_id, timestamp, level, service, message, request_id, \
         trace_id, source, source_account, attributes FROM warehouse \
         ORDER BY tenant_id, event_id",
    )
    .lines()
    .skip(1)
    .map(str::to_string)
    .collect();
    let dlq = sql("SELECT stage, reason, tenant_id, count(*) AS n FROM dlq \
         GROUP BY stage, reason, tenant_id ORDER BY stage, reason, tenant_id");
    let out = logferry(env, &strings(&["reconcile", "--json"]))
        .output()
        .unwrap();
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "reconcile --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(rec["balanced"], true, "{rec}");
    assert!(out.status.success());
    Outcome {
        rows,
        dlq,
        tenants: rec["tenants"].clone(),
    }
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

pub fn forward_steps(w: &logferry_forward::workload::Workload) -> Vec<Step> {
    let p = |x: &Path| x.to_str().unwrap().to_string();
    vec![
        vec![
            "forward".into(),
            "--input".into(),
            p(&w.ndjson),
            "--format".into(),
            "ndjson".into(),
        ],
        vec![
            "forward".into(),
            "--input".into(),
            p(&w.cloudwatch),
            "--format".into(),
            "cloudwatch".into(),
        ],
    ]
}

/// The labelled workload the embedded walks forward (both formats).
pub fn workload(dir: &Path) -> logferry_forward::workload::Workload {
    let mut spec = Env::spec(600, SEED);
    spec.max_events_per_envelope = 10;
    logferry_forward::workload::generate(&spec, dir).unwrap()
}

/// Peak resident memory (VmHWM) of a running child, in KiB, sampled until
/// it exits (the child is left to be waited on).
pub fn peak_rss_kib(child: &mut std::process::Child) -> u64 {
    let status_path = format!("/proc/{}/status", child.id());
    let mut hwm = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(l) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kb: u64 = l.split_whitespace().nth(1).unwrap().parse().unwrap();
            hwm = hwm.max(kb);
        }
        if child.try_wait().unwrap().is_some() {
            return hwm;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `logferry verify isolation` must pass: every row with its own tenant.
pub fn assert_isolated(env: &Env) {
    let out = logferry(env, &strings(&["verify", "isolation", "--json"]))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify isolation: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && report["violations"].as_array().is_some_and(Vec::is_empty),
        "tenant isolation broken: {report:#}"
    );
    assert!(
        report["checked"]["landing"]["rows"].as_u64().unwrap_or(0) > 0,
        "verify isolation read no landing rows: {report:#}"
    );
}

/// The emulator pipeline's tenants: each reads the workload's NDJSON stream
/// name and a Kinesis stream of its own, `<tag>-<i>`, created here and
/// filled once with [`kinesis_payloads`]. Every environment made with the
/// returned `[[tenant]]` tables reads those records into its own lake.
/// Returns the tables and the pipeline's steps: both files forwarded, the
/// streams forwarded once, then `run`.
pub fn kinesis_pipeline(
    tag: &str,
    w: &logferry_forward::workload::Workload,
) -> (String, Vec<Step>) {
    let prefix = unique(tag);
    let streams: Vec<String> = (0..TENANTS).map(|i| format!("{prefix}-{i}")).collect();
    let mut tenants = String::new();
    for (i, s) in streams.iter().enumerate() {
        let id = format!("tenant-{i:04}");
        tenants.push_str(&format!(
            "[[tenant]]\nid = \"{id}\"\nstreams = [\"logs-{id}\", \"{s}\"]\n\
             log_groups = [\"/tenants/{id}/\"]\naccounts = [\"{}\"]\n\n",
            logferry_forward::workload::tenant_account(i)
        ));
    }
    let probe = Env::with_tenants(Backend::Emulators, "", &tenants).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let k = kinesis(&probe).await;
        create_streams(&k, &streams).await;
        for (i, s) in streams.iter().enumerate() {
            let t = format!("tenant-{i:04}");
            let other = format!("tenant-{:04}", (i + 1) % TENANTS);
            put_records(&k, s, kinesis_payloads(&t, &other, NOW_MS - 40 * 60_000)).await;
        }
    });
    let mut steps = forward_steps(w);
    steps.push(strings(&["forward", "--kinesis", "--once"]));
    steps.push(strings(&["run"]));
    (tenants, steps)
}
