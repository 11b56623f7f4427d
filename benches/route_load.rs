//! Load tool: Route end to end through the real gRPC server (in-process, real
//! MiniLM, real SQLite with the default `store.synchronous`, the bandit), from real
//! prompts of `../shared/data/routing/llmrouter.train.jsonl`.
//!
//! `cargo bench --bench route_load` reports
//! - latency of sequential Routes on ~64-token prompts (RPC round trip, and
//!   the classification time measured inside the service);
//! - sustained throughput with concurrent clients on mixed 10–200-token
//!   prompts, with latency percentiles.
//!
//! Knobs: `LOAD_SECONDS` (default 20), `LOAD_CLIENTS` (default 8),
//! `LOAD_MODE=static` for the distilled fast mode (`switchyard distill-static` first).

mod common;

use std::time::{Duration, Instant};

use common::{Served, env_or, summary};
use switchyard::classify::{Encoder, EncoderOptions};
use switchyard::config::Config;
use switchyard::pb;

fn request(text: &str) -> pb::RouteRequest {
    pb::RouteRequest {
        messages: vec![pb::Message {
            role: "user".into(),
            content: text.into(),
            ..Default::default()
        }],
        tenant: "load".into(),
        ..Default::default()
    }
}

fn main() -> anyhow::Result<()> {
    let root = common::root();
    let data = root.join("../shared/data/routing/llmrouter.train.jsonl");
    let model_dir = common::model_dir();
    let seconds: u64 = env_or("LOAD_SECONDS", 20);
    let clients: usize = env_or("LOAD_CLIENTS", 8);

    // Prompts bucketed by their real token count.
    let enc = Encoder::load(
        &model_dir,
        EncoderOptions {
            max_tokens: 512,
            ..EncoderOptions::default()
        },
    )?;
    let mut mixed = Vec::new();
    let mut near64 = Vec::new();
    for line in std::fs::read_to_string(&data)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let text = v["prompt"].as_str().unwrap_or_default().to_owned();
        let (ids, _) = enc.tokenize(&text)?;
        if (60..=68).contains(&ids.len()) {
            near64.push(text.clone());
        }
        if (10..=200).contains(&ids.len()) {
            mixed.push(text);
        }
    }
    println!(
        "prompts: {} mixed 10-200 tokens, {} at 60-68 tokens",
        mixed.len(),
        near64.len()
    );

    let fast = std::env::var("LOAD_MODE").is_ok_and(|m| m == "static");
    let (mode, head) = if fast {
        ("static", "models/intent-head-static.json")
    } else {
        ("full", "models/intent-head.json")
    };
    println!("classifier mode: {mode}");
    let dir = tempfile::tempdir()?;
    let toml = format!(
        "[server]\nhttp_listen = \"\"\ndatabase = \"{}\"\nmax_in_flight = 4096\n[classifier]\nmode = \"{mode}\"\nmodel_dir = \"{}\"\nintent_head = \"{}\"\nauto_fetch = false\n\
         [[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n{}",
        dir.path().join("load.db").display(),
        model_dir.display(),
        root.join(head).display(),
        (0..30)
            .map(|i| format!(
                "[[models]]\nname = \"m{i}\"\nprovider = \"p\"\ninput_usd_per_mtok = {}\noutput_usd_per_mtok = {}\ncontext_window = 100000\nprior_quality = {}\n",
                0.1 * (i + 1) as f64,
                0.4 * (i + 1) as f64,
                0.5 + 0.01 * i as f64
            ))
            .collect::<String>()
    );
    let config = Config::from_toml(&toml)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let served = Served::start(config).await?;
        let client = served.client.clone();

        // Sequential ~64-token Routes: latency without queueing.
        let mut c = client.clone();
        for t in near64.iter().take(20) {
            c.route(request(t)).await?; // warm up
        }
        let (mut rpc, mut inside) = (Vec::new(), Vec::new());
        for i in 0..600 {
            let t = &near64[i % near64.len()];
            let start = Instant::now();
            let r = c.route(request(t)).await?.into_inner();
            rpc.push(start.elapsed().as_secs_f64() * 1e3);
            inside.push(f64::from(r.classify_us) / 1e3);
        }
        summary("64 tokens: classify in service", inside);
        summary("64 tokens: Route RPC round trip", rpc);

        // Concurrent clients on mixed prompts: sustained throughput.
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for w in 0..clients {
            let mut c = client.clone();
            let prompts = mixed.clone();
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, w * 7919);
                while Instant::now() < until {
                    let start = Instant::now();
                    match c.route(request(&prompts[i % prompts.len()])).await {
                        Ok(_) => lat.push(start.elapsed().as_secs_f64() * 1e3),
                        Err(_) => errors += 1,
                    }
                    i += 1;
                }
                (lat, errors)
            }));
        }
        let (mut all, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await?;
            all.extend(l);
            errors += e;
        }
        println!(
            "mixed 10-200 tokens, {clients} clients, {seconds} s: {:.1} Routes/s, {errors} errors",
            all.len() as f64 / seconds as f64
        );
        summary("mixed: Route RPC round trip", all);
        drop(client);
        served.stop().await
    })
}
