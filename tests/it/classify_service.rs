//! The classifier inside the service: real MiniLM, real intent head, real
//! requests. Route explains the intent, the log keeps the embedding, user
//! intents from config work, and a full queue is RESOURCE_EXHAUSTED.

use crate::common;

use common::{Env, route_req};
use switchyard::config::IntentExamples;
use switchyard::store::codec::unpack_f16;
use tonic::Code;

#[tokio::test]
async fn route_reports_the_intent_of_the_prompt() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let cases = [
        (
            "Write a Python function that returns the n-th Fibonacci number, with tests.",
            "code",
        ),
        ("Solve for x: 3x + 7 = 22. Show your steps.", "math"),
        ("hey there! how's your day going?", "chitchat"),
        (
            "Summarize the following meeting notes in three bullet points: the team agreed to ship on Friday, QA found two blockers, and marketing needs the copy by Wednesday.",
            "summarization",
        ),
    ];
    for (text, want) in cases {
        let r = c.route(route_req(text)).await.unwrap().into_inner();
        let intent = r.intent.expect("every Route carries an intent");
        assert_eq!(intent.label, want, "{text}");
        assert!(intent.confidence > 0.0 && intent.confidence <= 1.0);

        let d = env
            .store()
            .await
            .decision(&r.decision_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.intent.as_deref(), Some(want));
        let emb = unpack_f16(&d.features.expect("the log keeps the embedding"));
        assert_eq!(emb.len(), 384);
        let norm: f32 = emb.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-2, "norm {norm}");
    }
}

#[tokio::test]
async fn user_defined_intents_replace_the_default_head() {
    let env = Env::start_with(|c| {
        c.classifier.intents = vec![
            IntentExamples {
                name: "billing".into(),
                examples: vec![
                    "I was charged twice this month".into(),
                    "How do I update my credit card?".into(),
                    "Can I get a refund for my last invoice?".into(),
                ],
            },
            IntentExamples {
                name: "shipping".into(),
                examples: vec![
                    "Where is my package?".into(),
                    "My order hasn't arrived yet".into(),
                    "Can you ship to Canada?".into(),
                ],
            },
        ];
        c.classifier.intents_replace = true;
    })
    .await;
    let mut c = env.server.client().await;
    let r = c
        .route(route_req("there are two identical charges on my card"))
        .await
        .unwrap();
    assert_eq!(r.into_inner().intent.unwrap().label, "billing");
    let r = c
        .route(route_req("when will my parcel be delivered?"))
        .await
        .unwrap();
    assert_eq!(r.into_inner().intent.unwrap().label, "shipping");
}

#[tokio::test]
async fn a_full_classifier_queue_is_resource_exhausted_not_unbounded() {
    let env = Env::start_with(|c| {
        c.classifier.workers = 1;
        c.classifier.queue_depth = 1;
    })
    .await;
    let client = env.server.client().await;
    let long = "Explain in detail how a compiler turns source code into machine code. ".repeat(30);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let mut c = client.clone();
        let text = long.clone();
        tasks.push(tokio::spawn(async move { c.route(route_req(&text)).await }));
    }
    let mut exhausted = 0;
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.code() == Code::ResourceExhausted => exhausted += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(ok >= 1 && exhausted >= 1, "ok {ok}, exhausted {exhausted}");
    // The service recovers once the burst is over.
    let mut c = client.clone();
    c.route(route_req("still there?")).await.unwrap();
}
