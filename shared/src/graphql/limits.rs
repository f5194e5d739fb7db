//! What one GraphQL request may ask for, checked before async-graphql does anything with it but
//! parse, so that no document — however it is written: fragments, inline fragments, variables —
//! reaches validation or a resolver when it is too large, too deep or malformed in a costly way.
//!
//! The checks run when the request is prepared, not when it is parsed: async-graphql's own
//! recursion and directive checks run inside its parse step and walk every fragment spread
//! unmemoised, which takes hours on 1 KB of fragments that each spread the next one twice. The
//! document parsed here is handed on, so it is parsed once. Validation and execution then apply
//! [`MAX_DEPTH`] and [`MAX_COMPLEXITY`] (the cost of listings) as async-graphql's own limits,
//! and the same extension keeps the answer within its size while it is built ([`super::answer`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextResolve,
    NextValidation, ResolveInfo,
};
use async_graphql::parser::Error as ParseError;
use async_graphql::parser::types::{
    BaseType, Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition,
    OperationType, Selection, SelectionSet,
};
use async_graphql::{
    Name, Positioned, Request, Response, ServerError, ServerResult, ValidationResult, Value,
    Variables,
};
use async_graphql_value::Value as InputValue;

use super::answer::AnswerBudget;

/// Deepest selection a request may make, fragments expanded; the seed documents need 3.
pub const MAX_DEPTH: usize = 12;
/// Most a request may cost, counted through fragments: each field 1, and each listing (`listX`,
/// `listSkylarkBackgroundTask`, relationships, `availability`) its page size (`limit`, 50 by
/// default) times what it selects per item, so nested listings multiply: the cost is about the
/// number of values the answer can hold. A full page of tasks with every field costs about 800;
/// a page of 100 movies, each with its availability and brands (default pages), about 21,000;
/// two levels of 100-object pages with five fields each about 60,000, and three levels a
/// million: refused.
pub const MAX_COMPLEXITY: usize = 50_000;
/// Most tokens a document may hold (names, punctuation, numbers; a string literal is one), counted
/// before it is parsed, as graphql-js's `maxTokens` does: parsing is the one step every later
/// limit waits for, and a 1 MB document of 500,000 names takes seconds to parse.
pub const MAX_TOKENS: usize = 20_000;
/// Most selections (fields, fragment spreads, inline fragments) a document may make once its
/// fragments are expanded: about fifty times what the seed documents need.
pub const MAX_SELECTIONS: usize = 1_000;
/// Most aliased fields a document may hold, fragments expanded.
pub const MAX_ALIASES: usize = 100;
/// Most mutations one request may run (root fields of a mutation, fragments expanded); each is
/// a write and a task, so a request cannot be a bulk load past API Gateway's throttling.
/// `batchDeleteObjects` takes up to 100 objects in one.
pub const MAX_MUTATIONS: usize = 10;
/// Most directives on one field, fragment or operation: the schema knows `@skip` and
/// `@include`, each of which may appear once.
pub const MAX_DIRECTIVES: usize = 2;
/// Most variables one operation may declare.
pub const MAX_VARIABLES: usize = 100;
/// Longest name (of a field, argument, fragment, variable, directive) a document may hold: one
/// token however long, but async-graphql's "did you mean" suggestions for an unknown name cost
/// its length times every known name's (a 1 MiB name: 0.4 s of CPU in a release build).
pub const MAX_NAME_BYTES: usize = 256;
/// Nesting of selection sets and fragments, counted together (async-graphql's recursion limit).
pub const MAX_RECURSIVE_DEPTH: usize = 32;
/// Deepest the brackets `{`, `[` and `(` of a document may nest, counted in its text before it is
/// parsed. async-graphql's parser limits only selection sets: a list or object value (an
/// argument, a directive's, a variable's default) 1,500 deep overflowed a Tokio worker's 2 MiB
/// stack in a release build, which aborts the whole process. The deepest selection allowed
/// ([`MAX_RECURSIVE_DEPTH`]) with values a few levels deep in it stays well inside.
pub const MAX_NESTING: usize = 64;

/// The cost of a listing field for [`MAX_COMPLEXITY`]: its page size times its items' cost.
pub fn listing_cost(limit: Option<i32>, per_item: usize) -> usize {
    let page = limit.map_or(crate::service::DEFAULT_LIMIT, |l| {
        usize::try_from(l)
            .unwrap_or(1)
            .clamp(1, crate::service::MAX_LIMIT)
    });
    // An item costs 1 however little it selects: `{ __typename }`, which async-graphql counts
    // as 0, is still one object to fetch and answer.
    page.saturating_mul(per_item.max(1)).saturating_add(1)
}

