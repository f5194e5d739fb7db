//! Adapters behind the ports. The in-memory ones are the embedded default and the fast test bed;
//! they keep DynamoDB's and SQS's semantics rather than the other way round. The DynamoDB and SQS
//! ones are what runs on AWS and against an emulator (`AWS_ENDPOINT_URL`).

pub mod dynamo;
pub mod faults;
pub mod keys;
pub mod memory;
pub mod memory_queue;
pub mod provision;
pub mod secrets;
pub mod sqs;

pub use dynamo::{DynamoStore, TableNames};
pub use memory::MemoryStore;
pub use memory_queue::MemoryQueue;
pub use secrets::SecretToken;
pub use sqs::SqsTaskQueue;
