//! The SAM template, `infra/template.yaml`, read as data.
//!
//! The template is the one description of the deployed resources. The code reads it instead of
//! repeating it: [`crate::adapters::provision`] creates the tables and queues it declares (for the
//! emulator tests and `skylark-local --emulator --create-resources`), and the consistency tests
//! compare its functions, variables, timeouts and policies with what the code expects.
//!
//! Only the parts of CloudFormation the template uses are understood: `!Ref`, `!GetAtt`, `!Sub`
//! (short or long form), parameter defaults, `Globals.Function`, inline policy statements and
//! policies that `!Ref` an `AWS::IAM::ManagedPolicy` of the template.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use crate::domain::TaskType;

/// The template, embedded at build time so every binary and test reads the same text.
pub const TEMPLATE: &str = include_str!("../../infra/template.yaml");

/// The template's `Transform` for SAM resources.
pub const SAM_TRANSFORM: &str = "AWS::Serverless-2016-10-31";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the template is not valid YAML")]
    Yaml(#[from] serde_norway::Error),
    #[error("the template: {0}")]
    Shape(String),
}

fn shape(message: impl Into<String>) -> TemplateError {
    TemplateError::Shape(message.into())
}

/// A CloudFormation value, reduced to the forms the template uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expr {
    /// A plain scalar, as text.
    Literal(String),
    /// `!Ref Name`: a parameter or a resource.
    Ref(String),
    /// `!GetAtt Resource.Attribute`.
    GetAtt(String, String),
    /// `!Sub "text with ${Names}"`.
    Sub(String),
    /// Anything else (lists, other functions).
    Other,
}

impl Expr {
    pub fn parse(value: &Value) -> Expr {
        match value {
            Value::String(s) => Expr::Literal(s.clone()),
            Value::Number(n) => Expr::Literal(n.to_string()),
            Value::Bool(b) => Expr::Literal(b.to_string()),
            Value::Tagged(tagged) => Self::function(&tagged.tag.to_string(), &tagged.value),
            Value::Mapping(map) if map.len() == 1 => match map.iter().next() {
                Some((Value::String(key), inner)) if key == "Ref" => Self::function("Ref", inner),
                Some((Value::String(key), inner)) if key.starts_with("Fn::") => {
                    Self::function(&key["Fn::".len()..], inner)
                }
                _ => Expr::Other,
            },
            _ => Expr::Other,
        }
    }

    fn function(tag: &str, inner: &Value) -> Expr {
        let tag = tag.trim_start_matches('!');
        match (tag, inner) {
            ("Ref", Value::String(name)) => Expr::Ref(name.clone()),
            ("GetAtt", Value::String(dotted)) => match dotted.split_once('.') {
                Some((resource, attribute)) => {
                    Expr::GetAtt(resource.to_owned(), attribute.to_owned())
                }
                None => Expr::Other,
            },
            ("GetAtt", Value::Sequence(parts)) => match parts.as_slice() {
                [Value::String(resource), Value::String(attribute)] => {
                    Expr::GetAtt(resource.clone(), attribute.clone())
                }
                _ => Expr::Other,
            },
            ("Sub", Value::String(text)) => Expr::Sub(text.clone()),
            _ => Expr::Other,
        }
    }

    /// The resource this expression points at (`!Ref X`, `!GetAtt X.Arn`, `!Sub "${X.Arn}/…"`).
    pub fn resource(&self) -> Option<&str> {
        match self {
            Expr::Ref(name) | Expr::GetAtt(name, _) => Some(name),
            Expr::Sub(text) => {
                let start = text.find("${")? + 2;
                let end = start + text[start..].find('}')?;
                let name = &text[start..end];
                let name = name.split_once('.').map_or(name, |(resource, _)| resource);
                (!name.starts_with("AWS::")).then_some(name)
            }
            Expr::Literal(_) | Expr::Other => None,
        }
    }

    pub fn literal(&self) -> Option<&str> {
        match self {
            Expr::Literal(text) => Some(text),
            _ => None,
        }
    }
}

impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::Literal(text) => write!(f, "{text}"),
            Expr::Ref(name) => write!(f, "!Ref {name}"),
            Expr::GetAtt(resource, attribute) => write!(f, "!GetAtt {resource}.{attribute}"),
            Expr::Sub(text) => write!(f, "!Sub {text:?}"),
            Expr::Other => write!(f, "(an expression)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub hash_key: String,
    pub range_key: Option<String>,
    pub projection: String,
}

