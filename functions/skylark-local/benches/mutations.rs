//! End-to-end throughput benchmark: the real `skylark-local` binary on a loopback port, driven over
//! HTTP by `BENCH_CONCURRENCY` keep-alive connections (default 64) sending `BENCH_MUTATIONS`
//! (default 100,000) `createMovie` mutations, then timing how long the workers take to bring every
//! task to COMPLETE, and reading the server's memory from `/proc`.
//!
//! Run: `cargo bench -p skylark-local --bench mutations`. Without `--bench` (as `cargo test
//! --all-targets` runs it) it does a 200-mutation smoke run instead.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::http::HttpClient;

const MUTATION: &str = r#"mutation { createMovie(movie: { title: "My movie", availability: { link: ["always"] } }) { uid _context { task_id } } }"#;
const POLL_EVERY: Duration = Duration::from_millis(5);
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(300);

/// Targets from the issue.
const TARGET_MUTATIONS_PER_SEC: f64 = 10_000.0;
const TARGET_COMPLETION: Duration = Duration::from_secs(1);
const TARGET_BYTES_PER_TASK: f64 = 2048.0;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a positive integer, not {v:?}")),
        Err(_) => default,
    }
}

/// The server process; SIGTERMed and reaped on drop, so a panic does not leave it running.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        // Find a free port, then let the server bind it.
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
            probe.local_addr().expect("probe address")
        };
        let child = Command::new(env!("CARGO_BIN_EXE_skylark-local"))
            .arg("--listen")
            .arg(addr.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start skylark-local");
        Server { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("server did not stop within 30 s of SIGTERM; killing it");
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `VmXxx:   1234 kB` line of `/proc/<pid>/status`, in kB.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s, as on every Linux we run on).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read proc stat");
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    ticks as f64 / 100.0
}

