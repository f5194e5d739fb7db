//! Creates the tables and queues the AWS adapters need, with the keys, indexes, TTL and redrive
//! settings the SAM template declares: for emulator mode and for the emulator tests, where each
//! test makes its own uniquely named set.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use super::TableNames;
use super::keys::*;
use crate::domain::TaskType;
use crate::ports::BoxError;

fn attribute(name: &str) -> Result<AttributeDefinition, BoxError> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, BoxError> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()?)
}

fn index(name: &str, pk: &str, sk: &str) -> Result<GlobalSecondaryIndex, BoxError> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()?)
}

fn already_exists<E: std::fmt::Debug>(e: &E) -> bool {
    let text = format!("{e:?}");
    text.contains("ResourceInUseException") || text.contains("QueueAlreadyExists")
}

/// Creates both tables (an existing table is left as it is) and turns TTL on for tasks.
pub async fn create_tables(
    client: &aws_sdk_dynamodb::Client,
    tables: &TableNames,
) -> Result<(), BoxError> {
    let content = client
        .create_table()
        .table_name(&tables.content)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK)?)
        .attribute_definitions(attribute(SK)?)
        .attribute_definitions(attribute(GSI1_PK)?)
        .attribute_definitions(attribute(GSI1_SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(index(GSI1, GSI1_PK, GSI1_SK)?)
        .send()
        .await;
    if let Err(e) = content
        && !already_exists(&e)
    {
        return Err(e.into());
    }
    let tasks = client
        .create_table()
        .table_name(&tables.tasks)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(TASK_ID)?)
        .attribute_definitions(attribute(STATUS)?)
        .attribute_definitions(attribute(ALL)?)
        .attribute_definitions(attribute(CREATED_KEY)?)
        .attribute_definitions(attribute(OBJECT_UID)?)
        .attribute_definitions(attribute(TASK_TYPE)?)
        .key_schema(key(TASK_ID, KeyType::Hash)?)
        .global_secondary_indexes(index(BY_STATUS, STATUS, CREATED_KEY)?)
        .global_secondary_indexes(index(BY_CREATED, ALL, CREATED_KEY)?)
        .global_secondary_indexes(index(BY_OBJECT, OBJECT_UID, CREATED_KEY)?)
        .global_secondary_indexes(index(BY_TYPE, TASK_TYPE, CREATED_KEY)?)
        .send()
        .await;
    match tasks {
        Ok(_) => {
            client
                .update_time_to_live()
                .table_name(&tables.tasks)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(EXPIRES_AT)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await?;
        }
        Err(e) if already_exists(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The queue name of a task type: `<prefix>-<task_type>`, its dead-letter queue `…-dlq`.
pub fn queue_name(prefix: &str, task_type: TaskType) -> String {
    format!("{prefix}-{}", task_type.as_str().replace('_', "-"))
}

/// Creates a queue and its DLQ per task type (redrive after `max_receive_count` receives);
/// returns the queue URLs.
pub async fn create_queues(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    max_receive_count: u32,
    visibility_timeout_secs: u32,
) -> Result<HashMap<TaskType, String>, BoxError> {
    let mut urls = HashMap::new();
    for task_type in TaskType::ALL {
        let name = queue_name(prefix, *task_type);
        let dlq_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await?
            .queue_url
            .ok_or("no DLQ URL returned")?;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or("no DLQ ARN returned")?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count,
        })
        .to_string();
        let url = client
            .create_queue()
            .queue_name(&name)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await?
            .queue_url
            .ok_or("no queue URL returned")?;
        urls.insert(*task_type, url);
    }
    Ok(urls)
}