/// An `AWS::DynamoDB::Table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_id: String,
    /// (name, `S` | `N` | `B`), in template order.
    pub attributes: Vec<(String, String)>,
    pub hash_key: String,
    pub range_key: Option<String>,
    pub indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<String>,
    pub billing_mode: Option<String>,
    pub point_in_time_recovery: bool,
    pub deletion_policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSpec {
    pub queue: QueueSpec,
    pub max_receive_count: u64,
}

/// An `AWS::SQS::Queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub logical_id: String,
    /// `QueueName`, with `${AWS::StackName}` left in.
    pub name: Option<String>,
    pub visibility_timeout_secs: Option<u64>,
    pub message_retention_secs: Option<u64>,
    /// Its redrive target, if it has one (a dead-letter queue has none).
    pub dead_letter: Option<Box<DeadLetterSpec>>,
}

impl QueueSpec {
    /// The queue's name for a stack (or an emulator prefix) called `stack`.
    pub fn name_for(&self, stack: &str) -> Option<String> {
        self.name
            .as_ref()
            .map(|n| n.replace("${AWS::StackName}", stack))
    }
}

/// An `SQS` event of a function: Lambda's event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsEventSpec {
    pub name: String,
    pub queue: Expr,
    pub batch_size: Option<u64>,
    pub maximum_batching_window_secs: Option<u64>,
    pub function_response_types: Vec<String>,
    pub maximum_concurrency: Option<u64>,
}

/// An `HttpApi` event of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRouteSpec {
    pub name: String,
    pub api: Expr,
    pub method: String,
    pub path: String,
}

/// One `Allow`/`Deny` statement of a function's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementSpec {
    pub sid: Option<String>,
    pub effect: String,
    pub actions: Vec<String>,
    pub resources: Vec<Expr>,
}

/// An `AWS::Serverless::Function`, with `Globals.Function` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub code_uri: Option<String>,
    pub build_method: Option<String>,
    pub binary: Option<String>,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub architectures: Vec<String>,
    pub timeout_secs: Option<u64>,
    /// Globals' variables merged with the function's own (the function's win), as SAM does.
    pub environment: BTreeMap<String, Expr>,
    pub sqs_events: Vec<SqsEventSpec>,
    pub http_routes: Vec<HttpRouteSpec>,
    /// Inline statements and those of the template's managed policies the function refers to.
    pub statements: Vec<StatementSpec>,
    /// Policies that are neither (SAM policy templates, AWS managed policy names), as written.
    pub other_policies: Vec<String>,
}

impl FunctionSpec {
    /// The task type a worker serves (`TASK_TYPE`), if it is one.
    pub fn task_type(&self) -> Option<&str> {
        self.environment.get("TASK_TYPE").and_then(Expr::literal)
    }
}

/// The parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Sequence(items)) => items.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(one) => vec![one],
    }
}

impl Template {
    /// The template this build embeds.
    pub fn embedded() -> Result<Template, TemplateError> {
        Template::parse(TEMPLATE)
    }

    pub fn parse(yaml: &str) -> Result<Template, TemplateError> {
        let root: Value = serde_norway::from_str(yaml)?;
        if root.get("Resources").and_then(Value::as_mapping).is_none() {
            return Err(shape("no Resources mapping"));
        }
        Ok(Template { root })
    }

    /// The raw YAML tree (tests mutate a copy to prove the checks catch drift).
    pub fn value(&self) -> &Value {
        &self.root
    }

    pub fn value_mut(&mut self) -> &mut Value {
        &mut self.root
    }

    pub fn to_yaml(&self) -> Result<String, TemplateError> {
        Ok(serde_norway::to_string(&self.root)?)
    }

    fn resources_map(&self) -> Option<&Mapping> {
        self.root.get("Resources").and_then(Value::as_mapping)
    }

    /// (logical id, `Type`) of every resource, in template order.
    pub fn resources(&self) -> Vec<(String, String)> {
        self.resources_map()
            .into_iter()
            .flatten()
            .filter_map(|(id, resource)| {
                Some((id.as_str()?.to_owned(), text(resource.get("Type"))?))
            })
            .collect()
    }

