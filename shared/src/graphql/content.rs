//! Content types (Brand, Season, Episode, Movie) and Availability: reads, listings, mutations.
//! The four content types differ only in names and relationships, so one macro writes them.

use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::service;
use crate::domain::{Availability, ContentObject, DeleteEntry, ObjectType, Relationship, TaskId};
use crate::ports::Cursor;
use crate::service::{
    AvailabilityInput as NewAvailability, Deleted, Links, ObjectInput, Selector, ServiceError,
};

/// An object as one response shows it: in one language, maybe with the task that wrote it.
#[derive(Clone)]
pub struct ObjectView {
    object: Arc<ContentObject>,
    language: String,
    task_id: Option<TaskId>,
    ignore_availability: bool,
}

impl ObjectView {
    fn new(object: ContentObject, language: String, ignore_availability: bool) -> Self {
        ObjectView {
            object: Arc::new(object),
            language,
            task_id: None,
            ignore_availability,
        }
    }

    /// A related object, read in the same language and under the same availability rule.
    fn related(&self, object: ContentObject) -> Self {
        ObjectView::new(object, self.language.clone(), self.ignore_availability)
    }

    fn title(&self) -> Option<&str> {
        self.object.translation(&self.language)?.title.as_deref()
    }

    fn synopsis(&self) -> Option<&str> {
        self.object.translation(&self.language)?.synopsis.as_deref()
    }

    fn meta(&self, ctx: &Context<'_>) -> Meta {
        Meta {
            language: self.language.clone(),
            available_languages: self
                .object
                .translations
                .iter()
                .map(|t| t.language.clone())
                .collect(),
            availability_status: self.object.status_at(service(ctx).now()).to_string(),
        }
    }

    async fn availability(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        next_token: Option<String>,
    ) -> Result<AvailabilityListing> {
        let page = service(ctx)
            .object_availability(&self.object, limit, next_token)
            .await?;
        Ok(AvailabilityListing::new(
            page.items.into_iter().map(AvailabilityView::from).collect(),
            page.next,
        ))
    }

