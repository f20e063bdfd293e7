//! Where lake files live: a local directory or an S3 bucket (or an S3-compatible store),
//! through `object_store`. Files are created with a conditional put, so an object, once
//! written, is never replaced, and never visible half-written. Large files are uploaded in
//! parts to a staging name under `_staging/`, then copied to their own name only if nothing
//! is there (on S3, a multipart copy whose CompleteMultipartUpload carries
//! `If-None-Match: *`). `object_store` retries throttling and 5xx answers with exponential
//! backoff.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::CredentialProvider;
use object_store::aws::{AmazonS3Builder, AwsCredential, S3CopyIfNotExists};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

use super::LakeError;
use crate::config::AwsConfig;
use crate::config::lake::UploadSpec;

/// Where multipart uploads are staged before they are copied to their own names.
pub const STAGING_DIR: &str = "_staging";

/// What a conditional put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object was written.
    New,
    /// An identical object was there already (a replay wrote the same file).
    Identical,
}

/// The lake's object store, rooted at the lake URL.
#[derive(Clone)]
pub struct LakeStore {
    store: Arc<dyn ObjectStore>,
    /// The lake URL with no trailing slash, for table and partition locations.
    root: String,
    /// When and how files are uploaded in parts.
    upload: UploadSpec,
}

impl std::fmt::Debug for LakeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeStore")
            .field("root", &self.root)
            .finish()
    }
}

