//! Tenant ids, hourly windows and the lake's partition paths, with the parser
//! that turns a path back into its keys (round trip tested).

use std::fmt;

use chrono::{DateTime, NaiveDate, TimeZone, Timelike, Utc};
use object_store::path::Path;

use crate::error::{Error, Result};

/// Tenant key used for items rejected before any tenant was known. It cannot
/// collide with a real tenant: tenant ids never contain `_`.
pub const UNKNOWN_TENANT: &str = "_unknown";

/// A validated tenant id: `[a-z0-9][a-z0-9-]{0,62}`, so it is always a safe
/// single path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant id.
    pub fn new(id: &str) -> Result<Self> {
        let b = id.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if ok {
            Ok(TenantId(id.to_string()))
        } else {
            Err(Error::invalid(
                "tenant id",
                format!("{id:?} must match [a-z0-9][a-z0-9-]{{0,62}}"),
            ))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for a string that may appear as a tenant partition key: a valid tenant
/// id or [`UNKNOWN_TENANT`].
pub fn is_tenant_key(key: &str) -> bool {
    key == UNKNOWN_TENANT || TenantId::new(key).is_ok()
}

/// Microseconds in an hour.
pub const HOUR_US: i64 = 3_600_000_000;

/// One UTC hour: the unit of aggregation, export and load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    start: DateTime<Utc>,
}

impl Window {
    /// The window holding this instant.
    pub fn containing(t: DateTime<Utc>) -> Self {
        let start = t
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .expect("truncating to the hour is always valid");
        Window { start }
    }

    /// The window holding a timestamp in microseconds since the epoch.
    pub fn from_micros(us: i64) -> Option<Self> {
        Self::from_hour_index(us.div_euclid(HOUR_US))
    }

    /// The window with this many hours since the epoch (cheap: the hot path
    /// of the forward stage computes windows this way).
    pub fn from_hour_index(hours: i64) -> Option<Self> {
        DateTime::from_timestamp(hours.checked_mul(3600)?, 0).map(|start| Window { start })
    }

    /// Hours since the epoch.
    pub fn hour_index(&self) -> i64 {
        self.start.timestamp().div_euclid(3600)
    }

    /// Parses `YYYY-MM-DDTHH`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::invalid("window", format!("{text:?}: expected YYYY-MM-DDTHH"));
        let (date, hour) = text.split_once('T').ok_or_else(bad)?;
        if hour.len() != 2 {
            return Err(bad());
        }
        Self::from_parts(date, hour).ok_or_else(bad)
    }

    /// Builds a window from the `dt=` and `hour=` partition values.
    pub fn from_parts(dt: &str, hour: &str) -> Option<Self> {
        if dt.len() != 10 || hour.len() != 2 {
            return None;
        }
        let date = NaiveDate::parse_from_str(dt, "%Y-%m-%d").ok()?;
        let h: u32 = hour.parse().ok()?;
        let naive = date.and_hms_opt(h, 0, 0)?;
        Some(Window {
            start: Utc.from_utc_datetime(&naive),
        })
    }

    /// First instant of the window.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// First instant after the window.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::hours(1)
    }

    /// `YYYY-MM-DD`.
    pub fn dt(&self) -> String {
        self.start.format("%Y-%m-%d").to_string()
    }

    /// `HH`.
    pub fn hour(&self) -> String {
        self.start.format("%H").to_string()
    }

    /// `dt=YYYY-MM-DD/hour=HH`, the partition suffix used everywhere.
    pub fn partition(&self) -> String {
        format!("dt={}/hour={}", self.dt(), self.hour())
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.start.format("%Y-%m-%dT%H"))
    }
}

/// Stage names used in dead-letter paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Decoding and edge validation.
    Forward,
    /// SQL validation rules.
    Aggregate,
}

impl Stage {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Forward => "forward",
            Stage::Aggregate => "aggregate",
        }
    }
}

/// Prefix of landing objects.
pub const LANDING: &str = "landing";
/// Prefix of dead-letter objects.
pub const DLQ: &str = "dlq";
/// Prefix of curated objects.
pub const CURATED: &str = "curated";
/// Prefix of rollup objects.
pub const ROLLUPS: &str = "rollups";
/// Prefix of the ledger.
pub const STATE: &str = "_state";

/// `landing/tenant=<t>/dt=<d>/hour=<h>/<batch>.parquet`
pub fn landing_file(tenant: &TenantId, w: Window, batch_id: &str) -> Path {
    Path::from(format!(
        "{LANDING}/tenant={tenant}/{}/{batch_id}.parquet",
        w.partition()
    ))
}

/// `landing/tenant=<t>/dt=<d>/hour=<h>/`
pub fn landing_dir(tenant: &str, w: Window) -> Path {
    Path::from(format!("{LANDING}/tenant={tenant}/{}", w.partition()))
}