/// The extension that applies the checks of this module to every request.
pub(super) struct DocumentLimits {
    pub introspection: bool,
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestLimits {
            introspection: self.introspection,
            answer: AnswerBudget::default(),
        })
    }
}

/// The limits of one request: the document's, then its answer's.
struct RequestLimits {
    introspection: bool,
    answer: AnswerBudget,
}

#[async_trait::async_trait]
impl Extension for RequestLimits {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let refuse = |message: String| ServerError::new(message, None);
        check_text(&request.query).map_err(refuse)?;
        let operation_name = request.operation_name.clone();
        let variables = request.variables.clone();
        let document = request.parsed_query().map_err(|error| {
            // The parser stops at 64 nested selection sets; its words name no limit.
            if error.message == ParseError::RecursionLimitExceeded.to_string() {
                refuse(too_deep())
            } else {
                error
            }
        })?;
        check_document(document, self.introspection).map_err(refuse)?;
        check_typename_variables(document, operation_name.as_deref(), &variables)
            .map_err(refuse)?;
        let defaults =
            check_variables(document, operation_name.as_deref(), &variables).map_err(refuse)?;
        request.variables.extend(defaults);
        next.run(ctx, request).await
    }

    /// Without introspection, validation names no field or argument the document did not: its
    /// "Did you mean" suggestions would map the schema one typo at a time.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await;
        if self.introspection {
            return result;
        }
        result.map_err(|mut errors| {
            for error in &mut errors {
                if let Some(at) = error.message.find(" Did you mean") {
                    error.message.truncate(at);
                }
            }
            errors
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        self.answer.execute(ctx, operation_name, next).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        self.answer.resolve(ctx, info, next).await
    }
}

/// What must hold of a document's text before anything parses it: at most [`MAX_TOKENS`]
/// tokens, names of at most [`MAX_NAME_BYTES`], brackets nested at most [`MAX_NESTING`] deep.
/// Whatever parses a document outside the schema's own steps (the GET handler, to refuse a
/// mutation) calls this first.
pub fn check_text(document: &str) -> Result<(), String> {
    let tokens = count_tokens(document)?;
    if tokens > MAX_TOKENS {
        return Err(format!(
            "the document holds {tokens} tokens or more; at most {MAX_TOKENS} are taken"
        ));
    }
    Ok(())
}

fn too_deep() -> String {
    format!(
        "the document is too deep: more than {MAX_RECURSIVE_DEPTH} levels of selections and \
         fragments (a query may be at most {MAX_DEPTH} fields deep)"
    )
}

/// Tokens of a GraphQL document, up to one more than [`MAX_TOKENS`] (it stops there). Commas,
/// white space and comments are not tokens; a string or block string is one. A name longer than
/// [`MAX_NAME_BYTES`], or brackets nested deeper than [`MAX_NESTING`], are refused here.
fn count_tokens(document: &str) -> Result<usize, String> {
    let bytes = document.as_bytes();
    let mut i = 0;
    let mut tokens = 0;
    let mut nesting = 0usize;
    while i < bytes.len() && tokens <= MAX_TOKENS {
        let byte = bytes[i];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    // `\"""` is an escaped delimiter inside a block string.
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
                tokens += 1;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                tokens += 1;
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9')
                {
                    i += 1;
                }
                if i - start > MAX_NAME_BYTES {
                    return Err(format!(
                        "a name of {} bytes; names are at most {MAX_NAME_BYTES}",
                        i - start
                    ));
                }
                tokens += 1;
            }
            b'-' | b'0'..=b'9' => {
                // A number, with what a malformed one may run on with.
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'+' | b'-')
                {
                    i += 1;
                }
                tokens += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                i += 3;
                tokens += 1;
            }
            b'{' | b'[' | b'(' => {
                nesting += 1;
                if nesting > MAX_NESTING {
                    return Err(format!(
                        "the document is too deep: brackets (`{{`, `[`, `(`) nested more than \
                         {MAX_NESTING} levels"
                    ));
                }
                i += 1;
                tokens += 1;
            }
            b'}' | b']' | b')' => {
                nesting = nesting.saturating_sub(1);
                i += 1;
                tokens += 1;
            }
            _ => {
                // Punctuation, and anything else (the parser will name what is wrong), one byte
                // or one UTF-8 character at a time.
                i += 1;
                while i < bytes.len() && (bytes[i] & 0xC0) == 0x80 {
                    i += 1;
                }
                tokens += 1;
            }
        }
    }
    Ok(tokens)
}

