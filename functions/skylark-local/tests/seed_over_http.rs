//! The real binary in its default (embedded) mode, answering the seed documents over HTTP.

mod common;

use common::{Server, run_seed_documents};

#[tokio::test]
async fn the_binary_serves_the_seed_documents_and_stops_cleanly() {
    let server = Server::start(&[], &[]);
    let mut client = server.client().await;
    run_seed_documents(&mut client).await;
    drop(client);
    let (status, logs) = server.stop();
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    assert!(logs.contains("embedded"), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
}
