//! The application service behind the GraphQL API: validates input, writes the object and its
//! QUEUED task in one transaction, then sends the task's message. Reads apply availability.

use tracing::{error, instrument};

use crate::domain::{
    ALWAYS, Availability, ContentObject, DEFAULT_LANGUAGE, DeleteEntry, ObjectType, Relationship,
    Task, TaskId, TaskStatus, TaskType, Timestamp, Unlinked, Window, new_uid,
};
use crate::engine::Deps;
use crate::ports::{
    AvailabilityOp, ContentWrite, Cursor, Edge, Expect, ExternalIdOp, ObjectOp, Order, Page,
    StoreError, TaskQuery,
};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 100;
/// Entries of one `batchDeleteObjects`.
pub const MAX_BATCH_DELETE: usize = 100;
/// The `object_uid` of every batch delete task, as in Skylark.
pub const BATCH_DELETE: &str = "BATCH_DELETE";
/// Links and unlinks in one mutation: they share one transaction with the object and its task.
pub const MAX_LINKS: usize = 50;
const MAX_TEXT: usize = 64 * 1024;
const MAX_ID: usize = 256;
const MAX_CONFLICTS: usize = 8;
const AVAILABILITY_SCOPE: &str = "Availability";

/// What a request can get wrong, or what went wrong for it. Deliberately not `Display`: the only
/// way to an `async_graphql::Error` is the conversion that sets `errorType`.
#[derive(Debug)]
pub enum ServiceError {
    NotFound(String),
    Validation(String),
    ExternalId(String),
    Internal(StoreError),
}

impl ServiceError {
    pub fn message(&self) -> &str {
        match self {
            ServiceError::NotFound(m)
            | ServiceError::Validation(m)
            | ServiceError::ExternalId(m) => m,
            ServiceError::Internal(_) => "internal failure; the request may be retried",
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            // A token with this listing's fingerprint that the store cannot read: forged.
            StoreError::InvalidCursor => ServiceError::Validation(
                "next_token is not one this listing issued: it marks no place in it".to_owned(),
            ),
            StoreError::TooLarge(message) => ServiceError::Validation(message),
            StoreError::ExternalIdTaken { scope, external_id } => ServiceError::ExternalId(
                format!("external_id `{external_id}` is already used by another {scope}"),
            ),
            other => ServiceError::Internal(other),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Default)]
pub struct Links {
    pub link: Vec<String>,
    pub unlink: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ObjectInput {
    pub external_id: Option<String>,
    pub slug: Option<String>,
    pub title: Option<String>,
    pub synopsis: Option<String>,
    pub availability: Links,
    pub relationships: Vec<(Relationship, Links)>,
}

#[derive(Debug, Clone, Default)]
pub struct AvailabilityInput {
    pub external_id: Option<String>,
    pub title: Option<String>,
    pub slug: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub timezone: Option<String>,
}

/// An object addressed by `uid` or `external_id` (one is needed; both must agree).
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub uid: Option<String>,
    pub external_id: Option<String>,
}

impl Selector {
    /// The identifiers it holds are ones a key can hold ([`check_id`]).
    fn check(&self) -> Result<()> {
        check_optional_id("uid", &self.uid)?;
        check_optional_id("external_id", &self.external_id)
    }

