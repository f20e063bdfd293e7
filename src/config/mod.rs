//! Application configuration (`config/tickflow.yaml`): where Kafka, the schema registry, state,
//! metrics and AWS are. Every setting can be overridden from the environment with
//! `TICKFLOW_<SECTION>__<FIELD>` (for example `TICKFLOW_KAFKA__BOOTSTRAP_SERVERS`).
//!
//! Loading never guesses: an unknown key, a wrong type or a bad duration is reported with the
//! file, line and column and the dotted path of the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod lake;
mod locate;
pub mod sim;
pub mod topology;

pub use topology::{TopologySpec, ValidationErrors};

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/tickflow.yaml";

/// Prefix of environment variables that override configuration fields.
pub const ENV_PREFIX: &str = "TICKFLOW_";

/// Problems with the configuration: always the user's to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read configuration: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML, or a field has the wrong name, type or value.
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    /// An environment override names no known field or holds an unusable value.
    #[error("environment variable {var}: {field}: {message}")]
    Env {
        var: String,
        field: String,
        message: String,
    },
}

impl crate::error::Classified for ConfigError {
    fn class(&self) -> crate::error::ErrorClass {
        // A configuration problem is always the user's to fix.
        crate::error::ErrorClass::User
    }
}

/// Everything tickflow needs to know about its surroundings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Kafka (or any Kafka-protocol broker) connection.
    pub kafka: KafkaConfig,
    /// Confluent-compatible schema registry.
    pub registry: RegistryConfig,
    /// Local state (RocksDB stores, the built-in registry's files).
    pub state: StateConfig,
    /// Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// AWS region and endpoint (S3, Glue, Athena).
    pub aws: AwsConfig,
    /// Amazon Athena, for `tickflow query --engine athena`.
    pub athena: AthenaConfig,
    /// Defaults of `tickflow simulate`; command-line flags override them.
    pub simulator: sim::SimConfig,
}

/// Kafka connection settings. Its `Debug` shows secret properties as `[redacted]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties passed through unchanged (security.protocol, sasl.*, ssl.*).
    /// Numbers and booleans are taken as their text (`linger.ms: 5`).
    #[serde(deserialize_with = "scalar_texts")]
    pub properties: BTreeMap<String, String>,
    /// How long to wait for the broker to answer at start before failing.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Authenticate to Amazon MSK with IAM access control: SASL/OAUTHBEARER over TLS with
    /// tokens signed from the AWS credential chain (the instance role on EC2), refreshed
    /// before they expire. MSK's IAM listener is port 9098.
    pub aws_iam: bool,
    /// Region of the MSK cluster, for IAM tokens [default: from the bootstrap host names,
    /// else `AWS_REGION`].
    pub aws_iam_region: Option<String>,
    /// How the topics tickflow creates when they are missing are made (outputs, dead letters,
    /// late ticks, repartition, changelogs, the simulator's): replicas and topic configs.
    pub topics: TopicSettings,
}

/// Settings of the topics tickflow creates. A topic that exists is used as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSettings {
    /// Replicas of each partition [default: the broker's `default.replication.factor`, which
    /// MSK sets to 3 on clusters in three Availability Zones].
    pub replication_factor: Option<std::num::NonZeroU16>,
    /// Topic configs of every topic created (`min.insync.replicas: 2`, `retention.ms:
    /// 604800000`). A topic's own settings win: changelogs stay `cleanup.policy: compact`.
    #[serde(deserialize_with = "scalar_texts")]
    pub configs: BTreeMap<String, String>,
}

/// A map whose values may be written as strings, numbers or booleans, kept as text.
fn scalar_texts<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    let map = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// Whether the librdkafka property `key` holds a secret (a password, a private key, a token),
/// which is never shown in logs or errors.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "oauthbearer.config",
        "key.pem",
        "token",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Shows `value` as `[redacted]` when it is set.
fn redact(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| "[redacted]")
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &properties)
            .field("connect_timeout", &self.connect_timeout)
            .field("aws_iam", &self.aws_iam)
            .field("aws_iam_region", &self.aws_iam_region)
            .field("topics", &self.topics)
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            properties: BTreeMap::new(),
            connect_timeout: Duration::from_secs(10),
            aws_iam: false,
            aws_iam_region: None,
            topics: TopicSettings::default(),
        }
    }
}

