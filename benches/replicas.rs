//! Load tool: one replica on SQLite, one on PostgreSQL and three on one
//! PostgreSQL, side by side in one run: Route and pinned Complete throughput,
//! feedback ingest, and the learner's lag across replicas.
//!
//! `cargo bench --bench replicas` (PostgreSQL at `BENCH_PG`, default
//! `postgres://postgres@127.0.0.1:5432`; a fresh database is made per setup
//! and dropped after). Every server runs in this process over the mock
//! provider, with the bandit and without the classifier, so that what is
//! measured is the log and the replicas, not MiniLM. Closed-loop clients are
//! spread round-robin over the replicas.
//!
//! Lag: a decision on replica A, its feedback on replica B, then replica C
//! (A with one replica) asked for its policy version every millisecond until
//! its posterior holds one more observation; p50/p99 over the probes.
//!
//! Knobs: `LOAD_SECONDS` per phase (default 5), `LOAD_CLIENTS` (default 16),
//! `LAG_PROBES` (default 100).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Served, env_or, percentile};
use sqlx::{Connection, Executor, PgConnection};
use switchyard::config::Config;
use switchyard::pb;
use switchyard::pb::router_client::RouterClient;
use tonic::transport::Channel;

type Client = RouterClient<Channel>;

fn config(mock: &str, dir: &tempfile::TempDir, pg: Option<&str>) -> anyhow::Result<Config> {
    let store = match pg {
        Some(url) => format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"),
        None => String::new(),
    };
    let toml = format!(
        "[server]\nhttp_listen = \"\"\ndatabase = \"{}\"\nmax_in_flight = 4096\n\
         [classifier]\nenabled = false\nauto_fetch = false\n[routing]\npolicy = \"bandit\"\n{store}\
         [[providers]]\nname = \"mock\"\nkind = \"openai\"\nbase_url = \"{mock}\"\n\
         [[models]]\nname = \"cheap\"\nprovider = \"mock\"\nupstream = \"cheap-1\"\ninput_usd_per_mtok = 0.1\noutput_usd_per_mtok = 0.4\ncontext_window = 16000\nprior_quality = 0.6\n\
         [[models]]\nname = \"strong\"\nprovider = \"mock\"\nupstream = \"strong-1\"\ninput_usd_per_mtok = 10.0\noutput_usd_per_mtok = 40.0\ncontext_window = 16000\nprior_quality = 0.9\n",
        dir.path().join("bench.db").display()
    );
    Ok(Config::from_toml(&toml)?)
}

fn message(text: &str) -> Vec<pb::Message> {
    vec![pb::Message {
        role: "user".into(),
        content: text.into(),
        ..Default::default()
    }]
}

fn route_req(text: &str) -> pb::RouteRequest {
    pb::RouteRequest {
        messages: message(text),
        tenant: "bench".into(),
        ..Default::default()
    }
}

async fn route(c: &mut Client, text: &str) -> anyhow::Result<pb::RouteResponse> {
    Ok(c.route(route_req(text)).await?.into_inner())
}