    pub fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.resources_map()?.get(logical_id)
    }

    pub fn resource_type(&self, logical_id: &str) -> Option<String> {
        text(self.resource(logical_id)?.get("Type"))
    }

    fn properties(&self, logical_id: &str, expected_type: &str) -> Result<&Value, TemplateError> {
        let resource = self
            .resource(logical_id)
            .ok_or_else(|| shape(format!("no resource {logical_id}")))?;
        let found = text(resource.get("Type")).unwrap_or_default();
        if found != expected_type {
            return Err(shape(format!(
                "{logical_id} is a {found}, not an {expected_type}"
            )));
        }
        resource
            .get("Properties")
            .ok_or_else(|| shape(format!("{logical_id} has no Properties")))
    }

    pub fn parameter_default(&self, name: &str) -> Option<&Value> {
        self.root.get("Parameters")?.get(name)?.get("Default")
    }

    /// A number written as a literal or as `!Ref` to a parameter (its default).
    pub fn number(&self, value: Option<&Value>) -> Option<u64> {
        let value = value?;
        match Expr::parse(value) {
            Expr::Literal(text) => text.parse().ok(),
            Expr::Ref(name) => self.number(self.parameter_default(&name)),
            _ => None,
        }
    }

    pub fn transforms(&self) -> Vec<String> {
        list(self.root.get("Transform"))
            .into_iter()
            .filter_map(|v| text(Some(v)))
            .collect()
    }

    pub fn outputs(&self) -> BTreeMap<String, Expr> {
        self.root
            .get("Outputs")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(name, output)| {
                Some((name.as_str()?.to_owned(), Expr::parse(output.get("Value")?)))
            })
            .collect()
    }

    fn globals(&self) -> Option<&Value> {
        self.root.get("Globals")?.get("Function")
    }

    /// A property of a function, or of `Globals.Function` when the function leaves it out.
    fn function_property<'a>(&'a self, properties: &'a Value, name: &str) -> Option<&'a Value> {
        properties
            .get(name)
            .or_else(|| self.globals().and_then(|g| g.get(name)))
    }

    pub fn table(&self, logical_id: &str) -> Result<TableSpec, TemplateError> {
        let properties = self.properties(logical_id, "AWS::DynamoDB::Table")?;
        let key_pair = |schema: Option<&Value>| -> Result<(String, Option<String>), TemplateError> {
            let mut hash = None;
            let mut range = None;
            for key in list(schema) {
                let name = text(key.get("AttributeName"));
                match text(key.get("KeyType")).as_deref() {
                    Some("HASH") => hash = name,
                    Some("RANGE") => range = name,
                    _ => return Err(shape(format!("{logical_id}: a key has no KeyType"))),
                }
            }
            let hash = hash.ok_or_else(|| shape(format!("{logical_id}: a key has no HASH")))?;
            Ok((hash, range))
        };
        let (hash_key, range_key) = key_pair(properties.get("KeySchema"))?;
        let mut indexes = Vec::new();
        for index in list(properties.get("GlobalSecondaryIndexes")) {
            let (hash, range) = key_pair(index.get("KeySchema"))?;
            indexes.push(IndexSpec {
                name: text(index.get("IndexName"))
                    .ok_or_else(|| shape(format!("{logical_id}: an index has no name")))?,
                hash_key: hash,
                range_key: range,
                projection: text(
                    index
                        .get("Projection")
                        .and_then(|p| p.get("ProjectionType")),
                )
                .unwrap_or_else(|| "KEYS_ONLY".to_owned()),
            });
        }
        let ttl = properties.get("TimeToLiveSpecification");
        let ttl_enabled = ttl
            .and_then(|t| t.get("Enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(TableSpec {
            logical_id: logical_id.to_owned(),
            attributes: list(properties.get("AttributeDefinitions"))
                .into_iter()
                .filter_map(|a| {
                    Some((text(a.get("AttributeName"))?, text(a.get("AttributeType"))?))
                })
                .collect(),
            hash_key,
            range_key,
            indexes,
            ttl_attribute: ttl
                .filter(|_| ttl_enabled)
                .and_then(|t| text(t.get("AttributeName"))),
            billing_mode: text(properties.get("BillingMode")),
            point_in_time_recovery: properties
                .get("PointInTimeRecoverySpecification")
                .and_then(|p| p.get("PointInTimeRecoveryEnabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            deletion_policy: self
                .resource(logical_id)
                .and_then(|r| text(r.get("DeletionPolicy"))),
        })
    }

    pub fn queue(&self, logical_id: &str) -> Result<QueueSpec, TemplateError> {
        let properties = self.properties(logical_id, "AWS::SQS::Queue")?;
        let name = properties
            .get("QueueName")
            .map(Expr::parse)
            .and_then(|e| match e {
                Expr::Literal(text) | Expr::Sub(text) => Some(text),
                _ => None,
            });
        let dead_letter = match properties.get("RedrivePolicy") {
            None => None,
            Some(redrive) => {
                let target = redrive
                    .get("deadLetterTargetArn")
                    .map(Expr::parse)
                    .ok_or_else(|| shape(format!("{logical_id}: redrive without a target")))?;
                let dlq_id = match &target {
                    Expr::GetAtt(resource, attribute) if attribute == "Arn" => resource.clone(),
                    other => {
                        return Err(shape(format!(
                            "{logical_id}: deadLetterTargetArn is {other}, not !GetAtt <queue>.Arn"
                        )));
                    }
                };
                let max_receive_count = self
                    .number(redrive.get("maxReceiveCount"))
                    .ok_or_else(|| shape(format!("{logical_id}: no maxReceiveCount")))?;
                Some(Box::new(DeadLetterSpec {
                    queue: self.queue(&dlq_id)?,
                    max_receive_count,
                }))
            }
        };
        Ok(QueueSpec {
            logical_id: logical_id.to_owned(),
            name,
            visibility_timeout_secs: self.number(properties.get("VisibilityTimeout")),
            message_retention_secs: self.number(properties.get("MessageRetentionPeriod")),
            dead_letter,
        })
    }

    /// Every `AWS::Serverless::Function`, in template order.
    pub fn functions(&self) -> Result<Vec<FunctionSpec>, TemplateError> {
        self.resources()
            .into_iter()
            .filter(|(_, kind)| kind == "AWS::Serverless::Function")
            .map(|(id, _)| self.function(&id))
            .collect()
    }

    pub fn function(&self, logical_id: &str) -> Result<FunctionSpec, TemplateError> {
        let properties = self.properties(logical_id, "AWS::Serverless::Function")?;
        let metadata = self.resource(logical_id).and_then(|r| r.get("Metadata"));

        let mut environment = BTreeMap::new();
        let own_variables = properties
            .get("Environment")
            .and_then(|e| e.get("Variables"));
        let global_variables = self
            .globals()
            .and_then(|g| g.get("Environment"))
            .and_then(|e| e.get("Variables"));
        for variables in [global_variables, own_variables].into_iter().flatten() {
            for (name, value) in variables.as_mapping().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    environment.insert(name.to_owned(), Expr::parse(value));
                }
            }
        }

        let mut sqs_events = Vec::new();
        let mut http_routes = Vec::new();
        for (name, event) in properties
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap_or_default().to_owned();
            let event_properties = event.get("Properties");
            let get = |key: &str| event_properties.and_then(|p| p.get(key));
            match text(event.get("Type")).as_deref() {
                Some("SQS") => sqs_events.push(SqsEventSpec {
                    name,
                    queue: get("Queue").map_or(Expr::Other, Expr::parse),
                    batch_size: self.number(get("BatchSize")),
                    maximum_batching_window_secs: self
                        .number(get("MaximumBatchingWindowInSeconds")),
                    function_response_types: list(get("FunctionResponseTypes"))
                        .into_iter()
                        .filter_map(|v| text(Some(v)))
                        .collect(),
                    maximum_concurrency: self
                        .number(get("ScalingConfig").and_then(|s| s.get("MaximumConcurrency"))),
                }),
                Some("HttpApi") => http_routes.push(HttpRouteSpec {
                    name,
                    api: get("ApiId").map_or(Expr::Other, Expr::parse),
                    method: text(get("Method")).unwrap_or_default().to_ascii_uppercase(),
                    path: text(get("Path")).unwrap_or_default(),
                }),
                _ => {}
            }
        }

        let mut statements = Vec::new();
        let mut other_policies = Vec::new();
        for policy in list(properties.get("Policies")) {
            if let Some(inline) = policy.get("Statement") {
                statements.extend(Self::statements(inline));
                continue;
            }
            let expr = Expr::parse(policy);
            if let Expr::Ref(name) = &expr
                && self.resource_type(name).as_deref() == Some("AWS::IAM::ManagedPolicy")
            {
                let document = self
                    .properties(name, "AWS::IAM::ManagedPolicy")?
                    .get("PolicyDocument")
                    .and_then(|d| d.get("Statement"));
                statements.extend(document.map(Self::statements).unwrap_or_default());
                continue;
            }
            other_policies.push(match (&expr, policy) {
                (Expr::Literal(name), _) => name.clone(),
                (_, Value::Mapping(map)) => map
                    .keys()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => expr.to_string(),
            });
        }

        Ok(FunctionSpec {
            logical_id: logical_id.to_owned(),
            code_uri: text(self.function_property(properties, "CodeUri")),
            build_method: metadata.and_then(|m| text(m.get("BuildMethod"))),
            binary: metadata
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| text(b.get("Binary"))),
            runtime: text(self.function_property(properties, "Runtime")),
            handler: text(self.function_property(properties, "Handler")),
            architectures: list(self.function_property(properties, "Architectures"))
                .into_iter()
                .filter_map(|v| text(Some(v)))
                .collect(),
            timeout_secs: self.number(self.function_property(properties, "Timeout")),
            environment,
            sqs_events,
            http_routes,
            statements,
            other_policies,
        })
    }

    fn statements(value: &Value) -> Vec<StatementSpec> {
        list(Some(value))
            .into_iter()
            .map(|statement| StatementSpec {
                sid: text(statement.get("Sid")),
                effect: text(statement.get("Effect")).unwrap_or_default(),
                actions: list(statement.get("Action"))
                    .into_iter()
                    .filter_map(|v| text(Some(v)))
                    .collect(),
                resources: list(statement.get("Resource"))
                    .into_iter()
                    .map(Expr::parse)
                    .collect(),
            })
            .collect()
    }

    /// The table a variable of the functions' environment names (`CONTENT_TABLE: !Ref X`).
    pub fn table_of_variable(&self, variable: &str) -> Result<TableSpec, TemplateError> {
        let value = self
            .globals()
            .and_then(|g| g.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(|v| v.get(variable))
            .ok_or_else(|| shape(format!("Globals set no variable {variable}")))?;
        match Expr::parse(value) {
            Expr::Ref(table) => self.table(&table),
            other => Err(shape(format!("{variable} is {other}, not !Ref <table>"))),
        }
    }

    /// The worker function of a task type: the one whose `TASK_TYPE` is it.
    pub fn worker(&self, task_type: TaskType) -> Result<FunctionSpec, TemplateError> {
        let mut found = self
            .functions()?
            .into_iter()
            .filter(|f| f.task_type() == Some(task_type.as_str()));
        let worker = found
            .next()
            .ok_or_else(|| shape(format!("no function has TASK_TYPE {task_type}")))?;
        if let Some(other) = found.next() {
            return Err(shape(format!(
                "{} and {} both have TASK_TYPE {task_type}",
                worker.logical_id, other.logical_id
            )));
        }
        Ok(worker)
    }

    /// The queue a task type's worker consumes: its one SQS event's queue, with its DLQ.
    pub fn task_queue(&self, task_type: TaskType) -> Result<QueueSpec, TemplateError> {
        let worker = self.worker(task_type)?;
        let [event] = worker.sqs_events.as_slice() else {
            return Err(shape(format!(
                "{} has {} SQS events, not one",
                worker.logical_id,
                worker.sqs_events.len()
            )));
        };
        match &event.queue {
            Expr::GetAtt(queue, attribute) if attribute == "Arn" => self.queue(queue),
            other => Err(shape(format!(
                "{}'s SQS event reads {other}, not !GetAtt <queue>.Arn",
                worker.logical_id
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms_of_functions_mean_the_same() {
        let yaml = r#"
Resources: {}
A: !Ref X
B: { Ref: X }
C: !GetAtt Q.Arn
D: { "Fn::GetAtt": [Q, Arn] }
E: !Sub "${Q.Arn}/index/*"
F: !Sub "${AWS::StackName}-x"
"#;
        let template = Template::parse(yaml).expect("yaml");
        let at = |k: &str| Expr::parse(template.value().get(k).expect("key"));
        assert_eq!(at("A"), Expr::Ref("X".to_owned()));
        assert_eq!(at("A"), at("B"));
        assert_eq!(at("C"), Expr::GetAtt("Q".to_owned(), "Arn".to_owned()));
        assert_eq!(at("C"), at("D"));
        assert_eq!(at("E").resource(), Some("Q"));
        assert_eq!(at("F").resource(), None);
    }

    #[test]
    fn the_embedded_template_declares_a_queue_for_every_task_type() {
        let template = Template::embedded().expect("template");
        for task_type in TaskType::ALL {
            let queue = template.task_queue(*task_type).expect("queue");
            assert!(queue.dead_letter.is_some(), "{task_type} has no DLQ");
        }
    }
}
