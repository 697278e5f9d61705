//! Test harness: a data directory with a config (tenants, lowered limits, a
//! fixed reference time), a labelled workload, and helpers to query results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;

use logferry::cli::Global;
use logferry::context::Ctx;
use logferry_forward::workload::{self, Label, Workload, WorkloadSpec};
use logferry_forward::{Format, ForwardReport};

/// The fixed "now" of the tests: generated records and the forward stage's
/// time checks agree on it, so runs are reproducible on any day.
pub const NOW: &str = "2026-01-15T12:00:00Z";
pub const NOW_MS: i64 = 1_768_478_400_000;
pub const SEED: u64 = 42;
pub const TENANTS: usize = 5;

/// Where a test's pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Local directories and the local warehouse.
    Embedded,
    /// S3 and Kinesis on moto, GCS and BigQuery emulators
    /// (`scripts/emulators.sh start`, `source target/emulators.env`).
    Emulators,
}

/// The emulators' environment, as `scripts/emulators.sh` exports it.
#[derive(Debug, Clone)]
pub struct Emulators {
    /// `s3://bucket` of the lake.
    pub lake: String,
    /// `gs://bucket` of the export store.
    pub export: String,
    /// Where the GCS emulator keeps objects on disk.
    pub gcs_root: PathBuf,
}

/// The running emulators. Fails the test loudly when they are not running,
/// unless `LOGFERRY_SKIP_EMULATOR_TESTS=1` asks to skip (then `None`, with a
/// line on stderr).
pub fn emulators() -> Option<Emulators> {
    if std::env::var("LOGFERRY_SKIP_EMULATOR_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: emulator test (LOGFERRY_SKIP_EMULATOR_TESTS=1)");
        return None;
    }
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!(
                "{k} is not set: start the emulators with `scripts/emulators.sh start` and \
                 `source target/emulators.env` (scripts/test.sh does both), or set \
                 LOGFERRY_SKIP_EMULATOR_TESTS=1 to skip the emulator tests"
            )
        })
    };
    Some(Emulators {
        lake: var("LOGFERRY_EMULATOR_LAKE"),
        export: var("LOGFERRY_EMULATOR_EXPORT"),
        gcs_root: var("LOGFERRY_EMULATOR_GCS_ROOT").into(),
    })
}

/// A name unique to this test run: prefixes, datasets and streams of one
/// test never meet another's.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}_{}_{}_{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port nothing listens on (at the moment it is asked for).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A data directory with its configuration.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub backend: Backend,
    /// The run's unique name (prefixes, dataset).
    pub id: String,
    /// Environment variables the binary runs with (config overrides).
    pub vars: Vec<(String, String)>,
}

const TEST_LIMITS: &str = "max_message_bytes = 4096\nmax_record_bytes = 16384\n\
     max_envelope_bytes = 262144\nmax_envelope_events = 200\nbatch_max_records = 700\n";

impl Env {
    /// A fresh data directory on the embedded backends; `extra` is appended
    /// to the config file.
    pub fn new(extra: &str) -> Self {
        Self::with_tenants(Backend::Embedded, extra, &workload::tenants_toml(TENANTS)).unwrap()
    }

    /// A fresh environment on `backend`, or `None` when emulator tests are
    /// explicitly skipped.
    pub fn on(backend: Backend, extra: &str) -> Option<Self> {
        Self::with_tenants(backend, extra, &workload::tenants_toml(TENANTS))
    }

    /// Like [`Env::on`], with these `[[tenant]]` tables.
    pub fn with_tenants(backend: Backend, extra: &str, tenants: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("test.toml");
        let id = unique("t");
        let backend_config = match backend {
            Backend::Embedded => String::new(),
            Backend::Emulators => {
                let e = emulators()?;
                format!(
                    "[storage]\nlake = \"{}/{id}/lake\"\nexport = \"{}/{id}/export\"\n\
                     [aws]\nallow_http = true\n\
                     [warehouse]\nkind = \"bigquery\"\npartitioning = \"day\"\n\
                     [bigquery]\ndataset = \"{id}\"\npoll_initial = \"20ms\"\n\
                     [kinesis]\nidle_interval = \"100ms\"\n",
                    e.lake, e.export
                )
            }
        };
        let text = format!(
            "[forward]\nreference_time = \"{NOW}\"\n{TEST_LIMITS}\n{backend_config}\n{extra}\n{tenants}"
        );
        std::fs::write(&config, text).unwrap();
        Some(Env {
            dir,
            config,
            backend,
            id,
            vars: Vec::new(),
        })
    }

