//! Config parsing and validation, from TOML text to errors naming fields.

use super::*;

#[test]
fn embedded_defaults_are_valid() {
    let c = Config::embedded();
    assert_eq!(c.server.grpc_listen.to_string(), "127.0.0.1:50051");
    assert_eq!(c.server.database, PathBuf::from("switchyard.db"));
    assert!(c.models.len() >= 8);
    assert!(c.providers.iter().any(|p| p.name == "anthropic"));
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = Config::from_toml("[server]\ngrpc_listen = \"127.0.0.1:1\"\nbogus_key = 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus_key"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn partial_file_takes_defaults_and_own_catalog_replaces() {
    let c = Config::from_toml("[routing]\ncost_weight = 2.5\n").unwrap();
    assert_eq!(c.routing.cost_weight, 2.5);
    assert_eq!(c.models.len(), Config::embedded().models.len());
    let own = r#"
        [[providers]]
        name = "mock"
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1/"
        [[models]]
        name = "small"
        provider = "mock"
        input_usd_per_mtok = 0.1
        output_usd_per_mtok = 0.2
        context_window = 8000
        prior_quality = 0.5
    "#;
    let c = Config::from_toml(own).unwrap();
    assert_eq!(c.models.len(), 1);
    assert_eq!(c.models[0].upstream, "small");
    assert_eq!(c.providers[0].base_url, "http://127.0.0.1:9/v1");
}

#[test]
fn invalid_values_name_their_field() {
    let cases = [
        ("[routing]\ncost_weight = -1.0\n", "routing.cost_weight"),
        (
            "[routing]\nlatency_weight = -0.5\n",
            "routing.latency_weight",
        ),
        ("[server]\ngrpc_listen = \"nope\"\n", "server.grpc_listen"),
        ("[store]\nsynchronous = \"off\"\n", "store.synchronous"),
        (
            "[[providers]]\nname=\"p\"\nkind=\"openai\"\nbase_url=\"http://x\"\n[[models]]\nname=\"m\"\nprovider=\"q\"\ninput_usd_per_mtok=1.0\noutput_usd_per_mtok=1.0\ncontext_window=1\nprior_quality=0.5\n",
            "models[0].provider",
        ),
        (
            "[[providers]]\nname=\"p\"\nkind=\"openai\"\nbase_url=\"http://x\"\n[[models]]\nname=\"m\"\nprovider=\"p\"\ninput_usd_per_mtok=1.0\noutput_usd_per_mtok=1.0\ncontext_window=1\nprior_quality=1.5\n",
            "models[0].prior_quality",
        ),
    ];
    for (text, field) in cases {
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn failure_policy_keys_are_validated() {
    let c = Config::embedded();
    assert_eq!(c.dispatch.policy.max_retries, 2);
    assert!(c.dispatch.policy.fallback);
    for (toml, field) in [
        (
            "[dispatch]\nretry_budget_ratio = 1.5\n",
            "dispatch.retry_budget_ratio",
        ),
        (
            "[dispatch]\nbackoff_base_ms = 5000\nbackoff_max_ms = 10\n",
            "dispatch.backoff_base_ms",
        ),
        (
            "[dispatch]\nbreaker_probes = 0\n",
            "dispatch.breaker_probes",
        ),
        (
            "[dispatch]\nfailure_reward = -1.0\n",
            "dispatch.failure_reward",
        ),
        (
            "[[providers]]\nname=\"p\"\nkind=\"anthropic\"\nbase_url=\"http://x\"\n[[models]]\nname=\"m\"\nprovider=\"p\"\ninput_usd_per_mtok=1.0\noutput_usd_per_mtok=1.0\ncontext_window=1\nprior_quality=0.5\nfallback=[\"nope\"]\n",
            "models[0].fallback",
        ),
    ] {
        let e = Config::from_toml(toml).unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
}
