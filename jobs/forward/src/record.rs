//! The record decoder: one JSON object (an NDJSON line, a CloudWatch Logs
//! event message, a Kinesis record) to the fields of `log_record`, in one
//! pass and without copying strings that need no unescaping.
//!
//! Coercions, all unambiguous: `timestamp` may be integer epoch milliseconds
//! or an RFC 3339 string with an explicit offset; `level` is upper-cased.
//! Nothing else is coerced: a numeric string timestamp, a numeric level or a
//! non-string id is `wrong_type`. Fields outside the schema are kept verbatim
//! in `attributes`.

use std::borrow::Cow;
use std::fmt;

use chrono::DateTime;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use logferry_core::config::{Tenant, TenantRegistry};

use crate::reason::{Reason, Rejection};

/// Deepest nesting accepted inside `attributes` values.
pub const MAX_ATTRIBUTE_DEPTH: usize = 64;

/// A JSON value of a known field, kept only as far as validation needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// A string, borrowed from the input when it had no escapes.
    Str(Cow<'a, str>),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    BigUint(u64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An array (contents skipped).
    Array,
    /// An object (contents skipped).
    Object,
}

impl Val<'_> {
    /// JSON type name for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::Int(_) | Val::BigUint(_) | Val::Float(_) => "number",
            Val::Bool(_) => "boolean",
            Val::Null => "null",
            Val::Array => "array",
            Val::Object => "object",
        }
    }
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Val<'de>, E> {
                Ok(Val::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Val<'de>, E> {
                Ok(i64::try_from(v).map_or(Val::BigUint(v), Val::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Val<'de>, E> {
                Ok(Val::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Val<'de>, E> {
                Ok(Val::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_none<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Val<'de>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Val::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Val<'de>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Val::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// A key, borrowed when it had no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Which optional fields the source format reads from the record itself.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'o> {
    /// NDJSON: the field naming the arrival stream (not kept in attributes).
    pub stream_field: Option<&'o str>,
    /// Read `source_account` from the record (NDJSON); CloudWatch Logs
    /// envelopes supply it instead and the record's field stays an attribute.
    pub source_account: bool,
}

/// The known fields of one record, as found, before validation.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    /// `timestamp`.
    pub timestamp: Option<Val<'a>>,
    /// `level`.
    pub level: Option<Val<'a>>,
    /// `service`.
    pub service: Option<Val<'a>>,
    /// `message`.
    pub message: Option<Val<'a>>,
    /// `tenant_id` as claimed by the record.
    pub tenant_id: Option<Val<'a>>,
    /// `request_id`.
    pub request_id: Option<Val<'a>>,
    /// `trace_id`.
    pub trace_id: Option<Val<'a>>,
    /// `source_account` (NDJSON only).
    pub source_account: Option<Val<'a>>,
    /// The arrival-stream field (NDJSON only).
    pub stream: Option<Val<'a>>,
}

const F_TIMESTAMP: u16 = 1;
const F_LEVEL: u16 = 1 << 1;
const F_SERVICE: u16 = 1 << 2;
const F_MESSAGE: u16 = 1 << 3;
const F_TENANT: u16 = 1 << 4;
const F_REQUEST: u16 = 1 << 5;
const F_TRACE: u16 = 1 << 6;
const F_ACCOUNT: u16 = 1 << 7;
const F_STREAM: u16 = 1 << 8;

struct RecordSeed<'o, 'b> {
    opts: ParseOptions<'o>,
    attrs: &'b mut String,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = Parsed<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed<'de>, A::Error> {
        let mut p = Parsed::default();
        let mut seen: u16 = 0;
        let mut extra_keys: Vec<Cow<'de, str>> = Vec::new();
        let attrs = self.attrs;
        attrs.clear();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let k = key.as_ref();
            let slot = if self.opts.stream_field == Some(k) {
                Some((F_STREAM, &mut p.stream))
            } else {
                match k {
                    "timestamp" => Some((F_TIMESTAMP, &mut p.timestamp)),
                    "level" => Some((F_LEVEL, &mut p.level)),
                    "service" => Some((F_SERVICE, &mut p.service)),
                    "message" => Some((F_MESSAGE, &mut p.message)),
                    "tenant_id" => Some((F_TENANT, &mut p.tenant_id)),
                    "request_id" => Some((F_REQUEST, &mut p.request_id)),
                    "trace_id" => Some((F_TRACE, &mut p.trace_id)),
                    "source_account" if self.opts.source_account => {
                        Some((F_ACCOUNT, &mut p.source_account))
                    }
                    _ => None,
                }
            };
            match slot {
                Some((bit, slot)) => {
                    if seen & bit != 0 {
                        return Err(de::Error::custom(format_args!("duplicate key {k:?}")));
                    }
                    seen |= bit;
                    *slot = Some(map.next_value::<Val<'de>>()?);
                }
                None => {
                    if extra_keys.iter().any(|e| e == &key) {
                        return Err(de::Error::custom(format_args!("duplicate key {k:?}")));
                    }
                    let raw: &'de RawValue = map.next_value()?;
                    let depth = json_depth(raw.get());
                    if depth > MAX_ATTRIBUTE_DEPTH {
                        return Err(de::Error::custom(format_args!(
                            "value of {k:?} is nested {depth} levels deep (limit {MAX_ATTRIBUTE_DEPTH})"
                        )));
                    }
                    attrs.push(if attrs.is_empty() { '{' } else { ',' });
                    match &key {
                        // A borrowed key had no escape sequences, so it is
                        // valid JSON string content as it stands.
                        Cow::Borrowed(b) => {
                            attrs.push('"');
                            attrs.push_str(b);
                            attrs.push('"');
                        }
                        Cow::Owned(o) => {
                            attrs.push_str(&serde_json::to_string(o).map_err(de::Error::custom)?)
                        }
                    }
                    attrs.push(':');
                    attrs.push_str(raw.get());
                    extra_keys.push(key);
                }
            }
        }
        if !attrs.is_empty() {
            attrs.push('}');
        }
        Ok(p)
    }
}

/// Nesting depth of a JSON text (brackets outside strings).
fn json_depth(text: &str) -> usize {
    let b = text.as_bytes();
    if !matches!(b.first(), Some(b'[') | Some(b'{')) {
        return 0;
    }
    // Cheap bound first: the depth is at most the number of openers, which
    // a SIMD count finds much faster than the exact scan below.
    let openers = memchr::memchr2_iter(b'[', b'{', b).count();
    if openers <= MAX_ATTRIBUTE_DEPTH {
        return openers;
    }
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// `line` as text, or `invalid_utf8` naming the first bad byte.
pub fn utf8(line: &[u8]) -> Result<&str, Rejection> {
    std::str::from_utf8(line).map_err(|e| {
        Rejection::new(
            Reason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })
}

/// Parses one JSON object. `attrs` receives the fields outside the schema as
/// a JSON object text (left empty when there are none).
pub fn parse_record<'a>(
    text: &'a str,
    opts: ParseOptions<'_>,
    attrs: &mut String,
) -> Result<Parsed<'a>, Rejection> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = RecordSeed { opts, attrs }
        .deserialize(&mut de)
        .and_then(|p| de.end().map(|()| p))
        .map_err(|e| Rejection::new(Reason::MalformedJson, e.to_string()))?;
    Ok(parsed)
}

/// The limits a record is validated against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Earliest accepted event time, microseconds since the epoch.
    pub min_ts_us: i64,
    /// Latest accepted event time, microseconds since the epoch.
    pub max_ts_us: i64,
    /// Largest message in bytes.
    pub max_message_bytes: usize,
}

/// A record that passed validation, ready for the landing batch.
#[derive(Debug)]
pub struct ValidRecord<'a> {
    /// Event time in microseconds.
    pub timestamp_us: i64,
    /// Level, upper case.
    pub level: Cow<'a, str>,
    /// Service.
    pub service: Cow<'a, str>,
    /// Message.
    pub message: Cow<'a, str>,
    /// Request id.
    pub request_id: Option<Cow<'a, str>>,
    /// Trace id.
    pub trace_id: Option<Cow<'a, str>>,
    /// Source account read from the record (NDJSON).
    pub source_account: Option<Cow<'a, str>>,
}

/// Checks the tenant a record claims against the tenant its source belongs to.
pub fn check_tenant_claim(
    claim: Option<&Val<'_>>,
    source_tenant: &Tenant,
    registry: &TenantRegistry,
) -> Result<(), Rejection> {
    match claim {
        None | Some(Val::Null) => Ok(()),
        Some(Val::Str(s)) if s.as_ref() == source_tenant.id.as_str() => Ok(()),
        Some(Val::Str(s)) if registry.get(s).is_some() => Err(Rejection::new(
            Reason::CrossTenant,
            format!(
                "record claims tenant {s:?} but arrived on a source of {}",
                source_tenant.id
            ),
        )),
        Some(Val::Str(s)) => Err(Rejection::new(
            Reason::UnknownTenant,
            format!(
                "record claims tenant {:?}, which is not configured (source belongs to {})",
                truncate(s, 80),
                source_tenant.id
            ),
        )),
        Some(other) => Err(Rejection::new(
            Reason::WrongType,
            format!("tenant_id must be a string, found {}", other.type_name()),
        )),
    }
}

fn required<'a, 'v>(v: &'v Option<Val<'a>>, name: &str) -> Result<&'v Val<'a>, Rejection> {
    match v {
        None => Err(Rejection::new(
            Reason::MissingField,
            format!("field {name} is missing"),
        )),
        Some(Val::Null) => Err(Rejection::new(
            Reason::MissingField,
            format!("field {name} is null"),
        )),
        Some(v) => Ok(v),
    }
}

fn string_field<'a>(
    v: &Option<Val<'a>>,
    name: &str,
    non_empty: bool,
) -> Result<Cow<'a, str>, Rejection> {
    match required(v, name)? {
        Val::Str(s) if non_empty && s.trim().is_empty() => Err(Rejection::new(
            Reason::MissingField,
            format!("field {name} is empty"),
        )),
        Val::Str(s) => Ok(s.clone()),
        other => Err(Rejection::new(
            Reason::WrongType,
            format!("{name} must be a string, found {}", other.type_name()),
        )),
    }
}

