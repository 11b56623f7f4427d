use std::collections::BTreeMap;

use super::*;

fn rules(toml: &str) -> (Rules, Catalog) {
    let config = Config::from_toml(toml).unwrap();
    let catalog = Catalog::new(&config, |_| None);
    (Rules::new(&config, &catalog).unwrap(), catalog)
}

fn never() -> impl FnMut() -> f64 {
    || 0.999_999
}

const TEAM: &str = r#"
[[profiles]]
name = "cheap"
candidates = ["gpt-4.1-nano", "gpt-4o-mini", "llama-3.3-70b"]
cost_weight = 200.0

[[routes]]
name = "free-tier"
match = { tier = ["free"] }
then = { max_usd_per_mtok = 1.0 }

[[routes]]
name = "german"
match = { language = ["deu"] }
then = { model = "claude-3.5-haiku" }

[[routes]]
name = "code"
match = { intent = ["code"], min_confidence = 0.5 }
then = { model = "gpt-4.1", latency_weight = 0.5 }

[[routes]]
name = "vip"
match = { header = { "x-team" = "research" } }
then = { profile = "cheap" }
last = true

[[routes]]
name = "never-after-vip"
then = { cost_weight = 1.0 }
"#;

#[test]
fn limits_combine_and_pins_take_the_last_value() {
    let (r, c) = rules(TEAM);
    let meta = BTreeMap::new();
    let f = Facts {
        tier: "free",
        intent: Some(("code", 0.9)),
        text: "write a function that sorts a list",
        metadata: &meta,
        ..Facts::default()
    };
    let v = r.evaluate(&f, &mut never());
    assert_eq!(v.matched, ["free-tier", "code", "never-after-vip"]);
    assert_eq!(v.pin.as_ref().unwrap().1, "rule:code");
    assert_eq!(v.latency_weight, Some(0.5));
    assert_eq!(v.cost_weight, Some(1.0));
    // The free tier's ceiling holds whatever later rules pin.
    let gpt41 = c.model_index("gpt-4.1").unwrap();
    let why = v.excludes(&c, gpt41).unwrap();
    assert!(why.contains("rule free-tier's ceiling"), "{why}");
    assert!(
        v.excludes(&c, c.model_index("gpt-4.1-nano").unwrap())
            .is_none()
    );
    // Low confidence: the code rule does not match.
    let unsure = Facts {
        intent: Some(("code", 0.3)),
        ..f
    };
    assert_eq!(
        r.evaluate(&unsure, &mut never()).matched,
        ["free-tier", "never-after-vip"]
    );
}

#[test]
fn language_headers_and_last() {
    let (r, c) = rules(TEAM);
    let meta = BTreeMap::new();
    let german = Facts {
        text: "Kannst du mir bitte erklären, wie die Steuererklärung in Deutschland funktioniert?",
        metadata: &meta,
        ..Facts::default()
    };
    let v = r.evaluate(&german, &mut never());
    assert_eq!(v.pin.unwrap().0, c.model_index("claude-3.5-haiku").unwrap());
    let english = Facts {
        text: "Can you please explain how tax returns work in the United States?",
        ..german
    };
    assert!(r.evaluate(&english, &mut never()).pin.is_none());

    let headers = [("x-team".to_owned(), "research".to_owned())];
    let vip = Facts {
        headers: &headers,
        ..english
    };
    let v = r.evaluate(&vip, &mut never());
    assert_eq!(v.matched, ["vip"], "`last` stops the evaluation");
    assert_eq!(v.profile.as_deref(), Some("cheap"));
    assert_eq!(v.cost_weight, Some(200.0));
    let why = v.excludes(&c, c.model_index("gpt-4.1").unwrap()).unwrap();
    assert!(why.contains("profile cheap"), "{why}");
}

#[test]
fn a_pinned_request_meets_only_the_rules_that_bind_it() {
    let (r, _) = rules(TEAM);
    let f = Facts {
        tier: "free",
        intent: Some(("code", 0.9)),
        text: "Kannst du mir bitte erklären, wie die Steuererklärung funktioniert?",
        pinned: true,
        ..Facts::default()
    };
    // The ceiling holds; the language and code pins and the weight do not apply.
    assert_eq!(r.evaluate(&f, &mut never()).matched, ["free-tier"]);
    let headers = [("x-team".to_owned(), "research".to_owned())];
    let vip = Facts {
        headers: &headers,
        ..f
    };
    // A profile with candidates binds a pinned request too.
    assert_eq!(r.evaluate(&vip, &mut never()).matched, ["free-tier", "vip"]);
}

