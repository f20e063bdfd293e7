//! A client of any Confluent-compatible schema registry, through `schema_registry_converter`.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde::de::DeserializeOwned;

use super::{CodecError, Decoder, RecordKind};
use crate::config::RegistryConfig;

/// Registers the shipped schemas and fetches writer schemas by id.
#[derive(Clone)]
pub struct RegistryClient {
    url: String,
    settings: SrSettings,
    /// How long a lookup retries while the registry is unavailable.
    retry_for: Duration,
}

impl RegistryClient {
    /// A client of the registry at `url`, without authentication (requests time out after
    /// 10 seconds).
    pub fn new(url: &str) -> Result<Self, CodecError> {
        Self::from_config(&RegistryConfig {
            url: url.to_string(),
            ..RegistryConfig::default()
        })
    }

    /// A client of the registry `config` names, with its basic authentication or bearer
    /// token. An `https://` URL is reached over TLS.
    pub fn from_config(config: &RegistryConfig) -> Result<Self, CodecError> {
        let url = config.url.trim_end_matches('/');
        let mut builder = SrSettings::new_builder(url.to_string());
        builder.no_proxy().set_timeout(Duration::from_secs(10));
        if let Some(token) = &config.bearer_token {
            builder.set_token_authorization(token);
        } else if let Some(user) = &config.username {
            builder.set_basic_authorization(user, config.password.as_deref());
        }
        let settings = builder.build().map_err(|e| registry_error(url, e))?;
        Ok(Self {
            url: without_credentials(url),
            settings,
            retry_for: config.retry_for,
        })
    }

    /// The connection settings (URL, authentication, timeout), for other clients of the
    /// registry such as `schema_registry_converter`'s decoders.
    pub fn settings(&self) -> &SrSettings {
        &self.settings
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Registers `kind`'s shipped schema under `subject` (or finds it already registered) and
    /// returns its schema id.
    pub async fn register(&self, subject: &str, kind: RecordKind) -> Result<u32, CodecError> {
        let supplied = SuppliedSchema::new(
            Some(kind.full_name().to_string()),
            SchemaType::Avro,
            kind.schema_text().to_string(),
        );
        post_schema(&self.settings, subject.to_string(), supplied)
            .await
            .map(|r| r.id)
            .map_err(|e| registry_error(&self.url, e))
    }

    /// Registers `kind`'s schema for the values of `topic` (subject `<topic>-value`, the
    /// Confluent default TopicNameStrategy).
    pub async fn register_value(&self, topic: &str, kind: RecordKind) -> Result<u32, CodecError> {
        self.register(&format!("{topic}-value"), kind).await
    }

    /// The schema text registered under `id`. Only the registry's definite "no such schema"
    /// (404 with error code 40403) is [`CodecError::SchemaNotFound`]; while the registry is
    /// down, slow or overloaded the lookup retries with backoff for `retry_for`, then fails
    /// with [`CodecError::RegistryUnavailable`]; a refusal (401, 403, another 4xx) is
    /// [`CodecError::Registry`].
    pub async fn schema_by_id(&self, id: u32) -> Result<String, CodecError> {
        let started = std::time::Instant::now();
        let lookup = || self.schema_by_id_once(id);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .with_total_delay(Some(self.retry_for));
        let fetched = lookup
            .retry(backoff)
            .when(|e| matches!(e, CodecError::RegistryUnavailable { .. }))
            .notify(|e, pause| tracing::warn!(error = %e, ?pause, "schema registry unavailable; retrying"))
            .await;
        fetched.map_err(|e| match e {
            CodecError::RegistryUnavailable { url, source, .. } => {
                CodecError::RegistryUnavailable {
                    url,
                    waited: started.elapsed(),
                    source,
                }
            }
            other => other,
        })
    }

    async fn schema_by_id_once(&self, id: u32) -> Result<String, CodecError> {
        let e = match get_schema_by_id(id, &self.settings).await {
            Ok(r) => return Ok(r.schema),
            Err(e) => e,
        };
        Err(match classify(&e) {
            Failure::NotFound => CodecError::SchemaNotFound {
                id,
                message: describe(&e),
            },
            Failure::Transient => CodecError::RegistryUnavailable {
                url: self.url.clone(),
                waited: Duration::ZERO,
                source: RegistryFailure(e),
            },
            Failure::Refused => registry_error(&self.url, e),
        })
    }

    /// Teaches `decoder` the writer schema of `id`, fetching it from the registry.
    pub async fn teach<T: DeserializeOwned>(
        &self,
        decoder: &mut Decoder<T>,
        id: u32,
    ) -> Result<(), CodecError> {
        let text = self.schema_by_id(id).await?;
        decoder.learn(id, &text)
    }
}

/// What a failed registry call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The registry says the schema does not exist (404, error code 40403): the record is bad.
    NotFound,
    /// No answer, or a transient one (timeouts, connection errors, 5xx, 429, 408): retry.
    Transient,
    /// The registry refuses (401, 403, another 4xx, or a 404 that is not 40403, such as a
    /// wrong URL): a configuration problem, not the record's.
    Refused,
}