/// Runs `clients` closed loops of `op` over `replicas` for `secs`; returns
/// operations per second and the latencies (ms).
async fn load<F, Fut>(replicas: &[Client], clients: usize, secs: u64, op: F) -> (f64, Vec<f64>)
where
    F: Fn(Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..clients {
        let c = replicas[w % replicas.len()].clone();
        let (stop, op) = (Arc::clone(&stop), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                op(c.clone(), w * 1_000_000 + i)
                    .await
                    .expect("request failed");
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                i += 1;
            }
            lat
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client"));
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (rate, lat)
}

fn row(setup: &str, what: &str, rate: f64, lat: &[f64]) {
    println!(
        "{setup:<14} {what:<16} {rate:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        percentile(lat, 0.5),
        percentile(lat, 0.99)
    );
}

/// The number of observations in a replica's posterior (from its version).
async fn observations(c: &mut Client) -> anyhow::Result<u64> {
    let v = route(c, "lag probe").await?.policy_version;
    let n = v
        .split('-')
        .find_map(|p| p.strip_suffix("obs"))
        .and_then(|n| n.parse().ok());
    n.ok_or_else(|| anyhow::anyhow!("no observation count in {v}"))
}

async fn lag(replicas: &[Client], probes: usize) -> anyhow::Result<Vec<f64>> {
    let (mut a, mut b) = (replicas[0].clone(), replicas[1 % replicas.len()].clone());
    let mut c = replicas[2 % replicas.len()].clone();
    let mut lags = Vec::new();
    for i in 0..probes {
        let before = observations(&mut c).await?;
        let id = route(&mut a, &format!("probe {i}")).await?.decision_id;
        b.feedback(pb::FeedbackRequest {
            decision_id: id,
            reward: 0.5,
            source: "lag".into(),
        })
        .await?;
        let acked = Instant::now();
        while observations(&mut c).await? <= before {
            anyhow::ensure!(acked.elapsed() < Duration::from_secs(10), "no convergence");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lags.push(acked.elapsed().as_secs_f64() * 1e3);
    }
    lags.sort_by(f64::total_cmp);
    Ok(lags)
}

async fn fresh_database(server: &str) -> anyhow::Result<(String, String)> {
    let mut c = PgConnection::connect(&format!("{server}/postgres")).await?;
    let name = format!("sy_bench_{}", uuid::Uuid::new_v4().simple());
    c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    Ok((format!("{server}/{name}"), name))
}

async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let mut c = PgConnection::connect(&format!("{server}/postgres")).await?;
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    c.execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}

async fn setup(name: &str, mock: &str, pg: Option<&str>, n: usize) -> anyhow::Result<()> {
    let secs: u64 = env_or("LOAD_SECONDS", 5);
    let clients: usize = env_or("LOAD_CLIENTS", 16);
    let probes: usize = env_or("LAG_PROBES", 100);
    let (url, db) = match pg {
        Some(server) => {
            let (url, db) = fresh_database(server).await?;
            (Some(url), Some(db))
        }
        None => (None, None),
    };
    let dirs: Vec<_> = (0..n)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut served = Vec::new();
    for d in &dirs {
        served.push(Served::start(config(mock, d, url.as_deref())?).await?);
    }
    let replicas: Vec<Client> = served.iter().map(|s| s.client.clone()).collect();

    let (rate, lat) = load(&replicas, clients, secs, |mut c, i| async move {
        route(&mut c, &format!("route request {i}"))
            .await
            .map(|_| ())
    })
    .await;
    row(name, "Route", rate, &lat);

    let (rate, lat) = load(&replicas, clients, secs, |mut c, i| async move {
        let req = pb::CompleteRequest {
            route: Some(route_req(&format!("complete request {i}"))),
            model: Some("cheap".into()),
            max_tokens: Some(16),
            ..Default::default()
        };
        c.complete(req).await?;
        Ok(())
    })
    .await;
    row(name, "Complete pinned", rate, &lat);

    // Feedback on decisions made beforehand, each on the next replica.
    let mut ids = Vec::new();
    for (i, c) in replicas.iter().enumerate().cycle().take(4000) {
        ids.push((
            i,
            route(&mut c.clone(), &format!("to judge {}", ids.len()))
                .await?
                .decision_id,
        ));
    }
    let ids = Arc::new(ids);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let others = Arc::new(replicas.clone());
    let (rate, lat) = load(&replicas, clients, secs, move |_, i| {
        let (ids, next, others) = (Arc::clone(&ids), Arc::clone(&next), Arc::clone(&others));
        async move {
            let k = next.fetch_add(1, Ordering::Relaxed) % ids.len();
            let (made_on, id) = &ids[k];
            let mut c = others[(made_on + 1) % others.len()].clone();
            c.feedback(pb::FeedbackRequest {
                decision_id: id.clone(),
                reward: (i % 11) as f64 / 10.0,
                source: "bench".into(),
            })
            .await?;
            Ok(())
        }
    })
    .await;
    row(name, "Feedback", rate, &lat);

    let lags = lag(&replicas, probes).await?;
    println!(
        "{name:<14} {:<16} n={probes}  p50 {:>6.2} ms  p99 {:>6.2} ms",
        "learner lag",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99)
    );
    drop(replicas);
    for s in served {
        s.stop().await?;
    }
    if let (Some(server), Some(db)) = (pg, db) {
        drop_database(server, &db).await?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // The servers' own errors, should a request fail.
    tracing_subscriber::fmt().with_env_filter("error").init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let pg = std::env::var("BENCH_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mock = format!("http://{}/v1", listener.local_addr()?);
        tokio::spawn(switchyard::mock::serve(
            listener,
            switchyard::mock::MockOptions::default(),
            std::future::pending::<()>(),
        ));
        setup("1 × SQLite", &mock, None, 1).await?;
        setup("1 × PostgreSQL", &mock, Some(&pg), 1).await?;
        setup("3 × PostgreSQL", &mock, Some(&pg), 3).await
    })
}
