//! The AWS Lambda entry point: CloudWatch Logs subscriptions, Kinesis event
//! source mappings (with batch item failures) and EventBridge schedules, all
//! handled by `logferry::lambda`. Configured like the `logferry` binary:
//! `LOGFERRY_CONFIG` (a file in the deployment package) and `LOGFERRY__*`
//! overrides; the lake must be an s3:// URL (Lambda's disk does not last).
//! The lean `logferry-forwarder` and `logferry-lander` (crate
//! `logferry-lambdas`) carry only what their events need.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use logferry::cli::Global;
use logferry::context::Ctx;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // One JSON object per line, the request id on each (no colour codes).
    logferry_lambdas::logs::init();
    logferry_lambdas::install_tls();
    let global = Global {
        data_dir: std::env::var("LOGFERRY_DATA_DIR")
            .unwrap_or_else(|_| "/tmp/logferry-data".into())
            .into(),
        config: std::env::var("LOGFERRY_CONFIG").ok().map(Into::into),
        verbose: 0,
        quiet: true,
    };
    let ctx = Ctx::open(&global).await.map_err(|e| format!("{e:#}"))?;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        logferry::lambda::handle(ctx, ev.payload)
            .await
            .map_err(|e| Error::from(format!("{e:#}")))
    }))
    .await
}