/// What a selection set holds once its fragments are expanded.
#[derive(Debug, Default, Clone, Copy)]
struct Expanded {
    /// Selections at every level: fields, fragment spreads and inline fragments, each as many
    /// times as it would be walked.
    selections: usize,
    /// Fields at this level only (through fragments, not into sub-selections).
    top: usize,
    /// Levels of fields below and including this one (fragments add none).
    depth: usize,
    aliases: usize,
    introspection: bool,
}

impl Expanded {
    fn add(&mut self, other: Expanded) {
        self.selections = self.selections.saturating_add(other.selections);
        self.top = self.top.saturating_add(other.top);
        self.depth = self.depth.max(other.depth);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.introspection |= other.introspection;
    }
}

/// A fragment's expansion, or the mark that it is being expanded (a spread of it now is a cycle).
enum Memo {
    Expanding,
    Done(Expanded),
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    memo: HashMap<&'a str, Memo>,
}

fn check_directives(directives: &[Positioned<Directive>], location: &str) -> Result<(), String> {
    if directives.len() > MAX_DIRECTIVES {
        return Err(format!(
            "{location} has {} directives; at most {MAX_DIRECTIVES} are taken (@skip and @include, once each)",
            directives.len()
        ));
    }
    // async-graphql refuses a repeated directive on the fields it validates, not on `__typename`.
    if let [first, second] = directives
        && first.node.name.node == second.node.name.node
    {
        return Err(format!(
            "{location} has `@{}` twice; a directive may appear once",
            first.node.name.node
        ));
    }
    Ok(())
}

impl<'a> Walk<'a> {
    /// Expands `set` once per fragment (memoised), so a document of fragments that each spread
    /// the next twice costs its length, not two to the power of it. `nesting` counts every level
    /// as async-graphql's recursion limit does: a field's selection set, an inline fragment, a
    /// spread.
    fn expand(&mut self, set: &'a SelectionSet, nesting: usize) -> Result<Expanded, String> {
        if nesting > MAX_RECURSIVE_DEPTH {
            return Err(too_deep());
        }
        let mut total = Expanded::default();
        for item in &set.items {
            let inner = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    check_directives(&field.directives, &format!("field `{}`", field.name.node))?;
                    if field.name.node == "__typename" {
                        check_typename(field)?;
                    }
                    let inner = self.expand(&field.selection_set.node, nesting + 1)?;
                    Expanded {
                        selections: inner.selections,
                        top: 1,
                        depth: inner.depth + 1,
                        aliases: inner.aliases + usize::from(field.alias.is_some()),
                        introspection: inner.introspection
                            || matches!(field.name.node.as_str(), "__schema" | "__type"),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    check_directives(&fragment.node.directives, "an inline fragment")?;
                    self.expand(&fragment.node.selection_set.node, nesting + 1)?
                }
                Selection::FragmentSpread(spread) => {
                    check_directives(&spread.node.directives, "a fragment spread")?;
                    self.spread(spread.node.fragment_name.node.as_str(), nesting + 1)?
                }
            };
            // The selection itself counts too: walking a spread of an unknown fragment costs a
            // step.
            total.add(Expanded {
                selections: inner.selections.saturating_add(1),
                ..inner
            });
        }
        Ok(total)
    }

    fn spread(&mut self, name: &'a str, nesting: usize) -> Result<Expanded, String> {
        match self.memo.get(name) {
            Some(Memo::Done(known)) => return Ok(*known),
            Some(Memo::Expanding) => return Err(format!("fragment `{name}` spreads itself")),
            None => {}
        }
        // Unknown fragments are left to validation, which names them.
        let Some(fragment) = self.document.fragments.get(name) else {
            return Ok(Expanded::default());
        };
        check_directives(&fragment.node.directives, &format!("fragment `{name}`"))?;
        self.memo.insert(name, Memo::Expanding);
        let inner = self.expand(&fragment.node.selection_set.node, nesting)?;
        self.memo.insert(name, Memo::Done(inner));
        Ok(inner)
    }
}

