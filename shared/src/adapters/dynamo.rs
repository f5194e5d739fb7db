//! `DynamoStore`: content and tasks in DynamoDB (the data model is in `keys.rs` and
//! `docs/data-model.md`). Items are mapped with `serde_dynamo`; every expression uses
//! `#placeholders`; a content write is one `TransactWriteItems`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, ReturnValue, TransactWriteItem,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::keys::{self, *};
use crate::domain::{
    Availability, ContentObject, DeleteEntry, Lease, Message, ObjectType, Progress, Relationship,
    Task, TaskId, TaskStatus, TaskType, Timestamp, Unlinked,
};
use crate::ports::{
    AvailabilityOp, ContentStore, ContentWrite, Cursor, Edge, Expect, ExternalIdOp, ObjectOp,
    Order, Page, StoreError, TaskQuery, TaskStore, TaskUpdate,
};

type Item = HashMap<String, AttributeValue>;

/// Independent writes in flight at once (a fan-out page's children).
const PARALLEL_WRITES: usize = 10;

/// Table names, as the SAM template passes them (`CONTENT_TABLE`, `TASKS_TABLE`).
#[derive(Debug, Clone)]
pub struct TableNames {
    pub content: String,
    pub tasks: String,
}

pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

#[derive(Serialize, Deserialize)]
struct ObjectItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    version: u64,
    object: ContentObject,
}

#[derive(Serialize, Deserialize)]
struct AvailabilityItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    version: u64,
    availability: Availability,
}

#[derive(Serialize, Deserialize)]
struct ExternalIdItem {
    pk: String,
    sk: String,
    uid: String,
}

#[derive(Serialize, Deserialize)]
struct KeyItem {
    pk: String,
    sk: String,
}

/// A task as stored: top-level attributes, so conditions, indexes and TTL can see them.
#[derive(Serialize, Deserialize)]
struct TaskItem {
    task_id: TaskId,
    task_type: TaskType,
    object_uid: String,
    status: TaskStatus,
    created_at: i64,
    updated_at: i64,
    messages: Vec<String>,
    message_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(default)]
    unlinked: Vec<Unlinked>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<TaskId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entries: Vec<DeleteEntry>,
    /// The fan-out checkpoint, top-level so updates can be conditional on `step`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(default)]
    queued: u64,
    #[serde(default)]
    step: u32,
    /// The lease, top-level so updates can be conditional on its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<i64>,
    all: String,
    created_key: String,
}

impl From<&Task> for TaskItem {
    fn from(t: &Task) -> Self {
        TaskItem {
            task_id: t.task_id,
            task_type: t.task_type,
            object_uid: t.object_uid.clone(),
            status: t.status,
            created_at: t.created_at.micros(),
            updated_at: t.updated_at.micros(),
            messages: t.messages.iter().map(|m| m.to_string()).collect(),
            message_count: t.message_count,
            expires_at: t.expires_at.map(Timestamp::secs),
            unlinked: t.unlinked.clone(),
            parent: t.parent,
            entries: t.entries.clone(),
            cursor: t.progress.cursor.clone(),
            queued: t.progress.queued,
            step: t.progress.step,
            lease_owner: t.lease.as_ref().map(|l| l.owner.clone()),
            lease_until: t.lease.as_ref().map(|l| l.until.micros()),
            all: ALL_TASKS.to_owned(),
            created_key: created_key(t.created_at, t.task_id),
        }
    }
}

impl From<TaskItem> for Task {
    fn from(i: TaskItem) -> Self {
        Task {
            task_id: i.task_id,
            task_type: i.task_type,
            object_uid: i.object_uid,
            status: i.status,
            created_at: Timestamp::from_micros(i.created_at),
            updated_at: Timestamp::from_micros(i.updated_at),
            messages: i.messages.into_iter().map(Message::Owned).collect(),
            message_count: i.message_count,
            expires_at: i.expires_at.map(Timestamp::from_secs),
            unlinked: i.unlinked,
            parent: i.parent,
            entries: i.entries,
            progress: Progress {
                cursor: i.cursor,
                queued: i.queued,
                step: i.step,
            },
            lease: i
                .lease_owner
                .zip(i.lease_until)
                .map(|(owner, until)| Lease {
                    owner,
                    until: Timestamp::from_micros(until),
                }),
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(unavailable)
}

fn from_item<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(unavailable)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A cursor is DynamoDB's `LastEvaluatedKey` (string attributes only in our keys).
fn encode_cursor(key: &Item) -> Cursor {
    let strings: BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.as_str(), v.as_str())))
        .collect();
    Cursor::encode(&strings)
}

