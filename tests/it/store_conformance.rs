//! The decision log's conformance suite: what every `Store` backend must do,
//! through the `Store` interface alone. Each backend runs every case on a
//! fresh database of its own (`open`); the SQLite backend runs it under both
//! `store.synchronous` settings, the PostgreSQL backend on a database of its
//! own per case on the real server at 127.0.0.1:5432.

use std::future::Future;

use switchyard::config::{Config, StoreBackend, Synchronous};
use switchyard::store::codec::{pack_f16, pack_f32, unpack_f32};
use switchyard::store::{
    AttemptRow, DecisionRow, FeedbackRow, KeyRow, PromotionRow, Store, StoreError, WriterHandle,
};

/// Runs every case against databases made by `open`.
async fn suite<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Store, WriterHandle, tempfile::TempDir)>,
{
    decisions_read_back_as_written(open().await).await;
    attempts_and_served_models_are_logged(open().await).await;
    feedback_replaces_per_source_and_feeds_learning(open().await).await;
    failed_attempts_and_token_sums_come_from_the_attempts(open().await).await;
    policy_versions_and_promotions_are_kept(open().await).await;
    offline_reads_join_decisions_with_their_outcomes(open().await).await;
    api_keys_are_kept_and_changed(open().await).await;
    console_reads_aggregate_and_search_the_log(open().await).await;
}

async fn sqlite(sync: Synchronous) -> (Store, WriterHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::embedded().store;
    cfg.synchronous = sync;
    let (store, writer) = Store::open(&dir.path().join("log.db"), &cfg).await.unwrap();
    (store, writer, dir)
}

#[tokio::test]
async fn sqlite_full_conforms() {
    suite(|| sqlite(Synchronous::Full)).await;
}

#[tokio::test]
async fn sqlite_normal_conforms() {
    suite(|| sqlite(Synchronous::Normal)).await;
}

#[tokio::test]
async fn postgres_conforms() {
    let made = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    suite(|| {
        let made = std::sync::Arc::clone(&made);
        async move {
            let db = crate::common::pg::PgDb::create().await;
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = Config::embedded().store;
            cfg.backend = StoreBackend::Postgres;
            cfg.url = db.url.clone();
            let (store, writer) = Store::open(&dir.path().join("log.db"), &cfg).await.unwrap();
            made.lock().unwrap().push(db);
            (store, writer, dir)
        }
    })
    .await;
    let dbs = std::mem::take(&mut *made.lock().unwrap());
    for db in dbs {
        db.drop_db().await;
    }
}

pub(crate) fn decision(id: &str, at_ms: i64, context: &[f32]) -> DecisionRow {
    DecisionRow {
        id: id.into(),
        created_at_ms: at_ms,
        tenant: "t".into(),
        rpc: "complete",
        model: "small".into(),
        provider: "mock".into(),
        pinned: false,
        propensity: 0.25,
        explored: true,
        policy_version: "v1".into(),
        cost_weight: 10.0,
        max_cost_usd: Some(0.5),
        prompt_tokens: 12,
        output_tokens: 64,
        message_count: 2,
        features: Some(pack_f16(&[0.5, -0.25])),
        context: Some(pack_f32(context)),
        intent: Some("code".into()),
        candidates: "[]".into(),
        metadata: "{}".into(),
        prompt: None,
        served_model: None,
        key_id: None,
        rules: None,
        profile: None,
        split: None,
        cached_from: None,
    }
}

fn attempt(model: &str, outcome: &'static str, status: Option<u16>) -> AttemptRow {
    AttemptRow {
        model: model.into(),
        provider: "mock".into(),
        deployment: None,
        outcome,
        error: (outcome != "ok").then(|| "failed".into()),
        http_status: status,
        started_at_ms: 1,
        latency_ms: 3,
        prompt_tokens: Some(12),
        completion_tokens: (outcome == "ok").then_some(40),
        usage_estimated: false,
        cost_usd: Some(0.001),
    }
}

pub(crate) fn feedback(id: &str, source: &str, reward: f64, at_ms: i64) -> FeedbackRow {
    FeedbackRow {
        decision_id: id.into(),
        source: source.into(),
        reward,
        at_ms,
        tenant: None,
    }
}

/// Waits until everything written before is visible to reads. Under
/// `synchronous = "normal"` a Complete's rows are acknowledged from the
/// journal and reach the database just after; a later write that waits for
/// its own commit comes after them in the writer's queue.
async fn settle(store: &Store) {
    let id = format!("settle-{}", uuid::Uuid::new_v4());
    store
        .record_decision(decision(&id, 0, &[1.0]))
        .await
        .unwrap();
}

