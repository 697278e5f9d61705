//! The `logferry` command's library: each command as a function, so the
//! integration tests drive the same code the binary runs.

pub mod cli;
pub mod context;
pub mod demo;
pub mod forward;
pub mod lambda;
pub mod progress;
pub mod reconcile;
pub mod run;
pub mod sql;
pub mod status;
pub mod verify;
