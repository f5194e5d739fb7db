//! The API Lambda as deployed — token from Secrets Manager, real API Gateway events through
//! lambda_http — against the emulator, counting every AWS call its clients make: a refused
//! request (401, limits, 413, preflight) makes none at all, so no resolver ran.

use std::time::Duration;

use serde_json::{Value, json};
use shared::adapters::SecretToken;
use shared::app::lambda_api;
use shared::config::ApiEnv;
use shared::http::{CorsOrigins, TokenError, TokenSource};
use tests::emulator::{TEST_TOKEN, World, api_event_on, response_parts, sample_event};

/// Sets (or with `None` removes) a header in an event of either payload version.
fn set_header(event: &mut Value, name: &str, value: Option<&str>) {
    for key in ["headers", "multiValueHeaders"] {
        let Some(headers) = event.get_mut(key).and_then(Value::as_object_mut) else {
            continue;
        };
        headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            let value = if key == "multiValueHeaders" {
                json!([value])
            } else {
                json!(value)
            };
            headers.insert(name.to_owned(), value);
        }
    }
}

fn with_body(mut event: Value, body: &str) -> Value {
    event["body"] = Value::String(body.to_owned());
    event["isBase64Encoded"] = Value::Bool(false);
    event
}

/// A response header, from `headers` (HTTP API) or `multiValueHeaders` (REST).
fn response_header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
    response["headers"][name]
        .as_str()
        .or_else(|| response["multiValueHeaders"][name][0].as_str())
}

fn error_type(body: &Value) -> Option<&str> {
    body["errors"][0]["errorType"].as_str()
}

