//! logferry's lean AWS Lambda functions, each its own small binary:
//!
//! - [`forwarder`]: the client-side forwarder. It runs in a client account,
//!   takes CloudWatch Logs subscription events and puts them into that
//!   tenant's Kinesis stream in the central account, through an assumed
//!   role, retrying exactly the records that failed and dead-lettering to
//!   S3 what cannot be delivered;
//! - [`lander`]: CloudWatch Logs subscription and Kinesis events, decoded
//!   and landed in the lake as Parquet (what `logferry forward` does with
//!   files and streams).
//!
//! Neither links DataFusion nor the Google clients: the scheduled runner
//! (`logferry-lambda`, in the `logferry` crate) carries those.

pub mod error;
pub mod forwarder;
pub mod lander;
pub mod logs;
#[cfg(feature = "local-runtime")]
pub mod runtime_api;

pub use error::{Error, Result};

/// Installs the TLS provider the HTTP clients use (aws-lc-rs, as the AWS
/// SDK does), once per process.
pub fn install_tls() {
    // Already installed (by another part of the process) is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
