//! Where kept files live (`VCHAT_MEDIA_STORE`): a directory (the default, `<data dir>/media`) or
//! an S3-compatible bucket, both behind `object_store`'s one interface. A cluster needs the
//! bucket: every node then serves every file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, Attributes, ClientConfigKey, ObjectStore, PutOptions, PutPayload, RetryConfig,
};

use crate::wire::ApiError;

/// `VCHAT_MEDIA_STORE`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `file:///abs/path`
    Dir(PathBuf),
    /// `s3://bucket/prefix`; endpoint, region and keys come from the standard `AWS_*` variables.
    Bucket { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(url: &str) -> Result<Location, String> {
        let bad = |why: &str| {
            format!("media store {url:?}: {why} (file:///absolute/dir or s3://bucket/prefix)")
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file URL names an absolute directory"));
            }
            return Ok(Location::Dir(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_matches('/');
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !bucket_ok {
                return Err(bad("the bucket name is not a valid S3 bucket name"));
            }
            if Key::parse(prefix).is_err() {
                return Err(bad("the prefix is not a valid object path"));
            }
            return Ok(Location::Bucket {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        Err(bad("unknown scheme"))
    }
}

/// The opened store.
pub enum Backing {
    /// Files on local disk, served by `ServeDir` straight from `root`.
    Dir {
        root: PathBuf,
        store: LocalFileSystem,
    },
    /// Objects in a bucket, streamed to clients through the server (`media::serve`).
    Bucket {
        store: Arc<dyn ObjectStore>,
        /// For logs and errors.
        name: String,
    },
}

impl Backing {
    pub fn open(location: &Location) -> Result<Backing, String> {
        match location {
            Location::Dir(root) => {
                std::fs::create_dir_all(root)
                    .map_err(|e| format!("media dir {}: {e}", root.display()))?;
                let store = LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| format!("media dir {}: {e}", root.display()))?;
                Ok(Backing::Dir {
                    root: root.clone(),
                    store,
                })
            }
            Location::Bucket { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(10),
                        ..Default::default()
                    });
                // A bucket that does not answer fails an upload in seconds, not minutes
                // (`AWS_CONNECT_TIMEOUT` still wins).
                if std::env::var_os("AWS_CONNECT_TIMEOUT").is_none() {
                    builder = builder.with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        "5s",
                    );
                }
                let s3 = builder
                    .build()
                    .map_err(|e| format!("media bucket {bucket}: {e}"))?;
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                };
                Ok(Backing::Bucket {
                    store,
                    name: format!("s3://{bucket}/{prefix}"),
                })
            }
        }
    }

    pub fn store(&self) -> &dyn ObjectStore {
        match self {
            Backing::Dir { store, .. } => store,
            Backing::Bucket { store, .. } => store.as_ref(),
        }
    }

    /// Stores `bytes` under `key` whole or not at all (a directory writes a staging file and
    /// renames it; a bucket's PUT is atomic).
    pub async fn put(&self, key: &Key, bytes: Vec<u8>) -> Result<(), ApiError> {
        let opts = self.put_options(key);
        self.store()
            .put_opts(key, PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.failed("store a file", &e))
    }

    /// Moves a spooled file (`local`, on the server's disk) to `key`.
    pub async fn keep_file(&self, local: &Path, key: &Key) -> Result<(), ApiError> {
        match self {
            // The spool is inside the directory: a rename, no copy.
            Backing::Dir { root, store } => {
                let from = local
                    .strip_prefix(root)
                    .ok()
                    .and_then(|p| p.to_str())
                    .and_then(|p| Key::parse(p).ok())
                    .ok_or_else(|| ApiError::Internal("a spooled file outside the store".into()))?;
                store
                    .rename(&from, key)
                    .await
                    .map_err(|e| self.failed("store a file", &e))
            }
            // Streamed up in parts (one PUT when small), never whole in memory.
            Backing::Bucket { store, .. } => {
                use tokio::io::AsyncWriteExt;
                let opts = self.put_options(key);
                let mut up = object_store::buffered::BufWriter::with_capacity(
                    store.clone(),
                    key.clone(),
                    UPLOAD_PART_BYTES,
                )
                .with_attributes(opts.attributes);
                let copied = async {
                    let mut file = tokio::fs::File::open(local).await?;
                    tokio::io::copy(&mut file, &mut up).await
                }
                .await;
                // A failed shutdown (the last PUT, or completing the parts) aborts its own
                // multipart upload; a failed copy leaves one to abort here.
                let sent = match copied {
                    Ok(_) => up.shutdown().await,
                    Err(e) => {
                        let _ = up.abort().await;
                        Err(e)
                    }
                };
                sent.map_err(|e| {
                    tracing::error!(error = %e, store = %self.name(), "cannot store a file");
                    ApiError::Unavailable("the media store did not take the file; try again".into())
                })
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Backing::Dir { root, .. } => root.display().to_string(),
            Backing::Bucket { name, .. } => name.clone(),
        }
    }

    /// A bucket keeps each object's type and caching with it (it serves them on every GET); a
    /// directory's come from `ServeDir` and the media router.
    fn put_options(&self, key: &Key) -> PutOptions {
        let mut attributes = Attributes::new();
        if let Backing::Bucket { .. } = self {
            attributes.insert(Attribute::ContentType, content_type(key.as_ref()).into());
            attributes.insert(Attribute::CacheControl, CACHE_CONTROL.into());
        }
        PutOptions {
            attributes,
            ..Default::default()
        }
    }

    fn failed(&self, what: &str, e: &object_store::Error) -> ApiError {
        tracing::error!(error = %e, store = %self.name(), "cannot {what}");
        match self {
            Backing::Dir { .. } => ApiError::Internal("cannot store the file".into()),
            Backing::Bucket { .. } => {
                ApiError::Unavailable("the media store did not take the file; try again".into())
            }
        }
    }

    /// Says at start whether the bucket answers (a wrong endpoint, bucket or key shows in the
    /// log at once rather than at the first upload). The server starts either way: calls and
    /// text chat do not need the bucket.
    pub async fn check(&self) {
        if let Backing::Bucket { store, name } = self {
            match store.head(&Key::from(".vchat-probe")).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::info!(store = %name, "media store answers")
                }
                Err(e) => {
                    tracing::error!(store = %name, error = %e, "media store does not answer")
                }
            }
        }
    }
}

