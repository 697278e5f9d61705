//! Reason codes of the dead-letter queue: one per way an item can be refused.

use serde::{Deserialize, Serialize};

/// Why the forward stage refused an item. The string forms are stable: they
/// are the `reason` column of the DLQ and keys of the run report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Line or event longer than `forward.max_record_bytes`; not parsed.
    OversizedRecord,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Not a JSON object: syntax error, trailing data, duplicate key, nesting too deep.
    MalformedJson,
    /// NDJSON record without the arrival-stream field.
    MissingSource,
    /// The source maps to no tenant, or the record claims a tenant that does not exist.
    UnknownTenant,
    /// The record claims another configured tenant than its source's.
    CrossTenant,
    /// CloudWatch Logs envelope from an account the tenant does not allow.
    AccountNotAllowed,
    /// A required field is absent or null.
    MissingField,
    /// A field has a type that cannot be read unambiguously.
    WrongType,
    /// Event time older than now - `forward.max_age`.
    TsPast,
    /// Event time later than now + `forward.max_skew`.
    TsFuture,
    /// Message longer than `forward.max_message_bytes`.
    OversizedMessage,
    /// CloudWatch Logs envelope that is not base64, not gzip, truncated or not an envelope.
    CorruptEnvelope,
    /// Envelope that decompresses past `forward.max_envelope_bytes` or holds
    /// more than `forward.max_envelope_events` events (gzip bombs).
    EnvelopeTooLarge,
    /// An input object that cannot be read whole as its name says (not
    /// gzip, or gzip that breaks off): what could be read was forwarded,
    /// the rest is this one entry.
    CorruptInput,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 15] = [
        Reason::OversizedRecord,
        Reason::InvalidUtf8,
        Reason::MalformedJson,
        Reason::MissingSource,
        Reason::UnknownTenant,
        Reason::CrossTenant,
        Reason::AccountNotAllowed,
        Reason::MissingField,
        Reason::WrongType,
        Reason::TsPast,
        Reason::TsFuture,
        Reason::OversizedMessage,
        Reason::CorruptEnvelope,
        Reason::EnvelopeTooLarge,
        Reason::CorruptInput,
    ];

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OversizedRecord => "oversized_record",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::MalformedJson => "malformed_json",
            Reason::MissingSource => "missing_source",
            Reason::UnknownTenant => "unknown_tenant",
            Reason::CrossTenant => "cross_tenant",
            Reason::AccountNotAllowed => "account_not_allowed",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::TsPast => "ts_past",
            Reason::TsFuture => "ts_future",
            Reason::OversizedMessage => "oversized_message",
            Reason::CorruptEnvelope => "corrupt_envelope",
            Reason::EnvelopeTooLarge => "envelope_too_large",
            Reason::CorruptInput => "corrupt_input",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the reason code and a detail for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Reason code.
    pub reason: Reason,
    /// What exactly was wrong.
    pub detail: String,
}

impl Rejection {
    /// Builds a rejection.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_serde_matches() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }
}
