//! The API Lambda's entry point, as a function the tests call with real API Gateway event JSON.
//!
//! lambda_http turns the event into an `http::Request` with `expect`s: an `isBase64Encoded` body
//! that is not base64 or a raw query string with characters a URI may not hold (a space, raw
//! UTF-8: aws-lambda-rust-runtime#461, #489, #515) panic, and the runtime answers the invocation
//! with an error, which API Gateway turns into a 502. An event whose header is not valid HTTP (a
//! control character in a value, a space in a name) fails even earlier, as the runtime reads it.
//! So the event is read here, from JSON; repaired where its meaning is plain (the query string
//! percent-encoded, a base64 body decoded once, REST's repeated headers kept); refused with a 400
//! where it is not; and a panic that still happens — while the event is converted or while it
//! is handled — becomes a JSON error response instead of a failed invocation.

use std::panic::AssertUnwindSafe;

use base64::Engine;
use futures::FutureExt;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use lambda_http::http::{HeaderMap, HeaderName, HeaderValue, header};
use lambda_http::request::{LambdaRequest, RequestOrigin};
use lambda_http::{Adapter, Body, LambdaEvent, Service};
use serde::Serialize;
use shared::graphql::ErrorType;

/// What the function returns to API Gateway: the router's answer, or one made here.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ApiResponse<R> {
    Routed(R),
    V2(ApiGatewayV2httpResponse),
    V1(ApiGatewayProxyResponse),
}

/// One invocation: the event (API Gateway's JSON) through `router`, as `lambda_http::run` would,
/// without its panics.
pub async fn handle(
    router: axum::Router,
    event: LambdaEvent<serde_json::Value>,
) -> Result<ApiResponse<impl Serialize>, std::convert::Infallible> {
    let LambdaEvent { payload, context } = event;
    // Known before the event is read, to answer in its payload version if it cannot be.
    let origin = if payload.get("version").and_then(|v| v.as_str()) == Some("2.0") {
        RequestOrigin::ApiGatewayV2
    } else {
        RequestOrigin::ApiGatewayV1
    };
    let mut payload = match serde_json::from_value::<LambdaRequest>(payload) {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(%error, "request refused: the event is not an API Gateway request");
            return Ok(error_response(
                &origin,
                400,
                ErrorType::ValidationError,
                "the request could not be read (a header name or value is not valid HTTP)",
            ));
        }
    };
    let origin = payload.request_origin();
    if let Err(message) = repair(&mut payload) {
        tracing::info!(message, "request refused: the event cannot be read");
        return Ok(error_response(
            &origin,
            400,
            ErrorType::ValidationError,
            message,
        ));
    }
    let mut adapter = Adapter::from(router);
    let call = std::panic::catch_unwind(AssertUnwindSafe(|| {
        adapter.call(LambdaEvent::new(payload, context))
    }));
    let Ok(future) = call else {
        tracing::warn!("request refused: lambda_http could not turn the event into a request");
        return Ok(error_response(
            &origin,
            400,
            ErrorType::ValidationError,
            "the request could not be read (its URL, Host or body is malformed)",
        ));
    };
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(response)) => Ok(ApiResponse::Routed(response)),
        Ok(Err(never)) => match never {},
        Err(_) => {
            tracing::error!("the API handler panicked");
            Ok(error_response(
                &origin,
                500,
                ErrorType::InternalFailure,
                "internal failure; the request may be retried",
            ))
        }
    }
}

/// Makes the event safe for lambda_http's conversion, keeping its meaning, or says why it is
/// not a request at all.
fn repair(event: &mut LambdaRequest) -> Result<(), &'static str> {
    let (body, is_base64_encoded) = match event {
        LambdaRequest::ApiGatewayV2(event) => {
            if let Some(query) = &mut event.raw_query_string {
                encode_query(query);
            }
            (&mut event.body, &mut event.is_base64_encoded)
        }
        LambdaRequest::ApiGatewayV1(event) => {
            // lambda_http lays `headers` (one value a name, the last) over `multiValueHeaders`,
            // so two Authorization headers would pass as the second: a repeated name is left
            // to `multiValueHeaders`, all its values kept.
            let repeated: Vec<HeaderName> = event
                .multi_value_headers
                .keys()
                .filter(|name| {
                    event
                        .multi_value_headers
                        .get_all(*name)
                        .iter()
                        .nth(1)
                        .is_some()
                })
                .cloned()
                .collect();
            for name in repeated {
                event.headers.remove(name);
            }
            (&mut event.body, &mut event.is_base64_encoded)
        }
        // The other sources are not wired to this function; lambda_http handles them as it does.
        _ => return Ok(()),
    };
    if !*is_base64_encoded {
        return Ok(());
    }
    let Some(encoded) = body.as_deref() else {
        return Ok(());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "the request body is marked base64-encoded but is not valid base64")?;
    // Text is handed on decoded, so it is decoded once; other bytes stay encoded for
    // lambda_http, which decodes them into a binary body.
    if let Ok(text) = String::from_utf8(decoded) {
        *body = Some(text);
        *is_base64_encoded = false;
    }
    Ok(())
}