async fn close(store: Store, writer: WriterHandle) {
    store.close().await;
    writer.finished().await;
}

async fn decisions_read_back_as_written(
    (store, writer, _dir): (Store, WriterHandle, tempfile::TempDir),
) {
    store
        .record_decision(decision("d1", 10, &[1.0, 0.5]))
        .await
        .unwrap();
    let d = store.decision("d1").await.unwrap().expect("written");
    assert_eq!(
        (d.id.as_str(), d.tenant.as_str(), d.model.as_str()),
        ("d1", "t", "small")
    );
    assert_eq!((d.propensity, d.policy_version.as_str()), (0.25, "v1"));
    assert_eq!(d.intent.as_deref(), Some("code"));
    assert_eq!(d.features, Some(pack_f16(&[0.5, -0.25])));
    assert!(store.decision("missing").await.unwrap().is_none());
    // A stream's decision commits on its own, before its attempts.
    let pending = store
        .begin_decision(decision("d2", 11, &[1.0]))
        .await
        .unwrap();
    pending.committed().await.unwrap();
    assert!(store.decision("d2").await.unwrap().is_some());
    store.ping().await.unwrap();
    store.check_writable().await.unwrap();
    close(store, writer).await;
}

async fn attempts_and_served_models_are_logged(
    (store, writer, _dir): (Store, WriterHandle, tempfile::TempDir),
) {
    let mut row = decision("d1", 10, &[1.0]);
    row.served_model = Some("large".into());
    store
        .record_decision_with_attempts(
            row,
            vec![
                attempt("small", "error", Some(503)),
                attempt("large", "ok", Some(200)),
            ],
        )
        .await
        .unwrap();
    settle(&store).await;
    let d = store.decision("d1").await.unwrap().unwrap();
    assert_eq!((d.served_model.as_deref(), d.attempts), (Some("large"), 2));
    store
        .record_decision(decision("d2", 11, &[1.0]))
        .await
        .unwrap();
    store
        .record_attempts(
            "d2".into(),
            vec![attempt("small", "ok", Some(200))],
            Some("small".into()),
        )
        .await
        .unwrap();
    let d = store.decision("d2").await.unwrap().unwrap();
    assert_eq!((d.served_model.as_deref(), d.attempts), (Some("small"), 1));
    close(store, writer).await;
}

async fn feedback_replaces_per_source_and_feeds_learning(
    (store, writer, _dir): (Store, WriterHandle, tempfile::TempDir),
) {
    let mut row = decision("d1", 10, &[1.0, 0.5]);
    row.served_model = Some("large".into());
    store.record_decision(row).await.unwrap();
    let first = store
        .record_feedback(feedback("d1", "thumbs", 0.2, 20))
        .await
        .unwrap();
    assert!(!first.replaced);
    assert_eq!(
        first.arm.as_deref(),
        Some("large"),
        "the model that served earns it"
    );
    assert_eq!(
        first.context.as_deref().map(unpack_f32),
        Some(vec![1.0, 0.5])
    );
    let again = store
        .record_feedback(feedback("d1", "thumbs", 0.9, 21))
        .await
        .unwrap();
    assert!(again.replaced);
    assert_eq!(again.previous, Some(0.2));
    store
        .record_feedback(feedback("d1", "judge", 0.5, 22))
        .await
        .unwrap();
    let mut values = store.feedback("d1").await.unwrap();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        values,
        [("judge".to_string(), 0.5), ("thumbs".to_string(), 0.9)]
    );
    let err = store
        .record_feedback(feedback("nope", "thumbs", 0.5, 23))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DecisionNotFound(_)), "{err}");
    // Scoped to a tenant, another tenant's decision is not found either
    // (the decision's tenant is "t"), and nothing is written.
    let other = FeedbackRow {
        tenant: Some("other".into()),
        ..feedback("d1", "thumbs", 0.0, 24)
    };
    let err = store.record_feedback(other).await.unwrap_err();
    assert!(matches!(err, StoreError::DecisionNotFound(_)), "{err}");
    let own = FeedbackRow {
        tenant: Some("t".into()),
        ..feedback("d1", "own", 0.7, 25)
    };
    store.record_feedback(own).await.unwrap();
    assert_eq!(store.feedback("d1").await.unwrap().len(), 3);
    let obs = store.observations().await.unwrap();
    assert_eq!(obs.len(), 3);
    assert!(obs.iter().all(|o| o.arm == "large"));
    close(store, writer).await;
}

