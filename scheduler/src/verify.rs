//! `logferry verify isolation`: proof that no tenant's rows sit in another
//! tenant's place. Every row of landing, curated and the DLQ must carry the
//! tenant of its partition, and its source (stream or log group) must map to
//! that tenant through the configuration; rollup rows must name a configured
//! tenant; every warehouse row (local files, or BigQuery by a query) must
//! carry a configured tenant that its source maps to.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use logferry_core::config::TenantRegistry;
use logferry_core::partition::{
    CURATED, DLQ, LANDING, ROLLUPS, UNKNOWN_TENANT, Window, parse_partition,
};
use logferry_core::schema::LOG_RECORDS_TABLE;
use logferry_core::storage::{get_bytes, list_all};
use logferry_export::WarehouseHandle;

use crate::context::Ctx;
use crate::error::{Result, ResultExt};

/// Rows of one place that break isolation, for one reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// `landing`, `curated`, `dlq`, `rollups`, `warehouse`.
    pub area: String,
    /// The object (or the BigQuery table) holding them.
    pub path: String,
    /// What is wrong.
    pub detail: String,
    /// How many rows.
    pub rows: u64,
}

/// What was checked, per area.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    /// Objects (or tables) read.
    pub objects: u64,
    /// Rows read.
    pub rows: u64,
}

/// The outcome of `verify isolation`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IsolationReport {
    /// Per area.
    pub checked: BTreeMap<String, Checked>,
    /// Every violation found; empty when isolation holds.
    pub violations: Vec<Violation>,
}

impl IsolationReport {
    /// True when no row is out of place.
    pub fn isolated(&self) -> bool {
        self.violations.is_empty()
    }
}

/// What a row's place demands of it.
#[derive(Debug, Clone, Copy)]
enum Rule<'a> {
    /// The partition's tenant; the source must map to it.
    Partition(&'a str),
    /// A DLQ partition's tenant key; a source that maps to a tenant must map
    /// to it (refused records may come from no known source). `_unknown` is
    /// quarantine, no tenant's: what was refused before it could be given to
    /// a tenant (an envelope from an account its log group's tenant does not
    /// allow, say) sits there whatever its source.
    DeadLetter(&'a str),
    /// A configured tenant (rollups: no source column).
    Configured,
    /// A configured tenant that the source maps to (the warehouse).
    SourceOwned,
}

fn owner<'r>(tenants: &'r TenantRegistry, source: &str) -> Option<&'r str> {
    tenants
        .by_stream(source)
        .or_else(|| tenants.by_log_group(source))
        .map(|t| t.id.as_str())
}

/// Why a row breaks `rule`, if it does.
fn check(
    tenants: &TenantRegistry,
    rule: Rule<'_>,
    tenant: Option<&str>,
    source: Option<&str>,
) -> Option<String> {
    let Some(t) = tenant else {
        return Some("row without tenant_id".into());
    };
    let owned = |t: &str| -> Option<String> {
        match source {
            None => Some(format!("row of {t} without a source")),
            Some(s) => match owner(tenants, s) {
                Some(o) if o == t => None,
                Some(o) => Some(format!("row of {t} from source {s:?}, which is {o}'s")),
                None => Some(format!(
                    "row of {t} from source {s:?}, which no configured tenant owns"
                )),
            },
        }
    };
    match rule {
        Rule::Partition(p) if t != p => Some(format!("row of {t} in {p}'s partition")),
        Rule::Partition(_) => owned(t),
        Rule::DeadLetter(p) if t != p => Some(format!("row of {t} in {p}'s partition")),
        Rule::DeadLetter(UNKNOWN_TENANT) => None,
        Rule::DeadLetter(p) => match source.and_then(|s| owner(tenants, s).map(|o| (s, o))) {
            Some((s, o)) if o != p => Some(format!("row of {p} from source {s:?}, which is {o}'s")),
            _ => None,
        },
        Rule::Configured if tenants.get(t).is_none() => {
            Some(format!("row of {t:?}, not a configured tenant"))
        }
        Rule::Configured => None,
        Rule::SourceOwned if tenants.get(t).is_none() => {
            Some(format!("row of {t:?}, not a configured tenant"))
        }
        Rule::SourceOwned => owned(t),
    }
}

