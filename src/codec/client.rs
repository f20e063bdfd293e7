//! A client of any Confluent-compatible schema registry, through `schema_registry_converter`.

use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde::de::DeserializeOwned;

use super::{CodecError, Decoder, RecordKind};

/// Registers the shipped schemas and fetches writer schemas by id.
#[derive(Clone)]
pub struct RegistryClient {
    url: String,
    settings: SrSettings,
}

impl RegistryClient {
    /// A client of the registry at `url` (requests time out after 10 seconds).
    pub fn new(url: &str) -> Result<Self, CodecError> {
        let settings = SrSettings::new_builder(url.trim_end_matches('/').to_string())
            .no_proxy()
            .set_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| registry_error(url, e))?;
        Ok(Self {
            url: url.to_string(),
            settings,
        })
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
        url: url.to_string(),
        message: describe(&e),
    }
}
