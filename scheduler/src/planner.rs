//! Load planning within BigQuery's quotas: how many load jobs the
//! configured schedules run per table and per day, against the daily quota
//! of each table (1,500, failed jobs included, shared with every other
//! writer of the table) and of the project (100,000), and what one job may
//! hold (10,000 source URIs, 15 TB). A configuration whose plan cannot fit
//! is refused, with the shortest micro-batch interval that would.
//!
//! The model, per day and table: every micro-batch of an open window is
//! one append of `log_records` (rollups are loaded whole, with their
//! window); every window's full run is one load per table (hourly
//! partitions replace the hour; daily partitions append the window's
//! first run, or leave it to the day's seal when increments were appended),
//! and a day's seal is one load per table. Late data and retries are what
//! `bigquery.quota_headroom` keeps room for.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use logferry_core::config::{LoadQuotas, Partitioning, Settings, WarehouseSettings};
use logferry_core::schedule::Job;
use logferry_core::schema::LOG_RECORDS_TABLE;

use crate::error::{Error, Result};

/// BigQuery's most source URIs per load job.
pub const MAX_URIS_PER_JOB: u64 = 10_000;
/// BigQuery's most bytes per load job.
pub const MAX_BYTES_PER_JOB: u64 = 15_000_000_000_000;

/// One table's load jobs per day.
#[derive(Debug, Clone, Serialize)]
pub struct TablePlan {
    /// Table.
    pub table: String,
    /// Appends of micro-batches.
    pub appends: u64,
    /// Loads of whole windows (hourly replaces, or a day's first appends).
    pub window_loads: u64,
    /// Seals of days.
    pub seals: u64,
    /// All of them.
    pub jobs: u64,
    /// Jobs logferry may run on the table per day.
    pub budget: u64,
    /// Source URIs of the largest job (a day's seal, or a window's load).
    pub max_uris: u64,
}

/// The plan of a configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `bigquery` or `local`.
    pub warehouse: &'static str,
    /// Table partitioning.
    pub partitioning: Partitioning,
    /// The micro-batch interval of the `run` schedules (the shortest).
    pub micro_batch_interval_s: Option<f64>,
    /// Per table.
    pub tables: Vec<TablePlan>,
    /// Jobs of every table together.
    pub project_jobs: u64,
    /// Jobs logferry may run in the project per day.
    pub project_budget: u64,
    /// The shortest micro-batch interval the table quota allows.
    pub shortest_interval_s: Option<u64>,
    /// Why the plan does not fit; empty when it does.
    pub refusals: Vec<String>,
    /// The quotas planned against.
    pub quotas: Option<QuotaView>,
}

/// The quotas as configured.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaView {
    /// Jobs per table per day.
    pub jobs_per_table_per_day: u64,
    /// Jobs per project per day.
    pub jobs_per_project_per_day: u64,
    /// Updates per table per 10 s.
    pub table_updates_per_10s: u32,
    /// Share kept free.
    pub headroom: f64,
    /// Other writers' jobs per table per day.
    pub other_jobs_per_table_per_day: u64,
}

/// How often the `run` schedules fire, on average over the next day.
pub fn micro_batch_interval(settings: &Settings, now: DateTime<Utc>) -> Option<Duration> {
    settings
        .schedules
        .iter()
        .filter(|s| s.job == Job::Run)
        .filter_map(|s| match s.rate() {
            Some(p) => Some(p),
            None => {
                let fires = s
                    .next_n(now, 100_000)
                    .into_iter()
                    .take_while(|t| *t < now + chrono::Duration::days(1))
                    .count();
                (fires > 0).then(|| Duration::from_secs_f64(86_400.0 / fires as f64))
            }
        })
        .min()
}

fn quotas(settings: &Settings) -> Option<LoadQuotas> {
    match &settings.warehouse {
        WarehouseSettings::BigQuery(b) => Some(b.quotas),
        WarehouseSettings::Local { .. } => None,
    }
}

