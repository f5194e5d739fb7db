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

/// Ten movies with 60 KB titles, and a connection that has sent the request for nine titles of
/// each: a 5.4 MB answer, within the answer's limit and beyond what the kernel buffers between
/// the server and a reader with a 16 KB receive buffer.
async fn ask_for_a_large_answer(server: &Server) -> TcpStream {
    let mut client = server.client().await;
    let title = "x".repeat(60_000);
    let creates: String = (0..10)
        .map(|i| format!(r#"m{i}: createMovie(movie: {{ title: "{title}" }}) {{ uid }} "#))
        .collect();
    common::data(&mut client, &format!("mutation {{ {creates} }}")).await;
    drop(client);
    let titles: String = (0..9).map(|i| format!("t{i}: title ")).collect();
    let body = serde_json::json!({ "query": format!(
        "{{ listMovie(ignore_availability: true, limit: 10) {{ objects {{ {titles} }} }} }}"
    ) })
    .to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("buffer");
    let stream = socket.connect(server.addr()).await.expect("connect");
    let mut stream = stream.into_std().expect("std");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    stream
}

/// The status line and `content-length` of an answer read so far.
fn head_of(answer: &[u8]) -> (String, usize) {
    let text = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
    let length = text
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (text.lines().next().unwrap_or_default().to_owned(), length)
}

/// A client that never reads its answer is let go once a write has waited the request timeout:
/// its answer does not stay in memory for as long as it keeps the socket.
#[tokio::test]
async fn a_client_that_never_reads_its_answer_is_let_go() {
    let server = Server::start(&["--request-timeout-ms", "500"], &[]);
    let mut stream = ask_for_a_large_answer(&server).await;
    // Reads nothing for six times the limit, then everything the server still sends.
    std::thread::sleep(Duration::from_secs(3));
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let (status, length) = head_of(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(length > 5_000_000, "the answer is {length} bytes");
    assert!(
        answer.len() < length,
        "the whole answer ({length} bytes) waited for a client that did not read"
    );
    // The server goes on answering others.
    let mut client = server.client().await;
    common::data(&mut client, "{ listSkylarkBackgroundTask { count } }").await;
    drop(client);
    let (status, logs) = server.stop();
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
}

/// A client that reads slowly but steadily gets its whole answer: 400 KB/s against a 1 s limit.
/// With the kernel's autotuned 4 MB send buffer, Linux woke the writer only after 1.3 MB had
/// drained, 3 s at that pace, and the connection was cut as stalled.
#[tokio::test]
async fn a_client_that_reads_slowly_gets_its_whole_answer() {
    let server = Server::start(&["--request-timeout-ms", "1000"], &[]);
    let mut stream = ask_for_a_large_answer(&server).await;
    let mut answer = Vec::new();
    let mut chunk = vec![0; 40 * 1024];
    loop {
        let mut filled = 0;
        while filled < chunk.len() {
            match stream.read(&mut chunk[filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        answer.extend_from_slice(&chunk[..filled]);
        if filled < chunk.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, length) = head_of(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let body = answer.len()
        - answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head")
        - 4;
    assert_eq!(body, length, "a steady reader's answer was cut");
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
