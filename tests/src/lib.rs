//! Helpers for the end-to-end tests and benchmarks:
//! - [`consistency`]: `infra/template.yaml` checked against the code;
//! - [`http`]: a small HTTP/1.1 client that talks to a real server over a socket;
//! - [`emulator`]: a private set of tables and queues on the AWS-compatible endpoint
//!   (`AWS_ENDPOINT_URL`), the real adapters and entry points on top, and a request counter.

pub mod consistency;
pub mod emulator;
pub mod http;
pub mod soak;