/// The plan of the configuration, for the tables `tables` (log_records
/// and the rollups) and `tenants` tenants.
pub fn plan(settings: &Settings, tables: &[String], now: DateTime<Utc>) -> Plan {
    let q = quotas(settings);
    let interval = micro_batch_interval(settings, now);
    let per_window = interval.map_or(0, |i| (3600.0 / i.as_secs_f64().max(1e-3)).ceil() as u64);
    let tenants = settings.tenants.all().len().max(1) as u64;
    let partitioning = settings.partitioning;
    let budget = q.map_or(u64::MAX, |q| q.table_budget());
    let mut out = Vec::new();
    for t in tables {
        let records = t == LOG_RECORDS_TABLE;
        let appends = if records { 24 * per_window } else { 0 };
        let (window_loads, seals, max_uris) = match partitioning {
            Partitioning::Hour => (24, 0, if records { tenants } else { 1 }),
            // A window's first run is appended only when no increment was.
            Partitioning::Day => (
                if appends > 0 { 0 } else { 24 },
                1,
                24 * if records { tenants } else { 1 },
            ),
        };
        out.push(TablePlan {
            table: t.clone(),
            appends,
            window_loads,
            seals,
            jobs: appends + window_loads + seals,
            budget,
            max_uris,
        });
    }
    let project_jobs: u64 = out.iter().map(|t| t.jobs).sum();
    let mut refusals = Vec::new();
    let loads_without_appends = match partitioning {
        Partitioning::Hour => 24,
        Partitioning::Day => 1,
    };
    let shortest = q.and_then(|q| {
        let room = q.table_budget().checked_sub(loads_without_appends)?;
        (room > 0).then(|| 86_400u64.div_ceil(room))
    });
    if let Some(q) = q {
        for t in &out {
            if t.jobs > t.budget {
                let fix = match (t.appends > 0, shortest) {
                    (true, Some(s)) => format!(
                        "; the shortest micro-batch interval that fits is {s} s (rate({} minutes) in EventBridge)",
                        s.div_ceil(60)
                    ),
                    _ => String::new(),
                };
                refusals.push(format!(
                    "table {}: {} load jobs a day ({} appends, {} window loads, {} seals) exceed the {} \
                     BigQuery allows logferry ({} per table per day, less {:.0} % headroom and {} \
                     other jobs){fix}",
                    t.table,
                    t.jobs,
                    t.appends,
                    t.window_loads,
                    t.seals,
                    t.budget,
                    q.jobs_per_table_per_day,
                    q.headroom * 100.0,
                    q.other_jobs_per_table_per_day,
                ));
            }
            if t.max_uris > MAX_URIS_PER_JOB {
                refusals.push(format!(
                    "table {}: a day's seal loads {} objects ({} tenants × 24 windows) in one job; \
                     BigQuery takes at most {MAX_URIS_PER_JOB} source URIs per job: use hourly partitions",
                    t.table, t.max_uris, tenants
                ));
            }
        }
        if project_jobs > q.project_budget() {
            refusals.push(format!(
                "{project_jobs} load jobs a day over {} tables exceed the project's {} ({} per \
                 project per day, less headroom)",
                out.len(),
                q.project_budget(),
                q.jobs_per_project_per_day
            ));
        }
    }
    Plan {
        warehouse: if q.is_some() { "bigquery" } else { "local" },
        partitioning,
        micro_batch_interval_s: interval.map(|i| i.as_secs_f64()),
        tables: out,
        project_jobs,
        project_budget: q.map_or(u64::MAX, |q| q.project_budget()),
        shortest_interval_s: shortest,
        refusals,
        quotas: q.map(|q| QuotaView {
            jobs_per_table_per_day: q.jobs_per_table_per_day,
            jobs_per_project_per_day: q.jobs_per_project_per_day,
            table_updates_per_10s: q.table_updates_per_10s,
            headroom: q.headroom,
            other_jobs_per_table_per_day: q.other_jobs_per_table_per_day,
        }),
    }
}