fn check_document(document: &ExecutableDocument, introspection: bool) -> Result<(), String> {
    let mut walk = Walk {
        document,
        memo: HashMap::new(),
    };
    let mut total = Expanded::default();
    let mut mutations = 0usize;
    for (_, operation) in document.operations.iter() {
        let operation = &operation.node;
        check_directives(&operation.directives, "an operation")?;
        if operation.variable_definitions.len() > MAX_VARIABLES {
            return Err(format!(
                "an operation declares {} variables; at most {MAX_VARIABLES} are taken",
                operation.variable_definitions.len()
            ));
        }
        let expanded = walk.expand(&operation.selection_set.node, 0)?;
        if operation.ty == OperationType::Mutation {
            mutations = mutations.saturating_add(expanded.top);
        }
        total.add(expanded);
    }
    // Fragments no operation uses are refused by validation, but that validation walks them:
    // count them too, so a document cannot hide its size there.
    for name in document.fragments.keys() {
        if !walk.memo.contains_key(name.as_str()) {
            total.add(walk.spread(name.as_str(), 1)?);
        }
    }
    if total.selections > MAX_SELECTIONS {
        return Err(format!(
            "the document makes {} selections once its fragments are expanded; at most {MAX_SELECTIONS} are taken",
            total.selections
        ));
    }
    if total.depth > MAX_DEPTH {
        return Err(format!(
            "the query is {} fields deep, fragments expanded; at most {MAX_DEPTH} are taken",
            total.depth
        ));
    }
    if total.aliases > MAX_ALIASES {
        return Err(format!(
            "the document has {} aliases; at most {MAX_ALIASES} are taken",
            total.aliases
        ));
    }
    if mutations > MAX_MUTATIONS {
        return Err(format!(
            "the request runs {mutations} mutations; at most {MAX_MUTATIONS} per request \
             (batchDeleteObjects deletes up to 100 objects in one)"
        ));
    }
    if !introspection && total.introspection {
        return Err(
            "introspection is turned off on this API (__schema and __type); __typename works"
                .to_owned(),
        );
    }
    Ok(())
}

/// The operation a request runs, when the document makes it plain (otherwise execution says
/// which name is missing or unknown).
fn selected<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|o| &o.node)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next().map(|o| &o.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// async-graphql's validation does not visit `__typename` at all (its arguments, directives or
/// selection set), so `mutation { __typename(x: 1) createMovie(…) { uid } }` would run the
/// mutation. The rules it skips, checked here: no arguments, no selection set, and only `@skip`
/// or `@include`, each with one `if` that is a Boolean or a variable (which
/// [`check_typename_variables`] finds declared a Boolean; async-graphql, not seeing the use,
/// calls a variable used only there unused).
fn check_typename(field: &Field) -> Result<(), String> {
    if !field.arguments.is_empty() {
        return Err("`__typename` takes no arguments".to_owned());
    }
    if !field.selection_set.node.items.is_empty() {
        return Err("`__typename` is a String: it takes no selection set".to_owned());
    }
    for directive in &field.directives {
        let directive = &directive.node;
        let name = directive.name.node.as_str();
        if !matches!(name, "skip" | "include") {
            return Err(format!("unknown directive `@{name}`"));
        }
        match directive.arguments.as_slice() {
            [(argument, value)]
                if argument.node == "if"
                    && matches!(value.node, InputValue::Boolean(_) | InputValue::Variable(_)) => {}
            _ => {
                return Err(format!(
                    "`@{name}` takes one argument, `if`, a Boolean (on `__typename`)"
                ));
            }
        }
    }
    Ok(())
}

/// The variables the `__typename` directives of `set` use, its fragments followed once each.
fn typename_variables<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    visited: &mut HashSet<&'a str>,
    used: &mut Vec<&'a Name>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                if field.name.node == "__typename" {
                    for directive in &field.directives {
                        for (_, value) in &directive.node.arguments {
                            if let InputValue::Variable(name) = &value.node {
                                used.push(name);
                            }
                        }
                    }
                }
                typename_variables(document, &field.selection_set.node, visited, used);
            }
            Selection::InlineFragment(fragment) => {
                typename_variables(document, &fragment.node.selection_set.node, visited, used);
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if visited.insert(name)
                    && let Some(fragment) = document.fragments.get(name)
                {
                    typename_variables(document, &fragment.node.selection_set.node, visited, used);
                }
            }
        }
    }
}