/// Classifies an error of `schema_registry_converter` by its HTTP status and Confluent error
/// code (the crate puts both in its messages; an error without a status had no answer).
fn classify(e: &SRCError) -> Failure {
    let status = e
        .error
        .split("status ")
        .nth(1)
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok());
    let code_40403 = e
        .cause
        .as_deref()
        .is_some_and(|c| c.contains("error_code: 40403"));
    match status {
        None => Failure::Transient,
        Some(404) if code_40403 => Failure::NotFound,
        Some(408 | 429) => Failure::Transient,
        Some(s) if s >= 500 => Failure::Transient,
        Some(_) => Failure::Refused,
    }
}

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {}", e.error, cause),
        None => e.error.clone(),
    }
}

fn registry_error(url: &str, e: SRCError) -> CodecError {
    CodecError::Registry {
        url: without_credentials(url),
        source: RegistryFailure(e),
    }
}

/// A failed call of `schema_registry_converter`: shown as its message and cause, with the
/// HTTP client's error (when there was one) as its source.
#[derive(Debug, Clone)]
pub struct RegistryFailure(pub SRCError);

impl std::fmt::Display for RegistryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

impl std::error::Error for RegistryFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// `url` without a user name and password in it (`https://key:secret@host` shows as
/// `https://host`), for messages and logs.
fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string().trim_end_matches('/').to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            without_credentials("https://key:s3cret@registry.example:8081"),
            "https://registry.example:8081"
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:8081"),
            "http://127.0.0.1:8081"
        );
    }

    /// A registry that answers each request with the next of `replies` (status, JSON body),
    /// then closes the connection; returns its URL and the requests it received.
    async fn fake_registry(
        replies: Vec<(u16, &'static str)>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for (status, body) in replies {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).to_string());
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
            requests
        });
        (url, server)
    }

    const SCHEMA: &str = r#"{"schema":"\"string\""}"#;

    fn client(url: String, retry_for: Duration) -> RegistryClient {
        RegistryClient::from_config(&RegistryConfig {
            url,
            retry_for,
            ..RegistryConfig::default()
        })
        .unwrap()
    }

    /// A client with basic authentication sends it.
    #[tokio::test]
    async fn basic_authentication_is_sent() {
        let (url, server) = fake_registry(vec![(200, SCHEMA)]).await;
        let client = RegistryClient::from_config(&RegistryConfig {
            url,
            username: Some("key".into()),
            password: Some("secret".into()),
            ..RegistryConfig::default()
        })
        .unwrap();
        assert_eq!(client.schema_by_id(1).await.unwrap(), "\"string\"");
        let request = server.await.unwrap()[0].to_ascii_lowercase();
        // base64("key:secret")
        assert!(
            request.contains("authorization: basic a2v5onnly3jlda=="),
            "{request}"
        );
    }

    /// A registry that is overloaded, then failing, then back: the lookup waits it out.
    #[tokio::test]
    async fn transient_failures_are_retried_until_the_registry_answers() {
        let busy = r#"{"error_code":50001,"message":"busy"}"#;
        let (url, server) =
            fake_registry(vec![(503, busy), (429, busy), (500, busy), (200, SCHEMA)]).await;
        let schema = client(url, Duration::from_secs(30))
            .schema_by_id(7)
            .await
            .unwrap();
        assert_eq!(schema, "\"string\"");
        assert_eq!(server.await.unwrap().len(), 4);
    }

    /// Only the registry's definite answer makes a schema unknown, at once.
    #[tokio::test]
    async fn a_definite_not_found_is_not_retried() {
        let missing = r#"{"error_code":40403,"message":"Schema not found"}"#;
        let (url, server) = fake_registry(vec![(404, missing)]).await;
        let err = client(url, Duration::from_secs(30))
            .schema_by_id(7)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CodecError::SchemaNotFound { id: 7, .. }),
            "{err}"
        );
        assert_eq!(server.await.unwrap().len(), 1);
    }

    /// A registry down for longer than `retry_for` is an outage, never an unknown schema;
    /// a refusal (wrong credentials) is a registry error at once.
    #[tokio::test]
    async fn outages_and_refusals_are_not_unknown_schemas() {
        let down = RegistryClient::from_config(&RegistryConfig {
            url: "http://127.0.0.1:1".into(),
            retry_for: Duration::from_millis(500),
            ..RegistryConfig::default()
        })
        .unwrap();
        let err = down.schema_by_id(7).await.unwrap_err();
        assert!(
            matches!(err, CodecError::RegistryUnavailable { .. }),
            "{err}"
        );
        let denied = r#"{"error_code":40101,"message":"Unauthorized"}"#;
        let (url, server) = fake_registry(vec![(401, denied)]).await;
        let err = client(url, Duration::from_secs(30))
            .schema_by_id(7)
            .await
            .unwrap_err();
        assert!(matches!(err, CodecError::Registry { .. }), "{err}");
        assert_eq!(server.await.unwrap().len(), 1);
    }
}