#[test]
fn splits_stick_to_the_user_and_measure_their_share() {
    let (r, _) = rules(
        r#"
[[routes]]
name = "canary"
then = { split = { share = 0.2, model = "gpt-4.1-mini" } }
"#,
    );
    let meta = BTreeMap::new();
    let mut variant = 0;
    for i in 0..5000 {
        let user = format!("user-{i}");
        let f = Facts {
            user: Some(&user),
            metadata: &meta,
            ..Facts::default()
        };
        let a = r.evaluate(&f, &mut never()).split.unwrap();
        let again = r.evaluate(&f, &mut || 0.0).split.unwrap();
        assert_eq!(a, again, "sticky per user");
        if a.arm == "variant" {
            variant += 1;
            assert_eq!(a.probability, 0.2);
        } else {
            assert!((a.probability - 0.8).abs() < 1e-12);
        }
    }
    let share = f64::from(variant) / 5000.0;
    assert!((share - 0.2).abs() < 0.02, "{share}");
}

#[test]
fn a_requested_profile_applies_first_and_rules_can_match_it() {
    let (r, c) = rules(
        r#"
[[profiles]]
name = "cheap"
candidates = ["gpt-4.1-nano", "gpt-4o-mini"]
cost_weight = 100.0

[[routes]]
name = "cheap-canary"
match = { profile = ["cheap"] }
then = { split = { share = 1.0, policy = "prior" } }
"#,
    );
    let f = Facts {
        profile: r.profile("cheap"),
        ..Facts::default()
    };
    let v = r.evaluate(&f, &mut never());
    assert_eq!(
        (v.profile.as_deref(), v.cost_weight),
        (Some("cheap"), Some(100.0))
    );
    assert_eq!(v.matched, ["cheap-canary"]);
    let a = v.split.clone().unwrap();
    assert_eq!((a.arm, a.variant), ("variant", Variant::Policy(0)));
    assert_eq!(r.variant_policies(), ["prior"]);
    assert!(v.pin.is_none(), "a policy variant chooses; it pins nothing");
    assert!(v.excludes(&c, c.model_index("gpt-4.1").unwrap()).is_some());
    assert!(
        r.evaluate(&Facts::default(), &mut never())
            .matched
            .is_empty()
    );
}

#[test]
fn keywords_regex_tokens_and_needs() {
    let (r, _) = rules(
        r#"
[[routes]]
name = "sql"
match = { keywords = ["SELECT"], regex = "(?i)\\bfrom\\b", max_prompt_tokens = 100, needs = ["tools"] }
then = { cost_weight = 3.0 }
"#,
    );
    let meta = BTreeMap::new();
    let tools = [Capability::Tools];
    let f = Facts {
        text: "select name from users",
        prompt_tokens: 10,
        needs: &tools,
        metadata: &meta,
        ..Facts::default()
    };
    assert_eq!(r.evaluate(&f, &mut never()).matched, ["sql"]);
    for miss in [
        Facts { needs: &[], ..f },
        Facts {
            prompt_tokens: 101,
            ..f
        },
        Facts {
            text: "select a name",
            ..f
        },
    ] {
        assert!(r.evaluate(&miss, &mut never()).matched.is_empty());
    }
}

#[test]
fn bad_rules_are_refused_by_name() {
    for (toml, says) in [
        (
            "[[routes]]\nname = \"a\"\nthen = { model = \"nope\" }",
            "routes[0].then.model",
        ),
        (
            "[[routes]]\nname = \"a\"\nmatch = { language = [\"klingon\"] }",
            "routes[0].match.language",
        ),
        (
            "[[routes]]\nname = \"a\"\nmatch = { regex = \"(\" }",
            "routes[0].match.regex",
        ),
        (
            "[[routes]]\nname = \"a\"\nthen = { split = { share = 1.5, model = \"gpt-4.1\" } }",
            "share",
        ),
        (
            "[[routes]]\nname = \"a\"\n[[routes]]\nname = \"a\"",
            "used twice",
        ),
        ("[[profiles]]\nname = \"auto\"", "profiles[0]"),
        (
            "[[routes]]\nname = \"a\"\nthen = { split = { share = 0.1 } }",
            "name the variant",
        ),
        (
            "[[routes]]\nname = \"a\"\nmatch = { profile = [\"nope\"] }",
            "routes[0].match.profile",
        ),
    ] {
        let e = Config::from_toml(toml).unwrap_err().to_string();
        assert!(e.contains(says), "{toml}: {e}");
    }
}
