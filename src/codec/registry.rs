//! The built-in schema registry: the part of the Confluent Schema Registry REST API that
//! Confluent clients use, for Avro schemas, persisted in one JSON file so that schema ids survive
//! a restart. Against a real deployment, point tickflow at Confluent, Karapace, Redpanda or
//! Apicurio instead.
//!
//! Served: `GET /subjects`, `GET|POST /subjects/{s}/versions`, `POST /subjects/{s}` (lookup),
//! `GET /subjects/{s}/versions/{v}[/schema]`, `DELETE /subjects/{s}[/versions/{v}]` (soft),
//! `GET /schemas/ids/{id}[/versions]`, `GET /schemas/types`,
//! `POST /compatibility/subjects/{s}/versions[/{v}]`, `GET|PUT /config`,
//! `GET|PUT|DELETE /config/{s}`. Errors carry Confluent's `error_code` values (40401 subject
//! not found, 40402 version not found, 40403 schema not found, 40408 no subject config,
//! 409 incompatible, 42201 invalid schema, 42202 invalid version, 42203 invalid
//! compatibility level).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const STATE_FILE: &str = "registry.json";

/// Errors opening or persisting the registry's state.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The state directory or file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The state file is not what the registry wrote.
    #[error("{path}: corrupt registry state: {message}")]
    Corrupt { path: String, message: String },
}

impl crate::error::Classified for RegistryError {
    fn class(&self) -> crate::error::ErrorClass {
        // The built-in registry's storage.
        crate::error::ErrorClass::External
    }
}

/// Compatibility levels, as Confluent names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// No check.
    None,
    /// The new schema can read data written with the latest version.
    Backward,
    /// The new schema can read data written with every version.
    BackwardTransitive,
    /// The latest version can read data written with the new schema.
    Forward,
    /// Every version can read data written with the new schema.
    ForwardTransitive,
    /// Backward and forward with the latest version.
    Full,
    /// Backward and forward with every version.
    FullTransitive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSchema {
    id: u32,
    schema: String,
    canonical: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SubjectVersion {
    version: u32,
    id: u32,
    deleted: bool,
}

/// Everything the registry knows; persisted as one JSON document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RegistryState {
    next_id: u32,
    schemas: Vec<StoredSchema>,
    subjects: BTreeMap<String, Vec<SubjectVersion>>,
    global_level: Level,
    subject_levels: BTreeMap<String, Level>,
}

impl Default for RegistryState {
    fn default() -> Self {
        Self {
            next_id: 1,
            schemas: Vec::new(),
            subjects: BTreeMap::new(),
            global_level: Level::Backward,
            subject_levels: BTreeMap::new(),
        }
    }
}

/// An HTTP error in Confluent's shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn subject_not_found(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        )
    }
    fn version_not_found(version: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40402,
            format!("Version {version} not found."),
        )
    }
    fn schema_not_found(detail: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema {detail}not found"),
        )
    }
    fn invalid_schema(message: String) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, message)
    }
    fn store(e: RegistryError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            format!("Error in the backend data store: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.code, "message": self.message});
        (
            self.status,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            body.to_string(),
        )
            .into_response()
    }
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

type ApiResult = Result<Response, ApiError>;

/// The registry: state in memory, written through to `<dir>/registry.json`.
pub struct SchemaRegistry {
    path: PathBuf,
    state: Mutex<RegistryState>,
}

impl SchemaRegistry {
    /// Opens (or creates) the registry persisted under `dir`.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| RegistryError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistryState::default(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Self {
            path,
            state: Mutex::new(state),
        })
    }

    /// The HTTP API over this registry.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/", get(|| async { ok(json!({})) }))
            .route("/subjects", get(list_subjects))
            .route("/subjects/{subject}", post(lookup).delete(delete_subject))
            .route(
                "/subjects/{subject}/versions",
                get(list_versions).post(register),
            )
            .route(
                "/subjects/{subject}/versions/{version}",
                get(get_version).delete(delete_version),
            )
            .route(
                "/subjects/{subject}/versions/{version}/schema",
                get(get_version_schema),
            )
            .route("/schemas/ids/{id}", get(get_by_id))
            .route("/schemas/ids/{id}/versions", get(versions_of_id))
            .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
            .route(
                "/compatibility/subjects/{subject}/versions",
                post(check_all),
            )
            .route(
                "/compatibility/subjects/{subject}/versions/{version}",
                post(check_version),
            )
            .route("/config", get(get_global_config).put(put_global_config))
            .route(
                "/config/{subject}",
                get(get_subject_config)
                    .put(put_subject_config)
                    .delete(delete_subject_config),
            )
            .with_state(self)
    }

    /// Serves the API on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    fn with_state<R>(&self, f: impl FnOnce(&RegistryState) -> R) -> R {
        f(&self.state.lock().expect("registry lock"))
    }

    /// Runs a mutation and persists the result before answering; on a write failure the
    /// in-memory state is left unchanged.
    fn mutate<R>(
        &self,
        f: impl FnOnce(&mut RegistryState) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let mut guard = self.state.lock().expect("registry lock");
        let mut next = guard.clone();
        let out = f(&mut next)?;
        self.persist(&next).map_err(ApiError::store)?;
        *guard = next;
        Ok(out)
    }

    fn persist(&self, state: &RegistryState) -> Result<(), RegistryError> {
        let io = |source| RegistryError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(state).expect("state serializes"))
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

