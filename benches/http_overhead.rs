//! What Switchyard's OpenAI-compatible front adds over calling the provider
//! directly, side by side with the LiteLLM proxy over the same mock provider.
//!
//! Every server is a separate process on loopback (the mock provider, two
//! Switchyard servers, LiteLLM); this process only generates load with one
//! keep-alive HTTP/1.1 client. For each concurrency (1 and 64 closed-loop
//! clients) and each group of targets (pinned, auto, LiteLLM) it sends the
//! same small chat completion to the group's targets and to the mock directly,
//! taking turns in slices after a warm-up, and prints p50/p99/p99.9 latency
//! and their excess over the direct call's.
//!
//! `cargo bench --bench http_overhead`; LiteLLM is measured when a `litellm`
//! executable is found (`LITELLM_BIN`, else on `PATH`; `pip install
//! 'litellm[proxy]'`). `OVERHEAD_REQUESTS` sets requests per client at
//! concurrency 1 (default 2000; 64 clients send a 30th of that each);
//! `OVERHEAD_ONLY=pinned` measures only the targets whose name has `pinned`;
//! `OVERHEAD_WORKERS` sets the servers' `server.worker_threads` (default 1).
//! `OVERHEAD_BASELINE_BIN` names another build's `switchyard` binary (say, the
//! previous commit's): it is served beside this build's, with the default
//! `synchronous`, as the `baseline` targets, so two builds are compared in
//! one run on the same machine state.
//!
//! The `cached` server is this build with the response cache on: every
//! measured request repeats the warm-up's, so its pinned target is a cache
//! hit each time, measured in the same slices as the plain server's pinned
//! requests (each a provider call).
//!
//! The `governed` server is this build with governance on: `auth.mode =
//! "keys"` (the requests carry a key with rate limits and budgets) and
//! `[[routes]]` rules (a tier ceiling, a language rule, a regex rule, an A/B
//! split); `OVERHEAD_ONLY=pinned` compares its pinned path with the plain
//! server's in the same slices, which is what auth + limits + rules cost.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::env_or;
use common::procs::{free_port, pct, serve, spawn, wait_ready};
use serde_json::json;

/// Catalog for the Switchyard servers: two real-priced models over the mock.
fn config(mock: u16, db: &Path, sync: &str, model_dir: &Path, head: &Path) -> String {
    let workers: usize = env_or("OVERHEAD_WORKERS", 1);
    format!(
        "[server]\ndatabase = \"{}\"\nmax_in_flight = 4096\nworker_threads = {workers}\n[store]\nsynchronous = \"{sync}\"\n\
         [classifier]\nauto_fetch = false\nmodel_dir = \"{}\"\nintent_head = \"{}\"\n\
         [routing]\npolicy = \"bandit\"\n\
         [[providers]]\nname = \"mock\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{mock}/v1\"\n\
         [[models]]\nname = \"small\"\nprovider = \"mock\"\nupstream = \"small\"\ninput_usd_per_mtok = 0.15\noutput_usd_per_mtok = 0.6\ncontext_window = 128000\nprior_quality = 0.7\n\
         [[models]]\nname = \"large\"\nprovider = \"mock\"\nupstream = \"large\"\ninput_usd_per_mtok = 3.0\noutput_usd_per_mtok = 15.0\ncontext_window = 200000\nprior_quality = 0.9\n",
        db.display(),
        model_dir.display(),
        head.display()
    )
}

fn litellm_config(mock: u16) -> String {
    format!(
        "model_list:\n  - model_name: small\n    litellm_params:\n      model: openai/small\n      \
         api_base: http://127.0.0.1:{mock}/v1\n      api_key: unused\n\
         litellm_settings:\n  telemetry: false\n  drop_params: true\n\
         general_settings:\n  dangerously_permit_weak_or_unset_master_key: true\n"
    )
}

fn litellm_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LITELLM_BIN") {
        return Some(p.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("litellm"))
            .find(|p| p.is_file())
    })
}

/// Slices each target's requests are measured in, taking turns.
const ROUNDS: usize = 20;

