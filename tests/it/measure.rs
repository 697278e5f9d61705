//! logferry measuring itself, checked by real consumers: k6-style load
//! tests through the daemon (embedded, and PutRecords into Kinesis on the
//! emulators), their thresholds and exit codes; `kpi`, `cost`; the report
//! rendered by headless Chromium; Prometheus scraping the daemon and
//! `promtool` checking its exposition and alerting rules; cfn-lint on the
//! alarms; the Lambda handlers' EMF lines against the format's schema.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::daemon::{DAEMON, Daemon};

/// The binary on a data dir with no configuration of its own (what a new
/// user runs), plus `vars`.
fn lf(data_dir: &Path, args: &[&str], vars: &[(&str, String)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logferry"));
    c.env_remove("LOGFERRY_CONFIG")
        .env("LOGFERRY_LOG", "warn")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    c.output().unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The JSON a command that must succeed printed.
fn json_ok(out: &Output) -> Value {
    let v = json_of(out);
    assert!(
        out.status.success(),
        "{v:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

fn tool(var: &str, name: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        let on_path = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .unwrap();
        assert!(
            on_path.status.success(),
            "{name} not found: run `bash scripts/tools.sh` (scripts/test.sh does) and \
             `source target/tools.env`"
        );
        String::from_utf8_lossy(&on_path.stdout).trim().to_string()
    })
}

/// The guide's multi-tenant scenario, at 1/50 of its time, on a fresh data
/// dir: the tenants are set up from the scenario's tags, every record is
/// queryable or dead-lettered with a reason, the counts reconcile, the
/// thresholds hold; then kpi, cost and the report read what it measured.
#[test]
fn a_short_load_test_meets_its_thresholds_and_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let html = dir.path().join("loadtest.html");
    let out = lf(
        &data,
        &[
            "loadtest",
            "multi-tenant-load",
            "--time-scale",
            "0.02",
            "--json",
            "--report",
            html.to_str().unwrap(),
        ],
        &[],
    );
    let r = json_ok(&out);
    assert!(r["sent"].as_u64().unwrap() > 500, "{r:#}");
    assert_eq!(r["lost"], 0);
    assert_eq!(r["reconciled"], true, "{r:#}");
    assert_eq!(
        r["sent"].as_u64(),
        r["received"].as_u64(),
        "every record sent was received"
    );
    assert_eq!(r["loaded"], r["sent_good"]);
    assert!(
        r["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["ok"] == true)
    );
    let p95 = r["trends"][0]["p95"].as_f64().unwrap();
    assert!(p95 > 0.0 && p95 < 30_000.0, "e2e p95 {p95} ms");
    // The scenario's tenants were set up in the data dir's own config.
    let config = std::fs::read_to_string(data.join("logferry.toml")).unwrap();
    for t in ["tenant-a", "tenant-b", "tenant-c"] {
        assert!(config.contains(&format!("id = \"{t}\"")), "{config}");
    }

    let kpi = lf(&data, &["kpi", "--since", "10m", "--json"], &[]);
    assert!(
        kpi.status.success(),
        "{}",
        String::from_utf8_lossy(&kpi.stdout)
    );
    let kpis = json_of(&kpi);
    let e2e = kpis
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "e2e_latency_p95")
        .unwrap()
        .clone();
    assert_eq!(e2e["status"], "pass", "{e2e:#}");
    assert!(e2e["value"].as_f64().unwrap() < 30.0);
    // A critical threshold breached: the exit status says so.
    let strict = lf(
        &data,
        &["kpi", "--since", "10m"],
        &[
            ("LOGFERRY__KPI__E2E_P95_TARGET_S", "0.0001".into()),
            ("LOGFERRY__KPI__E2E_P95_CRITICAL_S", "0.001".into()),
        ],
    );
    assert_eq!(strict.status.code(), Some(1));
    let text = String::from_utf8_lossy(&strict.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("End-to-End Latency (P95)") && l.contains("fail")),
        "{text}"
    );

    let cost = json_of(&lf(&data, &["cost", "--since", "10m", "--json"], &[]));
    let ours = cost["cost"]["per_million_usd"].as_f64().unwrap();
    assert!(ours > 0.0);
    for a in cost["cost"]["alternatives"].as_array().unwrap() {
        assert!(a["per_million_usd"].as_f64().unwrap() > ours, "{a:#}");
    }
    assert_eq!(cost["prices"]["bigquery_load_jobs"]["usd"], 0.0);

    // The load test's page, and `logferry report`'s, render in Chromium.
    let page = dir.path().join("report.html");
    let rep = lf(
        &data,
        &["report", "--since", "10m", "--out", page.to_str().unwrap()],
        &[],
    );
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    for p in [&html, &page] {
        check_in_browser(p);
    }
}

