//! The binary's time limits, met by a raw socket: a client that never finishes its headers or
//! its body does not hold a connection past `--request-timeout-ms`. And settings that would
//! leave the workers idle are refused at start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;

/// Sends `data`, then reads until the server closes the connection (or `patience` passes);
/// returns what it answered and how long that took.
fn send_and_wait(server: &Server, data: &[u8], patience: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream.set_read_timeout(Some(patience)).expect("timeout");
    stream.write_all(data).expect("send");
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn stalled_clients_are_let_go_at_the_request_timeout() {
    let server = Server::start(&["--request-timeout-ms", "500"], &[]);
    drop(server.client().await);
    // Far above the limit, so that only a server that never lets go fails.
    let patience = Duration::from_secs(20);

    let (answer, took) = send_and_wait(&server, b"POST /graphql HTTP/1.1\r\nHost: x\r\n", patience);
    assert!(
        took < patience,
        "headers never finished: still open after {took:?}"
    );
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    let (answer, took) = send_and_wait(
        &server,
        b"POST /graphql HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"query\"",
        patience,
    );
    assert!(
        took < patience,
        "body never finished: still open after {took:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"errorType\":\"ValidationError\""),
        "{answer}"
    );

    let (_, took) = send_and_wait(&server, b"", patience);
    assert!(took < patience, "an idle connection was kept for {took:?}");

    // A client that sends its request at once is answered as usual.
    let mut client = server.client().await;
    let response = client
        .graphql("{ listSkylarkBackgroundTask { count } }")
        .await
        .expect("request");
    assert_eq!(response.status, 200);
    drop(client);
    let (status, logs) = server.stop();
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
}

#[test]
fn zero_pollers_or_zero_concurrency_is_refused_at_start() {
    for flag in [
        "--pollers-per-type",
        "--worker-concurrency",
        "--request-timeout-ms",
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_skylark-local"))
            .args([flag, "0"])
            .output()
            .expect("run skylark-local");
        assert!(!output.status.success(), "{flag} 0 was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{flag}: {stderr}");
    }
}