    pub fn uid(uid: &str) -> Self {
        Selector {
            uid: Some(uid.to_owned()),
            external_id: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Written {
    pub object: ContentObject,
    pub language: String,
    pub task_id: TaskId,
}

#[derive(Debug, Clone)]
pub struct Deleted {
    pub uid: String,
    pub language: Option<String>,
    pub task_id: TaskId,
}

#[derive(Debug, Clone)]
pub struct TaskListQuery {
    pub status: Option<TaskStatus>,
    pub object_uid: Option<String>,
    pub task_type: Option<String>,
    pub limit: Option<i32>,
    pub next_token: Option<String>,
    pub order: Order,
}

pub struct Service {
    deps: Deps,
}

/// An identifier a client gives (a uid, an external_id, a reference, a filter). It becomes part
/// of a DynamoDB key, which may be neither empty nor longer than 1,024 bytes; refused here with a
/// message that says so, rather than by DynamoDB as an internal failure.
fn check_id(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(ServiceError::Validation(format!(
            "{what} must not be empty"
        )));
    }
    check_len(what, value, MAX_ID)
}

fn check_optional_id(what: &str, value: &Option<String>) -> Result<()> {
    value.as_deref().map_or(Ok(()), |v| check_id(what, v))
}

fn check_text(what: &str, value: &Option<String>, max: usize) -> Result<()> {
    value.as_deref().map_or(Ok(()), |v| check_len(what, v, max))
}

fn check_len(what: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(ServiceError::Validation(format!(
            "{what} is {} bytes long; at most {max} are allowed",
            value.len()
        )));
    }
    Ok(())
}

/// `value` for an error message, cut short when it is long.
fn quoted(value: &str) -> String {
    const SHOWN: usize = 64;
    if value.len() <= SHOWN {
        return value.to_owned();
    }
    let mut end = SHOWN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &value[..end], value.len())
}

/// A language tag (BCP 47 shape: a 2–3 letter language, then subtags of 1–8 letters or digits),
/// in its canonical case — `fr`, `en-GB`, `zh-Hant-TW` — since tags are case-insensitive and one
/// language must not become two translations.
fn check_language(language: Option<&str>) -> Result<Option<String>> {
    let Some(language) = language else {
        return Ok(None);
    };
    let mut subtags = language.split('-');
    let primary = subtags.next().unwrap_or_default();
    let valid = language.len() <= 35
        && (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && language.split('-').skip(1).all(|subtag| {
            (1..=8).contains(&subtag.len()) && subtag.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if !valid {
        return Err(ServiceError::Validation(format!(
            "language `{language}` is not a language tag such as `en-GB`"
        )));
    }
    let canonical: Vec<String> = std::iter::once(primary.to_ascii_lowercase())
        .chain(subtags.map(|subtag| {
            match subtag.len() {
                // A region (GB) or a script (Hant); anything else lower case.
                2 if subtag.chars().all(|c| c.is_ascii_alphabetic()) => subtag.to_ascii_uppercase(),
                4 if subtag.chars().all(|c| c.is_ascii_alphabetic()) => {
                    let lower = subtag.to_ascii_lowercase();
                    lower[..1].to_ascii_uppercase() + &lower[1..]
                }
                _ => subtag.to_ascii_lowercase(),
            }
        }))
        .collect();
    Ok(Some(canonical.join("-")))
}

pub fn page_limit(limit: Option<i32>) -> Result<usize> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT as i32).contains(&n) => Ok(n as usize),
        Some(n) => Err(ServiceError::Validation(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

fn invalid_token() -> ServiceError {
    ServiceError::Validation(
        "next_token is not one this listing issued (the same query, with the same filters)"
            .to_owned(),
    )
}

/// One listing (a query and the filters that choose what it pages through), whose
/// `next_token`s are the store's cursors behind the listing's fingerprint: a token given to
/// another listing is refused, the same way whatever the store, instead of starting this one at
/// a key of another's (the DynamoDB adapter checks its keys too; the memory one cannot tell).
struct Listing(String);

impl Listing {
    fn new(listing: std::fmt::Arguments<'_>) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(listing.to_string().as_bytes());
        Listing(digest[..6].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The store's cursor in a `next_token` this listing issued.
    fn cursor(&self, next_token: Option<String>) -> Result<Option<Cursor>> {
        next_token
            .map(|token| match token.split_once('.') {
                Some((listing, cursor)) if listing == self.0 => Ok(Cursor(cursor.to_owned())),
                _ => Err(invalid_token()),
            })
            .transpose()
    }

    /// `page` with its cursor made a `next_token` of this listing.
    fn page<T>(&self, page: Page<T>) -> Page<T> {
        Page {
            next: page.next.map(|c| Cursor(format!("{}.{}", self.0, c.0))),
            ..page
        }
    }
}

impl Service {
    pub fn new(deps: Deps) -> Self {
        Service { deps }
    }

    pub fn now(&self) -> Timestamp {
        self.deps.clock.now()
    }

    fn validate_input(input: &ObjectInput) -> Result<()> {
        check_optional_id("external_id", &input.external_id)?;
        check_text("slug", &input.slug, MAX_ID)?;
        check_text("title", &input.title, MAX_TEXT)?;
        check_text("synopsis", &input.synopsis, MAX_TEXT)?;
        let links = input.availability.link.len()
            + input.availability.unlink.len()
            + input
                .relationships
                .iter()
                .map(|(_, l)| l.link.len() + l.unlink.len())
                .sum::<usize>();
        if links > MAX_LINKS {
            return Err(ServiceError::Validation(format!(
                "{links} links and unlinks in one mutation; at most {MAX_LINKS} are allowed"
            )));
        }
        Ok(())
    }

    async fn resolve_availability(&self, reference: &str) -> Result<String> {
        check_id("an availability reference", reference)?;
        if self
            .deps
            .content
            .get_availability(reference)
            .await?
            .is_some()
        {
            return Ok(reference.to_owned());
        }
        self.deps
            .content
            .find_by_external_id(AVAILABILITY_SCOPE, reference)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "availability `{reference}` not found (by uid or external_id)"
                ))
            })
    }

    async fn resolve_availabilities(&self, references: &[String]) -> Result<Vec<String>> {
        let mut uids = Vec::with_capacity(references.len());
        for reference in references {
            let uid = self.resolve_availability(reference).await?;
            if !uids.contains(&uid) {
                uids.push(uid);
            }
        }
        Ok(uids)
    }

    /// A live object of `object_type` by uid, or by external_id.
    async fn resolve_object(&self, object_type: ObjectType, reference: &str) -> Result<String> {
        check_id(&format!("a {object_type} reference"), reference)?;
        if let Some(object) = self.deps.content.get_object(reference).await?
            && object.object_type == object_type
            && !object.deleted
        {
            return Ok(object.uid);
        }
        if let Some(uid) = self
            .deps
            .content
            .find_by_external_id(object_type.as_str(), reference)
            .await?
        {
            return Ok(uid);
        }
        Err(ServiceError::NotFound(format!(
            "{object_type} `{reference}` not found (by uid or external_id)"
        )))
    }

    async fn select(&self, object_type: ObjectType, selector: &Selector) -> Result<String> {
        selector.check()?;
        match (&selector.uid, &selector.external_id) {
            (None, None) => Err(ServiceError::Validation(
                "give the object's uid or external_id".to_owned(),
            )),
            (Some(uid), None) => Ok(uid.clone()),
            (uid, Some(external_id)) => {
                let found = self
                    .deps
                    .content
                    .find_by_external_id(object_type.as_str(), external_id)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::NotFound(format!(
                            "{object_type} with external_id `{external_id}` not found"
                        ))
                    })?;
                match uid {
                    Some(uid) if *uid != found => Err(ServiceError::Validation(format!(
                        "uid `{uid}` and external_id `{external_id}` name different objects"
                    ))),
                    _ => Ok(found),
                }
            }
        }
    }

    async fn live(&self, object_type: ObjectType, uid: &str) -> Result<ContentObject> {
        self.deps
            .content
            .get_object(uid)
            .await?
            .filter(|o| o.object_type == object_type && !o.deleted)
            .ok_or_else(|| ServiceError::NotFound(format!("{object_type} `{uid}` not found")))
    }

    /// Sends the task's message after its record is committed. A failed send leaves the task
    /// QUEUED without a message; the mutation itself has succeeded, so it is not reported as failed.
    async fn enqueue(&self, task: &Task) {
        if let Err(e) = self.deps.queue.send(&[task.queue_message()]).await {
            error!(task_id = %task.task_id, error = %e, source = ?std::error::Error::source(&e), "task written but its message could not be sent");
        }
    }

    #[instrument(skip(self, input), err(Debug, level = "info"))]
    pub async fn create_object(
        &self,
        object_type: ObjectType,
        input: ObjectInput,
        language: Option<&str>,
    ) -> Result<Written> {
        Self::validate_input(&input)?;
        let language = check_language(language)?.unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned());
        let availability = self
            .resolve_availabilities(&input.availability.link)
            .await?;
        let uid = new_uid();
        let mut edges = Vec::new();
        for (relationship, links) in &input.relationships {
            for reference in &links.link {
                let to = self
                    .resolve_object(relationship.target(), reference)
                    .await?;
                let edge = Edge {
                    from: uid.clone(),
                    relationship: *relationship,
                    to,
                };
                if !edges.iter().any(|(e, _)| *e == edge) {
                    edges.push((edge, true));
                }
            }
        }

        let now = self.now();
        let mut object = ContentObject::new(uid.clone(), object_type, now);
        object.external_id.clone_from(&input.external_id);
        object.slug = input.slug;
        object.declared_availability = availability;
        let translation = object.translation_mut(&language);
        translation.title = input.title;
        translation.synopsis = input.synopsis;

        let task = Task::new_queued(TaskType::PostCreate, uid.clone(), now);
        let external_ids = input
            .external_id
            .map(|external_id| ExternalIdOp::Claim {
                scope: object_type.as_str().to_owned(),
                external_id,
                uid: uid.clone(),
            })
            .into_iter()
            .collect();
        self.deps
            .content
            .write(ContentWrite {
                objects: vec![ObjectOp::Put {
                    object: object.clone(),
                    expect: Expect::Absent,
                }],
                external_ids,
                edges,
                new_tasks: vec![task.clone()],
                ..ContentWrite::default()
            })
            .await?;
        self.enqueue(&task).await;
        Ok(Written {
            object,
            language,
            task_id: task.task_id,
        })
    }

