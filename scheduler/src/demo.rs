//! `logferry demo`: the whole pipeline on the embedded default. Generates a
//! seeded multi-tenant workload with labelled bad records, forwards both
//! input formats, runs aggregate, export and load, reconciles, and checks
//! every count against the generator's ground truth.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use chrono::Utc;
use serde::Serialize;

use logferry_core::config::DATA_DIR_CONFIG;
use logferry_forward::workload::{self, Expected, WorkloadSpec};
use logferry_forward::{Format, ForwardReport};

use crate::cli::Global;
use crate::context::Ctx;
use crate::reconcile::Reconciliation;
use crate::run::RunReport;

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
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} is not empty and was not made by `logferry demo`; give another --data-dir \
                 or remove it",
                dir.display()
            );
        }
        for sub in ["lake", "export", "warehouse", "input", DATA_DIR_CONFIG] {
            let p = dir.join(sub);
            if p.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else if p.exists() {
                std::fs::remove_file(&p)?;
            }
        }
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), "made by logferry demo\n")?;
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
        bail!("--tenants must be at least 2");
    }
    if !(0.0..=0.5).contains(&bad_fraction) {
        bail!("--bad-fraction must be between 0 and 0.5");
    }
    prepare(&g.data_dir)?;
    let config = format!(
        "# Written by `logferry demo`: the demo's tenants. Every command given\n\
         # --data-dir {} reads this file.\n\n{}",
        g.data_dir.display(),
        workload::tenants_toml(tenants)
    );
    std::fs::write(g.data_dir.join(DATA_DIR_CONFIG), config)?;
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
        .await?
        .context("generating the workload")?;
    let generate_ms = t0.elapsed().as_millis() as u64;

    let mut forward = Vec::new();
    for (path, format) in [
        (&work.ndjson, Format::Ndjson),
        (&work.cloudwatch, Format::Cloudwatch),
    ] {
        let p = path.display().to_string();
        forward.push(crate::forward::forward(&ctx, &p, format, quiet).await?);
    }
    let run = crate::run::run(
        &ctx,
        crate::run::RunOptions {
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

fn thousands(n: u64) -> String {
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

/// Prints the demo summary.
pub fn print(r: &DemoReport, data_dir: &Path) {
    let mb = |b: u64| b as f64 / 1e6;
    let received: u64 = r.forward.iter().map(|f| f.decode.received).sum();
    let accepted: u64 = r.forward.iter().map(|f| f.decode.accepted).sum();
    let refused: u64 = r.forward.iter().map(|f| f.decode.dead_lettered).sum();
    let control: u64 = r.forward.iter().map(|f| f.decode.control_messages).sum();
    let fwd_ms: u64 = r.forward.iter().map(|f| f.duration_ms).sum();
    let sum = |f: fn(&logferry_core::records::WindowCounts) -> u64| -> u64 {
        r.run
            .windows
            .iter()
            .flat_map(|w| w.counts.values())
            .map(f)
            .sum()
    };
    let agg_ms: u64 = r.run.windows.iter().map(|w| w.aggregate_ms).sum();
    let exp_ms: u64 = r.run.windows.iter().map(|w| w.export_ms).sum();
    let loaded: u64 = r.run.windows.iter().map(|w| w.rows_loaded).sum();
    let jobs: u64 = r.run.windows.iter().map(|w| w.load_jobs).sum();
    let sent: u64 = r.run.windows.iter().map(|w| w.bytes_sent).sum();
    let landing = r.bytes.get("landing").copied().unwrap_or_default();
    println!(
        "logferry demo: {} records, {} tenants, in {}",
        thousands(r.records),
        r.tenants,
        data_dir.display()
    );
    println!(
        "  generate   {:>10} items, {:.1} MB of NDJSON and CloudWatch Logs payloads  {:>7.2} s",
        thousands(r.records),
        mb(r.input_bytes),
        r.generate_ms as f64 / 1000.0
    );
    println!(
        "  forward    {:>10} received: {} landed, {} dead-lettered, {} control messages skipped  {:>7.2} s ({:.0} items/s)",
        thousands(received),
        thousands(accepted),
        thousands(refused),
        control,
        fwd_ms as f64 / 1000.0,
        received as f64 / (fwd_ms.max(1) as f64 / 1000.0)
    );
    println!(
        "  aggregate  {:>10} rows in {} windows: {} duplicates removed, {} rule violations, {} curated  {:>7.2} s",
        thousands(sum(|c| c.input)),
        r.run.windows.len(),
        thousands(sum(|c| c.duplicates)),
        thousands(sum(|c| c.dead_lettered)),
        thousands(sum(|c| c.curated)),
        agg_ms as f64 / 1000.0
    );
    println!(
        "  export     {:>10} rows loaded by {} load jobs, {:.1} MB shipped  {:>7.2} s",
        thousands(loaded),
        jobs,
        mb(sent),
        exp_ms as f64 / 1000.0
    );
    println!("  dead-lettered by reason (found / expected from the labels):");
    for key in r
        .expected
        .dlq
        .keys()
        .chain(r.dlq.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        println!(
            "    {:<34} {:>8} / {:<8}",
            key,
            r.dlq.get(key).copied().unwrap_or(0),
            r.expected.dlq.get(key).copied().unwrap_or(0)
        );
    }
    println!("  files and bytes:");
    for (area, (files, bytes)) in &r.bytes {
        println!("    {area:<10} {files:>6} files {:>10.1} MB", mb(*bytes));
    }
    if landing.1 > 0 {
        println!(
            "  compression: {:.1} MB of input landed as {:.1} MB of zstd Parquet ({:.1}x)",
            mb(r.input_bytes),
            mb(landing.1),
            r.input_bytes as f64 / landing.1 as f64
        );
    }
    let t = &r.reconcile.totals;
    println!(
        "  reconcile: {} (received {} = loaded {} + dead-lettered {} + duplicates {})",
        if r.reconcile.balanced {
            "balanced for every tenant"
        } else {
            "NOT BALANCED"
        },
        t.received,
        t.loaded,
        t.dead_lettered,
        t.duplicates
    );
    if r.mismatches.is_empty() {
        println!("  labels:    every count matches the generator's ground truth");
    } else {
        println!("  labels:    {} MISMATCHES:", r.mismatches.len());
        for m in &r.mismatches {
            println!("    {m}");
        }
    }
    println!(
        "next: logferry sql --data-dir {} \"SELECT tenant_id, count(*) FROM warehouse GROUP BY 1 ORDER BY 1\"",
        data_dir.display()
    );
}