/// A string column's value at row `i`, whatever its string type.
fn string_at(batch: &RecordBatch, name: &str, i: usize) -> Option<String> {
    let col = batch.column_by_name(name)?;
    if col.is_null(i) {
        return None;
    }
    match col.data_type() {
        DataType::Utf8 => Some(col.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Some(col.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Some(col.as_string_view().value(i).to_string()),
        DataType::Dictionary(_, _) => {
            let cast = arrow::compute::cast(col, &DataType::Utf8).ok()?;
            Some(cast.as_string::<i32>().value(i).to_string())
        }
        _ => None,
    }
}

/// Reads `tenant_id` and `source` of every row of one Parquet object and
/// adds what breaks `rule` to `out`; returns the rows read.
async fn check_object(
    store: &dyn object_store::ObjectStore,
    path: &Path,
    area: &str,
    shown: &str,
    rule: Rule<'_>,
    tenants: &TenantRegistry,
    out: &mut Vec<Violation>,
) -> Result<u64> {
    let bytes = get_bytes(store, path)
        .await
        .with_context(|| format!("reading {shown}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .with_context(|| format!("{shown} is not Parquet"))?;
    let wanted: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() == "tenant_id" || f.name() == "source")
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
    let reader = builder
        .with_projection(mask)
        .build()
        .with_context(|| format!("reading {shown}"))?;
    let mut bad: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.with_context(|| format!("decoding {shown}"))?;
        for i in 0..batch.num_rows() {
            let t = string_at(&batch, "tenant_id", i);
            let s = string_at(&batch, "source", i);
            if let Some(why) = check(tenants, rule, t.as_deref(), s.as_deref()) {
                *bad.entry(why).or_default() += 1;
            }
        }
        rows += batch.num_rows() as u64;
    }
    out.extend(bad.into_iter().map(|(detail, n)| Violation {
        area: area.to_string(),
        path: shown.to_string(),
        detail,
        rows: n,
    }));
    Ok(rows)
}

/// Checks every area; `window` limits the lake areas to one hour.
pub async fn isolation(ctx: &Ctx, window: Option<Window>) -> Result<IsolationReport> {
    let tenants = &ctx.settings.tenants;
    let lake = &ctx.lake;
    let mut report = IsolationReport::default();
    for area in [LANDING, CURATED, DLQ, ROLLUPS] {
        let checked = report.checked.entry(area.to_string()).or_default();
        for meta in list_all(lake.store.as_ref(), &Path::from(area)).await? {
            let keys = parse_partition(&meta.location);
            if !meta.location.as_ref().ends_with(".parquet")
                || window.is_some_and(|w| keys.window != Some(w))
            {
                continue;
            }
            let shown = format!("{}/{}", lake.url.trim_end_matches('/'), meta.location);
            let tenant = keys.tenant.clone();
            let rule = match (area, tenant.as_deref()) {
                (ROLLUPS, _) => Rule::Configured,
                (DLQ, Some(t)) => Rule::DeadLetter(t),
                (_, Some(t)) => Rule::Partition(t),
                (_, None) => {
                    report.violations.push(Violation {
                        area: area.to_string(),
                        path: shown,
                        detail: "object outside any tenant partition".into(),
                        rows: 0,
                    });
                    continue;
                }
            };
            checked.objects += 1;
            checked.rows += check_object(
                lake.store.as_ref(),
                &meta.location,
                area,
                &shown,
                rule,
                tenants,
                &mut report.violations,
            )
            .await?;
        }
    }
    let checked = report.checked.entry("warehouse".into()).or_default();
    match &ctx.warehouse {
        WarehouseHandle::Local(wh) => {
            let loc = wh.location();
            for p in wh.partitions(Some(LOG_RECORDS_TABLE)).await? {
                if window.is_some_and(|w| !p.partition.contains(w)) {
                    continue;
                }
                for f in p.files() {
                    let shown = format!("{}/{f}", loc.url.trim_end_matches('/'));
                    checked.objects += 1;
                    checked.rows += check_object(
                        loc.store.as_ref(),
                        &Path::from(f.as_str()),
                        "warehouse",
                        &shown,
                        Rule::SourceOwned,
                        tenants,
                        &mut report.violations,
                    )
                    .await?;
                }
            }
        }
        WarehouseHandle::BigQuery(bq) => {
            let (table, pairs) = bq.tenant_sources(LOG_RECORDS_TABLE).await?;
            checked.objects += 1;
            let mut bad: BTreeMap<String, u64> = BTreeMap::new();
            for (t, s, n) in pairs {
                checked.rows += n;
                if let Some(why) = check(tenants, Rule::SourceOwned, t.as_deref(), s.as_deref()) {
                    *bad.entry(why).or_default() += n;
                }
            }
            report
                .violations
                .extend(bad.into_iter().map(|(detail, rows)| Violation {
                    area: "warehouse".into(),
                    path: format!("bigquery:{table}"),
                    detail,
                    rows,
                }));
        }
    }
    report.violations.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logferry_core::config::TenantConfig;

    fn tenants() -> TenantRegistry {
        let t = |id: &str| TenantConfig {
            id: id.into(),
            streams: vec![format!("logs-{id}")],
            log_groups: vec![format!("/tenants/{id}/")],
            accounts: vec![],
        };
        TenantRegistry::new(&[t("a"), t("b")]).unwrap()
    }

    #[test]
    fn rules() {
        let reg = tenants();
        let c = |rule, t: Option<&str>, s: Option<&str>| check(&reg, rule, t, s);
        assert_eq!(c(Rule::Partition("a"), Some("a"), Some("logs-a")), None);
        assert_eq!(
            c(Rule::Partition("a"), Some("a"), Some("/tenants/a/x")),
            None
        );
        assert!(c(Rule::Partition("a"), Some("b"), Some("logs-b")).is_some());
        assert!(c(Rule::Partition("a"), Some("a"), Some("logs-b")).is_some());
        assert!(c(Rule::Partition("a"), Some("a"), Some("nobody")).is_some());
        assert!(c(Rule::Partition("a"), Some("a"), None).is_some());
        assert!(c(Rule::Partition("a"), None, Some("logs-a")).is_some());
        assert_eq!(
            c(Rule::DeadLetter("_unknown"), Some("_unknown"), None),
            None
        );
        assert_eq!(
            c(Rule::DeadLetter("_unknown"), Some("_unknown"), Some("x")),
            None
        );
        assert_eq!(
            c(
                Rule::DeadLetter("_unknown"),
                Some("_unknown"),
                Some("logs-a")
            ),
            None
        );
        assert!(c(Rule::DeadLetter("_unknown"), Some("a"), Some("logs-a")).is_some());
        assert!(c(Rule::DeadLetter("a"), Some("a"), Some("logs-b")).is_some());
        assert!(c(Rule::DeadLetter("a"), Some("b"), None).is_some());
        assert_eq!(c(Rule::Configured, Some("b"), None), None);
        assert!(c(Rule::Configured, Some("c"), None).is_some());
        assert_eq!(c(Rule::SourceOwned, Some("b"), Some("logs-b")), None);
        assert!(c(Rule::SourceOwned, Some("b"), Some("logs-a")).is_some());
    }
}