/// Parts of a bucket upload (S3 wants at least 5 MiB per part but the last).
const UPLOAD_PART_BYTES: usize = 8 * 1024 * 1024;

/// Stored names are random or content hashes and never reused, so a file can be cached for good.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// The type a file is served with, from the extension its name got from its content (the same
/// table `ServeDir` uses for the directory).
pub fn content_type(key: &str) -> String {
    mime_guess::from_path(key)
        .first_or_octet_stream()
        .essence_str()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_two_kinds_and_refuses_the_rest() {
        assert_eq!(
            Location::parse("file:///var/lib/vchat/media"),
            Ok(Location::Dir("/var/lib/vchat/media".into()))
        );
        assert_eq!(
            Location::parse("s3://vchat-media/prod/files/"),
            Ok(Location::Bucket {
                bucket: "vchat-media".into(),
                prefix: "prod/files".into()
            })
        );
        assert_eq!(
            Location::parse("s3://vchat-media"),
            Ok(Location::Bucket {
                bucket: "vchat-media".into(),
                prefix: String::new()
            })
        );
        for bad in [
            "file://relative/dir",
            "s3://",
            "s3://ab",
            "s3://Upper/x",
            "s3://ok-bucket/a/../b",
            "gs://bucket",
            "/var/lib/vchat",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn types_follow_the_extension() {
        assert_eq!(content_type("m/ab.png"), "image/png");
        assert_eq!(content_type("m/ab.mp4"), "video/mp4");
        assert_eq!(content_type("m/ab.bin"), "application/octet-stream");
    }
}
