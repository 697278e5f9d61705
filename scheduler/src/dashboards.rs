//! The input of `logferry dashboards`, from the configuration: tenants and
//! their streams, the region, the warehouse and export bucket, the EMF
//! namespace and environment, the KPI thresholds.

use logferry_core::config::WarehouseSettings;
use logferry_observe::dashboards::DashboardInput;

use crate::context::Ctx;

/// The dashboards' input for this configuration.
pub fn input(ctx: &Ctx) -> DashboardInput {
    let s = &ctx.settings;
    let tenants = s.tenants.all();
    let (project, dataset) = match &s.warehouse {
        WarehouseSettings::BigQuery(b) => (b.project.clone(), b.dataset.clone()),
        WarehouseSettings::Local { .. } => ("your-project".into(), "logs".into()),
    };
    let bucket = s
        .export_url
        .strip_prefix("gs://")
        .map(|r| r.split('/').next().unwrap_or(r).to_string())
        .unwrap_or_else(|| "your-export-bucket".into());
    DashboardInput {
        namespace: s.metrics.namespace.clone(),
        environment: s.metrics.environment.clone(),
        region: s.aws.region.clone().unwrap_or_else(|| "us-east-1".into()),
        tenants: tenants.iter().map(|t| t.id.to_string()).collect(),
        streams: tenants.iter().flat_map(|t| t.streams.clone()).collect(),
        forwarder_functions: Vec::new(),
        lambda_function: "logferry".into(),
        gcp_project: project,
        bigquery_dataset: dataset,
        export_bucket: bucket,
        thresholds: s.kpi,
    }
}
