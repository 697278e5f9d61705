//! Lambda logs: one JSON object per line on standard output, no colour
//! codes, so that CloudWatch Logs Insights can query the fields. Lines
//! logged while an invocation runs carry its request id
//! (`span.requestId`, from the Lambda runtime's invocation span).

use tracing_subscriber::EnvFilter;

/// The filter: `LOGFERRY_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`
/// (advanced logging controls), else `info`.
fn filter() -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_env("LOGFERRY_LOG") {
        return f;
    }
    match std::env::var("AWS_LAMBDA_LOG_LEVEL") {
        Ok(level) => EnvFilter::try_new(level.to_ascii_lowercase())
            .unwrap_or_else(|_| EnvFilter::new("info")),
        Err(_) => EnvFilter::new("info"),
    }
}

/// Installs the JSON subscriber (once per process).
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter())
        .with_writer(std::io::stdout)
        .try_init();
}