/// Refuses a configuration whose plan does not fit the quotas.
pub fn check(plan: &Plan) -> Result<()> {
    if plan.refusals.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "the load plan does not fit BigQuery's quotas (logferry plan shows it):\n  {}",
            plan.refusals.join("\n  ")
        )))
    }
}

/// What of a table's load job quota a backfill may use: today (of the
/// `left` jobs, what the schedules will not need before the quota resets)
/// and on each later day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spare {
    /// Jobs a backfill may run today.
    pub today: u64,
    /// Jobs a backfill may run on a later day.
    pub per_day: u64,
}

/// The spare quota of `table`, with `left` jobs left today.
pub fn spare(settings: &Settings, table: &str, left: u64, now: DateTime<Utc>) -> Spare {
    let Some(q) = quotas(settings) else {
        return Spare {
            today: u64::MAX,
            per_day: u64::MAX,
        };
    };
    let scheduled = plan(settings, &[table.to_string()], now)
        .tables
        .first()
        .map_or(0, |t| t.jobs);
    let pacific = now.with_timezone(&chrono_tz::America::Los_Angeles);
    let rest_of_day = 1.0 - f64::from(pacific.num_seconds_from_midnight()) / 86_400.0;
    let still_needed = (scheduled as f64 * rest_of_day).ceil() as u64;
    Spare {
        today: left.saturating_sub(still_needed),
        per_day: q.table_budget().saturating_sub(scheduled),
    }
}

