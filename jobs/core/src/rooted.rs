//! A store rooted at a prefix of another: `PrefixStore`, with one fix.
//!
//! object_store 0.13's `PrefixStore::get_opts` (and so `head`) returns the
//! object's metadata with the *full* path, while every listing strips the
//! prefix. DataFusion compares the path `head` returns with the one it asked
//! for, and silently dropped every file of an S3 lake under a prefix. This
//! wrapper strips the prefix from `get_opts` results too.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// `PrefixStore` whose `get_opts`/`head` metadata is relative to the prefix.
#[derive(Debug)]
pub struct Rooted<T: ObjectStore> {
    prefix: Path,
    inner: PrefixStore<T>,
}

impl<T: ObjectStore> Rooted<T> {
    /// `inner` rooted at `prefix`.
    pub fn new(inner: T, prefix: impl Into<Path>) -> Self {
        let prefix = prefix.into();
        Rooted {
            inner: PrefixStore::new(inner, prefix.clone()),
            prefix,
        }
    }
}

impl<T: ObjectStore> std::fmt::Display for Rooted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rooted({})", self.inner)
    }
}

#[async_trait]
impl<T: ObjectStore> ObjectStore for Rooted<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut r = self.inner.get_opts(location, options).await?;
        let relative: Option<Path> = r
            .meta
            .location
            .prefix_match(&self.prefix)
            .map(|rel| rel.collect());
        if let Some(rel) = relative {
            r.meta.location = rel;
        }
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn head_is_relative_to_the_root() {
        let store = Rooted::new(InMemory::new(), "lake");
        let p = Path::from("landing/a.parquet");
        store.put(&p, PutPayload::from_static(b"x")).await.unwrap();
        assert_eq!(store.head(&p).await.unwrap().location, p);
        let listed: Vec<_> = futures::StreamExt::collect::<Vec<_>>(store.list(None)).await;
        assert_eq!(listed[0].as_ref().unwrap().location, p);
    }
}
