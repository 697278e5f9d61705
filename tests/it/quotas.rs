//! BigQuery's load job quota as the CLI and the daemon see it, on the
//! emulators: a configuration whose schedules cannot fit is refused with
//! the interval that would; a backfill larger than what the schedules leave
//! of today's quota is refused unless queued, and the queued one waits for
//! the quota instead of using the scheduled loads' jobs.
//!
//! Kept in daily partitions, 49 jobs a day are scheduled on log_records
//! here: 48 appends (`rate(30 minutes)`), no window loads (the windows
//! append) and one seal.

use std::process::Stdio;
use std::time::{Duration, Instant};

use logferry_export::WarehouseHandle;

use crate::common::*;
use crate::procs::*;

const RANGE: [&str; 4] = ["--from", "2026-01-15", "--to", "2026-01-15"];

fn run(env: &Env, args: &[&str]) -> std::process::Output {
    logferry(env, &strings(args)).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_schedule_beyond_the_quota_is_refused_with_what_fits() {
    let extra = "[[schedule]]\nname = \"fast\"\njob = \"run\"\nexpression = \"rate(10 seconds)\"\n";
    let Some(env) = Env::on(Backend::Emulators, extra) else {
        return;
    };
    let out = run(&env, &["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("DOES NOT FIT: table log_records: 8641 load jobs a day"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the shortest micro-batch interval that fits is 65 s"),
        "{stdout}"
    );

    // The daemon refuses to start on it (a configuration error: exit 2).
    let mut child = logferry(&env, &strings(&["daemon", "--listen", "127.0.0.1:0"]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the daemon started on a plan that does not fit");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not fit BigQuery's quotas"),
        "{stderr}"
    );
    assert!(stderr.contains("rate(2 minutes)"), "{stderr}");
}

#[test]
fn a_backfill_beyond_todays_quota_is_queued_until_it_fits() {
    let extra = "[[schedule]]\nname = \"micro\"\njob = \"run\"\nexpression = \"rate(30 minutes)\"\n\n\
                 [[schedule]]\nname = \"backfills\"\njob = \"backfill\"\nexpression = \"rate(1 minute)\"\n";
    let Some(mut env) = Env::on(Backend::Emulators, extra) else {
        return;
    };
    let quota = |env: &mut Env, jobs: &str| {
        env.vars = vec![
            (
                "LOGFERRY__BIGQUERY__LOAD_JOBS_PER_TABLE_PER_DAY".into(),
                jobs.into(),
            ),
            ("LOGFERRY__BIGQUERY__QUOTA_HEADROOM".into(), "0".into()),
        ];
    };
    quota(&mut env, "200");
    let w = workload(env.data_dir());
    for s in forward_steps(&w) {
        step_ok(&env, &s);
    }
    step_ok(&env, &strings(&["run"]));

    // Earlier loads today took all but one of log_records' 200 jobs.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = env.ctx().await;
        let bq = match &ctx.warehouse {
            WarehouseHandle::BigQuery(b) => b.clone(),
            WarehouseHandle::Local(_) => panic!("expected BigQuery"),
        };
        let used = bq.quota().used("log_records").await.unwrap();
        assert!(used > 0 && used < 199, "the run took {used} jobs");
        for _ in used..199 {
            bq.quota().take("log_records").await.unwrap();
        }
    });

    let mut args = vec!["backfill", "--plan", "--json"];
    args.extend(RANGE);
    let plan: serde_json::Value = serde_json::from_str(&step_ok(&env, &strings(&args))).unwrap();
    assert_eq!(plan["jobs_left_today"]["log_records"], 1, "{plan:#}");
    // The one left is the scheduled loads'; 200 - 49 a day after today.
    assert_eq!(plan["spare"]["log_records"]["today"], 0, "{plan:#}");
    assert_eq!(plan["spare"]["log_records"]["per_day"], 151, "{plan:#}");
    assert_eq!(plan["days_needed"], 2, "{plan:#}");

    let stderr = backfill_refused(&env);
    assert!(stderr.contains("it takes 2 days"), "{stderr}");
    assert!(stderr.contains("--queue"), "{stderr}");

    let mut args = vec!["backfill", "--queue"];
    args.extend(RANGE);
    step_ok(&env, &strings(&args));
    let job: serde_json::Value =
        serde_json::from_str(&step_ok(&env, &strings(&["job", "backfills", "--json"]))).unwrap();
    let b = &job["backfills"][0];
    assert_eq!(b["complete"], false, "{job:#}");
    assert!(
        b["paused"]
            .as_str()
            .is_some_and(|p| p.contains("kept for the scheduled loads")),
        "{job:#}"
    );
    assert_eq!(b["done"].as_array().map(Vec::len), Some(0), "{job:#}");

    // A quota the schedules use whole leaves a backfill nothing, ever.
    quota(&mut env, "49");
    assert!(run(&env, &["plan"]).status.success());
    let mut args = vec!["backfill", "--plan", "--json"];
    args.extend(RANGE);
    let plan: serde_json::Value = serde_json::from_str(&step_ok(&env, &strings(&args))).unwrap();
    assert_eq!(plan["days_needed"], serde_json::Value::Null, "{plan:#}");
    let stderr = backfill_refused(&env);
    assert!(stderr.contains("none is left for a backfill"), "{stderr}");

    // Running it takes a day partition's replace, which the emulator has no
    // decorators for (emulators.rs pins that gap): the queue running a
    // backfill to its end is tested on the local warehouse (backfill.rs).
}

/// `logferry backfill` over the range, refused as a configuration error
/// (exit status 2): its message.
fn backfill_refused(env: &Env) -> String {
    let mut args = vec!["backfill"];
    args.extend(RANGE);
    let out = run(env, &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}
