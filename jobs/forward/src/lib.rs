//! logferry forward: decodes tenant records (NDJSON, CloudWatch Logs
//! subscription payloads), validates them at the edge, and lands them in the
//! lake as Parquet per tenant, date and hour; refused items go to the DLQ with
//! a reason code.

pub mod batch;
pub mod batcher;
pub mod cwl;
pub mod decode;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod job;
pub mod kinesis;
pub mod reader;
pub mod reason;
pub mod record;
pub mod workload;

pub use error::{Error, Result};
pub use job::{Format, ForwardReport, Forwarder, Input};
pub use kinesis::{KinesisForwarder, KinesisReport};