    #[instrument(skip(self, input), err(Debug, level = "info"))]
    pub async fn update_object(
        &self,
        object_type: ObjectType,
        selector: Selector,
        input: ObjectInput,
        language: Option<&str>,
    ) -> Result<Written> {
        Self::validate_input(&input)?;
        let language = check_language(language)?.unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned());
        let uid = self.select(object_type, &selector).await?;
        let link = self
            .resolve_availabilities(&input.availability.link)
            .await?;
        let unlink = self
            .resolve_availabilities(&input.availability.unlink)
            .await?;
        let mut link_edges = Vec::new();
        let mut unlink_edges = Vec::new();
        for (relationship, links) in &input.relationships {
            for reference in &links.link {
                let to = self
                    .resolve_object(relationship.target(), reference)
                    .await?;
                link_edges.push(Edge {
                    from: uid.clone(),
                    relationship: *relationship,
                    to,
                });
            }
            for reference in &links.unlink {
                let to = self
                    .resolve_object(relationship.target(), reference)
                    .await?;
                unlink_edges.push(Edge {
                    from: uid.clone(),
                    relationship: *relationship,
                    to,
                });
            }
        }

        // The object's own side changes now; its task mirrors them on the other side.
        let removed: Vec<&Edge> = unlink_edges
            .iter()
            .filter(|e| !link_edges.contains(e))
            .collect();
        let unlinked: Vec<Unlinked> = removed
            .iter()
            .map(|e| Unlinked {
                relationship: e.relationship.as_str().to_owned(),
                uid: e.to.clone(),
            })
            .collect();
        let mut edges: Vec<(Edge, bool)> = removed.iter().map(|e| ((*e).clone(), false)).collect();
        edges.extend(link_edges.iter().map(|e| (e.clone(), true)));