/// Chromium parses the page (the six charts are in its DOM) and draws it
/// (a screenshot has the charts' colours over many pixels).
fn check_in_browser(page: &Path) {
    use logferry_observe::report::browser;
    let dom = browser::dump_dom(page).unwrap();
    for id in logferry_observe::report::CHART_IDS {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} not in the DOM");
    }
    assert!(dom.matches("<svg").count() >= 6);
    let png = page.with_extension("png");
    browser::screenshot(page, &png).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let colours: std::collections::BTreeSet<&[u8]> = buf[..info.buffer_size()]
        .chunks(px)
        .take(info.width as usize * info.height as usize)
        .collect();
    assert!(
        colours.len() > 200,
        "{}: the screenshot has {} colours: not drawn",
        png.display(),
        colours.len()
    );
}

/// A threshold that fails makes the test exit 99, as k6 does, and says
/// which; the bad records it sent are dead-lettered with their reasons and
/// the counts still reconcile.
#[test]
fn a_failed_threshold_exits_99() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad-mix.toml");
    std::fs::write(
        &scenario,
        "[scenarios.noisy]\nexecutor = \"constant-arrival-rate\"\nrate = 200\ntimeUnit = \"1s\"\n\
         duration = \"3s\"\ntags = { tenant = \"noisy\" }\n\n\
         [thresholds]\ndlq_rate = [\"rate<0.0001\"]\nlost_rate = [\"rate==0\"]\n\n\
         [logferry]\nbad_fraction = 0.05\n",
    )
    .unwrap();
    let out = lf(
        &dir.path().join("data"),
        &["loadtest", scenario.to_str().unwrap()],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(99), "{text}");
    assert!(text.contains("✗ 'rate<0.0001'"), "{text}");
    assert!(text.contains("✓ 'rate==0'"), "{text}");
    assert!(text.contains("balanced"), "{text}");
    let dlq = lf(&dir.path().join("data"), &["dlq", "ls", "--json"], &[]);
    let rows = json_of(&dlq);
    let reasons: std::collections::BTreeSet<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    for r in [
        "malformed_json",
        "missing_field",
        "ts_past",
        "unknown_tenant",
    ] {
        assert!(reasons.contains(r), "{reasons:?}");
    }
}

/// On the emulators: PutRecords into the tenant's Kinesis stream, the
/// daemon following it, GCS and the BigQuery emulator; every record
/// queryable within the guide's 30 s, PutRecords success counted.
#[test]
fn a_load_test_through_kinesis_gcs_and_bigquery() {
    let Some(e) = emulators() else { return };
    let dir = tempfile::tempdir().unwrap();
    let id = unique("lt").replace('_', "-").to_lowercase();
    let config = dir.path().join("lt.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nlake = \"{}/{id}/lake\"\nexport = \"{}/{id}/export\"\n\
             [aws]\nallow_http = true\n\
             [warehouse]\nkind = \"bigquery\"\npartitioning = \"day\"\n\
             [bigquery]\ndataset = \"{}\"\npoll_initial = \"20ms\"\n\
             # The emulator enforces no load job quota: a one-second micro-batch.\n\
             load_jobs_per_table_per_day = 200000\nload_jobs_per_project_per_day = 1000000\n\
             table_updates_per_10s = 20\n",
            e.lake,
            e.export,
            id.replace('-', "_")
        ),
    )
    .unwrap();
    let scenario = dir.path().join("e2e.toml");
    std::fs::write(
        &scenario,
        format!(
            "[scenarios.e2e]\nexecutor = \"constant-arrival-rate\"\nrate = 50\ntimeUnit = \"1s\"\n\
             duration = \"4s\"\ntags = {{ tenant = \"{id}\" }}\n\n\
             [thresholds]\ne2e_latency = [\"p(95)<30000\"]\nlost_rate = [\"rate==0\"]\n\
             put_records_success = [\"rate>0.999\"]\n"
        ),
    )
    .unwrap();
    let out = lf(
        &dir.path().join("data"),
        &[
            "--config",
            config.to_str().unwrap(),
            "loadtest",
            scenario.to_str().unwrap(),
            "--target",
            "emulators",
            "--json",
        ],
        &[],
    );
    let r = json_ok(&out);
    assert_eq!(r["reconciled"], true, "{r:#}");
    assert_eq!(r["put_records"][0], r["put_records"][1], "{r:#}");
    assert_eq!(r["loaded"].as_u64(), Some(200));
}

