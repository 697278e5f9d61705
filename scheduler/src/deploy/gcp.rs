//! The GCP side, Terraform (JSON syntax): the export bucket, the dataset
//! and its tables from `schemas/` (partitioned on event time, clustered by
//! tenant and service, partitions expiring after `[bigquery]
//! partition_expiration`), and the exporter's service account with custom
//! roles holding only the permissions of [`super::iam::GCP_CALLS`].

use serde_json::{Map, Value, json};

use logferry_core::config::{BigQuerySettings, Partitioning};
use logferry_core::schema::{LOG_RECORD_JSON, LOG_RECORDS_TABLE};

use super::iam::{GcpScope, gcp_permissions};
use super::{Model, tf_ident};
use crate::error::{Error, Result};

/// The rollup tables' schemas (`schemas/rollups/`), as loaded.
const ROLLUPS: &[(&str, &str)] = &[
    (
        "error_rate",
        include_str!("../../../schemas/rollups/error_rate.json"),
    ),
    (
        "logs_per_minute",
        include_str!("../../../schemas/rollups/logs_per_minute.json"),
    ),
];

/// The first TIMESTAMP column of a schema: what the table is partitioned on.
fn time_column(schema: &Value) -> Option<String> {
    schema
        .as_array()?
        .iter()
        .find_map(|f| (f["type"] == "TIMESTAMP").then(|| f["name"].as_str().map(str::to_string))?)
}

fn has(schema: &Value, name: &str) -> bool {
    schema
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f["name"] == name))
}

/// `gcp/main.tf.json`.
pub fn main_tf(m: &Model, bq: &BigQuerySettings) -> Result<Value> {
    let s = &m.settings;
    let d = &s.deploy;
    let project = if d.gcp_project.is_empty() {
        bq.project.clone()
    } else {
        d.gcp_project.clone()
    };
    let location = if d.gcp_location.is_empty() {
        bq.location.clone()
    } else {
        d.gcp_location.clone()
    };
    let rest = s.export_url.strip_prefix("gs://").ok_or_else(|| {
        Error::Config(format!(
            "--gcp needs the export store in GCS ([storage] export = \"gs://bucket/prefix\"), not {}",
            s.export_url
        ))
    })?;
    let bucket = rest.split('/').next().unwrap_or(rest).to_string();
    let mut res = Map::new();
    let mut add = |ty: &str, name: &str, body: Value| {
        if let Some(o) = res
            .entry(ty.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            o.insert(name.to_string(), body);
        }
    };
    let mut lifecycle = Vec::new();
    if d.export_retention_days > 0 {
        lifecycle.push(
            json!({"action": {"type": "Delete"}, "condition": {"age": d.export_retention_days}}),
        );
    }
    lifecycle.push(
        json!({"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": 1}}),
    );
    add(
        "google_storage_bucket",
        "export",
        json!({"name": bucket, "project": project, "location": location,
               "uniform_bucket_level_access": true, "public_access_prevention": "enforced",
               "lifecycle_rule": lifecycle, "force_destroy": false}),
    );
    let mut dataset = json!({"dataset_id": bq.dataset, "project": project, "location": location,
        "description": format!("{}: logs loaded by load jobs (logferry deploy render)", m.name),
        "delete_contents_on_destroy": false});
    if let Some(e) = bq.partition_expiration {
        dataset["default_partition_expiration_ms"] = json!(e.as_millis() as u64);
    }
    add("google_bigquery_dataset", "logs", dataset);
    let partition = match s.partitioning {
        Partitioning::Hour => "HOUR",
        Partitioning::Day => "DAY",
    };
    let mut tables: Vec<(String, Value)> = vec![(
        LOG_RECORDS_TABLE.to_string(),
        serde_json::from_str(LOG_RECORD_JSON)?,
    )];
    for (name, text) in ROLLUPS {
        tables.push((name.to_string(), serde_json::from_str(text)?));
    }
    for (name, schema) in &tables {
        let time = time_column(schema).ok_or_else(|| {
            Error::Config(format!(
                "schema of {name} has no TIMESTAMP column to partition on"
            ))
        })?;
        let mut tp = json!({"type": partition, "field": time});
        if let Some(e) = bq.partition_expiration {
            tp["expiration_ms"] = json!(e.as_millis() as u64);
        }
        let clustering: Vec<&str> = ["tenant_id", "service"]
            .into_iter()
            .filter(|c| has(schema, c))
            .collect();
        add(
            "google_bigquery_table",
            &tf_ident(name),
            json!({"project": project, "dataset_id": "${google_bigquery_dataset.logs.dataset_id}",
                   "table_id": name, "schema": schema.to_string(), "time_partitioning": tp,
                   "clustering": clustering, "deletion_protection": true}),
        );
    }
    let sa = format!("{}-exporter", m.name);
    add(
        "google_service_account",
        "exporter",
        json!({"project": project, "account_id": sa,
               "display_name": "logferry exporter: GCS uploads and BigQuery load jobs"}),
    );
    let role_id = |scope: &str| format!("{}_exporter_{scope}", m.name.replace('-', "_"));
    for (key, scope, title) in [
        ("bucket", GcpScope::Bucket, "objects of the export bucket"),
        ("dataset", GcpScope::Dataset, "tables of the dataset"),
        (
            "project",
            GcpScope::Project,
            "BigQuery jobs and the dataset",
        ),
    ] {
        add(
            "google_project_iam_custom_role",
            &format!("exporter_{key}"),
            json!({"project": project, "role_id": role_id(key),
                   "title": format!("logferry exporter: {title}"),
                   "permissions": gcp_permissions(scope)}),
        );
    }
    let member = "serviceAccount:${google_service_account.exporter.email}";
    add(
        "google_storage_bucket_iam_member",
        "exporter",
        json!({"bucket": "${google_storage_bucket.export.name}",
               "role": "${google_project_iam_custom_role.exporter_bucket.name}", "member": member}),
    );
    add(
        "google_bigquery_dataset_iam_member",
        "exporter",
        json!({"project": project, "dataset_id": "${google_bigquery_dataset.logs.dataset_id}",
               "role": "${google_project_iam_custom_role.exporter_dataset.name}", "member": member}),
    );
    add(
        "google_project_iam_member",
        "exporter",
        json!({"project": project, "role": "${google_project_iam_custom_role.exporter_project.name}",
               "member": member}),
    );
    Ok(json!({
        "terraform": {"required_providers": {"google": {"source": "hashicorp/google", "version": ">= 5.0"}}},
        "provider": {"google": {"project": project}},
        "resource": res,
        "output": {
            "exporter_service_account": {"value": "${google_service_account.exporter.email}"},
            "export_bucket": {"value": "${google_storage_bucket.export.name}"},
            "dataset": {"value": "${google_bigquery_dataset.logs.dataset_id}"},
        },
    }))
}
