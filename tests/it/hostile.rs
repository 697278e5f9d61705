//! Hostile input: a corpus of nasty items in both input formats, each with
//! the outcome it must have (dead-lettered with a reason, or loaded as
//! documented), forwarded by the binary with its default limits; nothing
//! panics, every count reconciles, and peak memory stays bounded (measured).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use base64::Engine;

use crate::common::*;
use crate::procs::*;

/// What must become of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Dead-lettered as a whole (the line), with this reason.
    Dlq(&'static str),
    /// Every event dead-lettered with this reason.
    DlqEach(&'static str, u64),
    /// Loaded: this many records for this tenant.
    Loaded(&'static str, u64),
}

struct Case {
    name: &'static str,
    line: Vec<u8>,
    expect: Expect,
}

const T0: &str = "tenant-0000";

fn ts() -> i64 {
    NOW_MS - 3_600_000
}

/// A good NDJSON record of tenant-0000, with `extra` fields spliced in
/// before the closing brace.
fn ndjson(extra: &str) -> Vec<u8> {
    format!(
        r#"{{"stream":"logs-tenant-0000","timestamp":{},"level":"INFO","service":"api","message":"hello"{extra}}}"#,
        ts()
    )
    .into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn b64(bytes: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into_bytes()
}

/// A CloudWatch Logs envelope of `events` (JSON objects), as its JSON.
fn envelope_json(group: &str, owner: &str, events: &[String]) -> String {
    format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"{owner}","logGroup":"{group}","logStream":"s","subscriptionFilters":["f"],"logEvents":[{}]}}"#,
        events.join(",")
    )
}

/// A fresh CloudWatch event id: no two events of the corpus are the same
/// (exact redeliveries would be removed by the aggregate stage).
fn event_id() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    format!("{:056}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn event(_n: usize, message: &str) -> String {
    format!(
        r#"{{"id":"{}","timestamp":{},"message":{}}}"#,
        event_id(),
        ts(),
        serde_json::to_string(message).unwrap()
    )
}

fn good_message(n: usize) -> String {
    format!(r#"{{"level":"INFO","service":"api","message":"event {n}"}}"#)
}

fn account() -> String {
    logferry_forward::workload::tenant_account(0)
}

fn cwl_line(group: &str, events: &[String]) -> Vec<u8> {
    b64(&gzip(envelope_json(group, &account(), events).as_bytes()))
}

/// A valid gzip stream of `gib` GiB of zeros, a few MB long: deflate
/// blocks of a MiB of zeros, each ended by a sync flush, are identical once
/// the window is full, so one is compressed and repeated.
fn gzip_bomb(gib: u64) -> Vec<u8> {
    use flate2::{Compress, Compression, Crc, FlushCompress};
    let mib = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let block = |c: &mut Compress, flush: FlushCompress, input: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 16);
        let mut consumed = 0;
        loop {
            let before_in = c.total_in();
            c.compress_vec(&input[consumed..], &mut out, flush).unwrap();
            consumed += (c.total_in() - before_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(1 << 16);
        }
    };
    let first = block(&mut c, FlushCompress::Sync, &mib);
    let steady = block(&mut c, FlushCompress::Sync, &mib);
    let again = block(&mut c, FlushCompress::Sync, &mib);
    assert_eq!(steady, again, "sync-flushed blocks of zeros differ");
    let tail = block(&mut c, FlushCompress::Finish, &[]);
    let blocks = gib * 1024;
    let mut crc = Crc::new();
    for _ in 0..blocks {
        crc.update(&mib);
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend_from_slice(&first);
    for _ in 1..blocks {
        out.extend_from_slice(&steady);
    }
    out.extend_from_slice(&tail);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&((blocks << 20) as u32).to_le_bytes());
    out
}