    /// The state a freshly loaded window is in: its hourly partition
    /// replaced (embedded), or appended to its day (emulators).
    pub fn loaded_state(&self) -> &'static str {
        match self.backend {
            Backend::Embedded => "loaded",
            Backend::Emulators => "appended",
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn global(&self) -> Global {
        Global {
            data_dir: self.data_dir().to_path_buf(),
            config: Some(self.config.clone()),
            verbose: 0,
            quiet: true,
        }
    }

    pub async fn ctx(&self) -> Ctx {
        Ctx::open(&self.global()).await.unwrap()
    }

    /// The spec the tests generate with: the config's limits, many bad items.
    pub fn spec(records: u64, seed: u64) -> WorkloadSpec {
        let mut s = WorkloadSpec::new(records, TENANTS, seed, NOW_MS);
        s.bad_fraction = 0.2;
        s.duplicate_fraction = 0.04;
        s.max_message_bytes = 4096;
        s.max_record_bytes = 16384;
        s.max_envelope_bytes = 262_144;
        s.max_envelope_events = 200;
        s.max_events_per_envelope = 25;
        s
    }

    pub fn generate(&self, spec: &WorkloadSpec, name: &str) -> Workload {
        workload::generate(spec, &self.data_dir().join(name)).unwrap()
    }

    pub async fn forward(&self, path: &Path, format: Format) -> ForwardReport {
        let ctx = self.ctx().await;
        logferry::forward::forward(&ctx, path.to_str().unwrap(), format, true)
            .await
            .unwrap()
    }

    pub async fn forward_both(&self, w: &Workload) -> Vec<ForwardReport> {
        vec![
            self.forward(&w.ndjson, Format::Ndjson).await,
            self.forward(&w.cloudwatch, Format::Cloudwatch).await,
        ]
    }

    pub async fn run(&self) -> logferry::pipeline::RunReport {
        logferry::pipeline::run(
            &self.ctx().await,
            logferry::pipeline::RunOptions {
                quiet: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
    }

    pub async fn reconcile(&self) -> logferry::reconcile::Reconciliation {
        logferry::reconcile::reconcile(&self.ctx().await, None)
            .await
            .unwrap()
    }

    /// Runs a query over every table and returns its batches.
    pub async fn query(&self, q: &str) -> Vec<RecordBatch> {
        let ctx = self.ctx().await;
        let (s, _) = logferry::sql::session(&ctx, None).await.unwrap();
        logferry::sql::query(&s, q).await.unwrap()
    }

    /// A query whose rows are (string, count).
    pub async fn counts(&self, q: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for b in self.query(q).await {
            let k = b.column(0).as_string::<i32>();
            let n = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                out.insert(
                    if k.is_null(i) {
                        "NULL".into()
                    } else {
                        k.value(i).to_string()
                    },
                    n.value(i) as u64,
                );
            }
        }
        out
    }

    /// A query returning one number.
    pub async fn scalar(&self, q: &str) -> i64 {
        let b = self.query(q).await;
        b[0].column(0).as_primitive::<Int64Type>().value(0)
    }
}

pub fn labels(w: &Workload) -> Vec<Label> {
    workload::read_labels(&w.labels).unwrap()
}

/// Per tenant: (received, loaded, dead-lettered, duplicates), as reconciled.
pub fn tenant_counts(
    rec: &logferry::reconcile::Reconciliation,
) -> BTreeMap<String, (u64, u64, u64, u64)> {
    rec.tenants
        .iter()
        .map(|(t, b)| {
            let counts = (b.received, b.loaded, b.dead_lettered, b.duplicates);
            (t.clone(), counts)
        })
        .collect()
}

/// Every Parquet file under a directory, recursively.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// Kinesis on the emulator, with the test config's AWS settings.
pub async fn kinesis(env: &Env) -> aws_sdk_kinesis::Client {
    logferry_forward::kinesis::client(&env.ctx().await.settings.aws).await
}

/// Creates streams of two shards, waits until they are active, and returns
/// their ARNs.
pub async fn create_streams(k: &aws_sdk_kinesis::Client, names: &[String]) -> Vec<String> {
    for n in names {
        k.create_stream()
            .stream_name(n)
            .shard_count(2)
            .send()
            .await
            .unwrap();
    }
    let mut arns = Vec::new();
    for n in names {
        loop {
            let d = k
                .describe_stream_summary()
                .stream_name(n)
                .send()
                .await
                .unwrap()
                .stream_description_summary
                .unwrap();
            if d.stream_status == aws_sdk_kinesis::types::StreamStatus::Active {
                arns.push(d.stream_arn);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    arns
}

/// Puts records into a stream, each under its own partition key.
pub async fn put_records(k: &aws_sdk_kinesis::Client, stream: &str, data: Vec<Vec<u8>>) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let entries: Vec<PutRecordsRequestEntry> = data
        .into_iter()
        .enumerate()
        .map(|(n, d)| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(d))
                .partition_key(format!("pk-{n}"))
                .build()
                .unwrap()
        })
        .collect();
    let out = k
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count, Some(0));
}

/// The Kinesis records of tenant `t` (whose neighbour is `other`), event
/// times from `base` ms: 40 good JSON lines, 3 bad ones (malformed, another
/// tenant's claim, too old), a CloudWatch Logs envelope of 5 events of its
/// own log group, the same envelope again (exact redeliveries) and one of
/// the neighbour's log group. Counted under `t`: received 54, loaded 45,
/// dead-lettered 4, duplicates 5.
pub fn kinesis_payloads(t: &str, other: &str, base: i64) -> Vec<Vec<u8>> {
    let mut data: Vec<Vec<u8>> = Vec::new();
    for j in 0..40 {
        data.push(format!(
            r#"{{"timestamp":{},"level":"INFO","service":"api","message":"request {j}","tenant_id":"{t}"}}"#,
            base + j * 1000
        ).into_bytes());
    }
    data.push(b"{not json".to_vec());
    data.push(format!(r#"{{"timestamp":{base},"level":"INFO","service":"api","message":"m","tenant_id":"{other}"}}"#).into_bytes());
    data.push(
        format!(
            r#"{{"timestamp":{},"level":"INFO","service":"api","message":"old"}}"#,
            base - 30 * 86_400_000
        )
        .into_bytes(),
    );
    let envelope = |group: &str| {
        let events: Vec<String> = (0..5)
            .map(|e| format!(
                r#"{{"id":"{}{e:052}","timestamp":{},"message":"{{\"level\":\"WARN\",\"service\":\"worker\",\"message\":\"event {e}\",\"timestamp\":{}}}"}}"#,
                &t[t.len() - 4..], base + e, base + e
            ))
            .collect();
        let json = format!(
            r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"{group}","logStream":"s","subscriptionFilters":["f"],"logEvents":[{}]}}"#,
            events.join(",")
        );
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, json.as_bytes()).unwrap();
        enc.finish().unwrap()
    };
    let own = envelope(&format!("/tenants/{t}/worker"));
    data.push(own.clone());
    data.push(own);
    data.push(envelope(&format!("/tenants/{other}/worker")));
    data
}

