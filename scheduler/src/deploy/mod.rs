//! `logferry deploy render`: the AWS and GCP infrastructure of this
//! configuration, as CloudFormation or Terraform (AWS) and Terraform (GCP),
//! from one source of truth: its tenants (streams, log groups, client
//! accounts), its `[[schedule]]` entries, its stores, its KPI thresholds and
//! its `[deploy]` section. Every IAM grant comes from [`iam`].
//!
//! Written under `--out`:
//!
//! - `aws/central.cfn.json` (or `aws/central/main.tf.json`): the central
//!   account: the lake bucket, the tenant streams (shards from the expected
//!   rates), a writer role per tenant for its client accounts' forwarders,
//!   a CloudWatch Logs destination per tenant with its policy, the lander
//!   (event source mappings on every stream) and the runner (EventBridge
//!   Scheduler schedules), their roles and log groups, and the alarms;
//! - `aws/client-<tenant>.cfn.json` (or `aws/client-<tenant>/main.tf.json`):
//!   a client account: the forwarder, its dead-letter bucket, its role, and
//!   the subscription of the account's log groups to it;
//! - `gcp/main.tf.json`: the export bucket, the dataset and its tables from
//!   `schemas/`, the exporter's service account with only the permissions
//!   the exporter uses, and a workload identity pool for the runner's role;
//! - `lambda/logferry.toml`: the configuration the lander and runner zips
//!   carry.
//!
//! Terraform is written in its JSON syntax (`*.tf.json`), which `terraform
//! plan` and `apply` read as they read `.tf` files.

pub mod aws;
pub mod gcp;
pub mod iam;

use std::path::{Path, PathBuf};

use serde::Serialize;

use logferry_core::config::{Settings, WarehouseSettings};

use crate::error::{Error, Result};

/// `--aws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AwsFormat {
    /// CloudFormation templates (JSON).
    Cloudformation,
    /// Terraform (JSON syntax).
    Terraform,
}

/// `--gcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GcpFormat {
    /// Terraform (JSON syntax).
    Terraform,
}

/// A tenant stream and its shards.
#[derive(Debug, Clone, Serialize)]
pub struct StreamPlan {
    /// The tenant.
    pub tenant: String,
    /// The stream's name.
    pub name: String,
    /// Shards.
    pub shards: u32,
    /// Expected writes, records per second.
    pub records_per_second: f64,
    /// Expected writes, bytes per second.
    pub bytes_per_second: f64,
}

/// What the templates are made of, from the configuration.
#[derive(Debug, Clone)]
pub struct Model {
    /// Resource name prefix.
    pub name: String,
    /// Region.
    pub region: String,
    /// Lake bucket and prefix (with a trailing `/`, or empty).
    pub lake_bucket: String,
    /// Prefix of the lake in its bucket.
    pub lake_prefix: String,
    /// The tenants: id, client accounts, log group prefixes.
    pub tenants: Vec<(String, Vec<String>, Vec<String>)>,
    /// Streams.
    pub streams: Vec<StreamPlan>,
    /// Settings.
    pub settings: std::sync::Arc<Settings>,
}

/// A Kinesis shard takes 1,000 records/s or 1 MB/s of writes.
const SHARD_RECORDS: f64 = 1000.0;
const SHARD_BYTES: f64 = 1_000_000.0;

/// Shards for an expected write rate.
pub fn shards(records_per_second: f64, bytes_per_second: f64, headroom: f64) -> u32 {
    let need = (records_per_second / SHARD_RECORDS).max(bytes_per_second / SHARD_BYTES) * headroom;
    (need.ceil() as u32).max(1)
}

