//! Seeded generator of a realistic multi-tenant workload in both input
//! formats, with a ground-truth label for every item: good records (some
//! coerced), exact redeliveries, records sharing a `request_id`, and bad items
//! of every kind the pipeline refuses. `logferry demo` and the test suite use
//! it; the labels say exactly what the pipeline must do with each item.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use logferry_core::partition::UNKNOWN_TENANT;

/// What the pipeline must do with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Loaded into the warehouse.
    Loaded,
    /// Removed as an exact redelivery.
    Duplicate,
    /// Dead-lettered by the forward stage.
    DlqForward,
    /// Dead-lettered by an aggregate rule.
    DlqAggregate,
    /// A CloudWatch Logs control message: skipped, not a record.
    Control,
}

/// One label: the ground truth for one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// `ndjson` or `cloudwatch`.
    pub format: String,
    /// Line, 1-based.
    pub line: u64,
    /// Event within the envelope, 1-based (CloudWatch items only).
    pub event: Option<u64>,
    /// Tenant key the outcome is counted under.
    pub tenant: String,
    /// Expected outcome.
    pub outcome: Outcome,
    /// Expected reason code (dead-lettered items).
    pub reason: Option<String>,
    /// Generator kind.
    pub kind: String,
    /// Variant of the kind.
    pub variant: String,
}

/// Expected counts of one tenant key, as `logferry reconcile` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedCounts {
    /// Items received.
    pub received: u64,
    /// Items dead-lettered (both stages).
    pub dead_lettered: u64,
    /// Exact redeliveries removed.
    pub duplicates: u64,
    /// Records loaded.
    pub loaded: u64,
}

/// Everything the labels imply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Expected {
    /// By tenant key.
    pub tenants: BTreeMap<String, ExpectedCounts>,
    /// Dead-letter counts by `stage/reason`.
    pub dlq: BTreeMap<String, u64>,
    /// Items by generator kind.
    pub kinds: BTreeMap<String, u64>,
    /// Control messages.
    pub control_messages: u64,
}

impl Expected {
    /// Folds labels into expected counts.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a Label>) -> Self {
        let mut e = Expected::default();
        for l in labels {
            *e.kinds.entry(l.kind.clone()).or_default() += 1;
            if l.outcome == Outcome::Control {
                e.control_messages += 1;
                continue;
            }
            let c = e.tenants.entry(l.tenant.clone()).or_default();
            c.received += 1;
            match l.outcome {
                Outcome::Loaded => c.loaded += 1,
                Outcome::Duplicate => c.duplicates += 1,
                Outcome::DlqForward | Outcome::DlqAggregate => {
                    c.dead_lettered += 1;
                    let stage = if l.outcome == Outcome::DlqForward {
                        "forward"
                    } else {
                        "aggregate"
                    };
                    let reason = l.reason.as_deref().unwrap_or("?");
                    *e.dlq.entry(format!("{stage}/{reason}")).or_default() += 1;
                }
                Outcome::Control => {}
            }
        }
        e
    }

    /// Totals over all tenant keys.
    pub fn totals(&self) -> ExpectedCounts {
        let mut t = ExpectedCounts::default();
        for c in self.tenants.values() {
            t.received += c.received;
            t.dead_lettered += c.dead_lettered;
            t.duplicates += c.duplicates;
            t.loaded += c.loaded;
        }
        t
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Items in total (records and refused items; control messages excluded).
    pub records: u64,
    /// Tenants `tenant-0000` ...
    pub tenants: usize,
    /// Seed: the same spec always produces the same bytes.
    pub seed: u64,
    /// "Now" in epoch milliseconds: good records fall in the `span_ms` before it.
    pub now_ms: i64,
    /// Time covered by good records.
    pub span_ms: i64,
    /// Share of items that are bad (refused, duplicate or coerced kinds excluded).
    pub bad_fraction: f64,
    /// Share of items that are exact redeliveries.
    pub duplicate_fraction: f64,
    /// Share of items emitted as CloudWatch Logs envelopes.
    pub cloudwatch_share: f64,
    /// Most events per generated envelope.
    pub max_events_per_envelope: usize,
    /// The pipeline's `forward.max_age` in milliseconds (for `ts_past`).
    pub max_age_ms: i64,
    /// The pipeline's `forward.max_message_bytes`.
    pub max_message_bytes: usize,
    /// The pipeline's `forward.max_record_bytes`.
    pub max_record_bytes: usize,
    /// The pipeline's `forward.max_envelope_bytes`.
    pub max_envelope_bytes: usize,
    /// The pipeline's `forward.max_envelope_events`.
    pub max_envelope_events: usize,
}

impl WorkloadSpec {
    /// A spec with the pipeline's default limits.
    pub fn new(records: u64, tenants: usize, seed: u64, now_ms: i64) -> Self {
        WorkloadSpec {
            records,
            tenants: tenants.max(2),
            seed,
            now_ms,
            span_ms: 3 * 3_600_000,
            bad_fraction: 0.02,
            duplicate_fraction: 0.01,
            cloudwatch_share: 0.3,
            max_events_per_envelope: 40,
            max_age_ms: 14 * 86_400_000,
            max_message_bytes: 256 * 1024,
            max_record_bytes: 1 << 20,
            max_envelope_bytes: 16 << 20,
            max_envelope_events: 10_000,
        }
    }
}

/// The files a generation wrote.
#[derive(Debug, Clone)]
pub struct Workload {
    /// NDJSON records.
    pub ndjson: PathBuf,
    /// CloudWatch Logs payload lines.
    pub cloudwatch: PathBuf,
    /// Labels, one JSON object per line.
    pub labels: PathBuf,
    /// Expected counts.
    pub expected: Expected,
    /// Bytes written to the two inputs.
    pub input_bytes: u64,
    /// Items written.
    pub items: u64,
}

