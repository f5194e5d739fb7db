//! `infra/template.yaml` against the code (no emulator needed). The template as committed must
//! agree with the code; and every kind of drift — a queue, DLQ, worker or variable removed or
//! renamed on either side, the timeout rule broken, a policy widened, a key renamed — must be
//! caught, which each test shows on a mutated copy.

use serde_norway::{Mapping, Value};
use shared::config::Role;
use shared::domain::TaskType;
use shared::infra::Template;
use tests::consistency::{Expectations, check};

fn template() -> Template {
    Template::embedded().expect("infra/template.yaml parses")
}

fn resources(template: &mut Template) -> &mut Mapping {
    template
        .value_mut()
        .get_mut("Resources")
        .and_then(Value::as_mapping_mut)
        .expect("Resources")
}

/// The value at `path` (mapping keys) below the template's root.
fn at<'a>(template: &'a mut Template, path: &[&str]) -> &'a mut Value {
    let mut value = template.value_mut();
    for key in path {
        value = value
            .get_mut(*key)
            .unwrap_or_else(|| panic!("no {key} in {path:?}"));
    }
    value
}

fn mapping<'a>(template: &'a mut Template, path: &[&str]) -> &'a mut Mapping {
    at(template, path).as_mapping_mut().expect("a mapping")
}

fn rename_resource(template: &mut Template, from: &str, to: &str) {
    let resources = resources(template);
    let resource = resources.remove(from).expect("resource");
    resources.insert(Value::from(to), resource);
}

fn problems_with(mutate: impl FnOnce(&mut Template)) -> Vec<String> {
    let mut copy = template();
    mutate(&mut copy);
    // Through YAML text and back, as the file would be.
    let copy = Template::parse(&copy.to_yaml().expect("yaml")).expect("parses");
    check(&copy, &Expectations::from_code())
}

fn code_problems_with(mutate: impl FnOnce(&mut Expectations)) -> Vec<String> {
    let mut code = Expectations::from_code();
    mutate(&mut code);
    check(&template(), &code)
}

#[track_caller]
fn assert_caught(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem mentioning {needle:?}, got {problems:#?}"
    );
}

