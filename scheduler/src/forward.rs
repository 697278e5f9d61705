//! Forwarding into the lake: one input (a file, standard input, or any
//! reader), or the tenants' Kinesis streams, with a report kept in the
//! ledger.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use chrono::Utc;

use logferry_core::ids::IdHasher;
use logferry_forward::{Format, ForwardReport, Forwarder, Input, KinesisForwarder, KinesisReport};

use crate::context::Ctx;
use crate::error::{Error, Result, ResultExt};

/// Forwards a file, or standard input (`-`).
pub async fn forward(ctx: &Ctx, input: &str, format: Format, quiet: bool) -> Result<ForwardReport> {
    let input = if input == "-" {
        Input::Stdin
    } else {
        Input::File(PathBuf::from(input))
    };
    let size = match &input {
        Input::File(p) => std::fs::metadata(p)
            .map_err(|e| Error::io(format!("input {}", p.display()), e))?
            .len(),
        _ => 0,
    };
    forward_input(ctx, input, format, size, quiet).await
}

/// Forwards one input of `size` bytes (0: unknown), with a progress bar
/// unless `quiet`.
pub async fn forward_input(
    ctx: &Ctx,
    input: Input,
    format: Format,
    size: u64,
    quiet: bool,
) -> Result<ForwardReport> {
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
pub async fn record_run(ctx: &Ctx, input: &[u8], report: &impl serde::Serialize) -> Result<()> {
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
    ctx.ledger().put_once(&name, report).await?;
    Ok(())
}

/// Stops `stop` on SIGTERM or SIGINT.
pub fn stop_on_signals(stop: Arc<AtomicBool>) {
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
        tracing::info!("SIGTERM or SIGINT: stopping.");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Reads the tenants' Kinesis streams: to their tips (`once`), or until
/// SIGTERM/SIGINT. A stream whose reader fails is restarted (following)
/// or, with `once`, named in the error once the others are read.
pub async fn kinesis(ctx: &Ctx, once: bool) -> Result<KinesisReport> {
    let stop = Arc::new(AtomicBool::new(false));
    if !once {
        stop_on_signals(stop.clone());
    }
    let fwd = KinesisForwarder::new(ctx.settings.clone(), ctx.lake.clone()).await?;
    let report = fwd.run(once, stop).await.context("reading Kinesis")?;
    record_run(ctx, b"kinesis", &report).await?;
    Ok(report)
}
