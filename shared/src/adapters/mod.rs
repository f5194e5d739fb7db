//! Adapters behind the ports. The in-memory ones are the embedded default and the fast test bed;
//! they keep DynamoDB's and SQS's semantics rather than the other way round.

pub mod memory;
pub mod memory_queue;

pub use memory::MemoryStore;
pub use memory_queue::MemoryQueue;
