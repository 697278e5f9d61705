//! Errors of the orchestration, named by what the caller does next: a
//! configuration error stops the run; bad input is dead-lettered (or, when
//! it is a landing object, fails its window until someone deals with it); a
//! transient failure is retried, by the next attempt or the next run; a
//! conflict means someone else has the work; anything else is fatal to the
//! piece of work it happened in, and is reported.

use serde::{Deserialize, Serialize};

/// Result with the scheduler [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the caller does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The configuration is wrong or incomplete: stop and tell the operator.
    Config,
    /// The input is bad: dead-letter it (an unreadable landing object fails
    /// its window until it is replaced or removed).
    BadInput,
    /// Another attempt may succeed: retry it later.
    Transient,
    /// Someone else has the work (a lease, a conditional write): leave it.
    Conflict,
    /// Anything else: report it; the work it happened in fails.
    Fatal,
}

impl ErrorKind {
    /// The name used in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::BadInput => "bad_input",
            ErrorKind::Transient => "transient",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Fatal => "fatal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a piece of orchestration failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid or inconsistent configuration or arguments.
    #[error("configuration error: {0}")]
    Config(String),
    /// Input that cannot be processed.
    #[error("bad input: {0}")]
    BadInput(String),
    /// Configuration, storage or ledger.
    #[error(transparent)]
    Core(#[from] logferry_core::Error),
    /// The forward stage.
    #[error(transparent)]
    Forward(#[from] logferry_forward::Error),
    /// The aggregate stage.
    #[error(transparent)]
    Aggregate(#[from] logferry_aggregate::Error),
    /// The export stage or the warehouse.
    #[error(transparent)]
    Export(#[from] logferry_export::Error),
    /// A query.
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Arrow.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet that cannot be read.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Local I/O.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or what was being done.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document of ours.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An error with what was being done when it happened.
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: Box<Error>,
    },
    /// A broken invariant or a task that died.
    #[error("{0}")]
    Fatal(String),
}

fn storage_kind(e: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    if logferry_core::faults::transient(e) {
        return ErrorKind::Transient;
    }
    match e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::Config,
        // An object listed a moment ago and gone now: another writer
        // replaced it; the next attempt sees the new state.
        E::NotFound { .. } => ErrorKind::Transient,
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => {
            ErrorKind::Conflict
        }
        _ => ErrorKind::Fatal,
    }
}

fn core_kind(e: &logferry_core::Error) -> ErrorKind {
    use logferry_core::Error as E;
    match e {
        E::Config(_) => ErrorKind::Config,
        E::Invalid { .. } | E::Arrow(_) | E::Parquet(_) => ErrorKind::BadInput,
        E::Conflict { .. } => ErrorKind::Conflict,
        E::Storage { source, .. } => storage_kind(source),
        E::Json { .. } => ErrorKind::Fatal,
        E::Io { source, .. } => {
            if logferry_core::faults::io_transient(source) {
                ErrorKind::Transient
            } else {
                ErrorKind::Fatal
            }
        }
    }
}

fn datafusion_kind(e: &datafusion::error::DataFusionError) -> ErrorKind {
    use datafusion::error::DataFusionError as D;
    match e {
        D::ObjectStore(s) => storage_kind(s),
        D::ParquetError(_) | D::ArrowError(..) => ErrorKind::BadInput,
        D::IoError(io) if logferry_core::faults::io_transient(io) => ErrorKind::Transient,
        D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::Configuration(_) => ErrorKind::Config,
        D::Context(_, inner) | D::Diagnostic(_, inner) => datafusion_kind(inner),
        D::Shared(inner) => datafusion_kind(inner),
        D::External(e) => {
            if let Some(s) = e.downcast_ref::<object_store::Error>() {
                storage_kind(s)
            } else if e.is::<parquet::errors::ParquetError>() {
                ErrorKind::BadInput
            } else if logferry_core::faults::cause_is_transient(e.as_ref()) {
                ErrorKind::Transient
            } else {
                ErrorKind::Fatal
            }
        }
        D::ResourcesExhausted(_) => ErrorKind::Transient,
        _ => ErrorKind::Fatal,
    }
}

fn export_kind(e: &logferry_export::Error) -> ErrorKind {
    use logferry_export::Error as E;
    match e {
        E::Core(c) => core_kind(c),
        E::Parquet(_) | E::Arrow(_) => ErrorKind::BadInput,
        E::Config(_) => ErrorKind::Config,
        E::QuotaExhausted { .. } => ErrorKind::Transient,
        E::LoadFailed { message, .. } if message.contains("rateLimitExceeded") => {
            ErrorKind::Transient
        }
        E::LoadFailed { .. } => ErrorKind::Fatal,
        E::Gcs { status, .. } => match status {
            None => ErrorKind::Transient,
            Some(401 | 403) => ErrorKind::Config,
            Some(s) if *s == 408 || *s == 429 || *s >= 500 => ErrorKind::Transient,
            Some(_) => ErrorKind::Fatal,
        },
        E::BigQuery { .. } => ErrorKind::Transient,
        E::RowMismatch { .. } | E::ExportMismatch { .. } => ErrorKind::Fatal,
    }
}

/// The Lambda functions' errors, as the orchestration names them.
impl From<logferry_lambdas::Error> for Error {
    fn from(e: logferry_lambdas::Error) -> Self {
        use logferry_lambdas::Error as L;
        match e {
            L::Config(m) => Error::Config(m),
            L::BadInput(m) => Error::BadInput(m),
            L::Core(c) => Error::Core(c),
            L::Forward(f) => Error::Forward(f),
            L::DeadLetter(m) | L::Fatal(m) => Error::Fatal(m),
        }
    }
}

impl Error {
    /// What the caller does about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Config,
            Error::BadInput(_) => ErrorKind::BadInput,
            Error::Core(e) => core_kind(e),
            Error::Forward(e) => match e {
                logferry_forward::Error::Core(c) => core_kind(c),
                logferry_forward::Error::Source(_) => ErrorKind::Transient,
                logferry_forward::Error::Parquet(_)
                | logferry_forward::Error::Writer(_)
                | logferry_forward::Error::Internal(_) => ErrorKind::Fatal,
            },
            Error::Aggregate(e) => match e {
                logferry_aggregate::Error::Core(c) => core_kind(c),
                logferry_aggregate::Error::DataFusion(d) => datafusion_kind(d),
                logferry_aggregate::Error::Arrow(_) | logferry_aggregate::Error::Parquet(_) => {
                    ErrorKind::BadInput
                }
                logferry_aggregate::Error::Sql { .. } => ErrorKind::Config,
                logferry_aggregate::Error::Internal(_) => ErrorKind::Fatal,
            },
            Error::Export(e) => export_kind(e),
            Error::Query(d) => datafusion_kind(d),
            Error::Arrow(_) | Error::Parquet(_) => ErrorKind::BadInput,
            Error::Io { source, .. } => {
                if logferry_core::faults::io_transient(source) {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Fatal
                }
            }
            Error::Json(_) | Error::Fatal(_) => ErrorKind::Fatal,
            Error::Context { source, .. } => source.kind(),
        }
    }