#[tokio::test]
async fn without_the_right_token_nothing_is_read_or_written() {
    let world = World::new().await;
    let wrong_case = format!("Bearer {}", TEST_TOKEN.to_uppercase());
    let scheme_case = format!("bearer {TEST_TOKEN}");
    let token_only = TEST_TOKEN.to_owned();
    for base in [
        "http-api-v2-seed",
        "http-api-v2-seed-base64",
        "rest-v1-seed",
    ] {
        for authorization in [
            None,
            Some("Bearer not-the-token"),
            Some(wrong_case.as_str()),
            Some(scheme_case.as_str()),
            Some(token_only.as_str()),
            Some("Basic c2t5bGFyazp0ZXN0"),
        ] {
            let mut refused = sample_event(base);
            set_header(&mut refused, "authorization", authorization);
            let response = world.api_event(&refused).await;
            let (status, body) = response_parts(&response);
            assert_eq!(status, 401, "{base} {authorization:?}: {body}");
            assert_eq!(error_type(&body), Some("UnauthorizedException"), "{body}");
            assert!(
                response_header(&response, "www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{response}"
            );
            assert_eq!(
                world.counter.take(),
                Default::default(),
                "{base} {authorization:?}: the store and queues saw no call"
            );
        }
    }
    // `Bearer` written so, or x-api-key: accepted.
    let bearer = format!("Bearer {TEST_TOKEN}");
    for (header, value) in [
        ("authorization", bearer.as_str()),
        ("x-api-key", TEST_TOKEN),
    ] {
        let mut accepted = sample_event("rest-v1-seed");
        set_header(&mut accepted, "authorization", None);
        set_header(&mut accepted, header, Some(value));
        let (status, body) = response_parts(&world.api_event(&accepted).await);
        assert_eq!(status, 200, "{header}: {body}");
        assert!(body["data"]["createMovie"]["uid"].is_string(), "{body}");
    }
    let calls = world.counter.take();
    assert_eq!(calls.get("SQS.SendMessageBatch"), Some(&2), "{calls:?}");
}

#[tokio::test]
async fn oversized_requests_are_refused_before_any_resolver_runs() {
    let world = World::new().await;
    let deep = {
        // 50 levels through inline and named fragments, the uid in a variable.
        let mut selection = "uid".to_owned();
        for level in 0..50 {
            selection = if level % 2 == 0 {
                format!("seasons {{ objects {{ ... on Season {{ {selection} }} }} }}")
            } else {
                format!("brands {{ objects {{ ...on Brand {{ {selection} }} }} }}")
            };
        }
        format!(
            "query ($uid: String!) {{ getBrand(uid: $uid) {{ ...Deep }} }} fragment Deep on Brand {{ {selection} }}"
        )
    };
    let aliases = {
        let fields: Vec<String> = (0..500)
            .map(|i| format!("m{i}: createMovie(movie: {{ title: \"a{i}\" }}) {{ uid }}"))
            .collect();
        format!(
            "mutation {{ ...M }} fragment M on Mutation {{ {} }}",
            fields.join(" ")
        )
    };
    let variables_batch = json!([
        { "query": "query ($n: Int) { listSkylarkBackgroundTask(limit: $n) { count } }", "variables": { "n": 1 } },
        { "query": "{ listSkylarkBackgroundTask { count } }" },
    ])
    .to_string();
    let huge = format!(
        "{{\"query\": \"{{ __typename }}\", \"padding\": \"{}\"}}",
        "x".repeat(5 * 1024 * 1024)
    );
    for (name, body, status) in [
        (
            "deep",
            json!({ "query": deep, "variables": { "uid": "x" } }).to_string(),
            400,
        ),
        ("500 aliases", json!({ "query": aliases }).to_string(), 400),
        ("batch", variables_batch, 400),
        ("5 MB", huge, 413),
    ] {
        for base in ["http-api-v2-seed", "rest-v1-seed"] {
            let (got, body) =
                response_parts(&world.api_event(&with_body(sample_event(base), &body)).await);
            assert_eq!(got, status, "{name} ({base}): {body}");
            assert_eq!(error_type(&body), Some("ValidationError"), "{name}: {body}");
            assert_eq!(
                world.counter.take(),
                Default::default(),
                "{name} ({base}): no resolver ran"
            );
        }
    }
}

#[tokio::test]
async fn a_preflight_is_answered_without_a_token_or_a_store_call() {
    let world = World::new().await;
    let router = world
        .api(
            CorsOrigins::parse("https://cms.example.com").expect("origin"),
            false,
        )
        .await;
    let mut preflight = sample_event("http-api-v2-seed");
    preflight["requestContext"]["http"]["method"] = json!("OPTIONS");
    preflight["routeKey"] = json!("OPTIONS /graphql");
    preflight.as_object_mut().expect("event").remove("body");
    set_header(&mut preflight, "authorization", None);
    set_header(&mut preflight, "content-type", None);
    set_header(&mut preflight, "origin", Some("https://cms.example.com"));
    set_header(
        &mut preflight,
        "access-control-request-method",
        Some("POST"),
    );
    let response = api_event_on(&router, &preflight).await;
    let status = response["statusCode"].as_u64().expect("status");
    assert!((200..300).contains(&status), "{response}");
    assert_eq!(
        response_header(&response, "access-control-allow-origin"),
        Some("https://cms.example.com"),
        "{response}"
    );
    assert_eq!(world.counter.take(), Default::default());

    // The real request from that origin carries the header as well.
    let mut request = sample_event("http-api-v2-seed");
    set_header(&mut request, "origin", Some("https://cms.example.com"));
    let response = api_event_on(&router, &request).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        response_header(&response, "access-control-allow-origin"),
        Some("https://cms.example.com")
    );
}

#[tokio::test]
async fn a_rotated_token_is_taken_up_and_a_missing_secret_stops_the_api() {
    let world = World::new().await;
    let source = SecretToken::load_with(
        world.secrets.clone(),
        world.token_secret.clone(),
        Duration::ZERO,
    )
    .await
    .expect("the secret is readable");
    assert!(
        source
            .token()
            .await
            .expect("token")
            .matches(TEST_TOKEN.as_bytes())
    );
    world
        .secrets
        .put_secret_value()
        .secret_id(&world.token_secret)
        .secret_string("rotated-token-value")
        .send()
        .await
        .expect("rotate");
    let token = source.token().await.expect("token");
    assert!(token.matches(b"rotated-token-value"));
    assert!(!token.matches(TEST_TOKEN.as_bytes()));

    let env = ApiEnv {
        token_secret: format!("{}-no-such-secret", world.prefix),
        cors: CorsOrigins::None,
        introspection: false,
    };
    let error = lambda_api(world.deps.clone(), &env, world.secrets.clone())
        .await
        .expect_err("no secret, no API");
    assert!(
        matches!(&error, TokenError::Unavailable(m) if m.contains("no-such-secret")),
        "{error}"
    );
}