/// Schema registry settings. Its `Debug` never shows the password or the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL of a Confluent-compatible registry (Confluent, Karapace, Redpanda, Apicurio,
    /// or `tickflow registry`); `https://` for a registry behind TLS.
    pub url: String,
    /// User name for HTTP basic authentication (Confluent Cloud: the API key).
    pub username: Option<String>,
    /// Password for basic authentication (Confluent Cloud: the API secret). A secret: set it
    /// through `TICKFLOW_REGISTRY__PASSWORD` or `TICKFLOW_REGISTRY__PASSWORD_FILE`.
    pub password: Option<String>,
    /// Bearer token sent instead of basic authentication (a secret, like `password`).
    pub bearer_token: Option<String>,
    /// How long a schema lookup retries (with backoff) while the registry is down, slow or
    /// overloaded (timeouts, 5xx, 429) before the stage stops; a record is never sent to
    /// the dead-letter topic for it.
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081".into(),
            username: None,
            password: None,
            bearer_token: None,
            retry_for: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("bearer_token", &redact(&self.bearer_token))
            .field("retry_for", &self.retry_for)
            .finish()
    }
}

/// Local state settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory holding all local state of this instance.
    pub dir: PathBuf,
    /// How long a newly assigned task waits for the partition's previous owner to write its
    /// final commit ("release") before restoring. Only a previous owner that crashed, or a
    /// broker that assigns a partition before its owner revoked it, makes a task wait.
    #[serde(with = "humantime_serde")]
    pub handover_timeout: Duration,
    /// How long the store directory of a task this instance no longer runs is kept before it
    /// is deleted (Kafka Streams' `state.cleanup.delay.ms`). A task that comes back later is
    /// rebuilt from its changelog.
    #[serde(with = "humantime_serde")]
    pub cleanup_delay: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./state"),
            handover_timeout: Duration::from_secs(30),
            cleanup_delay: Duration::from_secs(600),
        }
    }
}

/// Metrics endpoint settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address the Prometheus `/metrics` endpoint listens on; empty disables it.
    pub addr: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:9464".into(),
        }
    }
}

/// AWS settings; credentials always come from the standard chain, never from this file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// AWS region of S3, Glue and Athena.
    pub region: String,
    /// Endpoint override for S3-compatible stores and local emulators; unset for AWS itself.
    pub endpoint: Option<String>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint: None,
        }
    }
}

/// Amazon Athena settings (the database is the lake's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AthenaConfig {
    /// Workgroup the queries run in.
    pub workgroup: String,
    /// Where Athena writes results, `s3://bucket/prefix/`; unset uses the workgroup's setting.
    pub output_location: Option<String>,
    /// Data catalog of the lake's database (`AwsDataCatalog` is the Glue Data Catalog).
    pub catalog: String,
    /// Price per terabyte scanned, in US dollars, for the cost estimate printed with results.
    pub price_per_tb: f64,
    /// Longest pause between two polls of a running query (polls start at 100 ms and double).
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// How long a query may take before tickflow cancels it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for AthenaConfig {
    fn default() -> Self {
        Self {
            workgroup: "primary".into(),
            output_location: None,
            catalog: "AwsDataCatalog".into(),
            price_per_tb: 5.0,
            max_poll_interval: Duration::from_secs(2),
            timeout: Duration::from_secs(600),
        }
    }
}

impl AppConfig {
    /// Loads the configuration: `path` if given (it must exist), else
    /// [`DEFAULT_CONFIG_PATH`] if it exists, else built-in defaults; then applies
    /// `TICKFLOW_*` overrides from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (file, text) = match path {
            Some(p) => (p.display().to_string(), read(p)?),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => (
                DEFAULT_CONFIG_PATH.to_string(),
                read(Path::new(DEFAULT_CONFIG_PATH))?,
            ),
            None => ("<defaults>".to_string(), String::new()),
        };
        Self::from_yaml(&file, &text, std::env::vars())
    }

    /// Parses YAML `text` (reported as `file` in errors) and applies the overrides found in
    /// `env`: pairs of variable name and value.
    pub fn from_yaml(
        file: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let config: AppConfig = parse_yaml(file, text)?;
        let overrides = env_overrides(env);
        if overrides.is_empty() {
            return Ok(config);
        }
        apply_overrides(&config, &overrides)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.display().to_string(),
        source,
    })
}

