//! Transient faults: a run in which a share of the storage and service
//! calls fail (errors, throttling, lost answers, dropped connections,
//! timeouts) ends exactly as a clean run; a run that cannot finish fails
//! loudly and leaves state from which the next run completes.
//!
//! On the embedded backends, faults come from the stores themselves
//! (`LOGFERRY_FAULT_RATE`, `failpoints` builds); on the emulators, from
//! fault-injecting proxies between logferry and every server (S3, Kinesis,
//! GCS, BigQuery).

use std::time::{Duration, Instant};

use crate::common::*;
use crate::faultproxy::FaultProxy;
use crate::procs::*;

/// Runs a step with extra environment; returns (success, stderr).
fn step_with(env: &Env, args: &[String], vars: &[(&str, String)]) -> (bool, String) {
    let out = logferry(env, args)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// How many faults the binary says it injected (from its stderr).
#[cfg(feature = "failpoints")]
fn injected(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("logferry: ")?
                .strip_suffix(" storage faults injected (LOGFERRY_FAULT_RATE)")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Every embedded step with 10 % of the store calls failing ends as the
/// clean run; with every call failing, the steps fail loudly, and clean
/// runs after them complete; so do runs after ones that died part way
/// (every call after the n-th failing).
#[cfg(feature = "failpoints")]
#[test]
fn store_faults_on_the_embedded_backends() {
    let inputs = tempfile::tempdir().unwrap();
    let w = workload(inputs.path());
    let mut steps = forward_steps(&w);
    steps.push(strings(&["run"]));
    let clean = Env::new("");
    for s in &steps {
        step_ok(&clean, s);
    }
    let want = outcome(&clean);

    std::thread::scope(|scope| {
        // 10 %: every step succeeds, through its retries.
        scope.spawn(|| {
            let env = Env::new("");
            let mut faults = 0;
            for (i, s) in steps.iter().enumerate() {
                let (ok, stderr) = step_with(
                    &env,
                    s,
                    &[
                        ("LOGFERRY_FAULT_RATE", "0.1".into()),
                        ("LOGFERRY_FAULT_SEED", format!("{}", 7 + i)),
                    ],
                );
                assert!(ok, "{s:?} failed at 10 % faults:\n{stderr}");
                faults += injected(&stderr);
            }
            assert!(faults > 10, "only {faults} faults injected");
            assert_eq!(outcome(&env), want);
            assert_isolated(&env);
            eprintln!(
                "embedded: {faults} store faults injected at 10 %, same outcome as a clean run"
            );
        });

        // Every call failing: each step fails loudly, bounded in time; clean
        // steps after them complete.
        scope.spawn(|| {
            let env = Env::new("");
            for s in &steps {
                let t0 = Instant::now();
                let (ok, stderr) = step_with(&env, s, &[("LOGFERRY_FAULT_RATE", "1".into())]);
                assert!(!ok, "{s:?} succeeded with every call failing");
                assert!(
                    stderr.contains("error:") && stderr.contains("injected fault"),
                    "{stderr}"
                );
                assert!(t0.elapsed() < Duration::from_secs(60));
            }
            for s in &steps {
                step_ok(&env, s);
            }
            assert_eq!(outcome(&env), want);
            assert_isolated(&env);
            eprintln!("embedded: with every call failing, each step failed loudly");
        });

        // Runs that die part way (every call after the n-th failing), each
        // followed by another attempt with more room, until the step is done.
        scope.spawn(|| {
            let env = Env::new("");
            let mut died = 0;
            for s in &steps {
                let mut n = 10;
                loop {
                    let (ok, stderr) =
                        step_with(&env, s, &[("LOGFERRY_FAULT_AFTER", n.to_string())]);
                    if ok {
                        break;
                    }
                    assert!(stderr.contains("injected fault"), "{stderr}");
                    died += 1;
                    n *= 3;
                    assert!(n < 1_000_000, "{s:?} never completes");
                }
            }
            assert!(died >= steps.len(), "only {died} runs died part way");
            assert_eq!(outcome(&env), want);
            assert_isolated(&env);
            eprintln!("embedded: {died} runs died part way; the runs after them completed");
        });
    });
}

/// The emulators behind fault proxies: the config points every client at
/// its proxy (explicit endpoints win over the emulator variables).
struct Proxied {
    moto: FaultProxy,
    gcs: FaultProxy,
    bq: FaultProxy,
}

impl Proxied {
    fn start() -> Proxied {
        let addr = |var: &str| -> std::net::SocketAddr {
            let v = std::env::var(var).unwrap();
            let hostport = v
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            hostport.parse().unwrap()
        };
        // A stalled call hangs past the clients' 5 s timeout.
        let stall = Duration::from_secs(6);
        Proxied {
            moto: FaultProxy::start(addr("AWS_ENDPOINT_URL"), 11, stall),
            gcs: FaultProxy::start(addr("STORAGE_EMULATOR_HOST"), 12, stall),
            bq: FaultProxy::start(addr("BIGQUERY_EMULATOR_HOST"), 13, stall),
        }
    }

    fn reset(&self) {
        self.moto.counts.reset();
        self.gcs.counts.reset();
        self.bq.counts.reset();
    }

    fn faults(&self) -> (u64, u64) {
        let c = [&self.moto.counts, &self.gcs.counts, &self.bq.counts];
        (
            c.iter().map(|c| c.faults()).sum(),
            c.iter().map(|c| c.total()).sum(),
        )
    }

    fn set_rate(&self, r: f64) {
        self.moto.set_rate(r);
        self.gcs.set_rate(r);
        self.bq.set_rate(r);
    }

    fn vars(&self) -> Vec<(String, String)> {
        [
            ("LOGFERRY__AWS__ENDPOINT", self.moto.url()),
            ("LOGFERRY__AWS__REQUEST_TIMEOUT", "5s".into()),
            ("LOGFERRY__GCS__ENDPOINT", self.gcs.url()),
            ("LOGFERRY__GCS__ANONYMOUS", "true".into()),
            ("LOGFERRY__GCS__REQUEST_TIMEOUT", "5s".into()),
            (
                "LOGFERRY__BIGQUERY__ENDPOINT",
                format!("{}/bigquery/v2", self.bq.url()),
            ),
            ("LOGFERRY__BIGQUERY__ANONYMOUS", "true".into()),
            ("LOGFERRY__BIGQUERY__REQUEST_TIMEOUT", "5s".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn summary(&self) -> String {
        format!(
            "S3+Kinesis {}; GCS {}; BigQuery {}",
            self.moto.counts.summary(),
            self.gcs.counts.summary(),
            self.bq.counts.summary()
        )
    }
}

/// S3, Kinesis, GCS and BigQuery each failing 10 % of their calls: the
/// pipeline (files and Kinesis forwarded, run, exported, loaded) ends as
/// a clean run. Every GCS and BigQuery call failing: `run` fails loudly in
/// bounded time, and the next run completes.
#[test]
fn service_faults_on_the_emulators() {
    if emulators().is_none() {
        return;
    }
    let proxies = Proxied::start();
    let inputs = tempfile::tempdir().unwrap();
    let w = workload(inputs.path());
    let (tenants, steps) = kinesis_pipeline("faults", &w);
    let new_env = || {
        let mut e = Env::with_tenants(Backend::Emulators, "", &tenants).unwrap();
        e.vars = proxies.vars();
        e
    };

    let clean = new_env();
    for s in &steps {
        step_ok(&clean, s);
    }
    let want = outcome(&clean);
    assert_eq!(proxies.faults().0, 0);
    assert!(proxies.gcs.counts.total() > 0 && proxies.bq.counts.total() > 0);

    // 10 % of every service's calls fail.
    let env = new_env();
    proxies.reset();
    proxies.set_rate(0.1);
    let t0 = Instant::now();
    for s in &steps {
        step_ok(&env, s);
    }
    let took = t0.elapsed();
    proxies.set_rate(0.0);
    let (faults, calls) = proxies.faults();
    let summary = proxies.summary();
    assert_eq!(outcome(&env), want);
    assert_isolated(&env);
    assert!(
        faults * 100 >= calls * 5
            && proxies.gcs.counts.faults() > 0
            && proxies.bq.counts.faults() > 0,
        "too few faults: {summary}"
    );
    eprintln!(
        "emulators at 10 % faults: {faults} of {calls} calls failed, same outcome as a clean \
         run, in {:.1} s\n{summary}",
        took.as_secs_f64(),
    );

    // The transit link down (every GCS and BigQuery call failing): the run
    // aggregates, then fails loudly, bounded in time, and leaves what the
    // next run completes.
    let env = new_env();
    for s in &steps[..3] {
        step_ok(&env, s);
    }
    proxies.gcs.set_rate(1.0);
    proxies.bq.set_rate(1.0);
    let t0 = Instant::now();
    let (ok, stderr) = step_with(&env, &strings(&["run"]), &[]);
    proxies.set_rate(0.0);
    assert!(!ok, "a run with every export call failing succeeded");
    // Each window fails alone, named, and the run exits non-zero.
    assert!(stderr.contains("FAILED window"), "{stderr}");
    assert!(stderr.contains("GCS"), "{stderr}");
    assert!(
        t0.elapsed() < Duration::from_secs(180),
        "{:?}",
        t0.elapsed()
    );
    eprintln!(
        "emulators with GCS and BigQuery failing every call: run failed after {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        stderr
            .lines()
            .find(|l| l.starts_with("FAILED"))
            .unwrap_or("")
    );
    // The next run tries the failed windows again once their backoff has
    // passed; --retry-failed, or a zero backoff here, needs no wait.
    step_ok(&env, &strings(&["run", "--retry-failed"]));
    assert_eq!(outcome(&env), want);
    assert_isolated(&env);
}
