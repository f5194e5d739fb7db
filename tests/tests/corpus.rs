//! The bad-input corpus (`tests/corpus/*.json`, format in `tests/corpus/README.md`): client
//! mistakes and attacks, each built on a real API Gateway event from `tests/events/` and fed to
//! the API Lambda's router through lambda_http's own adapter, against the emulator. For every
//! entry: the expected status, never a 5xx or a panic, a JSON body whose errors say
//! `errorType` (also in `extensions.code`) and a message, the expected headers, and not one write
//! to a table or a queue. Every failing entry is reported, not only the first.

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{Map, Value, json};
use tests::emulator::{World, sample_event};

/// The AWS operations that change a table or a queue.
const WRITES: [&str; 7] = [
    "DynamoDB.PutItem",
    "DynamoDB.UpdateItem",
    "DynamoDB.DeleteItem",
    "DynamoDB.BatchWriteItem",
    "DynamoDB.TransactWriteItems",
    "SQS.SendMessage",
    "SQS.SendMessageBatch",
];

/// The largest response a synchronously invoked Lambda may return (6 MB, the JSON envelope
/// included); a larger one fails the invocation and API Gateway answers 5xx.
const MAX_LAMBDA_RESPONSE: usize = 6 * 1024 * 1024;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Every entry, sorted by file name.
fn load() -> Vec<(String, Result<Value, String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let entry = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
                .map_err(|e| format!("the entry could not be read: {e}"));
            (name, entry)
        })
        .collect()
}

fn base_event(base: &str) -> Result<Value, String> {
    let name = match base {
        "http-api-v2" => "http-api-v2-seed",
        "http-api-v2-get" => "http-api-v2-list-tasks-get",
        "rest-v1" => "rest-v1-seed",
        other => return Err(format!("unknown base `{other}`")),
    };
    Ok(sample_event(name))
}

/// `application/x-www-form-urlencoded` encoding of one key or value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn as_str<'a>(entry: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match entry.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{key}` must be a string, not {other}")),
    }
}