async fn failed_attempts_and_token_sums_come_from_the_attempts(
    (store, writer, _dir): (Store, WriterHandle, tempfile::TempDir),
) {
    let mut row = decision("d1", 10, &[1.0]);
    row.served_model = Some("large".into());
    let attempts = vec![
        attempt("small", "error", Some(503)),
        attempt("small", "timeout", None),
        attempt("medium", "error", Some(400)),
        attempt("large", "ok", Some(200)),
    ];
    store
        .record_decision_with_attempts(row, attempts)
        .await
        .unwrap();
    settle(&store).await;
    let failed = store.failed_attempts().await.unwrap();
    let seen: Vec<(&str, Option<u16>)> = failed
        .iter()
        .map(|a| (a.model.as_str(), a.http_status))
        .collect();
    assert_eq!(
        seen.len(),
        3,
        "every failure but the served model's: {seen:?}"
    );
    assert!(seen.contains(&("medium", Some(400))) && seen.contains(&("small", None)));
    assert!(
        failed
            .iter()
            .all(|a| a.decision_id == "d1" && unpack_f32(&a.context) == [1.0])
    );
    let sums = store.completion_token_sums().await.unwrap();
    assert_eq!(sums, [("large".to_string(), "code".to_string(), 40, 1)]);
    close(store, writer).await;
}

async fn policy_versions_and_promotions_are_kept(
    (store, writer, _dir): (Store, WriterHandle, tempfile::TempDir),
) {
    assert!(store.active_policy().await.unwrap().is_none());
    store
        .record_policy_version("v1".into(), "bandit", "{}".into(), 1)
        .await
        .unwrap();
    store
        .record_policy_version("v2".into(), "bandit", "{\"a\":1}".into(), 2)
        .await
        .unwrap();
    assert_eq!(
        store.active_policy().await.unwrap(),
        Some(("v2".to_string(), "{\"a\":1}".to_string()))
    );
    assert_eq!(store.latest_promotion_id().await.unwrap(), 0);
    assert!(store.current_promotion().await.unwrap().is_none());
    let promotion = |version: &str| PromotionRow {
        version: version.into(),
        at_ms: 5,
        forced: false,
        estimate: Some(0.7),
        lower_bound: Some(0.6),
        baseline: Some(0.5),
        report: "{}".into(),
        policy: format!("{{\"version\":\"{version}\"}}"),
    };
    let first = store.record_promotion(promotion("p1")).await.unwrap();
    let second = store.record_promotion(promotion("p2")).await.unwrap();
    assert!(second > first);
    assert_eq!(store.latest_promotion_id().await.unwrap(), second);
    let current = store.current_promotion().await.unwrap().unwrap();
    assert_eq!((current.id, current.version.as_str()), (second, "p2"));
    close(store, writer).await;
}

async fn offline_reads_join_decisions_with_their_outcomes(
    (store, writer, _dir): (Store, WriterHandle, tempfile::TempDir),
) {
    for (id, at) in [("d1", 10), ("d2", 20), ("d3", 30)] {
        let mut row = decision(id, at, &[1.0, 0.25]);
        row.served_model = Some("small".into());
        store
            .record_decision_with_attempts(row, vec![attempt("small", "ok", Some(200))])
            .await
            .unwrap();
    }
    store
        .record_feedback(feedback("d1", "thumbs", 1.0, 100))
        .await
        .unwrap();
    store
        .record_feedback(feedback("d3", "thumbs", 0.0, 300))
        .await
        .unwrap();
    assert_eq!(store.feedback_watermark().await.unwrap(), 300);
    let after: Vec<f64> = store
        .observations_after(100)
        .await
        .unwrap()
        .iter()
        .map(|o| o.reward)
        .collect();
    assert_eq!(after, [0.0], "only rewards recorded after the watermark");
    let ids = |l: &[switchyard::store::LoggedDecision]| -> Vec<String> {
        l.iter().map(|d| d.id.clone()).collect()
    };
    // Decisions with feedback recorded by `through`, made since `since`.
    let all = store.logged_decisions(0, i64::MAX).await.unwrap();
    assert_eq!(ids(&all), ["d1", "d3"]);
    assert_eq!(
        (all[0].rewards.as_slice(), all[1].rewards.as_slice()),
        (&[1.0][..], &[0.0][..])
    );
    assert_eq!(all[1].cost_usd, Some(0.001));
    assert_eq!(unpack_f32(all[1].context.as_deref().unwrap()), [1.0, 0.25]);
    assert_eq!(
        ids(&store.logged_decisions(15, i64::MAX).await.unwrap()),
        ["d3"]
    );
    assert_eq!(ids(&store.logged_decisions(0, 150).await.unwrap()), ["d1"]);
    close(store, writer).await;
}