    async fn related_page(
        &self,
        ctx: &Context<'_>,
        field: &str,
        limit: Option<i32>,
        next_token: Option<String>,
    ) -> Result<(Vec<ObjectView>, Option<Cursor>)> {
        let relationship = Relationship::of(self.object.object_type, field).ok_or_else(|| {
            ServiceError::Validation(format!(
                "{} has no relationship `{field}`",
                self.object.object_type
            ))
        })?;
        let page = service(ctx)
            .related(
                &self.object.uid,
                relationship,
                limit,
                next_token,
                self.ignore_availability,
            )
            .await?;
        Ok((
            page.items.into_iter().map(|o| self.related(o)).collect(),
            page.next,
        ))
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Meta {
    /// The language this response shows.
    language: String,
    available_languages: Vec<String>,
    /// ACTIVE, FUTURE, EXPIRED or UNAVAILABLE now, from the windows the tasks copied.
    availability_status: String,
}

#[derive(SimpleObject)]
#[graphql(name = "ObjectContext", rename_fields = "snake_case")]
pub struct ObjectContext {
    /// The background task the returning mutation created; null on reads.
    task_id: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct ObjectDeleteResponse {
    uid: String,
    language: Option<String>,
    task_id: String,
}

#[derive(InputObject, Default)]
#[graphql(rename_fields = "snake_case")]
pub struct AvailabilityLinksInput {
    /// Availability uids or external_ids.
    link: Option<Vec<String>>,
    unlink: Option<Vec<String>>,
}

#[derive(InputObject, Default)]
#[graphql(rename_fields = "snake_case")]
pub struct RelationshipLinksInput {
    /// Object uids or external_ids.
    link: Option<Vec<String>>,
    unlink: Option<Vec<String>>,
}

fn links(link: Option<Vec<String>>, unlink: Option<Vec<String>>) -> Links {
    Links {
        link: link.unwrap_or_default(),
        unlink: unlink.unwrap_or_default(),
    }
}

macro_rules! listing {
    ($name:ident, $item:ty) => {
        #[derive(SimpleObject)]
        #[graphql(rename_fields = "snake_case")]
        pub struct $name {
            objects: Vec<$item>,
            /// The number of objects in this page.
            count: i32,
            /// Pass back to get the next page; null on the last one.
            next_token: Option<String>,
        }

        impl $name {
            fn new(objects: Vec<$item>, next: Option<Cursor>) -> Self {
                $name {
                    count: i32::try_from(objects.len()).unwrap_or(i32::MAX),
                    objects,
                    next_token: next.map(|c| c.0),
                }
            }
        }
    };
}

macro_rules! content_type {
    (
        $ty:ident, $listing:ident, $otype:ident, $input:ident, $rels_input:ident,
        query $query:ident { $get:ident, $list:ident }
        mutation $mutation:ident { $arg:ident, $create:ident, $update:ident, $delete:ident }
        relationships { $($field:ident => $target:ident / $target_listing:ident),* $(,)? }
    ) => {
        pub struct $ty(ObjectView);

        #[Object(rename_fields = "snake_case", rename_args = "snake_case")]
        impl $ty {
            async fn uid(&self) -> &str {
                &self.0.object.uid
            }
            async fn external_id(&self) -> Option<&str> {
                self.0.object.external_id.as_deref()
            }
            async fn slug(&self) -> Option<&str> {
                self.0.object.slug.as_deref()
            }
            async fn title(&self) -> Option<&str> {
                self.0.title()
            }
            async fn synopsis(&self) -> Option<&str> {
                self.0.synopsis()
            }
            #[graphql(name = "_meta")]
            async fn meta(&self, ctx: &Context<'_>) -> Meta {
                self.0.meta(ctx)
            }
            #[graphql(name = "_context")]
            async fn context(&self) -> ObjectContext {
                ObjectContext { task_id: self.0.task_id.map(|t| t.to_string()) }
            }
            /// The availability linked by background tasks (empty until `post_create` completes).
            #[graphql(complexity = "crate::graphql::listing_cost(limit, child_complexity)")]
            async fn availability(
                &self,
                ctx: &Context<'_>,
                limit: Option<i32>,
                next_token: Option<String>,
            ) -> Result<AvailabilityListing> {
                self.0.availability(ctx, limit, next_token).await
            }
            $(
                #[graphql(complexity = "crate::graphql::listing_cost(limit, child_complexity)")]
                async fn $field(
                    &self,
                    ctx: &Context<'_>,
                    limit: Option<i32>,
                    next_token: Option<String>,
                ) -> Result<$target_listing> {
                    let (objects, next) = self.0.related_page(ctx, stringify!($field), limit, next_token).await?;
                    Ok($target_listing::new(objects.into_iter().map($target).collect(), next))
                }
            )*
        }

        listing!($listing, $ty);

        #[derive(InputObject, Default)]
        #[graphql(rename_fields = "snake_case")]
        pub struct $rels_input {
            $($field: Option<RelationshipLinksInput>,)*
        }

        #[derive(InputObject, Default)]
        #[graphql(rename_fields = "snake_case")]
        pub struct $input {
            external_id: Option<String>,
            slug: Option<String>,
            title: Option<String>,
            synopsis: Option<String>,
            availability: Option<AvailabilityLinksInput>,
            relationships: Option<$rels_input>,
        }

        impl $input {
            fn into_service(self) -> Result<ObjectInput, ServiceError> {
                let availability = self.availability.unwrap_or_default();
                #[allow(unused_mut)]
                let mut relationships = Vec::new();
                #[allow(unused_variables)]
                if let Some(rels) = self.relationships {
                    $(
                        if let Some(l) = rels.$field {
                            let relationship = Relationship::of(ObjectType::$otype, stringify!($field))
                                .ok_or_else(|| ServiceError::Validation(format!(
                                    "{} has no relationship `{}`", ObjectType::$otype, stringify!($field)
                                )))?;
                            relationships.push((relationship, links(l.link, l.unlink)));
                        }
                    )*
                }
                Ok(ObjectInput {
                    external_id: self.external_id,
                    slug: self.slug,
                    title: self.title,
                    synopsis: self.synopsis,
                    availability: links(availability.link, availability.unlink),
                    relationships,
                })
            }
        }

        #[derive(Default)]
        pub struct $query;

        #[Object(rename_args = "snake_case")]
        impl $query {
            async fn $get(
                &self,
                ctx: &Context<'_>,
                uid: Option<String>,
                external_id: Option<String>,
                language: Option<String>,
                #[graphql(default = false)] ignore_availability: bool,
            ) -> Result<Option<$ty>> {
                let (object, language) = service(ctx)
                    .get_object(ObjectType::$otype, Selector { uid, external_id }, language.as_deref(), ignore_availability)
                    .await?;
                Ok(Some($ty(ObjectView::new(object, language, ignore_availability))))
            }

            #[graphql(complexity = "crate::graphql::listing_cost(limit, child_complexity)")]
            async fn $list(
                &self,
                ctx: &Context<'_>,
                limit: Option<i32>,
                next_token: Option<String>,
                language: Option<String>,
                #[graphql(default = false)] ignore_availability: bool,
            ) -> Result<Option<$listing>> {
                let (page, language) = service(ctx)
                    .list_objects(ObjectType::$otype, limit, next_token, language.as_deref(), ignore_availability)
                    .await?;
                let language = language.unwrap_or_else(|| crate::domain::DEFAULT_LANGUAGE.to_owned());
                Ok(Some($listing::new(
                    page.items
                        .into_iter()
                        .map(|o| $ty(ObjectView::new(o, language.clone(), ignore_availability)))
                        .collect(),
                    page.next,
                )))
            }
        }

        #[derive(Default)]
        pub struct $mutation;

        #[Object(rename_args = "snake_case")]
        impl $mutation {
            /// Writes the object at once; availability and the other side of relationships follow
            /// in a `post_create` task (`_context { task_id }`).
            async fn $create(
                &self,
                ctx: &Context<'_>,
                $arg: $input,
                language: Option<String>,
            ) -> Result<Option<$ty>> {
                let written = service(ctx)
                    .create_object(ObjectType::$otype, $arg.into_service()?, language.as_deref())
                    .await?;
                let mut view = ObjectView::new(written.object, written.language, true);
                view.task_id = Some(written.task_id);
                Ok(Some($ty(view)))
            }

            async fn $update(
                &self,
                ctx: &Context<'_>,
                uid: Option<String>,
                external_id: Option<String>,
                $arg: $input,
                language: Option<String>,
            ) -> Result<Option<$ty>> {
                let written = service(ctx)
                    .update_object(ObjectType::$otype, Selector { uid, external_id }, $arg.into_service()?, language.as_deref())
                    .await?;
                let mut view = ObjectView::new(written.object, written.language, true);
                view.task_id = Some(written.task_id);
                Ok(Some($ty(view)))
            }

            /// With `language`, deletes only that translation (the last one deletes the object).
            async fn $delete(
                &self,
                ctx: &Context<'_>,
                uid: Option<String>,
                external_id: Option<String>,
                language: Option<String>,
            ) -> Result<Option<ObjectDeleteResponse>> {
                let deleted = service(ctx)
                    .delete_object(ObjectType::$otype, Selector { uid, external_id }, language.as_deref())
                    .await?;
                Ok(Some(deleted.into()))
            }
        }
    };
}

content_type!(
    Movie, MovieListing, Movie, MovieInput, MovieRelationshipsInput,
    query MovieQuery { get_movie, list_movie }
    mutation MovieMutation { movie, create_movie, update_movie, delete_movie }
    relationships { brands => Brand / BrandListing }
);

content_type!(
    Episode, EpisodeListing, Episode, EpisodeInput, EpisodeRelationshipsInput,
    query EpisodeQuery { get_episode, list_episode }
    mutation EpisodeMutation { episode, create_episode, update_episode, delete_episode }
    relationships { seasons => Season / SeasonListing }
);

content_type!(
    Season, SeasonListing, Season, SeasonInput, SeasonRelationshipsInput,
    query SeasonQuery { get_season, list_season }
    mutation SeasonMutation { season, create_season, update_season, delete_season }
    relationships { brands => Brand / BrandListing, episodes => Episode / EpisodeListing }
);

content_type!(
    Brand, BrandListing, Brand, BrandInput, BrandRelationshipsInput,
    query BrandQuery { get_brand, list_brand }
    mutation BrandMutation { brand, create_brand, update_brand, delete_brand }
    relationships { seasons => Season / SeasonListing, movies => Movie / MovieListing }
);

/// An availability, with the task its mutation created (if it was the result of one).
pub struct AvailabilityView(Availability, Option<TaskId>);

impl From<Availability> for AvailabilityView {
    fn from(availability: Availability) -> Self {
        AvailabilityView(availability, None)
    }
}

#[Object(name = "Availability", rename_fields = "snake_case")]
impl AvailabilityView {
    #[graphql(name = "_context")]
    async fn context(&self) -> ObjectContext {
        ObjectContext {
            task_id: self.1.map(|t| t.to_string()),
        }
    }
    async fn uid(&self) -> &str {
        &self.0.uid
    }
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    async fn title(&self) -> Option<&str> {
        self.0.title.as_deref()
    }
    async fn slug(&self) -> Option<&str> {
        self.0.slug.as_deref()
    }
    async fn start(&self) -> String {
        self.0.window.start.to_string()
    }
    async fn end(&self) -> String {
        self.0.window.end.to_string()
    }
    async fn timezone(&self) -> Option<&str> {
        self.0.timezone.as_deref()
    }
    /// FUTURE before `start`, EXPIRED from `end`, else ACTIVE.
    async fn time_window_status(&self, ctx: &Context<'_>) -> String {
        self.0.window.status_at(service(ctx).now()).to_string()
    }
}

listing!(AvailabilityListing, AvailabilityView);

#[derive(InputObject, Default)]
#[graphql(rename_fields = "snake_case")]
pub struct AvailabilityInput {
    external_id: Option<String>,
    title: Option<String>,
    slug: Option<String>,
    /// RFC 3339; omitted means the distant past.
    start: Option<String>,
    /// RFC 3339; omitted means 2038-01-19T03:14:07+00:00.
    end: Option<String>,
    timezone: Option<String>,
}

#[derive(Default)]
pub struct AvailabilityQuery;

#[Object(rename_args = "snake_case")]
impl AvailabilityQuery {
    async fn get_availability(
        &self,
        ctx: &Context<'_>,
        uid: Option<String>,
        external_id: Option<String>,
    ) -> Result<Option<AvailabilityView>> {
        let availability = service(ctx)
            .get_availability(Selector { uid, external_id })
            .await?;
        Ok(Some(availability.into()))
    }

    #[graphql(complexity = "crate::graphql::listing_cost(limit, child_complexity)")]
    async fn list_availability(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        next_token: Option<String>,
    ) -> Result<Option<AvailabilityListing>> {
        let page = service(ctx).list_availability(limit, next_token).await?;
        Ok(Some(AvailabilityListing::new(
            page.items.into_iter().map(AvailabilityView::from).collect(),
            page.next,
        )))
    }
}

#[derive(Default)]
pub struct AvailabilityMutation;

#[Object(rename_args = "snake_case")]
impl AvailabilityMutation {
    async fn create_availability(
        &self,
        ctx: &Context<'_>,
        availability: AvailabilityInput,
    ) -> Result<Option<AvailabilityView>> {
        let created = service(ctx)
            .create_availability(availability.into())
            .await?;
        Ok(Some(created.into()))
    }

    /// Changes the availability now; its `availability_update` task (in `_context`) then
    /// refreshes every linked object through one `post_update_availability` each.
    async fn update_availability(
        &self,
        ctx: &Context<'_>,
        uid: Option<String>,
        external_id: Option<String>,
        availability: AvailabilityInput,
    ) -> Result<Option<AvailabilityView>> {
        let (updated, task_id) = service(ctx)
            .update_availability(Selector { uid, external_id }, availability.into())
            .await?;
        Ok(Some(AvailabilityView(updated, Some(task_id))))
    }

    /// Deletes the availability now; its `availability_delete` task then removes it from every
    /// linked object through one `post_delete_availability` each.
    async fn delete_availability(
        &self,
        ctx: &Context<'_>,
        uid: Option<String>,
        external_id: Option<String>,
    ) -> Result<Option<ObjectDeleteResponse>> {
        let deleted = service(ctx)
            .delete_availability(Selector { uid, external_id })
            .await?;
        Ok(Some(deleted.into()))
    }
}

#[derive(InputObject)]
#[graphql(rename_fields = "snake_case")]
pub struct DeleteInput {
    uid: String,
    /// Only this translation (the last one takes the object with it).
    language: Option<String>,
}

#[derive(Default)]
pub struct BatchMutation;

#[Object(rename_args = "snake_case")]
impl BatchMutation {
    /// Deletes up to 100 objects or translations in one `batch_delete` task (`uid`
    /// `BATCH_DELETE`), which queues a `post_delete` per deleted object.
    async fn batch_delete_objects(
        &self,
        ctx: &Context<'_>,
        objects: Vec<DeleteInput>,
    ) -> Result<Option<ObjectDeleteResponse>> {
        let entries = objects
            .into_iter()
            .map(|o| DeleteEntry {
                uid: o.uid,
                language: o.language,
            })
            .collect();
        Ok(Some(service(ctx).batch_delete(entries).await?.into()))
    }
}

impl From<AvailabilityInput> for NewAvailability {
    fn from(a: AvailabilityInput) -> Self {
        NewAvailability {
            external_id: a.external_id,
            title: a.title,
            slug: a.slug,
            start: a.start,
            end: a.end,
            timezone: a.timezone,
        }
    }
}

impl From<Deleted> for ObjectDeleteResponse {
    fn from(deleted: Deleted) -> Self {
        ObjectDeleteResponse {
            uid: deleted.uid,
            language: deleted.language,
            task_id: deleted.task_id.to_string(),
        }
    }
}
