//! A client of any Confluent-compatible schema registry, through `schema_registry_converter`.

use std::time::Duration;

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

    /// The schema text registered under `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, CodecError> {
        get_schema_by_id(id, &self.settings)
            .await
            .map(|r| r.schema)
            .map_err(|e| {
                if e.retriable {
                    registry_error(&self.url, e)
                } else {
                    CodecError::SchemaNotFound {
                        id,
                        message: describe(&e),
                    }
                }
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

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {}", e.error, cause),
        None => e.error.clone(),
    }
}

fn registry_error(url: &str, e: SRCError) -> CodecError {
    CodecError::Registry {
        url: without_credentials(url),
        message: describe(&e),
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
        assert_eq!(without_credentials("http://127.0.0.1:8081"), "http://127.0.0.1:8081");
    }

    /// A client with basic authentication sends it: the built-in registry accepts any
    /// request, so the header is checked on a listener of the test's own.
    #[tokio::test]
    async fn basic_authentication_is_sent() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            let body = r#"{"schema":"\"string\""}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let client = RegistryClient::from_config(&RegistryConfig {
            url: format!("http://{addr}"),
            username: Some("key".into()),
            password: Some("secret".into()),
            bearer_token: None,
        })
        .unwrap();
        let schema = client.schema_by_id(1).await.unwrap();
        assert_eq!(schema, "\"string\"");
        let request = server.await.unwrap().to_ascii_lowercase();
        // base64("key:secret")
        assert!(request.contains("authorization: basic a2v5onnly3jlda=="), "{request}");
    }
}
