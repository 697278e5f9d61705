//! One firing of a schedule's job, as the daemon, the Lambda handler and
//! `logferry job NAME` (crontab, systemd, ECS) run it: the same code
//! whoever fires it.

use serde::Serialize;

use logferry_core::schedule::Job;

use crate::backfill::BackfillReport;
use crate::error::{Error, Result};
use crate::pipeline::{Mode, Pipeline, RunOptions, RunReport};

/// What one firing did.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// The schedule, when fired by one.
    pub schedule: Option<String>,
    /// The job.
    pub job: Job,
    /// The pipeline run (`run`, `seal`).
    pub run: Option<RunReport>,
    /// The queued backfills worked on (`backfill`).
    pub backfills: Vec<BackfillReport>,
}

/// A short account of a job, for a Lambda response or a log line.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    /// The schedule.
    pub schedule: Option<String>,
    /// The job.
    pub job: Job,
    /// Windows and days worked on.
    pub worked: usize,
    /// What failed.
    pub failures: Vec<String>,
    /// Backfills worked on, and how many finished.
    pub backfills: usize,
    /// Backfills finished.
    pub backfills_complete: usize,
}

impl JobReport {
    /// True when something failed.
    pub fn failed(&self) -> bool {
        self.run.as_ref().is_some_and(RunReport::failed)
    }

    /// The short account.
    pub fn summary(&self) -> JobSummary {
        JobSummary {
            schedule: self.schedule.clone(),
            job: self.job,
            worked: self.run.as_ref().map_or(0, RunReport::worked),
            failures: self
                .run
                .iter()
                .flat_map(|r| r.failures.iter())
                .map(|f| format!("{}: {}", f.subject, f.error))
                .collect(),
            backfills: self.backfills.len(),
            backfills_complete: self.backfills.iter().filter(|b| b.complete).count(),
        }
    }
}

/// Runs `job` once.
pub async fn run_job(
    p: &Pipeline,
    schedule: Option<&str>,
    job: Job,
    quiet: bool,
) -> Result<JobReport> {
    let mut report = JobReport {
        schedule: schedule.map(str::to_string),
        job,
        run: None,
        backfills: Vec::new(),
    };
    match job {
        Job::Run | Job::Seal => {
            let mode = if job == Job::Run {
                Mode::MicroBatch
            } else {
                Mode::Seal
            };
            report.run = Some(
                p.run(&RunOptions {
                    mode,
                    quiet,
                    ..Default::default()
                })
                .await?,
            );
        }
        Job::Backfill => report.backfills = crate::backfill::run_queue(p, quiet).await?,
    }
    Ok(report)
}

/// Runs the job of the configured schedule `name` once.
pub async fn run_schedule(p: &Pipeline, name: &str, quiet: bool) -> Result<JobReport> {
    let s = p
        .ctx()
        .settings
        .schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            Error::Config(format!(
                "no [[schedule]] is named {name:?} (logferry schedule show lists them)"
            ))
        })?;
    run_job(p, Some(name), s.job, quiet).await
}
