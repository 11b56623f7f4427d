//! The throughput frontier, in the style of public gateway boards: against a
//! provider that answers in 20 ms, the highest request rate at which what
//! Switchyard adds to the p99 stays under 1, 5 and 10 ms with no errors, for
//! a pinned model and for `switchyard/auto` (the classifier and the bandit on
//! every request); then what it adds to a 64-chunk stream's first token and
//! to each chunk after it, and its resident memory idle and under load. The
//! server's CPU time per request at each rate gives its per-core throughput
//! apart from what the load generator and the mock take of the same cores.
//!
//! Load is open-loop at fixed rates: each request is sent at its scheduled
//! time whatever the others are doing, and its latency counts from that time,
//! so a server that falls behind is charged for the queue it builds. The mock
//! provider and the server are separate processes on loopback; this process
//! only generates load. At each rate the mock is also called directly, and
//! "added" is the target's p99 minus the direct call's at the same rate: when
//! the direct p99 itself degrades, the machine (generator and mock included)
//! is saturated and the figures above that rate say so.
//!
//! `cargo bench --bench frontier`. `FRONTIER_RATES` (comma-separated requests
//! per second; default a ladder from 250 to 12,000), `FRONTIER_SECONDS` (per
//! rate and target, default 4), `FRONTIER_WORKERS` (the server's
//! `server.worker_threads`, default 0: one per core).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env_or;
use common::procs::{free_port, pct, serve, spawn, wait_ready};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;

/// The provider's time to answer.
const PROVIDER_MS: u64 = 20;
/// Chunks in the measured stream: the mock streams one per word it echoes.
const STREAM_CHUNKS: usize = 64;

fn config(mock: u16, db: &Path, workers: usize) -> String {
    let root = common::root();
    format!(
        "[server]\ndatabase = \"{}\"\nmax_in_flight = 100000\nworker_threads = {workers}\n\
         [classifier]\nauto_fetch = false\nmodel_dir = \"{}\"\nintent_head = \"{}\"\n\
         [routing]\npolicy = \"bandit\"\n\
         [[providers]]\nname = \"mock\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{mock}/v1\"\n\
         [[models]]\nname = \"small\"\nprovider = \"mock\"\nupstream = \"small+slow{PROVIDER_MS}\"\n\
         input_usd_per_mtok = 0.15\noutput_usd_per_mtok = 0.6\ncontext_window = 128000\nprior_quality = 0.7\n\
         [[models]]\nname = \"large\"\nprovider = \"mock\"\nupstream = \"large+slow{PROVIDER_MS}\"\n\
         input_usd_per_mtok = 3.0\noutput_usd_per_mtok = 15.0\ncontext_window = 200000\nprior_quality = 0.9\n\
         [[models]]\nname = \"streamer\"\nprovider = \"mock\"\nupstream = \"small+slow{PROVIDER_MS}+slowstream1\"\n\
         input_usd_per_mtok = 0.15\noutput_usd_per_mtok = 0.6\ncontext_window = 128000\nprior_quality = 0.1\n",
        db.display(),
        common::model_dir().display(),
        root.join("models/intent-head.json").display(),
    )
}

struct Target {
    url: String,
    model: String,
}

/// What one rate did to one target.
struct Run {
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    sent: usize,
}

