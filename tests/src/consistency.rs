//! The SAM template against the code. [`check`] lists every disagreement between
//! `infra/template.yaml` and what the code expects ([`Expectations::from_code`]): the task types
//! and their queue, dead-letter queue and worker; the variables each function is given and the
//! ones its role reads; the rule that a queue's visibility timeout is at least six times its
//! worker's timeout; event source settings; least-privilege policies; table keys and indexes;
//! build settings; outputs. Both sides are inputs, so the tests can show that a change on either
//! side is caught.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use shared::adapters::keys;
use shared::adapters::provision::queue_name;
use shared::config::{
    API_TOKEN_SECRET_ARN, CONTENT_TABLE, CORS_ALLOWED_ORIGINS, GRAPHQL_INTROSPECTION, Role,
    TASK_TYPE, TASKS_TABLE, WORKER_ROLE, queue_url_var,
};
use shared::domain::TaskType;
use shared::infra::{Expr, FunctionSpec, SAM_TRANSFORM, TableSpec, Template};

/// SQS's visibility timeout must cover a worker's whole run and Lambda's retries of it.
pub const VISIBILITY_TO_TIMEOUT: u64 = 6;
/// How long a dead-letter queue keeps a message (SQS's maximum, 14 days).
pub const DLQ_RETENTION_SECS: u64 = 14 * 24 * 60 * 60;
/// Stack name placeholder of the template's queue names.
const STACK: &str = "${AWS::StackName}";

/// What the code expects of the deployment.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Every task type the code knows: each needs a queue, a DLQ and a worker.
    pub task_types: Vec<TaskType>,
    /// The variables each deployed function's role reads.
    pub variables: HashMap<Role, BTreeSet<String>>,
    /// The task types each role sends to (so the queues its policy may send to).
    pub sends_to: HashMap<Role, BTreeSet<TaskType>>,
}

impl Expectations {
    pub fn from_code() -> Expectations {
        let roles = Role::deployed();
        Expectations {
            task_types: TaskType::ALL.to_vec(),
            variables: roles
                .iter()
                .map(|r| (*r, r.variables().into_iter().collect()))
                .collect(),
            sends_to: roles
                .iter()
                .map(|r| (*r, r.sends_to().iter().copied().collect()))
                .collect(),
        }
    }
}

struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    fn expect_eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, found: T, expected: T) {
        if found != expected {
            self.add(format!("{what} is {found:?}, expected {expected:?}"));
        }
    }
}

