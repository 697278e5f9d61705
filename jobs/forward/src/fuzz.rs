//! The decoders' fuzz suite (property tests): whatever the bytes, nothing
//! panics and every item is accounted for. Each item a decoder is handed
//! ends accepted, refused (with a reason) or counted as a control message;
//! accepted records belong to the tenant of their source, within the
//! configured time range and size limits.
//!
//! `PROPTEST_CASES` sets the cases per target (256 by default); for a long
//! run: `PROPTEST_CASES=100000 cargo test -p logferry-forward --release fuzz`.

use std::io::Write;

use base64::Engine;
use proptest::prelude::*;

use logferry_core::config::{Config, ForwardSettings, TenantConfig, TenantRegistry};

use crate::batch::{DlqRow, LandingRow};
use crate::decode::{Decoder, Emit, ItemCtx, Pos};

const NOW_US: i64 = 1_768_478_400_000_000;

fn forward_settings() -> ForwardSettings {
    let (config, _) = Config::load(None, Vec::new()).unwrap();
    let mut f = config
        .validate(std::path::Path::new("unused"))
        .unwrap()
        .forward;
    // Small limits, so that random inputs reach them.
    f.max_message_bytes = 64;
    f.max_record_bytes = 4096;
    f.max_envelope_bytes = 16384;
    f.max_envelope_events = 20;
    f
}

fn tenants() -> TenantRegistry {
    let t = |i: u32| TenantConfig {
        id: format!("tenant-{i}"),
        streams: vec![format!("logs-{i}")],
        log_groups: vec![format!("/t/{i}/")],
        accounts: if i == 1 {
            vec!["111111111111".into()]
        } else {
            vec![]
        },
    };
    TenantRegistry::new(&[t(0), t(1)]).unwrap()
}

/// Counts outcomes and checks every accepted record.
#[derive(Default)]
struct Outcomes {
    accepted: u64,
    refused: u64,
    control: u64,
    broken: Vec<String>,
}

impl Outcomes {
    fn items(&self) -> u64 {
        self.accepted + self.refused + self.control
    }
}

impl Emit for Outcomes {
    fn accept(&mut self, tenant: &logferry_core::config::Tenant, row: &LandingRow<'_, '_>) {
        self.accepted += 1;
        let r = row.record;
        let day_us = 86_400_000_000;
        if row.tenant_id != tenant.id.as_str() {
            self.broken
                .push(format!("accepted for {} as {}", tenant.id, row.tenant_id));
        }
        if r.timestamp_us < NOW_US - 14 * day_us || r.timestamp_us > NOW_US + 15 * 60_000_000 {
            self.broken
                .push(format!("accepted time {}", r.timestamp_us));
        }
        if r.message.len() > 64 || r.level.is_empty() || r.service.is_empty() {
            self.broken.push(format!("accepted {:?}", r.message));
        }
        if row.event_id.is_empty() {
            self.broken.push("accepted without an event id".into());
        }
        if !row.attributes.is_empty()
            && serde_json::from_str::<serde::de::IgnoredAny>(row.attributes).is_err()
        {
            self.broken
                .push(format!("attributes are not JSON: {}", row.attributes));
        }
    }

    fn reject(&mut self, row: &DlqRow<'_>) {
        self.refused += 1;
        if row.reason.is_empty() || row.detail.is_empty() {
            self.broken
                .push(format!("refused without a reason: {:?}", row.detail));
        }
    }

    fn control(&mut self) {
        self.control += 1;
    }
}

fn run(f: impl FnOnce(&mut Decoder<'_>, &ItemCtx<'_>, &mut Outcomes)) -> Outcomes {
    let settings = forward_settings();
    let reg = tenants();
    let mut d = Decoder::new(&settings, &reg, NOW_US);
    let ctx = ItemCtx {
        input: "fuzz",
        ingest_us: NOW_US,
    };
    let mut out = Outcomes::default();
    f(&mut d, &ctx, &mut out);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn b64(bytes: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into_bytes()
}

/// JSON values of every kind, nasty ones included.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| serde_json::to_string(&x).unwrap_or_else(|_| "1e999".into())),
        Just("1e400".to_string()),
        Just("-0".to_string()),
        Just("18446744073709551616".to_string()),
        Just(format!("{}", NOW_US / 1000 - 3_600_000)),
        Just("\"2026-01-15T11:00:00Z\"".to_string()),
        Just("\"2026-01-15T11:00:00.123456789+05:30\"".to_string()),
        Just("\"INFO\"".to_string()),
        Just("\"warn\"".to_string()),
        Just("\"api\"".to_string()),
        Just("\"tenant-0\"".to_string()),
        Just("\"tenant-1\"".to_string()),
        Just("\"logs-0\"".to_string()),
        Just("\"logs-1\"".to_string()),
        Just("\"\"".to_string()),
        Just("\"\\u0000\\ud800\"".to_string()),
        ".{0,80}".prop_map(|s: String| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..5).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

/// Keys: the schema's, and others (quoted JSON strings).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"timestamp\"".to_string()),
        Just("\"level\"".to_string()),
        Just("\"service\"".to_string()),
        Just("\"message\"".to_string()),
        Just("\"stream\"".to_string()),
        Just("\"tenant_id\"".to_string()),
        Just("\"request_id\"".to_string()),
        Just("\"trace_id\"".to_string()),
        Just("\"source_account\"".to_string()),
        "[a-z_]{1,8}".prop_map(|s: String| format!("\"{s}\"")),
    ]
}

