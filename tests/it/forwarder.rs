//! The whole chain from a client account's logs to BigQuery, on the
//! emulators: `PutLogEvents` into CloudWatch Logs (moto), its subscription
//! filter's payloads, the client-side forwarder (`logferry-forwarder`, run
//! as Lambda runs it against a local Runtime API) putting them into the
//! tenant's Kinesis stream through an assumed role and a proxy that fails
//! its calls, then `logferry forward --kinesis`, `run`, GCS and BigQuery.
//! What the forwarder cannot deliver is in its S3 dead-letter prefix, in a
//! form `logferry forward --format cloudwatch` replays.
//!
//! moto runs no Lambda functions (that needs Docker): the subscription
//! filter writes to a capture stream, and its records, which are the
//! payloads CloudWatch Logs hands a subscribed Lambda, become the
//! forwarder's events.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use logferry_lambdas::runtime_api::{Invoked, invoke};

use crate::common::*;
use crate::faultproxy::FaultProxy;

/// A binary of the workspace built beside `logferry` (the lean Lambdas).
fn sibling(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_logferry")).with_file_name(name);
    assert!(
        p.is_file(),
        "{} is not built (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// Every record of every shard of `stream`, as Lambda's `awslogs` events.
async fn captured(k: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    let shards = k.list_shards().stream_name(stream).send().await.unwrap();
    for s in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(s.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(i) = it {
            let r = k.get_records().shard_iterator(i).send().await.unwrap();
            for rec in r.records() {
                out.push(json!({"awslogs": {"data": b64.encode(rec.data().as_ref())}}));
            }
            if r.records().is_empty() {
                break;
            }
            it = r.next_shard_iterator;
        }
    }
    out
}

/// The time of the first log event of an `awslogs` event.
fn first_event_time(e: &Value) -> i64 {
    let gz = base64::engine::general_purpose::STANDARD
        .decode(e["awslogs"]["data"].as_str().unwrap())
        .unwrap();
    let mut json = Vec::new();
    logferry_forward::cwl::gunzip_bounded(&gz, 1 << 24, &mut json).unwrap();
    let v: Value = serde_json::from_slice(&json).unwrap();
    v["logEvents"][0]["timestamp"].as_i64().unwrap()
}

/// The forwarder's stdout: every line JSON, no colour codes.
fn json_lines(run: &Invoked) -> Vec<Value> {
    run.stdout
        .iter()
        .map(|l| {
            assert!(!l.contains('\u{1b}'), "colour codes in {l:?}");
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .collect()
}

/// One request of moto's recording as (role key, IAM action, body text).
fn recorded(line: &str) -> Option<(String, String, String)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let header = |name: &str| {
        v["headers"].as_object().and_then(|h| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str().map(str::to_string))
        })
    };
    let auth = header("authorization")?;
    let cred = auth.split("Credential=").nth(1)?;
    let mut scope = cred.split('/');
    let key = scope.next()?.to_string();
    let service = scope.nth(2)?.to_string();
    let body = match (v["body"].as_str(), v["body_encoded"].as_bool()) {
        (Some(b), Some(true)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        (Some(b), _) => b.to_string(),
        _ => String::new(),
    };
    let method = v["method"].as_str()?;
    let url = v["url"].as_str()?;
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    let path = path
        .split("://")
        .nth(1)
        .map_or(path, |r| r.find('/').map_or("/", |i| &r[i..]));
    let action = match service.as_str() {
        "kinesis" => format!("kinesis:{}", header("x-amz-target")?.rsplit('.').next()?),
        "sts" => format!(
            "sts:{}",
            body.split('&').find_map(|kv| kv.strip_prefix("Action="))?
        ),
        "s3" => {
            let object = path.trim_start_matches('/').contains('/');
            let q = |k: &str| {
                query
                    .split('&')
                    .any(|kv| kv == k || kv.starts_with(&format!("{k}=")))
            };
            let a = match method {
                "GET" | "HEAD" if !object || q("list-type") => "ListBucket",
                "GET" | "HEAD" => "GetObject",
                "PUT" | "POST" if q("delete") => "DeleteObject",
                "PUT" | "POST" => "PutObject",
                "DELETE" if q("uploadId") => "AbortMultipartUpload",
                "DELETE" => "DeleteObject",
                _ => return None,
            };
            format!("s3:{a}")
        }
        other => format!("{other}:{method} {path}"),
    };
    Some((key, action, format!("{url} {body}")))
}

#[test]
fn client_logs_reach_bigquery_through_the_forwarder() {
    if emulators().is_none() {
        return;
    }
    let tenant_stream = unique("fwd").replace('_', "-");
    let capture = format!("{tenant_stream}-capture");
    let group = format!("/tenants/tenant-0000/{tenant_stream}");
    let tenants = format!(
        "[[tenant]]\nid = \"tenant-0000\"\nstreams = [\"{tenant_stream}\"]\nlog_groups = [\"/tenants/tenant-0000/\"]\n"
    );
    let mut env = Env::with_tenants(Backend::Emulators, "", &tenants).unwrap();
    // moto accepts only events of the last 14 days: the clock is the real one.
    let now = chrono::Utc::now();
    env.vars.push((
        "LOGFERRY__FORWARD__REFERENCE_TIME".into(),
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ));
    let lake = emulators().unwrap().lake;
    let dlq = format!("{lake}/{}/forwarder-dlq", env.id);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (events, late) = rt.block_on(async {
        let settings = env.ctx().await.settings.clone();
        let k = logferry_forward::kinesis::client(&settings.aws).await;
        let capture_arn = create_streams(&k, &[tenant_stream.clone(), capture.clone()])
            .await
            .remove(1);
        let logs = subscribed_log_group(&group, "logferry-forwarder", capture_arn).await;
        // Four PutLogEvents calls of 150 events; one event is not JSON.
        let base = now.timestamp_millis() - 120_000;
        for call in 0..4i64 {
            let events = (0..150i64).map(|i| {
                let n = call * 150 + i;
                let message = if n == 77 {
                    "not json at all".to_string()
                } else {
                    format!(
                        r#"{{"level":"INFO","service":"api","message":"event {n} {}","timestamp":{}}}"#,
                        "x".repeat(200),
                        base + n
                    )
                };
                (base + n, message)
            });
            put_log_events(&logs, &group, events).await;
        }
        let mut events = captured(&k, &capture).await;
        assert_eq!(events.len(), 4, "one subscription payload per call");
        // In the order of the calls (the capture stream's shards are read
        // one after the other), so that the proxy's faults fall on the same
        // calls every run.
        events.sort_by_key(first_event_time);
        // The last payload goes to a forwarder whose stream does not exist.
        let late = events.pop().unwrap();
        (events, late)
    });

    // 1. The forwarder, its Kinesis calls through a proxy that fails 40% of
    // them (throttles, 500s after the write, dropped connections, stalls).
    let moto = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let proxy = FaultProxy::start(
        moto.trim_start_matches("http://").parse().unwrap(),
        // This seed's faults, in order: a throttle, a pass, a 500 after the
        // write (a redelivery), a throttle, ...
        22,
        Duration::from_secs(3),
    );
    proxy.set_rate(0.4);
    // Each program signs with a key of its own, so that moto's recording
    // tells whose calls are whose (the tenant writer's are signed with the
    // credentials moto's STS hands out for the assumed role).
    let forwarder_key = format!("AKIAFWD{}", env.id.to_uppercase().replace(['_', '-'], ""));
    let runner_key = format!("AKIARUN{}", env.id.to_uppercase().replace(['_', '-'], ""));
    env.vars
        .push(("AWS_ACCESS_KEY_ID".into(), runner_key.clone()));
    let recording = std::env::var("LOGFERRY_MOTO_RECORDING").ok();
    let moto_addr = moto.trim_start_matches("http://").to_string();
    if recording.is_some() {
        let (status, _) = http_request("POST", &moto_addr, "/moto-api/recorder/start-recording");
        assert_eq!(status, 200);
    }
    let fwd_env = |stream: &str| {
        vec![
            ("AWS_ACCESS_KEY_ID".to_string(), forwarder_key.clone()),
            ("LOGFERRY_FORWARDER_STREAM".to_string(), stream.to_string()),
            (
                "LOGFERRY_FORWARDER_ROLE_ARN".to_string(),
                "arn:aws:iam::123456789012:role/logferry-forwarder-tenant-0000".to_string(),
            ),
            (
                "LOGFERRY_FORWARDER_EXTERNAL_ID".to_string(),
                "tenant-0000".to_string(),
            ),
            ("LOGFERRY_FORWARDER_DLQ".to_string(), dlq.clone()),
            (
                "LOGFERRY_FORWARDER_RECORD_BYTES".to_string(),
                "8192".to_string(),
            ),
            (
                "LOGFERRY_FORWARDER_MAX_ATTEMPTS".to_string(),
                "30".to_string(),
            ),
            (
                "LOGFERRY_FORWARDER_BACKOFF_MS".to_string(),
                "10".to_string(),
            ),
            (
                "LOGFERRY_FORWARDER_TIMEOUT_MS".to_string(),
                "1000".to_string(),
            ),
            ("LOGFERRY_TENANT".to_string(), "tenant-0000".to_string()),
            ("AWS_ENDPOINT_URL_KINESIS".to_string(), proxy.url()),
            ("LOGFERRY_LOG".to_string(), "info".to_string()),
        ]
    };
    let run = rt
        .block_on(invoke(
            &sibling("logferry-forwarder"),
            &fwd_env(&tenant_stream),
            events,
            Duration::from_secs(120),
        ))
        .unwrap();
    assert_eq!(run.exited, None, "{run:#?}");
    assert_eq!(run.outcomes.len(), 3, "{run:#?}");
    let (mut delivered, mut throttled, mut retried) = (0, 0, 0);
    for o in &run.outcomes {
        assert!(o.ok, "{o:?}");
        let b = &o.body;
        assert_eq!(b["events"], 150, "{b:#}");
        assert_eq!(b["delivered_events"], 150, "every event delivered: {b:#}");
        assert_eq!(b["dead_lettered_records"], 0, "{b:#}");
        assert!(
            b["records"].as_u64().unwrap() >= 4,
            "packed in 8 KiB records: {b:#}"
        );
        delivered += b["delivered_records"].as_u64().unwrap();
        throttled += b["throttled"].as_u64().unwrap();
        retried += b["retried"].as_u64().unwrap();
    }
    eprintln!(
        "forwarder: {delivered} records delivered, {throttled} throttled, {retried} sent again; \
         proxy: {}",
        proxy.counts.summary()
    );
    assert!(proxy.counts.faults() > 0, "{}", proxy.counts.summary());
    assert!(
        retried > 0,
        "the faults were retried: {}",
        proxy.counts.summary()
    );
    assert!(throttled > 0, "{}", proxy.counts.summary());
    // Logs: JSON lines; those of an invocation carry its request id.
    let lines = json_lines(&run);
    for o in &run.outcomes {
        assert!(
            lines
                .iter()
                .any(|l| l["message"] == "Forwarded."
                    && l["span"]["requestId"] == o.request_id.as_str()),
            "no log line with request id {}: {lines:#?}",
            o.request_id
        );
    }
    // Metrics: EMF documents the format accepts, counting what happened.
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 3, "{emf:#?}");
    for d in &emf {
        logferry_observe::emf::check_references(d).unwrap();
        assert_eq!(d["Component"], "Forwarder");
        assert_eq!(d["Tenant"], "tenant-0000");
        let lat = d["SubscriptionLatency"].as_array().unwrap();
        assert!(!lat.is_empty() && lat.iter().all(|v| v.as_f64().unwrap() >= 0.0));
    }
    let sum = |k: &str| emf.iter().map(|d| d[k].as_f64().unwrap()).sum::<f64>();
    assert_eq!(sum("PutRecordsOk") as u64, delivered);
    assert_eq!(sum("PutRecordsThrottled") as u64, throttled);
    assert_eq!(sum("PutRecordsFailed"), 0.0);

    // 2. A forwarder pointed at a stream that does not exist: refused for
    // good, dead-lettered in S3, not lost.
    let broken = rt
        .block_on(invoke(
            &sibling("logferry-forwarder"),
            &fwd_env(&format!("{tenant_stream}-missing")),
            vec![late],
            Duration::from_secs(60),
        ))
        .unwrap();
    assert_eq!(broken.outcomes.len(), 1, "{broken:#?}");
    let b = &broken.outcomes[0].body;
    assert_eq!(b["delivered_events"], 0, "{b:#}");
    assert_eq!(b["dead_lettered_events"], 150, "{b:#}");
    let keys: Vec<String> = b["dead_letter_objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 1, "{b:#}");
    assert!(keys[0].contains("/rejected/"), "{keys:?}");
    let dead = json_lines(&broken);
    let e = dead
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("{dead:#?}"));
    assert!(
        e["last_error"]
            .as_str()
            .unwrap()
            .contains("ResourceNotFound"),
        "{e:#}"
    );
    assert_eq!(
        dead.iter()
            .find(|l| l.get("_aws").is_some())
            .map(|d| d["PutRecordsFailed"].as_f64()),
        Some(Some(b["dead_lettered_records"].as_f64().unwrap()))
    );
    // The dead-letter object, replayed as a subscription file.
    let file = env.data_dir().join("forwarder-dlq.cwl");
    rt.block_on(async {
        let settings = env.ctx().await.settings.clone();
        let loc = logferry_core::storage::Location::open_with(&dlq, &settings.aws).unwrap();
        let bytes = logferry_core::storage::get_bytes(
            loc.store.as_ref(),
            &object_store::path::Path::from(keys[0].as_str()),
        )
        .await
        .unwrap();
        std::fs::write(&file, bytes).unwrap();
    });

    // 3. logferry: the tenant stream, the replayed dead letters, the run.
    let out = crate::procs::step_ok(
        &env,
        &crate::procs::strings(&["forward", "--kinesis", "--once", "--json"]),
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    assert!(
        r["decode"]["accepted"].as_u64().unwrap() >= 449,
        "the three payloads' events, redeliveries included: {r:#}"
    );
    assert!(r["decode"]["dead_lettered"].as_u64().unwrap() >= 1, "{r:#}");
    let replay = crate::procs::step_ok(
        &env,
        &crate::procs::strings(&[
            "forward",
            "--input",
            file.to_str().unwrap(),
            "--format",
            "cloudwatch",
            "--json",
        ]),
    );
    let r: Value = serde_json::from_str(&replay).unwrap();
    assert_eq!(r["decode"]["accepted"], 150, "{r:#}");
    crate::procs::step_ok(&env, &crate::procs::strings(&["run"]));
    if let Some(file) = &recording {
        http_request("POST", &moto_addr, "/moto-api/recorder/stop-recording");
        every_call_is_granted(file, &forwarder_key, &runner_key, &tenant_stream, &env.id);
    }
    let rec = crate::procs::outcome(&env);
    assert_eq!(
        rec.tenants["tenant-0000"]["loaded"], 599,
        "every event but the one that is not JSON, once: {:#}",
        rec.tenants
    );
    let t = &rec.tenants["tenant-0000"];
    assert_eq!(t["dead_lettered"], 1, "{t:#}");
    assert_eq!(
        t["received"].as_u64(),
        Some(599 + 1 + t["duplicates"].as_u64().unwrap()),
        "received = loaded + dead-lettered + duplicates: {t:#}"
    );
    assert_eq!(rec.rows.len(), 599);
    assert!(rec.dlq.contains("malformed_json"), "{}", rec.dlq);
}

/// What the forwarder, the tenant writer role and the runner called on moto
/// while recording, each within what its rendered role grants.
fn every_call_is_granted(file: &str, forwarder: &str, runner: &str, stream: &str, id: &str) {
    use logferry::deploy::iam::{CALLS, Role};
    use std::collections::{BTreeMap, BTreeSet};
    let text = std::fs::read_to_string(file).unwrap();
    let mut seen: BTreeMap<Role, BTreeSet<String>> = BTreeMap::new();
    for (key, action, what) in text.lines().filter_map(recorded) {
        let role = if key == forwarder {
            Role::ClientForwarder
        } else if key == runner {
            Role::Runner
        } else if key.starts_with("ASIA") && what.contains(stream) {
            Role::TenantWriter
        } else {
            continue;
        };
        // The runner's S3 calls of this test are under its own prefix.
        if role == Role::Runner && action.starts_with("s3:") && !what.contains(id) {
            continue;
        }
        seen.entry(role).or_default().insert(action);
    }
    eprintln!("calls recorded by role: {seen:?}");
    for role in [Role::ClientForwarder, Role::TenantWriter, Role::Runner] {
        let calls = seen.get(&role).cloned().unwrap_or_default();
        assert!(!calls.is_empty(), "no call of {role:?} recorded: {seen:?}");
        for a in &calls {
            assert!(
                CALLS
                    .iter()
                    .any(|c| c.action == a && c.roles.contains(&role)),
                "{role:?} called {a}, which its role does not grant"
            );
        }
    }
    let writer = &seen[&Role::TenantWriter];
    assert!(writer.contains("kinesis:PutRecords"), "{writer:?}");
    assert!(seen[&Role::ClientForwarder].contains("sts:AssumeRole"));
    assert!(
        seen[&Role::ClientForwarder].contains("s3:PutObject"),
        "the dead letters"
    );
    assert!(seen[&Role::Runner].contains("kinesis:GetRecords"));
}
