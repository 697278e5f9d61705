//! The `logferry` library: the orchestration of the pipeline (which windows
//! are due, leases, aggregate → export → load → seal, failures kept to
//! their window), the daemon, schedules, backfills, DLQ replay and load
//! planning. The `logferry` binary, the daemon and the Lambda handlers are
//! thin shells over it, and the integration tests drive the same code.

pub mod backfill;
pub mod cli;
pub mod cluster;
pub mod context;
pub mod daemon;
pub mod dashboards;
pub mod demo;
pub mod deploy;
pub mod dlq;
pub mod error;
pub mod failures;
pub mod forward;
pub mod inbox;
pub mod jobs;
pub mod lambda;
pub mod loadtest;
pub mod measure;
pub mod metrics;
pub mod pipeline;
pub mod planner;
pub mod progress;
pub mod reconcile;
pub mod schedule;
pub mod sql;
pub mod state;
pub mod status;
pub mod verify;
