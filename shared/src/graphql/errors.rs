//! Errors as AppSync shows them: a top-level `errorType` (also in `extensions.code`) and a
//! message that says what to fix. Internal failures are logged with their cause and shown plainly.

use async_graphql::ErrorExtensions;
use serde_json::Value;
use tracing::error;

use crate::service::ServiceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    ValidationError,
    ExternalIdException,
    UnauthorizedException,
    InternalFailure,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::NotFound => "NotFound",
            ErrorType::ValidationError => "ValidationError",
            ErrorType::ExternalIdException => "ExternalIDException",
            ErrorType::UnauthorizedException => "UnauthorizedException",
            ErrorType::InternalFailure => "InternalFailure",
        }
    }

    /// A GraphQL error body on its own, for requests refused before execution.
    pub fn body(self, message: &str) -> Value {
        serde_json::json!({
            "data": null,
            "errors": [{
                "message": message,
                "errorType": self.as_str(),
                "extensions": { "code": self.as_str() },
            }],
        })
    }
}

impl From<ServiceError> for async_graphql::Error {
    fn from(e: ServiceError) -> Self {
        let kind = match &e {
            ServiceError::NotFound(_) => ErrorType::NotFound,
            ServiceError::Validation(_) => ErrorType::ValidationError,
            ServiceError::ExternalId(_) => ErrorType::ExternalIdException,
            ServiceError::Internal(source) => {
                error!(error = %source, cause = ?std::error::Error::source(source), "internal failure");
                ErrorType::InternalFailure
            }
        };
        async_graphql::Error::new(e.message()).extend_with(|_, ext| ext.set("code", kind.as_str()))
    }
}

/// async-graphql leaves a failed field out of its parent; GraphQL (and AppSync) show it as
/// `null`, so `getX` that failed reads `{"data": {"getX": null}, "errors": [...]}`.
fn null_failed_fields(body: &mut Value) {
    let paths: Vec<Vec<Value>> = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("path").and_then(Value::as_array).cloned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if paths.is_empty() {
        return;
    }
    if body.get("data").is_none_or(Value::is_null) {
        body["data"] = Value::Object(Default::default());
    }
    for path in paths {
        let Some((leaf, parents)) = path.split_last() else {
            continue;
        };
        let mut pointer = String::from("/data");
        for step in parents {
            pointer.push('/');
            match step {
                Value::String(key) => pointer.push_str(&key.replace('~', "~0").replace('/', "~1")),
                other => pointer.push_str(&other.to_string()),
            }
        }
        if let (Value::String(key), Some(object)) = (
            leaf,
            body.pointer_mut(&pointer).and_then(Value::as_object_mut),
        ) {
            object.entry(key.clone()).or_insert(Value::Null);
        }
    }
}

/// Adds `errorType` to each error of a serialised response, and shows failed fields as `null`. Errors raised by the parser or the
/// validator carry no code of ours: they are the client's, so `ValidationError`.
pub fn add_error_types(body: &mut Value) {
    null_failed_fields(body);
    let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) else {
        return;
    };
    for error in errors {
        let Some(error) = error.as_object_mut() else {
            continue;
        };
        let code = error
            .get("extensions")
            .and_then(|ext| ext.get("code"))
            .and_then(Value::as_str)
            .unwrap_or(ErrorType::ValidationError.as_str())
            .to_owned();
        let extensions = error
            .entry("extensions")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(ext) = extensions.as_object_mut() {
            ext.entry("code")
                .or_insert_with(|| Value::String(code.clone()));
        }
        error.insert("errorType".to_owned(), Value::String(code));
    }
}
