//! The HTTP layer on the embedded stack: the token check, CORS, introspection, and GraphQL over
//! HTTP (content types, methods, response type). The same router serves the Lambda; the
//! emulator suite (tests/tests/auth.rs, tests/tests/corpus.rs) runs it behind real API Gateway
//! events and counts store calls.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use shared::app::Stack;
use shared::http::{ApiSettings, ApiToken, Auth, CorsOrigins};
use shared::ports::SystemClock;
use tower::ServiceExt;

const LIST: &str = "{ listMovie(ignore_availability: true) { count } }";

fn post(headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post("/graphql");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.body(body.into()).expect("request")
}

fn query_body(query: &str) -> String {
    json!({ "query": query }).to_string()
}

const JSON: (&str, &str) = ("content-type", "application/json");

async fn movies(h: &Harness) -> u64 {
    h.ok(LIST).await["listMovie"]["count"]
        .as_u64()
        .expect("count")
}

#[tokio::test]
async fn no_token_wrong_token_or_wrong_scheme_is_401_and_changes_nothing() {
    let h = Harness::new();
    let create = query_body(SEED_CREATE_MOVIE);
    let wrong_case_token = format!("Bearer {}", TOKEN.to_uppercase());
    let lower_scheme = format!("bearer {TOKEN}");
    let upper_scheme = format!("BEARER {TOKEN}");
    for headers in [
        vec![JSON],
        vec![JSON, ("authorization", "Bearer wrong-token")],
        vec![JSON, ("authorization", wrong_case_token.as_str())],
        vec![JSON, ("authorization", lower_scheme.as_str())],
        vec![JSON, ("authorization", upper_scheme.as_str())],
        vec![JSON, ("authorization", TOKEN)],
        vec![JSON, ("authorization", "Basic dGVzdDp0ZXN0")],
        vec![JSON, ("authorization", "Bearer ")],
        vec![JSON, ("x-api-key", "wrong-token")],
    ] {
        let (status, response_headers, body) = h.exchange(post(&headers, create.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
        assert_eq!(error_type(&body), Some("UnauthorizedException"), "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "UnauthorizedException"
        );
        assert!(body["data"].is_null());
        assert!(
            response_headers
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("Bearer")),
            "{response_headers:?}"
        );
    }
    // A refused request is not even parsed: a broken body gets the same 401.
    let (status, _, _) = h.exchange(post(&[JSON], "{ not json")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(movies(&h).await, 0, "nothing was created");
    assert_eq!(h.drain().await, 0, "nothing was queued");
}

#[tokio::test]
async fn bearer_and_x_api_key_work() {
    let h = Harness::new();
    let bearer = format!("Bearer {TOKEN}");
    for headers in [
        vec![JSON, ("authorization", bearer.as_str())],
        vec![JSON, ("x-api-key", TOKEN)],
    ] {
        let (status, _, body) = h.exchange(post(&headers, query_body(LIST))).await;
        assert_eq!(status, StatusCode::OK, "{headers:?}: {body}");
        assert_eq!(body["data"]["listMovie"]["count"], 0);
    }
}

#[tokio::test]
async fn get_needs_the_token_too_but_graphiql_does_not() {
    let h = Harness::new();
    let request = Request::get("/graphql?query=%7B__typename%7D")
        .body(Body::empty())
        .expect("request");
    let (status, body) = h.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let request = Request::get("/graphql?query=%7B__typename%7D")
        .header("x-api-key", TOKEN)
        .body(Body::empty())
        .expect("request");
    let (status, body) = h.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["__typename"], "Query");
}

fn stack_router(settings: &ApiSettings) -> axum::Router {
    Stack::embedded(Arc::new(SystemClock), Duration::from_secs(30))
        .stack
        .router(settings)
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn cors_answers_preflights_for_configured_origins_only() {
    let settings = ApiSettings {
        cors: CorsOrigins::parse("https://cms.example.com, http://localhost:3000")
            .expect("origins"),
        ..ApiSettings::with_token(ApiToken::new(TOKEN).expect("token"))
    };
    let router = stack_router(&settings);
    let preflight = |origin: &str| {
        Request::options("/graphql")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .body(Body::empty())
            .expect("request")
    };
    // No token on a preflight (browsers never send one): answered here, not by the API.
    let (status, headers, _) = call(&router, preflight("https://cms.example.com")).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://cms.example.com")
    );
    let methods = header(&headers, "access-control-allow-methods").unwrap_or_default();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed = header(&headers, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for needed in ["authorization", "content-type", "x-api-key"] {
        assert!(allowed.contains(needed), "{allowed}");
    }
    assert_eq!(header(&headers, "access-control-max-age"), Some("600"));

    let (_, headers, _) = call(&router, preflight("https://evil.example.com")).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);

    // Actual requests carry the header too, refusals included, so a page can read the 401.
    let request = post(
        &[JSON, ("origin", "http://localhost:3000")],
        query_body(LIST),
    );
    let (status, headers, _) = call(&router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let bearer = format!("Bearer {TOKEN}");
    let request = post(
        &[
            JSON,
            ("origin", "http://localhost:3000"),
            ("authorization", bearer.as_str()),
        ],
        query_body(LIST),
    );
    let (status, headers, body) = call(&router, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );

    // Every answer to a cross-origin request says it varies by Origin, errors included, so a
    // cache never hands one origin's answer to another.
    let origin = ("origin", "http://localhost:3000");
    let auth = ("authorization", bearer.as_str());
    let with = |method: &str, uri: &str, headers: &[(&str, &str)], body: Body| {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body).expect("request")
    };
    for (what, request) in [
        (
            "200",
            with(
                "POST",
                "/graphql",
                &[JSON, origin, auth],
                query_body(LIST).into(),
            ),
        ),
        (
            "401",
            with("POST", "/graphql", &[JSON, origin], query_body(LIST).into()),
        ),
        (
            "404",
            with("GET", "/nowhere", &[origin, auth], Body::empty()),
        ),
        (
            "405",
            with("PUT", "/graphql", &[JSON, origin, auth], Body::empty()),
        ),
        (
            "405 on /",
            with("POST", "/", &[JSON, origin, auth], Body::empty()),
        ),
        (
            "415",
            with(
                "POST",
                "/graphql",
                &[("content-type", "text/plain"), origin, auth],
                "{}".into(),
            ),
        ),
        (
            "413",
            with(
                "POST",
                "/graphql",
                &[JSON, origin, auth],
                vec![b' '; 2 << 20].into(),
            ),
        ),
    ] {
        let (status, headers, body) = call(&router, request).await;
        assert!(body.is_object(), "{what}: {status} {body}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some("http://localhost:3000"),
            "{what}: {status} {headers:?}"
        );
        let vary: Vec<_> = headers
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(
            vary.iter()
                .any(|v| v.to_ascii_lowercase().contains("origin")),
            "{what}: {status} vary {vary:?}"
        );
    }
}

#[tokio::test]
async fn without_configured_origins_there_are_no_cors_headers() {
    let router = stack_router(&ApiSettings::open());
    let request = Request::options("/graphql")
        .header("origin", "https://cms.example.com")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = call(&router, request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn introspection_can_be_switched_off() {
    let introspect = query_body("{ __schema { queryType { name } } }");
    let on = stack_router(&ApiSettings::open());
    let (status, _, body) = call(&on, post(&[JSON], introspect.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");

    let off = stack_router(&ApiSettings {
        introspection: false,
        ..ApiSettings::open()
    });
    let (status, _, body) = call(&off, post(&[JSON], introspect)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_type(&body), Some("ValidationError"));
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("introspection is turned off")),
        "{body}"
    );
    for hidden in [
        "{ __type(name: \"Movie\") { name } }",
        "{ ...F } fragment F on Query { __schema { types { name } } }",
        "{ ... on Query { a: __type(name: \"Movie\") { name } } }",
    ] {
        let (status, _, body) = call(&off, post(&[JSON], query_body(hidden))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{hidden}: {body}");
    }
    // __typename is not introspection: clients (Apollo, urql) add it everywhere.
    let (status, _, body) = call(&off, post(&[JSON], query_body("{ __typename }"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Nor do typos map the schema: the suggestions are left out, the mistake still named.
    for (typo, suggestion) in [
        ("{ getMovi(uid: \"x\") { uid } }", "getMovie"),
        ("{ listMovie(limt: 1) { count } }", "limit"),
    ] {
        let (_, _, on_body) = call(&on, post(&[JSON], query_body(typo))).await;
        assert!(on_body.to_string().contains(suggestion), "{on_body}");
        let (status, _, body) = call(&off, post(&[JSON], query_body(typo))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("Unknown"), "{body}");
        assert!(!body.to_string().contains(suggestion), "{body}");
    }
}

#[tokio::test]
async fn content_types_other_than_json_or_graphql_are_415() {
    let router = stack_router(&ApiSettings::open());
    let body = query_body(LIST);
    for headers in [
        vec![],
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![("content-type", "multipart/form-data; boundary=x")],
        vec![("content-type", "text/plain")],
        vec![("content-type", "application/json; charset=latin1")],
        vec![JSON, ("content-encoding", "gzip")],
        vec![JSON, ("content-encoding", "identity, gzip")],
        // Repeated headers: each one counts, not only the first.
        vec![
            JSON,
            ("content-encoding", "identity"),
            ("content-encoding", "gzip"),
        ],
        vec![JSON, ("content-type", "text/plain")],
    ] {
        let (status, _, response) = call(&router, post(&headers, body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{headers:?}: {response}"
        );
        assert_eq!(error_type(&response), Some("ValidationError"));
        assert!(
            response["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("application/json")
                    || m.contains("UTF-8")
                    || m.contains("uncompressed")),
            "{response}"
        );
    }
    for content_type in [
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/json;charset=\"utf-8\"",
    ] {
        let (status, _, response) = call(
            &router,
            post(&[("content-type", content_type)], body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{content_type}: {response}");
    }
    // A bare document as application/graphql.
    let (status, _, response) = call(
        &router,
        post(&[("content-type", "application/graphql")], LIST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["data"]["listMovie"]["count"], 0);
}

#[tokio::test]
async fn the_response_type_follows_accept() {
    let router = stack_router(&ApiSettings::open());
    let (_, headers, _) = call(&router, post(&[JSON], query_body(LIST))).await;
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let (status, headers, _) = call(
        &router,
        post(
            &[
                JSON,
                (
                    "accept",
                    "application/graphql-response+json;charset=utf-8, application/json;q=0.9",
                ),
            ],
            query_body(LIST),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/graphql-response+json")
    );
}

#[tokio::test]
async fn other_methods_and_paths_get_json_errors() {
    let router = stack_router(&ApiSettings::open());
    for method in ["PUT", "DELETE", "PATCH"] {
        let request = Request::builder()
            .method(method)
            .uri("/graphql")
            .header("content-type", "application/json")
            .body(Body::from(query_body(LIST)))
            .expect("request");
        let (status, headers, body) = call(&router, request).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        let allow = header(&headers, "allow").unwrap_or_default();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    }
    // `/` is GraphiQL's page: GET only, and the 405 says so.
    let request = Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(query_body(LIST)))
        .expect("request");
    let (status, headers, body) = call(&router, request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(header(&headers, "allow"), Some("GET"));
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    let request = Request::get("/nothing/here/at/all")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = call(&router, request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_type(&body), Some("NotFound"), "{body}");
    // A malformed query string is a client's mistake with a JSON answer.
    let request = Request::get("/graphql?query=%7B&query=%E0%A4%A")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = call(&router, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
}

#[tokio::test]
async fn auth_off_is_only_for_the_open_settings() {
    // The settings the local binary uses without a token, and those it uses with one.
    assert!(matches!(ApiSettings::open().auth, Auth::Off));
    let with = ApiSettings::with_token(ApiToken::new(TOKEN).expect("token"));
    assert!(matches!(with.auth, Auth::Token(_)));
}
