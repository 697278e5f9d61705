//! The Lambda handlers, called with events shaped exactly as AWS sends them.

use base64::Engine;
use serde_json::{Value, json};

use logferry::lambda::{EventKind, handle, handle_kinesis, handle_logs, kind};
use logferry_forward::workload::tenant_account;

use crate::common::*;

fn logs_event(tenant: usize, events: &[(&str, &str)]) -> Value {
    let evs: Vec<Value> = events
        .iter()
        .map(|(id, msg)| json!({"id": id, "timestamp": NOW_MS - 600_000, "message": msg}))
        .collect();
    let envelope = json!({
        "messageType": "DATA_MESSAGE",
        "owner": tenant_account(tenant),
        "logGroup": format!("/tenants/tenant-{tenant:04}/api"),
        "logStream": "2026/01/15/[$LATEST]abc",
        "subscriptionFilters": ["forwarder"],
        "logEvents": evs,
    });
    json!({"awslogs": {"data": logferry::lambda::awslogs_data(&envelope.to_string()).unwrap()}})
}

fn record(msg: &str) -> String {
    format!(
        r#"{{"timestamp":{},"level":"INFO","service":"api","message":"{msg}"}}"#,
        NOW_MS - 600_000
    )
}

fn kinesis_event(stream: &str, records: &[(&str, String)]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let recs: Vec<Value> = records
        .iter()
        .map(|(seq, data)| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "pk",
                    "sequenceNumber": seq,
                    "data": b64.encode(data),
                    "approximateArrivalTimestamp": (NOW_MS as f64) / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"),
            })
        })
        .collect();
    json!({"Records": recs})
}

#[test]
fn events_are_told_apart_by_shape() {
    assert_eq!(kind(&logs_event(0, &[])), Some(EventKind::Logs));
    assert_eq!(
        kind(&kinesis_event("s", &[("1", "x".into())])),
        Some(EventKind::Kinesis)
    );
    let schedule = json!({"version":"0","id":"53dc4d37","detail-type":"Scheduled Event","source":"aws.events",
        "account":"123456789012","time":"2015-10-08T16:53:06Z","region":"us-east-1",
        "resources":["arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"],"detail":{}});
    assert_eq!(kind(&schedule), Some(EventKind::Schedule));
    assert_eq!(kind(&json!({"hello": 1})), None);
}

/// A CloudWatch Logs subscription event lands its records (bad ones in the
/// DLQ); the same event again (a Lambda retry) lands nothing new; a
/// scheduled event then runs the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_schedule_events() {
    let env = Env::new("");
    let ctx = env.ctx().await;
    let msg = |m: &str| format!(r#"{{"level":"INFO","service":"api","message":"{m}"}}"#);
    let ev = logs_event(
        1,
        &[("e1", &msg("one")), ("e2", &msg("two")), ("e3", "not json")],
    );
    let out = handle_logs(&ctx, &ev).await.unwrap();
    assert_eq!((out.decode.accepted, out.decode.dead_lettered), (2, 1));
    assert!(out.objects >= 2);
    let again = handle_logs(&ctx, &ev).await.unwrap();
    assert_eq!((again.objects, again.objects_existing), (0, out.objects));
    let schedule = json!({"version":"0","id":"1","detail-type":"Scheduled Event","source":"aws.events",
        "account":"123456789012","time":"2026-01-15T12:00:00Z","region":"us-east-1","resources":[],"detail":{}});
    let r = handle(&ctx, schedule).await.unwrap();
    assert_eq!(r["worked"], 1);
    assert_eq!(
        env.scalar("SELECT count(*) FROM warehouse WHERE tenant_id = 'tenant-0001'")
            .await,
        2
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM dlq WHERE reason = 'malformed_json'")
            .await,
        1
    );
    assert!(handle(&ctx, json!({"nope": true})).await.is_err());
}

/// A Kinesis event lands records under their stream's tenant (event ids are
/// shard and sequence number), a record of an unknown stream is refused,
/// and a batch that cannot be written is reported as failed from its first
/// record so that Lambda retries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_events_report_batch_item_failures() {
    let env = Env::new("");
    let ctx = env.ctx().await;
    let ev = kinesis_event(
        "logs-tenant-0002",
        &[
            ("101", record("a")),
            ("102", record("b")),
            ("103", "{broken".into()),
        ],
    );
    let resp = handle_kinesis(&ctx, &ev).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    let unknown = kinesis_event("logs-nobody", &[("7", record("c"))]);
    assert!(
        handle_kinesis(&ctx, &unknown)
            .await
            .unwrap()
            .batch_item_failures
            .is_empty()
    );
    env.run().await;
    let ids = env
        .counts("SELECT event_id, count(*) FROM warehouse GROUP BY 1")
        .await;
    assert_eq!(
        ids.keys().cloned().collect::<Vec<_>>(),
        ["shardId-000000000000:101", "shardId-000000000000:102"]
    );
    let dlq = env
        .counts("SELECT reason || '@' || tenant_id, count(*) FROM dlq GROUP BY 1")
        .await;
    assert_eq!(dlq.get("malformed_json@tenant-0002"), Some(&1));
    assert_eq!(dlq.get("unknown_tenant@_unknown"), Some(&1));

    // A lake that refuses writes: the whole batch is reported failed.
    let broken = Env::new("");
    let lake = broken.data_dir().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    std::fs::write(lake.join("landing"), "a file where a folder should be").unwrap();
    let ctx = broken.ctx().await;
    let resp = handle_kinesis(&ctx, &ev).await.unwrap();
    let failed: Vec<_> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect();
    assert_eq!(failed, ["101"]);
    let body = serde_json::to_value(&resp).unwrap();
    assert_eq!(body["batchItemFailures"][0]["itemIdentifier"], "101");
}
