//! Skylark Tasks: the background-processing core of a headless video CMS.
//!
//! - [`domain`]: content, availability, tasks and their rules (no storage, no AWS);
//! - [`ports`]: the traits storage, queues and time are reached through;
//! - [`adapters`]: in-memory implementations with DynamoDB's and SQS's semantics;
//! - [`engine`]: the task engine, the processors and the batch handler every worker uses;
//! - [`service`], [`graphql`], [`http`]: the API;
//! - [`app`]: composition for the local binary and the tests;
//! - [`config`]: each function's settings from its environment;
//! - [`infra`]: the SAM template read as data (tables, queues, functions).

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod engine;
pub mod graphql;
pub mod http;
pub mod infra;
pub mod ports;
pub mod service;
pub mod telemetry;