/// Every disagreement between `template` and `code`; empty when they agree.
pub fn check(template: &Template, code: &Expectations) -> Vec<String> {
    let mut problems = Problems(Vec::new());
    if !template.transforms().iter().any(|t| t == SAM_TRANSFORM) {
        problems.add(format!("Transform is not {SAM_TRANSFORM}"));
    }
    let functions = match template.functions() {
        Ok(functions) => functions,
        Err(e) => {
            problems.add(e.to_string());
            return problems.0;
        }
    };

    // Which role each function plays: a worker by TASK_TYPE, the dead-letter consumer and the
    // sweeper by WORKER_ROLE, the API by its HTTP routes.
    let mut by_role: BTreeMap<String, (Role, &FunctionSpec)> = BTreeMap::new();
    for function in &functions {
        let worker_role = function
            .environment
            .get(WORKER_ROLE)
            .and_then(Expr::literal);
        let role = match (function.task_type(), function.http_routes.is_empty()) {
            (None, true) if worker_role == Some("dead_letters") => Role::DeadLetters,
            (None, true) if worker_role == Some("sweeper") => Role::Sweeper,
            (Some(text), true) => match text.parse::<TaskType>() {
                Ok(t) if code.task_types.contains(&t) => Role::Worker(t),
                _ => {
                    problems.add(format!(
                        "{} has TASK_TYPE {text}, which is not a task type the code knows",
                        function.logical_id
                    ));
                    continue;
                }
            },
            (None, false) => Role::Api,
            _ => {
                problems.add(format!(
                    "{} plays no role the code knows (config::Role): give it one there first",
                    function.logical_id
                ));
                continue;
            }
        };
        let key = format!("{role:?}");
        if let Some((_, other)) = by_role.insert(key, (role, function)) {
            problems.add(format!(
                "{} and {} both play {role}",
                other.logical_id, function.logical_id
            ));
        }
    }
    let function_of = |role: Role| by_role.values().find(|(r, _)| *r == role).map(|(_, f)| *f);
    for task_type in &code.task_types {
        if function_of(Role::Worker(*task_type)).is_none() {
            problems.add(format!(
                "no worker function for task type {task_type} (TASK_TYPE: {task_type})"
            ));
        }
    }

    // The queue (and DLQ) each worker consumes.
    let mut queue_of: HashMap<TaskType, String> = HashMap::new();
    let mut consumers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (role, function) in by_role.values() {
        let Role::Worker(task_type) = *role else {
            continue;
        };
        check_worker(template, task_type, function, &mut problems, &mut queue_of);
        if let Some(queue) = queue_of.get(&task_type) {
            consumers
                .entry(queue.clone())
                .or_default()
                .push(function.logical_id.clone());
        }
    }
    for (queue, workers) in consumers {
        if workers.len() > 1 {
            problems.add(format!(
                "{queue} is consumed by several workers: {workers:?}"
            ));
        }
    }

    // Variables and policies, per role.
    for (role, expected) in &code.variables {
        let Some(function) = function_of(*role) else {
            if !matches!(role, Role::Worker(_)) {
                problems.add(format!("no function plays {role}"));
            }
            continue;
        };
        let found: BTreeSet<String> = function.environment.keys().cloned().collect();
        let missing: Vec<_> = expected.difference(&found).collect();
        let extra: Vec<_> = found.difference(expected).collect();
        if !missing.is_empty() {
            problems.add(format!(
                "{} ({role}) is not given {missing:?}, which the code reads",
                function.logical_id
            ));
        }
        if !extra.is_empty() {
            problems.add(format!(
                "{} ({role}) is given {extra:?}, which the code does not read",
                function.logical_id
            ));
        }
        check_variables(template, function, &queue_of, &mut problems);
        let sends_to = code.sends_to.get(role).cloned().unwrap_or_default();
        check_policies(template, function, &sends_to, &queue_of, &mut problems);
        check_build(function, *role, &mut problems);
    }
    if let Some(api) = function_of(Role::Api) {
        check_api(template, api, &mut problems);
    }
    if let Some(consumer) = function_of(Role::DeadLetters) {
        check_dead_letters(template, consumer, &queue_of, &mut problems);
    }
    check_globals(template, &mut problems);

    check_tables(template, &mut problems);
    check_outputs(template, &queue_of, &mut problems);
    problems.0
}

/// The dead-letter consumer reads every worker queue's dead-letter queue, reporting failed
/// records one by one.
fn check_dead_letters(
    template: &Template,
    consumer: &FunctionSpec,
    queue_of: &HashMap<TaskType, String>,
    problems: &mut Problems,
) {
    let expected: BTreeSet<String> = queue_of
        .values()
        .filter_map(|queue| template.queue(queue).ok()?.dead_letter)
        .map(|dead_letter| dead_letter.queue.logical_id)
        .collect();
    let found: BTreeSet<String> = consumer
        .sqs_events
        .iter()
        .filter_map(|event| event.queue.resource().map(str::to_owned))
        .collect();
    if found != expected {
        problems.add(format!(
            "{} consumes {found:?}, but the dead-letter queues are {expected:?}",
            consumer.logical_id
        ));
    }
    for event in &consumer.sqs_events {
        problems.expect_eq(
            &format!(
                "{}'s {} FunctionResponseTypes",
                consumer.logical_id, event.name
            ),
            event.function_response_types.clone(),
            vec!["ReportBatchItemFailures".to_owned()],
        );
    }
}

