//! The HTTP face of the API, shared by the local binary and the API Lambda: `POST /graphql`,
//! `GET /graphql` (queries only), GraphiQL at `/`. A client's mistake is a 4xx with `errors`.
//!
//! As GraphQL over HTTP asks: POST bodies are `application/json` (or a bare document as
//! `application/graphql`), anything else is 415; a client that accepts
//! `application/graphql-response+json` gets it; other methods are 405 with `Allow`. Requests pass,
//! from the outside in: CORS (a preflight is answered here), the token check ([`auth`]), the
//! body limit, the handler.

pub mod auth;

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::{ApiToken, Auth, TokenError, TokenSource};

use crate::engine::Deps;
use crate::graphql::{AppSchema, ErrorType, add_error_types, check_text, schema};

pub const GRAPHQL_PATH: &str = "/graphql";
/// Largest request body taken; a larger one is refused with 413 before it is parsed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a browser may cache a preflight answer.
pub const CORS_MAX_AGE: Duration = Duration::from_secs(600);
/// The response type of GraphQL over HTTP, sent to clients that ask for it.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// Which web origins browsers may call the API from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// None: no CORS headers, so browsers allow only same-origin calls.
    #[default]
    None,
    /// Any origin (`*`). Tokens travel in headers, not cookies, so this exposes nothing by
    /// itself; it only lets any page that holds a token call the API.
    Any,
    /// Exactly these origins (`https://cms.example.com`).
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// A comma-separated list of origins (`scheme://host[:port]`), `*`, or nothing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(CorsOrigins::None);
        }
        if items == ["*"] {
            return Ok(CorsOrigins::Any);
        }
        let mut origins = Vec::with_capacity(items.len());
        for item in items {
            let rest = item
                .strip_prefix("https://")
                .or_else(|| item.strip_prefix("http://"))
                .ok_or_else(|| {
                    format!("`{item}` is not an origin: it must start with https:// or http://")
                })?;
            if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) || !rest.is_ascii() {
                return Err(format!(
                    "`{item}` is not an origin: scheme://host[:port], no path, no wildcard (or `*` alone)"
                ));
            }
            origins.push(HeaderValue::from_str(item).map_err(|e| format!("`{item}`: {e}"))?);
        }
        Ok(CorsOrigins::List(origins))
    }

    fn layer(&self) -> Option<CorsLayer> {
        let allow_origin = match self {
            CorsOrigins::None => return None,
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow_origin)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::ACCEPT,
                    HeaderName::from_static(auth::API_KEY_HEADER),
                ])
                .max_age(CORS_MAX_AGE),
        )
    }
}

/// How the API meets its callers: who may call, from which web origins, and whether the schema
/// answers introspection.
#[derive(Clone)]
pub struct ApiSettings {
    pub auth: Auth,
    pub cors: CorsOrigins,
    pub introspection: bool,
}

impl ApiSettings {
    /// No token asked, no CORS, introspection on: `skylark-local` on loopback without a token.
    pub fn open() -> Self {
        ApiSettings {
            auth: Auth::Off,
            cors: CorsOrigins::None,
            introspection: true,
        }
    }

    /// Requests must present `token`; no CORS; introspection on.
    pub fn with_token(token: ApiToken) -> Self {
        ApiSettings {
            auth: Auth::token(token),
            cors: CorsOrigins::None,
            introspection: true,
        }
    }
}

/// The API on `deps`: the GraphQL schema behind the HTTP layers `settings` ask for.
pub fn router(deps: Deps, settings: &ApiSettings) -> Router {
    let service = std::sync::Arc::new(crate::service::Service::new(deps));
    let graphql = get(graphql_get).post(graphql_post);
    let router = Router::new()
        .route(GRAPHQL_PATH, graphql.clone())
        // API Gateway REST (v1) and named HTTP API stages put the stage in front: `/prod/graphql`.
        .route("/{stage}/graphql", graphql)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(axum::middleware::from_fn_with_state(
            settings.auth.clone(),
            auth::require_token,
        ))
        .route("/", get(graphiql).fallback(graphiql_method_not_allowed))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(schema(service, settings.introspection));
    match settings.cors.layer() {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint(GRAPHQL_PATH).finish())
}

fn json(status: StatusCode, body: &Value) -> Response {
    json_text(status, body.to_string())
}

