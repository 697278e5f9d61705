//! logferry core: configuration, storage locations, table schemas, partition
//! paths, the `_state` ledger and the metrics every stage reports.

pub mod config;
pub mod dlq;
pub mod error;
pub mod failpoint;
pub mod faults;
pub mod ids;
pub mod ledger;
pub mod metrics;
pub mod partition;
pub mod records;
pub mod retry;
pub mod rooted;
pub mod schedule;
pub mod schema;
pub mod storage;

pub use error::{Error, Result};
