//! `logferry demo`: the whole pipeline on the embedded default. Generates a
//! seeded multi-tenant workload with labelled bad records, forwards both
//! input formats, runs aggregate, export and load, reconciles, and checks
//! every count against the generator's ground truth.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use chrono::Utc;
use serde::Serialize;

use logferry_core::config::DATA_DIR_CONFIG;
use logferry_forward::workload::{self, Expected, WorkloadSpec};
use logferry_forward::{Format, ForwardReport};

use crate::cli::Global;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::pipeline::RunReport;
use crate::reconcile::Reconciliation;

const MARKER: &str = ".logferry-demo";

/// Everything the demo did.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    /// Items generated.
    pub records: u64,
    /// Tenants.
    pub tenants: usize,
    /// Bytes of generated input.
    pub input_bytes: u64,
    /// Generation time.
    pub generate_ms: u64,
    /// The two forward runs.
    pub forward: Vec<ForwardReport>,
    /// The run.
    pub run: RunReport,
    /// The reconciliation.
    pub reconcile: Reconciliation,
    /// What the labels say must happen.
    pub expected: Expected,
    /// Dead-letter counts found, by `stage/reason`.
    pub dlq: BTreeMap<String, u64>,
    /// Bytes by lake area.
    pub bytes: BTreeMap<String, (u64, u64)>,
    /// Mismatches between the labels and what the pipeline did.
    pub mismatches: Vec<String>,
}

/// Makes the generated bad items exceed the configured limits.
pub fn limits_from(spec: &mut WorkloadSpec, f: &logferry_core::config::ForwardSettings) {
    spec.max_age_ms = f.max_age.as_millis() as i64;
    spec.max_message_bytes = f.max_message_bytes;
    spec.max_record_bytes = f.max_record_bytes;
    spec.max_envelope_bytes = f.max_envelope_bytes;
    spec.max_envelope_events = f.max_envelope_events;
}

/// Prepares the data directory: a fresh one, or one an earlier demo made.
fn prepare(dir: &Path) -> Result<()> {
    let io = |e| Error::io(dir.display(), e);
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(Error::Config(format!(
                "{} is not empty and was not made by `logferry demo`; give another --data-dir \
                 or remove it",
                dir.display()
            )));
        }
        for sub in [
            "lake",
            "export",
            "warehouse",
            "input",
            "inbox",
            DATA_DIR_CONFIG,
        ] {
            let p = dir.join(sub);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(io)?;
            } else if p.exists() {
                std::fs::remove_file(&p).map_err(io)?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(dir.join(MARKER), "made by logferry demo\n").map_err(io)?;
    Ok(())
}

fn dir_bytes(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    files += 1;
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
    }
    (files, bytes)
}

/// Runs the demo.
#[allow(clippy::too_many_arguments)]
pub async fn demo(
    g: &Global,
    records: u64,
    tenants: usize,
    seed: u64,
    bad_fraction: f64,
    quiet: bool,
) -> Result<DemoReport> {
    if tenants < 2 {
        return Err(Error::Config("--tenants must be at least 2".into()));
    }
    if !(0.0..=0.5).contains(&bad_fraction) {
        return Err(Error::Config(
            "--bad-fraction must be between 0 and 0.5".into(),
        ));
    }
    prepare(&g.data_dir)?;
    let config = format!(
        "# Written by `logferry demo`: the demo's tenants. Every command given\n\
         # --data-dir {} reads this file.\n\n{}",
        g.data_dir.display(),
        workload::tenants_toml(tenants)
    );
    let file = g.data_dir.join(DATA_DIR_CONFIG);
    std::fs::write(&file, config).map_err(|e| Error::io(file.display(), e))?;
    let ctx = Ctx::open(&Global {
        data_dir: g.data_dir.clone(),
        config: None,
        verbose: g.verbose,
        quiet: g.quiet,
    })
    .await?;
    let mut spec = WorkloadSpec::new(records, tenants, seed, Utc::now().timestamp_millis());
    spec.bad_fraction = bad_fraction;
    limits_from(&mut spec, &ctx.settings.forward);
    if !quiet {
        eprintln!("generating {records} records for {tenants} tenants (seed {seed}) ...");
    }
    let t0 = Instant::now();
    let input = g.data_dir.join("input");
    let work = tokio::task::spawn_blocking(move || workload::generate(&spec, &input))
        .await
        .map_err(|e| Error::Fatal(format!("the generator died: {e}")))?
        .map_err(|e| Error::io("generating the workload", e))?;
    let generate_ms = t0.elapsed().as_millis() as u64;

    let mut forward = Vec::new();
    for (path, format) in [
        (&work.ndjson, Format::Ndjson),
        (&work.cloudwatch, Format::Cloudwatch),
    ] {
        let p = path.display().to_string();
        forward.push(crate::forward::forward(&ctx, &p, format, quiet).await?);
    }
    let run = crate::pipeline::run(
        &ctx,
        crate::pipeline::RunOptions {
            quiet,
            ..Default::default()
        },
    )
    .await?;
    let reconcile = crate::reconcile::reconcile(&ctx, None).await?;

    let (s, _) = crate::sql::session(&ctx, None).await?;
    let mut dlq = BTreeMap::new();
    for b in crate::sql::query(
        &s,
        "SELECT stage || '/' || reason, count(*) FROM dlq GROUP BY 1 ORDER BY 1",
    )
    .await?
    {
        let (k, n) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            if !k.is_null(i) {
                dlq.insert(k.value(i).to_string(), n.value(i) as u64);
            }
        }
    }

    let mut mismatches = Vec::new();
    let expected = work.expected.clone();
    for key in expected.dlq.keys().chain(dlq.keys()) {
        let (e, a) = (
            expected.dlq.get(key).copied().unwrap_or(0),
            dlq.get(key).copied().unwrap_or(0),
        );
        if e != a
            && !mismatches
                .iter()
                .any(|m: &String| m.starts_with(&format!("dlq {key}:")))
        {
            mismatches.push(format!("dlq {key}: expected {e}, found {a}"));
        }
    }
    for (t, e) in &expected.tenants {
        let a = reconcile.tenants.get(t).cloned().unwrap_or_default();
        let got = (a.received, a.loaded, a.dead_lettered, a.duplicates);
        let want = (e.received, e.loaded, e.dead_lettered, e.duplicates);
        if got != want {
            mismatches.push(format!(
                "tenant {t}: expected received/loaded/dead_lettered/duplicates {want:?}, found {got:?}"
            ));
        }
    }
    for t in reconcile.tenants.keys() {
        if !expected.tenants.contains_key(t) {
            mismatches.push(format!("tenant {t}: found data but expected none"));
        }
    }
    let lake = g.data_dir.join("lake");
    let mut bytes = BTreeMap::new();
    for area in ["landing", "dlq", "curated", "rollups"] {
        bytes.insert(area.to_string(), dir_bytes(&lake.join(area)));
    }
    bytes.insert("export".into(), dir_bytes(&g.data_dir.join("export")));
    bytes.insert("warehouse".into(), dir_bytes(&g.data_dir.join("warehouse")));
    Ok(DemoReport {
        records: work.items,
        tenants,
        input_bytes: work.input_bytes,
        generate_ms,
        forward,
        run,
        reconcile,
        expected,
        dlq,
        bytes,
        mismatches,
    })
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
