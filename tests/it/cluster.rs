//! Ad-hoc SQL on a DataFusion Ballista cluster: the same queries return the
//! same rows on Ballista's standalone cluster (started in this process) as
//! in this process, and `logferry sql` and `backfill --sql` run on a real
//! one: `logferry cluster scheduler` and `logferry cluster executor` as
//! processes, the client pointed at them by `[cluster] scheduler`.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::physical_plan::displayable;
use logferry::context::Ctx;
use logferry_core::config::ClusterTarget;
use logferry_core::partition::Window;

use crate::common::*;
use crate::procs::*;

/// Queries over every kind of table: scans, aggregates, a join, a window
/// function, the rollups and the local warehouse.
const QUERIES: &[&str] = &[
    "SELECT tenant_id, count(*) AS n, count(DISTINCT event_id) AS ids, \
     min(\"timestamp\") AS first, max(\"timestamp\") AS last \
     FROM curated GROUP BY tenant_id ORDER BY tenant_id",
    "SELECT stage, reason, count(*) AS n FROM dlq GROUP BY stage, reason ORDER BY stage, reason",
    "SELECT l.tenant_id, count(*) AS landed, \
     sum(CASE WHEN c.event_id IS NULL THEN 1 ELSE 0 END) AS not_curated \
     FROM landing l LEFT JOIN curated c \
     ON l.tenant_id = c.tenant_id AND l.event_id = c.event_id \
     GROUP BY l.tenant_id ORDER BY l.tenant_id",
    "SELECT tenant_id, level, count(*) AS n FROM warehouse GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT tenant_id, sum(errors) AS errors, sum(records) AS records \
     FROM error_rate GROUP BY 1 ORDER BY 1",
    "SELECT tenant_id, event_id, row_number() OVER \
     (PARTITION BY tenant_id ORDER BY \"timestamp\", event_id) AS rn \
     FROM curated ORDER BY tenant_id, rn, event_id LIMIT 25",
];

async fn pretty(ctx: &Ctx, target: &ClusterTarget, window: Option<Window>, q: &str) -> String {
    let (s, _) = logferry::sql::session_on(ctx, target, window, Some(q))
        .await
        .unwrap();
    let (_, batches) = logferry::sql::query_with_schema(&s, q)
        .await
        .unwrap_or_else(|e| panic!("{q} on {target:?}: {e}"));
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_a_standalone_cluster_return_what_local_execution_returns() {
    let env = Env::new("");
    let w = env.generate(&Env::spec(3000, SEED), "in");
    env.forward_both(&w).await;
    env.run().await;
    let local = env.ctx().await;
    let cluster = &ClusterTarget::Standalone;
    let mut settings = (*local.settings).clone();
    settings.cluster = cluster.clone();
    let remote = Ctx::from_settings(Arc::new(settings)).await.unwrap();

    for q in QUERIES {
        let want = pretty(&local, &ClusterTarget::Local, None, q).await;
        assert!(
            want.lines().count() > 6,
            "{q}: too few rows to compare\n{want}"
        );
        assert_eq!(pretty(&remote, cluster, None, q).await, want, "{q}");
    }
    // A window with no objects: its tables are empty, on the cluster too.
    let none = Window::parse("2020-01-01T00").unwrap();
    for t in ["landing", "curated", "dlq", "warehouse"] {
        let q = format!("SELECT count(*) AS n FROM {t}");
        let out = pretty(&remote, cluster, Some(none), &q).await;
        assert!(out.contains("| 0 "), "{t}: {out}");
    }
    // The query ran on the cluster: the client's plan only hands it over.
    let (s, _) = logferry::sql::session_on(&remote, cluster, None, None)
        .await
        .unwrap();
    let plan = s
        .sql(QUERIES[0])
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let shown = displayable(plan.as_ref()).indent(true).to_string();
    assert!(shown.contains("DistributedQueryExec"), "{shown}");
    // The same context reuses its cluster rather than start another.
    let url = remote.standalone.get().cloned().unwrap();
    pretty(&remote, cluster, None, QUERIES[1]).await;
    assert_eq!(remote.standalone.get(), Some(&url));
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn alive(&mut self) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!("logferry cluster {} exited: {status}", self.1);
        }
    }
}

