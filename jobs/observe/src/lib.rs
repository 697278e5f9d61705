//! How logferry measures itself, as data and pure functions:
//!
//! - [`catalog`]: every metric logferry emits (name, kind, unit, labels,
//!   help, and the performance guide's target where it gives one); the
//!   Prometheus registry, the CloudWatch EMF lines, the dashboards and the
//!   alerts all read this one list;
//! - [`histo`]: mergeable latency histograms (run reports, KPIs, the
//!   daemon's sliding window);
//! - [`kpi`]: the guide's KPI table, its thresholds and their evaluation;
//! - [`cost`]: list prices and the cost per million records;
//! - [`emf`]: CloudWatch Embedded Metric Format lines;
//! - [`dashboards`]: CloudWatch and Cloud Monitoring dashboards, Prometheus
//!   alerting rules and CloudWatch alarms;
//! - [`report`]: one self-contained HTML page with SVG charts.

pub mod catalog;
pub mod cost;
pub mod dashboards;
pub mod emf;
pub mod histo;
pub mod kpi;
pub mod report;

pub use catalog::{CATALOG, Component, Kind, MetricDef, Unit};
pub use histo::Histo;
pub use kpi::{KpiResult, KpiStatus, Thresholds};