fn check_worker(
    template: &Template,
    task_type: TaskType,
    function: &FunctionSpec,
    problems: &mut Problems,
    queue_of: &mut HashMap<TaskType, String>,
) {
    let name = &function.logical_id;
    let [event] = function.sqs_events.as_slice() else {
        problems.add(format!(
            "{name} ({task_type}) has {} SQS events, not one",
            function.sqs_events.len()
        ));
        return;
    };
    problems.expect_eq(
        &format!("{name}'s FunctionResponseTypes"),
        event.function_response_types.clone(),
        vec!["ReportBatchItemFailures".to_owned()],
    );
    match event.batch_size {
        Some(1..=10) => {}
        other => problems.add(format!("{name}'s BatchSize is {other:?}, not 1..=10")),
    }
    if event.maximum_batching_window_secs.is_none() {
        problems.add(format!("{name} sets no MaximumBatchingWindowInSeconds"));
    }
    match event.maximum_concurrency {
        Some(2..) => {}
        other => problems.add(format!(
            "{name}'s ScalingConfig.MaximumConcurrency is {other:?}, not ≥ 2"
        )),
    }
    let queue = match template.task_queue(task_type) {
        Ok(queue) => queue,
        Err(e) => {
            problems.add(format!("{task_type}: {e}"));
            return;
        }
    };
    queue_of.insert(task_type, queue.logical_id.clone());
    problems.expect_eq(
        &format!("{}'s QueueName", queue.logical_id),
        queue.name.clone(),
        Some(queue_name(STACK, task_type)),
    );
    match (queue.visibility_timeout_secs, function.timeout_secs) {
        (Some(visibility), Some(timeout)) if visibility >= VISIBILITY_TO_TIMEOUT * timeout => {}
        (visibility, timeout) => problems.add(format!(
            "{}'s VisibilityTimeout {visibility:?} is not at least {VISIBILITY_TO_TIMEOUT} × \
             {name}'s Timeout {timeout:?}",
            queue.logical_id
        )),
    }
    // A run never outlives its function, so a lease as long as the timeout is never taken from
    // a live run.
    let lease = shared::engine::DEFAULT_LEASE.as_secs();
    if function.timeout_secs.is_none_or(|timeout| timeout > lease) {
        problems.add(format!(
            "{name}'s Timeout {:?} is longer than the task lease ({lease} s, engine::DEFAULT_LEASE)",
            function.timeout_secs
        ));
    }
    let Some(dead_letter) = &queue.dead_letter else {
        problems.add(format!(
            "{} ({task_type}) has no dead-letter queue (RedrivePolicy)",
            queue.logical_id
        ));
        return;
    };
    let dlq = &dead_letter.queue;
    if dlq.dead_letter.is_some() {
        problems.add(format!("{} (a DLQ) redrives again", dlq.logical_id));
    }
    problems.expect_eq(
        &format!("{}'s QueueName", dlq.logical_id),
        dlq.name.clone(),
        Some(format!("{}-dlq", queue_name(STACK, task_type))),
    );
    problems.expect_eq(
        &format!("{}'s MessageRetentionPeriod", dlq.logical_id),
        dlq.message_retention_secs,
        Some(DLQ_RETENTION_SECS),
    );
    if dead_letter.max_receive_count < 1 {
        problems.add(format!("{}'s maxReceiveCount is 0", queue.logical_id));
    }
}

fn check_variables(
    template: &Template,
    function: &FunctionSpec,
    queue_of: &HashMap<TaskType, String>,
    problems: &mut Problems,
) {
    let name = &function.logical_id;
    for (variable, value) in &function.environment {
        if variable == CONTENT_TABLE || variable == TASKS_TABLE {
            match value {
                Expr::Ref(table)
                    if template.resource_type(table).as_deref() == Some("AWS::DynamoDB::Table") => {
                }
                other => problems.add(format!("{name}'s {variable} is {other}, not a table")),
            }
        } else if variable == API_TOKEN_SECRET_ARN {
            check_token_secret(template, name, value, problems);
        } else if variable == CORS_ALLOWED_ORIGINS || variable == GRAPHQL_INTROSPECTION {
            // Settings, not resources: a parameter (or a literal), never a reference to data.
            if !matches!(value, Expr::Literal(_))
                && !matches!(value, Expr::Ref(p) if template.parameter_default(p).is_some())
            {
                problems.add(format!("{name}'s {variable} is {value}, not a parameter"));
            }
        } else if variable == TASK_TYPE {
            // Checked with the worker's role.
        } else if let Some(task_type) = TaskType::ALL
            .iter()
            .find(|t| queue_url_var(**t) == *variable)
        {
            match (value, queue_of.get(task_type)) {
                (Expr::Ref(queue), Some(expected)) if queue == expected => {}
                (other, expected) => problems.add(format!(
                    "{name}'s {variable} is {other}, not !Ref {}",
                    expected.map_or("(the missing queue)", String::as_str)
                )),
            }
        }
    }
}