    /// Wraps an I/O error with what it concerns.
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    /// This error, with what was being done when it happened.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

/// `.context(...)` on results whose errors convert into [`Error`].
pub trait ResultExt<T> {
    /// Adds what was being done to the error.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Adds what was being done to the error, computed only on error.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_say_what_to_do_next() {
        let core = |e: logferry_core::Error| Error::from(e).kind();
        assert_eq!(
            core(logferry_core::Error::Config("x".into())),
            ErrorKind::Config
        );
        assert_eq!(
            core(logferry_core::Error::Conflict { path: "p".into() }),
            ErrorKind::Conflict
        );
        let storage = |source| logferry_core::Error::Storage {
            path: "p".into(),
            source,
        };
        assert_eq!(
            core(storage(object_store::Error::Generic {
                store: "s",
                source: Box::new(logferry_core::faults::Injected("get".into())),
            })),
            ErrorKind::Transient
        );
        assert_eq!(
            core(storage(object_store::Error::Generic {
                store: "s",
                source: "Server returned non-2xx status code: 400".into(),
            })),
            ErrorKind::Fatal
        );
        assert_eq!(
            core(storage(object_store::Error::PermissionDenied {
                path: "p".into(),
                source: "no".into(),
            })),
            ErrorKind::Config
        );
        assert_eq!(
            core(logferry_core::Error::Parquet(
                parquet::errors::ParquetError::General("bad footer".into())
            )),
            ErrorKind::BadInput
        );
        let wrapped = Error::Config("x".into()).context("opening the lake");
        assert_eq!(wrapped.kind(), ErrorKind::Config);
        assert!(wrapped.to_string().starts_with("opening the lake: "));
        assert_eq!(
            Error::from(logferry_export::Error::LoadFailed {
                job_id: "j".into(),
                message: "rateLimitExceeded: slow down".into(),
            })
            .kind(),
            ErrorKind::Transient
        );
    }
}
