//! Failures kept to their window: a window (or day) whose processing fails
//! gets a record in the ledger, `failures/<what>`, with its error, the
//! number of failed attempts and when the next attempt is due. Runs skip it
//! until then, and after `run.max_attempts` failed attempts it is `failed`:
//! left alone, shown by `status` and the metrics, until an operator names
//! it (`run --window`) or asks for it (`run --retry-failed`). A success
//! clears the record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use logferry_core::config::RunSettings;
use logferry_core::ledger::{Ledger, Versioned};
use logferry_core::partition::Window;
use logferry_export::PartitionId;

use crate::error::{Error, ErrorKind, Result};
use crate::state::Health;

/// Ledger prefix of the failure records.
pub const PREFIX: &str = "failures";

/// What failed: a window, or a day's seal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// An hourly window.
    Window(Window),
    /// A day partition's seal.
    Day(PartitionId),
}

impl Subject {
    /// Ledger key of its record.
    pub fn key(&self) -> String {
        match self {
            Subject::Window(w) => format!("{PREFIX}/windows/{}", w.partition()),
            Subject::Day(d) => format!("{PREFIX}/days/{}", d.key()),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Window(w) => write!(f, "window {w}"),
            Subject::Day(d) => write!(f, "seal of {d}"),
        }
    }
}

/// The failure record of a window or day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// `window 2026-11-25T10` or `seal of day=2026-11-25`.
    pub subject: String,
    /// Failed attempts in a row (0 once it succeeded).
    pub attempts: u32,
    /// What kind of error the last one was.
    pub kind: Option<ErrorKind>,
    /// The last error.
    pub error: String,
    /// When the first failure of this series happened.
    pub first_failed_at: Option<DateTime<Utc>>,
    /// When the last one happened.
    pub last_failed_at: Option<DateTime<Utc>>,
    /// When the next attempt is due; `None` when given up on.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl Failure {
    /// Its health.
    pub fn health(&self) -> Health {
        match (self.attempts, self.next_attempt_at) {
            (0, _) => Health::Ok,
            (_, Some(_)) => Health::Retrying,
            (_, None) => Health::Failed,
        }
    }

    /// True when it may be tried at `now` (in backoff or given up: not).
    pub fn due(&self, now: DateTime<Utc>) -> bool {
        match self.health() {
            Health::Ok => true,
            Health::Retrying => self.next_attempt_at.is_some_and(|t| t <= now),
            Health::Failed => false,
        }
    }
}

/// Failure records, read once per run.
#[derive(Debug, Clone)]
pub struct Failures {
    ledger: Ledger,
    settings: RunSettings,
    records: BTreeMap<String, Versioned<Failure>>,
}

impl Failures {
    /// Every failure record of the ledger (one listing).
    pub async fn load(ledger: &Ledger, settings: RunSettings) -> Result<Self> {
        let records = ledger
            .latest_under::<Failure>(PREFIX, |_| true)
            .await?
            .into_iter()
            .filter(|(_, v)| v.value.attempts > 0)
            .collect();
        Ok(Failures {
            ledger: ledger.clone(),
            settings,
            records,
        })
    }

    /// The record of `s`, if it is failing.
    pub fn get(&self, s: &Subject) -> Option<&Failure> {
        self.records.get(&s.key()).map(|v| &v.value)
    }

    /// Every failing record.
    pub fn all(&self) -> impl Iterator<Item = &Failure> {
        self.records.values().map(|v| &v.value)
    }

    /// Records a failed attempt of `s` and when the next is due.
    pub async fn failed(&mut self, s: &Subject, e: &Error) -> Result<Failure> {
        let key = s.key();
        let prev = self.ledger.latest::<Failure>(&key).await?;
        let now = Utc::now();
        let before = prev.as_ref().map(|p| &p.value).filter(|p| p.attempts > 0);
        let attempts = before.map_or(0, |p| p.attempts) + 1;
        let next = (attempts < self.settings.max_attempts).then(|| {
            now + chrono::Duration::from_std(self.settings.backoff(attempts))
                .unwrap_or(chrono::Duration::hours(1))
        });
        let f = Failure {
            subject: s.to_string(),
            attempts,
            kind: Some(e.kind()),
            error: format!("{e}"),
            first_failed_at: before.and_then(|p| p.first_failed_at).or(Some(now)),
            last_failed_at: Some(now),
            next_attempt_at: next,
        };
        let version = self
            .ledger
            .commit(&key, prev.as_ref().map(|p| p.version), &f)
            .await?;
        self.records.insert(
            key,
            Versioned {
                version,
                value: f.clone(),
            },
        );
        Ok(f)
    }

    /// Clears the record of `s` after a success.
    pub async fn succeeded(&mut self, s: &Subject) -> Result<()> {
        let key = s.key();
        let Some(prev) = self.records.remove(&key) else {
            return Ok(());
        };
        let cleared = Failure {
            attempts: 0,
            next_attempt_at: None,
            ..prev.value
        };
        match self.ledger.commit(&key, Some(prev.version), &cleared).await {
            Ok(_) | Err(logferry_core::Error::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn attempts_back_off_then_give_up_and_success_clears() {
        let ledger = Ledger::new(Arc::new(object_store::memory::InMemory::new()), "_state");
        let settings = RunSettings {
            max_attempts: 3,
            retry_backoff: Duration::from_secs(60),
            retry_backoff_max: Duration::from_secs(90),
        };
        let w = Subject::Window(Window::parse("2026-11-25T10").unwrap());
        let mut f = Failures::load(&ledger, settings).await.unwrap();
        let e = Error::BadInput("landing object x is not Parquet".into());
        let one = f.failed(&w, &e).await.unwrap();
        assert_eq!((one.attempts, one.health()), (1, Health::Retrying));
        assert!(!one.due(Utc::now()));
        assert!(one.due(Utc::now() + chrono::Duration::seconds(61)));
        let two = f.failed(&w, &e).await.unwrap();
        let wait = two.next_attempt_at.unwrap() - two.last_failed_at.unwrap();
        assert_eq!(wait.num_seconds(), 90, "doubled, then capped");
        assert_eq!(two.first_failed_at, one.first_failed_at);
        let three = f.failed(&w, &e).await.unwrap();
        assert_eq!(three.health(), Health::Failed);
        assert!(!three.due(Utc::now() + chrono::Duration::days(1)));
        assert_eq!(three.kind, Some(ErrorKind::BadInput));
        // A fresh load sees it; success clears it.
        let mut again = Failures::load(&ledger, settings).await.unwrap();
        assert_eq!(again.get(&w).unwrap().attempts, 3);
        again.succeeded(&w).await.unwrap();
        let after = Failures::load(&ledger, settings).await.unwrap();
        assert!(after.get(&w).is_none());
    }
}
