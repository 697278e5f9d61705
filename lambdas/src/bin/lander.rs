//! The lander Lambda: CloudWatch Logs subscription events and Kinesis event
//! source mappings (with batch item failures), decoded and landed in the
//! lake as Parquet. Configured like the `logferry` binary: `LOGFERRY_CONFIG`
//! (a file in the deployment package) and `LOGFERRY__*` overrides; the lake
//! must be an s3:// URL (Lambda's disk does not last).

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use logferry_core::config::Config;
use logferry_lambdas::lander::Lander;

fn open() -> Result<Lander, logferry_lambdas::Error> {
    let file = std::env::var("LOGFERRY_CONFIG")
        .ok()
        .map(std::path::PathBuf::from);
    let data_dir =
        std::env::var("LOGFERRY_DATA_DIR").unwrap_or_else(|_| "/tmp/logferry-data".into());
    let (config, _) = Config::load(file.as_deref(), std::env::vars())?;
    let settings = Arc::new(config.validate(std::path::Path::new(&data_dir))?);
    Lander::open(settings)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    logferry_lambdas::logs::init();
    logferry_lambdas::install_tls();
    let lander = open().inspect_err(|e| tracing::error!(error = %e, "The lander cannot start."))?;
    tracing::info!(lake = %lander.settings.lake_url, "Lander starting.");
    let lander = &lander;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        lander
            .handle(ev.payload)
            .await
            .inspect_err(|e| tracing::error!(error = %e, "Invocation failed."))
            .map_err(|e| Error::from(e.to_string()))
    }))
    .await
}