impl Model {
    /// The model of validated settings.
    pub fn new(settings: std::sync::Arc<Settings>) -> Result<Self> {
        let d = &settings.deploy;
        let rest = settings.lake_url.strip_prefix("s3://").ok_or_else(|| {
            Error::Config(format!(
                "deploy render needs the lake in S3 ([storage] lake = \"s3://bucket/prefix\"), not {}",
                settings.lake_url
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let lake_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let mut tenants = Vec::new();
        let mut streams = Vec::new();
        for t in settings.tenants.all() {
            let id = t.id.to_string();
            if t.streams.is_empty() {
                return Err(Error::Config(format!(
                    "tenant {id} has no stream: deploy render makes each tenant's Kinesis streams \
                     from [[tenant]] streams"
                )));
            }
            let (r, b) = d
                .tenant_rates
                .get(&id)
                .map_or((d.records_per_second, d.bytes_per_second), |r| {
                    (r.records_per_second, r.bytes_per_second)
                });
            let n = t.streams.len() as f64;
            for s in &t.streams {
                streams.push(StreamPlan {
                    tenant: id.clone(),
                    name: s.clone(),
                    shards: shards(r / n, b / n, d.shard_headroom),
                    records_per_second: r / n,
                    bytes_per_second: b / n,
                });
            }
            tenants.push((id, t.accounts.clone(), t.log_groups.clone()));
        }
        for id in d.tenant_rates.keys() {
            if !tenants.iter().any(|(t, _, _)| t == id) {
                return Err(Error::Config(format!(
                    "deploy.tenant_rates names {id}, which is not a [[tenant]]"
                )));
            }
        }
        Ok(Model {
            name: d.name.clone(),
            region: d.aws_region.clone(),
            lake_bucket: bucket.to_string(),
            lake_prefix,
            tenants,
            streams,
            settings,
        })
    }

    /// A resource name: the prefix, then the parts.
    pub fn res(&self, parts: &[&str]) -> String {
        let mut s = self.name.clone();
        for p in parts {
            s.push('-');
            s.push_str(p);
        }
        s
    }
}

/// A logical id / Terraform name from a tenant or stream name.
pub fn ident(s: &str) -> String {
    let mut out = String::new();
    let mut up = true;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if up {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            up = false;
        } else {
            up = true;
        }
    }
    out
}

/// A Terraform name: lower case, `_` between words.
pub fn tf_ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 't');
    }
    out
}

/// What `deploy render` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    /// Files written, relative to `--out`.
    pub files: Vec<String>,
    /// The streams and their shards.
    pub streams: Vec<StreamPlan>,
    /// Things to know before applying.
    pub warnings: Vec<String>,
}

/// The files of a render, by path relative to the output directory.
pub fn files(
    settings: std::sync::Arc<Settings>,
    aws: Option<AwsFormat>,
    gcp: Option<GcpFormat>,
) -> Result<(Vec<(PathBuf, String)>, Rendered)> {
    if aws.is_none() && gcp.is_none() {
        return Err(Error::Config(
            "nothing to render: give --aws cloudformation|terraform, --gcp terraform, or both"
                .into(),
        ));
    }
    let model = Model::new(settings.clone())?;
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (id, accounts, groups) in &model.tenants {
        if accounts.is_empty() {
            warnings.push(format!(
                "tenant {id} lists no client accounts ([[tenant]] accounts): its writer role trusts \
                 the central account only and its CloudWatch Logs destination has no policy"
            ));
        }
        if groups.is_empty() {
            warnings.push(format!(
                "tenant {id} has no log_groups: events its forwarder sends would be dead-lettered \
                 as from an unknown source"
            ));
        }
    }
    if let Some(format) = aws {
        type Client = fn(&Model, &str) -> Result<serde_json::Value>;
        let (central, client, client_path): (_, Client, fn(&str) -> String) = match format {
            AwsFormat::Cloudformation => (
                ("aws/central.cfn.json", aws::central_cfn(&model)?),
                aws::client_cfn,
                |id| format!("aws/client-{id}.cfn.json"),
            ),
            AwsFormat::Terraform => (
                ("aws/central/main.tf.json", aws::central_tf(&model)?),
                aws::client_tf,
                |id| format!("aws/client-{id}/main.tf.json"),
            ),
        };
        out.push((PathBuf::from(central.0), pretty(&central.1)?));
        for (id, _, _) in &model.tenants {
            out.push((
                PathBuf::from(client_path(id)),
                pretty(&client(&model, id)?)?,
            ));
        }
        out.push((
            PathBuf::from("lambda/logferry.toml"),
            lambda_config(&model)?,
        ));
    }
    if let Some(GcpFormat::Terraform) = gcp {
        let WarehouseSettings::BigQuery(bq) = &settings.warehouse else {
            return Err(Error::Config(
                "--gcp needs the BigQuery warehouse ([warehouse] kind = \"bigquery\")".into(),
            ));
        };
        out.push((
            PathBuf::from("gcp/main.tf.json"),
            pretty(&gcp::main_tf(&model, bq)?)?,
        ));
    }
    let rendered = Rendered {
        files: out.iter().map(|(p, _)| p.display().to_string()).collect(),
        streams: model.streams.clone(),
        warnings,
    };
    Ok((out, rendered))
}