/// Tenant id of index `i`.
pub fn tenant_id(i: usize) -> String {
    format!("tenant-{i:04}")
}

/// The AWS account of tenant `i` (the same for every seed, so one config
/// serves every generated workload).
pub fn tenant_account(i: usize) -> String {
    let mut r = Rng::new(0xacc0_u64.wrapping_mul(i as u64 + 1));
    format!("{:012}", 100_000_000_000 + r.below(900_000_000_000))
}

/// `[[tenant]]` tables for the generated tenants: stream `logs-<id>`, log
/// group prefix `/tenants/<id>/`, and the tenant's account.
pub fn tenants_toml(tenants: usize) -> String {
    let mut s = String::new();
    for i in 0..tenants {
        let id = tenant_id(i);
        let _ = write!(
            s,
            "[[tenant]]\nid = \"{id}\"\nstreams = [\"logs-{id}\"]\nlog_groups = [\"/tenants/{id}/\"]\naccounts = [\"{}\"]\n\n",
            tenant_account(i)
        );
    }
    s
}

/// SplitMix64: small, fast, stable across versions (so the same seed gives
/// the same workload forever).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One element.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const LEVEL_W: [u64; 5] = [8, 72, 12, 7, 1];
const SERVICES: [&str; 12] = [
    "api-gateway",
    "auth",
    "billing",
    "checkout",
    "search",
    "inventory",
    "notifications",
    "payments",
    "users",
    "worker",
    "scheduler",
    "ingest",
];
const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];
const WORDS: [&str; 48] = [
    "request",
    "response",
    "user",
    "session",
    "token",
    "cache",
    "miss",
    "hit",
    "retry",
    "upstream",
    "timeout",
    "connection",
    "pool",
    "queue",
    "consumer",
    "batch",
    "flush",
    "commit",
    "shard",
    "partition",
    "offset",
    "lag",
    "latency",
    "slow",
    "query",
    "index",
    "rows",
    "bytes",
    "socket",
    "closed",
    "handshake",
    "tls",
    "config",
    "reload",
    "flag",
    "throttled",
    "backoff",
    "circuit",
    "breaker",
    "health",
    "check",
    "degraded",
    "pod",
    "evicted",
    "heap",
    "order",
    "invoice",
    "café",
];
const PATHS: [&str; 5] = [
    "/api/v1/orders/",
    "/api/v1/users/",
    "/api/v2/search?q=item",
    "/api/v1/cart/",
    "/internal/metrics/",
];
const EXCEPTIONS: [&str; 4] = [
    "java.net.SocketTimeoutException: Read timed out",
    "KeyError: 'customer_id'",
    "panic: runtime error: index out of range [3] with length 3",
    "psycopg2.OperationalError: server closed the connection unexpectedly",
];

/// Bad kinds and their relative weights. Every kind appears at least once
/// when the workload has room for it (the first bad items cycle through all).
const NDJSON_BAD: [(&str, u32); 20] = [
    ("malformed_json", 100),
    ("invalid_utf8", 40),
    ("missing_source", 40),
    ("unknown_stream", 60),
    ("unknown_tenant_claim", 60),
    ("cross_tenant", 80),
    ("missing_field", 80),
    ("wrong_type", 80),
    ("ts_future", 40),
    ("ts_past", 40),
    ("oversized_message", 2),
    ("oversized_record", 1),
    ("invalid_level", 50),
    ("empty_message", 40),
    ("invalid_service", 40),
    ("coerced_iso_timestamp", 40),
    ("coerced_lowercase_level", 40),
    ("coerced_no_tenant_field", 60),
    ("shared_request_id", 80),
    ("escaped_controls", 20),
];
const CWL_EVENT_BAD: [(&str, u32); 16] = [
    ("malformed_json", 100),
    ("unknown_tenant_claim", 60),
    ("cross_tenant", 80),
    ("missing_field", 80),
    ("wrong_type", 80),
    ("ts_future", 40),
    ("ts_past", 40),
    ("oversized_message", 2),
    ("missing_event_id", 30),
    ("invalid_level", 50),
    ("empty_message", 40),
    ("invalid_service", 40),
    ("coerced_iso_timestamp", 40),
    ("coerced_no_timestamp", 40),
    ("coerced_no_tenant_field", 60),
    ("shared_request_id", 80),
];
const CWL_ENVELOPE_BAD: [(&str, u32); 8] = [
    ("corrupt_bad_base64", 10),
    ("corrupt_not_gzip", 10),
    ("corrupt_truncated_gzip", 10),
    ("corrupt_bad_json", 10),
    ("unknown_log_group", 10),
    ("account_not_allowed", 10),
    ("gzip_bomb", 1),
    ("too_many_events", 1),
];

struct Picker {
    names: Vec<&'static str>,
    cumulative: Vec<u32>,
    cycled: usize,
}

