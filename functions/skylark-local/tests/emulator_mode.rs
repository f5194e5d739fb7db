//! The real binary in emulator mode: DynamoDB and SQS at `AWS_ENDPOINT_URL` (the test command
//! starts moto), its own tables and queues, the queues polled like Lambda's event source mapping.

mod common;

use common::{Server, run_seed_documents};

#[tokio::test]
async fn emulator_mode_runs_the_seed_documents_to_complete() {
    let endpoint = tests::emulator::endpoint();
    let prefix = format!("local{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let server = Server::start(
        &[
            "--emulator",
            "--create-resources",
            "--resource-prefix",
            &prefix,
        ],
        &[("AWS_ENDPOINT_URL", endpoint.as_str())],
    );
    let mut client = server.client().await;
    run_seed_documents(&mut client).await;
    drop(client);
    let (status, logs) = server.stop();
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    assert!(logs.contains("tables and queues ready"), "{logs}");
}
