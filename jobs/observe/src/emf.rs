//! CloudWatch Embedded Metric Format: one JSON object per line on standard
//! output, which CloudWatch Logs turns into metrics in `Namespace`, with the
//! dimensions Component, Environment and Tenant (as the guide's
//! `publish_metric` does). Metric names and units come from the catalogue's
//! `emf` names: only catalogue metrics can be emitted.

use serde_json::{Map, Value, json};

use crate::catalog::{self, Component};

/// One EMF document being built.
#[derive(Debug, Clone)]
pub struct Emf {
    namespace: String,
    dims: Vec<(String, String)>,
    metrics: Vec<(String, &'static str, f64)>,
    values: Vec<(String, &'static str, Vec<f64>)>,
}

impl Emf {
    /// A document for `component` in `environment`, for one tenant (or for
    /// the whole component).
    pub fn new(
        namespace: &str,
        component: Component,
        environment: &str,
        tenant: Option<&str>,
    ) -> Self {
        let mut dims = vec![
            ("Component".to_string(), component.as_str().to_string()),
            ("Environment".to_string(), environment.to_string()),
        ];
        if let Some(t) = tenant {
            dims.push(("Tenant".to_string(), t.to_string()));
        }
        Emf {
            namespace: namespace.to_string(),
            dims,
            metrics: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds the catalogue metric `name` (its EMF name followed by
    /// `qualifier`, e.g. `Records` + `Accepted`), in the catalogue's unit.
    ///
    /// # Panics
    /// When `name` is not in the catalogue or has no EMF name: a
    /// programming error, caught by the tests.
    pub fn metric(mut self, name: &str, qualifier: &str, value: f64) -> Self {
        let (emf, unit) = emf_name(name);
        self.metrics
            .push((format!("{emf}{qualifier}"), unit, value));
        self
    }

    /// Adds the catalogue metric `name` with several values (CloudWatch
    /// computes statistics over them; at most 100).
    pub fn metric_values(mut self, name: &str, values: Vec<f64>) -> Self {
        let d = catalog::get(name)
            .and_then(|d| d.emf.map(|e| (d, e)))
            .unwrap_or_else(|| panic!("metric {name} has no EMF name in the catalogue"));
        let mut values = values;
        values.truncate(100);
        self.values
            .push((d.1.to_string(), d.0.unit.cloudwatch(), values));
        self
    }

    /// True when no metric was added.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.values.is_empty()
    }

    /// The document, timestamped `at_ms` (Unix milliseconds).
    pub fn to_value(&self, at_ms: i64) -> Value {
        let mut root = Map::new();
        let dim_names: Vec<&str> = self.dims.iter().map(|(k, _)| k.as_str()).collect();
        let defs: Vec<Value> = self
            .metrics
            .iter()
            .map(|(n, u, _)| json!({"Name": n, "Unit": u}))
            .chain(
                self.values
                    .iter()
                    .map(|(n, u, _)| json!({"Name": n, "Unit": u})),
            )
            .collect();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": at_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dim_names],
                    "Metrics": defs,
                }],
            }),
        );
        for (k, v) in &self.dims {
            root.insert(k.clone(), Value::String(v.clone()));
        }
        for (n, _, v) in &self.metrics {
            root.insert(n.clone(), json!(v));
        }
        for (n, _, v) in &self.values {
            root.insert(n.clone(), json!(v));
        }
        Value::Object(root)
    }

    /// The document as one line.
    pub fn line(&self, at_ms: i64) -> String {
        self.to_value(at_ms).to_string()
    }
}

/// The EMF name and CloudWatch unit of the catalogue metric `name`.
///
/// # Panics
/// When `name` is not in the catalogue or has no EMF name.
fn emf_name(name: &str) -> (&'static str, &'static str) {
    catalog::get(name)
        .and_then(|d| d.emf.map(|e| (e, d.unit.cloudwatch())))
        .unwrap_or_else(|| panic!("metric {name} has no EMF name in the catalogue"))
}

/// Checks a document against the rules of the format's specification that
/// a JSON schema cannot express: every metric named in a directive is a
/// number (or array of numbers) at the root, every dimension a string at the
/// root, at most 30 dimensions per set and 100 metrics per directive.
pub fn check_references(v: &Value) -> Result<(), String> {
    let directives = v
        .pointer("/_aws/CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("no _aws.CloudWatchMetrics array")?;
    for d in directives {
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("a directive without Metrics")?;
        if metrics.len() > 100 {
            return Err("more than 100 metrics in a directive".into());
        }
        for m in metrics {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric without a Name")?;
            match v.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(a)) if a.iter().all(Value::is_number) => {}
                _ => return Err(format!("metric {name} is not a number at the root")),
            }
        }
        for set in d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("a directive without Dimensions")?
        {
            let set = set
                .as_array()
                .ok_or("a dimension set that is not an array")?;
            if set.len() > 30 {
                return Err("more than 30 dimensions in a set".into());
            }
            for k in set {
                let k = k.as_str().ok_or("a dimension name that is not a string")?;
                if !v.get(k).is_some_and(Value::is_string) {
                    return Err(format!("dimension {k} is not a string at the root"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_references_what_it_holds() {
        let e = Emf::new("logferry", Component::Forward, "production", Some("acme"))
            .metric("records", "Received", 10.0)
            .metric("stage_duration", "", 0.25);
        let v = e.to_value(1_700_000_000_000);
        assert_eq!(check_references(&v), Ok(()));
        assert_eq!(v["RecordsReceived"], json!(10.0));
        assert_eq!(v["BatchProcessingDuration"], json!(0.25));
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Component", "Environment", "Tenant"]])
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1],
            json!({"Name": "BatchProcessingDuration", "Unit": "Seconds"})
        );
        let mut broken = v.clone();
        broken.as_object_mut().map(|o| o.remove("Tenant"));
        assert!(check_references(&broken).is_err());
    }
}