/// The command's output, or `None` (and the command killed) when it takes
/// longer than `limit`.
fn within(mut cmd: std::process::Command, limit: Duration) -> Option<std::process::Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

fn spawn(env: &Env, args: &[String], what: &'static str) -> Proc {
    let child = logferry(env, args)
        .env("LOGFERRY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(env.data_dir().join(format!("{what}.log"))).unwrap(),
        ))
        .spawn()
        .unwrap();
    Proc(child, what)
}

#[test]
fn sql_and_backfill_run_on_a_cluster_of_logferry_processes() {
    let mut env = Env::new("");
    let w = workload(env.data_dir());
    for s in forward_steps(&w) {
        step_ok(&env, &s);
    }
    step_ok(&env, &strings(&["run"]));
    let q = QUERIES[0];
    let local = step_ok(&env, &strings(&["sql", "--format", "csv", q]));

    let (sched, flight, grpc) = (free_port(), free_port(), free_port());
    let mut scheduler = spawn(
        &env,
        &strings(&[
            "cluster",
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{sched}"),
        ]),
        "scheduler",
    );
    let mut executor = spawn(
        &env,
        &strings(&[
            "cluster",
            "executor",
            "--scheduler",
            &format!("127.0.0.1:{sched}"),
            "--bind-host",
            "127.0.0.1",
            "--external-host",
            "127.0.0.1",
            "--port",
            &flight.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--slots",
            "2",
        ]),
        "executor",
    );
    env.vars.push((
        "LOGFERRY__CLUSTER__SCHEDULER".into(),
        format!("df://127.0.0.1:{sched}"),
    ));
    // The executor registers with the scheduler once both are up; until
    // then a query waits.
    let deadline = Instant::now() + Duration::from_secs(90);
    let on_cluster = loop {
        scheduler.alive();
        executor.alive();
        let attempt = within(
            logferry(&env, &strings(&["sql", "--format", "csv", q])),
            Duration::from_secs(20),
        );
        match attempt {
            Some(out) if out.status.success() => break String::from_utf8(out.stdout).unwrap(),
            other => assert!(
                Instant::now() < deadline,
                "sql on the cluster: {:?}\nscheduler: {}\nexecutor: {}",
                other.map(|o| String::from_utf8_lossy(&o.stderr).to_string()),
                std::fs::read_to_string(env.data_dir().join("scheduler.log")).unwrap_or_default(),
                std::fs::read_to_string(env.data_dir().join("executor.log")).unwrap_or_default(),
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(on_cluster, local);
    for q in &QUERIES[1..] {
        env.vars.pop();
        let want = step_ok(&env, &strings(&["sql", "--format", "csv", q]));
        env.vars.push((
            "LOGFERRY__CLUSTER__SCHEDULER".into(),
            format!("df://127.0.0.1:{sched}"),
        ));
        assert_eq!(
            step_ok(&env, &strings(&["sql", "--format", "csv", q])),
            want,
            "{q}"
        );
    }

    // backfill --sql: each window's query on the cluster, loaded here.
    let file = env.data_dir().join("per_service.sql");
    std::fs::write(
        &file,
        "SELECT tenant_id, service, date_trunc('hour', \"timestamp\") AS hour, count(*) AS records \
         FROM curated GROUP BY 1, 2, 3",
    )
    .unwrap();
    let r: serde_json::Value = serde_json::from_str(&step_ok(
        &env,
        &strings(&[
            "backfill",
            "--sql",
            file.to_str().unwrap(),
            "--table",
            "per_service_hourly",
            "--from",
            "2026-01-15",
            "--to",
            "2026-01-15",
            "--json",
        ]),
    ))
    .unwrap();
    assert_eq!(r["complete"], true, "{r:#}");
    let count = |q: &str| -> String {
        step_ok(&env, &strings(&["sql", "--format", "csv", q]))
            .lines()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        count("SELECT CAST(sum(records) AS BIGINT) FROM warehouse_per_service_hourly"),
        count("SELECT count(*) FROM warehouse")
    );
    scheduler.alive();
    executor.alive();
}