/// The variables of the directives on `__typename`, which async-graphql checks neither for a
/// declaration nor for a value: in every operation, declared and of type `Boolean` (a document
/// is valid whole or not at all, whichever operation runs), and in the one that runs, true or
/// false once defaults apply. Run after [`check_document`], which bounds the walk: each
/// operation's fragments are followed once, and all of them together make at most
/// [`MAX_SELECTIONS`].
fn check_typename_variables(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<(), String> {
    let runs = selected(document, operation_name);
    for (_, operation) in document.operations.iter() {
        let operation = &operation.node;
        let mut used = Vec::new();
        typename_variables(
            document,
            &operation.selection_set.node,
            &mut HashSet::new(),
            &mut used,
        );
        for name in used {
            let Some(definition) = operation
                .variable_definitions
                .iter()
                .find(|d| d.node.name.node == *name)
            else {
                return Err(format!(
                    "the variable `${name}` is used by a directive on `__typename` but not declared"
                ));
            };
            let declared = &definition.node.var_type.node;
            if !matches!(&declared.base, BaseType::Named(ty) if ty == "Boolean") {
                return Err(format!(
                    "the variable `${name}` is a {declared}, but `@skip` and `@include` on \
                     `__typename` take a Boolean"
                ));
            }
            if runs.is_some_and(|runs| std::ptr::eq(runs, operation)) {
                let value = variables
                    .get(name)
                    .or_else(|| definition.node.default_value());
                if !matches!(value, Some(Value::Boolean(_))) {
                    return Err(format!(
                        "the variable `${name}` must be true or false for `@skip` or `@include` \
                         on `__typename`, not {}",
                        value.map_or_else(|| "missing".to_owned(), Value::to_string)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Request errors, as GraphQL over HTTP counts them, that async-graphql reports only while it
/// executes (with a field path, so as a 200): a required variable without a value. Returns the
/// default values of the variables not given, for the request to carry: async-graphql's `@skip`
/// and `@include` read only the variables given, so `@skip(if: $hide)` with
/// `$hide: Boolean = true` would not skip.
fn check_variables(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<Vec<(Name, Value)>, String> {
    let Some(operation) = selected(document, operation_name) else {
        return Ok(Vec::new());
    };
    let mut defaults = Vec::new();
    for definition in &operation.variable_definitions {
        let definition: &Positioned<_> = definition;
        let name: &Name = &definition.node.name.node;
        if let (None, Some(default)) = (variables.get(name), definition.node.default_value()) {
            defaults.push((name.clone(), default.clone()));
        }
        let given = variables.get(name).filter(|v| !matches!(v, Value::Null));
        if !definition.node.var_type.node.nullable
            && definition.node.default_value.is_none()
            && given.is_none()
        {
            return Err(format!(
                "the variable `${name}` is required ({}) and was not given a value",
                definition.node.var_type.node
            ));
        }
    }
    Ok(defaults)
}

#[cfg(test)]
mod tests {
    use super::count_tokens;

    #[test]
    fn tokens_are_counted_as_the_lexer_sees_them() {
        assert_eq!(count_tokens("{ a }"), Ok(3));
        assert_eq!(count_tokens("{ a(x: 1, y: -2.5e3) }"), Ok(11));
        assert_eq!(
            count_tokens(r#"{ a(s: "b c \" d", t: """x "" y \""" z""") }"#),
            Ok(11)
        );
        assert_eq!(count_tokens("# { { {\n{ ...F }"), Ok(4));
        assert_eq!(count_tokens("{ a(s: \"é ü\") }"), Ok(8));
        assert_eq!(count_tokens("query ($é: Int) { a }"), Ok(10));
        // It stops one past the limit, however long the document.
        assert_eq!(
            count_tokens(&"a ".repeat(500_000)),
            Ok(super::MAX_TOKENS + 1)
        );
        // Names are short; string literals may be long.
        let name = "a".repeat(super::MAX_NAME_BYTES);
        assert_eq!(count_tokens(&format!("{{ {name} }}")), Ok(3));
        assert!(count_tokens(&format!("{{ {name}b }}")).is_err());
        let text = "a".repeat(100_000);
        assert_eq!(count_tokens(&format!("{{ a(s: \"{text}\") }}")), Ok(8));
    }

    #[test]
    fn brackets_may_nest_64_deep_outside_strings() {
        let nested = |open: &str, close: &str, n: usize| {
            format!("{{ a(v: {}{}) }}", open.repeat(n), close.repeat(n))
        };
        // `{` and `(` around the value take two levels.
        let most = super::MAX_NESTING - 2;
        assert!(count_tokens(&nested("[", "]", most)).is_ok());
        for (open, close) in [("[", "]"), ("{a:", "}"), ("[{a:", "}]")] {
            let error = count_tokens(&nested(open, close, most + 1)).expect_err(open);
            assert!(error.contains("nested more than 64"), "{error}");
        }
        // Closed brackets free their level; brackets in strings and comments are text.
        assert!(count_tokens(&"{ a }".repeat(1_000)).is_ok());
        assert!(count_tokens(&format!("{{ a(s: \"{}\") }}", "[".repeat(1_000))).is_ok());
        assert!(count_tokens(&format!("# {}\n{{ a }}", "{".repeat(1_000))).is_ok());
    }
}
