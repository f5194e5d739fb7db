//! The AWS path against an AWS-compatible endpoint (moto here, LocalStack unchanged): the real
//! DynamoDB and SQS adapters, the API Lambda fed API Gateway events, the worker Lambda fed the
//! `SqsEvent`s built from what SQS delivered.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::Value;
use shared::domain::{TaskType, Timestamp};
use tests::emulator::{World, response_parts, sample_event};

const SEED_MESSAGES: [&str; 5] = [
    "Job started",
    "Starting availability creation",
    "Availability creation complete",
    "Starting availability post-processing",
    "Availability post-processing complete",
];

fn created(body: &Value) -> (String, String) {
    let movie = &body["data"]["createMovie"];
    (
        movie["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("no uid in {body}"))
            .to_owned(),
        movie["_context"]["task_id"]
            .as_str()
            .expect("task_id")
            .to_owned(),
    )
}

async fn get_task(world: &World, task_id: &str) -> Value {
    let (status, body) = world
        .graphql(&format!(
            r#"{{ getSkylarkBackgroundTask(task_id: "{task_id}") {{ task_id created_at updated_at status task_type object_uid messages }} }}"#
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["getSkylarkBackgroundTask"].clone()
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a number in {item:?}"))
}

#[tokio::test]
async fn seed_flow_through_the_api_and_worker_lambdas() {
    let world = World::new().await;

    // The seed mutation as an HTTP API v2 event into the API handler
    let response = world.api_event(&sample_event("http-api-v2-seed")).await;
    let (status, body) = response_parts(&response);
    assert_eq!(status, 200, "{body}");
    let (uid, task_id) = created(&body);

    // → the object and a QUEUED task in DynamoDB
    let object = world
        .dynamodb
        .get_item()
        .table_name(&world.settings.tables.content)
        .key("pk", AttributeValue::S(format!("OBJ#{uid}")))
        .key("sk", AttributeValue::S("OBJ".to_owned()))
        .send()
        .await
        .expect("get object")
        .item
        .expect("object item");
    assert_eq!(
        object["gsi1pk"].as_s().ok().map(String::as_str),
        Some("TYPE#Movie")
    );
    let task = world.raw_task(&task_id).await.expect("task item");
    assert_eq!(
        task["status"].as_s().ok().map(String::as_str),
        Some("QUEUED")
    );
    assert!(
        !task.contains_key("expires_at"),
        "a live task has no TTL yet"
    );

    // → one message on the post_create queue, naming the task
    let (event, messages) = world.receive(TaskType::PostCreate, 10).await;
    assert_eq!(messages.len(), 1);
    let message: Value = serde_json::from_str(&messages[0].body).expect("JSON body");
    assert_eq!(message["task_id"], task_id.as_str());
    assert_eq!(message["task_type"], "post_create");
    assert_eq!(message["object_uid"], uid.as_str());

    // → that message, wrapped as an SqsEvent, into the worker handler
    let response = world.invoke_worker(TaskType::PostCreate, event).await;
    assert!(response.batch_item_failures.is_empty());

    // → COMPLETE with the seed messages, read back through the API handler
    let task = get_task(&world, &task_id).await;
    assert_eq!(task["status"], "COMPLETE");
    assert_eq!(task["task_type"], "post_create");
    assert_eq!(task["object_uid"], uid.as_str());
    assert_eq!(task["messages"], serde_json::json!(SEED_MESSAGES));
    let (_, movie) = world
        .graphql(&format!(
            r#"{{ getMovie(uid: "{uid}") {{ title availability {{ objects {{ uid }} }} }} }}"#
        ))
        .await;
    assert_eq!(movie["data"]["getMovie"]["title"], "My movie");
    assert_eq!(
        movie["data"]["getMovie"]["availability"]["objects"][0]["uid"],
        "always"
    );
}

#[tokio::test]
async fn completed_task_item_carries_a_24_hour_ttl_in_epoch_seconds() {
    let world = World::new().await;
    let (_, body) = response_parts(&world.api_event(&sample_event("http-api-v2-seed")).await);
    let (_, task_id) = created(&body);
    assert_eq!(world.run_queue(TaskType::PostCreate).await, 1);

    let item = world.raw_task(&task_id).await.expect("task item");
    let expires_at = item.get("expires_at").expect("expires_at");
    let AttributeValue::N(text) = expires_at else {
        panic!("expires_at is not type N: {expires_at:?}");
    };
    assert_eq!(text.len(), 10, "epoch seconds: {text}");
    let completed_secs = n(&item, "updated_at") / 1_000_000;
    let ttl: i64 = text.parse().expect("number");
    assert!(
        (ttl - (completed_secs + 86_400)).abs() <= 5,
        "{ttl} vs {completed_secs}"
    );
    let now = Timestamp::now().secs();
    assert!((ttl - (now + 86_400)).abs() <= 60);
}

/// A task item written straight into the table, as DynamoDB would hold it.
async fn put_raw_task(
    world: &World,
    status: &str,
    created_micros: i64,
    expires_at: Option<i64>,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let mut request = world
        .dynamodb
        .put_item()
        .table_name(&world.settings.tables.tasks)
        .item("task_id", AttributeValue::S(id.clone()))
        .item("task_type", AttributeValue::S("post_create".to_owned()))
        .item(
            "object_uid",
            AttributeValue::S("01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned()),
        )
        .item("status", AttributeValue::S(status.to_owned()))
        .item("created_at", AttributeValue::N(created_micros.to_string()))
        .item("updated_at", AttributeValue::N(created_micros.to_string()))
        .item("messages", AttributeValue::L(Vec::new()))
        .item("message_count", AttributeValue::N("0".to_owned()))
        .item("unlinked", AttributeValue::L(Vec::new()))
        .item("all", AttributeValue::S("TASK".to_owned()))
        .item(
            "created_key",
            AttributeValue::S(format!("{created_micros:020}#{id}")),
        );
    if let Some(expires_at) = expires_at {
        request = request.item("expires_at", AttributeValue::N(expires_at.to_string()));
    }
    request.send().await.expect("put task");
    id
}

#[tokio::test]
async fn expired_tasks_are_absent_from_get_and_from_list() {
    let world = World::new().await;
    let now = Timestamp::now();
    let past = now.secs() - 10;
    let expired = put_raw_task(&world, "COMPLETE", now.micros() - 1_000_000, Some(past)).await;
    let (_, body) = world
        .graphql(&format!(
            r#"{{ getSkylarkBackgroundTask(task_id: "{expired}") {{ task_id }} }}"#
        ))
        .await;
    assert_eq!(body["errors"][0]["errorType"], "NotFound", "{body}");
    let (_, body) = world
        .graphql("{ listSkylarkBackgroundTask { count } }")
        .await;
    assert_eq!(
        body["data"]["listSkylarkBackgroundTask"]["count"], 0,
        "{body}"
    );

    // 30 QUEUED tasks, 25 of them expired, interleaved with the 5 live ones
    let mut live = Vec::new();
    for i in 0..30i64 {
        let created = now.micros() - 60_000_000 + i * 1000;
        if i % 6 == 5 {
            live.push(put_raw_task(&world, "QUEUED", created, None).await);
        } else {
            put_raw_task(&world, "QUEUED", created, Some(past)).await;
        }
    }
    let (_, body) = world
        .graphql("{ listSkylarkBackgroundTask(status: QUEUED, limit: 10) { objects { task_id } count next_token } }")
        .await;
    let listing = &body["data"]["listSkylarkBackgroundTask"];
    let mut found: Vec<String> = listing["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|o| o["task_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(listing["count"], 5);
    assert_eq!(listing["next_token"], Value::Null);
    found.sort();
    live.sort();
    assert_eq!(found, live);
}

#[tokio::test]
async fn one_failing_record_is_the_only_batch_item_failure_and_the_only_redelivery() {
    let world = World::new().await;
    let mut uids = Vec::new();
    for _ in 0..3 {
        let (_, body) = response_parts(&world.api_event(&sample_event("http-api-v2-seed")).await);
        uids.push(created(&body).0);
    }
    // Given one movie whose stored item cannot be read, so its task's work fails
    world
        .dynamodb
        .put_item()
        .table_name(&world.settings.tables.content)
        .item("pk", AttributeValue::S(format!("OBJ#{}", uids[1])))
        .item("sk", AttributeValue::S("OBJ".to_owned()))
        .item("object", AttributeValue::S("not an object".to_owned()))
        .send()
        .await
        .expect("corrupt");

    let mut messages = Vec::new();
    for _ in 0..5 {
        let (_, more) = world.receive(TaskType::PostCreate, 10).await;
        messages.extend(more);
        if messages.len() == 3 {
            break;
        }
    }
    assert_eq!(messages.len(), 3);
    let event = shared::engine::sqs_event(&messages, "arn:aws:sqs:us-east-1:000000000000:q");
    let bad = messages
        .iter()
        .find(|m| m.body.contains(&uids[1]))
        .expect("the bad record")
        .message_id
        .clone();

    // When the batch goes through the worker Lambda
    let response = world.invoke_worker(TaskType::PostCreate, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, [bad.as_str()]);

    // Then, acknowledging as Lambda does, SQS redelivers that record alone
    let done: Vec<String> = messages
        .iter()
        .filter(|m| m.message_id != bad)
        .map(|m| m.receipt_handle.clone())
        .collect();
    shared::ports::QueueConsumer::delete(&*world.queue, TaskType::PostCreate, &done)
        .await
        .expect("delete");
    let failed_handle = messages
        .iter()
        .find(|m| m.message_id == bad)
        .expect("bad")
        .receipt_handle
        .clone();
    world
        .sqs
        .change_message_visibility()
        .queue_url(&world.settings.queue_urls[&TaskType::PostCreate])
        .receipt_handle(failed_handle)
        .visibility_timeout(0)
        .send()
        .await
        .expect("visibility");
    let again = world
        .sqs
        .receive_message()
        .queue_url(&world.settings.queue_urls[&TaskType::PostCreate])
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id.as_deref(), Some(bad.as_str()));
    let count = again[0]
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .cloned();
    assert_eq!(count.as_deref(), Some("2"));
}

#[tokio::test]
async fn base64_bodies_and_rest_v1_events_give_the_same_result() {
    let world = World::new().await;
    for name in [
        "http-api-v2-seed",
        "http-api-v2-seed-base64",
        "rest-v1-seed",
    ] {
        let response = world.api_event(&sample_event(name)).await;
        let (status, body) = response_parts(&response);
        assert_eq!(status, 200, "{name}: {body}");
        let (uid, task_id) = created(&body);
        assert_eq!(uid.len(), 26, "{name}");
        assert_eq!(
            get_task(&world, &task_id).await["status"],
            "QUEUED",
            "{name}"
        );
    }
    assert_eq!(world.run_queue(TaskType::PostCreate).await, 3);
    let (_, body) = world.graphql("{ listMovie { count } }").await;
    assert_eq!(body["data"]["listMovie"]["count"], 3);
}

#[tokio::test]
async fn relationships_and_delete_work_on_dynamodb() {
    let world = World::new().await;
    let (_, body) = world
        .graphql(r#"mutation { createSeason(season: { title: "S", external_id: "s-1", availability: { link: ["always"] } }) { uid } }"#)
        .await;
    assert!(body["data"]["createSeason"]["uid"].is_string(), "{body}");
    let (_, body) = world
        .graphql(r#"mutation { createEpisode(episode: { title: "E", availability: { link: ["always"] }, relationships: { seasons: { link: ["s-1"] } } }) { uid } }"#)
        .await;
    let episode = body["data"]["createEpisode"]["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    world.run_queue(TaskType::PostCreate).await;
    let episodes = r#"{ getSeason(external_id: "s-1") { episodes { objects { uid } } } }"#;
    let (_, body) = world.graphql(episodes).await;
    assert_eq!(
        body["data"]["getSeason"]["episodes"]["objects"][0]["uid"],
        episode.as_str(),
        "{body}"
    );

    let (_, dup) = world
        .graphql(
            r#"mutation { createSeason(season: { title: "again", external_id: "s-1" }) { uid } }"#,
        )
        .await;
    assert_eq!(
        dup["errors"][0]["errorType"], "ExternalIDException",
        "{dup}"
    );

    world
        .graphql(&format!(
            r#"mutation {{ deleteEpisode(uid: "{episode}") {{ task_id }} }}"#
        ))
        .await;
    world.run_queue(TaskType::PostDelete).await;
    let (_, body) = world.graphql(episodes).await;
    assert_eq!(
        body["data"]["getSeason"]["episodes"]["objects"],
        serde_json::json!([]),
        "{body}"
    );
}

#[tokio::test]
async fn aws_requests_per_seed_create_movie() {
    let world = World::new().await;
    world.counter.take();
    let (_, body) = response_parts(&world.api_event(&sample_event("http-api-v2-seed")).await);
    created(&body);
    let api = world.counter.take();
    world.run_queue(TaskType::PostCreate).await;
    let worker = world.counter.take();

    let sum = |counts: &std::collections::BTreeMap<String, usize>,
               pred: &dyn Fn(&str) -> bool|
     -> usize { counts.iter().filter(|(k, _)| pred(k)).map(|(_, v)| v).sum() };
    let is_write = |k: &str| {
        k.starts_with("DynamoDB.")
            && ["Put", "Update", "Delete", "TransactWrite", "BatchWrite"]
                .iter()
                .any(|w| k.contains(w))
    };
    let is_read = |k: &str| k.starts_with("DynamoDB.") && !is_write(k);
    let is_sqs = |k: &str| k.starts_with("SQS.");
    let total: std::collections::BTreeMap<String, usize> =
        api.iter()
            .chain(worker.iter())
            .fold(Default::default(), |mut acc, (k, v)| {
                *acc.entry(k.clone()).or_default() += v;
                acc
            });
    println!("API handler:    {api:?}");
    println!("worker + queue: {worker:?}");
    println!(
        "per seed createMovie: DynamoDB reads {}, DynamoDB writes {}, SQS requests {} (the last ReceiveMessage found the queue empty)",
        sum(&total, &is_read),
        sum(&total, &is_write),
        sum(&total, &is_sqs)
    );
    assert!(sum(&total, &is_write) <= 4, "{total:?}");
    // send, receive, delete, and one empty receive that ends the loop
    assert!(sum(&total, &is_sqs) <= 4, "{total:?}");
}

#[tokio::test]
async fn tables_and_queues_are_created_as_the_template_declares() {
    use aws_sdk_sqs::types::QueueAttributeName;
    use shared::config::{CONTENT_TABLE, TASKS_TABLE};
    use shared::infra::Template;

    let world = World::new().await;
    let template = Template::embedded().expect("template");

    for (variable, name) in [
        (CONTENT_TABLE, &world.settings.tables.content),
        (TASKS_TABLE, &world.settings.tables.tasks),
    ] {
        let spec = template.table_of_variable(variable).expect("table spec");
        let table = world
            .dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .expect("describe")
            .table
            .expect("table");
        let keys: Vec<(String, String)> = table
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_owned(),
                    k.key_type().as_str().to_owned(),
                )
            })
            .collect();
        let mut expected = vec![(spec.hash_key.clone(), "HASH".to_owned())];
        expected.extend(
            spec.range_key
                .iter()
                .map(|r| (r.clone(), "RANGE".to_owned())),
        );
        assert_eq!(keys, expected, "{variable}");
        let mut indexes: Vec<(String, Vec<String>, String)> = table
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                (
                    i.index_name().unwrap_or_default().to_owned(),
                    i.key_schema()
                        .iter()
                        .map(|k| k.attribute_name().to_owned())
                        .collect(),
                    i.projection()
                        .and_then(|p| p.projection_type())
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        indexes.sort();
        let mut expected: Vec<(String, Vec<String>, String)> = spec
            .indexes
            .iter()
            .map(|i| {
                let mut keys = vec![i.hash_key.clone()];
                keys.extend(i.range_key.clone());
                (i.name.clone(), keys, i.projection.clone())
            })
            .collect();
        expected.sort();
        assert_eq!(indexes, expected, "{variable}");
        let ttl = world
            .dynamodb
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .expect("ttl")
            .time_to_live_description
            .and_then(|d| d.attribute_name)
            .filter(|_| spec.ttl_attribute.is_some());
        assert_eq!(ttl, spec.ttl_attribute, "{variable}");
    }

    for task_type in TaskType::ALL {
        let spec = template.task_queue(*task_type).expect("queue spec");
        let url = &world.settings.queue_urls[task_type];
        assert!(
            url.ends_with(&spec.name_for(&world.prefix).expect("name")),
            "{url}"
        );
        let attributes = world
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("attributes")
            .attributes
            .expect("attributes");
        assert_eq!(
            attributes
                .get(&QueueAttributeName::VisibilityTimeout)
                .and_then(|v| v.parse().ok()),
            spec.visibility_timeout_secs,
            "{task_type}"
        );
        let redrive: Value = serde_json::from_str(
            attributes
                .get(&QueueAttributeName::RedrivePolicy)
                .expect("redrive"),
        )
        .expect("redrive JSON");
        let dead_letter = spec.dead_letter.as_ref().expect("DLQ spec");
        // moto reads it back reformatted: the count may be a number or a string.
        let count = redrive["maxReceiveCount"]
            .as_u64()
            .or_else(|| redrive["maxReceiveCount"].as_str()?.parse().ok());
        assert_eq!(count, Some(dead_letter.max_receive_count), "{task_type}");
        let dlq_name = dead_letter.queue.name_for(&world.prefix).expect("DLQ name");
        assert!(
            redrive["deadLetterTargetArn"]
                .as_str()
                .is_some_and(|arn| arn.ends_with(&format!(":{dlq_name}"))),
            "{redrive}"
        );
    }
}

/// DynamoDB holds an item of at most 400 KB: a translation that would take an object past it is
/// a ValidationError that changes nothing, against the emulator as in memory
/// (`shared/tests/embedded_api.rs`), not an InternalFailure that invites a retry.
#[tokio::test]
async fn a_translation_past_dynamodbs_item_size_is_a_validation_error() {
    let world = World::new().await;
    let text = "x".repeat(65_000);
    let (status, body) = world
        .graphql(&format!(
            r#"mutation {{ createMovie(movie: {{ title: "{text}", synopsis: "{text}" }}) {{ uid }} }}"#
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let uid = body["data"]["createMovie"]["uid"].as_str().expect("uid");
    let translate = |language: &str| {
        format!(
            r#"mutation {{ updateMovie(uid: "{uid}", language: "{language}", movie: {{ title: "{text}", synopsis: "{text}" }}) {{ uid }} }}"#
        )
    };
    let (status, body) = world.graphql(&translate("fr")).await;
    assert!(status == 200 && body.get("errors").is_none(), "{body}");
    // A third translation: 390 KB of texts.
    let (status, body) = world.graphql(&translate("de")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"][0]["errorType"], "ValidationError", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("400 KB"), "{message}");
    let (_, body) = world
        .graphql(&format!(
            r#"{{ getMovie(uid: "{uid}", ignore_availability: true) {{ _meta {{ available_languages }} }} }}"#
        ))
        .await;
    assert_eq!(
        body["data"]["getMovie"]["_meta"]["available_languages"],
        serde_json::json!(["en-GB", "fr"]),
        "{body}"
    );
}
