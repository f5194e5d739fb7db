//! The foundation's acceptance, through the HTTP router and the embedded stack.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn seed_create_movie_completes_with_exactly_the_seed_messages() {
    let h = Harness::new();
    let body = h.gql(SEED_CREATE_MOVIE).await;
    assert!(body.get("errors").is_none(), "{body}");
    let uid = body["data"]["createMovie"]["uid"].as_str().expect("uid");
    let task_id = body["data"]["createMovie"]["_context"]["task_id"]
        .as_str()
        .expect("task_id");
    assert_eq!(uid.len(), 26);
    assert!(ulid::Ulid::from_string(uid).is_ok(), "{uid} is not a ULID");
    let parsed = uuid::Uuid::parse_str(task_id).expect("task_id is a UUID");
    assert_eq!(parsed.get_version_num(), 4);

    let queued = h.task(task_id).await;
    assert_eq!(queued["status"], "QUEUED");
    assert_eq!(messages(&queued), Vec::<String>::new());

    assert_eq!(h.drain().await, 1);
    let task = h.task(task_id).await;
    assert_eq!(task["status"], "COMPLETE");
    assert_eq!(task["task_type"], "post_create");
    assert_eq!(task["object_uid"], uid);
    assert_eq!(task["task_id"], task_id);
    assert_eq!(messages(&task), SEED_MESSAGES);
    for field in ["created_at", "updated_at"] {
        let text = task[field].as_str().expect("timestamp");
        assert!(is_fixed_timestamp(text), "{field} = {text}");
    }
    assert!(task["updated_at"].as_str() >= task["created_at"].as_str());
}

#[tokio::test]
async fn seed_list_documents_list_the_task_with_and_without_status() {
    let h = Harness::new();
    let (_, task_id) = h.create_movie("Listed").await;
    let all = h
        .ok("{ listSkylarkBackgroundTask { objects { task_id created_at updated_at status task_type object_uid messages } } }")
        .await;
    assert_eq!(
        all["listSkylarkBackgroundTask"]["objects"][0]["task_id"],
        task_id.as_str()
    );
    let in_progress = h
        .ok("{ listSkylarkBackgroundTask(status: IN_PROGRESS) { objects { task_id status } } }")
        .await;
    assert_eq!(
        in_progress["listSkylarkBackgroundTask"]["objects"],
        serde_json::json!([])
    );
    let queued = h
        .ok("{ listSkylarkBackgroundTask(status: QUEUED) { objects { task_id status } } }")
        .await;
    assert_eq!(
        queued["listSkylarkBackgroundTask"]["objects"][0]["task_id"],
        task_id.as_str()
    );
    h.drain().await;
    let complete = h
        .ok("{ listSkylarkBackgroundTask(status: COMPLETE) { objects { task_id status } count next_token } }")
        .await;
    assert_eq!(complete["listSkylarkBackgroundTask"]["count"], 1);
    assert_eq!(
        complete["listSkylarkBackgroundTask"]["objects"][0]["status"],
        "COMPLETE"
    );
    assert_eq!(
        complete["listSkylarkBackgroundTask"]["next_token"],
        Value::Null
    );
}

