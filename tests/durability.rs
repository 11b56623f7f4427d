//! What the server acknowledged survives `kill -9`, and SIGTERM drains
//! in-flight requests before exiting. These run the real `switchyard` binary.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mock, complete_req, route_req};
use switchyard::pb;
use switchyard::pb::router_client::RouterClient;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(mock: &Mock, dir: &tempfile::TempDir) -> Proc {
    let db = dir.path().join("switchyard.db");
    let cfg = dir.path().join("switchyard.toml");
    std::fs::write(&cfg, common::mock_config_toml(&mock.base_url(), &db)).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc {
        child,
        addr: format!("http://127.0.0.1:{port}"),
    }
}

async fn connect(p: &Proc) -> RouterClient<tonic::transport::Channel> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = RouterClient::connect(p.addr.clone()).await {
            return c;
        }
        assert!(Instant::now() < until, "server did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_server(&mock, &dir);
    let client = connect(&server).await;

    // Concurrent writers so that group commits really batch.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let id = c
                    .route(route_req(&format!("writer {w} request {i}")))
                    .await
                    .unwrap_or_else(|e| panic!("route {w}/{i}: {e:?}"))
                    .into_inner()
                    .decision_id;
                let reward = f64::from(i) / 25.0;
                c.feedback(pb::FeedbackRequest {
                    decision_id: id.clone(),
                    reward,
                    source: "k".into(),
                })
                .await
                .unwrap_or_else(|e| panic!("feedback {w}/{i}: {e:?}"));
                acked.push((id, reward));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    server.child.kill().unwrap(); // SIGKILL: no chance to flush anything
    server.child.wait().unwrap();

    let cfg = switchyard::config::Config::embedded().store;
    let (store, _w) = switchyard::store::Store::open(&dir.path().join("switchyard.db"), &cfg)
        .await
        .unwrap();
    assert_eq!(acked.len(), 200);
    for (id, reward) in &acked {
        assert!(
            store.decision(id).await.unwrap().is_some(),
            "decision {id} lost"
        );
        assert_eq!(
            store.feedback(id).await.unwrap(),
            vec![("k".to_owned(), *reward)],
            "feedback of {id}"
        );
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_server(&mock, &dir);
    let mut c = connect(&server).await;
    c.route(route_req("warm up")).await.unwrap();

    // A slow completion is in flight when SIGTERM arrives.
    // A completion the mock holds for 400 ms is in flight when SIGTERM arrives.
    let mut c2 = c.clone();
    let inflight =
        tokio::spawn(async move { c2.complete(complete_req("slow one", Some("slow"))).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = server.child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let r = inflight.await.unwrap();
    assert!(r.is_ok(), "in-flight request failed during drain: {r:?}");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < until, "server did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
