//! The daemon as a real process: fed through its inbox while its
//! schedules fire (a one-second micro-batch), checked on /healthz, /readyz
//! and /metrics; killed with SIGKILL at random moments and restarted; two
//! at once on one lake; stopped with SIGTERM within its deadline; a
//! failing stream restarted and reported. Every time the warehouse must
//! end as a plain run of the same input ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::procs::*;

/// Daemon settings of the tests: a one-second micro-batch, a quick inbox.
pub const DAEMON: &str = "[daemon]\ninbox_interval = \"200ms\"\nshutdown_deadline = \"5s\"\n\
    restart_backoff = \"200ms\"\nrestart_backoff_max = \"1s\"\n\n\
    [[schedule]]\nname = \"micro-batch\"\njob = \"run\"\nexpression = \"rate(1 second)\"\n\n\
    [[schedule]]\nname = \"backfills\"\njob = \"backfill\"\nexpression = \"rate(5 seconds)\"\n";

/// A running `logferry daemon`.
pub struct Daemon {
    child: Child,
    pub addr: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts a daemon on `env`, with `vars` added to its environment.
    pub fn start(env: &Env, vars: &[(&str, &str)]) -> Daemon {
        let log = env.data_dir().join(format!("daemon-{}.log", unique("d")));
        let err = std::fs::File::create(&log).unwrap();
        let child = logferry(env, &strings(&["daemon", "--listen", "127.0.0.1:0"]))
            .env("LOGFERRY_LOG", "info")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            addr: String::new(),
            log,
        };
        let t0 = Instant::now();
        loop {
            let text = d.log();
            if let Some(addr) = text
                .lines()
                .find(|l| l.contains("logferry daemon running."))
                .and_then(|l| l.split("addr=").nth(1))
                .and_then(|a| a.split_whitespace().next())
            {
                d.addr = addr.to_string();
                return d;
            }
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("the daemon exited ({status}) while starting:\n{text}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the daemon did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path)
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM, then waits; returns (exit status, time to exit).
    pub fn term(mut self) -> (std::process::ExitStatus, Duration, String) {
        let t0 = Instant::now();
        self.signal("-TERM");
        let status = self.wait(Duration::from_secs(60));
        (status, t0.elapsed(), self.log())
    }

    /// SIGKILL: no flush, no checkpoint, no lease handed back.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("the daemon did not stop within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits a file of lines into `n` inbox files (the same lines, in order).
pub fn split_lines(src: &Path, n: usize, dir: &Path, ext: &str) -> Vec<PathBuf> {
    let bytes = std::fs::read(src).unwrap();
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let per = lines.len().div_ceil(n);
    std::fs::create_dir_all(dir).unwrap();
    lines
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let p = dir.join(format!("part-{i:03}.{ext}"));
            let mut body = Vec::new();
            for l in chunk {
                body.extend_from_slice(l);
                body.push(b'\n');
            }
            std::fs::write(&p, body).unwrap();
            p
        })
        .collect()
}

/// Drops a file into the inbox as writers do: written under a hidden name,
/// then renamed into place.
pub fn drop_into(inbox: &Path, file: &Path) {
    std::fs::create_dir_all(inbox).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let tmp = inbox.join(format!(".{name}.part"));
    std::fs::copy(file, &tmp).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

/// Waits until `env`'s warehouse holds `rows` records and no window has
/// work left (pending data or increments to append).
pub fn wait_drained(env: &Env, rows: u64, limit: Duration) {
    let t0 = Instant::now();
    loop {
        let out = logferry(env, &strings(&["status", "--json"]))
            .output()
            .unwrap();
        if out.status.success() {
            let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let all = st.as_array().cloned().unwrap_or_default();
            let loaded: u64 = all
                .iter()
                .map(|s| s["rows_loaded"].as_u64().unwrap_or(0))
                .sum();
            let settled = all.iter().all(|s| {
                matches!(s["aggregate"].as_str(), Some("done" | "open"))
                    && matches!(s["export"].as_str(), Some("loaded" | "appended"))
            });
            if settled && loaded == rows {
                return;
            }
            if t0.elapsed() > limit {
                panic!("not drained within {limit:?} (want {rows} rows, {loaded} loaded): {st:#}");
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The rows a plain run of `files` (forwarded one by one, as the daemon's
/// inbox gets them) loads, and its outcome. The same parts, not the whole
/// workload: an exact redelivery split from its first copy can make two
/// parts land an identical landing object, which is stored once (landing
/// is idempotent by content), so the count of redeliveries depends on the
/// split, not on the daemon.
fn clean(files: &[PathBuf], extra: &str) -> (u64, Outcome) {
    let env = Env::new(extra);
    for f in files {
        let format = if f.extension().is_some_and(|x| x == "cwl") {
            "cloudwatch"
        } else {
            "ndjson"
        };
        step_ok(
            &env,
            &strings(&[
                "forward",
                "--input",
                &f.to_string_lossy(),
                "--format",
                format,
            ]),
        );
    }
    step_ok(&env, &strings(&["run"]));
    let n = step_ok(
        &env,
        &strings(&[
            "sql",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM warehouse",
        ]),
    );
    let rows = n.lines().nth(1).unwrap().trim().parse().unwrap();
    (rows, outcome(&env))
}

/// The inputs fed to daemons: the workload's NDJSON in parts, and its
/// CloudWatch Logs file.
fn parts(env: &Env, w: &logferry_forward::workload::Workload, n: usize) -> Vec<PathBuf> {
    let mut files = split_lines(&w.ndjson, n, &env.data_dir().join("parts"), "ndjson");
    files.push(w.cloudwatch.with_file_name("payloads.cwl"));
    std::fs::copy(&w.cloudwatch, files.last().unwrap()).unwrap();
    files
}

#[test]
fn the_daemon_follows_its_inbox_on_schedule_and_says_how_it_is() {
    let env = Env::new(DAEMON);
    let w = workload(&env.data_dir().join("in"));
    let files = parts(&env, &w, 4);
    let (rows, want) = clean(&files, "");
    let inbox = env.data_dir().join("inbox");
    let d = Daemon::start(&env, &[]);
    let (code, body) = d.get("/healthz");
    assert_eq!(code, 200, "{body}");
    for f in &files {
        drop_into(&inbox, f);
        std::thread::sleep(Duration::from_millis(300));
    }
    // Names to be ignored: in progress (.) and temporary (_) files, and
    // names that say no format.
    std::fs::write(
        inbox.join("_tmp.ndjson"),
        "{\"stream\":\"logs-tenant-0000\"}\n",
    )
    .unwrap();
    std::fs::write(inbox.join(".hidden.ndjson"), "not even json\n").unwrap();
    std::fs::write(inbox.join("notes.txt"), "hello\n").unwrap();
    wait_drained(&env, rows, Duration::from_secs(90));
    let (code, body) = d.get("/readyz");
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["schedules"]["micro-batch"]["last"], "ok", "{ready:#}");
    let (code, metrics) = d.get("/metrics");
    assert_eq!(code, 200);
    for want in [
        "logferry_records_total{stage=\"forward\",tenant=\"tenant-0000\",outcome=\"accepted\"}",
        "logferry_records_total{stage=\"load\",tenant=\"tenant-0001\",outcome=\"loaded\"}",
        "logferry_window_runs_total{mode=\"micro_batch\",aggregate=\"increment\",export=\"appended\"}",
        "logferry_windows{state=\"open\"}",
        "logferry_schedule_runs_total{schedule=\"micro-batch\",outcome=\"ok\"}",
        "logferry_inbox_objects_total{outcome=\"forwarded\"} 5",
        "logferry_end_to_end_latency_seconds_bucket{le=\"0.3\",tenant=\"tenant-0002\"}",
    ] {
        assert!(metrics.contains(want), "{want} not in\n{metrics}");
    }
    let (status, took, log) = d.term();
    assert!(status.success(), "{status}: {log}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(outcome(&env), want);
    assert_isolated(&env);
}

/// kill -9 at random moments while input streams in: restarted each time,
/// the daemon ends with exactly what a run that was never killed loads.
/// `LOGFERRY_TEST_KILLS` (default 5) kills at least, at moments drawn from
/// `LOGFERRY_TEST_SEED`: a longer soak.
#[test]
fn kill_9_at_random_moments_loses_nothing_and_doubles_nothing() {
    let env = Env::new(DAEMON);
    let w = workload(&env.data_dir().join("in"));
    let inbox = env.data_dir().join("inbox");
    let min_kills: usize = std::env::var("LOGFERRY_TEST_KILLS")
        .map_or(5, |v| v.parse().expect("LOGFERRY_TEST_KILLS: a number"));
    let files = parts(&env, &w, (min_kills + 3).max(8));
    let (rows, want) = clean(&files, "");
    let mut rng: u64 = std::env::var("LOGFERRY_TEST_SEED").map_or(0x2545_f491_4f6c_dd1d, |v| {
        v.parse().expect("LOGFERRY_TEST_SEED: a number")
    }) | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut kills = 0;
    let mut fed = files.iter();
    loop {
        let d = Daemon::start(&env, &[]);
        for _ in 0..2 {
            if let Some(f) = fed.next() {
                drop_into(&inbox, f);
            }
        }
        std::thread::sleep(Duration::from_millis(300 + next() % 1500));
        if fed.len() == 0 && kills >= min_kills {
            wait_drained(&env, rows, Duration::from_secs(90));
            let (status, _, log) = d.term();
            assert!(status.success(), "{log}");
            break;
        }
        d.kill();
        kills += 1;
    }
    let got = outcome(&env);
    assert_eq!(got.rows.len(), want.rows.len());
    assert_eq!(got, want, "after {kills} kill -9 cycles");
    assert_isolated(&env);
    eprintln!("kill -9: {kills} cycles survived, {rows} rows loaded exactly once");
}

/// Two daemons on one lake: every inbox object, window and increment is
/// done by one of them (leases), and the warehouse holds each record once.
#[test]
fn two_daemons_on_one_lake_do_each_piece_of_work_once() {
    let env = Env::new(DAEMON);
    let w = workload(&env.data_dir().join("in"));
    let files = parts(&env, &w, 6);
    let (rows, want) = clean(&files, "");
    let inbox = env.data_dir().join("inbox");
    let a = Daemon::start(&env, &[]);
    let b = Daemon::start(&env, &[]);
    for f in &files {
        drop_into(&inbox, f);
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_drained(&env, rows, Duration::from_secs(120));
    for d in [a, b] {
        let (status, _, log) = d.term();
        assert!(status.success(), "{log}");
    }
    let got = outcome(&env);
    let distinct: std::collections::BTreeSet<&String> = got.rows.iter().collect();
    assert_eq!(distinct.len(), got.rows.len(), "a record loaded twice");
    assert_eq!(got, want);
    assert_isolated(&env);
}

/// SIGTERM while a window is being worked on: the daemon hands it back and
/// exits 0 within its deadline; the next daemon finishes it.
#[cfg(feature = "failpoints")]
#[test]
fn sigterm_drains_within_the_deadline() {
    let env = Env::new(&DAEMON.replace("shutdown_deadline = \"5s\"", "shutdown_deadline = \"2s\""));
    let w = workload(&env.data_dir().join("in"));
    let files = parts(&env, &w, 2);
    let (rows, want) = clean(&files, "");
    let inbox = env.data_dir().join("inbox");
    // The first increment holds its window for a minute.
    let d = Daemon::start(
        &env,
        &[("LOGFERRY_PAUSE_AT", "increment.after_outputs:60000")],
    );
    for f in &files {
        drop_into(&inbox, f);
    }
    let t0 = Instant::now();
    while !d.log().contains("pausing") {
        assert!(t0.elapsed() < Duration::from_secs(60), "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, took, log) = d.term();
    assert!(status.success(), "{status}: {log}");
    eprintln!("SIGTERM to exit: {took:?}");
    // The deadline (2 s), and at most a second past it.
    assert!(
        took < Duration::from_millis(3500),
        "took {took:?} to stop:\n{log}"
    );
    assert!(log.contains("abandon"), "{log}");
    // Handed back: the next daemon takes the window at once.
    let d = Daemon::start(&env, &[]);
    wait_drained(&env, rows, Duration::from_secs(90));
    let (status, _, log) = d.term();
    assert!(status.success(), "{log}");
    assert_eq!(outcome(&env), want);
}

/// A stream whose reader keeps failing (it does not exist) is restarted
/// with backoff and reported on /readyz and /metrics, while the other
/// streams are read and loaded.
#[test]
fn a_failing_stream_is_restarted_and_reported_while_the_others_load() {
    if emulators().is_none() {
        return;
    }
    let good = unique("daemon-ok").replace('_', "-");
    let bad = unique("daemon-missing").replace('_', "-");
    let tenants = format!(
        "[[tenant]]\nid = \"tenant-0000\"\nstreams = [\"{good}\"]\nlog_groups = [\"/tenants/tenant-0000/\"]\n\n\
         [[tenant]]\nid = \"tenant-0001\"\nstreams = [\"{bad}\"]\nlog_groups = [\"/tenants/tenant-0001/\"]\n"
    );
    let extra = DAEMON.replace("[daemon]\n", "[daemon]\nkinesis = true\n");
    let mut env = Env::with_tenants(Backend::Emulators, &extra, &tenants).unwrap();
    // A one-second micro-batch would use up BigQuery's load job quota; the
    // emulator has none.
    env.vars.push((
        "LOGFERRY__BIGQUERY__LOAD_JOBS_PER_TABLE_PER_DAY".into(),
        "10000000".into(),
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let k = kinesis(&env).await;
        create_streams(&k, std::slice::from_ref(&good)).await;
        put_records(
            &k,
            &good,
            kinesis_payloads("tenant-0000", "tenant-0001", NOW_MS - 30 * 60_000),
        )
        .await;
    });
    let d = Daemon::start(&env, &[]);
    // kinesis_payloads: 45 of the records load.
    wait_drained(&env, 45, Duration::from_secs(120));
    // The reader is down but for the moments of its restarts.
    let t0 = Instant::now();
    let (code, body) = loop {
        let (code, body) = d.get("/readyz");
        if code == 503 || t0.elapsed() > Duration::from_secs(10) {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let problems = ready["problems"].to_string();
    assert!(problems.contains(&format!("stream {bad}")), "{ready:#}");
    assert!(
        ready["streams"][&bad]["restarts"].as_u64().unwrap() >= 1,
        "{ready:#}"
    );
    assert_eq!(ready["streams"][&good]["up"], true);
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains(&format!("logferry_stream_up{{stream=\"{bad}\"}} 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("logferry_stream_up{{stream=\"{good}\"}} 1")),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "logferry_stream_restarts_total{{stream=\"{bad}\"}}"
    )));
    // What the readers land is counted while they follow, not at their end.
    let received: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "logferry_records_total{stage=\"forward\",tenant=\"tenant-0000\",outcome=\"received\"} ",
            )
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(received >= 45, "{metrics}");
    let (status, _, log) = d.term();
    assert!(status.success(), "{log}");
    assert!(log.contains("Stream reader failed"), "{log}");
}
