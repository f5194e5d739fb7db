//! Configuration read once at start-up from the environment, under the names the SAM template
//! sets. A missing variable fails start-up with its name.
//!
//! Each function gets only what it uses (least privilege): the API the queues of the task types
//! mutations create, a worker its own `TASK_TYPE` and the queues of its child task types.
//! [`Role::variables`] is the one list of what each role reads; the template consistency test
//! compares it with the variables the template gives each function.

use std::collections::HashMap;
use std::sync::Arc;

use crate::adapters::{DynamoStore, SqsTaskQueue, TableNames};
use crate::domain::TaskType;
use crate::engine::Deps;
use crate::http::CorsOrigins;
use crate::ports::SystemClock;

pub const CONTENT_TABLE: &str = "CONTENT_TABLE";
pub const TASKS_TABLE: &str = "TASKS_TABLE";
/// The worker Lambda's own task type.
pub const TASK_TYPE: &str = "TASK_TYPE";
/// The queues' redrive limit (the template's `MaxReceiveCount`): a worker makes a record's last
/// attempt end its task FAILED.
pub const MAX_RECEIVE_COUNT: &str = "MAX_RECEIVE_COUNT";
/// What the worker binary is when it is not a task worker: `dead_letters` or `sweeper`.
pub const WORKER_ROLE: &str = "WORKER_ROLE";
/// The API: the ARN (or name) of the Secrets Manager secret whose string is the API token.
pub const API_TOKEN_SECRET_ARN: &str = "API_TOKEN_SECRET_ARN";
/// The API: web origins browsers may call it from, comma-separated, or `*`; empty: none.
pub const CORS_ALLOWED_ORIGINS: &str = "CORS_ALLOWED_ORIGINS";
/// The API: `true` to answer introspection (`__schema`, `__type`), `false` to refuse it.
pub const GRAPHQL_INTROSPECTION: &str = "GRAPHQL_INTROSPECTION";
/// What the API reads besides its tables and queues ([`ApiEnv`]).
pub const API_VARIABLES: [&str; 3] = [
    API_TOKEN_SECRET_ARN,
    CORS_ALLOWED_ORIGINS,
    GRAPHQL_INTROSPECTION,
];

/// `QUEUE_URL_POST_CREATE`, `QUEUE_URL_BATCH_DELETE`, …
pub fn queue_url_var(task_type: TaskType) -> String {
    format!("QUEUE_URL_{}", task_type.as_str().to_ascii_uppercase())
}

/// Which program reads its configuration, and so which queues it may send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The API Lambda: sends the task types mutations create ([`TaskType::FROM_API`]).
    Api,
    /// A worker Lambda: sends only its type's children ([`TaskType::children`]).
    Worker(TaskType),
    /// The consumer of every dead-letter queue: marks their tasks FAILED.
    DeadLetters,
    /// The scheduled sweeper of the enqueue gap: sends to every queue.
    Sweeper,
    /// `skylark-local --emulator`: polls and sends every queue. Not deployed.
    Local,
}

impl Role {
    /// The roles deployed by the SAM template, one function each.
    pub fn deployed() -> Vec<Role> {
        std::iter::once(Role::Api)
            .chain(TaskType::ALL.iter().map(|t| Role::Worker(*t)))
            .chain([Role::DeadLetters, Role::Sweeper])
            .collect()
    }