        for _ in 0..MAX_CONFLICTS {
            let current = self.live(object_type, &uid).await?;
            let mut object = current.clone();
            let now = self.now();
            let translation = object.translation_mut(&language);
            if input.title.is_some() {
                translation.title.clone_from(&input.title);
            }
            if input.synopsis.is_some() {
                translation.synopsis.clone_from(&input.synopsis);
            }
            if input.slug.is_some() {
                object.slug.clone_from(&input.slug);
            }
            let mut external_ids = Vec::new();
            if let Some(new_id) = &input.external_id
                && object.external_id.as_ref() != Some(new_id)
            {
                if let Some(old) = object.external_id.take() {
                    external_ids.push(ExternalIdOp::Release {
                        scope: object_type.as_str().to_owned(),
                        external_id: old,
                        uid: uid.clone(),
                    });
                }
                external_ids.push(ExternalIdOp::Claim {
                    scope: object_type.as_str().to_owned(),
                    external_id: new_id.clone(),
                    uid: uid.clone(),
                });
                object.external_id = Some(new_id.clone());
            }
            object
                .declared_availability
                .retain(|av| !unlink.contains(av));
            for av in &link {
                if !object.declared_availability.contains(av) {
                    object.declared_availability.push(av.clone());
                }
            }
            object.updated_at = now;
            object.version = current.version + 1;

            let mut task = Task::new_queued(TaskType::PostUpdate, uid.clone(), now);
            task.unlinked.clone_from(&unlinked);

            match self
                .deps
                .content
                .write(ContentWrite {
                    objects: vec![ObjectOp::Put {
                        object: object.clone(),
                        expect: Expect::Version(current.version),
                    }],
                    external_ids,
                    edges: edges.clone(),
                    new_tasks: vec![task.clone()],
                    ..ContentWrite::default()
                })
                .await
            {
                Ok(()) => {
                    self.enqueue(&task).await;
                    return Ok(Written {
                        object,
                        language,
                        task_id: task.task_id,
                    });
                }
                Err(StoreError::ConditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal(StoreError::ConditionFailed(
            "the object kept changing; try again".to_owned(),
        )))
    }

    /// Deletes the object, or with `language` only that translation (the last one deletes the
    /// object). The object disappears from reads at once; `post_delete` cleans up after it.
    #[instrument(skip(self), err(Debug, level = "info"))]
    pub async fn delete_object(
        &self,
        object_type: ObjectType,
        selector: Selector,
        language: Option<&str>,
    ) -> Result<Deleted> {
        let language = check_language(language)?;
        let uid = self.select(object_type, &selector).await?;
        for _ in 0..MAX_CONFLICTS {
            let current = self.live(object_type, &uid).await?;
            let now = self.now();
            let mut object = current.clone();
            object.version = current.version + 1;
            object.updated_at = now;
            let Some(deletion) = object.apply_delete(language.as_deref()) else {
                return Err(ServiceError::NotFound(format!(
                    "{object_type} `{uid}` has no `{}` translation",
                    language.as_deref().unwrap_or_default()
                )));
            };
            let task_type = deletion.task_type();
            let external_ids = ExternalIdOp::released_by(&object, deletion);
            let task = Task::new_queued(task_type, uid.clone(), now);
            match self
                .deps
                .content
                .write(ContentWrite {
                    objects: vec![ObjectOp::Put {
                        object,
                        expect: Expect::Version(current.version),
                    }],
                    external_ids,
                    new_tasks: vec![task.clone()],
                    ..ContentWrite::default()
                })
                .await
            {
                Ok(()) => {
                    self.enqueue(&task).await;
                    return Ok(Deleted {
                        uid,
                        language,
                        task_id: task.task_id,
                    });
                }
                Err(StoreError::ConditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal(StoreError::ConditionFailed(
            "the object kept changing; try again".to_owned(),
        )))
    }

    /// The language a read shows: the one asked for (which must exist), else the default, else
    /// the object's first translation.
    fn read_language(object: &ContentObject, language: Option<&str>) -> Result<String> {
        match language {
            Some(language) => object
                .translation(language)
                .map(|t| t.language.clone())
                .ok_or_else(|| {
                    ServiceError::NotFound(format!(
                        "{} `{}` has no `{language}` translation",
                        object.object_type, object.uid
                    ))
                }),
            None => Ok(object
                .translation(DEFAULT_LANGUAGE)
                .or_else(|| object.translations.first())
                .map_or_else(|| DEFAULT_LANGUAGE.to_owned(), |t| t.language.clone())),
        }
    }

    #[instrument(skip(self), err(Debug, level = "info"))]
    pub async fn get_object(
        &self,
        object_type: ObjectType,
        selector: Selector,
        language: Option<&str>,
        ignore_availability: bool,
    ) -> Result<(ContentObject, String)> {
        let language = check_language(language)?;
        let uid = self.select(object_type, &selector).await?;
        let now = self.now();
        let object = self
            .deps
            .content
            .get_object(&uid)
            .await?
            .filter(|o| o.object_type == object_type && o.is_visible(now, ignore_availability))
            .ok_or_else(|| ServiceError::NotFound(format!("{object_type} `{uid}` not found")))?;
        let language = Self::read_language(&object, language.as_deref())?;
        Ok((object, language))
    }

    /// Keeps asking the store for at most what is still missing, so the cursor of the last store
    /// page is exactly where this page ends even when reads filter objects out.
    async fn fill_page<T, F, Fut>(
        &self,
        limit: usize,
        mut cursor: Option<Cursor>,
        mut fetch: F,
    ) -> Result<Page<T>>
    where
        F: FnMut(Option<Cursor>, usize) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<T>, Option<Cursor>)>>,
    {
        let mut items = Vec::new();
        loop {
            let (found, next) = fetch(cursor, limit - items.len()).await?;
            items.extend(found);
            cursor = next;
            if items.len() >= limit || cursor.is_none() {
                return Ok(Page {
                    items,
                    next: cursor,
                });
            }
        }
    }

    #[instrument(skip(self), err(Debug, level = "info"))]
    pub async fn list_objects(
        &self,
        object_type: ObjectType,
        limit: Option<i32>,
        next_token: Option<String>,
        language: Option<&str>,
        ignore_availability: bool,
    ) -> Result<(Page<ContentObject>, Option<String>)> {
        let limit = page_limit(limit)?;
        let language = check_language(language)?;
        let now = self.now();
        let listing = Listing::new(format_args!("objects {object_type:?}"));
        let page = self
            .fill_page(
                limit,
                listing.cursor(next_token)?,
                |cursor, want| async move {
                    let page = self
                        .deps
                        .content
                        .list_objects(object_type, cursor.as_ref(), want)
                        .await?;
                    let visible = page
                        .items
                        .into_iter()
                        .filter(|o| o.is_visible(now, ignore_availability))
                        .collect();
                    Ok((visible, page.next))
                },
            )
            .await?;
        Ok((listing.page(page), language))
    }

    /// Objects on the other side of one relationship, in uid order, filtered like reads.
    #[instrument(skip(self), err(Debug, level = "info"))]
    pub async fn related(
        &self,
        uid: &str,
        relationship: Relationship,
        limit: Option<i32>,
        next_token: Option<String>,
        ignore_availability: bool,
    ) -> Result<Page<ContentObject>> {
        let limit = page_limit(limit)?;
        let now = self.now();
        let listing = Listing::new(format_args!("edges {uid} {relationship:?}"));
        let page = self
            .fill_page(
                limit,
                listing.cursor(next_token)?,
                |cursor, want| async move {
                    let page = self
                        .deps
                        .content
                        .list_edges(uid, Some(relationship), cursor.as_ref(), want)
                        .await?;
                    let uids: Vec<String> = page.items.into_iter().map(|e| e.to).collect();
                    let mut objects = self.deps.content.get_objects(&uids).await?;
                    objects.retain(|o| o.is_visible(now, ignore_availability));
                    objects.sort_by(|a, b| a.uid.cmp(&b.uid));
                    Ok((objects, page.next))
                },
            )
            .await?;
        Ok(listing.page(page))
    }

    /// An object's availability listing: the windows its tasks copied, with each availability.
    pub async fn object_availability(
        &self,
        object: &ContentObject,
        limit: Option<i32>,
        next_token: Option<String>,
    ) -> Result<Page<Availability>> {
        let limit = page_limit(limit)?;
        let listing = Listing::new(format_args!("windows {}", object.uid));
        let offset: usize = match listing.cursor(next_token)? {
            Some(cursor) => cursor.decode()?,
            None => 0,
        };
        let uids: Vec<String> = object
            .windows
            .iter()
            .skip(offset)
            .take(limit)
            .map(|w| w.availability_uid.clone())
            .collect();
        let end = offset + uids.len();
        let mut found = self.deps.content.get_availabilities(&uids).await?;
        found.sort_by_key(|a| uids.iter().position(|u| *u == a.uid));
        Ok(listing.page(Page {
            items: found,
            next: (end < object.windows.len()).then(|| Cursor::encode(&end)),
        }))
    }

    /// Checks an availability input's fields; returns its `start` and `end`, parsed.
    fn validate_availability(
        input: &AvailabilityInput,
    ) -> Result<(Option<Timestamp>, Option<Timestamp>)> {
        check_optional_id("external_id", &input.external_id)?;
        check_text("slug", &input.slug, MAX_ID)?;
        check_text("title", &input.title, MAX_TEXT)?;
        check_text("timezone", &input.timezone, MAX_ID)?;
        if input.external_id.as_deref() == Some(ALWAYS) {
            return Err(ServiceError::ExternalId(
                "external_id `always` belongs to the built-in availability".to_owned(),
            ));
        }
        let parse = |what: &str, value: &Option<String>| -> Result<Option<Timestamp>> {
            value
                .as_deref()
                .map(|text| {
                    Timestamp::parse_rfc3339(text).ok_or_else(|| {
                        ServiceError::Validation(format!(
                            "{what} `{text}` is not an RFC 3339 date-time such as 2024-01-01T00:00:00+00:00"
                        ))
                    })
                })
                .transpose()
        };
        Ok((parse("start", &input.start)?, parse("end", &input.end)?))
    }

    fn check_window(window: &Window) -> Result<()> {
        if window.start >= window.end {
            return Err(ServiceError::Validation(
                "start must be before end".to_owned(),
            ));
        }
        Ok(())
    }

    #[instrument(skip(self, input), err(Debug, level = "info"))]
    pub async fn create_availability(&self, input: AvailabilityInput) -> Result<Availability> {
        let (start, end) = Self::validate_availability(&input)?;
        let window = Availability::default_window(start, end);
        Self::check_window(&window)?;
        let now = self.now();
        let availability = Availability {
            uid: new_uid(),
            external_id: input.external_id.clone(),
            title: input.title,
            slug: input.slug,
            window,
            timezone: input.timezone,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let external_ids = input
            .external_id
            .map(|external_id| ExternalIdOp::Claim {
                scope: AVAILABILITY_SCOPE.to_owned(),
                external_id,
                uid: availability.uid.clone(),
            })
            .into_iter()
            .collect();
        self.deps
            .content
            .write(ContentWrite {
                availability: Some(AvailabilityOp::Put {
                    availability: availability.clone(),
                    expect: Expect::Absent,
                }),
                external_ids,
                ..ContentWrite::default()
            })
            .await?;
        Ok(availability)
    }

    /// Changes the availability's own fields now; its `availability_update` task then refreshes
    /// the window on every object linked to it.
    #[instrument(skip(self, input), err(Debug, level = "info"))]
    pub async fn update_availability(
        &self,
        selector: Selector,
        input: AvailabilityInput,
    ) -> Result<(Availability, TaskId)> {
        let (start, end) = Self::validate_availability(&input)?;
        let uid = self.get_availability(selector).await?.uid;
        Self::refuse_always(&uid, "changed")?;
        for _ in 0..MAX_CONFLICTS {
            let current = self.get_availability(Selector::uid(&uid)).await?;
            let now = self.now();
            let mut availability = current.clone();
            availability.window = Window {
                start: start.unwrap_or(current.window.start),
                end: end.unwrap_or(current.window.end),
            };
            Self::check_window(&availability.window)?;
            if input.title.is_some() {
                availability.title.clone_from(&input.title);
            }
            if input.slug.is_some() {
                availability.slug.clone_from(&input.slug);
            }
            if input.timezone.is_some() {
                availability.timezone.clone_from(&input.timezone);
            }
            let mut external_ids = Vec::new();
            if let Some(new_id) = &input.external_id
                && availability.external_id.as_ref() != Some(new_id)
            {
                if let Some(old) = availability.external_id.take() {
                    external_ids.push(ExternalIdOp::Release {
                        scope: AVAILABILITY_SCOPE.to_owned(),
                        external_id: old,
                        uid: uid.clone(),
                    });
                }
                external_ids.push(ExternalIdOp::Claim {
                    scope: AVAILABILITY_SCOPE.to_owned(),
                    external_id: new_id.clone(),
                    uid: uid.clone(),
                });
                availability.external_id = Some(new_id.clone());
            }
            availability.updated_at = now;
            availability.version = current.version + 1;
            let task = Task::new_queued(TaskType::AvailabilityUpdate, uid.clone(), now);
            let write = ContentWrite {
                availability: Some(AvailabilityOp::Put {
                    availability: availability.clone(),
                    expect: Expect::Version(current.version),
                }),
                external_ids,
                new_tasks: vec![task.clone()],
                ..ContentWrite::default()
            };
            match self.deps.content.write(write).await {
                Ok(()) => {
                    self.enqueue(&task).await;
                    return Ok((availability, task.task_id));
                }
                Err(StoreError::ConditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal(StoreError::ConditionFailed(
            "the availability kept changing; try again".to_owned(),
        )))
    }

    /// Deletes the availability now (it can no longer be linked); its `availability_delete` task
    /// then removes it from every object linked to it.
    #[instrument(skip(self), err(Debug, level = "info"))]
    pub async fn delete_availability(&self, selector: Selector) -> Result<Deleted> {
        let uid = self.get_availability(selector).await?.uid;
        Self::refuse_always(&uid, "deleted")?;
        for _ in 0..MAX_CONFLICTS {
            let current = self.get_availability(Selector::uid(&uid)).await?;
            let task = Task::new_queued(TaskType::AvailabilityDelete, uid.clone(), self.now());
            let write = ContentWrite {
                availability: Some(AvailabilityOp::Delete {
                    uid: uid.clone(),
                    expect: Expect::Version(current.version),
                }),
                external_ids: current
                    .external_id
                    .map(|external_id| ExternalIdOp::Release {
                        scope: AVAILABILITY_SCOPE.to_owned(),
                        external_id,
                        uid: uid.clone(),
                    })
                    .into_iter()
                    .collect(),
                new_tasks: vec![task.clone()],
                ..ContentWrite::default()
            };
            match self.deps.content.write(write).await {
                Ok(()) => {
                    self.enqueue(&task).await;
                    return Ok(Deleted {
                        uid,
                        language: None,
                        task_id: task.task_id,
                    });
                }
                Err(StoreError::ConditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal(StoreError::ConditionFailed(
            "the availability kept changing; try again".to_owned(),
        )))
    }

    fn refuse_always(uid: &str, verb: &str) -> Result<()> {
        if uid == ALWAYS {
            return Err(ServiceError::Validation(format!(
                "the built-in availability `always` cannot be {verb}"
            )));
        }
        Ok(())
    }

    /// Queues one `batch_delete` task for up to `MAX_BATCH_DELETE` entries; nothing is deleted
    /// until it runs. Repeated entries count once.
    #[instrument(skip(self, entries), fields(entries = entries.len()), err(Debug, level = "info"))]
    pub async fn batch_delete(&self, entries: Vec<DeleteEntry>) -> Result<Deleted> {
        if entries.is_empty() || entries.len() > MAX_BATCH_DELETE {
            return Err(ServiceError::Validation(format!(
                "batchDeleteObjects takes 1 to {MAX_BATCH_DELETE} objects, not {}",
                entries.len()
            )));
        }
        let mut unique: Vec<DeleteEntry> = Vec::with_capacity(entries.len());
        for entry in entries {
            check_id("uid", &entry.uid)?;
            // Canonical case, as every other call stores it: `FR` names the `fr` translation.
            let entry = DeleteEntry {
                language: check_language(entry.language.as_deref())?,
                ..entry
            };
            if !unique.contains(&entry) {
                unique.push(entry);
            }
        }
        let mut task = Task::new_queued(TaskType::BatchDelete, BATCH_DELETE, self.now());
        task.entries = unique;
        self.deps
            .content
            .write(ContentWrite {
                new_tasks: vec![task.clone()],
                ..ContentWrite::default()
            })
            .await?;
        self.enqueue(&task).await;
        Ok(Deleted {
            uid: BATCH_DELETE.to_owned(),
            language: None,
            task_id: task.task_id,
        })
    }

    pub async fn get_availability(&self, selector: Selector) -> Result<Availability> {
        selector.check()?;
        let uid = match (&selector.uid, &selector.external_id) {
            (None, None) => {
                return Err(ServiceError::Validation(
                    "give the availability's uid or external_id".to_owned(),
                ));
            }
            (Some(uid), None) => uid.clone(),
            (_, Some(external_id)) => self.resolve_availability(external_id).await?,
        };
        self.deps
            .content
            .get_availability(&uid)
            .await?
            .filter(|a| selector.uid.as_ref().is_none_or(|u| *u == a.uid))
            .ok_or_else(|| ServiceError::NotFound(format!("availability `{uid}` not found")))
    }

    pub async fn list_availability(
        &self,
        limit: Option<i32>,
        next_token: Option<String>,
    ) -> Result<Page<Availability>> {
        let limit = page_limit(limit)?;
        let listing = Listing::new(format_args!("availability"));
        let cursor = listing.cursor(next_token)?;
        let page = self
            .deps
            .content
            .list_availability(cursor.as_ref(), limit)
            .await?;
        Ok(listing.page(page))
    }

    /// Unknown, malformed and expired ids are all simply "not found".
    pub async fn get_task(&self, task_id: &str) -> Result<Task> {
        let not_found = || ServiceError::NotFound(format!("task `{}` not found", quoted(task_id)));
        let id = TaskId::parse(task_id).ok_or_else(not_found)?;
        self.deps
            .tasks
            .get_task(id, self.now())
            .await?
            .ok_or_else(not_found)
    }

    pub async fn list_tasks(&self, query: TaskListQuery) -> Result<Page<Task>> {
        let limit = page_limit(query.limit)?;
        check_optional_id("object_uid", &query.object_uid)?;
        let task_type = query
            .task_type
            .as_deref()
            .map(|name| {
                name.parse::<TaskType>().map_err(|_| {
                    let known: Vec<&str> = TaskType::ALL.iter().map(|t| t.as_str()).collect();
                    ServiceError::Validation(format!(
                        "task_type `{}` is not one of {}",
                        quoted(name),
                        known.join(", ")
                    ))
                })
            })
            .transpose()?;
        let listing = Listing::new(format_args!(
            "tasks {:?} {:?} {task_type:?} {:?}",
            query.status, query.object_uid, query.order
        ));
        let page = self
            .deps
            .tasks
            .list_tasks(
                &TaskQuery {
                    status: query.status,
                    cursor: listing.cursor(query.next_token)?,
                    object_uid: query.object_uid,
                    task_type,
                    order: query.order,
                    limit,
                },
                self.now(),
            )
            .await?;
        Ok(listing.page(page))
    }
}

#[cfg(test)]
mod tests {
    use super::{Listing, ServiceError, check_language};
    use crate::domain::ObjectType;
    use crate::ports::{Cursor, Order, Page};

    #[test]
    fn a_next_token_is_taken_only_by_the_listing_that_issued_it() {
        let tasks = |order: Order| {
            Listing::new(format_args!(
                "tasks {:?} {:?} {:?} {order:?}",
                None::<()>, None::<()>, None::<()>
            ))
        };
        let movies = Listing::new(format_args!("objects {:?}", ObjectType::Movie));
        // The forged tokens of the corpus (110, 111, 146; 115) carry these fingerprints, so
        // that they reach the DynamoDB adapter's own checks.
        assert_eq!(tasks(Order::Desc).0, "ec5a12f50e1c");
        assert_eq!(movies.0, "e920f9a4947b");
        let page = tasks(Order::Desc).page(Page {
            items: Vec::<()>::new(),
            next: Some(Cursor("abc".to_owned())),
        });
        let token = page.next.map(|c| c.0);
        assert_eq!(
            tasks(Order::Desc).cursor(token.clone()).ok().flatten(),
            Some(Cursor("abc".to_owned()))
        );
        for other in [tasks(Order::Asc), movies] {
            assert!(matches!(
                other.cursor(token.clone()),
                Err(ServiceError::Validation(_))
            ));
        }
        for forged in ["", "abc", ".abc", "ec5a12f50e1c", "ec5a12f50e1d.abc"] {
            assert!(
                tasks(Order::Desc).cursor(Some(forged.to_owned())).is_err(),
                "{forged}"
            );
        }
    }

    #[test]
    fn language_tags_are_checked_and_put_in_canonical_case() {
        for (given, canonical) in [
            ("fr", "fr"),
            ("FR", "fr"),
            ("en-gb", "en-GB"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("en-GB-oxendict", "en-GB-oxendict"),
        ] {
            assert_eq!(
                check_language(Some(given)).ok().flatten().as_deref(),
                Some(canonical)
            );
        }
        for bad in [
            "",
            "xx-",
            "x-",
            "-fr",
            "fr--FR",
            "ZZZZZZZZZZ",
            "en-GB-oxendict-12345678901",
            "fr_FR",
            "not a tag",
            "@@",
        ] {
            assert!(check_language(Some(bad)).is_err(), "{bad} was accepted");
        }
    }
}
