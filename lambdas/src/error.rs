//! Errors of the Lambda functions. Bad records are not errors: the lander
//! dead-letters them in the lake, the forwarder in its S3 dead-letter
//! prefix.

/// Result with the Lambda [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an invocation (or a function's start) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The function's configuration (environment, config file) is wrong.
    #[error("configuration error: {0}")]
    Config(String),
    /// An event of a kind this function does not handle, or malformed.
    #[error("bad input: {0}")]
    BadInput(String),
    /// Configuration, storage or ledger.
    #[error(transparent)]
    Core(#[from] logferry_core::Error),
    /// Decoding or landing.
    #[error(transparent)]
    Forward(#[from] logferry_forward::Error),
    /// The dead-letter destination could not be written: the invocation
    /// fails so that Lambda retries it (nothing is dropped).
    #[error("dead-letter write failed: {0}")]
    DeadLetter(String),
    /// Anything else.
    #[error("{0}")]
    Fatal(String),
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Fatal(format!("JSON: {e}"))
    }
}