#[tokio::test]
async fn new_movie_is_hidden_until_its_post_create_completes() {
    let h = Harness::new();
    let (uid, _) = h.create_movie("Hidden for now").await;

    // Given the worker has not run yet
    let hidden = h
        .gql(&format!(r#"{{ getMovie(uid: "{uid}") {{ uid title }} }}"#))
        .await;
    assert_eq!(error_type(&hidden), Some("NotFound"), "{hidden}");
    assert_eq!(hidden["data"]["getMovie"], Value::Null);
    let shown = h
        .ok(&format!(
            r#"{{ getMovie(uid: "{uid}", ignore_availability: true) {{ uid title availability {{ count }} _meta {{ availability_status }} }} }}"#
        ))
        .await;
    assert_eq!(
        shown["getMovie"]["title"],
        "My movie".replace("My movie", "Hidden for now")
    );
    assert_eq!(shown["getMovie"]["availability"]["count"], 0);
    assert_eq!(
        shown["getMovie"]["_meta"]["availability_status"],
        "UNAVAILABLE"
    );
    let listed = h.ok("{ listMovie { count } }").await;
    assert_eq!(listed["listMovie"]["count"], 0);

    // When post_create completes
    h.drain().await;

    // Then the default read shows it, with `always` in its availability
    let visible = h
        .ok(&format!(
            r#"{{ getMovie(uid: "{uid}") {{ uid title availability {{ objects {{ uid external_id start end time_window_status }} count next_token }} }} }}"#
        ))
        .await;
    let availability = &visible["getMovie"]["availability"];
    assert_eq!(availability["count"], 1);
    assert_eq!(availability["objects"][0]["uid"], "always");
    assert_eq!(availability["objects"][0]["time_window_status"], "ACTIVE");
    let listed = h.ok("{ listMovie { objects { uid } count } }").await;
    assert_eq!(listed["listMovie"]["objects"][0]["uid"], uid.as_str());
}

async fn season_episodes(h: &Harness, season: &str) -> Vec<String> {
    let data = h
        .ok(&format!(
            r#"{{ getSeason(uid: "{season}") {{ episodes {{ objects {{ uid }} }} }} }}"#
        ))
        .await;
    data["getSeason"]["episodes"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["uid"].as_str().expect("uid").to_owned())
        .collect()
}

#[tokio::test]
async fn episode_linked_to_a_season_appears_after_its_task_and_leaves_after_delete() {
    let h = Harness::new();
    let season = h
        .ok(r#"mutation { createSeason(season: { title: "S1", availability: { link: ["always"] } }) { uid } }"#)
        .await["createSeason"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    h.drain().await;

    let episode = h
        .ok(&format!(
            r#"mutation {{ createEpisode(episode: {{ title: "E1", availability: {{ link: ["always"] }}, relationships: {{ seasons: {{ link: ["{season}"] }} }} }}) {{ uid _context {{ task_id }} }} }}"#
        ))
        .await["createEpisode"]
        .clone();
    let uid = episode["uid"].as_str().expect("uid").to_owned();
    // The reverse side is derived data: it waits for the task.
    assert!(season_episodes(&h, &season).await.is_empty());

    h.drain().await;
    assert_eq!(season_episodes(&h, &season).await, vec![uid.clone()]);
    let task = h
        .task(episode["_context"]["task_id"].as_str().expect("id"))
        .await;
    assert_eq!(task["status"], "COMPLETE");
    assert!(messages(&task).contains(&"Relationship creation complete".to_owned()));
    let seasons = h
        .ok(&format!(
            r#"{{ getEpisode(uid: "{uid}") {{ seasons {{ objects {{ uid }} }} }} }}"#
        ))
        .await;
    assert_eq!(
        seasons["getEpisode"]["seasons"]["objects"][0]["uid"],
        season.as_str()
    );

    let deleted = h
        .ok(&format!(
            r#"mutation {{ deleteEpisode(uid: "{uid}") {{ uid task_id }} }}"#
        ))
        .await;
    let delete_task = deleted["deleteEpisode"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let gone = h
        .gql(&format!(
            r#"{{ getEpisode(uid: "{uid}", ignore_availability: true) {{ uid }} }}"#
        ))
        .await;
    assert_eq!(error_type(&gone), Some("NotFound"));

    h.drain().await;
    assert!(season_episodes(&h, &season).await.is_empty());
    let task = h.task(&delete_task).await;
    assert_eq!(task["task_type"], "post_delete");
    assert_eq!(task["status"], "COMPLETE");
    assert_eq!(
        messages(&task),
        [
            "Job started",
            "Starting relationship cleanup",
            "Relationship cleanup complete",
            "Starting availability cleanup",
            "Availability cleanup complete"
        ]
    );
}

async fn page_ids(h: &Harness, args: &str) -> (Vec<String>, Vec<String>, Option<String>, i64) {
    let data = h
        .ok(&format!(
            "{{ listSkylarkBackgroundTask{} {{ objects {{ task_id created_at }} count next_token }} }}",
            if args.is_empty() { String::new() } else { format!("({args})") }
        ))
        .await;
    let listing = &data["listSkylarkBackgroundTask"];
    let objects = listing["objects"].as_array().expect("objects");
    (
        objects
            .iter()
            .map(|o| o["task_id"].as_str().expect("id").to_owned())
            .collect(),
        objects
            .iter()
            .map(|o| o["created_at"].as_str().expect("t").to_owned())
            .collect(),
        listing["next_token"].as_str().map(str::to_owned),
        listing["count"].as_i64().expect("count"),
    )
}

async fn all_pages(h: &Harness, args: &str) -> (Vec<usize>, Vec<String>, Vec<String>) {
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    let mut times = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page_args = match &token {
            Some(t) if args.is_empty() => format!(r#"next_token: "{t}""#),
            Some(t) => format!(r#"{args}, next_token: "{t}""#),
            None => args.to_owned(),
        };
        let (page, created, next, count) = page_ids(h, &page_args).await;
        assert_eq!(count as usize, page.len());
        sizes.push(page.len());
        ids.extend(page);
        times.extend(created);
        match next {
            Some(next) => token = Some(next),
            None => return (sizes, ids, times),
        }
    }
}

#[tokio::test]
async fn one_hundred_twenty_tasks_page_as_50_50_20_in_both_orders() {
    let h = Harness::new();
    let mut created = Vec::new();
    for i in 0..120 {
        created.push(h.create_movie(&format!("Movie {i}")).await.1);
        h.clock.advance_secs(1);
    }

    let (sizes, desc, times) = all_pages(&h, "limit: 50").await;
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(
        desc.iter().collect::<HashSet<_>>().len(),
        120,
        "no duplicate"
    );
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(desc, newest_first, "no gap, newest first");
    assert!(times.windows(2).all(|w| w[0] > w[1]));

    let (sizes, asc, _) = all_pages(&h, "limit: 50, order: ASC").await;
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(asc, created);
    let (sizes, _, _) = all_pages(&h, "limit: 50, order: DESC").await;
    assert_eq!(sizes, [50, 50, 20]);

    // status filters exactly: 120 complete, then 7 more queued.
    h.drain().await;
    let mut queued = Vec::new();
    for i in 0..7 {
        queued.push(h.create_movie(&format!("Later {i}")).await.1);
    }
    let (_, only_queued, _) = all_pages(&h, "status: QUEUED, limit: 50").await;
    assert_eq!(
        only_queued.iter().collect::<HashSet<_>>(),
        queued.iter().collect::<HashSet<_>>()
    );
    let (sizes, complete, _) = all_pages(&h, "status: COMPLETE, limit: 50").await;
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(complete, newest_first);
    let (_, none, _) = all_pages(&h, "status: FAILED").await;
    assert!(none.is_empty());
    let (sizes, _, _) = all_pages(&h, "").await;
    assert_eq!(sizes, [50, 50, 27], "default limit is 50");
}

#[tokio::test]
async fn next_token_that_we_did_not_issue_is_a_validation_error() {
    let h = Harness::new();
    let body = h
        .gql(r#"{ listSkylarkBackgroundTask(next_token: "not-a-token") { count } }"#)
        .await;
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    // A real token, of the unfiltered listing, is refused by the filtered and the ascending ones
    // (as the DynamoDB adapter does: the same token must mean the same thing whatever the store).
    for i in 0..3 {
        h.create_movie(&format!("Movie {i}")).await;
    }
    let first = h
        .ok("{ listSkylarkBackgroundTask(limit: 1) { next_token } }")
        .await;
    let token = first["listSkylarkBackgroundTask"]["next_token"]
        .as_str()
        .expect("a next page");
    let next = h
        .ok(&format!(
            r#"{{ listSkylarkBackgroundTask(limit: 1, next_token: "{token}") {{ count }} }}"#
        ))
        .await;
    assert_eq!(next["listSkylarkBackgroundTask"]["count"], 1, "{next}");
    for other in [
        "status: QUEUED",
        "order: ASC",
        r#"task_type: "post_create""#,
    ] {
        let body = h
            .gql(&format!(
                r#"{{ listSkylarkBackgroundTask({other}, next_token: "{token}") {{ count }} }}"#
            ))
            .await;
        assert_eq!(
            error_type(&body),
            Some("ValidationError"),
            "{other}: {body}"
        );
    }
    for limit in [0, 101, -1] {
        let body = h
            .gql(&format!(
                "{{ listSkylarkBackgroundTask(limit: {limit}) {{ count }} }}"
            ))
            .await;
        assert_eq!(
            error_type(&body),
            Some("ValidationError"),
            "{limit}: {body}"
        );
    }
}

#[tokio::test]
async fn unknown_availability_reference_creates_nothing_and_queues_nothing() {
    let h = Harness::new();
    let body = h
        .gql(r#"mutation { createMovie(movie: { title: "x", availability: { link: ["no-such-availability"] } }) { uid } }"#)
        .await;
    assert_eq!(error_type(&body), Some("NotFound"), "{body}");
    assert_eq!(body["data"]["createMovie"], Value::Null);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .expect("msg")
            .contains("no-such-availability")
    );
    let listed = h
        .ok("{ listMovie(ignore_availability: true) { count } }")
        .await;
    assert_eq!(listed["listMovie"]["count"], 0);
    let tasks = h.ok("{ listSkylarkBackgroundTask { count } }").await;
    assert_eq!(tasks["listSkylarkBackgroundTask"]["count"], 0);
    assert_eq!(h.drain().await, 0);
}

#[tokio::test]
async fn malformed_or_unknown_task_ids_are_not_found() {
    let h = Harness::new();
    for id in [
        "nope",
        "",
        "00000000-0000-0000-0000-000000000000",
        "9f6d8c63-1f6b-4c43-9d0e-5a4a1f7c2b11",
    ] {
        let body = h
            .gql(&format!(
                r#"{{ getSkylarkBackgroundTask(task_id: "{id}") {{ task_id }} }}"#
            ))
            .await;
        assert_eq!(error_type(&body), Some("NotFound"), "{id}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "NotFound");
        assert_eq!(
            body["data"]["getSkylarkBackgroundTask"],
            Value::Null,
            "{body}"
        );
    }
}

#[tokio::test]
async fn invalid_enum_value_is_a_validation_error_with_400() {
    let h = Harness::new();
    let (status, body) = h
        .post(
            "application/json",
            r#"{"query":"{ listSkylarkBackgroundTask(status: DONE) { count } }"}"#,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_type(&body), Some("ValidationError"));
}

#[tokio::test]
async fn malformed_json_and_empty_bodies_are_400_with_errors() {
    let h = Harness::new();
    for body in [
        "",
        "   ",
        "{bad",
        "null",
        "42",
        r#"{"query": 5}"#,
        r#"{"variables": {}}"#,
    ] {
        let (status, response) = h.post("application/json", body).await;
        assert_eq!(status, 400, "{body:?} → {response}");
        assert_eq!(error_type(&response), Some("ValidationError"), "{body:?}");
    }
    let (status, response) = h.post("application/json", "not json at all \u{0}").await;
    assert_eq!(status, 400, "{response}");
}

#[tokio::test]
async fn get_runs_queries_but_refuses_mutations() {
    let h = Harness::new();
    let query = "%7B%20listSkylarkBackgroundTask%20%7B%20count%20%7D%20%7D";
    let request = axum::http::Request::get(format!("/graphql?query={query}"))
        .header("authorization", common::BEARER)
        .body(axum::body::Body::empty())
        .expect("request");
    let (status, body) = h.send(request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["listSkylarkBackgroundTask"]["count"], 0);

    let mutation =
        "mutation%20%7B%20createMovie(movie%3A%20%7Btitle%3A%20%22x%22%7D)%20%7B%20uid%20%7D%20%7D";
    let request = axum::http::Request::get(format!("/graphql?query={mutation}"))
        .header("authorization", common::BEARER)
        .body(axum::body::Body::empty())
        .expect("request");
    let (status, body) = h.send(request).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(error_type(&body), Some("ValidationError"));
    let listed = h
        .ok("{ listMovie(ignore_availability: true) { count } }")
        .await;
    assert_eq!(listed["listMovie"]["count"], 0, "nothing was created");
}

#[tokio::test]
async fn graphiql_is_served_at_the_root() {
    let h = Harness::new();
    let request = axum::http::Request::get("/")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = tower::ServiceExt::oneshot(
        h.embedded.stack.router(&shared::http::ApiSettings::open()),
        request,
    )
    .await
    .expect("response");
    assert_eq!(response.status(), 200);
    let html = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let html = String::from_utf8_lossy(&html);
    assert!(html.contains("graphiql") || html.contains("GraphiQL"));
    assert!(html.contains("/graphql"));
}

#[tokio::test]
async fn external_ids_are_unique_per_type_and_resolve_reads() {
    let h = Harness::new();
    h.ok(r#"mutation { createMovie(movie: { title: "a", external_id: "m-1", availability: { link: ["always"] } }) { uid } }"#)
        .await;
    let dup = h
        .gql(r#"mutation { createMovie(movie: { title: "b", external_id: "m-1" }) { uid } }"#)
        .await;
    assert_eq!(error_type(&dup), Some("ExternalIDException"), "{dup}");
    // Another type may use the same external_id.
    h.ok(r#"mutation { createBrand(brand: { title: "b", external_id: "m-1" }) { uid } }"#)
        .await;
    h.drain().await;
    let read = h
        .ok(r#"{ getMovie(external_id: "m-1") { title external_id } }"#)
        .await;
    assert_eq!(read["getMovie"]["title"], "a");
}

#[tokio::test]
async fn a_deep_query_is_refused_before_any_resolver_even_through_fragments() {
    let h = Harness::new();
    // 50 levels, written with inline fragments and a named one
    let mut selection = "uid".to_owned();
    for level in 0..50 {
        selection = if level % 2 == 0 {
            format!("seasons {{ objects {{ ... on Season {{ {selection} }} }} }}")
        } else {
            format!("brands {{ objects {{ ...on Brand {{ {selection} }} }} }}")
        };
    }
    let query = format!(
        r#"query {{ getBrand(uid: "x") {{ ...Deep }} }} fragment Deep on Brand {{ {selection} }}"#
    );
    let (status, body) = h
        .post("application/json", json!({ "query": query }).to_string())
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");
}

#[tokio::test]
async fn five_hundred_aliases_are_refused_before_any_resolver_runs() {
    let h = Harness::new();
    // 500 aliased mutations, through a fragment: not one may run
    let aliases: Vec<String> = (0..500)
        .map(|i| format!(r#"m{i}: createMovie(movie: {{ title: "t{i}" }}) {{ ...Id }}"#))
        .collect();
    let query = format!(
        "mutation {{ {} }} fragment Id on Movie {{ uid }}",
        aliases.join(" ")
    );
    let (status, body) = h
        .post("application/json", json!({ "query": query }).to_string())
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    let listed = h.ok("{ listSkylarkBackgroundTask { count } }").await;
    assert_eq!(
        listed["listSkylarkBackgroundTask"]["count"], 0,
        "a resolver ran"
    );
}

#[tokio::test]
async fn a_five_megabyte_body_is_refused_with_413_and_a_json_error() {
    let h = Harness::new();
    let padding = "x".repeat(5 * 1024 * 1024);
    let body =
        json!({ "query": format!("{{ listSkylarkBackgroundTask {{ count }} }} # {padding}") })
            .to_string();
    let (status, body) = h.post("application/json", body).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
}

#[tokio::test]
async fn a_request_without_a_query_says_so() {
    let h = Harness::new();
    let (status, body) = h.post("application/json", "{}").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_type(&body), Some("ValidationError"));
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no `query`")),
        "{body}"
    );
}

/// The in-memory store refuses an object past DynamoDB's item size as DynamoDB does (the
/// emulator test `a_translation_past_dynamodbs_item_size_is_a_validation_error`).
#[tokio::test]
async fn a_translation_past_dynamodbs_item_size_is_a_validation_error() {
    let h = Harness::new();
    let text = "x".repeat(65_000);
    let created = h
        .ok(&format!(
            r#"mutation {{ createMovie(movie: {{ title: "{text}", synopsis: "{text}" }}) {{ uid }} }}"#
        ))
        .await;
    let uid = created["createMovie"]["uid"].as_str().expect("uid");
    let translate = |language: &str| {
        format!(
            r#"mutation {{ updateMovie(uid: "{uid}", language: "{language}", movie: {{ title: "{text}", synopsis: "{text}" }}) {{ uid }} }}"#
        )
    };
    h.ok(&translate("fr")).await;
    let body = h.gql(&translate("de")).await;
    assert_eq!(error_type(&body), Some("ValidationError"), "{body}");
    let languages = h
        .ok(&format!(
            r#"{{ getMovie(uid: "{uid}", ignore_availability: true) {{ _meta {{ available_languages }} }} }}"#
        ))
        .await;
    assert_eq!(
        languages["getMovie"]["_meta"]["available_languages"],
        json!(["en-GB", "fr"])
    );
}
