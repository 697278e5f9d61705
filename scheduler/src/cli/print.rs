//! What the commands print for people (`--json` prints the reports
//! themselves).

use std::path::Path;

use logferry_forward::{Format, ForwardReport};

use crate::demo::{DemoReport, thousands};
use crate::pipeline::RunReport;
use crate::reconcile::{Reconciliation, TenantBalance};
use crate::status::WindowStatus;
use crate::verify::IsolationReport;

/// Prints the demo summary.
pub fn demo(r: &DemoReport, data_dir: &Path) {
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

/// Prints an isolation check for people.
pub fn isolation(r: &IsolationReport) {
    for (area, c) in &r.checked {
        println!("{area:<10} {:>8} objects {:>12} rows", c.objects, c.rows);
    }
    if r.isolated() {
        println!("isolated: every row sits with its own tenant");
    } else {
        println!("NOT isolated: {} violation(s)", r.violations.len());
        for v in &r.violations {
            println!("  {} {}: {} ({} rows)", v.area, v.path, v.detail, v.rows);
        }
    }
}

/// Prints a reconciliation for people.
pub fn reconcile(r: &Reconciliation) {
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>12}  balanced",
        "tenant", "received", "loaded", "dead_letter", "duplicates"
    );
    let row = |name: &str, b: &TenantBalance| {
        println!(
            "{:<16} {:>12} {:>12} {:>12} {:>12}  {}",
            name,
            b.received,
            b.loaded,
            b.dead_lettered,
            b.duplicates,
            if b.balanced { "yes" } else { "NO" }
        );
    };
    for (t, b) in &r.tenants {
        row(t, b);
    }
    row("TOTAL", &r.totals);
    if r.balanced {
        println!("balanced: every tenant's received = loaded + dead_lettered + duplicates");
    } else {
        let off: Vec<&str> = r
            .tenants
            .iter()
            .filter(|(_, b)| !b.balanced)
            .map(|(t, _)| t.as_str())
            .collect();
        println!(
            "NOT balanced for: {} (windows not yet run show as received but not loaded; see `logferry status`)",
            off.join(", ")
        );
    }
}