/// Sends `rate` requests per second to `t` for `seconds`, open-loop: the
/// timer ticks every millisecond and each tick sends what is due by then.
async fn open_loop(http: &reqwest::Client, t: &Target, rate: f64, seconds: f64) -> Run {
    let body = Arc::new(json!({
        "model": t.model,
        "messages": [{"role": "user", "content": "Summarise the plot of Hamlet in one sentence."}],
        "max_tokens": 16,
    }));
    let total = (rate * seconds) as usize;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0usize;
    let mut tasks = Vec::with_capacity(total);
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
        while sent < due {
            // Its latency counts from when it was due, not from when it went.
            let scheduled = start + Duration::from_secs_f64(sent as f64 / rate);
            let (http, url, body) = (http.clone(), t.url.clone(), Arc::clone(&body));
            let (latencies, errors) = (Arc::clone(&latencies), Arc::clone(&errors));
            tasks.push(tokio::spawn(async move {
                let ok = match http.post(&url).json(&*body).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    let ms = scheduled.elapsed().as_secs_f64() * 1e3;
                    latencies.lock().await.push(ms);
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
            sent += 1;
        }
    }
    futures::future::join_all(tasks).await;
    let mut l = std::mem::take(&mut *latencies.lock().await);
    l.sort_by(f64::total_cmp);
    Run {
        p50_ms: pct(&l, 0.5),
        p99_ms: pct(&l, 0.99),
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        sent,
    }
}

/// A streamed request's time to its first chunk and mean gap between the
/// chunks after it, in ms.
async fn stream_once(http: &reqwest::Client, url: &str, model: &str) -> anyhow::Result<(f64, f64)> {
    let words = vec!["w"; STREAM_CHUNKS].join(" ");
    let body = json!({
        "model": model, "stream": true, "max_tokens": 256,
        "messages": [{"role": "user", "content": words}],
    });
    let started = Instant::now();
    let resp = http.post(url).json(&body).send().await?;
    anyhow::ensure!(resp.status().is_success(), "stream: {}", resp.status());
    let mut bytes = resp.bytes_stream();
    let mut arrivals = Vec::new();
    let mut pending = String::new();
    while let Some(b) = bytes.next().await {
        let now = started.elapsed().as_secs_f64() * 1e3;
        pending.push_str(&String::from_utf8_lossy(&b?));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if event.contains("\"content\":\"w") {
                arrivals.push(now);
            }
        }
    }
    anyhow::ensure!(
        arrivals.len() == STREAM_CHUNKS,
        "{} content chunks, not {STREAM_CHUNKS}",
        arrivals.len()
    );
    let gaps = (arrivals[STREAM_CHUNKS - 1] - arrivals[0]) / (STREAM_CHUNKS - 1) as f64;
    Ok((arrivals[0], gaps))
}

/// CPU seconds (user and system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/<pid>/stat, after the parenthesised name,
    // in clock ticks (100 per second on Linux).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// The resident set of process `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let rates: Vec<f64> = std::env::var("FRONTIER_RATES")
        .unwrap_or_else(|_| "250,500,1000,2000,3000,4000,6000,8000,10000,12000".into())
        .split(',')
        .map(|r| r.trim().parse())
        .collect::<Result<_, _>>()?;
    let seconds: f64 = env_or("FRONTIER_SECONDS", 4.0);
    let workers: usize = env_or("FRONTIER_WORKERS", 0);
    let dir = tempfile::tempdir()?;
    let mock = free_port();
    let _mock =
        spawn(Command::new(bin).args(["mock-provider", "--listen", &format!("127.0.0.1:{mock}")]))?;
    let cfg = dir.path().join("frontier.toml");
    std::fs::write(&cfg, config(mock, &dir.path().join("f.db"), workers))?;
    let (server, http_port) = serve(bin, &cfg)?;
    let pid = server.0.id();
    let ours = format!("http://127.0.0.1:{http_port}/v1/chat/completions");
    let direct = format!("http://127.0.0.1:{mock}/v1/chat/completions");
    let targets = [
        Target {
            url: direct.clone(),
            model: format!("small+slow{PROVIDER_MS}"),
        },
        Target {
            url: ours.clone(),
            model: "small".into(),
        },
        Target {
            url: ours.clone(),
            model: "switchyard/auto".into(),
        },
    ];

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .tcp_nodelay(true)
            .build()?;
        wait_ready(&http, &format!("http://127.0.0.1:{mock}/mock/stats"), Duration::from_secs(30)).await?;
        wait_ready(&http, &format!("http://127.0.0.1:{http_port}/readyz"), Duration::from_secs(30)).await?;
        // Warm-up: connections, the encoder's first runs, the log's first writes.
        for t in &targets {
            open_loop(&http, t, 200.0, 1.0).await;
        }
        let idle = rss_mib(pid);

        println!("open-loop, {seconds} s per rate and target, provider {PROVIDER_MS} ms");
        println!(
            "{:>7} | {:>22} | {:>30} | {:>30}",
            "rate", "direct p50/p99 (err)", "pinned p50/p99 +added (err)", "auto p50/p99 +added (err)"
        );
        // The highest rate whose added p99 stayed under each bound, per target.
        let bounds = [1.0, 5.0, 10.0];
        let mut frontier = [[0.0f64; 3]; 2];
        let mut alive = [true, true];
        // The server's CPU per answered request, per target, at each rate.
        let mut cpu: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
        for &rate in &rates {
            let d = open_loop(&http, &targets[0], rate, seconds).await;
            let mut line = format!(
                "{rate:>7} | {:>9.2} / {:>6.2} ({:>3})",
                d.p50_ms, d.p99_ms, d.errors
            );
            for (i, t) in targets[1..].iter().enumerate() {
                if !alive[i] {
                    line.push_str(&format!(" | {:>30}", "-"));
                    continue;
                }
                let before = cpu_seconds(pid);
                let r = open_loop(&http, t, rate, seconds).await;
                let used = cpu_seconds(pid) - before;
                cpu[i].push((rate, used * 1e6 / (r.sent - r.errors).max(1) as f64));
                let added = r.p99_ms - d.p99_ms;
                line.push_str(&format!(
                    " | {:>6.2} / {:>6.2} {:>+7.2} ({:>4})",
                    r.p50_ms, r.p99_ms, added, r.errors
                ));
                let clean = r.errors == 0 && r.sent > 0;
                for (b, bound) in bounds.iter().enumerate() {
                    if clean && added < *bound {
                        frontier[i][b] = frontier[i][b].max(rate);
                    }
                }
                // Past 10 ms added or with errors, higher rates only queue more.
                alive[i] = clean && added < 10.0;
            }
            println!("{line}");
        }
        let steady = rss_mib(pid);
        println!();
        for (i, name) in ["pinned", "auto"].iter().enumerate() {
            println!(
                "frontier {name}: added p99 < 1 ms up to {} RPS, < 5 ms up to {} RPS, < 10 ms up to {} RPS",
                frontier[i][0], frontier[i][1], frontier[i][2]
            );
            let per: Vec<String> = cpu[i]
                .iter()
                .map(|(rate, us)| format!("{rate}: {us:.0}"))
                .collect();
            println!("server CPU per request {name} (µs, by rate): {}", per.join(", "));
        }

        // A 64-chunk stream, one at a time (the mock pauses 1 ms between chunks).
        let mut rows = Vec::new();
        for (name, url, model) in [
            ("direct", &direct, format!("small+slow{PROVIDER_MS}+slowstream1")),
            ("pinned", &ours, "streamer".to_owned()),
        ] {
            let mut ttft = Vec::new();
            let mut gap = Vec::new();
            for _ in 0..50 {
                let (t, g) = stream_once(&http, url, &model).await?;
                ttft.push(t);
                gap.push(g);
            }
            ttft.sort_by(f64::total_cmp);
            gap.sort_by(f64::total_cmp);
            rows.push((name, pct(&ttft, 0.5), pct(&ttft, 0.99), pct(&gap, 0.5)));
        }
        for (name, t50, t99, g50) in &rows {
            println!("stream {name}: first chunk p50 {t50:.2} ms, p99 {t99:.2} ms; per chunk p50 {g50:.3} ms");
        }
        println!(
            "stream added: first chunk p50 {:+.2} ms, p99 {:+.2} ms; per chunk {:+.3} ms",
            rows[1].1 - rows[0].1,
            rows[1].2 - rows[0].2,
            rows[1].3 - rows[0].3
        );
        println!("server RSS: idle {idle:.1} MiB, after the ladder {steady:.1} MiB");
        anyhow::Ok(())
    })
}
