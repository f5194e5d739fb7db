//! Configuration read once at start-up from the environment, under the names the SAM template
//! sets. A missing variable fails start-up with its name.

use std::collections::HashMap;
use std::sync::Arc;

use crate::adapters::{DynamoStore, SqsTaskQueue, TableNames};
use crate::domain::TaskType;
use crate::engine::Deps;
use crate::ports::SystemClock;

pub const CONTENT_TABLE: &str = "CONTENT_TABLE";
pub const TASKS_TABLE: &str = "TASKS_TABLE";
/// The worker Lambda's own task type.
pub const TASK_TYPE: &str = "TASK_TYPE";

/// `QUEUE_URL_POST_CREATE`, `QUEUE_URL_BATCH_DELETE`, …
pub fn queue_url_var(task_type: TaskType) -> String {
    format!("QUEUE_URL_{}", task_type.as_str().to_ascii_uppercase())
}

/// Every variable the code reads, for the template consistency check.
pub fn all_variables() -> Vec<String> {
    let mut names = vec![
        CONTENT_TABLE.to_owned(),
        TASKS_TABLE.to_owned(),
        TASK_TYPE.to_owned(),
    ];
    names.extend(TaskType::ALL.iter().map(|t| queue_url_var(*t)));
    names
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(String),
    #[error("environment variable {name} is not valid: {reason}")]
    Invalid { name: String, reason: String },
}

/// Where the AWS adapters find their tables and queues.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub tables: TableNames,
    pub queue_urls: HashMap<TaskType, String>,
}

fn var(name: &str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::Missing(name.to_owned()))
}

impl AwsSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut queue_urls = HashMap::new();
        for task_type in TaskType::ALL {
            queue_urls.insert(*task_type, var(&queue_url_var(*task_type))?);
        }
        Ok(AwsSettings {
            tables: TableNames {
                content: var(CONTENT_TABLE)?,
                tasks: var(TASKS_TABLE)?,
            },
            queue_urls,
        })
    }

    /// The worker's task type, from `TASK_TYPE`.
    pub fn task_type_from_env() -> Result<TaskType, ConfigError> {
        let value = var(TASK_TYPE)?;
        value.parse().map_err(|_| ConfigError::Invalid {
            name: TASK_TYPE.to_owned(),
            reason: format!("`{value}` is not a task type"),
        })
    }

    /// The real adapters, on clients made from `sdk` (which honours `AWS_ENDPOINT_URL`).
    pub fn deps(&self, sdk: &aws_config::SdkConfig) -> (Deps, Arc<SqsTaskQueue>) {
        self.deps_with(
            aws_sdk_dynamodb::Client::new(sdk),
            aws_sdk_sqs::Client::new(sdk),
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