impl Picker {
    fn new(kinds: &[(&'static str, u32)]) -> Self {
        let mut acc = 0;
        let mut cumulative = Vec::new();
        for (_, w) in kinds {
            acc += w;
            cumulative.push(acc);
        }
        Picker {
            names: kinds.iter().map(|k| k.0).collect(),
            cumulative,
            cycled: 0,
        }
    }

    fn pick(&mut self, rng: &mut Rng) -> &'static str {
        if self.cycled < self.names.len() {
            self.cycled += 1;
            return self.names[self.cycled - 1];
        }
        let total = *self.cumulative.last().unwrap_or(&1);
        let x = rng.below(u64::from(total)) as u32;
        let i = self.cumulative.partition_point(|&c| c <= x);
        self.names[i.min(self.names.len() - 1)]
    }
}

/// A good record's fields.
#[derive(Debug, Clone)]
struct Rec {
    ts: i64,
    tenant: usize,
    level: &'static str,
    service: String,
    message: String,
    request_id: String,
    trace_id: Option<String>,
    metadata: String,
}

/// JSON string literal of `s`.
fn jstr(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Field overrides when rendering a record.
#[derive(Default)]
struct Render<'a> {
    /// Raw JSON for `timestamp`, or `None` to omit it.
    ts: Option<Option<String>>,
    /// Raw JSON for `tenant_id`, or `None` to omit it.
    tenant: Option<Option<String>>,
    level: Option<Option<String>>,
    service: Option<Option<String>>,
    message: Option<Option<String>>,
    request_id: Option<Option<String>>,
    stream: Option<Option<&'a str>>,
}

fn render(r: &Rec, tenants: &[String], stream: Option<&str>, o: &Render<'_>) -> String {
    let mut s = String::with_capacity(r.message.len() + 320);
    s.push('{');
    let mut first = true;
    let mut field = |s: &mut String, k: &str, v: &str| {
        if !first {
            s.push(',');
        }
        first = false;
        s.push('"');
        s.push_str(k);
        s.push_str("\":");
        s.push_str(v);
    };
    let q = |v: &str| {
        let mut t = String::new();
        jstr(v, &mut t);
        t
    };
    let dflt_ts = r.ts.to_string();
    let pick = |ov: &Option<Option<String>>, d: String| -> Option<String> {
        match ov {
            None => Some(d),
            Some(x) => x.clone(),
        }
    };
    if let Some(v) = pick(&o.ts, dflt_ts) {
        field(&mut s, "timestamp", &v);
    }
    if let Some(v) = pick(&o.tenant, q(&tenants[r.tenant])) {
        field(&mut s, "tenant_id", &v);
    }
    if let Some(v) = pick(&o.level, q(r.level)) {
        field(&mut s, "level", &v);
    }
    if let Some(v) = pick(&o.service, q(&r.service)) {
        field(&mut s, "service", &v);
    }
    if let Some(v) = pick(&o.message, q(&r.message)) {
        field(&mut s, "message", &v);
    }
    if let Some(v) = pick(&o.request_id, q(&r.request_id)) {
        field(&mut s, "request_id", &v);
    }
    let trace = r
        .trace_id
        .as_deref()
        .map(q)
        .unwrap_or_else(|| "null".into());
    field(&mut s, "trace_id", &trace);
    field(&mut s, "metadata", &r.metadata);
    let stream = match o.stream {
        None => stream,
        Some(x) => x,
    };
    if let Some(st) = stream {
        field(&mut s, "stream", &q(st));
    }
    s.push('}');
    s
}

struct Gen<'s> {
    spec: &'s WorkloadSpec,
    rng: Rng,
    tenant_ids: Vec<String>,
    accounts: Vec<String>,
    services: Vec<Vec<&'static str>>,
    tenant_cdf: Vec<f64>,
    labels: Vec<Label>,
    recent_lines: Vec<VecDeque<(String, i64)>>,
    recent_events: Vec<VecDeque<(String, i64, String)>>,
    recent_requests: Vec<VecDeque<String>>,
}

