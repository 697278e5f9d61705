//! The states of windows and their stages, as the run report and `status`
//! name them. Each serialises to the snake_case name shown in reports.

use serde::{Deserialize, Serialize};

/// What a run did to a window's aggregate stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateStep {
    /// The window was aggregated whole: a new run committed.
    Done,
    /// An increment of the open window committed.
    Increment,
    /// The committed run covers every landing object already.
    UpToDate,
    /// The window has no landing data.
    NoData,
    /// Another runner holds the window: left to it.
    Busy,
    /// This attempt failed (see the report's error).
    Failed,
    /// Not tried: waiting for its next attempt, or given up on.
    Waiting,
    /// Not due in this mode (an open window in a seal pass).
    Skipped,
}

/// What a run did to a window's export stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStep {
    /// The window's run replaced its hourly partition.
    Loaded,
    /// Appended to its partition (a day's first run, or an increment).
    Appended,
    /// Exported; the day's seal loads it.
    AwaitingSeal,
    /// Nothing new to export.
    UpToDate,
    /// Nothing to export (the aggregate did nothing).
    Skipped,
    /// Another runner holds the window.
    Busy,
    /// This attempt failed.
    Failed,
    /// Not tried this run.
    Waiting,
}

impl AggregateStep {
    /// True when the run did work on the window.
    pub fn worked(self) -> bool {
        matches!(self, AggregateStep::Done | AggregateStep::Increment)
    }

    /// The report name.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateStep::Done => "done",
            AggregateStep::Increment => "increment",
            AggregateStep::UpToDate => "up_to_date",
            AggregateStep::NoData => "no_data",
            AggregateStep::Busy => "busy",
            AggregateStep::Failed => "failed",
            AggregateStep::Waiting => "waiting",
            AggregateStep::Skipped => "skipped",
        }
    }
}

impl ExportStep {
    /// True when the run loaded or shipped something.
    pub fn worked(self) -> bool {
        matches!(
            self,
            ExportStep::Loaded | ExportStep::Appended | ExportStep::AwaitingSeal
        )
    }

    /// The report name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStep::Loaded => "loaded",
            ExportStep::Appended => "appended",
            ExportStep::AwaitingSeal => "awaiting_seal",
            ExportStep::UpToDate => "up_to_date",
            ExportStep::Skipped => "skipped",
            ExportStep::Busy => "busy",
            ExportStep::Failed => "failed",
            ExportStep::Waiting => "waiting",
        }
    }
}

impl From<logferry_export::LoadState> for ExportStep {
    fn from(s: logferry_export::LoadState) -> Self {
        match s {
            logferry_export::LoadState::Loaded => ExportStep::Loaded,
            logferry_export::LoadState::Appended => ExportStep::Appended,
            logferry_export::LoadState::AwaitingSeal => ExportStep::AwaitingSeal,
        }
    }
}

/// Where a window's aggregate stands (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateStatus {
    /// Never aggregated.
    Pending,
    /// New landing data since the last run.
    Stale,
    /// The committed run covers every landing object.
    Done,
    /// Open: increments cover every landing object; the window's full run
    /// comes at its seal.
    Open,
}

/// Where a window's data stands in the warehouse (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    /// Not exported.
    Pending,
    /// An older run is exported.
    Stale,
    /// Its run replaced its hourly partition.
    Loaded,
    /// Appended to its partition (its day's first run, or increments).
    Appended,
    /// Its day's seal loaded this run.
    Sealed,
    /// Exported; waits for its day's seal.
    AwaitingSeal,
}

/// Whether a window's processing fails (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No failure on record.
    Ok,
    /// Failed; later runs try again after a backoff.
    Retrying,
    /// Failed `run.max_attempts` times: left alone until an operator acts.
    Failed,
}

impl AggregateStatus {
    /// The status name.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateStatus::Pending => "pending",
            AggregateStatus::Stale => "stale",
            AggregateStatus::Done => "done",
            AggregateStatus::Open => "open",
        }
    }
}

impl ExportStatus {
    /// The status name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Pending => "pending",
            ExportStatus::Stale => "stale",
            ExportStatus::Loaded => "loaded",
            ExportStatus::Appended => "appended",
            ExportStatus::Sealed => "sealed",
            ExportStatus::AwaitingSeal => "awaiting_seal",
        }
    }
}

impl Health {
    /// The health name.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Retrying => "retrying",
            Health::Failed => "failed",
        }
    }
}

/// Displays as, and compares with, the report name (`step == "done"`).
macro_rules! named {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )*};
}

named!(
    AggregateStep,
    ExportStep,
    AggregateStatus,
    ExportStatus,
    Health
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialise_to_their_report_names() {
        for (s, name) in [
            (AggregateStep::Done, "done"),
            (AggregateStep::UpToDate, "up_to_date"),
            (AggregateStep::NoData, "no_data"),
            (AggregateStep::Busy, "busy"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), name);
            assert_eq!(s.as_str(), name);
            assert_eq!(s.to_string(), name);
        }
        for (s, name) in [
            (ExportStep::Loaded, "loaded"),
            (ExportStep::Appended, "appended"),
            (ExportStep::AwaitingSeal, "awaiting_seal"),
            (ExportStep::UpToDate, "up_to_date"),
            (ExportStep::Skipped, "skipped"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), name);
            assert_eq!(s.as_str(), name);
        }
        assert_eq!(ExportStatus::AwaitingSeal.to_string(), "awaiting_seal");
        assert_eq!(Health::Retrying.to_string(), "retrying");
    }
}