/// Debian's Prometheus scrapes the daemon: the target is up and the
/// catalogue's series are stored; promtool accepts the exposition.
#[test]
fn prometheus_scrapes_the_daemon_and_promtool_accepts_it() {
    let env = Env::new(DAEMON);
    let daemon = Daemon::start(&env, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = daemon.get("/metrics");
    assert_eq!(status, 200);
    let mut check = Command::new(tool("LOGFERRY_PROMTOOL", "promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: logferry\n    \
             static_configs:\n      - targets: ['{}']\n",
            daemon.addr
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut prom = Command::new(tool("LOGFERRY_PROMETHEUS", "prometheus"))
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    let mut last = String::new();
    let ok = loop {
        if t0.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
        if TcpStream::connect(&addr).is_err() {
            continue;
        }
        let (_, up) = http_get(&addr, "/api/v1/query?query=up%7Bjob%3D%22logferry%22%7D");
        let (_, kpi) = http_get(&addr, "/api/v1/query?query=logferry_kpi_status");
        last = format!("{up}\n{kpi}");
        let up: Value = serde_json::from_str(&up).unwrap_or_default();
        let kpi: Value = serde_json::from_str(&kpi).unwrap_or_default();
        let is_up = up["data"]["result"][0]["value"][1] == "1";
        let kpis = kpi["data"]["result"].as_array().map_or(0, Vec::len);
        if is_up && kpis == 6 {
            break true;
        }
    };
    let (_, names) = http_get(&addr, "/api/v1/label/__name__/values");
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = daemon.term();
    assert!(ok, "Prometheus did not scrape the daemon:\n{last}");
    for n in [
        "logferry_memory_in_use_bytes",
        "logferry_memory_pressure_ratio",
        "logferry_windows",
        "logferry_kpi_status",
    ] {
        assert!(names.contains(n), "{n} not stored: {names}");
    }
}

/// The alerting rules pass `promtool check rules`; the alarms pass
/// cfn-lint; the dashboards are the shapes their services take.
#[test]
fn dashboards_and_alerts_pass_their_checkers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |what: &str| {
        let out = lf(&data, &["dashboards", what], &[]);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, run("--alerts")).unwrap();
    let checked = Command::new(tool("LOGFERRY_PROMTOOL", "promtool"))
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let alarms = dir.path().join("alarms.json");
    std::fs::write(&alarms, run("--alarms")).unwrap();
    if emulators().is_some() {
        let lint = Command::new(std::env::var("LOGFERRY_CFN_LINT").unwrap())
            .arg(&alarms)
            .output()
            .unwrap();
        assert!(
            lint.status.success(),
            "cfn-lint: {}",
            String::from_utf8_lossy(&lint.stdout)
        );
    }
    let cw: Value = serde_json::from_str(&run("--cloudwatch")).unwrap();
    assert!(cw["widgets"].as_array().unwrap().len() >= 4);
    let gcp: Value = serde_json::from_str(&run("--gcp")).unwrap();
    assert!(!gcp["mosaicLayout"]["tiles"].as_array().unwrap().is_empty());
}

/// The Lambda handlers print EMF lines that the format's JSON schema
/// accepts, whose metrics and dimensions are all present, in the
/// configured namespace with the Component, Environment and Tenant
/// dimensions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_handlers_print_valid_emf() {
    let env = Env::new("[metrics]\nnamespace = \"Acme/Logs\"\nenvironment = \"staging\"\n");
    let ctx = env.ctx().await;
    let envelope = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": logferry_forward::workload::tenant_account(1),
        "logGroup": "/tenants/tenant-0001/api",
        "logStream": "s",
        "subscriptionFilters": ["f"],
        "logEvents": [
            {"id": "a", "timestamp": NOW_MS - 1000, "message": "{\"level\":\"INFO\",\"service\":\"api\",\"message\":\"hi\"}"},
            {"id": "b", "timestamp": NOW_MS - 1000, "message": "not json"},
        ],
    });
    let event = serde_json::json!({"awslogs": {"data": logferry::lambda::awslogs_data(&envelope.to_string()).unwrap()}});
    let (r, mut lines) = logferry::lambda::handle_measured(&ctx, event).await;
    r.unwrap();
    let schedule = serde_json::json!({"version":"0","id":"1","detail-type":"Scheduled Event","source":"aws.events",
        "account":"123456789012","time":"2026-01-15T12:00:00Z","region":"us-east-1","resources":[],"detail":{}});
    let (r, more) = logferry::lambda::handle_measured(&ctx, schedule).await;
    r.unwrap();
    lines.extend(more);
    let docs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for d in &docs {
        logferry_observe::emf::check_references(d).unwrap();
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Acme/Logs");
        assert_eq!(d["Environment"], "staging");
    }
    let tenant = docs
        .iter()
        .find(|d| d["Tenant"] == "tenant-0001" && d.get("RecordsReceived").is_some())
        .unwrap();
    assert_eq!(tenant["RecordsDeadLettered"], 1.0);
    assert!(
        docs.iter()
            .any(|d| d.get("EndToEndLatency").is_some_and(Value::is_array))
    );
    // The format's schema, checked by Python's jsonschema.
    if emulators().is_none() {
        return;
    }
    let file = env.data_dir().join("emf.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/it/data/emf.schema.json"
    );
    let out = Command::new(std::env::var("LOGFERRY_TOOLS_PYTHON").unwrap())
        .args([
            "-c",
            "import json,sys,jsonschema\n\
             s=json.load(open(sys.argv[1]))\n\
             n=0\n\
             for l in open(sys.argv[2]):\n    jsonschema.validate(json.loads(l), s); n+=1\n\
             print(n)",
            schema,
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        lines.len().to_string()
    );
}