/// The API Gateway event an entry describes.
fn build_event(entry: &Value) -> Result<Value, String> {
    let base = as_str(entry, "base")?.ok_or("an entry needs `base`")?;
    let mut event = base_event(base)?;
    let v1 = base == "rest-v1";
    let get = base == "http-api-v2-get";

    if let Some(method) = as_str(entry, "method")? {
        if v1 {
            event["httpMethod"] = json!(method);
            event["requestContext"]["httpMethod"] = json!(method);
        } else {
            event["requestContext"]["http"]["method"] = json!(method);
            event["routeKey"] = json!(format!("{method} /graphql"));
            event["requestContext"]["routeKey"] = json!(format!("{method} /graphql"));
        }
    }

    if let Some(path) = as_str(entry, "path")? {
        if v1 {
            event["path"] = json!(path);
            event["requestContext"]["path"] = json!(format!("/prod{path}"));
        } else {
            event["rawPath"] = json!(path);
            event["requestContext"]["http"]["path"] = json!(path);
        }
    }

    if let Some(headers) = entry.get("headers") {
        let headers = headers.as_object().ok_or("`headers` must be an object")?;
        for (name, value) in headers {
            let values: Option<Vec<&str>> = match value {
                Value::Null => None,
                Value::String(s) => Some(vec![s.as_str()]),
                Value::Array(items) => Some(
                    items
                        .iter()
                        .map(|v| v.as_str().ok_or("header values must be strings"))
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(format!("header `{name}`: {other} is not a value")),
            };
            for key in ["headers", "multiValueHeaders"] {
                if let Some(map) = event.get_mut(key).and_then(Value::as_object_mut) {
                    map.retain(|k, _| !k.eq_ignore_ascii_case(name));
                }
            }
            let Some(values) = values else {
                continue;
            };
            if v1 {
                // REST: `headers` holds the last value of each, `multiValueHeaders` all of them.
                event["headers"][name] = json!(values.last().copied().unwrap_or_default());
                event["multiValueHeaders"][name] = json!(values);
            } else {
                // HTTP API joins repeated headers with commas.
                event["headers"][name] = json!(values.join(","));
            }
        }
    }

    // The query string: raw (HTTP API only) or as decoded parameters.
    if let Some(raw) = as_str(entry, "query_string")? {
        if v1 {
            return Err("`query_string` is for HTTP API bases; use `query_parameters`".into());
        }
        event["rawQueryString"] = json!(raw);
        if let Some(map) = event.as_object_mut() {
            map.remove("queryStringParameters");
        }
    }
    if let Some(parameters) = entry.get("query_parameters") {
        let parameters = parameters
            .as_object()
            .ok_or("`query_parameters` must be an object")?;
        let mut single = Map::new();
        let mut multi = Map::new();
        let mut raw = Vec::new();
        for (name, value) in parameters {
            let value = value.as_str().ok_or("query parameters must be strings")?;
            single.insert(name.clone(), json!(value));
            multi.insert(name.clone(), json!([value]));
            raw.push(format!("{}={}", form_encode(name), form_encode(value)));
        }
        event["queryStringParameters"] = Value::Object(single);
        if v1 {
            event["multiValueQueryStringParameters"] = Value::Object(multi);
        } else {
            event["rawQueryString"] = json!(raw.join("&"));
        }
    }

    // The body: text, base64, or text repeated (large bodies without large files).
    let mut body: Option<Option<String>> = None;
    let mut base64 = false;
    if let Some(value) = entry.get("body") {
        body = Some(match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => return Err(format!("`body` must be a string or null, not {other}")),
        });
    }
    if let Some(encoded) = as_str(entry, "body_base64")? {
        body = Some(Some(encoded.to_owned()));
        base64 = true;
    }
    if let Some(repeat) = entry.get("body_repeat") {
        // One part or a list of parts, concatenated.
        let parts = match repeat {
            Value::Array(parts) => parts.as_slice(),
            part => std::slice::from_ref(part),
        };
        let mut text = String::new();
        for part in parts {
            let repeated = as_str(part, "text")?.ok_or("`body_repeat` needs `text`")?;
            let times = part
                .get("times")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("`body_repeat` needs `times`")?;
            text.push_str(as_str(part, "prefix")?.unwrap_or_default());
            text.push_str(&repeated.repeat(times));
            text.push_str(as_str(part, "suffix")?.unwrap_or_default());
        }
        body = Some(Some(text));
    }
    match body {
        Some(body) => {
            event["body"] = body.map_or(Value::Null, Value::String);
            event["isBase64Encoded"] = json!(base64);
        }
        None if get => {}
        None => {
            return Err("a POST-based entry needs `body`, `body_base64` or `body_repeat`".into());
        }
    }
    if let Some(flag) = entry.get("is_base64_encoded") {
        event["isBase64Encoded"] = json!(flag.as_bool().ok_or("`is_base64_encoded` is a bool")?);
    }
    Ok(event)
}

/// A response header, case-insensitively, from `headers` (HTTP API) or `multiValueHeaders`.
fn response_header(response: &Value, name: &str) -> Option<String> {
    for key in ["headers", "multiValueHeaders"] {
        if let Some(map) = response.get(key).and_then(Value::as_object) {
            for (k, v) in map {
                if k.eq_ignore_ascii_case(name) {
                    let value = match v {
                        Value::Array(items) => items.first().and_then(Value::as_str),
                        other => other.as_str(),
                    };
                    if let Some(value) = value {
                        return Some(value.to_owned());
                    }
                }
            }
        }
    }
    None
}