impl LakeStore {
    /// Opens `file://DIR` (created if missing) or `s3://bucket/prefix`; S3 credentials come
    /// from the standard AWS chain (environment, profile, EC2 instance role).
    pub async fn open(url: &str, aws: &AwsConfig) -> Result<Self, LakeError> {
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|source| dir_err(url, source))?;
            let abs = std::fs::canonicalize(dir).map_err(|source| dir_err(url, source))?;
            let store = LocalFileSystem::new_with_prefix(&abs).map_err(LakeError::ObjectStore)?;
            return Ok(Self {
                store: Arc::new(store),
                root: format!("file://{}", abs.display()),
                upload: UploadSpec::default(),
            });
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(LakeError::Store(format!("{url}: not file:// or s3://")));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(aws.region.clone()))
            .load()
            .await;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&aws.region);
        if std::env::var_os("AWS_COPY_IF_NOT_EXISTS").is_none() {
            // Amazon S3's own way; an S3-compatible store may need another, set through
            // the environment as `object_store` documents.
            builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
        }
        if let Some(chain) = sdk.credentials_provider() {
            builder = builder.with_credentials(Arc::new(ChainCredentials {
                chain,
                cached: tokio::sync::Mutex::new(None),
            }));
        }
        if let Some(endpoint) = &aws.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let s3: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(LakeError::ObjectStore)?);
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            s3
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        let root = format!(
            "s3://{bucket}{}",
            if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            }
        );
        Ok(Self {
            store,
            root,
            upload: UploadSpec::default(),
        })
    }

    /// The same store, uploading files as `upload` says.
    pub fn with_upload(mut self, upload: UploadSpec) -> Self {
        self.upload = upload;
        self
    }

    /// The object store itself, with paths relative to the lake root.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The path under the lake root of `location` (a URL such as a table's), if it is there.
    pub fn relative(&self, location: &str) -> Option<String> {
        let rest = location.strip_prefix(&self.root)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        Some(rest.trim_matches('/').to_string())
    }

    /// The URL of `path` under the lake root, e.g. a table's or a partition's location.
    pub fn location(&self, path: &str) -> String {
        format!("{}/{}", self.root, path.trim_start_matches('/'))
    }

    /// Fails with a clear message if the store cannot be listed (a missing bucket, missing
    /// or refused credentials).
    pub async fn check(&self) -> Result<(), LakeError> {
        let mut list = self.store.list(Some(&object_key("_catalog")));
        list.try_next().await.map_err(|source| LakeError::List {
            root: self.root.clone(),
            source,
        })?;
        Ok(())
    }

    /// Writes `bytes` at `path` unless an object is there; an identical object is success,
    /// a different one is an error (another writer landed other records under that name).
    pub async fn put_new(&self, path: &str, bytes: Vec<u8>) -> Result<Created, LakeError> {
        let bytes = Bytes::from(bytes);
        let created = if bytes.len() as u64 >= self.upload.multipart_threshold {
            self.create_in_parts(path, bytes.clone()).await
        } else {
            self.create(path, bytes.clone()).await
        };
        match created {
            Ok(()) => Ok(Created::New),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                if self.get(path).await? == bytes {
                    Ok(Created::Identical)
                } else {
                    Err(LakeError::Conflict(self.location(path)))
                }
            }
            Err(e) => Err(LakeError::ObjectStore(e)),
        }
    }

    /// One conditional PUT.
    async fn create(&self, path: &str, bytes: Bytes) -> object_store::Result<()> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let location = object_key(path);
        let payload = PutPayload::from_bytes(bytes);
        self.store.put_opts(&location, payload, opts).await?;
        Ok(())
    }

    /// A multipart upload to a staging name of this attempt's own, then a copy to `path` only
    /// if nothing is there; the staging object is deleted either way (a crash can leave one
    /// behind: [`LakeStore::sweep_staging`] removes it later).
    async fn create_in_parts(&self, path: &str, bytes: Bytes) -> object_store::Result<()> {
        let staging = object_key(&format!("{STAGING_DIR}/{path}.{}", uuid::Uuid::new_v4()));
        let upload = self.store.put_multipart(&staging).await?;
        let mut parts =
            WriteMultipart::new_with_chunk_size(upload, self.upload.part_bytes as usize);
        parts.put(bytes);
        parts.finish().await?;
        let copied = self
            .store
            .copy_if_not_exists(&staging, &object_key(path))
            .await;
        if let Err(e) = self.store.delete(&staging).await {
            tracing::warn!(staging = %staging, error = %e, "staging object left behind");
        }
        copied
    }

    /// Deletes staging objects older than `age`: left behind by a crash between upload and
    /// copy (younger ones may belong to a running upload of another instance).
    pub async fn sweep_staging(&self, age: std::time::Duration) -> Result<usize, LakeError> {
        let cutoff = chrono::Utc::now() - age;
        let stale: Vec<ObjectPath> = self
            .store
            .list(Some(&object_key(STAGING_DIR)))
            .try_filter(|o| std::future::ready(o.last_modified < cutoff))
            .map_ok(|o| o.location)
            .try_collect()
            .await
            .map_err(LakeError::ObjectStore)?;
        for location in &stale {
            self.store
                .delete(location)
                .await
                .map_err(LakeError::ObjectStore)?;
        }
        Ok(stale.len())
    }

    /// Writes `bytes` at `path`, replacing what is there (catalog files).
    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        self.store
            .put(&object_key(path), PutPayload::from(bytes))
            .await
            .map_err(LakeError::ObjectStore)?;
        Ok(())
    }

    /// The object at `path`, or `None` if there is none.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Bytes>, LakeError> {
        match self.store.get(&object_key(path)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(LakeError::ObjectStore)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(LakeError::ObjectStore(e)),
        }
    }

    /// The object at `path`.
    pub async fn get(&self, path: &str) -> Result<Bytes, LakeError> {
        self.get_opt(path)
            .await?
            .ok_or_else(|| LakeError::Store(format!("{} is missing", self.location(path))))
    }

    /// Names of the objects directly under the directory `dir`.
    pub async fn list_names(&self, dir: &str) -> Result<Vec<String>, LakeError> {
        let listed = self.listing(dir).await?.objects.into_iter();
        Ok(listed
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect())
    }

    /// Names of the directories directly under the directory `dir`.
    pub async fn list_dirs(&self, dir: &str) -> Result<Vec<String>, LakeError> {
        let listed = self.listing(dir).await?.common_prefixes.into_iter();
        Ok(listed
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    async fn listing(&self, dir: &str) -> Result<object_store::ListResult, LakeError> {
        self.store
            .list_with_delimiter(Some(&object_key(dir)))
            .await
            .map_err(LakeError::ObjectStore)
    }

    /// Paths of every object under `prefix`, recursively.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let objects: Vec<_> = self
            .store
            .list(Some(&object_key(prefix)))
            .try_collect()
            .await
            .map_err(LakeError::ObjectStore)?;
        Ok(objects
            .into_iter()
            .map(|o| o.location.to_string())
            .collect())
    }
}