type Shared = State<Arc<SchemaRegistry>>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            422,
            format!("Unrecognized request body: {e}"),
        )
    })
}

/// Parses and checks a submitted schema: Avro only, no references.
fn parse_schema(body: &Bytes) -> Result<(String, Schema), ApiError> {
    let b: SchemaBody = parse_body(body)?;
    if let Some(t) = b.schema_type.as_deref().filter(|t| *t != "AVRO") {
        return Err(ApiError::invalid_schema(format!(
            "Invalid schema: schema type {t} is not supported by this registry (AVRO only)"
        )));
    }
    if !b.references.is_empty() {
        return Err(ApiError::invalid_schema(
            "Invalid schema: schema references are not supported by this registry".into(),
        ));
    }
    let schema = Schema::parse_str(&b.schema)
        .map_err(|e| ApiError::invalid_schema(format!("Invalid schema {}: {e}", b.schema)))?;
    Ok((b.schema, schema))
}

impl RegistryState {
    fn live(&self, subject: &str) -> Result<Vec<&SubjectVersion>, ApiError> {
        let versions: Vec<&SubjectVersion> = self
            .subjects
            .get(subject)
            .map(|vs| vs.iter().filter(|v| !v.deleted).collect())
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(ApiError::subject_not_found(subject));
        }
        Ok(versions)
    }

    fn schema(&self, id: u32) -> Option<&StoredSchema> {
        self.schemas.iter().find(|s| s.id == id)
    }

    fn version(&self, subject: &str, version: &str) -> Result<&SubjectVersion, ApiError> {
        let live = self.live(subject)?;
        if version == "latest" || version == "-1" {
            return Ok(live.last().expect("non-empty"));
        }
        let n: u32 = version.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                42202,
                format!("The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""),
            )
        })?;
        live.into_iter()
            .find(|v| v.version == n)
            .ok_or_else(|| ApiError::version_not_found(version))
    }

    fn level(&self, subject: &str) -> Level {
        self.subject_levels
            .get(subject)
            .copied()
            .unwrap_or(self.global_level)
    }

    fn version_body(&self, subject: &str, v: &SubjectVersion) -> Value {
        let schema = &self
            .schema(v.id)
            .expect("version points at a schema")
            .schema;
        json!({"subject": subject, "version": v.version, "id": v.id, "schema": schema})
    }

    /// Incompatibility messages of `candidate` against the versions `level` compares with.
    fn incompatibilities(
        &self,
        subject: &str,
        candidate: &Schema,
        against: &[&SubjectVersion],
        level: Level,
    ) -> Vec<String> {
        let (backward, forward, transitive) = match level {
            Level::None => return Vec::new(),
            Level::Backward => (true, false, false),
            Level::BackwardTransitive => (true, false, true),
            Level::Forward => (false, true, false),
            Level::ForwardTransitive => (false, true, true),
            Level::Full => (true, true, false),
            Level::FullTransitive => (true, true, true),
        };
        let chosen: Vec<&&SubjectVersion> = if transitive {
            against.iter().collect()
        } else {
            against.last().into_iter().collect()
        };
        let mut out = Vec::new();
        for v in chosen {
            let text = &self.schema(v.id).expect("stored").schema;
            let existing = Schema::parse_str(text).expect("stored schemas parse");
            if backward && let Some(m) = cannot_read(&existing, candidate) {
                out.push(format!(
                    "{subject} version {}: new schema cannot read it: {m}",
                    v.version
                ));
            }
            if forward && let Some(m) = cannot_read(candidate, &existing) {
                out.push(format!(
                    "{subject} version {}: it cannot read the new schema: {m}",
                    v.version
                ));
            }
        }
        out
    }
}

