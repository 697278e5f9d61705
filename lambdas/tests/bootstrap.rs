//! The lean Lambda binaries as Lambda runs them: a fresh process, the
//! Runtime API on loopback (`runtime_api::invoke`), events shaped as AWS
//! sends them. Their logs must be one JSON object per line with the request
//! id, their metrics EMF.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};

use logferry_lambdas::lander::awslogs_data;
use logferry_lambdas::runtime_api::{Invoked, invoke};

fn lines_are_json(run: &Invoked) -> Vec<Value> {
    run.stdout
        .iter()
        .map(|l| {
            assert!(!l.contains('\u{1b}'), "colour codes in {l:?}");
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))
        })
        .collect()
}

fn logs_event(now_ms: i64, ids: std::ops::Range<u64>, bad: Option<u64>) -> Value {
    let events: Vec<Value> = ids
        .map(|i| {
            let message = if Some(i) == bad {
                "not json".to_string()
            } else {
                json!({"timestamp": now_ms - 60_000, "level": "INFO", "service": "api",
                       "message": format!("event {i}")})
                .to_string()
            };
            json!({"id": format!("{:056}", i), "timestamp": now_ms - 60_000, "message": message})
        })
        .collect();
    let envelope = json!({
        "messageType": "DATA_MESSAGE",
        "owner": "111122223333",
        "logGroup": "/tenants/acme/api",
        "logStream": "2026/12/01/[$LATEST]abc",
        "subscriptionFilters": ["logferry"],
        "logEvents": events,
    });
    json!({"awslogs": {"data": awslogs_data(&envelope.to_string()).unwrap()}})
}

#[tokio::test]
async fn the_lander_lands_answers_and_logs_json_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lander.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nlake = \"{}\"\n[[tenant]]\nid = \"acme\"\nlog_groups = [\"/tenants/acme/\"]\n",
            dir.path().join("lake").display()
        ),
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let event = logs_event(now, 0..50, Some(7));
    let schedule = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let env = vec![
        ("LOGFERRY_CONFIG".to_string(), config.display().to_string()),
        (
            "LOGFERRY_DATA_DIR".to_string(),
            dir.path().join("data").display().to_string(),
        ),
    ];
    let run = invoke(
        std::path::Path::new(env!("CARGO_BIN_EXE_logferry-lander")),
        &env,
        vec![event.clone(), event, schedule],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(run.exited, None, "{:#?}", run);
    assert_eq!(run.outcomes.len(), 3, "{:#?}", run);
    let first = &run.outcomes[0];
    assert!(first.ok, "{first:?}");
    assert_eq!(first.body["decode"]["accepted"], 49, "{first:?}");
    assert_eq!(first.body["decode"]["dead_lettered"], 1, "{first:?}");
    assert!(first.body["objects"].as_u64().unwrap() >= 1, "{first:?}");
    // The retried copy finds its objects: nothing is landed twice.
    let again = &run.outcomes[1];
    assert_eq!(again.body["objects"], 0, "{again:?}");
    assert_eq!(again.body["objects_existing"], first.body["objects"]);
    // Schedules are the scheduled runner's, and the error says so.
    let refused = &run.outcomes[2];
    assert!(!refused.ok);
    assert!(
        refused.body.to_string().contains("logferry-lambda"),
        "{refused:?}"
    );
    let lines = lines_are_json(&run);
    // EMF: one document per tenant and the invocation's, per event.
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert!(emf.iter().any(|d| d["RecordsAccepted"] == 49.0), "{emf:#?}");
    // Logs within an invocation carry its request id.
    let failed = lines
        .iter()
        .find(|l| l["message"] == "Invocation failed.")
        .unwrap_or_else(|| panic!("no failure logged: {lines:#?}"));
    assert_eq!(
        failed["span"]["requestId"], refused.request_id,
        "{failed:#}"
    );
    assert!(run.cold_start_ms.is_some() && run.init_ms.is_some());
    eprintln!(
        "lander (debug build): init {:.1} ms, cold start {:.1} ms",
        run.init_ms.unwrap_or_default(),
        run.cold_start_ms.unwrap_or_default()
    );
}

#[tokio::test]
async fn a_forwarder_without_its_settings_says_which_and_exits() {
    let run = invoke(
        std::path::Path::new(env!("CARGO_BIN_EXE_logferry-forwarder")),
        &[("LOGFERRY_FORWARDER_STREAM".into(), String::new())],
        vec![json!({})],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(run.exited.is_some(), "{run:#?}");
    assert!(run.outcomes.is_empty());
    let lines = lines_are_json(&run);
    let err = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("LOGFERRY_FORWARDER_STREAM"),
        "{err:#}"
    );
}
