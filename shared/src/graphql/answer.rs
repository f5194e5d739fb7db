//! The size of an answer, bounded while it is built. [`super::MAX_COMPLEXITY`] counts values,
//! not bytes, and one text may be 64 KiB: a 1 KB query for 99 aliases of the title of 100 movies
//! built half a gigabyte (1.5 GB of memory) before the HTTP layer refused to send it, and a
//! mutation whose answer was too large was refused after it had written. Here every resolved
//! value adds what it will take in the response (as [`crate::http::MAX_RESPONSE_BYTES`] counts
//! it, quotes and backslashes twice, `__typename` included); once [`MAX_DATA_BYTES`] are used,
//! the fields still to come are not resolved but answered `null`, and so is a text that would
//! pass it. Then a query, which changed nothing, is refused
//! whole (a 400 that says to ask for less); a mutation, which has written, keeps what it
//! answered so far (its task ids) beside one error that names the first field left out.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_graphql::extensions::{ExtensionContext, NextExecute, NextResolve, ResolveInfo};
use async_graphql::{
    PathSegment, QueryPathNode, QueryPathSegment, Response, ServerError, ServerResult, Value,
};

/// Bytes the `data` of an answer may take; the rest of [`crate::http::MAX_RESPONSE_BYTES`] is
/// left for its errors (at most 101, each message cut at 1 KB, with its path).
pub const MAX_DATA_BYTES: usize = crate::http::MAX_RESPONSE_BYTES - 500_000;

/// One request's count, kept by the request's limits extension ([`super::limits`]): one
/// extension, so each field passes one link of async-graphql's extension chain, not two.
#[derive(Default)]
pub(super) struct AnswerBudget {
    used: AtomicUsize,
    mutated: AtomicBool,
    /// The first field answered `null` because the budget was spent.
    first_cut: Mutex<Option<Vec<PathSegment>>>,
}

impl AnswerBudget {
    /// Runs the operation; what the budget left out decides the answer.
    pub(super) async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        let Some(path) = self.first_cut.lock().ok().and_then(|mut cut| cut.take()) else {
            return response;
        };
        if self.mutated.load(Ordering::Relaxed) {
            response.errors.push(ServerError {
                path,
                ..ServerError::new(
                    format!(
                        "the answer reached {MAX_DATA_BYTES} bytes, near what API Gateway can \
                         return: this field and those after it are null; the mutations ran \
                         (their tasks are queued), so do not send them again; ask for fewer \
                         fields next time"
                    ),
                    None,
                )
            });
            response
        } else {
            // Nothing was written: refused as a request error (no path), as too large.
            Response::from_errors(vec![ServerError::new(
                format!(
                    "the answer would be more than {MAX_DATA_BYTES} bytes, more than API Gateway \
                     can return; ask for fewer objects (`limit`) or fewer fields"
                ),
                None,
            )])
        }
    }

    /// Resolves one field or list item, or answers `null` once the budget is spent.
    pub(super) async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let node = info.path_node;
        // A mutation runs whatever its answer: the client asked for the write.
        let mutation = node.parent.is_none() && info.parent_type == "Mutation";
        if mutation {
            self.mutated.store(true, Ordering::Relaxed);
        }
        let key = match node.segment {
            // A GraphQL name, which needs no escapes: its quotes, `:` and `,`.
            QueryPathSegment::Name(name) => name.len() + 6,
            QueryPathSegment::Index(_) => 1,
        };
        if !mutation && self.used.load(Ordering::Relaxed) > MAX_DATA_BYTES {
            return Ok(self.cut(node, key));
        }
        // The object type whose `__typename` entries this value may hold (the schema has no
        // interfaces or unions).
        let type_name = info.return_type.trim_matches(['[', ']', '!']);
        let value = next.run(ctx, info).await?;
        let cost = key + value.as_ref().map_or(4, |value| own_cost(value, type_name));
        // A text that would pass the budget is left out itself, so no one value can carry the
        // answer far past it (64 KiB of control characters take 448 KiB).
        if !mutation
            && matches!(value, Some(Value::String(_)))
            && self.used.load(Ordering::Relaxed) + cost > MAX_DATA_BYTES
        {
            return Ok(self.cut(node, key));
        }
        self.used.fetch_add(cost, Ordering::Relaxed);
        Ok(value)
    }

    /// Answers `null` for the field at `node`, whose key still takes its place.
    fn cut(&self, node: &QueryPathNode<'_>, key: usize) -> Option<Value> {
        self.used.fetch_add(key + 4, Ordering::Relaxed);
        if let Ok(mut cut) = self.first_cut.lock() {
            cut.get_or_insert_with(|| path(node));
        }
        Some(Value::Null)
    }
}

/// What `value` itself adds to the response: a scalar all of it, an object or a list only its
/// brackets, since each of their fields and items is resolved, and counted, on its own. Except
/// `__typename`, which async-graphql answers without resolving it: an object of `type_name`
/// pays for its entries that hold that name.
fn own_cost(value: &Value, type_name: &str) -> usize {
    match value {
        Value::String(text) => json_string_cost(text),
        Value::Enum(name) => json_string_cost(name),
        Value::Object(entries) => {
            2 + entries
                .iter()
                .filter(|(_, value)| matches!(value, Value::String(s) if s == type_name))
                .map(|(key, _)| key.len() + 6 + json_string_cost(type_name))
                .sum::<usize>()
        }
        Value::List(_) => 2,
        Value::Binary(bytes) => bytes.len().saturating_mul(4),
        Value::Null => 4,
        Value::Boolean(_) => 5,
        Value::Number(number) => number.to_string().len(),
    }
}

/// The bytes of `text` as a JSON string, once more escaped into the response's body: quotes and
/// backslashes count twice, as [`crate::http::MAX_RESPONSE_BYTES`] is measured.
fn json_string_cost(text: &str) -> usize {
    4 + text
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' => 4,
            b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 3,
            0..0x20 => 7,
            _ => 1,
        })
        .sum::<usize>()
}

fn path(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path = Vec::new();
    let mut at = Some(node);
    while let Some(node) = at {
        path.push(match node.segment {
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
            QueryPathSegment::Index(index) => PathSegment::Index(index),
        });
        at = node.parent;
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use super::json_string_cost;

    #[test]
    fn strings_cost_what_they_take_escaped_twice() {
        for text in [
            "",
            "plain",
            "a \"quoted\" \\ word",
            "line\nbreak\ttab",
            "\u{1}",
            "é",
        ] {
            let once = serde_json::to_string(text).expect("json");
            let twice = serde_json::to_string(&once).expect("json");
            // The outer quotes of the second encoding are the body's own, not this string's.
            assert_eq!(json_string_cost(text), twice.len() - 2, "{text:?}");
        }
    }
}
