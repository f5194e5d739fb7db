//! The HTTP face of the API, shared by the local binary and the API Lambda: `POST /graphql`,
//! `GET /graphql` (queries only), GraphiQL at `/`. A client's mistake is a 4xx with `errors`.

use std::collections::HashMap;

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::graphql::{AppSchema, ErrorType, add_error_types};

pub const GRAPHQL_PATH: &str = "/graphql";
/// Largest request body taken; a larger one is refused with 413 before it is parsed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(schema: AppSchema) -> Router {
    Router::new()
        .route("/", get(graphiql))
        .route(GRAPHQL_PATH, get(graphql_get).post(graphql_post))
        // API Gateway REST (v1) puts the stage in front of the path: `/prod/graphql`.
        .route("/{stage}/graphql", get(graphql_get).post(graphql_post))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(schema)
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint(GRAPHQL_PATH).finish())
}

fn json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn refuse(status: StatusCode, message: &str) -> Response {
    json(status, &ErrorType::ValidationError.body(message))
}

async fn execute(schema: &AppSchema, request: async_graphql::Request) -> Response {
    let response = schema.execute(request).await;
    // Errors without a path were raised before execution (parse, validation, limits): the
    // request itself was wrong, so 400. Errors from resolvers come with data: 200.
    let status = if response.errors.iter().any(|e| e.path.is_empty()) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut body = serde_json::to_value(&response).unwrap_or(Value::Null);
    add_error_types(&mut body);
    json(status, &body)
}

async fn graphql_post(
    State(schema): State<AppSchema>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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
    if text.first() == Some(&b'[') {
        return refuse(
            StatusCode::BAD_REQUEST,
            "batched requests (a JSON array) are not supported; send one request per POST",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(text) {
        Ok(request) => request,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a GraphQL request: {e}"),
            );
        }
    };
    if request.query.trim().is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request has no `query`; send JSON such as {\"query\": \"{ ... }\"}",
        );
    }
    execute(&schema, request).await
}

/// GET carries `query`, `variables` (JSON) and `operationName` in the URL; it may only read.
async fn graphql_get(
    State(schema): State<AppSchema>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(query) = params.get("query") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a GET request needs a `query` parameter",
        );
    };
    let operation_name = params.get("operationName").filter(|n| !n.is_empty());
    if let Ok(document) = async_graphql::parser::parse_query(query) {
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
    execute(&schema, request).await
}