/// Why `reader` cannot read data written with `writer`, if it cannot.
fn cannot_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(other) => Some(format!("only {other:?} compatibility")),
        Err(e) => Some(e.to_string()),
    }
}

async fn list_subjects(State(r): Shared) -> ApiResult {
    let names: Vec<String> = r.with_state(|s| {
        s.subjects
            .iter()
            .filter(|(_, vs)| vs.iter().any(|v| !v.deleted))
            .map(|(k, _)| k.clone())
            .collect()
    });
    Ok(ok(json!(names)))
}

async fn list_versions(State(r): Shared, UrlPath(subject): UrlPath<String>) -> ApiResult {
    r.with_state(|s| {
        let versions: Vec<u32> = s.live(&subject)?.iter().map(|v| v.version).collect();
        Ok(ok(json!(versions)))
    })
}

async fn register(State(r): Shared, UrlPath(subject): UrlPath<String>, body: Bytes) -> ApiResult {
    let (text, schema) = parse_schema(&body)?;
    let canonical = schema.canonical_form();
    let id = r.mutate(|s| {
        let existing: Vec<SubjectVersion> = s.live(&subject).map(|vs| vs.into_iter().cloned().collect()).unwrap_or_default();
        if let Some(v) = existing.iter().find(|v| s.schema(v.id).is_some_and(|st| st.canonical == canonical)) {
            return Ok(v.id);
        }
        let refs: Vec<&SubjectVersion> = existing.iter().collect();
        let problems = s.incompatibilities(&subject, &schema, &refs, s.level(&subject));
        if !problems.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                409,
                format!(
                    "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                    problems.join("; ")
                ),
            ));
        }
        let id = match s.schemas.iter().find(|st| st.canonical == canonical) {
            Some(st) => st.id,
            None => {
                let id = s.next_id;
                s.next_id += 1;
                s.schemas.push(StoredSchema { id, schema: text, canonical });
                id
            }
        };
        let versions = s.subjects.entry(subject.clone()).or_default();
        let version = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        versions.push(SubjectVersion { version, id, deleted: false });
        Ok(id)
    })?;
    Ok(ok(json!({"id": id})))
}

async fn lookup(State(r): Shared, UrlPath(subject): UrlPath<String>, body: Bytes) -> ApiResult {
    let (_, schema) = parse_schema(&body)?;
    let canonical = schema.canonical_form();
    r.with_state(|s| {
        let live = s.live(&subject)?;
        let v = live
            .iter()
            .find(|v| s.schema(v.id).is_some_and(|st| st.canonical == canonical))
            .ok_or_else(|| ApiError::schema_not_found(""))?;
        Ok(ok(s.version_body(&subject, v)))
    })
}

async fn get_version(
    State(r): Shared,
    UrlPath((subject, version)): UrlPath<(String, String)>,
) -> ApiResult {
    r.with_state(|s| Ok(ok(s.version_body(&subject, s.version(&subject, &version)?))))
}

async fn get_version_schema(
    State(r): Shared,
    UrlPath((subject, version)): UrlPath<(String, String)>,
) -> ApiResult {
    r.with_state(|s| {
        let v = s.version(&subject, &version)?;
        let text = &s.schema(v.id).expect("stored").schema;
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            text.clone(),
        )
            .into_response())
    })
}

async fn delete_subject(State(r): Shared, UrlPath(subject): UrlPath<String>) -> ApiResult {
    let deleted = r.mutate(|s| {
        s.live(&subject)?;
        let vs = s.subjects.get_mut(&subject).expect("live subject");
        let mut out = Vec::new();
        for v in vs.iter_mut().filter(|v| !v.deleted) {
            v.deleted = true;
            out.push(v.version);
        }
        Ok(out)
    })?;
    Ok(ok(json!(deleted)))
}

async fn delete_version(
    State(r): Shared,
    UrlPath((subject, version)): UrlPath<(String, String)>,
) -> ApiResult {
    let n = r.mutate(|s| {
        let n = s.version(&subject, &version)?.version;
        let vs = s.subjects.get_mut(&subject).expect("live subject");
        vs.iter_mut()
            .filter(|v| v.version == n)
            .for_each(|v| v.deleted = true);
        Ok(n)
    })?;
    Ok(ok(json!(n)))
}

fn parse_id(id: &str) -> Result<u32, ApiError> {
    id.parse()
        .map_err(|_| ApiError::schema_not_found(&format!("{id} ")))
}

