//! The ledger: progress of every stage as JSON documents under `_state/`.
//!
//! Each ledger key is an append-only sequence of versions
//! (`_state/<key>/v00000000000000000001.json`, ...), each written once with a
//! conditional create. A writer that read version N commits N+1; if another
//! writer committed N+1 first, the create fails and the writer gets
//! [`Error::Conflict`]. This needs nothing but create-if-absent, which the
//! local filesystem, S3 and GCS all provide, so the same ledger runs
//! everywhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::storage::{Created, delete_if_exists, get_bytes, list_all, put_create};

/// A lease document: who holds it until when.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LeaseDoc {
    /// `host:pid:nonce` of the holder.
    pub holder: String,
    /// When it lapses unless renewed.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// True once given back.
    pub released: bool,
}

/// Identity of this process as a lease holder.
#[derive(Debug, Clone)]
pub struct Holder {
    /// `host:pid:nonce`.
    pub id: String,
    host: String,
}

impl Holder {
    /// This process. Its host part names the host, the kernel's boot and
    /// the pid namespace, so that only a process that can see the holder's
    /// pid judges whether it still runs (containers and Lambda sandboxes may
    /// share a host name).
    pub fn this_process() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).map(|h| h.trim().to_string());
        let name = read("/proc/sys/kernel/hostname").unwrap_or_else(|_| "unknown-host".into());
        let boot: String = read("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(12)
            .collect();
        let pid_ns: String = std::fs::read_link("/proc/self/ns/pid")
            .map(|l| l.display().to_string())
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let host = if boot.is_empty() || pid_ns.is_empty() {
            // Without both, no other process can be judged dead: leases of
            // others only lapse.
            format!("{}~unverifiable", name.replace(':', "_"))
        } else {
            format!("{}~{boot}~{pid_ns}", name.replace(':', "_"))
        };
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Holder {
            id: format!("{host}:{}:{nonce:x}", std::process::id()),
            host,
        }
    }

    /// True when `other` names a process on this host that no longer runs.
    fn is_dead(&self, other: &str) -> bool {
        let mut parts = other.split(':');
        match (
            parts.next(),
            parts.next().and_then(|p| p.parse::<u32>().ok()),
        ) {
            (Some(h), Some(pid)) if h == self.host && !h.ends_with("~unverifiable") => {
                pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }
}

/// A held lease: renew it while the work lasts, release it after.
#[derive(Debug)]
pub struct Lease {
    ledger: Ledger,
    key: String,
    version: u64,
    holder: String,
    ttl: std::time::Duration,
}

/// The leases this process holds, so that a process stopping before its
/// work is done can hand them all back ([`release_held`]).
static HELD: std::sync::Mutex<BTreeMap<String, (Ledger, u64, String)>> =
    std::sync::Mutex::new(BTreeMap::new());

fn held() -> std::sync::MutexGuard<'static, BTreeMap<String, (Ledger, u64, String)>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives back every lease this process still holds (work abandoned at a
/// shutdown deadline): others may take the work at once instead of waiting
/// for the leases to lapse. Returns how many were given back.
pub async fn release_held() -> usize {
    let all: Vec<(String, (Ledger, u64, String))> =
        std::mem::take(&mut *held()).into_iter().collect();
    let mut n = 0;
    for (slot, (ledger, version, holder)) in all {
        let key = slot.split_once('/').map_or(slot.as_str(), |(_, k)| k);
        let doc = LeaseDoc {
            holder,
            expires_at: chrono::Utc::now(),
            released: true,
        };
        match ledger.commit(key, Some(version), &doc).await {
            Ok(_) => n += 1,
            Err(e) => {
                tracing::warn!(lease = %key, error = %e, "Could not hand a lease back; it lapses by itself.")
            }
        }
    }
    n
}

impl Lease {
    /// The registry entry's name: the store and the key (tests run several
    /// lakes in one process).
    fn slot(&self) -> String {
        format!(
            "{:x}/{}",
            Arc::as_ptr(&self.ledger.store) as *const () as usize,
            self.key
        )
    }

    fn register(&self) {
        held().insert(
            self.slot(),
            (self.ledger.clone(), self.version, self.holder.clone()),
        );
    }

    /// The lease's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Extends the lease by its TTL; fails if another holder took it.
    pub async fn renew(&mut self) -> Result<()> {
        let doc = LeaseDoc {
            holder: self.holder.clone(),
            expires_at: chrono::Utc::now()
                + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::minutes(10)),
            released: false,
        };
        self.version = self
            .ledger
            .commit(&self.key, Some(self.version), &doc)
            .await?;
        self.register();
        Ok(())
    }

    /// Gives the lease back.
    pub async fn release(self) -> Result<()> {
        held().remove(&self.slot());
        let doc = LeaseDoc {
            holder: self.holder.clone(),
            expires_at: chrono::Utc::now(),
            released: true,
        };
        self.ledger
            .commit(&self.key, Some(self.version), &doc)
            .await?;
        Ok(())
    }
}