/// The longest key value a cursor may carry: DynamoDB's limit for a sort key (a partition key
/// may have 2,048 bytes; ours are far shorter).
const MAX_KEY_BYTES: usize = 1024;

/// Decodes a cursor and checks it could only have come from this very query: the expected key
/// attributes and nothing else, in the expected partition.
fn decode_cursor(
    cursor: Option<&Cursor>,
    key_names: &[&str],
    partition: (&str, &str),
) -> Result<Option<Item>, StoreError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let strings: BTreeMap<String, String> = cursor.decode()?;
    // DynamoDB refuses (as a ValidationException, an internal failure to us) a start key with
    // an empty or over-long key value: a forged token must be refused here instead.
    let valid = strings.len() == key_names.len()
        && key_names.iter().all(|k| strings.contains_key(*k))
        && strings
            .values()
            .all(|v| !v.is_empty() && v.len() <= MAX_KEY_BYTES)
        && strings.get(partition.0).map(String::as_str) == Some(partition.1);
    if !valid {
        return Err(StoreError::InvalidCursor);
    }
    Ok(Some(strings.into_iter().map(|(k, v)| (k, s(v))).collect()))
}

fn expect_condition(
    expect: Expect,
    key_attr: &str,
) -> (String, HashMap<String, String>, Option<AttributeValue>) {
    match expect {
        Expect::Absent => (
            "attribute_not_exists(#k)".to_owned(),
            HashMap::from([("#k".to_owned(), key_attr.to_owned())]),
            None,
        ),
        Expect::Version(v) => (
            "#version = :version".to_owned(),
            HashMap::from([("#version".to_owned(), "version".to_owned())]),
            Some(n(v)),
        ),
    }
}

