//! logferry aggregate: runs the SQL program in `sql/` with DataFusion over
//! each hourly window of landed data: dedupe, validation rules (violations go
//! to the DLQ), curated rows and rollups.

pub mod catalog;
pub mod engine;
pub mod error;
pub mod keys;
pub mod program;
pub mod session;
pub mod sink;
pub mod window;

pub use error::{Error, Result};
pub use program::SqlProgram;
pub use window::{AggregateRecord, Aggregator, Outcome};

#[cfg(test)]
mod golden;