struct Target {
    name: &'static str,
    url: String,
    model: &'static str,
    /// The API key sent as a bearer token (the governed server's).
    key: Option<String>,
}

/// Governance on: keys required, and rules that every request is matched
/// against (none of them pins the benchmark's prompt, so the request takes
/// the same path otherwise).
const GOVERNED: &str = "[auth]\nmode = \"keys\"\n\
    [[routes]]\nname = \"free-tier\"\nmatch = { tier = [\"free\"] }\nthen = { max_usd_per_mtok = 20.0 }\n\
    [[routes]]\nname = \"german\"\nmatch = { language = [\"deu\"] }\nthen = { model = \"large\" }\n\
    [[routes]]\nname = \"sql\"\nmatch = { regex = \"(?i)\\\\bselect\\\\b.+\\\\bfrom\\\\b\" }\nthen = { cost_weight = 1.0 }\n\
    [[routes]]\nname = \"canary\"\nthen = { split = { share = 0.1, model = \"large\" } }\n";

/// A key for the governed server, made with the CLI before it starts.
fn governed_key(bin: &str, db: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["keys", "create", "--tenant", "bench", "--tier", "free"])
        .args([
            "--rpm",
            "100000000",
            "--tpm",
            "1000000000",
            "--budget-day-usd",
            "1000000",
        ])
        .arg("--database")
        .arg(db)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Latencies in microseconds of `clients` closed-loop clients each sending `n`
/// (unsorted).
async fn measure(http: &reqwest::Client, t: &Target, clients: usize, n: usize) -> Vec<f64> {
    let body = json!({
        "model": t.model,
        "messages": [{"role": "user", "content": "Summarise the plot of Hamlet in one sentence."}],
        "max_tokens": 16,
    });
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, body) = (http.clone(), t.url.clone(), body.clone());
            let key = t.key.clone();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let started = Instant::now();
                    let mut req = http.post(&url).json(&body);
                    if let Some(k) = &key {
                        req = req.bearer_auth(k);
                    }
                    let r = req.send().await;
                    let ok = match r {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if ok {
                        out.push(started.elapsed().as_secs_f64() * 1e6);
                    }
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(clients * n);
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let per_client: usize = std::env::var("OVERHEAD_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let model_dir = root.join("models/all-MiniLM-L6-v2");
    let head = root.join("models/intent-head.json");

    let mock = free_port();
    let _mock =
        spawn(Command::new(bin).args(["mock-provider", "--listen", &format!("127.0.0.1:{mock}")]))?;
    let mut servers = Vec::new();
    let mut targets = vec![Target {
        name: "mock provider, direct",
        url: format!("http://127.0.0.1:{mock}/v1/chat/completions"),
        model: "small",
        key: None,
    }];
    // The default ("normal": the acknowledgement journal) and "full" (fsync'd),
    // and the baseline build with the default when one is given.
    let baseline = std::env::var("OVERHEAD_BASELINE_BIN").ok();
    let mut servers_to_start: Vec<(&str, &str, &str)> = vec![
        (bin, "normal", "switchyard"),
        (bin, "full", "switchyard"),
        (bin, "normal", "governed"),
        (bin, "normal", "cached"),
    ];
    if let Some(b) = &baseline {
        servers_to_start.push((b.as_str(), "normal", "baseline"));
    }
    for (server_bin, sync, who) in servers_to_start {
        let cfg = dir.path().join(format!("{who}-{sync}.toml"));
        let db = dir.path().join(format!("{who}-{sync}.db"));
        let mut toml = config(mock, &db, sync, &model_dir, &head);
        let key = if who == "governed" {
            toml.push_str(GOVERNED);
            Some(governed_key(server_bin, &db)?)
        } else {
            None
        };
        if who == "cached" {
            toml.push_str("[cache]\nenabled = true\n");
        }
        std::fs::write(&cfg, toml)?;
        let (server, http) = serve(server_bin, &cfg)?;
        servers.push(server);
        let url = format!("http://127.0.0.1:{http}/v1/chat/completions");
        let name: &'static str = Box::leak(format!("{who} pinned ({sync})").into_boxed_str());
        targets.push(Target {
            name,
            url: url.clone(),
            model: "small",
            key: key.clone(),
        });
        let name: &'static str = Box::leak(format!("{who} auto ({sync})").into_boxed_str());
        targets.push(Target {
            name,
            url,
            model: "switchyard/auto",
            key,
        });
    }
    let _litellm = match litellm_bin() {
        Some(l) => {
            let port = free_port();
            let cfg = dir.path().join("litellm.yaml");
            std::fs::write(&cfg, litellm_config(mock))?;
            let p = spawn(Command::new(l).env("LITELLM_LOG", "ERROR").args([
                "--config",
                &cfg.display().to_string(),
                "--port",
                &port.to_string(),
                "--num_workers",
                "1",
            ]))?;
            targets.push(Target {
                name: "litellm proxy",
                url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
                model: "small",
                key: None,
            });
            Some((p, port))
        }
        None => {
            println!("litellm not found (set LITELLM_BIN): measuring Switchyard only");
            None
        }
    };

    // `OVERHEAD_ONLY=pinned` keeps the targets whose name has it (and the direct call).
    if let Ok(only) = std::env::var("OVERHEAD_ONLY") {
        targets.retain(|t| t.name.starts_with("mock") || t.name.contains(&only));
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        wait_ready(
            &http,
            &format!("http://127.0.0.1:{mock}/mock/stats"),
            Duration::from_secs(10),
        )
        .await?;
        for t in &targets[1..] {
            let base = t.url.trim_end_matches("/v1/chat/completions");
            let probe = if t.name.starts_with("litellm") {
                format!("{base}/health/liveliness")
            } else {
                format!("{base}/readyz")
            };
            wait_ready(&http, &probe, Duration::from_secs(180)).await?;
        }
        println!(
            "{:<30} {:>7} {:>6} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9}",
            "target",
            "clients",
            "ok",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "+p50 ms",
            "+p99 ms",
            "+p99.9 ms"
        );
        for clients in [1usize, 64] {
            let n = if clients == 1 {
                per_client
            } else {
                (per_client / 30).max(10)
            };
            for group in GROUPS {
                let members: Vec<&Target> = std::iter::once(&targets[0])
                    .chain(targets[1..].iter().filter(|t| t.name.contains(group)))
                    .collect();
                if members.len() > 1 {
                    measure_group(&http, &members, clients, n).await;
                }
            }
        }
        anyhow::Ok(())
    })?;
    drop(servers);
    Ok(())
}

