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
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::storage::{Created, delete_if_exists, list_all, put_create};

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
        let bytes = self
            .store
            .get(path)
            .await
            .map_err(|e| Error::storage(path, e))?
            .bytes()
            .await
            .map_err(|e| Error::storage(path, e))?;
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
        match put_create(self.store.as_ref(), &path, Self::encode(&path, value)?).await? {
            Created::New => {
                self.prune(key, v).await?;
                Ok(v)
            }
            Created::Existed => Err(Error::Conflict { path }),
        }
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