/// Load jobs of one table to keep for the rest of today's window loads
/// and seals: micro-batch appends stop when no more than this is left.
pub fn seal_reserve(settings: &Settings, now: DateTime<Utc>) -> u64 {
    match settings.partitioning {
        // One load per window still to close today (Pacific time), and
        // two for late data.
        Partitioning::Hour => {
            let hour = now.with_timezone(&chrono_tz::America::Los_Angeles).hour();
            u64::from(24 - hour) + 2
        }
        Partitioning::Day => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(extra: &str) -> Settings {
        settings_with("", extra)
    }

    fn settings_with(warehouse: &str, extra: &str) -> Settings {
        let file = format!(
            "[storage]\nexport = \"gs://b/p\"\n[warehouse]\nkind = \"bigquery\"\n{warehouse}\n\
             [bigquery]\nproject = \"p\"\n{extra}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, file).unwrap();
        let (c, _) = logferry_core::config::Config::load(Some(&p), Vec::new()).unwrap();
        c.validate(Path::new("/d")).unwrap()
    }

    fn tables() -> Vec<String> {
        ["log_records", "error_rate", "logs_per_minute"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn the_default_schedules_fit_hourly_partitions() {
        let s = settings("");
        let p = plan(&s, &tables(), Utc::now());
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
        let records = &p.tables[0];
        assert_eq!((records.appends, records.window_loads), (24 * 30, 24));
        assert_eq!(records.budget, 1350);
        // 86,400 s over (1,350 - 24) appends.
        assert_eq!(p.shortest_interval_s, Some(66));
    }

    #[test]
    fn too_short_an_interval_is_refused_with_what_fits() {
        let s = settings(
            "[[schedule]]\nname = \"fast\"\njob = \"run\"\nexpression = \"rate(10 seconds)\"\n",
        );
        let p = plan(&s, &tables(), Utc::now());
        let e = check(&p).unwrap_err().to_string();
        assert!(e.contains("table log_records: 8664 load jobs a day"), "{e}");
        assert!(
            e.contains("shortest micro-batch interval that fits is 66 s"),
            "{e}"
        );
        assert!(e.contains("rate(2 minutes)"), "{e}");
        // Other writers of the tables use up quota too.
        let s = settings(
            "other_jobs_per_table_per_day = 1300\n[[schedule]]\nname = \"m\"\njob = \"run\"\nexpression = \"rate(30 minutes)\"\n",
        );
        let p = plan(&s, &tables(), Utc::now());
        assert!(check(&p).is_err());
    }

    #[test]
    fn daily_seals_with_too_many_tenants_are_refused() {
        let mut tenants = String::new();
        for i in 0..500 {
            tenants.push_str(&format!("[[tenant]]\nid = \"t{i}\"\n"));
        }
        let s = settings_with("partitioning = \"day\"", &tenants);
        let p = plan(&s, &tables(), Utc::now());
        let e = check(&p).unwrap_err().to_string();
        assert!(e.contains("12000 objects"), "{e}");
        assert!(e.contains("use hourly partitions"), "{e}");
    }

    #[test]
    fn a_backfill_gets_what_the_schedules_leave() {
        // 720 appends and 24 window loads a day of 1,350.
        let s = settings("");
        let t = "log_records";
        // Midnight Pacific: the whole day's 744 scheduled jobs still to come.
        let midnight = "2026-12-01T08:00:00Z".parse().unwrap();
        let a = spare(&s, t, 1350, midnight);
        assert_eq!(
            a,
            Spare {
                today: 606,
                per_day: 606
            }
        );
        // Noon Pacific: half of them.
        let noon = "2026-12-01T20:00:00Z".parse().unwrap();
        assert_eq!(spare(&s, t, 1000, noon).today, 1000 - 372);
        // Other loads used today's quota: nothing spare until tomorrow.
        assert_eq!(spare(&s, t, 300, noon).today, 0);
        // The local warehouse has no quota.
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = logferry_core::config::Config::load(None, Vec::new()).unwrap();
        let local = c.validate(dir.path()).unwrap();
        assert_eq!(spare(&local, t, 0, noon).per_day, u64::MAX);
    }

    #[test]
    fn the_local_warehouse_has_no_quota() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = logferry_core::config::Config::load(None, Vec::new()).unwrap();
        let s = c.validate(dir.path()).unwrap();
        let p = plan(&s, &tables(), Utc::now());
        assert_eq!(p.warehouse, "local");
        assert!(check(&p).is_ok());
    }
}

/// What the plan means for latency and cost.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    /// The configured micro-batch interval, seconds.
    pub micro_batch_interval_s: Option<f64>,
    /// The shortest interval the load job quota allows (BigQuery).
    pub shortest_interval_s: Option<u64>,
    /// A record waits for the next micro-batch: the P95 of event time to
    /// queryable is at least 95% of the interval, plus the load job's own
    /// time. With BigQuery, at the shortest interval the quota allows.
    pub latency_floor_p95_s: Option<f64>,
    /// What the last 24 hours cost, per day, USD.
    pub cost_per_day_usd: f64,
    /// Per million records, USD (none without records).
    pub cost_per_million_usd: Option<f64>,
    /// Records received in the last 24 hours.
    pub records_last_24h: u64,
}

/// The latency floor of `plan` and the cost of the last day's volume.
pub fn projection(plan: &Plan, cost: &logferry_observe::cost::CostReport) -> Projection {
    let interval = plan.micro_batch_interval_s;
    let floor = match (plan.warehouse, plan.shortest_interval_s, interval) {
        ("bigquery", Some(q), Some(i)) => Some(0.95 * i.max(q as f64)),
        ("bigquery", Some(q), None) => Some(0.95 * q as f64),
        (_, _, Some(i)) => Some(0.95 * i),
        _ => None,
    };
    Projection {
        micro_batch_interval_s: interval,
        shortest_interval_s: plan.shortest_interval_s,
        latency_floor_p95_s: floor,
        cost_per_day_usd: cost.per_day_usd,
        cost_per_million_usd: cost.per_million_usd,
        records_last_24h: cost.usage.records,
    }
}