/// `dlq/stage=<s>/tenant=<t>/dt=<d>/hour=<h>/<batch>.parquet`
pub fn dlq_file(stage: Stage, tenant_key: &str, w: Window, batch_id: &str) -> Path {
    Path::from(format!(
        "{DLQ}/stage={}/tenant={tenant_key}/{}/{batch_id}.parquet",
        stage.as_str(),
        w.partition()
    ))
}

/// `curated/dt=<d>/hour=<h>/tenant=<t>/<run>.parquet`
pub fn curated_file(w: Window, tenant: &str, run_id: &str) -> Path {
    Path::from(format!(
        "{CURATED}/{}/tenant={tenant}/{run_id}.parquet",
        w.partition()
    ))
}

/// `rollups/<name>/dt=<d>/hour=<h>/<run>.parquet`
pub fn rollup_file(name: &str, w: Window, run_id: &str) -> Path {
    Path::from(format!(
        "{ROLLUPS}/{name}/{}/{run_id}.parquet",
        w.partition()
    ))
}

/// Ledger key (relative to `_state/`) of the marker that says a landing
/// object waits for aggregation: `pending/dt=<d>/hour=<h>/tenant=<t>/<batch>`.
pub fn pending_marker(w: Window, tenant: &str, batch_id: &str) -> String {
    format!("pending/{}/tenant={tenant}/{batch_id}", w.partition())
}

/// Keys read back from a partition path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKeys {
    /// `tenant=` value, if present.
    pub tenant: Option<String>,
    /// `stage=` value, if present.
    pub stage: Option<String>,
    /// Window from `dt=` and `hour=`, if both are present and valid.
    pub window: Option<Window>,
    /// Last path component.
    pub file: String,
}

/// Reads `key=value` components back from a lake path.
pub fn parse_partition(path: &Path) -> PartitionKeys {
    let mut tenant = None;
    let mut stage = None;
    let mut dt = None;
    let mut hour = None;
    let mut file = String::new();
    for part in path.parts() {
        let p = part.as_ref();
        match p.split_once('=') {
            Some(("tenant", v)) => tenant = Some(v.to_string()),
            Some(("stage", v)) => stage = Some(v.to_string()),
            Some(("dt", v)) => dt = Some(v.to_string()),
            Some(("hour", v)) => hour = Some(v.to_string()),
            _ => file = p.to_string(),
        }
    }
    let window = match (dt, hour) {
        (Some(d), Some(h)) => Window::from_parts(&d, &h),
        _ => None,
    };
    PartitionKeys {
        tenant,
        stage,
        window,
        file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_parse_and_display() {
        let w = Window::parse("2026-11-25T07").unwrap();
        assert_eq!(w.to_string(), "2026-11-25T07");
        assert_eq!(w.partition(), "dt=2026-11-25/hour=07");
        assert!(Window::parse("2026-11-25T24").is_err());
        assert!(Window::parse("2026-11-25").is_err());
        assert!(Window::parse("2026-13-01T00").is_err());
        let us = w.start().timestamp_micros() + 3_599_999_999;
        assert_eq!(Window::from_micros(us), Some(w));
        assert_eq!(
            Window::from_micros(-1).unwrap().to_string(),
            "1969-12-31T23"
        );
        assert_eq!(Window::from_hour_index(w.hour_index()), Some(w));
        assert_eq!(
            Window::from_micros(us + 1).unwrap().to_string(),
            "2026-11-25T08"
        );
    }

    #[test]
    fn tenant_ids() {
        assert!(TenantId::new("tenant-0001").is_ok());
        for bad in [
            "",
            "_unknown",
            "a/b",
            "..",
            "a.b",
            "A",
            "-a",
            &"a".repeat(64),
        ] {
            assert!(TenantId::new(bad).is_err(), "{bad:?}");
        }
        assert!(is_tenant_key(UNKNOWN_TENANT));
    }

    #[test]
    fn partition_round_trip_over_many_keys() {
        // Property: for every tenant and hour, the path parses back to its keys.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = 1 + (seed % 63) as usize;
            let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-";
            let mut id = String::new();
            for i in 0..len {
                let mut c = alphabet[((seed >> (i % 50)) as usize + i * 7) % alphabet.len()];
                if i == 0 && c == b'-' {
                    c = b'a';
                }
                id.push(c as char);
            }
            let tenant = TenantId::new(&id).unwrap();
            let us = (seed % 4_000_000_000_000_000) as i64;
            let w = Window::from_micros(us).unwrap();
            let p = landing_file(&tenant, w, "b1");
            let k = parse_partition(&p);
            assert_eq!(k.tenant.as_deref(), Some(id.as_str()));
            assert_eq!(k.window, Some(w));
            assert_eq!(k.file, "b1.parquet");
            let d = parse_partition(&dlq_file(Stage::Aggregate, UNKNOWN_TENANT, w, "r"));
            assert_eq!(d.stage.as_deref(), Some("aggregate"));
            assert_eq!(d.window, Some(w));
            let c = parse_partition(&curated_file(w, tenant.as_str(), "r"));
            assert_eq!(c.tenant.as_deref(), Some(id.as_str()));
            assert_eq!(c.window, Some(w));
        }
    }
}
