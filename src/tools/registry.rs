//! A Confluent-API-compatible schema registry (the subset clients use): subjects and versions,
//! schemas by id, lookup by schema, latest version, global and per-subject compatibility, and
//! compatibility checks by Avro schema resolution. Kept in memory; runs embedded (demo, tests) or
//! as `gzac-portal-bridge registry`. The bridge itself only talks to it over HTTP, through the same
//! client code it uses for a production registry.

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Compatibility levels as Confluent names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

struct Stored {
    /// The schema text as registered (compact JSON).
    text: String,
    parsed: Schema,
}

#[derive(Default)]
struct Store {
    /// Schema id n is `schemas[n - 1]`; ids are shared across subjects for identical schemas.
    schemas: Vec<Stored>,
    /// Subject → schema ids, version n at index n - 1.
    subjects: BTreeMap<String, Vec<u32>>,
    global: Option<Level>,
    per_subject: HashMap<String, Level>,
}

/// The registry's state; clone it to share, or to restart a server on the same state.
#[derive(Clone, Default)]
pub struct Registry {
    store: Arc<Mutex<Store>>,
    /// When not empty, every request needs HTTP basic auth of one of these users.
    users: Arc<Vec<User>>,
}

/// A registry user (tests: a writer that registers, a reader that may only look up).
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: String,
    pub may_write: bool,
}

/// Requests a read-only user may make: GETs, and the POSTs that only look up (a schema under a
/// subject, a compatibility check).
fn reads_only(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::GET
        || (method == axum::http::Method::POST && (path.starts_with("/compatibility/") || !path.ends_with("/versions")))
}

async fn authorise(State(r): State<Registry>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use base64::Engine;
    if r.users.is_empty() {
        return next.run(req).await;
    }
    let given =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let user = given.and_then(|b64| {
        let plain = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let plain = String::from_utf8(plain).ok()?;
        r.users.iter().find(|u| plain == format!("{}:{}", u.name, u.password)).cloned()
    });
    match user {
        None => ApiError(StatusCode::UNAUTHORIZED, 40101, "Unauthorized".into()).into_response(),
        Some(u) if !u.may_write && !reads_only(req.method(), req.uri().path()) => {
            ApiError(StatusCode::FORBIDDEN, 40301, format!("User {} may not write", u.name)).into_response()
        }
        Some(_) => next.run(req).await,
    }
}

/// A Confluent-style error: HTTP status plus `error_code` and `message`.
#[derive(Debug)]
pub struct ApiError(StatusCode, u32, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.1, "message": self.2});
        (self.0, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
    }
}

fn subject_not_found(s: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, 40401, format!("Subject '{s}' not found."))
}
fn version_not_found(v: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, 40402, format!("Version {v} not found."))
}
fn schema_not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, 40403, "Schema not found".into())
}
fn invalid_schema(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("Invalid schema: {e}"))
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], v.to_string()).into_response()
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: Level,
}

/// Parse and normalise a schema: only Avro is supported.
fn parse(body: &SchemaBody) -> Result<(String, Schema), ApiError> {
    if let Some(t) = &body.schema_type {
        if t != "AVRO" {
            return Err(invalid_schema(format!("schemaType {t} is not supported, only AVRO")));
        }
    }
    let json: Value = serde_json::from_str(&body.schema).map_err(invalid_schema)?;
    let parsed = Schema::parse(&json).map_err(invalid_schema)?;
    Ok((json.to_string(), parsed))
}

/// True when data written with `writer` can be read with `reader`, for every value.
fn can_read(writer: &Schema, reader: &Schema) -> bool {
    matches!(SchemaCompatibility::can_read(writer, reader), Ok(Compatibility::Full))
}

impl Store {
    fn level(&self, subject: &str) -> Level {
        self.per_subject.get(subject).copied().or(self.global).unwrap_or(Level::Backward)
    }

    /// Is `new` compatible with the subject's existing versions under its level?
    fn compatible(&self, subject: &str, new: &Schema, against: &[u32]) -> bool {
        let level = self.level(subject);
        let previous: Vec<&Schema> = match level {
            Level::None => return true,
            Level::Backward | Level::Forward | Level::Full => {
                against.last().map(|id| vec![&self.schemas[*id as usize - 1].parsed]).unwrap_or_default()
            }
            _ => against.iter().map(|id| &self.schemas[*id as usize - 1].parsed).collect(),
        };
        previous.into_iter().all(|old| match level {
            Level::Backward | Level::BackwardTransitive => can_read(old, new),
            Level::Forward | Level::ForwardTransitive => can_read(new, old),
            _ => can_read(old, new) && can_read(new, old),
        })
    }

    fn id_of(&self, text: &str) -> Option<u32> {
        self.schemas.iter().position(|s| s.text == text).map(|i| i as u32 + 1)
    }

    fn version_index(&self, subject: &str, version: &str) -> Result<usize, ApiError> {
        let versions = self.subjects.get(subject).ok_or_else(|| subject_not_found(subject))?;
        if version == "latest" || version == "-1" {
            return Ok(versions.len() - 1);
        }
        let v: usize = version.parse().map_err(|_| {
            ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                42202,
                format!("The specified version '{version}' is not a valid version id."),
            )
        })?;
        if v == 0 || v > versions.len() {
            return Err(version_not_found(version));
        }
        Ok(v - 1)
    }

    fn version_json(&self, subject: &str, idx: usize) -> Value {
        let id = self.subjects[subject][idx];
        json!({"subject": subject, "version": idx + 1, "id": id, "schema": self.schemas[id as usize - 1].text})
    }
}

type St = State<Registry>;

