//! Crash points: the places where the process can die between two durable
//! effects. With the `failpoints` feature, `LOGFERRY_CRASH_AT=<point>` aborts
//! the process when it reaches that point (the test suite walks every one);
//! without it, [`hit`] compiles to nothing, so production builds carry none.

/// Every crash point, with what has and has not happened when it is hit.
pub const POINTS: &[(&str, &str)] = &[
    (
        "forward.after_landing_put",
        "a landing object is durable; its pending marker is not",
    ),
    (
        "forward.after_pending_marker",
        "a landing object and its marker are durable; later objects are not",
    ),
    (
        "forward.after_dlq_put",
        "a dead-letter object is durable; later objects are not",
    ),
    (
        "forward.before_report",
        "every object of the input is durable; the run report is not",
    ),
    (
        "kinesis.after_landing_put",
        "a shard's objects are durable; its checkpoint is not",
    ),
    (
        "kinesis.after_checkpoint",
        "a shard's checkpoint is committed; later records are not read",
    ),
    (
        "aggregate.after_outputs",
        "curated, rollup and DLQ objects are durable; the window's ledger record is not",
    ),
    (
        "aggregate.after_commit",
        "the window's aggregate record is committed; the previous run's objects are not removed",
    ),
    (
        "export.after_upload",
        "the window's export objects are durable; no load job was submitted",
    ),
    (
        "export.after_submit",
        "a load job is submitted; its outcome was never read",
    ),
    (
        "export.while_polling",
        "a load job is running or done; the poll loop died",
    ),
    (
        "export.after_load",
        "the load jobs are done; the window's export record is not committed",
    ),
    (
        "export.after_commit",
        "the export record is committed; superseded export objects are not removed",
    ),
    (
        "increment.after_outputs",
        "an increment's curated and DLQ objects are durable; its ledger document is not",
    ),
    (
        "increment.after_commit",
        "an increment is in its window's chain; it is not appended to the warehouse",
    ),
    (
        "increment.after_append",
        "an increment is appended to the warehouse; the ledger does not say so",
    ),
    (
        "increment.after_recorded",
        "an increment's append is recorded; its pending markers are not removed",
    ),
    (
        "chain.before_cleanup",
        "a window's full run replaced its increments in the warehouse; their objects and documents are not removed",
    ),
    (
        "backfill.after_load",
        "a backfill's partition is loaded; its done marker is not",
    ),
    (
        "dlq.before_superseded",
        "a replayed dead-letter object's landing and replacement objects are durable; the record that it is replaced is not",
    ),
    (
        "run.before_clear_pending",
        "the window is loaded; its pending markers are not removed",
    ),
    (
        "seal.after_load",
        "a day's seal jobs are done; the seal record is not committed",
    ),
    (
        "warehouse.after_files",
        "a local load's files are copied; the partition commit is not",
    ),
    (
        "warehouse.after_commit",
        "a local partition commit is durable; replaced files are not removed",
    ),
];

/// Aborts the process here when `LOGFERRY_CRASH_AT` names this point; the
/// first time the point named by `LOGFERRY_PAUSE_AT=<point>:<ms>` is
/// reached, pauses there that long (tests of concurrent runners hold a
/// lease open with it). `failpoints` builds only.
#[cfg(feature = "failpoints")]
pub fn hit(point: &'static str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static PAUSED: AtomicBool = AtomicBool::new(false);
    debug_assert!(
        POINTS.iter().any(|(p, _)| *p == point),
        "crash point {point} is not listed in POINTS"
    );
    if std::env::var("LOGFERRY_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("logferry: crashing at {point} (LOGFERRY_CRASH_AT)");
        std::process::abort();
    }
    if let Some(ms) = pause_at().filter(|(p, _)| p == point).map(|(_, ms)| ms)
        && !PAUSED.swap(true, Ordering::Relaxed)
    {
        eprintln!("logferry: pausing {ms} ms at {point} (LOGFERRY_PAUSE_AT)");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// `LOGFERRY_PAUSE_AT`, parsed.
fn pause_at() -> Option<(String, u64)> {
    let v = std::env::var("LOGFERRY_PAUSE_AT").ok()?;
    let (p, ms) = v.split_once(':')?;
    Some((p.to_string(), ms.parse().ok()?))
}

/// No crash points in builds without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_point: &'static str) {}

/// Checks `LOGFERRY_CRASH_AT`: a name that is not a point, or any name in
/// a build without points, is an error rather than a crash that never comes.
pub fn check_env() -> Result<(), String> {
    if let Ok(v) = std::env::var("LOGFERRY_PAUSE_AT") {
        let known = pause_at().is_some_and(|(p, _)| POINTS.iter().any(|(n, _)| *n == p));
        if !known || !ENABLED {
            return Err(format!(
                "LOGFERRY_PAUSE_AT={v}: want <point>:<milliseconds> in a failpoints build"
            ));
        }
    }
    let Ok(p) = std::env::var("LOGFERRY_CRASH_AT") else {
        return Ok(());
    };
    if !ENABLED {
        return Err(format!(
            "LOGFERRY_CRASH_AT={p}: this build has no crash points (build with --features failpoints)"
        ));
    }
    if POINTS.iter().any(|(n, _)| *n == p) {
        Ok(())
    } else {
        Err(format!(
            "LOGFERRY_CRASH_AT={p} is not a crash point; `logferry debug kill-points` lists them"
        ))
    }
}

/// True when this build can crash at its points.
pub const ENABLED: bool = cfg!(feature = "failpoints");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_unique_and_named_by_stage() {
        let mut seen = std::collections::BTreeSet::new();
        for (p, what) in POINTS {
            assert!(seen.insert(*p), "{p} twice");
            assert!(p.contains('.') && !what.is_empty());
        }
    }
}
