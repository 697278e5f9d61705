//! The client-side forwarder Lambda (`bootstrap` of a `provided.al2023`
//! function in a client account): CloudWatch Logs subscription events into
//! the tenant's Kinesis stream. Configured by its environment: see
//! `logferry_lambdas::forwarder::ForwarderConfig`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use logferry_lambdas::forwarder::{Forwarder, ForwarderConfig};

/// The invocation's deadline as an `Instant`.
fn deadline(ctx: &lambda_runtime::Context) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(Instant::now() + Duration::from_millis(ctx.deadline.checked_sub(now_ms)?))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    logferry_lambdas::logs::init();
    logferry_lambdas::install_tls();
    let config = ForwarderConfig::from_env(std::env::vars()).inspect_err(|e| {
        tracing::error!(error = %e, "The forwarder cannot start.");
    })?;
    tracing::info!(stream = %config.stream, role = config.role_arn.as_deref().unwrap_or(""),
        dlq = %config.dlq, "Forwarder starting.");
    let fwd = Forwarder::connect(config).await?;
    let fwd = &fwd;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        let until = deadline(&ev.context);
        fwd.handle(ev.payload, &ev.context.request_id, until)
            .await
            .inspect_err(|e| tracing::error!(error = %e, "Invocation failed."))
            .map_err(|e| Error::from(e.to_string()))
    }))
    .await
}