fn shorten(text: &str) -> String {
    const MAX: usize = 600;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// What is wrong with a response, against the entry's `expect`; empty when it is right.
fn check(expect: &Value, response: &Value, calls: &BTreeMap<String, usize>) -> Vec<String> {
    let mut problems = Vec::new();
    let status = response["statusCode"].as_u64().unwrap_or(0);
    let wanted = expect["status"].as_u64().unwrap_or(0);
    if status != wanted {
        problems.push(format!("status {status}, expected {wanted}"));
    }
    if status >= 500 {
        problems.push("a 5xx for a client's request".to_owned());
    }
    let writes: Vec<String> = calls
        .iter()
        .filter(|(k, _)| WRITES.contains(&k.as_str()))
        .map(|(k, n)| format!("{k}×{n}"))
        .collect();
    if !writes.is_empty() {
        problems.push(format!("wrote: {}", writes.join(", ")));
    }
    let size = response.to_string().len();
    if size > MAX_LAMBDA_RESPONSE {
        problems.push(format!(
            "a {size}-byte response: Lambda refuses responses over {MAX_LAMBDA_RESPONSE} bytes, \
             so API Gateway would answer 5xx"
        ));
    }
    let content_type = response_header(response, "content-type").unwrap_or_default();
    if !content_type.starts_with("application/json")
        && !content_type.starts_with("application/graphql-response+json")
    {
        problems.push(format!("content-type {content_type:?}, not JSON"));
    }
    if let Some(headers) = expect.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let got = response_header(response, name);
            if got.as_deref() != value.as_str() {
                problems.push(format!("header {name}: {got:?}, expected {value}"));
            }
        }
    }
    if response["isBase64Encoded"].as_bool() == Some(true) {
        problems.push("a base64 response body".to_owned());
        return problems;
    }
    let text = response["body"].as_str().unwrap_or_default();
    let Ok(body) = serde_json::from_str::<Value>(text) else {
        problems.push("the body is not JSON".to_owned());
        return problems;
    };

    // Without `error_type`, the answer must be data without errors.
    let errors = body["errors"].as_array().filter(|e| !e.is_empty());
    let Some(wanted_type) = expect["error_type"].as_str() else {
        if errors.is_some() || !body["data"].is_object() {
            problems.push("expected data and no errors".to_owned());
        }
        return problems;
    };
    let Some(errors) = errors else {
        problems.push("no `errors` array".to_owned());
        return problems;
    };
    for error in errors {
        let error_type = error["errorType"].as_str();
        if error_type.is_none() || error_type != error["extensions"]["code"].as_str() {
            problems.push(format!(
                "an error without errorType equal to extensions.code: {error}"
            ));
        }
        if error["message"]
            .as_str()
            .is_none_or(|m| m.trim().is_empty())
        {
            problems.push(format!("an error without a message: {error}"));
        }
    }
    let first = &errors[0];
    let first_type = first["errorType"].as_str().unwrap_or_default();
    if first_type != wanted_type {
        problems.push(format!(
            "errorType {first_type:?}, expected {wanted_type:?}"
        ));
    }
    if let Some(needle) = expect["message_contains"].as_str() {
        let message = first["message"].as_str().unwrap_or_default();
        if !message.contains(needle) {
            problems.push(format!("the message does not contain {needle:?}"));
        }
    }
    problems
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[tokio::test]
async fn every_corpus_entry_is_refused_as_it_expects_and_writes_nothing() {
    let verbose = std::env::var_os("CORPUS_VERBOSE").is_some();
    let world = World::new().await;
    let entries = load();
    assert!(
        !entries.is_empty(),
        "no entries in {}",
        corpus_dir().display()
    );
    let mut failures = Vec::new();
    let mut slowest: Option<(String, Duration)> = None;
    for (name, entry) in &entries {
        world.counter.take();
        if verbose {
            let _ = writeln!(std::io::stderr(), "corpus: {name} …");
        }
        let event = match entry.as_ref().map_err(Clone::clone).and_then(build_event) {
            Ok(event) => event,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let started = Instant::now();
        let outcome = AssertUnwindSafe(world.api_event(&event))
            .catch_unwind()
            .await;
        let elapsed = started.elapsed();
        if slowest.as_ref().is_none_or(|(_, t)| elapsed > *t) {
            slowest = Some((name.clone(), elapsed));
        }
        let calls = world.counter.take();
        let response = match outcome {
            Ok(response) => response,
            Err(payload) => {
                failures.push(format!(
                    "{name}: the handler panicked: {}",
                    panic_message(payload.as_ref())
                ));
                continue;
            }
        };
        let expect = entry.as_ref().map(|e| &e["expect"]).unwrap_or(&Value::Null);
        let problems = check(expect, &response, &calls);
        let status = response["statusCode"].as_u64().unwrap_or(0);
        let body = shorten(response["body"].as_str().unwrap_or_default());
        if verbose {
            let _ = writeln!(
                std::io::stderr(),
                "  → {status} in {} ms, {} bytes: {body} {calls:?}",
                elapsed.as_millis(),
                response["body"].as_str().map_or(0, str::len)
            );
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {}\n    observed: {status} {body}",
                problems.join("; ")
            ));
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "corpus: {} entries tried, {} as expected{}",
        entries.len(),
        entries.len() - failures.len(),
        slowest.map_or_else(String::new, |(name, t)| format!(
            " (slowest: {name}, {} ms)",
            t.as_millis()
        ))
    );
    assert!(
        failures.is_empty(),
        "{} of {} corpus entries did not behave as expected:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
}
