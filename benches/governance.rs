//! What governance costs per request, by part: hashing and looking up an API
//! key, the rate limits and the budget check, and evaluating `[[routes]]`
//! (with and without a language rule, whose detection is the costliest test).
//!
//! `cargo bench --bench governance`. The whole-request figure, side by side
//! with the plain server, is `OVERHEAD_ONLY=pinned cargo bench --bench
//! http_overhead` (the `governed` target).

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use switchyard::catalog::Catalog;
use switchyard::config::Config;
use switchyard::rules::{Facts, Rules};

const PROMPT: &str = "Summarise the plot of Hamlet in one sentence.";

const RULES: &str = r#"
[[routes]]
name = "free-tier"
match = { tier = ["free"] }
then = { max_usd_per_mtok = 20.0 }

[[routes]]
name = "sql"
match = { regex = "(?i)\\bselect\\b.+\\bfrom\\b" }
then = { cost_weight = 1.0 }

[[routes]]
name = "canary"
then = { split = { share = 0.1, model = "gpt-4.1" } }
"#;

const LANGUAGE: &str = r#"
[[routes]]
name = "german"
match = { language = ["deu"] }
then = { model = "claude-3.5-haiku" }
"#;

fn rules(toml: &str) -> Rules {
    let config = Config::from_toml(toml).unwrap();
    let catalog = Catalog::new(&config, |_| None);
    Rules::new(&config, &catalog).unwrap()
}

fn bench(c: &mut Criterion) {
    let plain = rules(RULES);
    let language = rules(&format!("{RULES}{LANGUAGE}"));
    let facts = Facts {
        tier: "free",
        text: PROMPT,
        prompt_tokens: 12,
        user: Some("user-42"),
        ..Facts::default()
    };
    c.bench_function("rules: tier, regex, split", |b| {
        b.iter(|| black_box(plain.evaluate(black_box(&facts), &mut || 0.5)))
    });
    c.bench_function("rules: tier, regex, split, language", |b| {
        b.iter(|| black_box(language.evaluate(black_box(&facts), &mut || 0.5)))
    });
    c.bench_function("whatlang::detect_lang", |b| {
        b.iter(|| black_box(whatlang::detect_lang(black_box(PROMPT))))
    });
    let secret = "sy-0123456789abcdef0123456789abcdef0123456789abcdef";
    c.bench_function("auth: hash a key", |b| {
        b.iter(|| black_box(switchyard::auth::hash(black_box(secret))))
    });
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