impl<'s> Gen<'s> {
    fn new(spec: &'s WorkloadSpec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let n = spec.tenants;
        let tenant_ids: Vec<String> = (0..n).map(tenant_id).collect();
        let accounts = (0..n).map(tenant_account).collect();
        let services = (0..n)
            .map(|_| {
                let k = 3 + rng.below(5) as usize;
                let start = rng.below(SERVICES.len() as u64) as usize;
                (0..k)
                    .map(|j| SERVICES[(start + j * 5) % SERVICES.len()])
                    .collect()
            })
            .collect();
        // Zipf-like tenant sizes: a few big tenants, a long tail.
        let weights: Vec<f64> = (0..n).map(|i| 1.0 / ((i + 1) as f64).powf(1.1)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let tenant_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Gen {
            spec,
            rng,
            tenant_ids,
            accounts,
            services,
            tenant_cdf,
            labels: Vec::new(),
            recent_lines: vec![VecDeque::new(); n],
            recent_events: vec![VecDeque::new(); n],
            recent_requests: vec![VecDeque::new(); n],
        }
    }

    fn tenant(&mut self) -> usize {
        let x = self.rng.unit();
        self.tenant_cdf
            .partition_point(|&c| c < x)
            .min(self.spec.tenants - 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn label(
        &mut self,
        format: &str,
        line: u64,
        event: Option<u64>,
        tenant: &str,
        outcome: Outcome,
        reason: Option<&str>,
        kind: &str,
        variant: &str,
    ) {
        self.labels.push(Label {
            format: format.into(),
            line,
            event,
            tenant: tenant.into(),
            outcome,
            reason: reason.map(str::to_string),
            kind: kind.into(),
            variant: variant.into(),
        });
    }

    fn uuid(&mut self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    fn message(&mut self, level: &str, target: usize) -> String {
        let r = &mut self.rng;
        let mut m = match level {
            "ERROR" | "FATAL" => format!(
                "Unhandled exception in {} worker: {}\n\tat com.acme.Handler.process(Handler.java:{})",
                r.pick(&["order", "invoice", "email", "sync"]),
                r.pick(&EXCEPTIONS),
                r.below(900) + 10
            ),
            "WARN" => format!(
                "retrying upstream call to {} (attempt {}/5) after {}ms backoff",
                r.pick(&["inventory-svc", "pricing-svc", "stripe"]),
                r.below(4) + 1,
                r.below(4000)
            ),
            _ => format!(
                "{} {}{} status={} duration_ms={} bytes={}",
                r.pick(&["GET", "POST", "PUT", "DELETE"]),
                r.pick(&PATHS),
                r.below(100_000),
                r.pick(&[200, 200, 200, 201, 204, 304, 400, 404, 429, 500]),
                r.below(2000) + 1,
                r.below(65536)
            ),
        };
        while m.len() < target {
            m.push(' ');
            let w: &&str = r.pick(&WORDS);
            m.push_str(w);
            if r.below(8) == 0 {
                let _ = write!(m, "={}", r.below(1_000_000));
            }
        }
        m
    }

    fn good(&mut self, tenant: usize, ts: i64, service: Option<&'static str>) -> Rec {
        let x = self.rng.below(100) as u32;
        let mut acc = 0;
        let mut level = "INFO";
        for (l, w) in LEVELS.iter().zip(LEVEL_W) {
            acc += w as u32;
            if x < acc {
                level = l;
                break;
            }
        }
        let service = service.unwrap_or_else(|| *self.rng.pick(&self.services[tenant].clone()));
        // Message length: log-normal-ish around 120 bytes, 50..490.
        let target = (50.0 + 70.0 * (-2.0 * self.rng.unit().max(1e-9).ln()).sqrt() * 1.3) as usize;
        let message = self.message(level, target.min(490));
        let request_id = self.uuid();
        let trace_id = if self.rng.below(16) == 0 {
            None
        } else {
            Some(format!(
                "{:016x}{:016x}",
                self.rng.next_u64(),
                self.rng.next_u64()
            ))
        };
        let metadata = format!(
            "{{\"source_account\":\"{}\",\"region\":\"{}\",\"host\":\"ip-10-{}-{}-{}\",\"duration_ms\":{}.{:03},\"retry_count\":{}}}",
            self.accounts[tenant],
            REGIONS[tenant % REGIONS.len()],
            self.rng.below(256),
            self.rng.below(256),
            self.rng.below(256),
            self.rng.below(2000),
            self.rng.below(1000),
            self.rng.below(3)
        );
        Rec {
            ts,
            tenant,
            level,
            service: service.to_string(),
            message,
            request_id,
            trace_id,
            metadata,
        }
    }

    fn ts_at(&mut self, i: u64, n: u64) -> i64 {
        let s = self.spec;
        let base = s.now_ms - s.span_ms - 60_000;
        let mut ts = base + ((i as i128 * s.span_ms as i128) / n.max(1) as i128) as i64;
        ts += self.rng.below(8000) as i64 - 4000;
        if self.rng.below(128) == 0 {
            ts -= self.rng.below(600_000) as i64; // a little late
        }
        ts
    }

    fn iso(ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    }

    fn remember_request(&mut self, tenant: usize, req: &str) {
        let q = &mut self.recent_requests[tenant];
        if q.len() == 32 {
            q.pop_front();
        }
        q.push_back(req.to_string());
    }

    /// The variants of a kind that apply to both formats: returns the record
    /// text, outcome, reason and variant.
    fn record_kind(
        &mut self,
        kind: &str,
        rec: &mut Rec,
        stream: Option<&str>,
    ) -> (String, Outcome, Option<&'static str>, String) {
        let tenants = self.tenant_ids.clone();
        let q = |v: &str| {
            let mut t = String::new();
            jstr(v, &mut t);
            t
        };
        let keep = |r: &Rec| render(r, &tenants, stream, &Render::default());
        match kind {
            "malformed_json" => {
                let line = keep(rec);
                let vs = [
                    "truncated",
                    "trailing_comma",
                    "single_quotes",
                    "unquoted_key",
                    "plain_text",
                    "not_object",
                    "duplicate_key",
                    "nan",
                ];
                let v = *self.rng.pick(&vs);
                let text = match v {
                    "truncated" => {
                        let mut cut = 1 + self.rng.below(line.len() as u64 - 2) as usize;
                        while !line.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        line[..cut].to_string()
                    }
                    "trailing_comma" => format!("{},}}", &line[..line.len() - 1]),
                    "single_quotes" => line.replace('"', "'"),
                    "unquoted_key" => line.replacen("\"level\":", "level:", 1),
                    "plain_text" => format!(
                        "{} {} [{}] {}",
                        Self::iso(rec.ts),
                        rec.level,
                        rec.service,
                        rec.message.replace('\n', " ")
                    ),
                    "not_object" => format!("[{line}]"),
                    "duplicate_key" => {
                        line.replacen("\"level\":", "\"level\":\"DEBUG\",\"level\":", 1)
                    }
                    _ => line.replacen("\"retry_count\":", "\"retry_count\":NaN,\"x\":", 1),
                };
                (text, Outcome::DlqForward, Some("malformed_json"), v.into())
            }
            "unknown_tenant_claim" => {
                let v = *self
                    .rng
                    .pick(&["upper_case", "unregistered", "whitespace", "empty"]);
                let t = &tenants[rec.tenant];
                let claim = match v {
                    "upper_case" => t.to_uppercase(),
                    "unregistered" => format!("tenant-{:04}", 9000 + self.rng.below(999)),
                    "whitespace" => format!("{t} "),
                    _ => String::new(),
                };
                let o = Render {
                    tenant: Some(Some(q(&claim))),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqForward,
                    Some("unknown_tenant"),
                    v.into(),
                )
            }
            "cross_tenant" => {
                let other = (rec.tenant + 1 + self.rng.below(tenants.len() as u64 - 1) as usize)
                    % tenants.len();
                let o = Render {
                    tenant: Some(Some(q(&tenants[other]))),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqForward,
                    Some("cross_tenant"),
                    format!("claims_{}", tenants[other]),
                )
            }
            "missing_field" => {
                // CloudWatch events carry their own timestamp, which stands in
                // for a missing one (coerced_no_timestamp), so only NDJSON
                // records can miss it.
                let fields: &[&str] = if stream.is_some() {
                    &["timestamp", "level", "service", "message"]
                } else {
                    &["level", "service", "message"]
                };
                let v = *self.rng.pick(fields);
                let mut o = Render::default();
                match v {
                    "timestamp" => o.ts = Some(None),
                    "level" => o.level = Some(None),
                    "service" => o.service = Some(None),
                    _ => o.message = Some(None),
                }
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqForward,
                    Some("missing_field"),
                    v.into(),
                )
            }
            "wrong_type" => {
                let v = *self.rng.pick(&[
                    "timestamp_numeric_string",
                    "timestamp_fraction",
                    "level_int",
                    "message_object",
                    "tenant_int",
                    "request_id_number",
                ]);
                let mut o = Render::default();
                match v {
                    "timestamp_numeric_string" => o.ts = Some(Some(format!("\"{}\"", rec.ts))),
                    "timestamp_fraction" => o.ts = Some(Some(format!("{}.5", rec.ts))),
                    "level_int" => o.level = Some(Some("30".into())),
                    "message_object" => {
                        o.message = Some(Some(format!(
                            "{{\"text\":{}}}",
                            q(&rec.message[..rec.message.len().min(40)])
                        )))
                    }
                    "tenant_int" => o.tenant = Some(Some(rec.tenant.to_string())),
                    _ => o.request_id = Some(Some(self.rng.below(1_000_000).to_string())),
                }
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqForward,
                    Some("wrong_type"),
                    v.into(),
                )
            }
            "ts_future" => {
                let v = *self
                    .rng
                    .pick(&["years_ahead", "days_ahead", "microseconds"]);
                let ts = match v {
                    "years_ahead" => rec.ts + (1 + self.rng.below(10) as i64) * 365 * 86_400_000,
                    "days_ahead" => self.spec.now_ms + (2 + self.rng.below(30) as i64) * 86_400_000,
                    _ => rec.ts * 1000,
                };
                let o = Render {
                    ts: Some(Some(ts.to_string())),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqForward,
                    Some("ts_future"),
                    v.into(),
                )
            }
            "ts_past" => {
                let v = *self.rng.pick(&[
                    "beyond_max_age",
                    "years_ago",
                    "epoch_zero",
                    "negative",
                    "seconds_not_ms",
                ]);
                let ts = match v {
                    "beyond_max_age" => self.spec.now_ms - self.spec.max_age_ms - 86_400_000,
                    "years_ago" => rec.ts - (1 + self.rng.below(10) as i64) * 365 * 86_400_000,
                    "epoch_zero" => 0,
                    "negative" => -1 - self.rng.below(1 << 30) as i64,
                    _ => rec.ts / 1000,
                };
                let o = Render {
                    ts: Some(Some(ts.to_string())),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqForward,
                    Some("ts_past"),
                    v.into(),
                )
            }
            "oversized_message" => {
                let room = self.spec.max_record_bytes.saturating_sub(4096);
                let len =
                    (self.spec.max_message_bytes + 1 + self.rng.below(4096) as usize).min(room);
                let m = self.message("INFO", len);
                rec.message = m;
                (
                    keep(rec),
                    Outcome::DlqForward,
                    Some("oversized_message"),
                    format!("len_{}", rec.message.len()),
                )
            }
            "invalid_level" => {
                let v = *self.rng.pick(&["VERBOSE", "NOTICE", "CRIT"]);
                let o = Render {
                    level: Some(Some(q(v))),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqAggregate,
                    Some("invalid_level"),
                    v.to_lowercase(),
                )
            }
            "empty_message" => {
                let v = *self.rng.pick(&["empty", "blank"]);
                let o = Render {
                    message: Some(Some(q(if v == "empty" { "" } else { "   \t " }))),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqAggregate,
                    Some("empty_message"),
                    v.into(),
                )
            }
            "invalid_service" => {
                let v = *self.rng.pick(&["spaces", "punctuation", "too_long"]);
                let s = match v {
                    "spaces" => "Billing Service".to_string(),
                    "punctuation" => "checkout!".to_string(),
                    _ => "s".repeat(200),
                };
                let o = Render {
                    service: Some(Some(q(&s))),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::DlqAggregate,
                    Some("invalid_service"),
                    v.into(),
                )
            }
            "coerced_iso_timestamp" => {
                let o = Render {
                    ts: Some(Some(q(&Self::iso(rec.ts)))),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::Loaded,
                    None,
                    "rfc3339".into(),
                )
            }
            "coerced_lowercase_level" => {
                let o = Render {
                    level: Some(Some(q(&rec.level.to_lowercase()))),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::Loaded,
                    None,
                    "lowercase".into(),
                )
            }
            "coerced_no_tenant_field" => {
                let o = Render {
                    tenant: Some(None),
                    ..Default::default()
                };
                (
                    render(rec, &tenants, stream, &o),
                    Outcome::Loaded,
                    None,
                    "absent".into(),
                )
            }
            "shared_request_id" => {
                let t = rec.tenant;
                if let Some(req) = self.recent_requests[t].back().cloned() {
                    rec.request_id = req;
                }
                (keep(rec), Outcome::Loaded, None, "same_tenant".into())
            }
            "escaped_controls" => {
                rec.message = format!("{} \u{0}\u{1} tab\tend", rec.message);
                (keep(rec), Outcome::Loaded, None, "escaped_nul".into())
            }
            other => unreachable!("kind {other} is handled by the caller"),
        }
    }

    fn ndjson<W: Write>(&mut self, out: &mut W, n: u64) -> io::Result<u64> {
        let mut picker = Picker::new(&NDJSON_BAD);
        let mut bytes = 0u64;
        for i in 0..n {
            let line_no = i + 1;
            let t = self.tenant();
            let ts = self.ts_at(i, n);
            let stream = format!("logs-{}", self.tenant_ids[t]);
            let tkey = self.tenant_ids[t].clone();
            let x = self.rng.unit();
            let mut line: Vec<u8>;
            if x < self.spec.duplicate_fraction && !self.recent_lines[t].is_empty() {
                let k = self.rng.below(self.recent_lines[t].len() as u64) as usize;
                line = self.recent_lines[t][k].0.clone().into_bytes();
                self.label(
                    "ndjson",
                    line_no,
                    None,
                    &tkey,
                    Outcome::Duplicate,
                    None,
                    "duplicate_exact",
                    "redelivery",
                );
            } else if x < self.spec.duplicate_fraction + self.spec.bad_fraction {
                let kind = picker.pick(&mut self.rng);
                let mut rec = self.good(t, ts, None);
                match kind {
                    "invalid_utf8" => {
                        let text =
                            render(&rec, &self.tenant_ids, Some(&stream), &Render::default());
                        let p = text.find("\"message\":\"").map_or(1, |p| p + 11);
                        line = text.into_bytes();
                        line.splice(p..p, [0xff, 0xfe]);
                        self.label(
                            "ndjson",
                            line_no,
                            None,
                            UNKNOWN_TENANT,
                            Outcome::DlqForward,
                            Some("invalid_utf8"),
                            kind,
                            "bytes_ff_fe",
                        );
                    }
                    "missing_source" => {
                        let o = Render {
                            stream: Some(None),
                            ..Default::default()
                        };
                        line = render(&rec, &self.tenant_ids, Some(&stream), &o).into_bytes();
                        self.label(
                            "ndjson",
                            line_no,
                            None,
                            UNKNOWN_TENANT,
                            Outcome::DlqForward,
                            Some("missing_source"),
                            kind,
                            "absent",
                        );
                    }
                    "unknown_stream" => {
                        let v = *self.rng.pick(&["unregistered", "upper_case", "traversal"]);
                        let s = match v {
                            "unregistered" => {
                                format!("logs-tenant-{:04}", 9000 + self.rng.below(999))
                            }
                            "upper_case" => stream.to_uppercase(),
                            _ => format!("../logs-{}", self.tenant_ids[t]),
                        };
                        let o = Render {
                            stream: Some(Some(&s)),
                            tenant: Some(None),
                            ..Default::default()
                        };
                        line = render(&rec, &self.tenant_ids, Some(&stream), &o).into_bytes();
                        self.label(
                            "ndjson",
                            line_no,
                            None,
                            UNKNOWN_TENANT,
                            Outcome::DlqForward,
                            Some("unknown_tenant"),
                            kind,
                            v,
                        );
                    }
                    "oversized_record" => {
                        let len = self.spec.max_record_bytes + 1 + self.rng.below(1024) as usize;
                        rec.message = self.message("INFO", len);
                        line = render(&rec, &self.tenant_ids, Some(&stream), &Render::default())
                            .into_bytes();
                        self.label(
                            "ndjson",
                            line_no,
                            None,
                            UNKNOWN_TENANT,
                            Outcome::DlqForward,
                            Some("oversized_record"),
                            kind,
                            "over_limit",
                        );
                    }
                    _ => {
                        let (text, outcome, reason, variant) =
                            self.record_kind(kind, &mut rec, Some(&stream));
                        let key = if kind == "malformed_json" {
                            UNKNOWN_TENANT.to_string()
                        } else {
                            tkey.clone()
                        };
                        if outcome == Outcome::Loaded {
                            self.remember_request(t, &rec.request_id);
                        }
                        line = text.into_bytes();
                        self.label(
                            "ndjson", line_no, None, &key, outcome, reason, kind, &variant,
                        );
                    }
                }
            } else {
                let rec = self.good(t, ts, None);
                let text = render(&rec, &self.tenant_ids, Some(&stream), &Render::default());
                self.remember_request(t, &rec.request_id);
                let q = &mut self.recent_lines[t];
                if q.len() == 32 {
                    q.pop_front();
                }
                q.push_back((text.clone(), ts));
                line = text.into_bytes();
                self.label(
                    "ndjson",
                    line_no,
                    None,
                    &tkey,
                    Outcome::Loaded,
                    None,
                    "good",
                    "",
                );
            }
            line.push(b'\n');
            bytes += line.len() as u64;
            out.write_all(&line)?;
        }
        Ok(bytes)
    }

    fn event_id(&mut self) -> String {
        format!(
            "{:019}{:019}{:018}",
            self.rng.next_u64() % 10_000_000_000_000_000_000,
            self.rng.next_u64() % 10_000_000_000_000_000_000,
            self.rng.next_u64() % 1_000_000_000_000_000_000
        )
    }

    fn envelope_json(
        &self,
        t: usize,
        owner: &str,
        group: &str,
        events: &[(String, i64, String)],
        pad: usize,
    ) -> String {
        let mut s =
            String::with_capacity(256 + pad + events.iter().map(|e| e.2.len() + 96).sum::<usize>());
        let _ = write!(
            s,
            "{{\"messageType\":\"DATA_MESSAGE\",\"owner\":\"{owner}\",\"logGroup\":"
        );
        jstr(group, &mut s);
        let _ = write!(
            s,
            ",\"logStream\":\"2026/01/01/[$LATEST]{:032x}\",\"subscriptionFilters\":[\"{}-forwarder\"],\"logEvents\":[",
            t as u128 * 0x1234_5678_9abc_def1,
            self.tenant_ids[t]
        );
        for (j, (id, ts, msg)) in events.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            let _ = write!(s, "{{\"id\":\"{id}\",\"timestamp\":{ts},\"message\":");
            jstr(msg, &mut s);
            s.push('}');
        }
        s.push(']');
        if pad > 0 {
            s.push_str(",\"padding\":\"");
            s.extend(std::iter::repeat_n('a', pad));
            s.push('"');
        }
        s.push('}');
        s
    }

    fn cloudwatch<W: Write>(&mut self, out: &mut W, n: u64) -> io::Result<u64> {
        let mut ev_picker = Picker::new(&CWL_EVENT_BAD);
        let mut env_picker = Picker::new(&CWL_ENVELOPE_BAD);
        let mut bytes = 0u64;
        let mut produced = 0u64;
        let mut line_no = 0u64;
        let b64 = base64::engine::general_purpose::STANDARD;
        while produced < n {
            line_no += 1;
            let t = self.tenant();
            let tkey = self.tenant_ids[t].clone();
            let svc = *self.rng.pick(&self.services[t].clone());
            let group = format!("/tenants/{tkey}/{svc}");
            let owner = self.accounts[t].clone();
            let ts0 = self.ts_at(produced, n);
            let x = self.rng.unit();
            let line: String;
            if x < 0.002 {
                let doc = format!(
                    "{{\"messageType\":\"CONTROL_MESSAGE\",\"owner\":\"CloudwatchLogs\",\"logGroup\":\"\",\"logStream\":\"\",\"subscriptionFilters\":[],\"logEvents\":[{{\"id\":\"\",\"timestamp\":{ts0},\"message\":\"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.\"}}]}}"
                );
                line = b64.encode(gzip(doc.as_bytes()));
                self.label(
                    "cloudwatch",
                    line_no,
                    None,
                    UNKNOWN_TENANT,
                    Outcome::Control,
                    None,
                    "control_message",
                    "",
                );
            } else if x < 0.002 + self.spec.bad_fraction {
                let kind = env_picker.pick(&mut self.rng);
                let rec = self.good(t, ts0, Some(svc));
                let msg = render(&rec, &self.tenant_ids, None, &Render::default());
                let evs = vec![(self.event_id(), ts0, msg)];
                let (reason, variant) = match kind {
                    "unknown_log_group" => ("unknown_tenant", "unregistered_group"),
                    "account_not_allowed" => ("account_not_allowed", "foreign_owner"),
                    "gzip_bomb" | "too_many_events" => ("envelope_too_large", kind),
                    _ => ("corrupt_envelope", kind.trim_start_matches("corrupt_")),
                };
                line = match kind {
                    "unknown_log_group" => {
                        let g = format!("/tenants/tenant-{:04}/{svc}", 9000 + self.rng.below(999));
                        b64.encode(gzip(self.envelope_json(t, &owner, &g, &evs, 0).as_bytes()))
                    }
                    "account_not_allowed" => b64.encode(gzip(
                        self.envelope_json(t, "999999999999", &group, &evs, 0)
                            .as_bytes(),
                    )),
                    "gzip_bomb" => b64.encode(gzip(
                        self.envelope_json(
                            t,
                            &owner,
                            &group,
                            &evs,
                            self.spec.max_envelope_bytes + 1,
                        )
                        .as_bytes(),
                    )),
                    "too_many_events" => {
                        let many: Vec<_> = (0..=self.spec.max_envelope_events as u64)
                            .map(|k| (format!("{:056}", k), ts0, "{}".to_string()))
                            .collect();
                        b64.encode(gzip(
                            self.envelope_json(t, &owner, &group, &many, 0).as_bytes(),
                        ))
                    }
                    "corrupt_bad_base64" => {
                        let s = b64.encode(gzip(
                            self.envelope_json(t, &owner, &group, &evs, 0).as_bytes(),
                        ));
                        format!("{}!@#{}", &s[..s.len() / 2], &s[s.len() / 2..])
                    }
                    "corrupt_not_gzip" => {
                        b64.encode(self.envelope_json(t, &owner, &group, &evs, 0))
                    }
                    "corrupt_truncated_gzip" => {
                        let z = gzip(self.envelope_json(t, &owner, &group, &evs, 0).as_bytes());
                        b64.encode(&z[..z.len() / 2])
                    }
                    _ => {
                        let j = self.envelope_json(t, &owner, &group, &evs, 0);
                        b64.encode(gzip(&j.as_bytes()[..j.len() - 7]))
                    }
                };
                produced += 1;
                self.label(
                    "cloudwatch",
                    line_no,
                    None,
                    UNKNOWN_TENANT,
                    Outcome::DlqForward,
                    Some(reason),
                    kind,
                    variant,
                );
            } else {
                let k = (1 + self.rng.below(self.spec.max_events_per_envelope as u64))
                    .min(n - produced);
                let mut evs = Vec::with_capacity(k as usize);
                for j in 0..k {
                    let ev_no = j + 1;
                    let ts = ts0 + j as i64 * (1 + self.rng.below(20) as i64);
                    let y = self.rng.unit();
                    if y < self.spec.duplicate_fraction && !self.recent_events[t].is_empty() {
                        let i = self.rng.below(self.recent_events[t].len() as u64) as usize;
                        let ev = self.recent_events[t][i].clone();
                        evs.push(ev);
                        self.label(
                            "cloudwatch",
                            line_no,
                            Some(ev_no),
                            &tkey,
                            Outcome::Duplicate,
                            None,
                            "duplicate_exact",
                            "redelivery",
                        );
                        continue;
                    }
                    let mut rec = self.good(t, ts, Some(svc));
                    if y < self.spec.duplicate_fraction + self.spec.bad_fraction {
                        let kind = ev_picker.pick(&mut self.rng);
                        match kind {
                            "missing_event_id" => {
                                let msg = render(&rec, &self.tenant_ids, None, &Render::default());
                                evs.push((String::new(), ts, msg));
                                self.label(
                                    "cloudwatch",
                                    line_no,
                                    Some(ev_no),
                                    &tkey,
                                    Outcome::DlqForward,
                                    Some("missing_field"),
                                    kind,
                                    "empty_id",
                                );
                            }
                            "coerced_no_timestamp" => {
                                let o = Render {
                                    ts: Some(None),
                                    ..Default::default()
                                };
                                let msg = render(&rec, &self.tenant_ids, None, &o);
                                evs.push((self.event_id(), ts, msg));
                                self.remember_request(t, &rec.request_id);
                                self.label(
                                    "cloudwatch",
                                    line_no,
                                    Some(ev_no),
                                    &tkey,
                                    Outcome::Loaded,
                                    None,
                                    kind,
                                    "event_timestamp",
                                );
                            }
                            _ => {
                                let (msg, outcome, reason, variant) =
                                    self.record_kind(kind, &mut rec, None);
                                if outcome == Outcome::Loaded {
                                    self.remember_request(t, &rec.request_id);
                                }
                                evs.push((self.event_id(), ts, msg));
                                self.label(
                                    "cloudwatch",
                                    line_no,
                                    Some(ev_no),
                                    &tkey,
                                    outcome,
                                    reason,
                                    kind,
                                    &variant,
                                );
                            }
                        }
                    } else {
                        let msg = render(&rec, &self.tenant_ids, None, &Render::default());
                        let ev = (self.event_id(), ts, msg);
                        self.remember_request(t, &rec.request_id);
                        let q = &mut self.recent_events[t];
                        if q.len() == 32 {
                            q.pop_front();
                        }
                        q.push_back(ev.clone());
                        evs.push(ev);
                        self.label(
                            "cloudwatch",
                            line_no,
                            Some(ev_no),
                            &tkey,
                            Outcome::Loaded,
                            None,
                            "good",
                            "",
                        );
                    }
                }
                produced += k;
                line = b64.encode(gzip(
                    self.envelope_json(t, &owner, &group, &evs, 0).as_bytes(),
                ));
            }
            bytes += line.len() as u64 + 1;
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(bytes)
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    e.write_all(bytes).expect("writing to a Vec cannot fail");
    e.finish().expect("finishing a Vec cannot fail")
}

/// Generates the workload into `dir`: `workload.ndjson`, `workload.cwl` and
/// `labels.jsonl`.
pub fn generate(spec: &WorkloadSpec, dir: &Path) -> io::Result<Workload> {
    std::fs::create_dir_all(dir)?;
    let ndjson = dir.join("workload.ndjson");
    let cloudwatch = dir.join("workload.cwl");
    let labels_path = dir.join("labels.jsonl");
    let n_cwl = (spec.records as f64 * spec.cloudwatch_share.clamp(0.0, 1.0)).round() as u64;
    let n_nd = spec.records - n_cwl;
    let mut g = Gen::new(spec);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&ndjson)?);
    let mut bytes = g.ndjson(&mut w, n_nd)?;
    w.flush()?;
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&cloudwatch)?);
    bytes += g.cloudwatch(&mut w, n_cwl)?;
    w.flush()?;
    let mut w = BufWriter::new(std::fs::File::create(&labels_path)?);
    for l in &g.labels {
        serde_json::to_writer(&mut w, l)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    let expected = Expected::from_labels(&g.labels);
    Ok(Workload {
        ndjson,
        cloudwatch,
        labels: labels_path,
        items: g
            .labels
            .iter()
            .filter(|l| l.outcome != Outcome::Control)
            .count() as u64,
        expected,
        input_bytes: bytes,
    })
}