/// A record: mostly the schema's fields with plausible values, then
/// random fields (duplicates included).
fn record() -> impl Strategy<Value = String> {
    let good = format!(
        r#""stream":"logs-0","timestamp":{},"level":"INFO","service":"api","message":"m""#,
        NOW_US / 1000 - 60_000
    );
    (any::<bool>(), prop::collection::vec((key(), value()), 0..8)).prop_map(move |(base, kv)| {
        let mut parts: Vec<String> = if base { vec![good.clone()] } else { vec![] };
        parts.extend(kv.into_iter().map(|(k, v)| format!("{k}:{v}")));
        format!("{{{}}}", parts.join(","))
    })
}

fn event() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("\"1\"".to_string()), value()],
        prop_oneof![Just(format!("{}", NOW_US / 1000 - 60_000)), value()],
        prop_oneof![
            record().prop_map(|r| serde_json::to_string(&r).unwrap()),
            value()
        ],
    )
        .prop_map(|(id, ts, msg)| format!(r#"{{"id":{id},"timestamp":{ts},"message":{msg}}}"#))
}

fn envelope() -> impl Strategy<Value = (String, usize)> {
    (
        prop_oneof![
            Just("\"DATA_MESSAGE\"".to_string()),
            Just("\"CONTROL_MESSAGE\"".to_string()),
            value()
        ],
        prop_oneof![
            Just("\"111111111111\"".to_string()),
            Just("\"222222222222\"".to_string()),
            value()
        ],
        prop_oneof![
            Just("\"/t/0/app\"".to_string()),
            Just("\"/t/1/app\"".to_string()),
            Just("\"/t/2/app\"".to_string()),
            value()
        ],
        prop::collection::vec(event(), 0..25),
    )
        .prop_map(|(kind, owner, group, events)| {
            let n = events.len();
            (
                format!(
                    r#"{{"messageType":{kind},"owner":{owner},"logGroup":{group},"logStream":"s","logEvents":[{}]}}"#,
                    events.join(",")
                ),
                n,
            )
        })
}

fn check(out: &Outcomes) -> Result<(), TestCaseError> {
    prop_assert!(out.broken.is_empty(), "{:?}", out.broken);
    Ok(())
}

proptest! {
    #[test]
    fn ndjson_any_bytes(line in prop::collection::vec(any::<u8>(), 0..600)) {
        let out = run(|d, ctx, o| d.ndjson_line(&line, ctx, Pos::Line(1), o));
        prop_assert_eq!(out.accepted + out.refused, 1);
        check(&out)?;
    }

    #[test]
    fn ndjson_records(line in record()) {
        let out = run(|d, ctx, o| d.ndjson_line(line.as_bytes(), ctx, Pos::Line(1), o));
        prop_assert_eq!(out.accepted + out.refused, 1);
        check(&out)?;
    }

    #[test]
    fn cloudwatch_any_line(line in prop::collection::vec(any::<u8>(), 0..600)) {
        let out = run(|d, ctx, o| d.cloudwatch_line(&line, ctx, 1, o));
        prop_assert_eq!(out.items(), 1);
        check(&out)?;
    }

    #[test]
    fn cloudwatch_any_gzip(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let line = b64(&gzip(&bytes));
        let out = run(|d, ctx, o| d.cloudwatch_line(&line, ctx, 1, o));
        prop_assert_eq!(out.items(), 1);
        check(&out)?;
    }

    #[test]
    fn cloudwatch_envelopes((json, events) in envelope()) {
        let line = b64(&gzip(json.as_bytes()));
        let out = run(|d, ctx, o| d.cloudwatch_line(&line, ctx, 1, o));
        // Refused or passed whole (one item), or one outcome per event.
        prop_assert!(out.items() == 1 || out.items() == events as u64, "{} items of {}", out.items(), events);
        check(&out)?;
    }

    #[test]
    fn kinesis_any_record(data in prop::collection::vec(any::<u8>(), 0..600), gz in any::<bool>()) {
        let data = if gz { gzip(&data) } else { data };
        let reg = tenants();
        let tenant = reg.all()[0].clone();
        let out = run(|d, ctx, o| d.kinesis_record(&data, &tenant, "logs-0", "shardId-0", "42", ctx, o));
        prop_assert!(out.items() >= 1);
        check(&out)?;
    }

    #[test]
    fn kinesis_envelopes((json, events) in envelope()) {
        let data = gzip(json.as_bytes());
        let reg = tenants();
        let tenant = reg.all()[0].clone();
        let out = run(|d, ctx, o| d.kinesis_record(&data, &tenant, "logs-0", "shardId-0", "42", ctx, o));
        prop_assert!(out.items() == 1 || out.items() == events as u64);
        check(&out)?;
    }
}
