//! logferry's integration tests: the whole pipeline on the embedded backends,
//! driven through the library the binary runs and through the binary itself.

#![allow(clippy::unwrap_used)]

mod backfill;
mod cli;
#[cfg(feature = "ballista")]
mod cluster;
mod common;
#[cfg(feature = "failpoints")]
mod concurrency;
#[cfg(feature = "failpoints")]
mod crash;
mod daemon;
mod deploy;
mod dlq;
mod emulators;
mod faultproxy;
mod faults;
mod forwarder;
mod hostile;
mod isolation;
mod lambda;
mod measure;
mod pipeline;
mod procs;
mod quotas;
mod runs;
mod scale;
mod schedules;