async fn api_keys_are_kept_and_changed(
    (store, writer, _dir): (Store, WriterHandle, tempfile::TempDir),
) {
    let mut key = KeyRow {
        id: "key_1".into(),
        hash: "ab".repeat(32),
        tenant: "acme".into(),
        name: "ci".into(),
        tier: "pro".into(),
        models: vec!["small".into()],
        rpm: Some(60),
        tpm: None,
        budget_day_usd: Some(5.0),
        budget_month_usd: None,
        on_unreachable: None,
        created_at_ms: 1,
        updated_at_ms: 1,
        revoked_at_ms: None,
    };
    store.insert_key(&key).await.unwrap();
    assert_eq!(store.keys().await.unwrap(), vec![key.clone()]);
    // The secret's hash is unique: a second key with it is refused.
    let twin = KeyRow {
        id: "key_2".into(),
        ..key.clone()
    };
    assert!(store.insert_key(&twin).await.is_err());
    key.revoked_at_ms = Some(2);
    key.tier = "free".into();
    assert!(store.update_key(&key).await.unwrap());
    assert_eq!(store.keys().await.unwrap(), vec![key.clone()]);
    key.id = "key_missing".into();
    assert!(!store.update_key(&key).await.unwrap());
    close(store, writer).await;
}

/// The console's reads: totals, series and latency histograms over a range,
/// the filtered search with its paging, one decision in full, and a
/// promotion read back to be recorded again (a rollback).
async fn console_reads_aggregate_and_search_the_log(
    (store, writer, _dir): (Store, WriterHandle, tempfile::TempDir),
) {
    use switchyard::store::console::{DecisionFilter, Range};
    // d1 (t=1000): small failed, large answered; d2 (t=2000): small; d3
    // (t=5000): a route, no attempts. Feedback on d1 and d2.
    let mut d1 = decision("d1", 1_000, &[1.0]);
    d1.served_model = Some("large".into());
    d1.rules = Some("[\"co_ding\"]".into());
    d1.candidates = "[{\"model\":\"small\",\"probability\":0.25}]".into();
    let mut a = attempt("large", "ok", Some(200));
    a.started_at_ms = 1_010;
    a.latency_ms = 30;
    let mut e = attempt("small", "error", Some(503));
    e.started_at_ms = 1_000;
    store
        .record_decision_with_attempts(d1, vec![e, a])
        .await
        .unwrap();
    let mut d2 = decision("d2", 2_000, &[1.0]);
    d2.served_model = Some("small".into());
    d2.tenant = "u".into();
    let mut a = attempt("small", "ok", Some(200));
    a.started_at_ms = 2_000;
    a.latency_ms = 10;
    store
        .record_decision_with_attempts(d2, vec![a])
        .await
        .unwrap();
    let mut d3 = decision("d3", 5_000, &[1.0]);
    d3.rpc = "route";
    store.record_decision(d3).await.unwrap();
    store
        .record_feedback(feedback("d1", "default", 1.0, 3_000))
        .await
        .unwrap();
    store
        .record_feedback(feedback("d2", "default", 0.5, 3_000))
        .await
        .unwrap();
    store
        .record_feedback(feedback("d2", "judge", 0.0, 3_000))
        .await
        .unwrap();
    let all = Range {
        from_ms: 0,
        to_ms: 10_000,
    };

    let by_model = store.decisions_by_model(all).await.unwrap();
    assert_eq!(by_model.len(), 1);
    assert_eq!((by_model[0].requests, by_model[0].failed), (3, 0));
    let groups = store.attempt_groups(all).await.unwrap();
    let totals = switchyard::store::console::by_model(&groups);
    assert_eq!(totals["small"].0, 2);
    assert_eq!(totals["small"].1, 1);
    assert!((totals["large"].2 - 0.001).abs() < 1e-12);
    assert_eq!(groups.iter().map(|g| g.day).max(), Some(0));

    let routing = store.routing_series(all, 1_000).await.unwrap();
    let points: Vec<(i64, i64)> = routing.iter().map(|p| (p.t_ms, p.n)).collect();
    assert_eq!(points, [(1_000, 1), (2_000, 1), (5_000, 1)]);
    let rewards = store.reward_series(all, 10_000).await.unwrap();
    let r: Vec<(&str, i64, f64)> = rewards
        .iter()
        .map(|p| (p.model.as_str(), p.n, p.sum))
        .collect();
    assert_eq!(r, [("large", 1, 1.0), ("small", 2, 0.5)]);
    let lat = store.latency_histogram(all).await.unwrap();
    let l: Vec<(&str, i64, i64)> = lat
        .iter()
        .map(|c| (c.model.as_str(), c.latency_ms, c.n))
        .collect();
    assert_eq!(l, [("large", 30, 1), ("small", 10, 1)]);
    // A range is half-open and reads only what falls in it.
    let early = Range {
        from_ms: 0,
        to_ms: 2_000,
    };
    assert_eq!(store.latency_histogram(early).await.unwrap().len(), 1);

    let search = |f: DecisionFilter| {
        let store = store.clone();
        async move {
            let f = DecisionFilter { limit: 50, ..f };
            let rows = store.search_decisions(&f).await.unwrap();
            rows.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(search(DecisionFilter::default()).await, ["d3", "d2", "d1"]);
    let f = |edit: fn(&mut DecisionFilter)| {
        let mut f = DecisionFilter::default();
        edit(&mut f);
        f
    };
    assert_eq!(search(f(|f| f.tenant = "u".into())).await, ["d2"]);
    assert_eq!(search(f(|f| f.model = "large".into())).await, ["d1"]);
    assert_eq!(search(f(|f| f.rule = "co_ding".into())).await, ["d1"]);
    // `_` is no wildcard, and a rule matches by its whole name.
    assert!(search(f(|f| f.rule = "coXding".into())).await.is_empty());
    assert!(search(f(|f| f.rule = "co_".into())).await.is_empty());
    assert_eq!(search(f(|f| f.has_feedback = Some(false))).await, ["d3"]);
    assert_eq!(
        search(f(|f| f.has_feedback = Some(true))).await,
        ["d2", "d1"]
    );
    assert_eq!(search(f(|f| f.before = "d2".into())).await, ["d1"]);
    assert_eq!(
        search(f(|f| {
            f.range = Some(Range {
                from_ms: 1_500,
                to_ms: 6_000,
            })
        }))
        .await,
        ["d3", "d2"]
    );
    let one = store
        .search_decisions(&DecisionFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);

    let d = store.decision_detail("d1").await.unwrap().unwrap();
    assert_eq!(d.line.served_model.as_deref(), Some("large"));
    assert_eq!(d.line.rules, Some(serde_json::json!(["co_ding"])));
    assert_eq!(d.candidates[0]["probability"], 0.25);
    assert_eq!(d.line.reward, Some(1.0));
    assert_eq!(d.line.latency_ms, Some(33));
    let outcomes: Vec<(&str, &str, Option<i64>)> = d
        .attempts
        .iter()
        .map(|a| (a.model.as_str(), a.outcome.as_str(), a.http_status))
        .collect();
    assert_eq!(
        outcomes,
        [("small", "error", Some(503)), ("large", "ok", Some(200))]
    );
    assert_eq!(d.feedback.len(), 1);
    let d2 = store.decision_detail("d2").await.unwrap().unwrap();
    assert_eq!(d2.line.reward, Some(0.25));
    assert!(store.decision_detail("missing").await.unwrap().is_none());

    assert!(store.promotions(10).await.unwrap().is_empty());
    let row = PromotionRow {
        version: "p1".into(),
        at_ms: 5,
        forced: true,
        estimate: Some(0.7),
        lower_bound: Some(0.6),
        baseline: Some(0.5),
        report: "{\"rows\":3}".into(),
        policy: "{\"version\":\"p1\"}".into(),
    };
    let id = store.record_promotion(row).await.unwrap();
    let again = store.promotion_row(id).await.unwrap().unwrap();
    assert_eq!((again.version.as_str(), again.forced), ("p1", true));
    assert_eq!(again.policy, "{\"version\":\"p1\"}");
    let newer = store.record_promotion(again).await.unwrap();
    let list = store.promotions(10).await.unwrap();
    assert_eq!(list.iter().map(|p| p.id).collect::<Vec<_>>(), [newer, id]);
    assert_eq!(list[0].estimate, Some(0.7));
    assert!(store.promotion_row(newer + 1).await.unwrap().is_none());
    close(store, writer).await;
}