    /// The task types whose queues this role sends to.
    pub fn sends_to(self) -> &'static [TaskType] {
        match self {
            Role::Api => TaskType::FROM_API,
            Role::Worker(task_type) => task_type.sends_to(),
            Role::DeadLetters => &[],
            Role::Sweeper | Role::Local => TaskType::ALL,
        }
    }

    /// Every variable this role reads, in reading order.
    pub fn variables(self) -> Vec<String> {
        let mut names = vec![CONTENT_TABLE.to_owned(), TASKS_TABLE.to_owned()];
        match self {
            Role::Worker(_) => {
                names.push(TASK_TYPE.to_owned());
                names.push(MAX_RECEIVE_COUNT.to_owned());
            }
            Role::DeadLetters | Role::Sweeper => names.push(WORKER_ROLE.to_owned()),
            Role::Api | Role::Local => {}
        }
        names.extend(self.sends_to().iter().map(|t| queue_url_var(*t)));
        if self == Role::Api {
            names.extend(API_VARIABLES.iter().map(|v| (*v).to_owned()));
        }
        names
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Api => f.write_str("the API"),
            Role::Worker(task_type) => write!(f, "the {task_type} worker"),
            Role::DeadLetters => f.write_str("the dead-letter consumer"),
            Role::Sweeper => f.write_str("the sweeper"),
            Role::Local => f.write_str("skylark-local"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(String),
    #[error("environment variable {name} is not valid: {reason}")]
    Invalid { name: String, reason: String },
}

/// How the API Lambda meets its callers, from [`API_VARIABLES`].
#[derive(Debug, Clone)]
pub struct ApiEnv {
    pub token_secret: String,
    pub cors: CorsOrigins,
    pub introspection: bool,
}

impl ApiEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&env)
    }

    /// Reads exactly [`API_VARIABLES`] through `lookup`.
    pub fn read(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let token_secret = required(lookup, API_TOKEN_SECRET_ARN)?;
        let cors = CorsOrigins::parse(&lookup(CORS_ALLOWED_ORIGINS).unwrap_or_default()).map_err(
            |reason| ConfigError::Invalid {
                name: CORS_ALLOWED_ORIGINS.to_owned(),
                reason,
            },
        )?;
        let introspection = match required(lookup, GRAPHQL_INTROSPECTION)?.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ConfigError::Invalid {
                    name: GRAPHQL_INTROSPECTION.to_owned(),
                    reason: format!("`{other}` is not true or false"),
                });
            }
        };
        Ok(ApiEnv {
            token_secret,
            cors,
            introspection,
        })
    }
}

/// Where the AWS adapters find their tables and queues.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub tables: TableNames,
    /// Only the queues this program sends to (or, for `skylark-local`, polls).
    pub queue_urls: HashMap<TaskType, String>,
}