/// What each item of a transaction was, to explain a cancellation reason.
enum Part {
    Object(String),
    Availability(String),
    Claim { scope: String, external_id: String },
    Release,
    Unconditional,
    Task(TaskId),
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        DynamoStore { client, tables }
    }

    fn put(&self, table: &str, item: Item) -> Put {
        Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .build()
            .expect("table_name and item are set")
    }

    fn conditional_put(
        &self,
        table: &str,
        item: Item,
        expect: Expect,
        key_attr: &str,
    ) -> Result<Put, StoreError> {
        let (condition, names, value) = expect_condition(expect, key_attr);
        Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(
                value.map(|v| HashMap::from([(":version".to_owned(), v)])),
            )
            .build()
            .map_err(unavailable)
    }

    fn delete(&self, pk: String, sk: String) -> Result<Delete, StoreError> {
        Delete::builder()
            .table_name(&self.tables.content)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .build()
            .map_err(unavailable)
    }

    async fn get_content<T: for<'de> Deserialize<'de>>(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<T>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.content)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.map(from_item).transpose()
    }

    /// BatchGetItem in chunks of 100, retrying unprocessed keys.
    async fn batch_get(&self, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = chunk.to_vec();
            let mut backoff = Duration::from_millis(20);
            while !pending.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(unavailable)?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(unavailable)?;
                if let Some(mut responses) = output.responses
                    && let Some(items) = responses.remove(table)
                {
                    found.extend(items);
                }
                if let Some(mut unprocessed) = output.unprocessed_keys
                    && let Some(rest) = unprocessed.remove(table)
                {
                    pending = rest.keys;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        Ok(found)
    }

    /// One page of a query whose results are not filtered (DynamoDB's `Limit` is the page size),
    /// its items mapped and its `LastEvaluatedKey` as the cursor.
    #[allow(clippy::too_many_arguments)]
    async fn query_page<T: for<'de> Deserialize<'de>>(
        &self,
        index: Option<&str>,
        key_condition: &str,
        names: HashMap<String, String>,
        values: HashMap<String, AttributeValue>,
        start: Option<Item>,
        limit: usize,
        forward: bool,
    ) -> Result<(Vec<T>, Option<Cursor>), StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.content)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression(key_condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .scan_index_forward(forward)
            .set_consistent_read(index.is_none().then_some(true))
            .send()
            .await
            .map_err(unavailable)?;
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<Result<Vec<T>, _>>()?;
        Ok((items, output.last_evaluated_key.as_ref().map(encode_cursor)))
    }

    async fn list_by_type<T: for<'de> Deserialize<'de>>(
        &self,
        type_pk: &str,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<(Vec<T>, Option<Cursor>), StoreError> {
        let start = decode_cursor(cursor, &[PK, SK, GSI1_PK, GSI1_SK], (GSI1_PK, type_pk))?;
        self.query_page(
            Some(GSI1),
            "#p = :p",
            HashMap::from([("#p".to_owned(), GSI1_PK.to_owned())]),
            HashMap::from([(":p".to_owned(), s(type_pk))]),
            start,
            limit,
            true,
        )
        .await
    }

    async fn list_prefix(
        &self,
        pk: &str,
        prefix: &str,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<(Vec<KeyItem>, Option<Cursor>), StoreError> {
        let start = decode_cursor(cursor, &[PK, SK], (PK, pk))?;
        self.query_page(
            None,
            "#pk = :pk AND begins_with(#sk, :prefix)",
            HashMap::from([
                ("#pk".to_owned(), PK.to_owned()),
                ("#sk".to_owned(), SK.to_owned()),
            ]),
            HashMap::from([(":pk".to_owned(), s(pk)), (":prefix".to_owned(), s(prefix))]),
            start,
            limit,
            true,
        )
        .await
    }

    fn transact_items(
        &self,
        write: ContentWrite,
    ) -> Result<(Vec<TransactWriteItem>, Vec<Part>), StoreError> {
        let content = self.tables.content.clone();
        let mut items = Vec::new();
        let mut parts = Vec::new();
        for op in write.objects {
            match op {
                ObjectOp::Put { object, expect } => {
                    let uid = object.uid.clone();
                    let item = to_item(&ObjectItem {
                        pk: object_pk(&object.uid),
                        sk: OBJECT_SK.to_owned(),
                        gsi1pk: type_pk(object.object_type),
                        gsi1sk: object.uid.clone(),
                        version: object.version,
                        object,
                    })?;
                    items.push(
                        TransactWriteItem::builder()
                            .put(self.conditional_put(&content, item, expect, PK)?)
                            .build(),
                    );
                    parts.push(Part::Object(uid));
                }
                ObjectOp::Delete { uid, expect } => {
                    let (condition, names, value) = expect_condition(expect, PK);
                    let delete = Delete::builder()
                        .table_name(&content)
                        .key(PK, s(object_pk(&uid)))
                        .key(SK, s(OBJECT_SK))
                        .condition_expression(condition)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(
                            value.map(|v| HashMap::from([(":version".to_owned(), v)])),
                        )
                        .build()
                        .map_err(unavailable)?;
                    items.push(TransactWriteItem::builder().delete(delete).build());
                    parts.push(Part::Object(uid));
                }
            }
        }
        if let Some(AvailabilityOp::Delete { uid, expect }) = &write.availability {
            let (condition, names, value) = expect_condition(*expect, PK);
            let delete = Delete::builder()
                .table_name(&content)
                .key(PK, s(availability_pk(uid)))
                .key(SK, s(AVAILABILITY_SK))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(
                    value.map(|v| HashMap::from([(":version".to_owned(), v)])),
                )
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
            parts.push(Part::Availability(uid.clone()));
        }
        if let Some(AvailabilityOp::Put {
            availability,
            expect,
        }) = write.availability
        {
            let uid = availability.uid.clone();
            let item = to_item(&AvailabilityItem {
                pk: availability_pk(&availability.uid),
                sk: AVAILABILITY_SK.to_owned(),
                gsi1pk: AVAILABILITY_TYPE_PK.to_owned(),
                gsi1sk: availability.uid.clone(),
                version: availability.version,
                availability,
            })?;
            items.push(
                TransactWriteItem::builder()
                    .put(self.conditional_put(&content, item, expect, PK)?)
                    .build(),
            );
            parts.push(Part::Availability(uid));
        }
        for op in write.external_ids {
            match op {
                ExternalIdOp::Claim {
                    scope,
                    external_id,
                    uid,
                } => {
                    let item = to_item(&ExternalIdItem {
                        pk: external_id_pk(&scope, &external_id),
                        sk: EXTERNAL_ID_SK.to_owned(),
                        uid: uid.clone(),
                    })?;
                    let put = Put::builder()
                        .table_name(&content)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(#pk) OR #uid = :uid")
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_names("#uid", "uid")
                        .expression_attribute_values(":uid", s(uid))
                        .build()
                        .map_err(unavailable)?;
                    items.push(TransactWriteItem::builder().put(put).build());
                    parts.push(Part::Claim { scope, external_id });
                }
                ExternalIdOp::Release {
                    scope,
                    external_id,
                    uid,
                } => {
                    // Only the owner's claim goes; someone else's stays (no failure either way).
                    let delete = Delete::builder()
                        .table_name(&content)
                        .key(PK, s(external_id_pk(&scope, &external_id)))
                        .key(SK, s(EXTERNAL_ID_SK))
                        .condition_expression("attribute_not_exists(#pk) OR #uid = :uid")
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_names("#uid", "uid")
                        .expression_attribute_values(":uid", s(uid))
                        .build()
                        .map_err(unavailable)?;
                    items.push(TransactWriteItem::builder().delete(delete).build());
                    parts.push(Part::Release);
                }
            }
        }
        // One operation per item in a transaction: the last word on a key wins.
        let mut unconditional: BTreeMap<(String, String), bool> = BTreeMap::new();
        for (edge, put) in write.edges {
            unconditional.insert(
                (object_pk(&edge.from), edge_sk(edge.relationship, &edge.to)),
                put,
            );
        }
        for (availability, object, put) in write.availability_links {
            unconditional.insert((availability_pk(&availability), link_sk(&object)), put);
        }
        for ((pk, sk), put) in unconditional {
            let item = if put {
                TransactWriteItem::builder()
                    .put(self.put(&content, to_item(&KeyItem { pk, sk })?))
                    .build()
            } else {
                TransactWriteItem::builder()
                    .delete(self.delete(pk, sk)?)
                    .build()
            };
            items.push(item);
            parts.push(Part::Unconditional);
        }
        for task in write.new_tasks {
            let put = Put::builder()
                .table_name(&self.tables.tasks)
                .set_item(Some(to_item(&TaskItem::from(&task))?))
                .condition_expression("attribute_not_exists(#id)")
                .expression_attribute_names("#id", TASK_ID)
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().put(put).build());
            parts.push(Part::Task(task.task_id));
        }
        Ok((items, parts))
    }
}

#[async_trait]
impl ContentStore for DynamoStore {
    #[instrument(skip(self), err)]
    async fn get_object(&self, uid: &str) -> Result<Option<ContentObject>, StoreError> {
        Ok(self
            .get_content::<ObjectItem>(object_pk(uid), OBJECT_SK)
            .await?
            .map(|i| i.object))
    }

    #[instrument(skip(self, uids), fields(count = uids.len()), err)]
    async fn get_objects(&self, uids: &[String]) -> Result<Vec<ContentObject>, StoreError> {
        let mut unique: Vec<&String> = uids.iter().collect();
        unique.sort();
        unique.dedup();
        let keys = unique
            .into_iter()
            .map(|uid| {
                HashMap::from([
                    (PK.to_owned(), s(object_pk(uid))),
                    (SK.to_owned(), s(OBJECT_SK)),
                ])
            })
            .collect();
        self.batch_get(&self.tables.content, keys)
            .await?
            .into_iter()
            .map(|item| from_item::<ObjectItem>(item).map(|i| i.object))
            .collect()
    }

    #[instrument(skip(self), err)]
    async fn list_objects(
        &self,
        object_type: ObjectType,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<ContentObject>, StoreError> {
        let (items, next) = self
            .list_by_type::<ObjectItem>(&type_pk(object_type), cursor, limit)
            .await?;
        Ok(Page {
            items: items.into_iter().map(|i| i.object).collect(),
            next,
        })
    }

    #[instrument(skip(self), err)]
    async fn find_by_external_id(
        &self,
        scope: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_content::<ExternalIdItem>(external_id_pk(scope, external_id), EXTERNAL_ID_SK)
            .await?
            .map(|i| i.uid))
    }

    #[instrument(skip(self), err)]
    async fn get_availability(&self, uid: &str) -> Result<Option<Availability>, StoreError> {
        if uid == crate::domain::ALWAYS {
            return Ok(Some(Availability::always()));
        }
        Ok(self
            .get_content::<AvailabilityItem>(availability_pk(uid), AVAILABILITY_SK)
            .await?
            .map(|i| i.availability))
    }

    #[instrument(skip(self, uids), fields(count = uids.len()), err)]
    async fn get_availabilities(&self, uids: &[String]) -> Result<Vec<Availability>, StoreError> {
        // `always` is built in: it needs no item and no read.
        let mut found: Vec<Availability> = Vec::new();
        let mut keys = Vec::new();
        for uid in uids {
            if uid == crate::domain::ALWAYS {
                if !found.iter().any(|a| a.uid == *uid) {
                    found.push(Availability::always());
                }
            } else {
                let key = HashMap::from([
                    (PK.to_owned(), s(availability_pk(uid))),
                    (SK.to_owned(), s(AVAILABILITY_SK)),
                ]);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        for item in self.batch_get(&self.tables.content, keys).await? {
            found.push(from_item::<AvailabilityItem>(item)?.availability);
        }
        Ok(found)
    }

    #[instrument(skip(self), err)]
    async fn list_availability(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Availability>, StoreError> {
        // `always` leads the listing, then the stored ones in uid order.
        let first_page = cursor.is_none();
        let want = if first_page {
            limit.saturating_sub(1)
        } else {
            limit
        };
        let mut items: Vec<Availability> = Vec::new();
        if first_page {
            items.push(Availability::always());
        }
        if want == 0 {
            // Whatever follows is reached by an empty cursor of the stored listing.
            let next = Some(Cursor::encode(&BTreeMap::<String, String>::new()));
            return Ok(Page { items, next });
        }
        // The empty cursor (the one above) starts the stored listing; any other must be one of
        // its cursors.
        let cursor = match cursor {
            Some(c) if c.decode::<BTreeMap<String, String>>()?.is_empty() => None,
            other => other,
        };
        let (stored, next) = self
            .list_by_type::<AvailabilityItem>(AVAILABILITY_TYPE_PK, cursor, want)
            .await?;
        items.extend(stored.into_iter().map(|i| i.availability));
        Ok(Page { items, next })
    }

    #[instrument(skip(self), err)]
    async fn list_edges(
        &self,
        from: &str,
        relationship: Option<Relationship>,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Edge>, StoreError> {
        let (items, next) = self
            .list_prefix(&object_pk(from), &edge_prefix(relationship), cursor, limit)
            .await?;
        let items = items
            .into_iter()
            .filter_map(|i| keys::parse_edge_sk(&i.sk))
            .map(|(relationship, to)| Edge {
                from: from.to_owned(),
                relationship,
                to,
            })
            .collect();
        Ok(Page { items, next })
    }

    #[instrument(skip(self), err)]
    async fn list_linked_objects(
        &self,
        availability_uid: &str,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        let (items, next) = self
            .list_prefix(
                &availability_pk(availability_uid),
                LINK_PREFIX,
                cursor,
                limit,
            )
            .await?;
        let items = items
            .into_iter()
            .filter_map(|i| i.sk.strip_prefix(LINK_PREFIX).map(str::to_owned))
            .collect();
        Ok(Page { items, next })
    }

    #[instrument(skip(self, write), fields(items = write.item_count()), err)]
    async fn write(&self, write: ContentWrite) -> Result<(), StoreError> {
        write.check_size()?;
        let (mut items, parts) = self.transact_items(write)?;
        if items.len() == 1
            && let Some(item) = items.pop()
        {
            return self.write_one(item, &parts[0]).await;
        }
        if items.is_empty() {
            return Ok(());
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(err) = result else {
            return Ok(());
        };
        let reasons = match &err {
            SdkError::ServiceError(service) => match service.err() {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e) => {
                    e.cancellation_reasons().to_vec()
                }
                _ => return Err(unavailable(err)),
            },
            _ => return Err(unavailable(err)),
        };
        for (reason, part) in reasons.iter().zip(&parts) {
            match reason.code() {
                Some("ConditionalCheckFailed") => return Err(condition_failed(part)),
                // Another transaction held an item: worth the caller's re-read and retry.
                Some("TransactionConflict") => {
                    return Err(StoreError::ConditionFailed(
                        "transaction conflict".to_owned(),
                    ));
                }
                _ => {}
            }
        }
        Err(unavailable(err))
    }
}

/// What a failed condition on one part of a write means to the caller.
fn condition_failed(part: &Part) -> StoreError {
    match part {
        Part::Claim { scope, external_id } => StoreError::ExternalIdTaken {
            scope: scope.clone(),
            external_id: external_id.clone(),
        },
        Part::Object(uid) => StoreError::ConditionFailed(format!("object {uid} changed")),
        Part::Availability(uid) => {
            StoreError::ConditionFailed(format!("availability {uid} changed"))
        }
        Part::Task(id) => StoreError::ConditionFailed(format!("task {id} already exists")),
        Part::Release | Part::Unconditional => {
            StoreError::ConditionFailed("an item changed".to_owned())
        }
    }
}

impl DynamoStore {
    /// A write of one item needs no transaction: the same request, alone (half the write
    /// capacity of a transaction on DynamoDB).
    async fn write_one(&self, item: TransactWriteItem, part: &Part) -> Result<(), StoreError> {
        if let Some(put) = item.put {
            let result = self
                .client
                .put_item()
                .table_name(put.table_name)
                .set_item(Some(put.item))
                .set_condition_expression(put.condition_expression)
                .set_expression_attribute_names(put.expression_attribute_names)
                .set_expression_attribute_values(put.expression_attribute_values)
                .send()
                .await;
            single_result(result, part)
        } else if let Some(delete) = item.delete {
            let result = self
                .client
                .delete_item()
                .table_name(delete.table_name)
                .set_key(Some(delete.key))
                .set_condition_expression(delete.condition_expression)
                .set_expression_attribute_names(delete.expression_attribute_names)
                .set_expression_attribute_values(delete.expression_attribute_values)
                .send()
                .await;
            single_result(result, part)
        } else if let Some(update) = item.update {
            let result = self
                .client
                .update_item()
                .table_name(update.table_name)
                .set_key(Some(update.key))
                .update_expression(update.update_expression)
                .set_condition_expression(update.condition_expression)
                .set_expression_attribute_names(update.expression_attribute_names)
                .set_expression_attribute_values(update.expression_attribute_values)
                .send()
                .await;
            single_result(result, part)
        } else {
            Err(StoreError::ConditionFailed(
                "a write item with nothing to do".to_owned(),
            ))
        }
    }
}

fn single_result<O, E, R>(result: Result<O, SdkError<E, R>>, part: &Part) -> Result<(), StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Err(condition_failed(part))
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// The index a task listing reads: the most selective filter it has (an object's tasks are
/// few, a type's many, a status's most), or every task by creation time.
fn task_index(query: &TaskQuery) -> (&'static str, &'static str, String) {
    if let Some(uid) = &query.object_uid {
        (BY_OBJECT, OBJECT_UID, uid.clone())
    } else if let Some(task_type) = query.task_type {
        (BY_TYPE, TASK_TYPE, task_type.as_str().to_owned())
    } else if let Some(status) = query.status {
        (BY_STATUS, STATUS, status.as_str().to_owned())
    } else {
        (BY_CREATED, ALL, ALL_TASKS.to_owned())
    }
}

impl DynamoStore {
    async fn query_tasks(
        &self,
        query: &TaskQuery,
        now: Timestamp,
        start: Option<Item>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let (index, partition_attr, partition) = task_index(query);
        let mut filter = "(attribute_not_exists(#exp) OR #exp > :now)".to_owned();
        let mut request = self
            .client
            .query()
            .table_name(&self.tables.tasks)
            .index_name(index)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", partition_attr)
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":p", s(partition))
            .expression_attribute_values(":now", n(now.secs()));
        // The filters the index did not take.
        let filters = [
            (STATUS, query.status.map(|v| v.as_str().to_owned())),
            (OBJECT_UID, query.object_uid.clone()),
            (TASK_TYPE, query.task_type.map(|v| v.as_str().to_owned())),
        ];
        for (i, (attr, value)) in filters.into_iter().enumerate() {
            if let Some(value) = value
                && attr != partition_attr
            {
                filter.push_str(&format!(" AND #f{i} = :f{i}"));
                request = request
                    .expression_attribute_names(format!("#f{i}"), attr)
                    .expression_attribute_values(format!(":f{i}"), s(value));
            }
        }
        let output = request
            .filter_expression(filter)
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .scan_index_forward(query.order == Order::Asc)
            .send()
            .await
            .map_err(unavailable)?;
        Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
    }
}

#[async_trait]
impl TaskStore for DynamoStore {
    #[instrument(skip(self), err)]
    async fn get_task(&self, task_id: TaskId, now: Timestamp) -> Result<Option<Task>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.tasks)
            .key(TASK_ID, s(task_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let task = output
            .item
            .map(from_item::<TaskItem>)
            .transpose()?
            .map(Task::from);
        Ok(task.filter(|t| !t.is_expired(now)))
    }

    /// `Limit` applies before the expiry filter, so this keeps asking for what is still missing
    /// until the page is full or the index ends.
    #[instrument(skip(self), err)]
    #[instrument(skip(self, tasks), fields(count = tasks.len()), err)]
    async fn create_tasks(&self, tasks: &[Task]) -> Result<usize, StoreError> {
        let items = tasks
            .iter()
            .map(|task| to_item(&TaskItem::from(task)))
            .collect::<Result<Vec<Item>, _>>()?;
        let puts = items.into_iter().map(|item| {
            let request = self
                .client
                .put_item()
                .table_name(&self.tables.tasks)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#id)")
                .expression_attribute_names("#id", TASK_ID);
            async move {
                match request.send().await {
                    Ok(_) => Ok(1),
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Ok(0)
                    }
                    Err(err) => Err(unavailable(err)),
                }
            }
        });
        let results: Vec<Result<usize, StoreError>> = futures::stream::iter(puts)
            .buffer_unordered(PARALLEL_WRITES)
            .collect()
            .await;
        results.into_iter().sum()
    }

    #[instrument(skip(self, task_ids), fields(count = task_ids.len()), err)]
    async fn get_tasks(
        &self,
        task_ids: &[TaskId],
        now: Timestamp,
    ) -> Result<Vec<Task>, StoreError> {
        let mut unique = task_ids.to_vec();
        unique.sort();
        unique.dedup();
        let keys = unique
            .into_iter()
            .map(|id| HashMap::from([(TASK_ID.to_owned(), s(id.to_string()))]))
            .collect();
        let mut tasks = Vec::new();
        for item in self.batch_get(&self.tables.tasks, keys).await? {
            let task = Task::from(from_item::<TaskItem>(item)?);
            if !task.is_expired(now) {
                tasks.push(task);
            }
        }
        Ok(tasks)
    }

    async fn list_tasks(
        &self,
        query: &TaskQuery,
        now: Timestamp,
    ) -> Result<Page<Task>, StoreError> {
        let (_, index_pk, partition) = task_index(query);
        let mut start = decode_cursor(
            query.cursor.as_ref(),
            &[TASK_ID, index_pk, CREATED_KEY],
            (index_pk, &partition),
        )?;
        let mut tasks = Vec::new();
        loop {
            let (items, last) = self
                .query_tasks(query, now, start, query.limit - tasks.len())
                .await?;
            for item in items {
                tasks.push(Task::from(from_item::<TaskItem>(item)?));
            }
            start = last;
            if tasks.len() >= query.limit || start.is_none() {
                break;
            }
        }
        Ok(Page {
            items: tasks,
            next: start.as_ref().map(encode_cursor),
        })
    }

    #[instrument(skip(self, update), fields(status = %update.status), err)]
    async fn update_task(&self, task_id: TaskId, update: TaskUpdate) -> Result<Task, StoreError> {
        let appended = update.append.len();
        let replacing = update.replace_messages.is_some();
        let (messages, set_messages) = match update.replace_messages {
            // The condition on message_count makes replacing the list as safe as appending.
            Some(list) => (list, "#messages = :messages"),
            None => (
                update.append,
                "#messages = list_append(if_not_exists(#messages, :empty), :messages)",
            ),
        };
        let messages: Vec<AttributeValue> =
            messages.into_iter().map(|m| s(m.into_owned())).collect();
        let mut expression = format!(
            "SET #status = :status, #mc = #mc + :appended, {set_messages}, #updated = :updated"
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.tables.tasks)
            .key(TASK_ID, s(task_id.to_string()))
            .condition_expression(format!(
                "attribute_exists(#id) AND #status = :expect_status AND #mc = :expect_count AND #step = :expect_step AND {}",
                if update.expect_owner.is_some() {
                    "#owner = :expect_owner"
                } else {
                    "attribute_not_exists(#owner)"
                }
            ))
            .expression_attribute_names("#owner", "lease_owner")
            .expression_attribute_names("#step", "step")
            .expression_attribute_values(":expect_step", n(update.expect_step))
            .expression_attribute_names("#id", TASK_ID)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#mc", "message_count")
            .expression_attribute_names("#messages", "messages")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":status", s(update.status.as_str()))
            .expression_attribute_values(":expect_status", s(update.expect_status.as_str()))
            .expression_attribute_values(":expect_count", n(update.expect_message_count))
            .expression_attribute_values(":appended", n(appended))
            .expression_attribute_values(":messages", AttributeValue::L(messages))
            .expression_attribute_values(":updated", n(update.updated_at.micros()))
            .return_values(ReturnValue::AllNew);
        if let Some(expires_at) = update.expires_at {
            expression.push_str(", #exp = :exp");
            request = request
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":exp", n(expires_at.secs()));
        }
        if !replacing {
            request = request.expression_attribute_values(":empty", AttributeValue::L(Vec::new()));
        }
        if let Some(owner) = &update.expect_owner {
            request = request.expression_attribute_values(":expect_owner", s(owner.clone()));
        }
        if let Some(lease) = update.lease {
            expression.push_str(", #owner = :owner, #until = :until");
            request = request
                .expression_attribute_names("#until", "lease_until")
                .expression_attribute_values(":owner", s(lease.owner))
                .expression_attribute_values(":until", n(lease.until.micros()));
        }
        let mut remove = String::new();
        if let Some(progress) = update.progress {
            expression.push_str(", #step = :step, #queued = :queued");
            request = request
                .expression_attribute_names("#queued", "queued")
                .expression_attribute_names("#cursor", "cursor")
                .expression_attribute_values(":step", n(progress.step))
                .expression_attribute_values(":queued", n(progress.queued));
            match progress.cursor {
                Some(cursor) => {
                    expression.push_str(", #cursor = :cursor");
                    request = request.expression_attribute_values(":cursor", s(cursor));
                }
                None => remove.push_str(" REMOVE #cursor"),
            }
        }
        expression.push_str(&remove);
        match request.update_expression(expression).send().await {
            Ok(output) => {
                let item = output.attributes.ok_or_else(|| {
                    StoreError::ConditionFailed(format!("task {task_id} returned nothing"))
                })?;
                Ok(Task::from(from_item::<TaskItem>(item)?))
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed(format!(
                    "task {task_id} is not {} with {} messages at step {}",
                    update.expect_status, update.expect_message_count, update.expect_step
                )))
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}