async fn get_by_id(State(r): Shared, UrlPath(id): UrlPath<String>) -> ApiResult {
    let n = parse_id(&id)?;
    r.with_state(|s| {
        let st = s
            .schema(n)
            .ok_or_else(|| ApiError::schema_not_found(&format!("{n} ")))?;
        Ok(ok(json!({"schema": st.schema})))
    })
}

async fn versions_of_id(State(r): Shared, UrlPath(id): UrlPath<String>) -> ApiResult {
    let n = parse_id(&id)?;
    r.with_state(|s| {
        s.schema(n)
            .ok_or_else(|| ApiError::schema_not_found(&format!("{n} ")))?;
        let uses: Vec<Value> = s
            .subjects
            .iter()
            .flat_map(|(subject, vs)| {
                vs.iter()
                    .filter(|v| v.id == n && !v.deleted)
                    .map(move |v| json!({"subject": subject, "version": v.version}))
            })
            .collect();
        Ok(ok(json!(uses)))
    })
}

#[derive(Deserialize)]
struct VerboseQuery {
    #[serde(default)]
    verbose: bool,
}

fn compat_answer(problems: Vec<String>, verbose: bool) -> Response {
    if verbose {
        ok(json!({"is_compatible": problems.is_empty(), "messages": problems}))
    } else {
        ok(json!({"is_compatible": problems.is_empty()}))
    }
}

async fn check_version(
    State(r): Shared,
    UrlPath((subject, version)): UrlPath<(String, String)>,
    Query(q): Query<VerboseQuery>,
    body: Bytes,
) -> ApiResult {
    let (_, schema) = parse_schema(&body)?;
    r.with_state(|s| {
        let v = s.version(&subject, &version)?;
        let level = match s.level(&subject) {
            Level::BackwardTransitive => Level::Backward,
            Level::ForwardTransitive => Level::Forward,
            Level::FullTransitive => Level::Full,
            other => other,
        };
        Ok(compat_answer(
            s.incompatibilities(&subject, &schema, &[v], level),
            q.verbose,
        ))
    })
}

async fn check_all(
    State(r): Shared,
    UrlPath(subject): UrlPath<String>,
    Query(q): Query<VerboseQuery>,
    body: Bytes,
) -> ApiResult {
    let (_, schema) = parse_schema(&body)?;
    r.with_state(|s| {
        let live = s.live(&subject).unwrap_or_default();
        let problems = s.incompatibilities(&subject, &schema, &live, s.level(&subject));
        Ok(compat_answer(problems, q.verbose))
    })
}

#[derive(Deserialize)]
struct LevelBody {
    compatibility: String,
}

fn parse_level(body: &Bytes) -> Result<Level, ApiError> {
    let b: LevelBody = parse_body(body)?;
    serde_json::from_value(Value::String(b.compatibility.clone())).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            format!("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive (got {})", b.compatibility),
        )
    })
}

async fn get_global_config(State(r): Shared) -> ApiResult {
    Ok(ok(
        json!({"compatibilityLevel": r.with_state(|s| s.global_level)}),
    ))
}

async fn put_global_config(State(r): Shared, body: Bytes) -> ApiResult {
    let level = parse_level(&body)?;
    r.mutate(|s| {
        s.global_level = level;
        Ok(())
    })?;
    Ok(ok(json!({"compatibility": level})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigQuery {
    #[serde(default)]
    default_to_global: bool,
}

async fn get_subject_config(
    State(r): Shared,
    UrlPath(subject): UrlPath<String>,
    Query(q): Query<ConfigQuery>,
) -> ApiResult {
    r.with_state(|s| match s.subject_levels.get(&subject) {
        Some(level) => Ok(ok(json!({"compatibilityLevel": level}))),
        None if q.default_to_global => Ok(ok(json!({"compatibilityLevel": s.global_level}))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )),
    })
}

async fn put_subject_config(
    State(r): Shared,
    UrlPath(subject): UrlPath<String>,
    body: Bytes,
) -> ApiResult {
    let level = parse_level(&body)?;
    r.mutate(|s| {
        s.subject_levels.insert(subject, level);
        Ok(())
    })?;
    Ok(ok(json!({"compatibility": level})))
}

async fn delete_subject_config(State(r): Shared, UrlPath(subject): UrlPath<String>) -> ApiResult {
    let previous = r.mutate(|s| Ok(s.subject_levels.remove(&subject)))?;
    match previous {
        Some(level) => Ok(ok(json!({"compatibilityLevel": level}))),
        None => Err(ApiError::subject_not_found(&subject)),
    }
}
