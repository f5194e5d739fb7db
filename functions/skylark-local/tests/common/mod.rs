//! Starts the real binary as a user would and talks to it over a socket.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::http::HttpClient;

pub const SEED_CREATE_MOVIE: &str = r#"mutation {
  createMovie(movie: {
    title: "My movie",
    availability: {
      link: ["always"]
    }
  }) {
    uid
    _context {
      task_id
    }
  }
}"#;

pub struct Server {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Server {
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let child = Command::new(env!("CARGO_BIN_EXE_skylark-local"))
            .args(["--listen", &addr.to_string()])
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start skylark-local");
        Server {
            child: Some(child),
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn client(&self) -> HttpClient {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match HttpClient::connect(self.addr).await {
                Ok(client) => return client,
                Err(e) if Instant::now() > deadline => panic!("server did not start: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// SIGTERM, as a service manager would stop it; returns its exit status and logs.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        let output = child.wait_with_output().expect("wait");
        let logs = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status, logs)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn data(client: &mut HttpClient, query: &str) -> Value {
    let response = client.graphql(query).await.expect("request");
    let body = response.json();
    assert_eq!(response.status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

/// The seed documents of DESIGN.md §2, verbatim, until the task is COMPLETE; then the listings,
/// a GET query and GraphiQL.
pub async fn run_seed_documents(client: &mut HttpClient) {
    let created = data(client, SEED_CREATE_MOVIE).await;
    let uid = created["createMovie"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let task_id = created["createMovie"]["_context"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    assert_eq!(uid.len(), 26);

    let get = format!(
        "{{\n  getSkylarkBackgroundTask(task_id: \"{task_id}\") {{\n    task_id created_at updated_at status task_type object_uid messages\n  }}\n}}"
    );
    // The in-process worker finishes the task on its own; wait for the outcome, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let task = loop {
        let task = data(client, &get).await["getSkylarkBackgroundTask"].clone();
        if task["status"] == "COMPLETE" {
            break task;
        }
        assert!(Instant::now() < deadline, "task not complete: {task}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(task["task_type"], "post_create");
    assert_eq!(task["object_uid"], uid.as_str());
    assert_eq!(
        task["messages"],
        serde_json::json!([
            "Job started",
            "Starting availability creation",
            "Availability creation complete",
            "Starting availability post-processing",
            "Availability post-processing complete"
        ])
    );

    let all = data(
        client,
        "{ listSkylarkBackgroundTask { objects { task_id created_at updated_at status task_type object_uid messages } } }",
    )
    .await;
    assert_eq!(
        all["listSkylarkBackgroundTask"]["objects"][0]["task_id"],
        task_id.as_str()
    );
    let in_progress = data(
        client,
        "{ listSkylarkBackgroundTask(status: IN_PROGRESS) { objects { task_id status } } }",
    )
    .await;
    assert_eq!(
        in_progress["listSkylarkBackgroundTask"]["objects"],
        serde_json::json!([])
    );

    let movie = data(
        client,
        &format!(r#"{{ getMovie(uid: "{uid}") {{ title }} }}"#),
    )
    .await;
    assert_eq!(movie["getMovie"]["title"], "My movie");

    // GET serves queries; GraphiQL is at the root.
    let response = client
        .request(
            "GET",
            "/graphql?query=%7BlistSkylarkBackgroundTask%7Bcount%7D%7D",
            &[],
            b"",
        )
        .await
        .expect("get");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["data"]["listSkylarkBackgroundTask"]["count"],
        1
    );
    let page = client
        .request("GET", "/", &[], b"")
        .await
        .expect("graphiql");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
}