fn json_text(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn refuse(status: StatusCode, message: &str) -> Response {
    json(status, &ErrorType::ValidationError.body(message))
}

async fn method_not_allowed() -> Response {
    let mut response = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "send GraphQL requests with POST (or GET for queries)",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    response
}

async fn graphiql_method_not_allowed() -> Response {
    let mut response = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("`/` is the GraphiQL page (GET); send GraphQL requests to {GRAPHQL_PATH}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

async fn not_found() -> Response {
    json(
        StatusCode::NOT_FOUND,
        &ErrorType::NotFound.body(&format!("nothing here; the API is at {GRAPHQL_PATH}")),
    )
}

/// Whether the client lists `application/graphql-response+json` among the types it accepts.
fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(GRAPHQL_RESPONSE_JSON))
        })
}

async fn execute(
    schema: &AppSchema,
    headers: &HeaderMap,
    request: async_graphql::Request,
) -> Response {
    let response = schema.execute(request).await;
    // Errors without a path were raised before execution (parse, validation, limits): the
    // request itself was wrong, so 400. Errors from resolvers come with data: 200.
    let mut status = if response.errors.iter().any(|e| e.path.is_empty()) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut body = serde_json::to_value(&response).unwrap_or(Value::Null);
    add_error_types(&mut body);
    bound_errors(&mut body);
    let mut text = body.to_string();
    let bytes = escaped_len(&text);
    if bytes > MAX_RESPONSE_BYTES {
        tracing::info!(bytes, "response refused: too large for API Gateway");
        status = StatusCode::BAD_REQUEST;
        text = ErrorType::ValidationError
            .body(&format!(
                "the answer would be {bytes} bytes as Lambda returns it, more than API Gateway \
                 can return ({MAX_RESPONSE_BYTES}); ask for fewer objects (`limit`) or fewer \
                 fields"
            ))
            .to_string();
    }
    let mut response = json_text(status, text);
    if wants_graphql_response(headers) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(GRAPHQL_RESPONSE_JSON),
        );
    }
    response
}

/// Errors shown in one response; the rest are summed up in one more. Every field of a request
/// within [`crate::graphql::MAX_ALIASES`] can still report its own.
pub const MAX_ERRORS: usize = 100;
/// Longest error message shown, in bytes; a longer one (one that quotes a long input) is cut.
pub const MAX_ERROR_MESSAGE: usize = 1024;
/// Largest answer sent. A Lambda's synchronous response is at most 6 MB (6,291,456 bytes), the
/// body included as a JSON string, so quotes and backslashes count twice; what is over is a
/// 400 that says to ask for less, where API Gateway would otherwise answer 502.
pub const MAX_RESPONSE_BYTES: usize = 6_000_000;

/// The length of `text` once embedded as a JSON string (it is already JSON, so it holds no raw
/// control characters; only `"` and `\` grow).
fn escaped_len(text: &str) -> usize {
    text.len() + text.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
}

/// Caps a response's errors at [`MAX_ERRORS`] and each message at [`MAX_ERROR_MESSAGE`], so no
/// document of repeated mistakes (100,000 duplicate variables, a long id echoed by ten aliases)
/// makes a response larger than its request.
fn bound_errors(body: &mut Value) {
    let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) else {
        return;
    };
    if errors.len() > MAX_ERRORS {
        let left_out = errors.len() - MAX_ERRORS;
        let error_type = errors[MAX_ERRORS]["errorType"].clone();
        errors.truncate(MAX_ERRORS);
        errors.push(serde_json::json!({
            "message": format!("{left_out} more errors were left out"),
            "errorType": error_type,
            "extensions": { "code": error_type },
        }));
    }
    for error in errors {
        if let Some(Value::String(message)) = error.get_mut("message")
            && message.len() > MAX_ERROR_MESSAGE
        {
            let mut end = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            let total = message.len();
            message.truncate(end);
            message.push_str(&format!("… ({total} bytes in all)"));
        }
    }
}

/// How a POST body is to be read, from its `Content-Type` (and `Content-Encoding`).
enum BodyKind {
    /// `{"query": …, "variables": …, "operationName": …}`
    Json,
    /// The document itself.
    Document,
}