/// Deserializes any YAML document with errors that carry file, line, column and field path.
/// An empty document yields the type's defaults.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ConfigError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    let mut path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|err| {
            path = err.path().to_string();
            err.into_inner()
        })
    });
    parsed.map_err(|err| {
        let err = err.without_snippet();
        let at = locate::Locations::of(text);
        let path = variant_path(&at, &path, err);
        let (line, column) = position(&at, &path, err);
        ConfigError::Invalid {
            file: file.to_string(),
            line,
            column,
            message: strip_location(&yaml_message(err)),
            field: field_name(&path),
        }
    })
}

/// Where to point for `err` at `path`: the deserializer's position, except that a bad value
/// it places at its field's key is shown at the value (`connect_timeout: soon` at `soon`).
fn position(at: &locate::Locations, path: &str, err: &serde_saphyr::Error) -> (usize, usize) {
    let Some(l) = err.location() else {
        return (1, 1);
    };
    let reported = (l.line() as usize, l.column() as usize);
    let about_a_key = matches!(
        err,
        serde_saphyr::Error::SerdeUnknownField { .. }
            | serde_saphyr::Error::SerdeUnknownVariant { .. }
            | serde_saphyr::Error::SerdeMissingField { .. }
    );
    match at.value(path) {
        Some(value) if !about_a_key && at.get(path) == Some(reported) => value,
        _ => reported,
    }
}

/// The message of a YAML error; an unknown field or variant in serde's words, which name the
/// expected ones in backticks.
fn yaml_message(err: &serde_saphyr::Error) -> String {
    let one_of = |expected: &[&str]| match expected {
        [] => "there are none".to_string(),
        [one] => format!("expected `{one}`"),
        many => {
            let quoted: Vec<String> = many.iter().map(|e| format!("`{e}`")).collect();
            format!("expected one of {}", quoted.join(", "))
        }
    };
    match err {
        serde_saphyr::Error::SerdeUnknownVariant {
            variant, expected, ..
        } => format!("unknown variant `{variant}`, {}", one_of(expected)),
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => format!("unknown field `{field}`, {}", one_of(expected)),
        other => other.to_string(),
    }
}

/// The path of an error: an unknown variant written as a single-key map (`- windoww: {...}`)
/// is at its key, one path below where the deserializer stopped.
fn variant_path(at: &locate::Locations, path: &str, err: &serde_saphyr::Error) -> String {
    let serde_saphyr::Error::SerdeUnknownVariant { variant, .. } = err else {
        return path.to_string();
    };
    let below = if path == "." || path.is_empty() {
        variant.clone()
    } else {
        format!("{path}.{variant}")
    };
    if at.get(&below).is_some() {
        below
    } else {
        path.to_string()
    }
}

fn field_name(path: &str) -> String {
    if path == "." || path.is_empty() {
        "(top level)".to_string()
    } else {
        path.to_string()
    }
}

/// The YAML deserializer appends " at line L, column C" to messages; the location is
/// reported separately.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// One `TICKFLOW_SECTION__FIELD=value` override, with the path it sets.
#[derive(Debug)]
struct Override {
    var: String,
    path: Vec<String>,
    value: String,
}

const SECTIONS: [&str; 7] = [
    "kafka",
    "registry",
    "state",
    "metrics",
    "aws",
    "athena",
    "simulator",
];