/// The API token: a `!Ref` to a Secrets Manager secret the template generates, so the token is
/// in neither the template nor the function's environment.
fn check_token_secret(template: &Template, name: &str, value: &Expr, problems: &mut Problems) {
    let Expr::Ref(secret) = value else {
        problems.add(format!(
            "{name}'s {API_TOKEN_SECRET_ARN} is {value}, not !Ref to a secret (never the token)"
        ));
        return;
    };
    if template.resource_type(secret).as_deref() != Some("AWS::SecretsManager::Secret") {
        problems.add(format!(
            "{name}'s {API_TOKEN_SECRET_ARN} is !Ref {secret}, not an AWS::SecretsManager::Secret"
        ));
        return;
    }
    let properties = template.resource(secret).and_then(|r| r.get("Properties"));
    if properties.and_then(|p| p.get("SecretString")).is_some() {
        problems.add(format!(
            "{secret} has a SecretString: the token would be in the template in plain text"
        ));
    }
    if properties
        .and_then(|p| p.get("GenerateSecretString"))
        .is_none()
    {
        problems.add(format!("{secret} has no GenerateSecretString"));
    }
}

fn is_wildcard(action: &str) -> bool {
    action == "*" || action.ends_with(":*") || action.ends_with('*')
}

fn check_policies(
    template: &Template,
    function: &FunctionSpec,
    sends_to: &BTreeSet<TaskType>,
    queue_of: &HashMap<TaskType, String>,
    problems: &mut Problems,
) {
    let name = &function.logical_id;
    if !function.other_policies.is_empty() {
        problems.add(format!(
            "{name} uses policies this check cannot read: {:?} (write statements)",
            function.other_policies
        ));
    }
    let tables: BTreeSet<&str> = [CONTENT_TABLE, TASKS_TABLE]
        .iter()
        .filter_map(|v| function.environment.get(*v)?.resource())
        .collect();
    let token_secret = function
        .environment
        .get(API_TOKEN_SECRET_ARN)
        .and_then(Expr::resource);
    let mut send_targets = BTreeSet::new();
    for statement in &function.statements {
        let what = format!(
            "{name}'s statement {}",
            statement.sid.as_deref().unwrap_or("?")
        );
        if statement.effect != "Allow" {
            continue;
        }
        for action in &statement.actions {
            if is_wildcard(action) {
                problems.add(format!("{what} allows the wildcard action {action}"));
            }
        }
        for resource in &statement.resources {
            let text = match resource {
                Expr::Literal(text) | Expr::Sub(text) => text.as_str(),
                _ => "",
            };
            if text == "*" {
                problems.add(format!("{what} allows every resource (*)"));
                continue;
            }
            if let Expr::Sub(text) = resource
                && text.contains('*')
                && !text.ends_with("/index/*")
            {
                problems.add(format!("{what} has the wildcard resource {text}"));
            }
            let Some(target) = resource.resource() else {
                problems.add(format!(
                    "{what} names a resource outside the template: {resource}"
                ));
                continue;
            };
            let kind = template.resource_type(target).unwrap_or_default();
            for action in &statement.actions {
                let service = action.split(':').next().unwrap_or_default();
                match (service, kind.as_str()) {
                    ("dynamodb", "AWS::DynamoDB::Table") if tables.contains(target) => {}
                    ("dynamodb", _) => problems.add(format!(
                        "{what}: {action} on {target}, not one of its tables {tables:?}"
                    )),
                    ("sqs", "AWS::SQS::Queue") if action == "sqs:SendMessage" => {
                        send_targets.insert(target.to_owned());
                    }
                    ("sqs", _) => problems.add(format!(
                        "{what}: {action} on {target} (functions only send; Lambda's event \
                         source mapping receives)"
                    )),
                    ("secretsmanager", "AWS::SecretsManager::Secret")
                        if action == "secretsmanager:GetSecretValue"
                            && token_secret == Some(target) => {}
                    ("secretsmanager", _) => problems.add(format!(
                        "{what}: {action} on {target}; only GetSecretValue on the secret its \
                         {API_TOKEN_SECRET_ARN} names"
                    )),
                    (other, _) => problems.add(format!("{what}: unexpected service {other}")),
                }
            }
        }
    }
    let expected: BTreeSet<String> = sends_to
        .iter()
        .filter_map(|t| queue_of.get(t).cloned())
        .collect();
    if send_targets != expected {
        problems.add(format!(
            "{name} may send to {send_targets:?}, but its role sends to {expected:?}"
        ));
    }
}