/// S3 credentials from the AWS SDK's default chain (which, unlike `object_store`'s own,
/// reads profiles), cached until five minutes before they expire.
#[derive(Debug)]
struct ChainCredentials {
    chain: aws_credential_types::provider::SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<std::time::SystemTime>)>>,
}

#[async_trait::async_trait]
impl CredentialProvider for ChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let mut cached = self.cached.lock().await;
        let margin = std::time::Duration::from_secs(300);
        if let Some((credential, expiry)) = cached.as_ref()
            && expiry.is_none_or(|e| e > std::time::SystemTime::now() + margin)
        {
            return Ok(credential.clone());
        }
        let c =
            self.chain
                .provide_credentials()
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })?;
        let credential = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), c.expiry()));
        Ok(credential)
    }
}

/// The object key of a lake path, taken as it is: partition directories are already
/// percent-encoded (`symbol=A%2FB`), and `ObjectPath::from` would encode their `%` again, so
/// the S3 key (`A%252FB`) would not be where the catalog's location says.
fn object_key(path: &str) -> ObjectPath {
    ObjectPath::parse(path).unwrap_or_else(|_| ObjectPath::from(path))
}

/// A lake directory that cannot be created or resolved.
fn dir_err(url: &str, source: std::io::Error) -> LakeError {
    LakeError::Dir {
        url: url.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn escaped_partition_values_are_stored_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), u64::MAX).await;
        let path = "t/symbol_part=BRK%2FB/f.avro";
        store.put_new(path, vec![1, 2, 3]).await.unwrap();
        assert_eq!(store.list_dirs("t").await.unwrap(), ["symbol_part=BRK%2FB"]);
        assert_eq!(store.list_all("t").await.unwrap(), [path]);
        assert_eq!(store.get(path).await.unwrap().as_ref(), [1, 2, 3]);
    }

    async fn local(dir: &std::path::Path, multipart_threshold: u64) -> LakeStore {
        let url = format!("file://{}", dir.display());
        let upload = UploadSpec {
            multipart_threshold,
            part_bytes: crate::config::lake::MIN_PART_BYTES,
        };
        let aws = AwsConfig::default();
        LakeStore::open(&url, &aws)
            .await
            .unwrap()
            .with_upload(upload)
    }

    #[tokio::test]
    async fn files_in_parts_are_created_once_and_leave_no_staging() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), 1).await;
        let big: Vec<u8> = (0..12_000_000u32).map(|i| (i % 251) as u8).collect();
        let path = "t/dt=2026-03-02/f.avro";
        assert_eq!(
            store.put_new(path, big.clone()).await.unwrap(),
            Created::New
        );
        assert_eq!(store.get(path).await.unwrap(), big);
        assert_eq!(
            store.put_new(path, big.clone()).await.unwrap(),
            Created::Identical
        );
        let mut other = big.clone();
        other[7_000_000] ^= 1;
        assert!(matches!(
            store.put_new(path, other).await,
            Err(LakeError::Conflict(_))
        ));
        assert_eq!(store.get(path).await.unwrap(), big, "never replaced");
        assert!(store.list_all(STAGING_DIR).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn staging_left_by_a_crash_is_swept_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), 1).await;
        let leftover = format!("{STAGING_DIR}/t/f.avro.x");
        store.put(&leftover, vec![1, 2, 3]).await.unwrap();
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(store.sweep_staging(day).await.unwrap(), 0, "too young");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now = std::time::Duration::from_millis(10);
        assert_eq!(store.sweep_staging(now).await.unwrap(), 1);
        assert!(store.list_all(STAGING_DIR).await.unwrap().is_empty());
    }
}