#[test]
fn template_and_code_agree() {
    let problems = check(&template(), &Expectations::from_code());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_task_type_has_its_queue_dlq_and_worker() {
    let template = template();
    for task_type in TaskType::ALL {
        let worker = template.worker(*task_type).expect("worker");
        let queue = template.task_queue(*task_type).expect("queue");
        let dead_letter = queue.dead_letter.as_ref().expect("DLQ");
        assert_eq!(dead_letter.max_receive_count, 5, "the parameter's default");
        assert!(
            queue.visibility_timeout_secs.expect("visibility")
                >= 6 * worker.timeout_secs.expect("timeout")
        );
    }
}

#[test]
fn a_removed_or_renamed_queue_is_caught() {
    let problems = problems_with(|t| {
        resources(t).remove("PostDeleteQueue");
    });
    assert_caught(&problems, "PostDeleteQueue");

    let problems = problems_with(|t| rename_resource(t, "PostDeleteQueue", "PostDeletionQueue"));
    assert_caught(&problems, "no resource PostDeleteQueue");

    // A queue name that breaks the naming rule the emulator shares
    let problems = problems_with(|t| {
        *at(
            t,
            &["Resources", "PostDeleteQueue", "Properties", "QueueName"],
        ) = Value::from("post-delete");
    });
    assert_caught(&problems, "PostDeleteQueue's QueueName");
}

#[test]
fn a_removed_or_renamed_dead_letter_queue_is_caught() {
    let problems = problems_with(|t| {
        mapping(t, &["Resources", "PostCreateQueue", "Properties"]).remove("RedrivePolicy");
    });
    assert_caught(
        &problems,
        "PostCreateQueue (post_create) has no dead-letter queue",
    );

    let problems = problems_with(|t| {
        resources(t).remove("PostCreateDeadLetterQueue");
    });
    assert_caught(&problems, "PostCreateDeadLetterQueue");

    let problems = problems_with(|t| {
        rename_resource(t, "PostCreateDeadLetterQueue", "PostCreateDlq");
    });
    assert_caught(&problems, "no resource PostCreateDeadLetterQueue");

    let problems = problems_with(|t| {
        *at(
            t,
            &[
                "Resources",
                "PostCreateDeadLetterQueue",
                "Properties",
                "MessageRetentionPeriod",
            ],
        ) = Value::from(345_600);
    });
    assert_caught(
        &problems,
        "PostCreateDeadLetterQueue's MessageRetentionPeriod",
    );
}

#[test]
fn a_removed_or_renamed_worker_is_caught() {
    let problems = problems_with(|t| {
        resources(t).remove("PostUpdateAvailabilityFunction");
    });
    assert_caught(
        &problems,
        "no worker function for task type post_update_availability",
    );

    let problems = problems_with(|t| {
        *at(
            t,
            &[
                "Resources",
                "PostCreateFunction",
                "Properties",
                "Environment",
                "Variables",
                "TASK_TYPE",
            ],
        ) = Value::from("post_created");
    });
    assert_caught(&problems, "TASK_TYPE post_created");
    assert_caught(&problems, "no worker function for task type post_create");

    // Two functions on one queue
    let problems = problems_with(|t| {
        *at(
            t,
            &[
                "Resources",
                "PostUpdateFunction",
                "Properties",
                "Events",
                "Queue",
                "Properties",
                "Queue",
            ],
        ) = at(
            t,
            &[
                "Resources",
                "PostCreateFunction",
                "Properties",
                "Events",
                "Queue",
                "Properties",
                "Queue",
            ],
        )
        .clone();
    });
    assert_caught(&problems, "consumed by several workers");
}

#[test]
fn a_removed_renamed_or_extra_variable_is_caught_in_the_template() {
    let variables = [
        "Resources",
        "BatchDeleteFunction",
        "Properties",
        "Environment",
        "Variables",
    ];
    let problems = problems_with(|t| {
        mapping(t, &variables).remove("QUEUE_URL_POST_DELETE");
    });
    assert_caught(&problems, "is not given [\"QUEUE_URL_POST_DELETE\"]");

    let problems = problems_with(|t| {
        let variables = mapping(t, &variables);
        let value = variables.remove("QUEUE_URL_POST_DELETE").expect("variable");
        variables.insert(Value::from("QUEUE_URL_POST_DELETES"), value);
    });
    assert_caught(&problems, "is given [\"QUEUE_URL_POST_DELETES\"]");

    // A worker given a queue it does not send to (least privilege)
    let problems = problems_with(|t| {
        let value = at(t, &[&variables[..], &["QUEUE_URL_POST_DELETE"]].concat()).clone();
        mapping(
            t,
            &[
                "Resources",
                "PostCreateFunction",
                "Properties",
                "Environment",
                "Variables",
            ],
        )
        .insert(Value::from("QUEUE_URL_POST_DELETE"), value);
    });
    assert_caught(
        &problems,
        "PostCreateFunction (the post_create worker) is given",
    );

    // A shared variable dropped from Globals
    let problems = problems_with(|t| {
        mapping(t, &["Globals", "Function", "Environment", "Variables"]).remove("TASKS_TABLE");
    });
    assert_caught(&problems, "is not given [\"TASKS_TABLE\"]");

    // A variable pointing at the wrong queue
    let problems = problems_with(|t| {
        *at(
            t,
            &[
                "Resources",
                "ApiFunction",
                "Properties",
                "Environment",
                "Variables",
                "QUEUE_URL_POST_CREATE",
            ],
        ) = Value::Tagged(Box::new(serde_norway::value::TaggedValue {
            tag: serde_norway::value::Tag::new("Ref"),
            value: Value::from("PostUpdateQueue"),
        }));
    });
    assert_caught(&problems, "QUEUE_URL_POST_CREATE is !Ref PostUpdateQueue");
}

#[test]
fn a_removed_renamed_or_extra_variable_is_caught_in_the_code() {
    // The code reads a variable the template does not set
    let problems = code_problems_with(|code| {
        code.variables
            .get_mut(&Role::Api)
            .expect("api")
            .insert("QUEUE_URL_POST_DELETE_AVAILABILITY".to_owned());
    });
    assert_caught(
        &problems,
        "is not given [\"QUEUE_URL_POST_DELETE_AVAILABILITY\"]",
    );

    // The code stops reading one the template sets
    let problems = code_problems_with(|code| {
        code.variables
            .get_mut(&Role::Api)
            .expect("api")
            .remove("QUEUE_URL_POST_CREATE");
    });
    assert_caught(&problems, "is given [\"QUEUE_URL_POST_CREATE\"]");

    // The code renames one
    let problems = code_problems_with(|code| {
        for (role, variables) in code.variables.iter_mut() {
            if let Role::Worker(_) = role {
                variables.remove("TASK_TYPE");
                variables.insert("WORKER_TASK_TYPE".to_owned());
            }
        }
    });
    assert_caught(&problems, "is not given [\"WORKER_TASK_TYPE\"]");
    assert_caught(&problems, "is given [\"TASK_TYPE\"]");

    // The code stops knowing a task type: its worker is left over
    let problems = code_problems_with(|code| {
        code.task_types.retain(|t| *t != TaskType::PostDelete);
    });
    assert_caught(
        &problems,
        "TASK_TYPE post_delete, which is not a task type the code knows",
    );

    // A role starts sending somewhere its policy does not allow
    let problems = code_problems_with(|code| {
        code.sends_to
            .get_mut(&Role::Worker(TaskType::PostCreate))
            .expect("worker")
            .insert(TaskType::PostUpdate);
    });
    assert_caught(&problems, "PostCreateFunction may send to {}");
}

#[test]
fn the_visibility_timeout_rule_is_caught() {
    let problems = problems_with(|t| {
        *at(
            t,
            &["Resources", "PostCreateFunction", "Properties", "Timeout"],
        ) = Value::from(61);
    });
    assert_caught(
        &problems,
        "PostCreateQueue's VisibilityTimeout Some(360) is not at least 6 × PostCreateFunction's Timeout Some(61)",
    );
    assert_caught(
        &problems,
        "PostCreateFunction's Timeout Some(61) is longer than the task lease (60 s",
    );

    let problems = problems_with(|t| {
        *at(
            t,
            &[
                "Resources",
                "PostDeleteQueue",
                "Properties",
                "VisibilityTimeout",
            ],
        ) = Value::from(359);
    });
    assert_caught(&problems, "PostDeleteQueue's VisibilityTimeout Some(359)");

    // A worker without its own Timeout takes Globals'
    let problems = problems_with(|t| {
        mapping(t, &["Resources", "BatchDeleteFunction", "Properties"]).remove("Timeout");
        *at(t, &["Globals", "Function", "Timeout"]) = Value::from(90);
    });
    assert_caught(&problems, "BatchDeleteFunction's Timeout Some(90)");

    let problems = problems_with(|t| {
        mapping(t, &["Resources", "PostUpdateQueue", "Properties"]).remove("VisibilityTimeout");
    });
    assert_caught(&problems, "PostUpdateQueue's VisibilityTimeout None");
}

#[test]
fn event_source_settings_are_checked() {
    let event = [
        "Resources",
        "PostCreateFunction",
        "Properties",
        "Events",
        "Queue",
        "Properties",
    ];
    let problems = problems_with(|t| {
        *at(t, &[&event[..], &["FunctionResponseTypes"]].concat()) =
            Value::Sequence(vec![Value::from("ReportBatchItemFailure")]);
    });
    assert_caught(&problems, "PostCreateFunction's FunctionResponseTypes");

    let problems = problems_with(|t| {
        mapping(t, &event).remove("ScalingConfig");
    });
    assert_caught(&problems, "ScalingConfig.MaximumConcurrency is None");
}

#[test]
fn wider_policies_are_caught() {
    let statements = [
        "Resources",
        "WorkerTablesPolicy",
        "Properties",
        "PolicyDocument",
        "Statement",
    ];
    let problems = problems_with(|t| {
        let first = at(t, &statements)
            .as_sequence_mut()
            .and_then(|s| s.first_mut())
            .expect("a statement");
        first["Action"] = Value::from("dynamodb:*");
    });
    assert_caught(&problems, "wildcard action dynamodb:*");

    let problems = problems_with(|t| {
        let first = at(t, &statements)
            .as_sequence_mut()
            .and_then(|s| s.first_mut())
            .expect("a statement");
        first["Resource"] = Value::from("*");
    });
    assert_caught(&problems, "allows every resource (*)");

    // The API allowed to send to a queue no mutation sends to
    let problems = problems_with(|t| {
        let api_statements = at(t, &["Resources", "ApiFunction", "Properties", "Policies"])
            .as_sequence_mut()
            .and_then(|p| p.first_mut())
            .and_then(|p| p.get_mut("Statement"))
            .and_then(Value::as_sequence_mut)
            .expect("statements");
        let send = api_statements
            .iter_mut()
            .find(|s| s["Sid"] == "SendTasks")
            .expect("SendTasks");
        let extra = Value::Tagged(Box::new(serde_norway::value::TaggedValue {
            tag: serde_norway::value::Tag::new("GetAtt"),
            value: Value::from("PostDeleteAvailabilityQueue.Arn"),
        }));
        send["Resource"]
            .as_sequence_mut()
            .expect("resources")
            .push(extra);
    });
    assert_caught(&problems, "ApiFunction may send to");
}

#[test]
fn key_drift_between_keys_rs_and_the_tables_is_caught() {
    let problems = problems_with(|t| {
        let index = at(
            t,
            &[
                "Resources",
                "TasksTable",
                "Properties",
                "GlobalSecondaryIndexes",
            ],
        )
        .as_sequence_mut()
        .and_then(|s| s.last_mut())
        .expect("an index");
        index["IndexName"] = Value::from("by_task_type");
    });
    assert_caught(&problems, "TasksTable's indexes");

    let problems = problems_with(|t| {
        *at(
            t,
            &[
                "Resources",
                "TasksTable",
                "Properties",
                "TimeToLiveSpecification",
                "AttributeName",
            ],
        ) = Value::from("ttl");
    });
    assert_caught(&problems, "TasksTable's TTL attribute");

    let problems = problems_with(|t| {
        *at(t, &["Resources", "ContentTable", "DeletionPolicy"]) = Value::from("Delete");
    });
    assert_caught(&problems, "ContentTable's DeletionPolicy");
}

#[test]
fn json_logs_tracing_and_the_http_api_are_checked() {
    let problems = problems_with(|t| {
        mapping(t, &["Globals", "Function"]).remove("Tracing");
    });
    assert_caught(&problems, "Globals.Function.Tracing");

    let problems = problems_with(|t| {
        *at(t, &["Globals", "Function", "LoggingConfig", "LogFormat"]) = Value::from("Text");
    });
    assert_caught(&problems, "LogFormat");

    let problems = problems_with(|t| {
        mapping(t, &["Resources", "ApiFunction", "Properties", "Events"]).remove("GraphqlGet");
    });
    assert_caught(&problems, "ApiFunction's routes");
}

#[test]
fn the_dead_letter_consumer_and_the_sweeper_are_checked() {
    // The DLQ consumer stops reading one dead-letter queue
    let problems = problems_with(|t| {
        let events = at(
            t,
            &["Resources", "DeadLetterFunction", "Properties", "Events"],
        );
        if let Value::Mapping(events) = events {
            events.remove("PostDeleteDeadLetters");
        }
    });
    assert_caught(&problems, "DeadLetterFunction consumes");

    // The sweeper is removed: no function plays its role any more
    let problems = problems_with(|t| {
        if let Value::Mapping(resources) = at(t, &["Resources"]) {
            resources.remove("SweeperFunction");
        }
    });
    assert_caught(&problems, "no function plays the sweeper");

    // The sweeper loses a queue it re-sends to
    let problems = problems_with(|t| {
        if let Value::Mapping(variables) = at(
            t,
            &[
                "Resources",
                "SweeperFunction",
                "Properties",
                "Environment",
                "Variables",
            ],
        ) {
            variables.remove("QUEUE_URL_BATCH_DELETE");
        }
    });
    assert_caught(&problems, "is not given [\"QUEUE_URL_BATCH_DELETE\"]");
}

#[test]
fn the_api_token_stays_a_secret_read_only_by_the_api() {
    let api_env = [
        "Resources",
        "ApiFunction",
        "Properties",
        "Environment",
        "Variables",
    ];
    // The token written into the function's environment
    let problems = problems_with(|t| {
        mapping(t, &api_env).insert(
            Value::from("API_TOKEN_SECRET_ARN"),
            Value::from("my-plain-token"),
        );
    });
    assert_caught(&problems, "not !Ref to a secret");

    // The token written into the template
    let problems = problems_with(|t| {
        let properties = mapping(t, &["Resources", "ApiTokenSecret", "Properties"]);
        properties.remove("GenerateSecretString");
        properties.insert(Value::from("SecretString"), Value::from("my-plain-token"));
    });
    assert_caught(&problems, "ApiTokenSecret has a SecretString");

    fn read_token(t: &mut Template) -> &mut Value {
        at(t, &["Resources", "ApiFunction", "Properties", "Policies"])
            .as_sequence_mut()
            .and_then(|p| p.first_mut())
            .and_then(|p| p.get_mut("Statement"))
            .and_then(Value::as_sequence_mut)
            .and_then(|s| s.iter_mut().find(|s| s["Sid"] == "ReadApiToken"))
            .expect("ReadApiToken")
    }
    let problems = problems_with(|t| {
        read_token(t)["Action"] = Value::from("secretsmanager:*");
    });
    assert_caught(&problems, "wildcard action secretsmanager:*");
    let problems = problems_with(|t| {
        read_token(t)["Resource"] = Value::from("*");
    });
    assert_caught(&problems, "allows every resource (*)");
    let problems = problems_with(|t| {
        read_token(t)["Action"] = Value::from("secretsmanager:PutSecretValue");
    });
    assert_caught(&problems, "only GetSecretValue");

    // A worker given the API's secret
    let problems = problems_with(|t| {
        let statements = at(
            t,
            &[
                "Resources",
                "WorkerTablesPolicy",
                "Properties",
                "PolicyDocument",
                "Statement",
            ],
        )
        .as_sequence_mut()
        .expect("statements");
        let mut extra = Mapping::new();
        extra.insert(Value::from("Sid"), Value::from("Leak"));
        extra.insert(Value::from("Effect"), Value::from("Allow"));
        extra.insert(
            Value::from("Action"),
            Value::from("secretsmanager:GetSecretValue"),
        );
        extra.insert(
            Value::from("Resource"),
            Value::Tagged(Box::new(serde_norway::value::TaggedValue {
                tag: serde_norway::value::Tag::new("Ref"),
                value: Value::from("ApiTokenSecret"),
            })),
        );
        statements.push(Value::Mapping(extra));
    });
    assert_caught(
        &problems,
        "only GetSecretValue on the secret its API_TOKEN_SECRET_ARN",
    );
}
