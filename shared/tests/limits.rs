//! The GraphQL limits, through the HTTP router: documents that are small on the wire but huge
//! once their fragments are expanded, nested listings that multiply, too many aliases or
//! mutations. Each is refused with a 400 that names the limit, before any resolver runs.

mod common;

use common::*;
use serde_json::{Value, json};
use shared::graphql::{MAX_ALIASES, MAX_MUTATIONS};

async fn refused(h: &Harness, query: &str, needle: &str) {
    let (status, body) = h
        .post("application/json", json!({ "query": query }).to_string())
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {body}");
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");
}

async fn tasks_created(h: &Harness) -> u64 {
    h.ok("{ listSkylarkBackgroundTask { count } }").await["listSkylarkBackgroundTask"]["count"]
        .as_u64()
        .expect("count")
}

#[tokio::test]
async fn a_fragment_bomb_is_refused_before_it_is_expanded() {
    let h = Harness::new();
    // 1 KB that expands to 2^30 selections: each fragment spreads the next twice (30 levels,
    // within the parser's recursion limit of 32).
    let levels = 30;
    let mut query = String::from("{ ...F0 }");
    for i in 0..levels {
        query.push_str(&format!(
            " fragment F{i} on Query {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    query.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
    refused(&h, &query, "once its fragments are expanded").await;
    // The same bomb in fragments no operation uses.
    let unused = query.replacen("{ ...F0 }", "{ __typename }", 1);
    refused(&h, &unused, "once its fragments are expanded").await;
    // Ending in a spread of a fragment that does not exist: no fields at all, 2^30 spreads.
    let unknown = query.replacen("{ __typename }", "{ ...Missing }", 1);
    refused(&h, &unknown, "once its fragments are expanded").await;
    // A cycle that doubles at each step, walked 2^32 times by a recursion check without memo.
    refused(
        &h,
        "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A ...A }",
        "spreads itself",
    )
    .await;
}

#[tokio::test]
async fn documents_of_too_many_tokens_are_refused_before_they_are_parsed() {
    let h = Harness::new();
    // 1 MB of names: seconds of parsing if it were parsed.
    let query = format!("{{ {}}}", "a ".repeat(500_000));
    refused(&h, &query, "tokens").await;
    // A long string literal is one token: the limit is on structure, not on text.
    let long_title = "t".repeat(60_000);
    let data = h
        .ok(&format!(
            r#"mutation {{ createMovie(movie: {{ title: "{long_title}" }}) {{ uid }} }}"#
        ))
        .await;
    assert!(data["createMovie"]["uid"].is_string(), "{data}");
}

#[tokio::test]
async fn long_fragment_chains_and_deep_nesting_are_refused_without_exhausting_the_stack() {
    let h = Harness::new();
    let mut chain = String::from("{ ...F0 }");
    for i in 0..20_000 {
        chain.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
    }
    chain.push_str(" fragment F20000 on Query { __typename }");
    let (status, body) = h
        .post("application/json", json!({ "query": chain }).to_string())
        .await;
    assert_eq!(status, 400, "{body}");

    // 50,000 nested selection sets or inline fragments: the parser's recursion limit.
    for (open, close) in [("a{", "}"), ("...on Query{", "}")] {
        let query = format!(
            "{{ {}__typename {}}}",
            open.repeat(50_000),
            close.repeat(50_000)
        );
        let (status, body) = h
            .post("application/json", json!({ "query": query }).to_string())
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    }
    // 70 levels, under the token limit: past the parser's own recursion limit (64), refused in
    // the words the other nesting checks use.
    for (open, close) in [("a{", "}"), ("...on Query{", "}")] {
        let query = format!("{{ {}__typename {}}}", open.repeat(70), close.repeat(70));
        refused(&h, &query, "the document is too deep").await;
    }
}

#[tokio::test]
async fn aliases_are_capped() {
    let h = Harness::new();
    let aliases = |n: usize| {
        let fields: Vec<String> = (0..n).map(|i| format!("a{i}: __typename")).collect();
        format!("{{ ...A }} fragment A on Query {{ {} }}", fields.join(" "))
    };
    let data = h.ok(&aliases(MAX_ALIASES)).await;
    assert_eq!(data["a0"], "Query");
    refused(&h, &aliases(MAX_ALIASES + 1), "aliases").await;
}

#[tokio::test]
async fn mutations_per_request_are_capped_and_none_of_a_refused_request_runs() {
    let h = Harness::new();
    let mutations = |n: usize| {
        let fields: Vec<String> = (0..n)
            .map(|i| format!(r#"m{i}: createMovie(movie: {{ title: "t{i}" }}) {{ ...Id }}"#))
            .collect();
        format!(
            "mutation {{ ... on Mutation {{ {} }} }} fragment Id on Movie {{ uid }}",
            fields.join(" ")
        )
    };
    refused(&h, &mutations(MAX_MUTATIONS + 1), "mutations").await;
    assert_eq!(tasks_created(&h).await, 0, "a resolver ran");
    let data = h.ok(&mutations(MAX_MUTATIONS)).await;
    assert!(data["m9"]["uid"].is_string(), "{data}");
    assert_eq!(tasks_created(&h).await, MAX_MUTATIONS as u64);
}

#[tokio::test]
async fn nested_listings_multiply_their_cost() {
    let h = Harness::new();
    // Three levels of 100-object pages: up to a million objects read for one request.
    refused(
        &h,
        "{ listBrand(limit: 100) { objects { seasons(limit: 100) { objects { episodes(limit: 100) { objects { uid title } } } } } } }",
        "complex",
    )
    .await;
    // The same through a variable.
    let (status, body) = h
        .post(
            "application/json",
            json!({
                "query": "query ($n: Int) { listBrand(limit: $n) { objects { seasons(limit: $n) { objects { episodes(limit: $n) { objects { uid } } } } } } }",
                "variables": { "n": 100 },
            })
            .to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // What clients really ask stays well inside: a full page of tasks with every field, a page
    // of movies with a few availability windows each.
    h.ok("{ listSkylarkBackgroundTask(limit: 100) { objects { task_id created_at updated_at status task_type object_uid messages } count next_token } }")
        .await;
    h.ok("{ listMovie(limit: 100, ignore_availability: true) { objects { uid title availability(limit: 10) { objects { uid title start end } } } next_token } }")
        .await;
}

/// async-graphql's validation skips `__typename` entirely, so a document with a mistake there
/// ran the mutation beside it. Each of these is refused whole, and nothing is written.
#[tokio::test]
async fn mistakes_on_typename_refuse_the_whole_document() {
    let h = Harness::new();
    let movie =
        r#"createMovie(movie: { title: "My movie", availability: { link: ["always"] } }) { uid }"#;
    for (document, needle) in [
        (
            format!("mutation {{ __typename(x: 1) {movie} }}"),
            "takes no arguments",
        ),
        (
            format!("mutation {{ __typename @nope {movie} }}"),
            "unknown directive `@nope`",
        ),
        (
            format!("mutation {{ __typename @skip(if: $x) {movie} }}"),
            "`$x` is used by a directive on `__typename` but not declared",
        ),
        (
            format!(
                "mutation {{ ...M }} fragment M on Mutation {{ __typename @include(if: $y) {movie} }}"
            ),
            "`$y`",
        ),
        (
            format!(r#"mutation {{ {movie} __typename @include(if: "yes") }}"#),
            "takes one argument, `if`, a Boolean",
        ),
        (
            format!("mutation {{ __typename {{ a }} {movie} }}"),
            "takes no selection set",
        ),
        (
            "{ __typename @skip(if: false, if: true) }".to_owned(),
            "takes one argument",
        ),
        ("{ __typename @skip }".to_owned(), "takes one argument"),
        (
            format!("mutation {{ __typename @skip(if: false) @skip(if: false) {movie} }}"),
            "has `@skip` twice",
        ),
        (
            r#"mutation ($s: String = "x") { __typename @skip(if: $s) createMovie(movie: { title: $s }) { uid } }"#.to_owned(),
            "`$s` is a String, but `@skip` and `@include` on `__typename` take a Boolean",
        ),
        (
            r#"mutation ($b: Boolean) { __typename @skip(if: $b) createMovie(movie: { title: "x" }) @skip(if: $b) { uid } }"#.to_owned(),
            "must be true or false",
        ),
        (
            "{ __typename @skip(if: null) }".to_owned(),
            "takes one argument",
        ),
    ] {
        refused(&h, &document, needle).await;
    }
    assert_eq!(tasks_created(&h).await, 0, "no mutation ran");
    // Correct uses still work, a declared variable included (async-graphql counts a variable
    // as used only where it validates, so it must be used on another field too).
    let body = h
        .ok("query ($hide: Boolean = true) { a: __typename @skip(if: $hide) b: __typename @include(if: true) listMovie @skip(if: $hide) { count } }")
        .await;
    assert_eq!(body["b"], "Query", "{body}");
    assert!(
        body.get("a").is_none() && body.get("listMovie").is_none(),
        "{body}"
    );
}

/// Refused by the answer budget while the answer is built, not by the HTTP layer after.
async fn refused_as_too_large(h: &Harness, query: &str) {
    let needle = format!(
        "the answer would be more than {} bytes",
        shared::graphql::MAX_DATA_BYTES
    );
    refused(h, query, &needle).await;
}

fn aliased_titles(n: usize) -> String {
    (0..n).map(|i| format!("a{i}: title ")).collect()
}

/// The complexity limit counts values, not bytes: 99 aliases of 60 KB titles over ten movies
/// would be a 60 MB answer. It is refused while it is built, not once it is whole.
#[tokio::test]
async fn a_query_whose_answer_outgrows_api_gateway_is_refused_while_it_is_built() {
    let h = Harness::new();
    let title = "x".repeat(60_000);
    let creates: String = (0..MAX_MUTATIONS)
        .map(|i| format!(r#"m{i}: createMovie(movie: {{ title: "{title}" }}) {{ uid }} "#))
        .collect();
    h.ok(&format!("mutation {{ {creates} }}")).await;
    let query = format!(
        "{{ listMovie(ignore_availability: true, limit: 100) {{ objects {{ {} }} }} }}",
        aliased_titles(99)
    );
    refused_as_too_large(&h, &query).await;
    // A page that fits is answered whole.
    let fits = format!(
        "{{ listMovie(ignore_availability: true, limit: 100) {{ objects {{ {} }} }} }}",
        aliased_titles(9)
    );
    let data = h.ok(&fits).await;
    assert_eq!(
        data["listMovie"]["objects"][9]["a8"].as_str(),
        Some(&*title)
    );
}

/// A mutation has written before its answer is built: an answer too large keeps the uid and the
/// task id, with the fields past the limit null and one error that says so.
#[tokio::test]
async fn a_mutation_whose_answer_outgrows_api_gateway_keeps_its_task_id() {
    let h = Harness::new();
    let title = "x".repeat(65_000);
    let query = format!(
        r#"mutation {{ createMovie(movie: {{ title: "{title}" }}) {{ uid _context {{ task_id }} {} }} }}"#,
        aliased_titles(95)
    );
    let (status, body) = h
        .post("application/json", json!({ "query": query }).to_string())
        .await;
    assert_eq!(status, 200, "{}", &body.to_string()[..500]);
    let movie = &body["data"]["createMovie"];
    let task_id = movie["_context"]["task_id"].as_str().expect("task id");
    assert!(movie["uid"].is_string());
    assert_eq!(movie["a0"].as_str(), Some(&*title));
    assert!(movie["a94"].is_null());
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["path"][0], "createMovie");
    assert_eq!(errors[0]["errorType"], "ValidationError");
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the mutations ran")),
        "{errors:?}"
    );
    h.drain().await;
    assert_eq!(h.task(task_id).await["status"], "COMPLETE");
}

/// async-graphql answers `__typename` without resolving it, and counts it 0 in complexity: 100
/// long aliases of it over 2,000 related movies would be a 54 MB answer from a 27 KB query.
#[tokio::test]
async fn aliases_of_typename_count_in_the_answer() {
    let h = Harness::new();
    let brand = h
        .ok(r#"mutation { createBrand(brand: { title: "B", availability: { link: ["always"] } }) { uid } }"#)
        .await;
    let brand = brand["createBrand"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    for batch in 0..10 {
        let creates: String = (0..MAX_MUTATIONS)
            .map(|i| {
                format!(
                    r#"m{i}: createMovie(movie: {{ title: "m{batch}-{i}", availability: {{ link: ["always"] }}, relationships: {{ brands: {{ link: ["{brand}"] }} }} }}) {{ uid }} "#
                )
            })
            .collect();
        h.ok(&format!("mutation {{ {creates} }}")).await;
    }
    h.drain().await;
    let typenames: String = (0..MAX_ALIASES)
        .map(|i| format!("{}{i:03}: __typename ", "t".repeat(250)))
        .collect();
    let query = format!(
        r#"{{ getBrand(uid: "{brand}") {{ movies(limit: 100) {{ objects {{ brands(limit: 1) {{ objects {{ movies(limit: 20) {{ objects {{ {typenames} }} }} }} }} }} }} }} }}"#
    );
    refused_as_too_large(&h, &query).await;
    // And a listing that selects nothing but `__typename` still costs one per item.
    let nested = format!(
        r#"{{ getBrand(uid: "{brand}") {{ movies(limit: 100) {{ objects {{ brands(limit: 100) {{ objects {{ movies(limit: 100) {{ objects {{ __typename }} }} }} }} }} }} }} }}"#
    );
    refused(&h, &nested, "too complex").await;
}

/// One text can take seven times its length in the answer (a control character is `\u0001`,
/// escaped again in the Lambda's response): a text that would pass the budget is left out
/// itself, so the answer stays within what API Gateway returns and the mutation's task id
/// reaches the client.
#[tokio::test]
async fn a_text_that_would_pass_the_budget_is_left_out_itself() {
    let h = Harness::new();
    let control = "\\u0001".repeat(65_000);
    let created = h
        .ok(&format!(
            r#"mutation {{ createMovie(movie: {{ title: "t", synopsis: "{control}" }}) {{ uid }} }}"#
        ))
        .await;
    let uid = created["createMovie"]["uid"].as_str().expect("uid");
    // 13 synopses of 455 KB each: 5.46 MB after 12, the 13th would end at 5.92 MB.
    let synopses: String = (0..13).map(|i| format!("s{i}: synopsis ")).collect();
    let query = format!(
        r#"mutation {{ updateMovie(uid: "{uid}", movie: {{ title: "renamed" }}) {{ _context {{ task_id }} {synopses} }} }}"#
    );
    let (status, body) = h
        .post("application/json", json!({ "query": query }).to_string())
        .await;
    assert_eq!(status, 200, "{}", &body.to_string()[..300]);
    let movie = &body["data"]["updateMovie"];
    assert!(movie["_context"]["task_id"].is_string(), "no task id");
    assert!(
        movie["s11"].is_string() && movie["s12"].is_null(),
        "s11, s12"
    );
    assert_eq!(body["errors"][0]["path"], json!(["updateMovie", "s12"]));
}