/// Percent-encodes the bytes a URI's query may not hold raw (RFC 3986 §3.4), as a browser does;
/// a query of only allowed bytes is left as it is.
fn encode_query(query: &mut String) {
    fn allowed(byte: u8) -> bool {
        byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte)
    }
    if query.bytes().all(allowed) {
        return;
    }
    let mut encoded = String::with_capacity(query.len() * 3);
    for byte in query.bytes() {
        if allowed(byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    *query = encoded;
}

fn error_response<R>(
    origin: &RequestOrigin,
    status: i64,
    error_type: ErrorType,
    message: &str,
) -> ApiResponse<R> {
    let body = Some(Body::Text(error_type.body(message).to_string()));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match origin {
        RequestOrigin::ApiGatewayV1 => {
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = status;
            response.multi_value_headers = headers;
            response.body = body;
            ApiResponse::V1(response)
        }
        _ => {
            let mut response = ApiGatewayV2httpResponse::default();
            response.status_code = status;
            response.headers = headers;
            response.body = body;
            ApiResponse::V2(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Context;

    fn event(file: &str) -> LambdaEvent<serde_json::Value> {
        let path = format!("{}/../../tests/events/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("a sample event");
        LambdaEvent::new(
            serde_json::from_str(&text).expect("an API Gateway event"),
            Context::default(),
        )
    }

    async fn answer(
        router: axum::Router,
        event: LambdaEvent<serde_json::Value>,
    ) -> serde_json::Value {
        let Ok(response) = handle(router, event).await;
        serde_json::to_value(&response).expect("JSON")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_json_500_in_either_payload_version() {
        let router = axum::Router::new().fallback(|| async {
            if true {
                panic!("a bug");
            }
        });
        for file in ["http-api-v2-seed.json", "rest-v1-seed.json"] {
            let response = answer(router.clone(), event(file)).await;
            assert_eq!(response["statusCode"], 500, "{file}: {response}");
            let body: serde_json::Value =
                serde_json::from_str(response["body"].as_str().expect("a body")).expect("JSON");
            assert_eq!(body["errors"][0]["errorType"], "InternalFailure", "{body}");
        }
    }

    #[tokio::test]
    async fn a_base64_text_body_reaches_the_router_decoded() {
        let router = axum::Router::new().fallback(|body: String| async move { body });
        let response = answer(router, event("http-api-v2-seed-base64.json")).await;
        assert_eq!(response["statusCode"], 200, "{response}");
        assert!(
            response["body"]
                .as_str()
                .is_some_and(|b| b.contains("createMovie")),
            "{response}"
        );
    }

    #[tokio::test]
    async fn an_event_with_a_header_that_is_not_http_is_a_json_400() {
        let router = axum::Router::new().fallback(|| async { "reached" });
        for (file, headers) in [
            ("http-api-v2-seed.json", "headers"),
            ("rest-v1-seed.json", "headers"),
            ("rest-v1-seed.json", "multiValueHeaders"),
        ] {
            for (name, value) in [("x-foo", "a\u{1}b"), ("x foo", "a"), ("x-é", "a")] {
                let mut event = event(file);
                event.payload[headers][name] = if headers == "multiValueHeaders" {
                    serde_json::json!([value])
                } else {
                    serde_json::json!(value)
                };
                let response = answer(router.clone(), event).await;
                assert_eq!(response["statusCode"], 400, "{file} {name:?}: {response}");
                let body: serde_json::Value =
                    serde_json::from_str(response["body"].as_str().expect("a body")).expect("JSON");
                assert_eq!(body["errors"][0]["errorType"], "ValidationError", "{body}");
            }
        }
    }

    #[tokio::test]
    async fn repeated_rest_headers_reach_the_router_all_of_them() {
        let router = axum::Router::new().fallback(|headers: HeaderMap| async move {
            headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .count()
                .to_string()
        });
        let mut event = event("rest-v1-seed.json");
        event.payload["headers"]["Authorization"] = serde_json::json!("Bearer second");
        event.payload["multiValueHeaders"]["Authorization"] =
            serde_json::json!(["Bearer first", "Bearer second"]);
        let response = answer(router, event).await;
        assert_eq!(response["body"], "2", "{response}");
    }

    #[test]
    fn only_bytes_a_query_may_not_hold_are_encoded() {
        let encode = |q: &str| {
            let mut q = q.to_owned();
            encode_query(&mut q);
            q
        };
        assert_eq!(encode("query=%7Ba%7D&x=1"), "query=%7Ba%7D&x=1");
        assert_eq!(encode("query={a b}"), "query=%7Ba%20b%7D");
        assert_eq!(encode("uid=\"é\""), "uid=%22%C3%A9%22");
    }
}