/// The body's kind, or why it is not accepted (a 415).
fn body_kind(headers: &HeaderMap) -> Result<BodyKind, String> {
    // Every coding of every Content-Encoding header (`gzip, identity` is gzip).
    for encoding in headers.get_all(header::CONTENT_ENCODING) {
        if !encoding
            .as_bytes()
            .split(|b| *b == b',')
            .all(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"identity"))
        {
            return Err(format!(
                "Content-Encoding {encoding:?} is not accepted: send the body uncompressed"
            ));
        }
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = types.next() else {
        return Err(
            "the request has no Content-Type: send `Content-Type: application/json`".to_owned(),
        );
    };
    if types.next().is_some() {
        return Err(
            "the request has more than one Content-Type: send one, `application/json`".to_owned(),
        );
    }
    let text = value.to_str().unwrap_or_default().to_ascii_lowercase();
    let mut parts = text.split(';').map(str::trim);
    let kind = match parts.next().unwrap_or_default() {
        "application/json" => BodyKind::Json,
        "application/graphql" => BodyKind::Document,
        _ => {
            return Err(format!(
                "Content-Type {value:?} is not accepted: send `Content-Type: application/json`"
            ));
        }
    };
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        let charset = value.trim().trim_matches('"');
        if name.trim() == "charset" && charset != "utf-8" {
            return Err(format!(
                "charset {charset} is not accepted: send UTF-8 (or no charset)"
            ));
        }
    }
    Ok(kind)
}

async fn graphql_post(
    State(schema): State<AppSchema>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let kind = match body_kind(&headers) {
        Ok(kind) => kind,
        Err(message) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return refuse(
                rejection.status(),
                &format!(
                    "the request body could not be read ({rejection}); at most {MAX_BODY_BYTES} bytes are taken"
                ),
            );
        }
    };
    let text = body.trim_ascii();
    if text.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request body is empty; send JSON such as {\"query\": \"{ ... }\"}",
        );
    }
    let request = match kind {
        BodyKind::Document => match std::str::from_utf8(text) {
            Ok(document) => async_graphql::Request::new(document),
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!("the document is not UTF-8: {e}"),
                );
            }
        },
        BodyKind::Json => {
            if text.first() == Some(&b'[') {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "batched requests (a JSON array) are not supported; send one request per POST",
                );
            }
            match serde_json::from_slice::<async_graphql::Request>(text) {
                Ok(request) => request,
                Err(e) => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        &format!("the body is not a GraphQL request: {e}"),
                    );
                }
            }
        }
    };
    if request.query.trim().is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request has no `query`; send JSON such as {\"query\": \"{ ... }\"}",
        );
    }
    execute(&schema, &headers, request).await
}

/// GET carries `query`, `variables` (JSON) and `operationName` in the URL; it may only read.
async fn graphql_get(
    State(schema): State<AppSchema>,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the query string could not be read: send `query`, `variables` and `operationName` URL-encoded",
        );
    };
    let Some(query) = params.get("query") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a GET request needs a `query` parameter",
        );
    };
    let operation_name = params.get("operationName").filter(|n| !n.is_empty());
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(name) = operation_name {
        request = request.operation_name(name.clone());
    }
    if let Some(variables) = params.get("variables").filter(|v| !v.is_empty()) {
        match serde_json::from_str::<Value>(variables) {
            Ok(value) => {
                request = request.variables(async_graphql::Variables::from_json(value));
            }
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!("`variables` is not JSON: {e}"),
                );
            }
        }
    }
    // The document is parsed once, here, to refuse a mutation; the schema takes it from the
    // request. Its text is checked first, as the schema would before parsing (a value nested
    // 1,500 deep overflows the parser's stack). One that does not parse goes on to the schema,
    // which reports the syntax error.
    if let Err(message) = check_text(query) {
        return refuse(StatusCode::BAD_REQUEST, &message);
    }
    if let Ok(document) = request.parsed_query() {
        let is_mutation = match &document.operations {
            DocumentOperations::Single(op) => op.node.ty == OperationType::Mutation,
            DocumentOperations::Multiple(ops) => match operation_name {
                Some(name) => ops
                    .get(name.as_str())
                    .is_some_and(|op| op.node.ty == OperationType::Mutation),
                None => ops.values().any(|op| op.node.ty == OperationType::Mutation),
            },
        };
        if is_mutation {
            let mut response = refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "mutations must be sent with POST",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    execute(&schema, &headers, request).await
}