fn optional_string<'a>(v: &Option<Val<'a>>, name: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        None | Some(Val::Null) => Ok(None),
        Some(Val::Str(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Rejection::new(
            Reason::WrongType,
            format!(
                "{name} must be a string or null, found {}",
                other.type_name()
            ),
        )),
    }
}

/// Reads a timestamp value as microseconds since the epoch.
pub fn timestamp_micros(v: &Val<'_>) -> Result<i64, Rejection> {
    match v {
        Val::Int(ms) => ms.checked_mul(1000).ok_or_else(|| {
            let reason = if *ms > 0 {
                Reason::TsFuture
            } else {
                Reason::TsPast
            };
            Rejection::new(reason, format!("timestamp {ms} ms is out of range"))
        }),
        Val::BigUint(ms) => Err(Rejection::new(
            Reason::TsFuture,
            format!("timestamp {ms} ms is out of range"),
        )),
        // Integers beyond 64 bits arrive as floats: out of range, not fractional.
        Val::Float(f) if f.fract() == 0.0 && f.abs() >= 9.2e18 => Err(Rejection::new(
            if *f > 0.0 {
                Reason::TsFuture
            } else {
                Reason::TsPast
            },
            format!("timestamp {f:e} ms is out of range"),
        )),
        Val::Str(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|e| {
                Rejection::new(
                    Reason::WrongType,
                    format!(
                        "timestamp string {:?} is not RFC 3339 with an offset ({e})",
                        truncate(s, 64)
                    ),
                )
            }),
        other => Err(Rejection::new(
            Reason::WrongType,
            format!(
                "timestamp must be integer epoch milliseconds or an RFC 3339 string, found {}",
                match other {
                    Val::Float(_) => "a fractional number",
                    o => o.type_name(),
                }
            ),
        )),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Validates the schema fields of a parsed record whose tenant is already
/// settled. `fallback_ts_us` is the event time the source supplies (CloudWatch
/// Logs events carry one) for records without a `timestamp` field.
pub fn validate<'a>(
    p: &Parsed<'a>,
    limits: &Limits,
    fallback_ts_us: Option<i64>,
) -> Result<ValidRecord<'a>, Rejection> {
    let ts = match (&p.timestamp, fallback_ts_us) {
        (None, Some(fb)) => fb,
        (t, _) => timestamp_micros(required(t, "timestamp")?)?,
    };
    let level = string_field(&p.level, "level", true)?;
    let service = string_field(&p.service, "service", true)?;
    let message = string_field(&p.message, "message", false)?;
    let request_id = optional_string(&p.request_id, "request_id")?;
    let trace_id = optional_string(&p.trace_id, "trace_id")?;
    let source_account = optional_string(&p.source_account, "source_account")?;
    if ts < limits.min_ts_us {
        return Err(Rejection::new(
            Reason::TsPast,
            format!("event time {} is before the accepted range", fmt_us(ts)),
        ));
    }
    if ts > limits.max_ts_us {
        return Err(Rejection::new(
            Reason::TsFuture,
            format!("event time {} is after the accepted range", fmt_us(ts)),
        ));
    }
    if message.len() > limits.max_message_bytes {
        return Err(Rejection::new(
            Reason::OversizedMessage,
            format!(
                "message is {} bytes, limit {}",
                message.len(),
                limits.max_message_bytes
            ),
        ));
    }
    let level = if level.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(level.to_ascii_uppercase())
    } else {
        level
    };
    Ok(ValidRecord {
        timestamp_us: ts,
        level,
        service,
        message,
        request_id,
        trace_id,
        source_account,
    })
}

