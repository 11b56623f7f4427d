//! Benchmarks that drive the real binary as separate processes: loopback
//! ports, children that die with the bench, and waiting until one serves.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port, for a child to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` with its output discarded.
pub fn spawn(cmd: &mut Command) -> anyhow::Result<Proc> {
    Ok(Proc(
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?,
    ))
}

/// Starts `switchyard serve` from `bin` on `config`, gRPC and HTTP on free
/// loopback ports, logging warnings only; returns it and its HTTP port.
pub fn serve(bin: &str, config: &std::path::Path) -> anyhow::Result<(Proc, u16)> {
    let (grpc, http) = (free_port(), free_port());
    let server = spawn(Command::new(bin).env("RUST_LOG", "warn").args([
        "serve",
        "--config",
        &config.display().to_string(),
        "--listen",
        &format!("127.0.0.1:{grpc}"),
        "--http-listen",
        &format!("127.0.0.1:{http}"),
    ]))?;
    Ok((server, http))
}

/// Polls `url` until it answers 2xx, for at most `limit`.
pub async fn wait_ready(
    client: &reqwest::Client,
    url: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{url} not ready within {limit:?}")
}

/// The `p` quantile of sorted samples (nearest rank); NaN when there are none.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
