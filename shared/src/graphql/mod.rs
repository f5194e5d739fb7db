//! The GraphQL schema: Skylark's names (snake_case fields and arguments), AppSync-style errors.

mod content;
mod errors;
mod tasks;

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{
    EmptySubscription, MergedObject, Schema, ServerError, ServerResult, Variables,
};

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

/// The schema on `service`. Without `introspection`, a request selecting `__schema` or `__type`
/// is refused with a ValidationError (async-graphql alone would answer `null` silently);
/// `__typename` still works.
pub fn schema(service: Arc<Service>, introspection: bool) -> AppSchema {
    let builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .data(service)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    if introspection {
        builder.finish()
    } else {
        builder
            .disable_introspection()
            .extension(NoIntrospection)
            .finish()
    }
}

/// Refuses documents that select introspection fields, anywhere (fragments included).
struct NoIntrospection;

impl ExtensionFactory for NoIntrospection {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(NoIntrospection)
    }
}

fn selects_introspection(set: &SelectionSet) -> bool {
    set.items.iter().any(|item| match &item.node {
        Selection::Field(field) => {
            matches!(field.node.name.node.as_str(), "__schema" | "__type")
                || selects_introspection(&field.node.selection_set.node)
        }
        Selection::InlineFragment(fragment) => {
            selects_introspection(&fragment.node.selection_set.node)
        }
        Selection::FragmentSpread(_) => false,
    })
}

#[async_trait::async_trait]
impl Extension for NoIntrospection {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        // Fragment spreads are covered by walking every fragment definition.
        let asks = document
            .operations
            .iter()
            .any(|(_, op)| selects_introspection(&op.node.selection_set.node))
            || document
                .fragments
                .values()
                .any(|f| selects_introspection(&f.node.selection_set.node));
        if asks {
            return Err(ServerError::new(
                "introspection is turned off on this API (__schema and __type); __typename works",
                None,
            ));
        }
        Ok(document)
    }
}

fn service<'a>(ctx: &async_graphql::Context<'a>) -> &'a Arc<Service> {
    ctx.data_unchecked::<Arc<Service>>()
}