/// GET `path` of the HTTP server at `addr`: (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request("GET", addr, path)
}

/// `method` (no body) on `path` of the HTTP server at `addr`: (status, body).
pub fn http_request(method: &str, addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A CloudWatch Logs group with the stream `app`, subscribed (every event)
/// to `destination_arn` under the filter name `filter`.
pub async fn subscribed_log_group(
    group: &str,
    filter: &str,
    destination_arn: String,
) -> aws_sdk_cloudwatchlogs::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
    logs.create_log_group()
        .log_group_name(group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(group)
        .log_stream_name("app")
        .send()
        .await
        .unwrap();
    logs.put_subscription_filter()
        .log_group_name(group)
        .filter_name(filter)
        .filter_pattern("")
        .destination_arn(destination_arn)
        .role_arn("arn:aws:iam::123456789012:role/cwl-subscription")
        .send()
        .await
        .unwrap();
    logs
}

/// One PutLogEvents call of `(timestamp ms, message)` events into
/// `group`'s stream `app`.
pub async fn put_log_events(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    events: impl IntoIterator<Item = (i64, String)>,
) {
    let events: Vec<_> = events
        .into_iter()
        .map(|(t, m)| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(t)
                .message(m)
                .build()
                .unwrap()
        })
        .collect();
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name("app")
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();
}
