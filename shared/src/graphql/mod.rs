//! The GraphQL schema: Skylark's names (snake_case fields and arguments), AppSync-style errors.

mod content;
mod errors;
mod tasks;

use std::sync::Arc;

use async_graphql::{EmptySubscription, MergedObject, Schema};

pub use errors::{ErrorType, add_error_types};

use crate::service::Service;

#[derive(MergedObject, Default)]
pub struct Query(
    tasks::TaskQuery,
    content::MovieQuery,
    content::EpisodeQuery,
    content::SeasonQuery,
    content::BrandQuery,
    content::AvailabilityQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    content::MovieMutation,
    content::EpisodeMutation,
    content::SeasonMutation,
    content::BrandMutation,
    content::AvailabilityMutation,
    content::BatchMutation,
);

pub type AppSchema = Schema<Query, Mutation, EmptySubscription>;

/// Deepest selection a request may make; deeper ones are refused before any resolver runs.
pub const MAX_DEPTH: usize = 12;
/// Most fields a request may select, counted through fragments (each alias is a field): the
/// seed documents need under 20; a request of hundreds of aliases is refused before any
/// resolver runs.
pub const MAX_COMPLEXITY: usize = 300;

pub fn schema(service: Arc<Service>) -> AppSchema {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .data(service)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

fn service<'a>(ctx: &async_graphql::Context<'a>) -> &'a Arc<Service> {
    ctx.data_unchecked::<Arc<Service>>()
}