/// A committed version of a ledger key.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// Version number, from 1.
    pub version: u64,
    /// The document.
    pub value: T,
}

/// Ledger rooted at `_state/` of the lake.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("root", &self.root).finish()
    }
}

fn parse_version(file: &str) -> Option<u64> {
    file.strip_prefix('v')?.strip_suffix(".json")?.parse().ok()
}

impl Ledger {
    /// A ledger under `root` (normally `_state`) of a store.
    pub fn new(store: Arc<dyn ObjectStore>, root: impl Into<Path>) -> Self {
        Ledger {
            store,
            root: root.into(),
        }
    }

    /// The store the ledger lives in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn path(&self, rel: &str) -> Path {
        Path::from(format!("{}/{rel}", self.root))
    }

    fn version_path(&self, key: &str, v: u64) -> Path {
        self.path(&format!("{key}/v{v:020}.json"))
    }

    async fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<T> {
        let bytes = get_bytes(self.store.as_ref(), path).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            path: path.to_string(),
            source: e,
        })
    }

    fn encode<T: Serialize>(path: &Path, value: &T) -> Result<Bytes> {
        serde_json::to_vec_pretty(value)
            .map(Bytes::from)
            .map_err(|e| Error::Json {
                path: path.to_string(),
                source: e,
            })
    }

    async fn versions(&self, key: &str) -> Result<Vec<u64>> {
        let metas = list_all(self.store.as_ref(), &self.path(key)).await?;
        let mut v: Vec<u64> = metas
            .iter()
            .filter_map(|m| {
                // Only direct children of the key are its versions.
                let rel = m.location.as_ref().strip_prefix(self.path(key).as_ref())?;
                parse_version(rel.trim_start_matches('/'))
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The latest committed version of `key`, if any.
    pub async fn latest<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>> {
        match self.versions(key).await?.last() {
            None => Ok(None),
            Some(&v) => Ok(Some(Versioned {
                version: v,
                value: self.read(&self.version_path(key, v)).await?,
            })),
        }
    }

    /// Commits the version after `prev` (or version 1 when `prev` is `None`).
    /// Fails with [`Error::Conflict`] when that version already exists.
    pub async fn commit<T: Serialize>(
        &self,
        key: &str,
        prev: Option<u64>,
        value: &T,
    ) -> Result<u64> {
        let v = prev.map_or(1, |p| p + 1);
        let path = self.version_path(key, v);
        let bytes = Self::encode(&path, value)?;
        match put_create(self.store.as_ref(), &path, bytes.clone()).await? {
            Created::New => {}
            Created::Existed => {
                // A retried put whose first attempt landed (the response was
                // lost) finds its own document: that is a commit, not a loss.
                let existing = get_bytes(self.store.as_ref(), &path).await?;
                if existing != bytes {
                    return Err(Error::Conflict { path });
                }
            }
        }
        self.prune(key, v).await?;
        Ok(v)
    }

    /// Takes the lease `key` for `holder` unless another holder has it and
    /// it has not expired. Leases are versions of a ledger key like any
    /// other, so taking one is a conditional create: of two runners, one
    /// wins. A holder on this machine whose process is gone has released
    /// it (a crashed run does not block the next one for the whole TTL).
    pub async fn try_lease(
        &self,
        key: &str,
        holder: &Holder,
        ttl: std::time::Duration,
    ) -> Result<Option<Lease>> {
        let now = chrono::Utc::now();
        let current = self.latest::<LeaseDoc>(key).await?;
        if let Some(c) = &current {
            let held = !c.value.released
                && c.value.expires_at > now
                && c.value.holder != holder.id
                && !holder.is_dead(&c.value.holder);
            if held {
                return Ok(None);
            }
        }
        let doc = LeaseDoc {
            holder: holder.id.clone(),
            expires_at: now
                + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(10)),
            released: false,
        };
        match self.commit(key, current.map(|c| c.version), &doc).await {
            Ok(version) => {
                let lease = Lease {
                    ledger: self.clone(),
                    key: key.to_string(),
                    version,
                    holder: holder.id.clone(),
                    ttl,
                };
                lease.register();
                Ok(Some(lease))
            }
            Err(Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Who holds `key`, if anyone holds it now.
    pub async fn lease_holder(&self, key: &str) -> Result<Option<String>> {
        let now = chrono::Utc::now();
        Ok(self
            .latest::<LeaseDoc>(key)
            .await?
            .filter(|c| !c.value.released && c.value.expires_at > now)
            .map(|c| c.value.holder))
    }

    /// Deletes versions older than the three before `latest`.
    async fn prune(&self, key: &str, latest: u64) -> Result<()> {
        if latest > 4 {
            for v in self.versions(key).await? {
                if v + 3 < latest {
                    delete_if_exists(self.store.as_ref(), &self.version_path(key, v)).await?;
                }
            }
        }
        Ok(())
    }

    /// The latest version of every key under `prefix` that `select` accepts,
    /// found with one listing: key (relative to the ledger root) to its latest
    /// document.
    pub async fn latest_under<T: DeserializeOwned>(
        &self,
        prefix: &str,
        select: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, Versioned<T>>> {
        let metas = list_all(self.store.as_ref(), &self.path(prefix)).await?;
        let root = format!("{}/", self.root);
        let mut latest: BTreeMap<String, u64> = BTreeMap::new();
        for m in &metas {
            let Some(rel) = m.location.as_ref().strip_prefix(&root) else {
                continue;
            };
            let Some((key, file)) = rel.rsplit_once('/') else {
                continue;
            };
            if let Some(v) = parse_version(file).filter(|_| select(key)) {
                let e = latest.entry(key.to_string()).or_insert(v);
                *e = (*e).max(v);
            }
        }
        let mut out = BTreeMap::new();
        for (key, v) in latest {
            let value = self.read(&self.version_path(&key, v)).await?;
            out.insert(key, Versioned { version: v, value });
        }
        Ok(out)
    }

    /// Writes a document once at `rel` (run reports). Returns false if it existed.
    pub async fn put_once<T: Serialize>(&self, rel: &str, value: &T) -> Result<bool> {
        let path = self.path(rel);
        let created = put_create(self.store.as_ref(), &path, Self::encode(&path, value)?).await?;
        Ok(created == Created::New)
    }

    /// Reads a document written with [`Ledger::put_once`].
    pub async fn get<T: DeserializeOwned>(&self, rel: &str) -> Result<T> {
        self.read(&self.path(rel)).await
    }

    /// Creates an empty marker object (idempotent).
    pub async fn mark(&self, rel: &str) -> Result<()> {
        put_create(self.store.as_ref(), &self.path(rel), Bytes::new()).await?;
        Ok(())
    }

    /// Removes a marker or document (idempotent).
    pub async fn remove(&self, rel: &str) -> Result<()> {
        delete_if_exists(self.store.as_ref(), &self.path(rel)).await
    }

    /// Every object under `rel`, as paths relative to the ledger root.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>> {
        let root = format!("{}/", self.root);
        Ok(list_all(self.store.as_ref(), &self.path(rel))
            .await?
            .into_iter()
            .filter_map(|m| m.location.as_ref().strip_prefix(&root).map(str::to_string))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Doc {
        n: u32,
    }

    async fn check(store: Arc<dyn ObjectStore>) {
        let l = Ledger::new(store, "_state");
        assert!(l.latest::<Doc>("w/a").await.unwrap().is_none());
        assert_eq!(l.commit("w/a", None, &Doc { n: 1 }).await.unwrap(), 1);
        // A second writer that also read "nothing" loses.
        let e = l.commit("w/a", None, &Doc { n: 9 }).await.unwrap_err();
        assert!(matches!(e, Error::Conflict { .. }), "{e}");
        assert_eq!(l.commit("w/a", Some(1), &Doc { n: 2 }).await.unwrap(), 2);
        let got = l.latest::<Doc>("w/a").await.unwrap().unwrap();
        assert_eq!((got.version, got.value), (2, Doc { n: 2 }));
        // Keys under a key are not its versions.
        l.commit("w/a/sub", None, &Doc { n: 7 }).await.unwrap();
        assert_eq!(l.latest::<Doc>("w/a").await.unwrap().unwrap().version, 2);
        for v in 2..10 {
            l.commit("w/a", Some(v), &Doc { n: v as u32 + 1 })
                .await
                .unwrap();
        }
        assert_eq!(l.versions("w/a").await.unwrap(), vec![7, 8, 9, 10]);
        let all = l.latest_under::<Doc>("w", |_| true).await.unwrap();
        assert_eq!(all["w/a"].value, Doc { n: 10 });
        assert_eq!(all["w/a/sub"].value, Doc { n: 7 });
        let subs = l
            .latest_under::<Doc>("w", |k| k.ends_with("/sub"))
            .await
            .unwrap();
        assert_eq!(subs.keys().collect::<Vec<_>>(), ["w/a/sub"]);
        assert!(l.put_once("runs/r1.json", &Doc { n: 1 }).await.unwrap());
        assert!(!l.put_once("runs/r1.json", &Doc { n: 2 }).await.unwrap());
        assert_eq!(l.get::<Doc>("runs/r1.json").await.unwrap(), Doc { n: 1 });
        l.mark("pending/x").await.unwrap();
        l.mark("pending/x").await.unwrap();
        assert_eq!(
            l.list("pending").await.unwrap(),
            vec!["pending/x".to_string()]
        );
        l.remove("pending/x").await.unwrap();
        assert!(l.list("pending").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn leases_exclude_and_expire() {
        let l = Ledger::new(Arc::new(InMemory::new()), "_state");
        let a = Holder::this_process();
        let mut b = Holder::this_process();
        b.id = format!("elsewhere:1:{}", b.id);
        let ttl = std::time::Duration::from_secs(60);
        let mut la = l.try_lease("leases/w", &a, ttl).await.unwrap().unwrap();
        assert!(l.try_lease("leases/w", &b, ttl).await.unwrap().is_none());
        la.renew().await.unwrap();
        assert_eq!(
            l.lease_holder("leases/w").await.unwrap(),
            Some(a.id.clone())
        );
        la.release().await.unwrap();
        let lb = l
            .try_lease("leases/w", &b, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert!(lb.is_some());
        // b's lease expired at once: a takes it over.
        assert!(l.try_lease("leases/w", &a, ttl).await.unwrap().is_some());
        // A holder on this host whose process is gone has released it.
        let mut dead = Holder::this_process();
        let host = dead.id.split(':').next().unwrap().to_string();
        dead.id = format!("{host}:4000000:1");
        l.commit(
            "leases/x",
            None,
            &LeaseDoc {
                holder: dead.id.clone(),
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
                released: false,
            },
        )
        .await
        .unwrap();
        assert!(l.try_lease("leases/x", &a, ttl).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_commit_that_landed_but_lost_its_answer_is_not_a_conflict() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let l = Ledger::new(store.clone(), "_state");
        let doc = Doc { n: 1 };
        // The first attempt's put landed; its response was lost.
        let path = l.version_path("k", 1);
        put_create(store.as_ref(), &path, Ledger::encode(&path, &doc).unwrap())
            .await
            .unwrap();
        assert_eq!(l.commit("k", None, &doc).await.unwrap(), 1);
        assert!(matches!(
            l.commit("k", None, &Doc { n: 2 }).await,
            Err(Error::Conflict { .. })
        ));
    }

    #[tokio::test]
    async fn ledger_in_memory() {
        check(Arc::new(InMemory::new())).await;
    }

    #[tokio::test]
    async fn ledger_on_local_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        check(Arc::new(store)).await;
    }
}