/// Formats microseconds since the epoch as RFC 3339 (or the raw number when
/// out of chrono's range).
pub fn fmt_us(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{us}us"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use logferry_core::config::TenantConfig;

    const NDJSON: ParseOptions<'static> = ParseOptions {
        stream_field: Some("stream"),
        source_account: true,
    };

    fn limits() -> Limits {
        Limits {
            min_ts_us: 1_700_000_000_000_000,
            max_ts_us: 1_800_000_000_000_000,
            max_message_bytes: 100,
        }
    }

    fn registry() -> TenantRegistry {
        let t = |id: &str| TenantConfig {
            id: id.into(),
            streams: vec![format!("logs-{id}")],
            log_groups: vec![],
            accounts: vec![],
        };
        TenantRegistry::new(&[t("a"), t("b")]).unwrap()
    }

    fn check(line: &str) -> Result<(String, i64, String), Rejection> {
        let mut attrs = String::new();
        let p = parse_record(line, NDJSON, &mut attrs)?;
        let reg = registry();
        check_tenant_claim(p.tenant_id.as_ref(), &reg.all()[0], &reg)?;
        let v = validate(&p, &limits(), None)?;
        Ok((v.level.into_owned(), v.timestamp_us, attrs))
    }

    fn reason(line: &str) -> Reason {
        check(line).unwrap_err().reason
    }

    const GOOD: &str = r#"{"timestamp":1750000000000,"tenant_id":"a","level":"info","service":"s","message":"m","request_id":"r","trace_id":null,"metadata":{"x":[1,{"y":2}]},"stream":"logs-a","k\"q":1}"#;

    #[test]
    fn good_record_keeps_extras_verbatim() {
        let (level, ts, attrs) = check(GOOD).unwrap();
        assert_eq!(level, "INFO");
        assert_eq!(ts, 1_750_000_000_000_000);
        assert_eq!(attrs, r#"{"metadata":{"x":[1,{"y":2}]},"k\"q":1}"#);
        let v: serde_json::Value = serde_json::from_str(&attrs).unwrap();
        assert_eq!(v["k\"q"], 1);
    }

    #[test]
    fn coercions_and_wrong_types() {
        let ok = GOOD.replace("1750000000000", "\"2025-06-15T15:06:40.5+02:00\"");
        assert_eq!(check(&ok).unwrap().1, 1_749_992_800_500_000);
        for (from, to) in [
            ("1750000000000", "\"1750000000000\""),
            ("1750000000000", "1750000000000.5"),
            ("1750000000000", "\"2025-06-15T15:06:40\""),
            ("\"info\"", "30"),
            ("\"tenant_id\":\"a\"", "\"tenant_id\":0"),
            ("\"message\":\"m\"", "\"message\":{\"text\":\"m\"}"),
            ("\"request_id\":\"r\"", "\"request_id\":7"),
        ] {
            assert_eq!(reason(&GOOD.replace(from, to)), Reason::WrongType, "{to}");
        }
    }

    #[test]
    fn required_fields() {
        for f in ["timestamp", "level", "service", "message"] {
            let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
            v.as_object_mut().unwrap().remove(f);
            assert_eq!(reason(&v.to_string()), Reason::MissingField, "{f}");
        }
        // tenant_id and request_id may be absent.
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v.as_object_mut().unwrap().remove("tenant_id");
        v.as_object_mut().unwrap().remove("request_id");
        assert!(check(&v.to_string()).is_ok());
        assert_eq!(
            reason(&GOOD.replace("\"level\":\"info\"", "\"level\":\" \"")),
            Reason::MissingField
        );
    }

    #[test]
    fn tenant_claims() {
        assert_eq!(
            reason(&GOOD.replace("\"tenant_id\":\"a\"", "\"tenant_id\":\"b\"")),
            Reason::CrossTenant
        );
        assert_eq!(
            reason(&GOOD.replace("\"tenant_id\":\"a\"", "\"tenant_id\":\"A\"")),
            Reason::UnknownTenant
        );
        assert_eq!(
            reason(&GOOD.replace("\"tenant_id\":\"a\"", "\"tenant_id\":\"a \"")),
            Reason::UnknownTenant
        );
    }

    #[test]
    fn time_range_and_size() {
        assert_eq!(
            reason(&GOOD.replace("1750000000000", "1950000000000")),
            Reason::TsFuture
        );
        assert_eq!(reason(&GOOD.replace("1750000000000", "0")), Reason::TsPast);
        assert_eq!(reason(&GOOD.replace("1750000000000", "-5")), Reason::TsPast);
        assert_eq!(
            reason(&GOOD.replace("1750000000000", "1750000000")),
            Reason::TsPast
        );
        assert_eq!(
            reason(&GOOD.replace("1750000000000", "1750000000000000")),
            Reason::TsFuture
        );
        assert_eq!(
            reason(&GOOD.replace("1750000000000", "99999999999999999999")),
            Reason::TsFuture
        );
        assert_eq!(
            reason(&GOOD.replace("1750000000000", "9223372036854775807")),
            Reason::TsFuture
        );
        let big = GOOD.replace(
            "\"message\":\"m\"",
            &format!("\"message\":\"{}\"", "x".repeat(101)),
        );
        assert_eq!(reason(&big), Reason::OversizedMessage);
    }

    #[test]
    fn malformed_inputs() {
        for bad in [
            "",
            "[1,2]",
            "\"str\"",
            "{\"a\":1,}",
            "{'a':1}",
            "{\"a\":NaN}",
            "{level:1}",
            "{\"a\":1} trailing",
            "{\"timestamp\":1,\"timestamp\":2}",
            "{\"x\":1,\"x\":2}",
            "{\"m\":\"a\u{0}b\"}",
        ] {
            let got = check(bad).map(|_| ()).unwrap_err();
            assert_eq!(got.reason, Reason::MalformedJson, "{bad:?} {got:?}");
        }
        // Deep values are skipped without recursion: no stack overflow, and a
        // known field holding one is simply the wrong type.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_known = GOOD.replace("\"message\":\"m\"", &format!("\"message\":{deep}"));
        assert_eq!(reason(&deep_known), Reason::WrongType);
        let deep_extra = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(reason(&deep_extra), Reason::MalformedJson);
        let ok_depth = format!("{{\"x\":{}{}}}", "[".repeat(60), "]".repeat(60));
        let line = GOOD.replace("\"k\\\"q\":1", &ok_depth[1..ok_depth.len() - 1]);
        assert!(check(&line).is_ok());
    }

    #[test]
    fn depth_scanner_ignores_strings() {
        // Below the limit only the bound is computed (an over-estimate).
        assert!(json_depth(r#"{"a":"[[[[","b":[{}]}"#) <= MAX_ATTRIBUTE_DEPTH);
        let deep_in_string = format!("{{\"a\":\"{}\",\"b\":[{{}}]}}", "[".repeat(100));
        assert_eq!(json_depth(&deep_in_string), 3);
        assert_eq!(json_depth(r#""[[""#), 0);
        let escaped = format!("[\"\\\"{}\"]", "[".repeat(100));
        assert_eq!(json_depth(&escaped), 1);
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(json_depth(&deep), 65);
    }
}
