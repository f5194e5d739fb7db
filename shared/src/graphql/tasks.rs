//! `getSkylarkBackgroundTask` and `listSkylarkBackgroundTask`, with Skylark's signatures.

use async_graphql::{Context, Enum, Object, Result, SimpleObject};

use super::service;
use crate::domain::{Task, TaskStatus};
use crate::ports::Order;
use crate::service::TaskListQuery;

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "SkylarkBackgroundTaskStatus")]
pub enum Status {
    Queued,
    InProgress,
    Complete,
    Failed,
}

impl From<TaskStatus> for Status {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Queued => Status::Queued,
            TaskStatus::InProgress => Status::InProgress,
            TaskStatus::Complete => Status::Complete,
            TaskStatus::Failed => Status::Failed,
        }
    }
}

impl From<Status> for TaskStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Queued => TaskStatus::Queued,
            Status::InProgress => TaskStatus::InProgress,
            Status::Complete => TaskStatus::Complete,
            Status::Failed => TaskStatus::Failed,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum OrderDirections {
    Asc,
    Desc,
}

pub struct SkylarkBackgroundTask(Task);

#[Object(rename_fields = "snake_case")]
impl SkylarkBackgroundTask {
    async fn task_id(&self) -> String {
        self.0.task_id.to_string()
    }
    async fn created_at(&self) -> String {
        self.0.created_at.to_string()
    }
    async fn updated_at(&self) -> String {
        self.0.updated_at.to_string()
    }
    async fn status(&self) -> Status {
        self.0.status.into()
    }
    async fn task_type(&self) -> &str {
        self.0.task_type.as_str()
    }
    async fn object_uid(&self) -> &str {
        &self.0.object_uid
    }
    async fn messages(&self) -> Vec<&str> {
        self.0.messages.iter().map(|m| m.as_ref()).collect()
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct SkylarkBackgroundTaskListing {
    objects: Vec<SkylarkBackgroundTask>,
    count: i32,
    next_token: Option<String>,
}

#[derive(Default)]
pub struct TaskQuery;

#[Object(rename_args = "snake_case")]
impl TaskQuery {
    /// Unknown, malformed or expired ids give `null` and a `NotFound` error.
    async fn get_skylark_background_task(
        &self,
        ctx: &Context<'_>,
        task_id: String,
    ) -> Result<Option<SkylarkBackgroundTask>> {
        Ok(Some(SkylarkBackgroundTask(
            service(ctx).get_task(&task_id).await?,
        )))
    }

    /// Live tasks, newest first unless `order: ASC`; `limit` 1..=100 (default 50).
    /// `object_uid` and `task_type` are additions to Skylark's arguments: with them a client
    /// follows the children a fan-out or a batch delete queued.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "crate::graphql::listing_cost(limit, child_complexity)")]
    async fn list_skylark_background_task(
        &self,
        ctx: &Context<'_>,
        status: Option<Status>,
        object_uid: Option<String>,
        task_type: Option<String>,
        limit: Option<i32>,
        next_token: Option<String>,
        order: Option<OrderDirections>,
    ) -> Result<Option<SkylarkBackgroundTaskListing>> {
        let page = service(ctx)
            .list_tasks(TaskListQuery {
                status: status.map(Into::into),
                object_uid,
                task_type,
                limit,
                next_token,
                order: match order {
                    Some(OrderDirections::Asc) => Order::Asc,
                    _ => Order::Desc,
                },
            })
            .await?;
        Ok(Some(SkylarkBackgroundTaskListing {
            count: page.items.len() as i32,
            objects: page.items.into_iter().map(SkylarkBackgroundTask).collect(),
            next_token: page.next.map(|c| c.0),
        }))
    }
}