/// Target groups measured apart, each beside its own direct calls: MiniLM's
/// threads (auto) and LiteLLM's work after each answer would otherwise spill
/// into the slices of whatever is measured next.
const GROUPS: [&str; 3] = ["pinned", "auto", "litellm"];

/// Measures `members` (the direct call first) taking turns in slices, so that
/// whatever else the machine does meanwhile falls on all of them alike, and
/// prints each one's percentiles and their excess over the direct call's.
async fn measure_group(http: &reqwest::Client, members: &[&Target], clients: usize, n: usize) {
    for t in members {
        // Warm-up: connections, caches, LiteLLM's first-call imports.
        measure(http, t, clients, (n / 10).max(5)).await;
    }
    let slice = (n / ROUNDS).max(1);
    let mut lat = vec![Vec::new(); members.len()];
    for _ in 0..n.div_ceil(slice) {
        for (i, t) in members.iter().enumerate() {
            lat[i].extend(measure(http, t, clients, slice).await);
        }
    }
    let mut base = [0.0; 3];
    for (t, mut lat) in members.iter().zip(lat) {
        lat.sort_by(f64::total_cmp);
        let p = [0.5, 0.99, 0.999].map(|q| pct(&lat, q) / 1e3);
        if t.name.starts_with("mock") {
            base = p;
        }
        println!(
            "{:<30} {:>7} {:>6} {:>8.3} {:>8.3} {:>9.3} {:>8.3} {:>8.3} {:>9.3}",
            t.name,
            clients,
            lat.len(),
            p[0],
            p[1],
            p[2],
            p[0] - base[0],
            p[1] - base[1],
            p[2] - base[2]
        );
    }
}
