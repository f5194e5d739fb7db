//! The GraphQL schema: Skylark's names (snake_case fields and arguments), AppSync-style errors.

mod answer;
mod content;
mod errors;
mod limits;
mod tasks;

use std::sync::Arc;

use async_graphql::{EmptySubscription, MergedObject, Schema};

pub use answer::MAX_DATA_BYTES;
pub use errors::{ErrorType, add_error_types};
use limits::DocumentLimits;
pub use limits::{
    MAX_ALIASES, MAX_COMPLEXITY, MAX_DEPTH, MAX_DIRECTIVES, MAX_MUTATIONS, MAX_RECURSIVE_DEPTH,
    MAX_SELECTIONS, MAX_TOKENS, MAX_VARIABLES, check_text, listing_cost,
};

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

/// The schema on `service`. Without `introspection`, a request selecting `__schema` or `__type`
/// is refused with a ValidationError (async-graphql alone would answer `null` silently);
/// `__typename` still works.
pub fn schema(service: Arc<Service>, introspection: bool) -> AppSchema {
    let builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .data(service)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
        .extension(DocumentLimits { introspection });
    if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

fn service<'a>(ctx: &async_graphql::Context<'a>) -> &'a Arc<Service> {
    ctx.data_unchecked::<Arc<Service>>()
}