/// Picks the variables that name a configuration section; others (`TICKFLOW_LOG`, ...) are not
/// configuration overrides and are left alone.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut out: Vec<Override> = env
        .into_iter()
        .filter_map(|(var, value)| {
            let rest = var.strip_prefix(ENV_PREFIX)?;
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            (path.len() >= 2 && SECTIONS.contains(&path[0].as_str())).then_some(Override {
                var,
                path,
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

/// A configuration tree, to set overrides in before it is read again.
type Json = serde_json::Value;

fn apply_overrides(config: &AppConfig, overrides: &[Override]) -> Result<AppConfig, ConfigError> {
    let mut tree = serde_json::to_value(config).expect("configuration serializes");
    let fields = serde_json::to_value(AppConfig::default()).expect("configuration serializes");
    for o in overrides {
        let (path, value) = from_file(o, &fields)?;
        tree = with_override(tree, &path, value);
    }
    serde_path_to_error::deserialize(tree).map_err(|err| {
        let field = field_name(&err.path().to_string());
        let var = overrides
            .iter()
            .find(|o| touches(&o.path, &field))
            .map(|o| o.var.clone())
            .unwrap_or_else(|| {
                overrides
                    .iter()
                    .map(|o| o.var.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        ConfigError::Env {
            var,
            field,
            message: strip_location(&err.into_inner().to_string()),
        }
    })
}

/// Whether the dotted `field` of an error is the override's path, inside it or around it.
fn touches(path: &[String], field: &str) -> bool {
    let joined = path.join(".");
    field.starts_with(&joined) || joined.starts_with(field)
}

/// `value` set at `path` in `tree`: as text when the field takes text (a password stays
/// `0x1F`, `1e3` or `null`, exactly as given), else read as YAML (numbers, booleans, lists).
fn with_override(tree: Json, path: &[String], value: String) -> Json {
    let mut as_text = tree.clone();
    set_path(&mut as_text, path, Json::String(value.clone()));
    match serde_path_to_error::deserialize::<_, AppConfig>(as_text.clone()) {
        Err(err) if touches(path, &field_name(&err.path().to_string())) => {
            let typed = serde_saphyr::from_str(&value).unwrap_or(Json::String(value));
            let mut tree = tree;
            set_path(&mut tree, path, typed);
            tree
        }
        _ => as_text,
    }
}

/// Resolves `TICKFLOW_..._FILE=path` (Docker and Kubernetes secrets): when the override's last
/// name ends in `_file` and is not itself a field (like `simulator.symbols_file`), the value
/// of the field without `_file` is the file's content, less a trailing newline. Errors name
/// the variable and the file, never the content.
fn from_file(o: &Override, fields: &Json) -> Result<(Vec<String>, String), ConfigError> {
    let last = o.path.last().expect("overrides have a section and a field");
    let Some(stem) = last.strip_suffix("_file") else {
        return Ok((o.path.clone(), o.value.clone()));
    };
    if lookup(fields, &o.path).is_some() {
        return Ok((o.path.clone(), o.value.clone()));
    }
    let mut path = o.path.clone();
    *path.last_mut().expect("non-empty") = stem.to_string();
    let text = std::fs::read_to_string(&o.value).map_err(|e| ConfigError::Env {
        var: o.var.clone(),
        field: path.join("."),
        message: format!("cannot read the secret file {}: {e}", o.value),
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok((path, text.to_string()))
}

fn lookup<'a>(tree: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter()
        .try_fold(tree, |node, key| node.get(key.as_str()))
}

fn set_path(tree: &mut Json, path: &[String], value: Json) {
    let mut node = tree;
    for key in &path[..path.len() - 1] {
        if !node.is_object() {
            *node = Json::Object(Default::default());
        }
        let map = node.as_object_mut().expect("object");
        node = map
            .entry(key.clone())
            .or_insert(Json::Object(Default::default()));
    }
    if !node.is_object() {
        *node = Json::Object(Default::default());
    }
    let last = path[path.len() - 1].clone();
    node.as_object_mut().expect("object").insert(last, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = AppConfig::from_yaml("t.yaml", "", no_env()).unwrap();
        assert_eq!(c, AppConfig::default());
    }

    #[test]
    fn shipped_config_loads() {
        let text = std::fs::read_to_string("config/tickflow.yaml").unwrap();
        AppConfig::from_yaml("config/tickflow.yaml", &text, no_env()).unwrap();
    }

    #[test]
    fn unknown_key_names_file_line_column_and_field() {
        let text = "kafka:\n  bootstrap_servers: a:1\n  bootstrap_servrs: b:2\n";
        let err = AppConfig::from_yaml("c.yaml", text, no_env()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("c.yaml:3:3: kafka.bootstrap_servrs: unknown field `bootstrap_servrs`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_duration_is_located() {
        let text = "kafka:\n  connect_timeout: soon\n";
        let msg = AppConfig::from_yaml("c.yaml", text, no_env())
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("c.yaml:2:20: kafka.connect_timeout: "),
            "{msg}"
        );
    }

    #[test]
    fn topic_settings_parse_and_a_zero_replication_factor_is_located() {
        let text = "kafka:\n  topics:\n    replication_factor: 3\n    configs: {min.insync.replicas: 2, retention.ms: 604800000}\n";
        let c = AppConfig::from_yaml("c.yaml", text, no_env()).unwrap();
        assert_eq!(c.kafka.topics.replication_factor.map(|n| n.get()), Some(3));
        assert_eq!(c.kafka.topics.configs["min.insync.replicas"], "2");
        assert_eq!(c.kafka.topics.configs["retention.ms"], "604800000");
        let env = vec![(
            "TICKFLOW_KAFKA__TOPICS__REPLICATION_FACTOR".to_string(),
            "2".to_string(),
        )];
        let c = AppConfig::from_yaml("c.yaml", "", env).unwrap();
        assert_eq!(c.kafka.topics.replication_factor.map(|n| n.get()), Some(2));
        let text = "kafka:\n  topics:\n    replication_factor: 0\n";
        let msg = AppConfig::from_yaml("c.yaml", text, no_env())
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("c.yaml:3:25: kafka.topics.replication_factor: "),
            "{msg}"
        );
    }

    #[test]
    fn malformed_yaml_is_located() {
        let text = "kafka:\n  bootstrap_servers: \"a\n";
        let msg = AppConfig::from_yaml("c.yaml", text, no_env())
            .unwrap_err()
            .to_string();
        // At the quote that is never closed.
        assert!(msg.starts_with("c.yaml:2:22: "), "{msg}");
    }

    #[test]
    fn env_overrides_win() {
        let env = vec![
            ("TICKFLOW_KAFKA__BOOTSTRAP_SERVERS".into(), "k:9".into()),
            (
                "TICKFLOW_AWS__ENDPOINT".into(),
                "http://127.0.0.1:5000".into(),
            ),
            ("TICKFLOW_KAFKA__CONNECT_TIMEOUT".into(), "3s".into()),
            ("TICKFLOW_LOG".into(), "debug".into()),
        ];
        let c = AppConfig::from_yaml("c.yaml", "kafka:\n  bootstrap_servers: x:1\n", env).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "k:9");
        assert_eq!(c.kafka.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.aws.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
    }

    /// librdkafka properties given as numbers or booleans, in the file or the environment,
    /// are passed on as their text.
    #[test]
    fn kafka_properties_take_numbers_and_booleans() {
        let env = vec![(
            "TICKFLOW_KAFKA__PROPERTIES__SESSION.TIMEOUT.MS".into(),
            "6000".into(),
        )];
        let text = "kafka:\n  properties: { linger.ms: 5, enable.ssl.certificate.verification: false, security.protocol: SSL }\n";
        let c = AppConfig::from_yaml("c.yaml", text, env).unwrap();
        let p = |k: &str| c.kafka.properties.get(k).map(String::as_str);
        assert_eq!(p("session.timeout.ms"), Some("6000"));
        assert_eq!(p("linger.ms"), Some("5"));
        assert_eq!(p("enable.ssl.certificate.verification"), Some("false"));
        assert_eq!(p("security.protocol"), Some("SSL"));
    }

    #[test]
    fn every_section_can_be_overridden_from_the_environment() {
        let value = serde_json::to_value(AppConfig::default()).unwrap();
        let mut sections: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut known = SECTIONS.to_vec();
        sections.sort_unstable();
        known.sort_unstable();
        assert_eq!(sections, known);
        let env = vec![("TICKFLOW_ATHENA__WORKGROUP".into(), "analysts".into())];
        let c = AppConfig::from_yaml("c.yaml", "", env).unwrap();
        assert_eq!(c.athena.workgroup, "analysts");
    }

    /// Text fields take the variable's text as it is: YAML would read `0x1F` and `1e3` as
    /// numbers and `null` as nothing. Fields of other types still read YAML.
    #[test]
    fn env_text_fields_keep_the_text_as_given() {
        let env = vec![
            (
                "TICKFLOW_KAFKA__PROPERTIES__SASL.PASSWORD".into(),
                "0x1F".into(),
            ),
            (
                "TICKFLOW_KAFKA__PROPERTIES__SSL.KEY.PASSWORD".into(),
                "1e3".into(),
            ),
            ("TICKFLOW_REGISTRY__PASSWORD".into(), "null".into()),
            ("TICKFLOW_REGISTRY__USERNAME".into(), "true".into()),
            ("TICKFLOW_SIMULATOR__SEED".into(), "7".into()),
            ("TICKFLOW_SIMULATOR__EXTENDED_HOURS".into(), "true".into()),
        ];
        let c = AppConfig::from_yaml("c.yaml", "", env).unwrap();
        let p = |k: &str| c.kafka.properties.get(k).map(String::as_str);
        assert_eq!(p("sasl.password"), Some("0x1F"));
        assert_eq!(p("ssl.key.password"), Some("1e3"));
        assert_eq!(c.registry.password.as_deref(), Some("null"));
        assert_eq!(c.registry.username.as_deref(), Some("true"));
        assert_eq!(c.simulator.seed, 7);
        assert!(c.simulator.extended_hours);
    }

    /// `..._FILE` reads a secret from a file (less its trailing newline); a field whose own
    /// name ends in `_file` is set as usual.
    #[test]
    fn env_file_variables_read_secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "s3cr3t 0x1F\n").unwrap();
        let env = vec![
            (
                "TICKFLOW_KAFKA__PROPERTIES__SASL.PASSWORD_FILE".into(),
                secret.display().to_string(),
            ),
            (
                "TICKFLOW_REGISTRY__PASSWORD_FILE".into(),
                secret.display().to_string(),
            ),
            (
                "TICKFLOW_SIMULATOR__SYMBOLS_FILE".into(),
                "universe.csv".into(),
            ),
        ];
        let c = AppConfig::from_yaml("c.yaml", "", env).unwrap();
        let password = c.kafka.properties.get("sasl.password");
        assert_eq!(password.map(String::as_str), Some("s3cr3t 0x1F"));
        assert_eq!(c.registry.password.as_deref(), Some("s3cr3t 0x1F"));
        assert_eq!(
            c.simulator.symbols_file,
            Some(PathBuf::from("universe.csv"))
        );
        assert!(!c.kafka.properties.contains_key("sasl.password_file"));
    }

    #[test]
    fn an_unreadable_secret_file_names_the_variable_and_the_file() {
        let env = vec![(
            "TICKFLOW_REGISTRY__PASSWORD_FILE".into(),
            "/nonexistent/secret".into(),
        )];
        let msg = AppConfig::from_yaml("c.yaml", "", env)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("environment variable TICKFLOW_REGISTRY__PASSWORD_FILE: registry.password: cannot read the secret file /nonexistent/secret"),
            "{msg}"
        );
    }

    /// Debug output (what a `debug!` of the configuration would log) never shows a secret.
    #[test]
    fn debug_output_redacts_secrets() {
        let marker = "MARKER-7f3a9c";
        let env = vec![
            (
                "TICKFLOW_KAFKA__PROPERTIES__SASL.PASSWORD".into(),
                marker.into(),
            ),
            (
                "TICKFLOW_KAFKA__PROPERTIES__SASL.USERNAME".into(),
                "alice".into(),
            ),
            ("TICKFLOW_REGISTRY__PASSWORD".into(), marker.into()),
            ("TICKFLOW_REGISTRY__BEARER_TOKEN".into(), marker.into()),
        ];
        let c = AppConfig::from_yaml("c.yaml", "", env).unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains(marker), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_env_field_is_named() {
        let env = vec![("TICKFLOW_KAFKA__BOOTSTRAP".into(), "k:9".into())];
        let msg = AppConfig::from_yaml("c.yaml", "", env)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(
                "environment variable TICKFLOW_KAFKA__BOOTSTRAP: kafka.bootstrap: unknown field"
            ),
            "{msg}"
        );
    }
}