/// Standard mode (exponential backoff with jitter, a client-side retry quota), 5 attempts from
/// 50 ms: throttling and 5xx from DynamoDB or SQS are absorbed well inside a record's lease.
pub fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(5)
        .with_initial_backoff(std::time::Duration::from_millis(50))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn required(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Result<String, ConfigError> {
    lookup(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::Missing(name.to_owned()))
}

/// `TASK_TYPE`, parsed.
pub fn task_type(lookup: &impl Fn(&str) -> Option<String>) -> Result<TaskType, ConfigError> {
    let value = required(lookup, TASK_TYPE)?;
    value.parse().map_err(|_| ConfigError::Invalid {
        name: TASK_TYPE.to_owned(),
        reason: format!("`{value}` is not a task type"),
    })
}

impl AwsSettings {
    /// The API Lambda's settings, from the environment.
    pub fn for_api() -> Result<Self, ConfigError> {
        Self::read(Role::Api, &env)
    }

    /// What the worker binary is, from `WORKER_ROLE` (absent: a task worker, `TASK_TYPE`).
    pub fn worker_role() -> Result<Role, ConfigError> {
        match env(WORKER_ROLE).as_deref() {
            None | Some("") => Ok(Role::Worker(task_type(&env)?)),
            Some("dead_letters") => Ok(Role::DeadLetters),
            Some("sweeper") => Ok(Role::Sweeper),
            Some(other) => Err(ConfigError::Invalid {
                name: WORKER_ROLE.to_owned(),
                reason: format!("`{other}` is not dead_letters or sweeper"),
            }),
        }
    }

    /// The settings of `role`, from the environment.
    pub fn for_role_from_env(role: Role) -> Result<Self, ConfigError> {
        Self::read(role, &env)
    }

    /// `MAX_RECEIVE_COUNT`, parsed.
    pub fn max_receive_count() -> Result<u32, ConfigError> {
        let value = required(&env, MAX_RECEIVE_COUNT)?;
        value.parse().map_err(|_| ConfigError::Invalid {
            name: MAX_RECEIVE_COUNT.to_owned(),
            reason: format!("`{value}` is not a positive number"),
        })
    }

    /// `skylark-local --emulator` without `--create-resources`: every queue.
    pub fn for_local() -> Result<Self, ConfigError> {
        Self::read(Role::Local, &env)
    }

    /// Reads exactly [`Role::variables`] through `lookup`.
    pub fn read(role: Role, lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let tables = TableNames {
            content: required(lookup, CONTENT_TABLE)?,
            tasks: required(lookup, TASKS_TABLE)?,
        };
        if let Role::Worker(expected) = role {
            let found = task_type(lookup)?;
            if found != expected {
                return Err(ConfigError::Invalid {
                    name: TASK_TYPE.to_owned(),
                    reason: format!("`{found}`, but this is the {expected} worker"),
                });
            }
            required(lookup, MAX_RECEIVE_COUNT)?;
        }
        if matches!(role, Role::DeadLetters | Role::Sweeper) {
            required(lookup, WORKER_ROLE)?;
        }
        let mut queue_urls = HashMap::new();
        for task_type in role.sends_to() {
            queue_urls.insert(*task_type, required(lookup, &queue_url_var(*task_type))?);
        }
        Ok(AwsSettings { tables, queue_urls })
    }

    /// The same settings with only the queues `role` sends to: what the template gives that
    /// function (the tests run each entry point with exactly that).
    pub fn for_role(&self, role: Role) -> AwsSettings {
        AwsSettings {
            tables: self.tables.clone(),
            queue_urls: role
                .sends_to()
                .iter()
                .filter_map(|t| Some((*t, self.queue_urls.get(t)?.clone())))
                .collect(),
        }
    }

    /// The real adapters, on clients made from `sdk` (which honours `AWS_ENDPOINT_URL`).
    /// Throttling and 5xx are retried by the SDK ([`retry_config`]); what still fails is a
    /// transient failure of that one record.
    pub fn deps(&self, sdk: &aws_config::SdkConfig) -> (Deps, Arc<SqsTaskQueue>) {
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk)
            .retry_config(retry_config())
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(sdk)
            .retry_config(retry_config())
            .build();
        self.deps_with(
            aws_sdk_dynamodb::Client::from_conf(dynamodb),
            aws_sdk_sqs::Client::from_conf(sqs),
        )
    }

    /// The real adapters on given clients (with interceptors, say).
    pub fn deps_with(
        &self,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> (Deps, Arc<SqsTaskQueue>) {
        let store = Arc::new(DynamoStore::new(dynamodb, self.tables.clone()));
        let queue = Arc::new(SqsTaskQueue::new(sqs, self.queue_urls.clone()));
        let deps = Deps {
            content: store.clone(),
            tasks: store,
            queue: queue.clone(),
            clock: Arc::new(SystemClock),
        };
        (deps, queue)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn everything(name: &str) -> Option<String> {
        match name {
            TASK_TYPE => Some("batch_delete".to_owned()),
            other => Some(format!("value of {other}")),
        }
    }

    #[test]
    fn each_role_reads_exactly_its_variables() {
        for role in Role::deployed().into_iter().chain([Role::Local]) {
            let asked = RefCell::new(Vec::new());
            let lookup = |name: &str| {
                asked.borrow_mut().push(name.to_owned());
                match (role, name) {
                    (Role::Worker(t), TASK_TYPE) => Some(t.as_str().to_owned()),
                    _ => everything(name),
                }
            };
            let settings = AwsSettings::read(role, &lookup).expect("settings");
            if role == Role::Api {
                ApiEnv::read(&|name: &str| match name {
                    GRAPHQL_INTROSPECTION => {
                        asked.borrow_mut().push(name.to_owned());
                        Some("false".to_owned())
                    }
                    CORS_ALLOWED_ORIGINS => {
                        asked.borrow_mut().push(name.to_owned());
                        Some("https://cms.example.com".to_owned())
                    }
                    _ => lookup(name),
                })
                .expect("api settings");
            }
            assert_eq!(*asked.borrow(), role.variables(), "{role}");
            let mut queues: Vec<_> = settings.queue_urls.keys().copied().collect();
            queues.sort();
            let mut expected = role.sends_to().to_vec();
            expected.sort();
            assert_eq!(queues, expected, "{role}");
        }
    }

    #[test]
    fn the_api_gets_the_queues_of_mutations_and_a_worker_those_of_its_children() {
        assert_eq!(
            Role::Api.variables(),
            [
                "CONTENT_TABLE",
                "TASKS_TABLE",
                "QUEUE_URL_POST_CREATE",
                "QUEUE_URL_POST_UPDATE",
                "QUEUE_URL_POST_DELETE",
                "QUEUE_URL_BATCH_DELETE",
                "QUEUE_URL_AVAILABILITY_UPDATE",
                "QUEUE_URL_AVAILABILITY_DELETE",
                "API_TOKEN_SECRET_ARN",
                "CORS_ALLOWED_ORIGINS",
                "GRAPHQL_INTROSPECTION",
            ]
        );
        assert_eq!(
            Role::Worker(TaskType::BatchDelete).variables(),
            [
                "CONTENT_TABLE",
                "TASKS_TABLE",
                "TASK_TYPE",
                "MAX_RECEIVE_COUNT",
                "QUEUE_URL_POST_DELETE",
                "QUEUE_URL_POST_UPDATE"
            ]
        );
        assert_eq!(
            Role::Worker(TaskType::PostCreate).variables(),
            [
                "CONTENT_TABLE",
                "TASKS_TABLE",
                "TASK_TYPE",
                "MAX_RECEIVE_COUNT"
            ]
        );
        assert_eq!(
            Role::DeadLetters.variables(),
            ["CONTENT_TABLE", "TASKS_TABLE", "WORKER_ROLE"]
        );
        assert_eq!(Role::Sweeper.variables().len(), 3 + TaskType::ALL.len());
    }

    #[test]
    fn a_missing_variable_is_named() {
        let lookup = |name: &str| (name != "QUEUE_URL_BATCH_DELETE").then(|| everything(name))?;
        let error = AwsSettings::read(Role::Api, &lookup).expect_err("missing");
        assert_eq!(
            error.to_string(),
            "environment variable QUEUE_URL_BATCH_DELETE is not set"
        );
    }

    #[test]
    fn api_settings_are_checked() {
        let with = |cors: &'static str, introspection: &'static str| {
            ApiEnv::read(&move |name: &str| match name {
                CORS_ALLOWED_ORIGINS => Some(cors.to_owned()),
                GRAPHQL_INTROSPECTION => Some(introspection.to_owned()),
                other => everything(other),
            })
        };
        let env = with("", "false").expect("no origins");
        assert_eq!(env.cors, CorsOrigins::None);
        assert!(!env.introspection);
        assert_eq!(with("*", "true").expect("any").cors, CorsOrigins::Any);
        let env = with("https://a.example.com, http://localhost:3000", "true").expect("two");
        assert!(matches!(env.cors, CorsOrigins::List(ref o) if o.len() == 2));
        for bad in [
            "a.example.com",
            "https://a.example.com/",
            "https://*.example.com",
            "*, https://a.example.com",
        ] {
            let error = with(bad, "true").expect_err(bad);
            assert!(error.to_string().contains(CORS_ALLOWED_ORIGINS), "{error}");
        }
        let error = with("", "yes").expect_err("not a bool");
        assert!(error.to_string().contains("`yes`"), "{error}");
    }

    #[test]
    fn a_worker_refuses_another_task_type() {
        let error =
            AwsSettings::read(Role::Worker(TaskType::PostCreate), &everything).expect_err("wrong");
        assert!(error.to_string().contains("TASK_TYPE"), "{error}");
        let error = task_type(&|_: &str| Some("post-create".to_owned())).expect_err("not a type");
        assert!(error.to_string().contains("`post-create`"), "{error}");
    }

    #[test]
    fn for_role_keeps_only_the_queues_the_role_sends_to() {
        let all = AwsSettings::read(Role::Local, &everything).expect("settings");
        let worker = all.for_role(Role::Worker(TaskType::AvailabilityDelete));
        let mut sends: Vec<_> = worker.queue_urls.keys().collect();
        sends.sort();
        // Its children's queue, and its own: a fan-out continues in a later delivery.
        assert_eq!(
            sends,
            [
                &TaskType::AvailabilityDelete,
                &TaskType::PostDeleteAvailability
            ]
        );
        assert!(
            all.for_role(Role::Worker(TaskType::PostCreate))
                .queue_urls
                .is_empty()
        );
    }
}