async fn wait_until_up(server: &mut Server) -> HttpClient {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("skylark-local exited during start-up: {status}");
        }
        if let Ok(mut client) = HttpClient::connect(server.addr).await
            && let Ok(response) = client.graphql("{ __typename }").await
            && response.status == 200
        {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "skylark-local did not answer on {} within 30 s",
            server.addr
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What one connection saw: per-request latencies (µs), failures, when its last response came.
struct ConnResult {
    latencies_us: Vec<u32>,
    failures: usize,
    samples: Vec<String>,
    last_response: Instant,
}

fn check(response: &tests::http::HttpResponse) -> Result<(), String> {
    if response.status != 200 {
        return Err(format!(
            "status {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        ));
    }
    let body = response.json();
    if body.get("errors").is_some() {
        return Err(format!("errors: {body}"));
    }
    let movie = &body["data"]["createMovie"];
    let uid_ok = movie["uid"].as_str().is_some_and(|s| !s.is_empty());
    let task_ok = movie["_context"]["task_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty());
    if uid_ok && task_ok {
        Ok(())
    } else {
        Err(format!("no uid or task_id: {body}"))
    }
}

async fn drive(mut client: HttpClient, count: usize) -> ConnResult {
    let mut result = ConnResult {
        latencies_us: Vec::with_capacity(count),
        failures: 0,
        samples: Vec::new(),
        last_response: Instant::now(),
    };
    for _ in 0..count {
        let sent = Instant::now();
        let outcome = client.graphql(MUTATION).await;
        let now = Instant::now();
        result
            .latencies_us
            .push(u32::try_from(now.duration_since(sent).as_micros()).unwrap_or(u32::MAX));
        result.last_response = now;
        let error = match outcome {
            Ok(response) => check(&response).err(),
            Err(e) => Some(format!("transport: {e}")),
        };
        if let Some(error) = error {
            result.failures += 1;
            if result.samples.len() < 3 {
                result.samples.push(error);
            }
            if result.failures > 100 && result.failures == result.latencies_us.len() {
                // Nothing works on this connection: stop rather than spin.
                break;
            }
        }
    }
    result
}

/// `count` of one status-filtered page of at most `limit`, and its `next_token`.
async fn list_page(
    client: &mut HttpClient,
    status: &str,
    limit: u32,
    next_token: Option<&str>,
) -> (u64, Option<String>) {
    let token = next_token
        .map(|t| format!(", next_token: {}", Value::from(t)))
        .unwrap_or_default();
    let query = format!(
        "{{ listSkylarkBackgroundTask(status: {status}, limit: {limit}{token}) {{ count next_token }} }}"
    );
    let response = client.graphql(&query).await.expect("list tasks");
    assert_eq!(
        response.status,
        200,
        "list tasks: {}",
        String::from_utf8_lossy(&response.body)
    );
    let body = response.json();
    let listing = &body["data"]["listSkylarkBackgroundTask"];
    let count = listing["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("list tasks gave no count: {body}"));
    (count, listing["next_token"].as_str().map(str::to_owned))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

async fn run(server: &mut Server, mutations: usize, concurrency: usize) -> bool {
    let pid = server.pid();
    let pid_s = pid.to_string();
    let mut control = wait_until_up(server).await;
    let rss_start_kb = proc_status_kb(pid, "VmRSS");
    println!("server pid: {pid}");
    println!("server address: {}", server.addr);
    println!("rss after start-up (kB): {rss_start_kb}");

    // Every connection open before the clock starts.
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        clients.push(
            HttpClient::connect(server.addr)
                .await
                .expect("connect to skylark-local"),
        );
    }

    let server_cpu_0 = cpu_secs(&pid_s);
    let client_cpu_0 = cpu_secs("self");
    let start = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let share = mutations / concurrency + usize::from(i < mutations % concurrency);
            tokio::spawn(drive(client, share))
        })
        .collect();
    let mut results = Vec::with_capacity(concurrency);
    for handle in handles {
        results.push(handle.await.expect("connection task"));
    }
    let last_response = results
        .iter()
        .map(|r| r.last_response)
        .max()
        .unwrap_or(start);

    // Every task COMPLETE: nothing QUEUED, then nothing IN_PROGRESS (in that order, so a task
    // moving from one to the other between the two reads is still seen).
    let mut polls = 0u64;
    let all_done = loop {
        polls += 1;
        let (queued, _) = list_page(&mut control, "QUEUED", 1, None).await;
        if queued == 0 {
            let (in_progress, _) = list_page(&mut control, "IN_PROGRESS", 1, None).await;
            if in_progress == 0 {
                break Some(Instant::now());
            }
        }
        if last_response.elapsed() > COMPLETION_TIMEOUT {
            break None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let server_cpu_1 = cpu_secs(&pid_s);
    let client_cpu_1 = cpu_secs("self");
    let rss_peak_kb = proc_status_kb(pid, "VmHWM");
    let rss_end_kb = proc_status_kb(pid, "VmRSS");
    let threads = proc_status_kb(pid, "Threads");

    // Outside the timed part: count COMPLETE (and FAILED) tasks page by page.
    let (first_page, _) = list_page(&mut control, "COMPLETE", 1, None).await;
    let mut complete = 0u64;
    let mut token: Option<String> = None;
    let mut pages = 0u64;
    loop {
        let (count, next) = list_page(&mut control, "COMPLETE", 100, token.as_deref()).await;
        complete += count;
        pages += 1;
        match next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let (failed_tasks, _) = list_page(&mut control, "FAILED", 1, None).await;

    let sent: usize = results.iter().map(|r| r.latencies_us.len()).sum();
    let failures: usize = results.iter().map(|r| r.failures).sum();
    let mut latencies: Vec<u32> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let elapsed = last_response.duration_since(start).as_secs_f64();
    let per_sec = sent as f64 / elapsed;
    let completion = all_done.map(|t| t.duration_since(last_response));
    let grown_bytes = rss_peak_kb.saturating_sub(rss_start_kb) as f64 * 1024.0;
    let per_task = grown_bytes / mutations.max(1) as f64;

    println!("concurrency: {concurrency}");
    println!("total mutations: {sent}");
    println!("failed mutations: {failures}");
    println!("elapsed (s): {elapsed:.3}");
    println!("mutations/s: {per_sec:.0}");
    println!("latency p50 (ms): {:.3}", percentile(&latencies, 50.0));
    println!("latency p99 (ms): {:.3}", percentile(&latencies, 99.0));
    println!(
        "latency max (ms): {:.3}",
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    match completion {
        Some(d) => println!(
            "all tasks COMPLETE after last response (ms): {:.1}",
            d.as_secs_f64() * 1000.0
        ),
        None => println!(
            "all tasks COMPLETE after last response (ms): TIMEOUT (> {} s)",
            COMPLETION_TIMEOUT.as_secs()
        ),
    }
    println!("completion polls: {polls}");
    println!("COMPLETE tasks counted: {complete} ({pages} pages)");
    println!("FAILED tasks (first page): {failed_tasks}");
    println!("peak rss (kB): {rss_peak_kb}");
    println!("rss at end (kB): {rss_end_kb}");
    println!("rss per completed task (bytes): {per_task:.0}");
    println!(
        "server cpu (s): {:.2} ({:.0}% of one core over load+drain)",
        server_cpu_1 - server_cpu_0,
        100.0 * (server_cpu_1 - server_cpu_0)
            / all_done
                .unwrap_or_else(Instant::now)
                .duration_since(start)
                .as_secs_f64()
    );
    println!("client cpu (s): {:.2}", client_cpu_1 - client_cpu_0);
    println!("server threads: {threads}");

    let completion_ok = completion.is_some_and(|d| d <= TARGET_COMPLETION);
    println!(
        "target >= {TARGET_MUTATIONS_PER_SEC:.0} mutations/s: {}",
        verdict(per_sec >= TARGET_MUTATIONS_PER_SEC)
    );
    println!(
        "target all COMPLETE within {} ms: {}",
        TARGET_COMPLETION.as_millis(),
        verdict(completion_ok)
    );
    println!(
        "target <= {TARGET_BYTES_PER_TASK:.0} B rss per task: {}",
        verdict(per_task <= TARGET_BYTES_PER_TASK)
    );

    let mut ok = true;
    if failures > 0 || sent != mutations {
        ok = false;
        eprintln!("FAILED: {failures} of {sent} mutations failed ({mutations} planned); samples:");
        for sample in results.iter().flat_map(|r| &r.samples).take(10) {
            eprintln!("  {sample}");
        }
    }
    if all_done.is_none() {
        ok = false;
        eprintln!(
            "FAILED: tasks were still QUEUED or IN_PROGRESS {COMPLETION_TIMEOUT:?} after the last response"
        );
    }
    if first_page == 0 || complete != mutations as u64 {
        ok = false;
        eprintln!("FAILED: {complete} tasks COMPLETE, expected {mutations}");
    }
    ok
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (tests/run.sh) runs this binary
    // without it, on a debug build: there, a quick smoke run of the same path is enough.
    let bench = std::env::args().any(|a| a == "--bench");
    let (default_mutations, default_concurrency) = if bench { (100_000, 64) } else { (200, 8) };
    if !bench {
        println!("mode: smoke (no --bench argument; run `cargo bench` for the real figures)");
    }
    let mutations = env_usize("BENCH_MUTATIONS", default_mutations);
    let concurrency =
        env_usize("BENCH_CONCURRENCY", default_concurrency).clamp(1, mutations.max(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut server = Server::start();
    let ok = runtime.block_on(run(&mut server, mutations, concurrency));
    let status = server.stop();
    println!(
        "server exit: {}",
        status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("benchmark FAILED");
        ExitCode::FAILURE
    }
}