/// A running registry server.
pub struct Server {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    /// Stop accepting and close every connection (idle keep-alive ones too).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Serve until the task ends (it does not on its own).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that requires HTTP basic auth of one of `users`.
    pub fn with_users(users: Vec<User>) -> Self {
        Registry { users: Arc::new(users), ..Self::default() }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(|| async { ok(json!({})) }))
            .route("/subjects", get(list_subjects))
            .route("/subjects/{subject}", post(lookup))
            .route("/subjects/{subject}/versions", get(list_versions).post(register))
            .route("/subjects/{subject}/versions/{version}", get(get_version))
            .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
            .route("/schemas/ids/{id}", get(schema_by_id))
            .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
            .route("/config", get(get_global_config).put(put_global_config))
            .route("/config/{subject}", get(get_subject_config).put(put_subject_config))
            .route("/compatibility/subjects/{subject}/versions/{version}", post(check_compat))
            .layer(axum::middleware::from_fn_with_state(self.clone(), authorise))
            .with_state(self.clone())
    }

    /// Serve on `addr` (port 0 picks a free port) until the returned server is stopped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "schema registry server stopped");
            }
        });
        Ok(Server { addr, stop, task })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn list_subjects(State(r): St) -> Response {
    ok(json!(r.lock().subjects.keys().collect::<Vec<_>>()))
}

async fn list_versions(State(r): St, Path(subject): Path<String>) -> Result<Response, ApiError> {
    let s = r.lock();
    let n = s.subjects.get(&subject).ok_or_else(|| subject_not_found(&subject))?.len();
    Ok(ok(json!((1..=n).collect::<Vec<_>>())))
}

async fn register(
    State(r): St,
    Path(subject): Path<String>,
    Json(body): Json<SchemaBody>,
) -> Result<Response, ApiError> {
    let (text, parsed) = parse(&body)?;
    let mut s = r.lock();
    let versions = s.subjects.get(&subject).cloned().unwrap_or_default();
    if let Some(id) = s.id_of(&text) {
        if versions.contains(&id) {
            return Ok(ok(json!({"id": id})));
        }
    }
    if !s.compatible(&subject, &parsed, &versions) {
        let level = s.level(&subject);
        return Err(ApiError(
            StatusCode::CONFLICT,
            409,
            format!("Schema being registered is incompatible with an earlier schema for subject \"{subject}\" (compatibility {level:?})"),
        ));
    }
    let id = match s.id_of(&text) {
        Some(id) => id,
        None => {
            s.schemas.push(Stored { text, parsed });
            s.schemas.len() as u32
        }
    };
    s.subjects.entry(subject).or_default().push(id);
    Ok(ok(json!({"id": id})))
}

async fn lookup(State(r): St, Path(subject): Path<String>, Json(body): Json<SchemaBody>) -> Result<Response, ApiError> {
    let (text, _) = parse(&body)?;
    let s = r.lock();
    let versions = s.subjects.get(&subject).ok_or_else(|| subject_not_found(&subject))?;
    let id = s.id_of(&text).ok_or_else(schema_not_found)?;
    let idx = versions.iter().position(|v| *v == id).ok_or_else(schema_not_found)?;
    Ok(ok(s.version_json(&subject, idx)))
}

async fn get_version(State(r): St, Path((subject, version)): Path<(String, String)>) -> Result<Response, ApiError> {
    let s = r.lock();
    let idx = s.version_index(&subject, &version)?;
    Ok(ok(s.version_json(&subject, idx)))
}

async fn get_version_schema(
    State(r): St,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let s = r.lock();
    let idx = s.version_index(&subject, &version)?;
    let id = s.subjects[&subject][idx];
    Ok(ok(serde_json::from_str(&s.schemas[id as usize - 1].text).unwrap_or(Value::Null)))
}

fn stored(s: &Store, id: u32) -> Result<&Stored, ApiError> {
    s.schemas.get((id as usize).wrapping_sub(1)).ok_or_else(schema_not_found)
}

async fn schema_by_id(
    State(r): St,
    Path(id): Path<u32>,
    Query(_q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let s = r.lock();
    Ok(ok(json!({"schema": stored(&s, id)?.text})))
}

async fn raw_schema_by_id(State(r): St, Path(id): Path<u32>) -> Result<Response, ApiError> {
    let s = r.lock();
    Ok(ok(serde_json::from_str(&stored(&s, id)?.text).unwrap_or(Value::Null)))
}

async fn get_global_config(State(r): St) -> Response {
    let level = r.lock().global.unwrap_or(Level::Backward);
    ok(json!({"compatibilityLevel": level}))
}

async fn put_global_config(State(r): St, Json(body): Json<ConfigBody>) -> Response {
    r.lock().global = Some(body.compatibility);
    ok(json!({"compatibility": body.compatibility}))
}

async fn get_subject_config(State(r): St, Path(subject): Path<String>) -> Result<Response, ApiError> {
    let s = r.lock();
    let level = s.per_subject.get(&subject).ok_or_else(|| subject_not_found(&subject))?;
    Ok(ok(json!({"compatibilityLevel": level})))
}

async fn put_subject_config(State(r): St, Path(subject): Path<String>, Json(body): Json<ConfigBody>) -> Response {
    r.lock().per_subject.insert(subject, body.compatibility);
    ok(json!({"compatibility": body.compatibility}))
}

async fn check_compat(
    State(r): St,
    Path((subject, version)): Path<(String, String)>,
    Json(body): Json<SchemaBody>,
) -> Result<Response, ApiError> {
    let (_, parsed) = parse(&body)?;
    let s = r.lock();
    let against = match s.subjects.get(&subject) {
        None => return Ok(ok(json!({"is_compatible": true}))),
        Some(v) => {
            let idx = s.version_index(&subject, &version)?;
            v[..=idx].to_vec()
        }
    };
    Ok(ok(json!({"is_compatible": s.compatible(&subject, &parsed, &against)})))
}