/// Prints a forward report for people.
pub fn forward(r: &ForwardReport) {
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

/// Prints a Kinesis report for people.
pub fn kinesis(r: &logferry_forward::KinesisReport) {
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

/// Prints a run report for people.
pub fn run(report: &RunReport) {
    if report.worked() == 0 && report.failures.is_empty() {
        let busy = report
            .windows
            .iter()
            .filter(|w| w.aggregate == crate::state::AggregateStep::Busy)
            .count();
        if busy > 0 {
            println!("Nothing to do here: {busy} window(s) are being processed by another run.");
        } else {
            println!("Nothing to do: no window has unprocessed data.");
        }
        given_up(report);
        return;
    }
    println!(
        "{:<14} {:>10} {:>13} {:>10} {:>8} {:>9} {:>11} {:>10}",
        "window", "aggregate", "export", "input", "dups", "rejected", "loaded", "p95 e2e s"
    );
    for w in &report.windows {
        let sum = |f: fn(&logferry_core::records::WindowCounts) -> u64| {
            w.counts.values().map(f).sum::<u64>()
        };
        println!(
            "{:<14} {:>10} {:>13} {:>10} {:>8} {:>9} {:>11} {:>10}",
            w.window,
            w.aggregate.as_str(),
            w.export.as_str(),
            sum(|c| c.input),
            sum(|c| c.duplicates),
            sum(|c| c.dead_lettered),
            w.rows_loaded,
            w.e2e_latency_p95_ms
                .map(|ms| format!("{:.1}", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into())
        );
    }
    for s in &report.seals {
        let rows: u64 = s
            .tables
            .iter()
            .filter(|t| t.table == logferry_core::schema::LOG_RECORDS_TABLE)
            .map(|t| t.rows)
            .sum();
        println!(
            "sealed day {}: {} windows, {rows} records, jobs {}",
            s.day,
            s.windows.len(),
            s.tables
                .iter()
                .map(|t| t.job_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for d in &report.seals_waiting {
        println!(
            "{d}: due for its seal, waits for a window of its own (open, unprocessed or failing)"
        );
    }
    let count = |f: &dyn Fn(&crate::pipeline::WindowReport) -> bool| {
        report.windows.iter().filter(|w| f(w)).count()
    };
    println!(
        "{} window(s) processed, {} up to date, {} left to another run, {} failed, {} day(s) sealed, in {:.2} s",
        count(&|w| w.worked()),
        count(&|w| {
            !w.worked()
                && matches!(
                    w.aggregate,
                    crate::state::AggregateStep::UpToDate | crate::state::AggregateStep::NoData
                )
        }),
        count(&|w| w.aggregate == crate::state::AggregateStep::Busy),
        report.failures.len(),
        report.seals.len(),
        report.duration_ms as f64 / 1000.0
    );
    for f in &report.failures {
        match f.next_attempt_at {
            Some(t) => eprintln!(
                "FAILED {} ({}, attempt {}; next attempt after {}): {}",
                f.subject,
                f.kind,
                f.attempts,
                t.format("%Y-%m-%d %H:%M:%SZ"),
                f.error
            ),
            None => eprintln!(
                "FAILED {} ({}, attempt {}; given up: `logferry run --window` or --retry-failed tries again): {}",
                f.subject, f.kind, f.attempts, f.error
            ),
        }
    }
    given_up(report);
}

fn given_up(report: &RunReport) {
    if !report.given_up.is_empty() {
        eprintln!(
            "{} given up on earlier, not tried (logferry status; --retry-failed tries them): {}",
            report.given_up.len(),
            report.given_up.join(", ")
        );
    }
}

/// Prints window states for people.
pub fn status(rows: &[WindowStatus]) {
    if rows.is_empty() {
        println!("The lake is empty: forward some data first (see `logferry forward --help`).");
        return;
    }
    println!(
        "{:<14} {:>7} {:>10} {:>8} {:>10} {:>5} {:>12} {:>14} {:>12}  health",
        "window", "files", "bytes", "tenants", "aggregate", "incr", "curated", "export", "loaded",
    );
    for r in rows {
        let health = match (r.health, r.next_attempt_at) {
            (crate::state::Health::Retrying, Some(t)) => format!(
                "retrying ({} failed, next {})",
                r.attempts,
                t.format("%H:%M:%SZ")
            ),
            (crate::state::Health::Failed, _) => format!("FAILED after {} attempts", r.attempts),
            (h, _) => h.to_string(),
        };
        println!(
            "{:<14} {:>7} {:>10} {:>8} {:>10} {:>5} {:>12} {:>14} {:>12}  {}",
            r.window,
            r.landed_files,
            r.landed_bytes,
            r.tenants,
            r.aggregate.to_string(),
            r.increments,
            r.curated_rows,
            r.export.to_string(),
            r.rows_loaded,
            health
        );
        if let Some(e) = &r.error {
            println!("    last error: {e}");
        }
    }
}

/// Prints a backfill's report.
pub fn backfill(r: &crate::backfill::BackfillReport) {
    let done = r.done.iter().filter(|p| p.state == "done").count();
    let skipped = r.done.iter().filter(|p| p.state == "skipped").count();
    let jobs: u64 = r.done.iter().map(|p| p.jobs).sum();
    let rows: u64 = r.done.iter().map(|p| p.rows).sum();
    println!(
        "backfill {} ({} to {}): {done} partition(s) done, {skipped} done earlier, of {}; {jobs} load jobs, {rows} rows, in {:.1} s",
        r.id,
        r.spec.from,
        r.spec.to,
        r.partitions,
        r.duration_ms as f64 / 1000.0
    );
    match &r.paused {
        Some(why) => println!("paused: {why}"),
        None if r.complete => println!("complete"),
        None => {}
    }
}

/// Prints a backfill's plan.
pub fn backfill_plan(r: &crate::backfill::BackfillReport) {
    println!(
        "backfill {} ({} to {}): {} window(s) with data, {} partition(s), {:.1} MB of landing data",
        r.id,
        r.spec.from,
        r.spec.to,
        r.windows,
        r.partitions,
        r.bytes as f64 / 1e6
    );
    for (t, jobs) in &r.jobs_per_table {
        let left = r
            .jobs_left_today
            .get(t)
            .map(|l| format!(", {l} left today"))
            .unwrap_or_else(|| ", no quota (local warehouse)".into());
        let spare = r
            .spare
            .get(t)
            .map(|s| {
                format!(
                    ", {} of them and {} a day after today spare of the schedules' loads",
                    s.today, s.per_day
                )
            })
            .unwrap_or_default();
        println!("  {t:<20} {jobs:>6} load jobs{left}{spare}");
    }
    let done = if r.complete {
        "; nothing left to do"
    } else {
        ""
    };
    match r.days_needed {
        Some(d) => println!("  {d} day(s) within the load job quota{done}"),
        None => println!(
            "  DOES NOT FIT: the schedules use every load job the quota allows, none is left for a backfill{done}"
        ),
    }
}

/// Prints the schedules' next fire times.
pub fn schedules(shown: &[crate::schedule::Shown]) {
    if shown.is_empty() {
        println!("No [[schedule]] is configured.");
        return;
    }
    for s in shown {
        println!(
            "{:<16} {:<8} {:<28} {}",
            s.name,
            s.job.as_str(),
            s.expression,
            s.timezone
        );
        for t in &s.next {
            println!("    next {}", t.format("%Y-%m-%d %H:%M:%S UTC"));
        }
    }
}

/// Prints the load plan.
pub fn plan(p: &crate::planner::Plan, today: &std::collections::BTreeMap<String, u64>) {
    println!(
        "warehouse {} ({:?} partitions), micro-batch every {}",
        p.warehouse,
        p.partitioning,
        p.micro_batch_interval_s
            .map(|s| format!("{s:.0} s"))
            .unwrap_or_else(|| "- (no run schedule)".into())
    );
    println!(
        "{:<20} {:>8} {:>12} {:>6} {:>8} {:>9} {:>10} {:>11}",
        "table", "appends", "window loads", "seals", "jobs/day", "budget", "max URIs", "left today"
    );
    for t in &p.tables {
        println!(
            "{:<20} {:>8} {:>12} {:>6} {:>8} {:>9} {:>10} {:>11}",
            t.table,
            t.appends,
            t.window_loads,
            t.seals,
            t.jobs,
            if t.budget == u64::MAX {
                "-".to_string()
            } else {
                t.budget.to_string()
            },
            t.max_uris,
            today
                .get(&t.table)
                .map_or("-".to_string(), |l| l.to_string())
        );
    }
    if p.project_budget != u64::MAX {
        println!(
            "project: {} jobs a day of {}",
            p.project_jobs, p.project_budget
        );
    }
    if let Some(s) = p.shortest_interval_s {
        println!("shortest micro-batch interval the table quota allows: {s} s");
    }
    if p.refusals.is_empty() {
        println!("the plan fits");
    } else {
        for r in &p.refusals {
            println!("DOES NOT FIT: {r}");
        }
    }
}

/// Prints a DLQ summary.
pub fn dlq(rows: &[crate::dlq::Summary]) {
    if rows.is_empty() {
        println!("The dead-letter queue is empty (for these filters).");
        return;
    }
    println!(
        "{:<10} {:<22} {:<16} {:<14} {:>9} {:>11}",
        "stage", "reason", "tenant", "hour", "entries", "replayable"
    );
    for r in rows {
        println!(
            "{:<10} {:<22} {:<16} {:<14} {:>9} {:>11}",
            r.stage, r.reason, r.tenant, r.hour, r.count, r.replayable
        );
    }
    let total: u64 = rows.iter().map(|r| r.count).sum();
    println!("{total} entries");
}

/// Prints what a replay did.
pub fn replay(r: &crate::dlq::ReplayReport) {
    println!(
        "replayed {} dead-letter object(s): {} entries selected, {} landed, {} dead-lettered again, {} not replayable (payload not kept whole){}",
        r.objects,
        r.selected,
        r.landed,
        r.failed_again.values().sum::<u64>(),
        r.not_replayable,
        if r.busy > 0 {
            format!(", {} left to another replay", r.busy)
        } else {
            String::new()
        }
    );
    for (reason, n) in &r.failed_again {
        println!("    still {reason:<22} {n:>8}");
    }
    if r.landed > 0 {
        println!("run `logferry run` to load what landed");
    }
}

/// Prints the KPIs, one line each.
pub fn kpis(since: &str, rows: &[logferry_observe::KpiResult]) {
    println!("KPIs over the last {since} (the performance guide's table)");
    println!(
        "{:<36} {:>12} {:>10} {:>10} {:>6}  basis",
        "kpi", "value", "target", "critical", "status"
    );
    for k in rows {
        println!(
            "{:<36} {:>12} {:>10} {:>10} {:>6}  {}",
            k.name,
            logferry_observe::kpi::display(k),
            k.target,
            k.critical,
            k.status.as_str(),
            k.basis
        );
    }
}

/// Prints the cost of a range.
pub fn cost(since: &str, c: &logferry_observe::cost::CostReport) {
    let u = &c.usage;
    println!(
        "cost over the last {since}: {} records received, {} made queryable, {:.1} MB over the transit link",
        u.records,
        u.rows_loaded,
        u.egress_bytes as f64 / 1e6
    );
    println!(
        "{:<28} {:>16} {:<18} {:>12} {:>14}  price",
        "item", "quantity", "", "USD", "USD/million"
    );
    for l in &c.lines {
        println!(
            "{:<28} {:>16.3} {:<18} {:>12.6} {:>14.6}  {}",
            l.item, l.quantity, l.unit, l.usd, l.per_million_usd, l.price
        );
    }
    println!(
        "{:<28} {:>16} {:<18} {:>12.6} {:>14}",
        "total",
        "",
        "",
        c.total_usd,
        c.per_million_usd
            .map_or("-".to_string(), |v| format!("{v:.6}"))
    );
    println!("per day at this rate: ${:.4}", c.per_day_usd);
    println!("the same rows loaded otherwise (JSON over the link, as they insert it):");
    println!(
        "  {:<40} {:>14.6} USD/million",
        "logferry (load jobs, compressed Parquet)",
        c.per_million_usd.unwrap_or(0.0)
    );
    for a in &c.alternatives {
        println!(
            "  {:<40} {:>14.6} USD/million (ingestion ${:.6}, egress ${:.6})",
            a.name, a.per_million_usd, a.ingestion_usd, a.egress_usd
        );
    }
}

/// Prints the plan's latency floor and cost.
pub fn projection(p: &crate::planner::Projection) {
    if let Some(f) = p.latency_floor_p95_s {
        println!(
            "latency floor: P95 event → queryable at least {f:.0} s (a record waits for the next micro-batch{})",
            if p.shortest_interval_s.is_some() {
                ", at the shortest interval the load job quota allows"
            } else {
                ""
            }
        );
    }
    match p.cost_per_million_usd {
        Some(c) => println!(
            "cost at the last 24 h's volume ({} records): ${:.4} a day, ${c:.4} per million records (logferry cost)",
            p.records_last_24h, p.cost_per_day_usd
        ),
        None => println!("cost: no records in the last 24 h to project from (logferry cost)"),
    }
}

/// The metric catalogue as a table.
pub fn catalog() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<46} {:<9} {:<28} {:<14} {:<26} {:<12} help",
        "prometheus name", "kind", "labels", "component", "guide row", "target"
    );
    for d in logferry_observe::CATALOG {
        let kind = match d.kind {
            logferry_observe::Kind::Counter => "counter",
            logferry_observe::Kind::Gauge => "gauge",
            logferry_observe::Kind::Histogram => "histogram",
        };
        let _ = writeln!(
            out,
            "{:<46} {:<9} {:<28} {:<14} {:<26} {:<12} {}{}",
            d.sample_name(),
            kind,
            d.labels.join(","),
            d.component.as_str(),
            d.guide.unwrap_or("-"),
            d.target.map_or("-", |t| t.text),
            d.help,
            d.emf.map_or(String::new(), |e| format!(" (EMF: {e})"))
        );
    }
    out
}

/// `logferry debug lambda-invoke`.
pub fn lambda_invoke(r: &crate::lambda::LocalInvocations) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    println!("{} ({:.1} MB)", r.bootstrap, r.bytes as f64 / 1e6);
    for (i, run) in r.runs.iter().enumerate() {
        println!(
            "run {}: init {}, cold start {}, {} answers",
            i + 1,
            ms(run.init_ms),
            ms(run.cold_start_ms),
            run.outcomes.len()
        );
        for o in &run.outcomes {
            println!(
                "  {} {} in {:.1} ms: {}",
                o.request_id,
                if o.ok { "response" } else { "error" },
                o.handler_ms,
                o.body
            );
        }
        if let Some(e) = &run.init_error {
            println!("  init error: {e}");
        }
        if let Some(x) = &run.exited {
            println!("  exited: {x}");
            let lines: Vec<&String> = run.stdout.iter().chain(&run.stderr).collect();
            for l in &lines[lines.len().saturating_sub(10)..] {
                println!("  | {l}");
            }
        }
    }
    println!(
        "median: init {}, cold start {}",
        ms(r.init_ms_median),
        ms(r.cold_start_ms_median)
    );
}

/// `logferry deploy render`.
pub fn deploy(r: &crate::deploy::Rendered, out: &std::path::Path) {
    for f in &r.files {
        println!("wrote {}", out.join(f).display());
    }
    println!("streams (shards from [deploy] rates):");
    for s in &r.streams {
        println!(
            "  {:<28} tenant {:<16} {:>3} shards for {:.0} records/s, {:.0} bytes/s",
            s.name, s.tenant, s.shards, s.records_per_second, s.bytes_per_second
        );
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
}
