//! Creates the tables and queues the AWS adapters need, exactly as `infra/template.yaml`
//! declares them — keys, indexes, projections, TTL, visibility timeout, redrive to a DLQ and
//! retention are read from the template ([`crate::infra`]), so the two cannot drift. For emulator
//! mode and the emulator tests, where each test makes its own uniquely named set.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use super::TableNames;
use crate::config::{CONTENT_TABLE, TASKS_TABLE};
use crate::domain::TaskType;
use crate::infra::{QueueSpec, TableSpec, Template};
use crate::ports::BoxError;

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, BoxError> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()?)
}

fn key_schema(hash: &str, range: Option<&str>) -> Result<Vec<KeySchemaElement>, BoxError> {
    let mut keys = vec![key(hash, KeyType::Hash)?];
    if let Some(range) = range {
        keys.push(key(range, KeyType::Range)?);
    }
    Ok(keys)
}

fn already_exists<E: std::fmt::Debug>(e: &E) -> bool {
    let text = format!("{e:?}");
    text.contains("ResourceInUseException") || text.contains("QueueAlreadyExists")
}

/// Creates one table named `name` as `spec` declares it (an existing table is left as it is).
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    spec: &TableSpec,
) -> Result<(), BoxError> {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(
            spec.billing_mode.as_deref().unwrap_or("PAY_PER_REQUEST"),
        ))
        .set_key_schema(Some(key_schema(&spec.hash_key, spec.range_key.as_deref())?));
    for (attribute, kind) in &spec.attributes {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()?,
        );
    }
    for index in &spec.indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_schema(
                    &index.hash_key,
                    index.range_key.as_deref(),
                )?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(index.projection.as_str()))
                        .build(),
                )
                .build()?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(e) if already_exists(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if let Some(ttl) = &spec.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await?;
    }
    Ok(())
}

/// Creates both tables, named by `tables`, as the template declares the tables its functions'
/// `CONTENT_TABLE` and `TASKS_TABLE` refer to.
pub async fn create_tables(
    client: &aws_sdk_dynamodb::Client,
    tables: &TableNames,
) -> Result<(), BoxError> {
    let template = Template::embedded()?;
    create_table(
        client,
        &tables.content,
        &template.table_of_variable(CONTENT_TABLE)?,
    )
    .await?;
    create_table(
        client,
        &tables.tasks,
        &template.table_of_variable(TASKS_TABLE)?,
    )
    .await?;
    Ok(())
}

/// The queue name of a task type: `<prefix>-<task_type>` with dashes, its dead-letter queue
/// `…-dlq`. On AWS the prefix is the stack name (the template's `QueueName`s follow this rule).
pub fn queue_name(prefix: &str, task_type: TaskType) -> String {
    format!("{prefix}-{}", task_type.as_str().replace('_', "-"))
}

fn attributes_of(spec: &QueueSpec) -> Vec<(QueueAttributeName, String)> {
    let mut attributes = Vec::new();
    if let Some(secs) = spec.visibility_timeout_secs {
        attributes.push((QueueAttributeName::VisibilityTimeout, secs.to_string()));
    }
    if let Some(secs) = spec.message_retention_secs {
        attributes.push((QueueAttributeName::MessageRetentionPeriod, secs.to_string()));
    }
    attributes
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: String,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<String, BoxError> {
    let mut request = client.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        request = request.attributes(attribute, value);
    }
    Ok(request
        .send()
        .await?
        .queue_url
        .ok_or("no queue URL returned")?)
}

/// Creates each task type's queue and its dead-letter queue as the template declares them
/// (visibility timeout, retention, redrive after the `MaxReceiveCount` parameter's default),
/// named as on AWS with `prefix` for the stack name. Returns the queue URLs.
pub async fn create_queues(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
) -> Result<HashMap<TaskType, String>, BoxError> {
    create_queues_with(client, prefix, None).await
}

/// `create_queues` with another value of the template's redrive-limit parameter, as a
/// deployment may choose.
pub async fn create_queues_with(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    max_receive_count: Option<u32>,
) -> Result<HashMap<TaskType, String>, BoxError> {
    let template = Template::embedded()?;
    let mut urls = HashMap::new();
    for task_type in TaskType::ALL {
        let spec = template.task_queue(*task_type)?;
        let name = spec
            .name_for(prefix)
            .unwrap_or_else(|| queue_name(prefix, *task_type));
        let mut attributes = attributes_of(&spec);
        if let Some(dead_letter) = &spec.dead_letter {
            let dlq_name = dead_letter
                .queue
                .name_for(prefix)
                .unwrap_or_else(|| format!("{name}-dlq"));
            let dlq_url = create_queue(client, dlq_name, attributes_of(&dead_letter.queue)).await?;
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
                "maxReceiveCount": max_receive_count.map_or(dead_letter.max_receive_count, u64::from),
            });
            attributes.push((QueueAttributeName::RedrivePolicy, redrive.to_string()));
        }
        urls.insert(*task_type, create_queue(client, name, attributes).await?);
    }
    Ok(urls)
}