/// Writes the render under `dir`.
pub fn render(
    settings: std::sync::Arc<Settings>,
    aws: Option<AwsFormat>,
    gcp: Option<GcpFormat>,
    dir: &Path,
) -> Result<Rendered> {
    let (files, rendered) = files(settings, aws, gcp)?;
    for (p, text) in files {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
        }
        std::fs::write(&path, text).map_err(|e| Error::io(path.display(), e))?;
    }
    Ok(rendered)
}

fn pretty(v: &serde_json::Value) -> Result<String> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    Ok(s)
}

/// The configuration the lander and runner zips carry (`LOGFERRY_CONFIG`):
/// this one's stores, tenants and schedules, as TOML.
fn lambda_config(m: &Model) -> Result<String> {
    use toml::{Table, Value as T};
    let s = &m.settings;
    let table = |pairs: Vec<(&str, T)>| -> T {
        T::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    let strs = |v: &[String]| T::Array(v.iter().cloned().map(T::String).collect());
    let mut doc = Table::new();
    doc.insert(
        "storage".into(),
        table(vec![
            ("lake", T::String(s.lake_url.clone())),
            ("export", T::String(s.export_url.clone())),
        ]),
    );
    doc.insert(
        "aws".into(),
        table(vec![("region", T::String(m.region.clone()))]),
    );
    doc.insert(
        "metrics".into(),
        table(vec![
            ("namespace", T::String(s.metrics.namespace.clone())),
            ("environment", T::String(s.metrics.environment.clone())),
        ]),
    );
    if let WarehouseSettings::BigQuery(bq) = &s.warehouse {
        doc.insert(
            "warehouse".into(),
            table(vec![("kind", T::String("bigquery".into()))]),
        );
        doc.insert(
            "bigquery".into(),
            table(vec![
                ("project", T::String(bq.project.clone())),
                ("dataset", T::String(bq.dataset.clone())),
                ("location", T::String(bq.location.clone())),
            ]),
        );
    }
    let tenants = m
        .tenants
        .iter()
        .map(|(id, accounts, groups)| {
            let streams: Vec<String> = m
                .streams
                .iter()
                .filter(|p| &p.tenant == id)
                .map(|p| p.name.clone())
                .collect();
            table(vec![
                ("id", T::String(id.clone())),
                ("streams", strs(&streams)),
                ("log_groups", strs(groups)),
                ("accounts", strs(accounts)),
            ])
        })
        .collect();
    doc.insert("tenant".into(), T::Array(tenants));
    let schedules = s
        .schedules
        .iter()
        .map(|sc| {
            table(vec![
                ("name", T::String(sc.name.clone())),
                ("job", T::String(sc.job.as_str().into())),
                ("expression", T::String(sc.text.clone())),
                ("timezone", T::String(sc.timezone.name().into())),
            ])
        })
        .collect();
    doc.insert("schedule".into(), T::Array(schedules));
    let body = toml::to_string(&doc)
        .map_err(|e| Error::Fatal(format!("writing lambda/logferry.toml: {e}")))?;
    Ok(format!(
        "# The configuration of the lander and runner functions (LOGFERRY_CONFIG in the\n\
         # zip), written by `logferry deploy render`. Keep it in step with the one it\n\
         # was rendered from: render again after changing tenants or schedules.\n\n{body}"
    ))
}
