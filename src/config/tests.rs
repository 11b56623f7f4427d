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

#[test]
fn environment_overrides_the_file_and_the_defaults() {
    let env = [
        ("SWITCHYARD__SERVER__DATABASE", "/data/sy.db"),
        ("SWITCHYARD__ROUTING__COST_WEIGHT", "3"),
        ("SWITCHYARD__STORE__SYNCHRONOUS", "full"),
        ("SWITCHYARD__SERVER__HTTP_LISTEN", ""),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let c = Config::from_layers(Some("[routing]\ncost_weight = 2.5\n"), env).unwrap();
    assert_eq!(c.server.database, PathBuf::from("/data/sy.db"));
    assert_eq!(c.routing.cost_weight, 3.0);
    assert_eq!(c.store.synchronous, Synchronous::Full);
    assert_eq!(c.server.http_listen, None);
    // Everything else is still the defaults.
    assert_eq!(
        c.server.max_in_flight,
        Config::embedded().server.max_in_flight
    );
    let bad = [(
        "SWITCHYARD__SERVER__MAX_IN_FLIGHT".to_string(),
        "lots".to_string(),
    )];
    let err = Config::from_layers(None, bad).unwrap_err().to_string();
    assert!(err.contains("SWITCHYARD__SERVER__MAX_IN_FLIGHT"), "{err}");
}

#[test]
fn defaults_live_in_the_file_only() {
    // Every section of the embedded file is required by the typed shape, so a
    // key dropped from `config/default.toml` is an error, not a silent
    // default written in code.
    let mut t: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
    t["server"].as_table_mut().unwrap().remove("max_in_flight");
    let err =
        serde_path_to_error::deserialize::<_, raw::RawConfig>(toml::Value::Table(t)).unwrap_err();
    assert_eq!(err.path().to_string(), "server");
    assert!(err.inner().to_string().contains("max_in_flight"), "{err}");
}

#[test]
fn wrong_types_and_values_name_their_key_and_line() {
    let err = Config::from_toml("[server]\n\nmax_in_flight = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.max_in_flight"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    let err = Config::from_toml("[routing]\npolicy = \"greedy\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routing.policy") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn deployments_inherit_the_models_settings_and_are_checked() {
    let catalog = |deployments: &str| {
        format!(
            "[[providers]]\nname=\"a\"\nkind=\"openai\"\nbase_url=\"http://a\"\n\
             [[providers]]\nname=\"b\"\nkind=\"openai\"\nbase_url=\"http://b\"\n\
             [[providers]]\nname=\"g\"\nkind=\"gemini\"\nbase_url=\"http://g\"\n\
             [[models]]\nname=\"m\"\nprovider=\"a\"\nupstream=\"m-a\"\ninput_usd_per_mtok=1.0\n\
             output_usd_per_mtok=2.0\ncontext_window=1000\nprior_quality=0.5\n{deployments}"
        )
    };
    let c = Config::from_toml(&catalog(
        "[[models.deployments]]\nprovider=\"b\"\noutput_usd_per_mtok=3.0\n\
         [[models.deployments]]\nname=\"b-eu\"\nprovider=\"b\"\nupstream=\"m-eu\"\n",
    ))
    .unwrap();
    let built = crate::catalog::Catalog::new(&c, |_| None);
    let seen: Vec<(&str, &str, &str, f64, f64)> = built.models[0]
        .deployments
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                built.providers[d.provider].name.as_str(),
                d.upstream.as_str(),
                d.input_usd_per_mtok,
                d.output_usd_per_mtok,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a", "a", "m-a", 1.0, 2.0),
            ("b", "b", "m-a", 1.0, 3.0),
            ("b-eu", "b", "m-eu", 1.0, 2.0),
        ]
    );
    for (deployments, field, says) in [
        (
            "[[models.deployments]]\nprovider=\"z\"\n",
            "models[0].deployments[0].provider",
            "no provider",
        ),
        (
            "[[models.deployments]]\nprovider=\"g\"\n",
            "models[0].deployments[0].provider",
            "protocol",
        ),
        (
            "[[models.deployments]]\nprovider=\"b\"\n[[models.deployments]]\nprovider=\"b\"\n",
            "models[0].deployments[1].name",
            "repeated",
        ),
        (
            "[[models.deployments]]\nprovider=\"b\"\ninput_usd_per_mtok=-1.0\n",
            "models[0].deployments[0].input_usd_per_mtok",
            ">= 0",
        ),
    ] {
        let err = Config::from_toml(&catalog(deployments))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field) && err.contains(says), "{field}: {err}");
    }
}