fn check_build(function: &FunctionSpec, role: Role, problems: &mut Problems) {
    let name = &function.logical_id;
    let crate_name = match role {
        Role::Api => "api",
        Role::Worker(_) | Role::DeadLetters | Role::Sweeper | Role::Local => "worker",
    };
    problems.expect_eq(
        &format!("{name}'s BuildMethod"),
        function.build_method.as_deref(),
        Some("rust-cargolambda"),
    );
    problems.expect_eq(
        &format!("{name}'s Binary"),
        function.binary.as_deref(),
        Some(crate_name),
    );
    let code_uri = format!("../functions/{crate_name}");
    problems.expect_eq(
        &format!("{name}'s CodeUri"),
        function.code_uri.as_deref(),
        Some(code_uri.as_str()),
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("infra")
        .join(&code_uri)
        .join("Cargo.toml");
    let package = std::fs::read_to_string(&manifest).unwrap_or_default();
    if !package.contains(&format!("name = \"{crate_name}\"")) {
        problems.add(format!(
            "{name}: {} is not the manifest of package {crate_name}",
            manifest.display()
        ));
    }
    problems.expect_eq(
        &format!("{name}'s Runtime"),
        function.runtime.as_deref(),
        Some("provided.al2023"),
    );
    problems.expect_eq(
        &format!("{name}'s Handler"),
        function.handler.as_deref(),
        Some("bootstrap"),
    );
    problems.expect_eq(
        &format!("{name}'s Architectures"),
        function.architectures.clone(),
        vec!["arm64".to_owned()],
    );
}

/// JSON logs and tracing for every function.
fn check_globals(template: &Template, problems: &mut Problems) {
    let globals = template
        .value()
        .get("Globals")
        .and_then(|g| g.get("Function"));
    let get = |path: &[&str]| {
        let mut value = globals?;
        for key in path {
            value = value.get(*key)?;
        }
        value.as_str().map(str::to_owned)
    };
    problems.expect_eq(
        "Globals.Function.Tracing",
        get(&["Tracing"]).as_deref(),
        Some("Active"),
    );
    problems.expect_eq(
        "Globals.Function.LoggingConfig.LogFormat",
        get(&["LoggingConfig", "LogFormat"]).as_deref(),
        Some("JSON"),
    );
}

fn check_api(template: &Template, api: &FunctionSpec, problems: &mut Problems) {
    let mut routes: Vec<(String, String)> = api
        .http_routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    routes.sort();
    problems.expect_eq(
        &format!("{}'s routes", api.logical_id),
        routes,
        vec![
            ("GET".to_owned(), "/graphql".to_owned()),
            ("OPTIONS".to_owned(), "/graphql".to_owned()),
            ("POST".to_owned(), "/graphql".to_owned()),
        ],
    );
    for route in &api.http_routes {
        let kind = route.api.resource().and_then(|r| template.resource_type(r));
        if kind.as_deref() != Some("AWS::Serverless::HttpApi") {
            problems.add(format!(
                "{}'s route {} is on no HttpApi of the template",
                api.logical_id, route.name
            ));
        }
    }
}

fn index_keys(table: &TableSpec) -> BTreeMap<String, (String, Option<String>, String)> {
    table
        .indexes
        .iter()
        .map(|i| {
            (
                i.name.clone(),
                (
                    i.hash_key.clone(),
                    i.range_key.clone(),
                    i.projection.clone(),
                ),
            )
        })
        .collect()
}

fn check_table(
    table: &TableSpec,
    key: (&str, Option<&str>),
    indexes: &[(&str, &str, &str)],
    ttl: Option<&str>,
    problems: &mut Problems,
) {
    let name = &table.logical_id;
    problems.expect_eq(
        &format!("{name}'s key"),
        (table.hash_key.as_str(), table.range_key.as_deref()),
        key,
    );
    let expected: BTreeMap<String, (String, Option<String>, String)> = indexes
        .iter()
        .map(|(index, hash, range)| {
            (
                (*index).to_owned(),
                (
                    (*hash).to_owned(),
                    Some((*range).to_owned()),
                    "ALL".to_owned(),
                ),
            )
        })
        .collect();
    problems.expect_eq(&format!("{name}'s indexes"), index_keys(table), expected);
    problems.expect_eq(
        &format!("{name}'s TTL attribute"),
        table.ttl_attribute.as_deref(),
        ttl,
    );
    let keyed: BTreeSet<&str> = std::iter::once(key.0)
        .chain(key.1)
        .chain(indexes.iter().flat_map(|(_, h, r)| [*h, *r]))
        .collect();
    let defined: BTreeSet<&str> = table.attributes.iter().map(|(a, _)| a.as_str()).collect();
    problems.expect_eq(&format!("{name}'s AttributeDefinitions"), defined, keyed);
    for (attribute, kind) in &table.attributes {
        if kind != "S" {
            problems.add(format!(
                "{name}: key attribute {attribute} is {kind}, not S"
            ));
        }
    }
    problems.expect_eq(
        &format!("{name}'s BillingMode"),
        table.billing_mode.as_deref(),
        Some("PAY_PER_REQUEST"),
    );
    if !table.point_in_time_recovery {
        problems.add(format!("{name} has no point-in-time recovery"));
    }
    problems.expect_eq(
        &format!("{name}'s DeletionPolicy"),
        table.deletion_policy.as_deref(),
        Some("Retain"),
    );
}

fn check_tables(template: &Template, problems: &mut Problems) {
    match template.table_of_variable(CONTENT_TABLE) {
        Ok(content) => check_table(
            &content,
            (keys::PK, Some(keys::SK)),
            &[(keys::GSI1, keys::GSI1_PK, keys::GSI1_SK)],
            None,
            problems,
        ),
        Err(e) => problems.add(e.to_string()),
    }
    match template.table_of_variable(TASKS_TABLE) {
        Ok(tasks) => check_table(
            &tasks,
            (keys::TASK_ID, None),
            &[
                (keys::BY_STATUS, keys::STATUS, keys::CREATED_KEY),
                (keys::BY_CREATED, keys::ALL, keys::CREATED_KEY),
                (keys::BY_OBJECT, keys::OBJECT_UID, keys::CREATED_KEY),
                (keys::BY_TYPE, keys::TASK_TYPE, keys::CREATED_KEY),
            ],
            Some(keys::EXPIRES_AT),
            problems,
        ),
        Err(e) => problems.add(e.to_string()),
    }
}

fn check_outputs(
    template: &Template,
    queue_of: &HashMap<TaskType, String>,
    problems: &mut Problems,
) {
    let outputs = template.outputs();
    let refs: BTreeSet<&str> = outputs
        .values()
        .filter_map(|v| match v {
            Expr::Ref(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let graphql = outputs.values().any(|v| {
        matches!(v, Expr::Sub(text) if text.contains("${HttpApi}") && text.ends_with("/graphql"))
    });
    if !graphql {
        problems.add("no output gives the GraphQL URL");
    }
    for variable in [CONTENT_TABLE, TASKS_TABLE] {
        if let Ok(table) = template.table_of_variable(variable)
            && !refs.contains(table.logical_id.as_str())
        {
            problems.add(format!("no output gives {}'s name", table.logical_id));
        }
    }
    for (task_type, queue) in queue_of {
        if !refs.contains(queue.as_str()) {
            problems.add(format!("no output gives the URL of {queue} ({task_type})"));
        }
    }
}