/// Reads a labels file back.
pub fn read_labels(path: &Path) -> io::Result<Vec<Label>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(io::Error::other))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_complete() {
        let now = 1_780_000_000_000;
        let mut spec = WorkloadSpec::new(4000, 5, 7, now);
        spec.bad_fraction = 0.3;
        spec.max_message_bytes = 2048;
        spec.max_record_bytes = 8192;
        spec.max_envelope_bytes = 64 << 10;
        spec.max_envelope_events = 50;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let wa = generate(&spec, a.path()).unwrap();
        let wb = generate(&spec, b.path()).unwrap();
        for (x, y) in [(&wa.ndjson, &wb.ndjson), (&wa.cloudwatch, &wb.cloudwatch)] {
            assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        }
        let labels = read_labels(&wa.labels).unwrap();
        let kinds: std::collections::BTreeSet<&str> =
            labels.iter().map(|l| l.kind.as_str()).collect();
        for (k, _) in NDJSON_BAD
            .iter()
            .chain(&CWL_EVENT_BAD)
            .chain(&CWL_ENVELOPE_BAD)
        {
            assert!(kinds.contains(k), "kind {k} never generated");
        }
        assert!(kinds.contains("duplicate_exact") && kinds.contains("good"));
        assert_eq!(wa.items, 4000);
        let t = wa.expected.totals();
        assert_eq!(t.received, 4000);
        assert_eq!(t.received, t.loaded + t.dead_lettered + t.duplicates);
    }
}