fn ndjson_corpus() -> Vec<Case> {
    let deep_arrays = format!(
        r#"{{"stream":"logs-tenant-0000","timestamp":{},"level":"INFO","service":"api","message":"m","deep":{}{}}}"#,
        ts(),
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_objects = format!(
        r#"{{"stream":"logs-tenant-0000","timestamp":{},"level":"INFO","service":"api","message":{}1{}}}"#,
        ts(),
        r#"{"a":"#.repeat(100_000),
        "}".repeat(100_000)
    );
    let mut invalid_utf8 = ndjson("");
    invalid_utf8.splice(100..100, [0xff, 0xfe]);
    let mut overlong = ndjson("");
    overlong.splice(100..100, [0xc0, 0x80]);
    let mut raw_nul = ndjson("");
    let at = raw_nul.windows(5).position(|w| w == b"hello").unwrap();
    raw_nul.insert(at + 2, 0);
    let ten_mb = format!(
        r#"{{"stream":"logs-tenant-0000","timestamp":{},"level":"INFO","service":"api","message":"{}"}}"#,
        ts(),
        "x".repeat(10 << 20)
    );
    let at_ts = |t: &str| {
        format!(
            r#"{{"stream":"logs-tenant-0000","timestamp":{t},"level":"INFO","service":"api","message":"m"}}"#
        )
        .into_bytes()
    };
    let with_stream = |s: &str| {
        format!(
            r#"{{"stream":{},"timestamp":{},"level":"INFO","service":"api","message":"m"}}"#,
            serde_json::to_string(s).unwrap(),
            ts()
        )
        .into_bytes()
    };
    use Expect::*;
    vec![
        Case {
            name: "stream name with ../",
            line: with_stream("../logs-tenant-0000"),
            expect: Dlq("unknown_tenant"),
        },
        Case {
            name: "stream name with a path after it",
            line: with_stream("logs-tenant-0000/../logs-tenant-0001"),
            expect: Dlq("unknown_tenant"),
        },
        Case {
            name: "stream name with backslashes",
            line: with_stream("logs-tenant-0000\\..\\x"),
            expect: Dlq("unknown_tenant"),
        },
        Case {
            name: "stream name with a NUL",
            line: with_stream("logs-tenant-0000\u{0}"),
            expect: Dlq("unknown_tenant"),
        },
        Case {
            name: "tenant claim with ../",
            line: ndjson(r#","tenant_id":"../tenant-0001""#),
            expect: Dlq("unknown_tenant"),
        },
        Case {
            name: "tenant claim with separators",
            line: ndjson(r#","tenant_id":"tenant-0000/../tenant-0001""#),
            expect: Dlq("unknown_tenant"),
        },
        Case {
            name: "tenant claim of another tenant",
            line: ndjson(r#","tenant_id":"tenant-0001""#),
            expect: Dlq("cross_tenant"),
        },
        Case {
            name: "invalid UTF-8",
            line: invalid_utf8,
            expect: Dlq("invalid_utf8"),
        },
        Case {
            name: "overlong UTF-8 encoding of NUL",
            line: overlong,
            expect: Dlq("invalid_utf8"),
        },
        Case {
            name: "raw NUL byte in a string",
            line: raw_nul,
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "escaped NUL in the message (kept)",
            line: ndjson(r#","note":"a\u0000b""#),
            expect: Loaded(T0, 1),
        },
        Case {
            name: "a lone NUL byte",
            line: vec![0],
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "arrays nested 100,000 deep",
            line: deep_arrays.into_bytes(),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "message: objects nested 100,000 deep",
            line: deep_objects.into_bytes(),
            expect: Dlq("wrong_type"),
        },
        Case {
            name: "timestamp 1e400",
            line: at_ts("1e400"),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "timestamp 2^64",
            line: at_ts("18446744073709551616"),
            expect: Dlq("ts_future"),
        },
        Case {
            name: "timestamp -2^63-1",
            line: at_ts("-9223372036854775809"),
            expect: Dlq("ts_past"),
        },
        Case {
            name: "timestamp 1e300",
            line: at_ts("1e300"),
            expect: Dlq("ts_future"),
        },
        Case {
            name: "timestamp i64::MAX",
            line: at_ts("9223372036854775807"),
            expect: Dlq("ts_future"),
        },
        Case {
            name: "timestamp -1e18",
            line: at_ts("-1000000000000000000"),
            expect: Dlq("ts_past"),
        },
        Case {
            name: "timestamp year 10000 as text",
            line: at_ts(r#""10000-01-01T00:00:00Z""#),
            expect: Dlq("wrong_type"),
        },
        Case {
            name: "attribute 1e400 (attributes kept as written)",
            line: ndjson(r#","n":1e400"#),
            expect: Loaded(T0, 1),
        },
        Case {
            name: "duplicate level",
            line: ndjson(r#","level":"ERROR""#),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "duplicate tenant claims",
            line: ndjson(r#","tenant_id":"tenant-0000","tenant_id":"tenant-0001""#),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "duplicate stream",
            line: ndjson(r#","stream":"logs-tenant-0001""#),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "10 MB line",
            line: ten_mb.into_bytes(),
            expect: Dlq("oversized_record"),
        },
        Case {
            name: "JSON array, not an object",
            line: b"[1,2,3]".to_vec(),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "JSON null",
            line: b"null".to_vec(),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "byte order mark",
            line: [&[0xef, 0xbb, 0xbf][..], &ndjson("")].concat(),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "two objects on a line",
            line: [ndjson(""), ndjson("")].concat(),
            expect: Dlq("malformed_json"),
        },
        Case {
            name: "a good record among them",
            line: ndjson(r#","request_id":"r-1""#),
            expect: Loaded(T0, 1),
        },
    ]
}

fn cloudwatch_corpus() -> Vec<Case> {
    let own = "/tenants/tenant-0000/app";
    let good = |n: usize| -> Vec<String> { (0..n).map(|i| event(i, &good_message(i))).collect() };
    let line = cwl_line(own, &good(3));
    let text = String::from_utf8(line.clone()).unwrap();
    let with_space = format!("{} {}", &text[..40], &text[40..]).into_bytes();
    let with_tab = format!("{}\t{}", &text[..40], &text[40..]).into_bytes();
    let unpadded = text.trim_end_matches('=').as_bytes().to_vec();
    let over_padded = format!("{text}==").into_bytes();
    let url_safe = base64::engine::general_purpose::URL_SAFE
        .encode(gzip(envelope_json(own, &account(), &good(3)).as_bytes()))
        .replace(['-', '_'], "-")
        .into_bytes();
    let mut bad_utf8_json = envelope_json(own, &account(), &good(1)).into_bytes();
    let at = bad_utf8_json
        .windows(5)
        .position(|w| w == b"event")
        .unwrap();
    bad_utf8_json.splice(at..at, [0xff]);
    let mut nul_json = envelope_json(own, &account(), &good(1)).into_bytes();
    nul_json.insert(at, 0);
    let deep_envelope = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"{}","logGroup":"{own}","logStream":"s","logEvents":{}{}}}"#,
        account(),
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_ignored = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"{}","logGroup":"{own}","logStream":"s","logEvents":[{}],"x":{}{}}}"#,
        account(),
        good(1).join(","),
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_message = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    let dup_group = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"{}","logGroup":"{own}","logGroup":"/tenants/tenant-0001/app","logStream":"s","logEvents":[{}]}}"#,
        account(),
        good(1).join(",")
    );
    let empty = envelope_json(own, &account(), &[]);
    let huge_event = vec![event(0, &"y".repeat(10 << 20))];
    // The message has no time of its own: the event's is taken.
    let ts_event = |t: &str| {
        format!(
            r#"{{"id":"{}","timestamp":{t},"message":{}}}"#,
            event_id(),
            serde_json::to_string(&good_message(7)).unwrap()
        )
    };
    let bomb = b64(&gzip_bomb(4));
    assert!(bomb.len() < 8 << 20, "bomb is {} bytes", bomb.len());
    use Expect::*;
    vec![
        Case {
            name: "log group with ../ under a tenant's prefix (prefix match: that tenant's)",
            line: cwl_line("/tenants/tenant-0000/../tenant-0001/app", &good(2)),
            expect: Loaded(T0, 2),
        },
        Case {
            name: "log group climbing out of the prefixes",
            line: cwl_line("/tenants/../tenants/tenant-0000/app", &good(2)),
            expect: Dlq("unknown_tenant"),
        },
        Case {
            name: "log group without the prefix's trailing slash",
            line: cwl_line("/tenants/tenant-0000", &good(2)),
            expect: Dlq("unknown_tenant"),
        },
        Case {
            name: "log group with a NUL",
            line: cwl_line("/tenants/tenant-0000/\\u0000", &good(2)),
            expect: Loaded(T0, 2),
        },
        Case {
            name: "owner account with ../",
            line: b64(&gzip(
                envelope_json(own, "../123456789012", &good(2)).as_bytes(),
            )),
            expect: Dlq("account_not_allowed"),
        },
        Case {
            name: "base64 with a space inside",
            line: with_space,
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "base64 with a tab inside",
            line: with_tab,
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "base64 without padding (accepted)",
            line: unpadded,
            expect: Loaded(T0, 3),
        },
        Case {
            name: "base64 with extra padding",
            line: over_padded,
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "base64 of another alphabet",
            line: url_safe,
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "base64 of one character",
            line: b"A".to_vec(),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "empty gzip stream",
            line: b64(&gzip(b"")),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "envelope with no events",
            line: b64(&gzip(empty.as_bytes())),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "gzip bomb: 4 GiB of zeros",
            line: bomb,
            expect: Dlq("envelope_too_large"),
        },
        Case {
            name: "envelope of 10,000 events (the limit)",
            line: cwl_line(own, &good(10_000)),
            expect: Loaded(T0, 10_000),
        },
        Case {
            name: "envelope of 10,001 events",
            line: cwl_line(own, &good(10_001)),
            expect: Dlq("envelope_too_large"),
        },
        Case {
            name: "invalid UTF-8 in the envelope",
            line: b64(&gzip(&bad_utf8_json)),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "raw NUL in the envelope",
            line: b64(&gzip(&nul_json)),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "logEvents nested 100,000 deep",
            line: b64(&gzip(deep_envelope.as_bytes())),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "unknown envelope field nested 100,000 deep (ignored)",
            line: b64(&gzip(deep_ignored.as_bytes())),
            expect: Loaded(T0, 1),
        },
        Case {
            name: "event message nested 100,000 deep",
            line: cwl_line(own, &[event(0, &deep_message)]),
            expect: DlqEach("malformed_json", 1),
        },
        Case {
            name: "event message in plain text (messages are JSON logs)",
            line: cwl_line(own, &[event(0, "plain words")]),
            expect: DlqEach("malformed_json", 1),
        },
        Case {
            name: "duplicate logGroup keys",
            line: b64(&gzip(dup_group.as_bytes())),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "10 MB event",
            line: cwl_line(own, &huge_event),
            expect: DlqEach("oversized_record", 1),
        },
        Case {
            name: "event timestamp 1e400",
            line: cwl_line(own, &[ts_event("1e400")]),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "event timestamp 2^64",
            line: cwl_line(own, &[ts_event("18446744073709551616")]),
            expect: Dlq("corrupt_envelope"),
        },
        Case {
            name: "event timestamp i64::MAX",
            line: cwl_line(own, &[ts_event("9223372036854775807")]),
            expect: DlqEach("ts_future", 1),
        },
        Case {
            name: "a good envelope among them",
            line: cwl_line(own, &good(2)),
            expect: Loaded(T0, 2),
        },
    ]
}

/// Forwards a corpus with the default limits; returns the binary's peak
/// RSS in KiB and the forward report.
fn forward_corpus(env: &Env, cases: &[Case], format: &str) -> (u64, serde_json::Value) {
    let path = env.data_dir().join(format!("hostile.{format}"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for c in cases {
        assert!(!c.line.contains(&b'\n'), "{} holds a newline", c.name);
        f.write_all(&c.line).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let mut child = logferry(
        env,
        &strings(&[
            "forward",
            "--json",
            "--input",
            path.to_str().unwrap(),
            "--format",
            format,
        ]),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let hwm = peak_rss_kib(&mut child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "forward failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (hwm, serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn hostile_inputs_end_as_documented() {
    let env = Env::new("");
    // The default limits, not the suite's lowered ones.
    std::fs::write(
        &env.config,
        format!(
            "[forward]\nreference_time = \"{NOW}\"\n\n{}",
            logferry_forward::workload::tenants_toml(TENANTS)
        ),
    )
    .unwrap();
    let mut report = Vec::new();
    let mut peaks = BTreeMap::new();
    let mut loaded_want: BTreeMap<&str, u64> = BTreeMap::new();
    let mut tried = 0;
    for (format, cases) in [
        ("ndjson", ndjson_corpus()),
        ("cloudwatch", cloudwatch_corpus()),
    ] {
        let (hwm, fwd) = forward_corpus(&env, &cases, format);
        peaks.insert(format, hwm);
        // Per line: the reasons its DLQ entries carry.
        let rows = step_ok(
            &env,
            &strings(&[
                "sql",
                "--format",
                "csv",
                &format!(
                    "SELECT position, reason FROM dlq WHERE stage = 'forward' \
                     AND input LIKE '%hostile.{format}' ORDER BY position"
                ),
            ]),
        );
        let mut by_line: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for r in rows.lines().skip(1) {
            let (pos, reason) = r.rsplit_once(',').unwrap();
            let line: u64 = pos
                .trim_start_matches("line ")
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            by_line.entry(line).or_default().push(reason.to_string());
        }
        let mut diffs = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            tried += 1;
            let got = by_line.remove(&(i as u64 + 1)).unwrap_or_default();
            let ok = match &c.expect {
                Expect::Dlq(r) => got == vec![r.to_string()],
                Expect::DlqEach(r, n) => got.len() as u64 == *n && got.iter().all(|g| g == r),
                Expect::Loaded(t, n) => {
                    *loaded_want.entry(t).or_default() += n;
                    got.is_empty()
                }
            };
            if !ok {
                diffs.push(format!(
                    "{format} line {} ({}): want {:?}, got {got:?}",
                    i + 1,
                    c.name,
                    c.expect
                ));
            }
            report.push(format!("{format:<10} {:<72} {:?}", c.name, c.expect));
        }
        assert!(by_line.is_empty(), "DLQ entries for no case: {by_line:?}");
        assert!(
            diffs.is_empty(),
            "hostile inputs ended otherwise:\n{}",
            diffs.join("\n")
        );
        // Every line is an item; an envelope's events are items of their own.
        let received = fwd["decode"]["received"].as_u64().unwrap();
        if format == "ndjson" {
            assert_eq!(received, cases.len() as u64);
        } else {
            assert!(received >= cases.len() as u64, "{received}");
        }
    }
    // Loaded items landed, and nothing else did.
    let landed = step_ok(
        &env,
        &strings(&[
            "sql",
            "--format",
            "csv",
            "SELECT tenant_id, count(*) FROM landing GROUP BY tenant_id",
        ]),
    );
    let landed: BTreeMap<String, u64> = landed
        .lines()
        .skip(1)
        .map(|l| {
            let (t, n) = l.split_once(',').unwrap();
            (t.to_string(), n.parse().unwrap())
        })
        .collect();
    let want: BTreeMap<String, u64> = loaded_want
        .iter()
        .map(|(t, n)| (t.to_string(), *n))
        .collect();
    assert_eq!(landed, want);
    // The rest of the pipeline takes it, and the counts reconcile.
    step_ok(&env, &strings(&["run"]));
    let rec = outcome(&env);
    assert_eq!(rec.rows.len() as u64, want.values().sum::<u64>());
    // Bounded memory: the worst input (a 20 MB line, a 4 GiB bomb) costs
    // tens of MiB, not its expanded size.
    for (format, kib) in &peaks {
        assert!(*kib < 400 * 1024, "{format}: peak RSS {kib} KiB");
    }
    eprintln!(
        "{tried} hostile inputs, every one as expected; peak RSS: ndjson {} MiB, cloudwatch {} MiB\n{}",
        peaks["ndjson"] / 1024,
        peaks["cloudwatch"] / 1024,
        report.join("\n")
    );
    assert_isolated(&env);
}

/// Tenant ids, stream names, log group prefixes and accounts come from the
/// configuration: hostile ones are refused there, with the offending value.
#[test]
fn hostile_tenant_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("id = \"../etc\"", "tenant id"),
        ("id = \"a/b\"", "tenant id"),
        ("id = \"a\\\\b\"", "tenant id"),
        ("id = \"..\"", "tenant id"),
        ("id = \"\"", "tenant id"),
        ("id = \"t\\u0000x\"", "tenant id"),
        (&format!("id = \"{}\"", "t".repeat(300)), "tenant id"),
        ("id = \"t1\"\nstreams = [\"..\"]", "stream name"),
        ("id = \"t1\"\nstreams = [\"a/../b\"]", "stream name"),
        ("id = \"t1\"\nstreams = [\"s\\u0000\"]", "stream name"),
        (
            "id = \"t1\"\nlog_groups = [\"/g/\\u0000/\"]",
            "log group prefix",
        ),
        ("id = \"t1\"\nlog_groups = [\"\"]", "log group prefix"),
        ("id = \"t1\"\naccounts = [\"../123456789\"]", "account"),
    ];
    for (tenant, want) in cases {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, format!("[[tenant]]\n{tenant}\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_logferry"))
            .env_remove("LOGFERRY_CONFIG")
            .args(["status", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(want),
            "[[tenant]] {tenant}: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
}
