//! logferry's integration tests: the whole pipeline on the embedded backends,
//! driven through the library the binary runs and through the binary itself.

#![allow(clippy::unwrap_used)]

mod cli;
mod common;
#[cfg(feature = "failpoints")]
mod crash;
mod emulators;
mod lambda;
mod pipeline;
