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

/// A data directory with its configuration.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    /// A fresh data directory; `extra` is appended to the config file.
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("test.toml");
        let text = format!(
            "[forward]\nreference_time = \"{NOW}\"\nmax_message_bytes = 4096\nmax_record_bytes = 16384\n\
             max_envelope_bytes = 262144\nmax_envelope_events = 200\nbatch_max_records = 700\n\n{extra}\n{}",
            workload::tenants_toml(TENANTS)
        );
        std::fs::write(&config, text).unwrap();
        Env { dir, config }
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

    pub async fn run(&self) -> logferry::run::RunReport {
        logferry::run::run(
            &self.ctx().await,
            logferry::run::RunOptions {
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

/// All values of a string column of a Parquet file.
pub fn column_values(path: &Path, column: &str) -> Vec<Option<String>> {
    let f = std::fs::File::open(path).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        let c = b
            .column(b.schema().index_of(column).unwrap())
            .as_string::<i32>()
            .clone();
        for i in 0..c.len() {
            out.push((!c.is_null(i)).then(|| c.value(i).to_string()));
        }
    }
    out
}

/// The `tenant=` value of a path.
pub fn tenant_of(path: &Path) -> Option<String> {
    path.components().find_map(|c| {
        c.as_os_str()
            .to_str()
            .and_then(|s| s.strip_prefix("tenant="))
            .map(str::to_string)
    })
}
