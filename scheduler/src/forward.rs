//! `logferry forward`: one input into the lake, with a progress bar and a
//! report kept in the ledger.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context as _, Result};
use chrono::Utc;

use logferry_core::ids::IdHasher;
use logferry_core::ledger::Ledger;
use logferry_core::partition::STATE;
use logferry_forward::{Format, ForwardReport, Forwarder, Input};

use crate::context::Ctx;

/// Forwards one input.
pub async fn forward(ctx: &Ctx, input: &str, format: Format, quiet: bool) -> Result<ForwardReport> {
    let input = if input == "-" {
        Input::Stdin
    } else {
        Input::File(PathBuf::from(input))
    };
    let size = match &input {
        Input::File(p) => std::fs::metadata(p)
            .with_context(|| format!("cannot read input {}", p.display()))?
            .len(),
        Input::Stdin => 0,
    };
    let counter = Arc::new(AtomicU64::new(0));
    let pb = crate::progress::bar(size, "forward", true, quiet || size == 0);
    let follower = crate::progress::follow(pb.clone(), counter.clone());
    let fwd = Forwarder::new(ctx.settings.clone(), ctx.lake.clone());
    let result = fwd.forward(&input, format, counter).await;
    pb.finish_and_clear();
    let _ = follower.await;
    let report = result.with_context(|| format!("forwarding {}", input.name()))?;
    logferry_core::failpoint::hit("forward.before_report");
    record_run(ctx, report.input.as_bytes(), &report).await?;
    Ok(report)
}

/// Keeps a forward run's report in the ledger, under
/// `runs/forward/<time>-<hash of time and input>.json`.
async fn record_run(ctx: &Ctx, input: &[u8], report: &impl serde::Serialize) -> Result<()> {
    let now = Utc::now();
    let id = IdHasher::new()
        .part(now.to_rfc3339().as_bytes())
        .part(input)
        .hex();
    let name = format!(
        "runs/forward/{}-{}.json",
        now.format("%Y%m%dT%H%M%SZ"),
        &id[..8]
    );
    Ledger::new(ctx.lake.store.clone(), STATE)
        .put_once(&name, report)
        .await?;
    Ok(())
}

/// Prints a forward report for people.
pub fn print(r: &ForwardReport) {
    let d = &r.decode;
    println!(
        "forward {} ({}): {} items in {:.2} s ({:.0} items/s, {:.1} MB/s)",
        r.input,
        match r.format {
            Some(Format::Ndjson) => "ndjson",
            Some(Format::Cloudwatch) => "cloudwatch",
            None => "?",
        },
        d.received,
        r.duration_ms as f64 / 1000.0,
        r.records_per_s,
        r.mb_per_s
    );
    println!(
        "  accepted      {:>10}  -> {} landing objects written ({:.1} MB), {} already landed",
        d.accepted,
        r.landing_files,
        r.landing_bytes as f64 / 1e6,
        r.landing_files_existing
    );
    println!(
        "  dead-lettered {:>10}  -> {} DLQ objects written, {} already there",
        d.dead_lettered, r.dlq_files, r.dlq_files_existing
    );
    for (reason, n) in &d.by_reason {
        println!("      {reason:<22} {n:>10}");
    }
    if d.control_messages > 0 || r.blank_lines > 0 {
        println!(
            "  skipped: {} CloudWatch control messages, {} blank lines",
            d.control_messages, r.blank_lines
        );
    }
    println!(
        "  put latency p50 {:.1} ms, p95 {:.1} ms over {} puts",
        r.put_latency.p50_ms, r.put_latency.p95_ms, r.put_latency.count
    );
}

/// Reads the tenants' Kinesis streams: to their tips (`once`), or until
/// SIGTERM/SIGINT.
pub async fn kinesis(ctx: &Ctx, once: bool) -> Result<logferry_forward::KinesisReport> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if !once {
        let flag = stop.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot listen for SIGTERM.");
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::warn!("Stopping: flushing and checkpointing every shard.");
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let fwd =
        logferry_forward::KinesisForwarder::new(ctx.settings.clone(), ctx.lake.clone()).await?;
    let report = fwd.run(once, stop).await.context("reading Kinesis")?;
    record_run(ctx, b"kinesis", &report).await?;
    Ok(report)
}

/// Prints a Kinesis report for people.
pub fn print_kinesis(r: &logferry_forward::KinesisReport) {
    let d = &r.decode;
    println!(
        "forward kinesis: {} items from {} shards in {:.2} s; {} accepted, {} dead-lettered, {} control messages",
        d.received,
        r.shards.len(),
        r.duration_ms as f64 / 1000.0,
        d.accepted,
        d.dead_lettered,
        d.control_messages
    );
    for (stream, shards) in logferry_forward::kinesis::by_stream(r) {
        for s in shards {
            println!(
                "  {stream}/{}: {} records, {} calls, {} objects ({} already there), lag {} ms, checkpoint {}{}",
                s.shard,
                s.kinesis_records,
                s.calls,
                s.objects,
                s.objects_existing,
                s.last_millis_behind_latest,
                s.checkpoint.as_deref().unwrap_or("-"),
                if s.finished { " (finished)" } else { "" }
            );
        }
    }
    for b in &r.busy_shards {
        println!("  {b}: read by another forwarder (its lease); left to it");
    }
    for (reason, n) in &d.by_reason {
        println!("      {reason:<22} {n:>10}");
    }
}
