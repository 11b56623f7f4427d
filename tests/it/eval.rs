//! `switchyard eval` on real routing outcomes (`../shared/data/routing/`), a
//! few hundred rows, the real MiniLM encoder: outputs are complete, a second
//! run (reading the embedding cache the first one wrote) is byte-identical,
//! two-model subsets get RouteLLM's metrics, the online mode learns, and bad
//! input is refused with a clear message.

use std::path::{Path, PathBuf};

use switchyard::config::Config;
use switchyard::offline::eval::{self, EvalOptions, HeadChoice, Mode, QualityChoice};

const ROWS: usize = 240;

fn data_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/routing");
    if d.is_dir() {
        Some(d)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have ../shared/data"
        );
        None
    }
}

fn opts(dir: &Path, name: &str, out: &Path, cache: &Path) -> EvalOptions {
    EvalOptions {
        dataset: dir.join(format!("{name}.train.jsonl")),
        models: dir.join(format!("{name}.models.json")),
        train: None,
        out: out.to_path_buf(),
        mode: Mode::Offline,
        seed: 7,
        holdout: 0.3,
        limit: ROWS,
        head: HeadChoice::Fit(switchyard::offline::eval::fit::Target::Task),
        quality: QualityChoice::Auto,
        models_subset: None,
        sweep_points: 8,
        knn_k: 10,
        bootstrap: 50,
        cost_weight: 0.0,
        refit_every: 16,
        warm_start: None,
        cache_dir: cache.to_path_buf(),
    }
}

fn config() -> Config {
    let mut c = Config::embedded();
    c.classifier.model_dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    c
}

#[test]
fn offline_eval_writes_complete_outputs_and_is_reproducible() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let s = eval::run(&opts(&dir, "llmrouter", &a, &cache), &config()).unwrap();
    eval::run(&opts(&dir, "llmrouter", &b, &cache), &config()).unwrap();
    for f in [
        "decisions.jsonl",
        "summary.json",
        "prior.json",
        "task-head.json",
        "quality-head.json",
        "frontier.png",
    ] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between two runs with the same seed");
    }
    assert_eq!((s.train_rows, s.eval_rows), (168, 72));
    let router = s.router.as_ref().unwrap();
    assert_eq!(router.settings.len(), 9, "cost weight 0 plus the grid");
    assert_eq!(router.settings[0].setting, 0.0);
    for p in &router.settings {
        let total: f64 = p.share.values().sum();
        assert!((total - 1.0).abs() < 1e-9, "shares sum to {total}");
    }
    // The sweep spans the trade-off: the largest weight routes no dearer than the smallest.
    let (first, last) = (&router.settings[0], router.settings.last().unwrap());
    assert!(last.cost < first.cost, "{} !< {}", last.cost, first.cost);
    let r = &s.reference;
    assert!(r.oracle.quality >= r.best_single.quality);
    assert!(router.frontier_area > 0.0 && router.frontier_area <= r.oracle.quality + 1e-9);
    // The logistic-regression baseline runs on the same sweep, with a λ chosen
    // by cross-validation from its grid, and lands between zero and the oracle.
    let lr = s.logreg.as_ref().unwrap();
    assert!(eval::logreg::LAMBDAS.contains(&lr.lambda), "{}", lr.lambda);
    assert_eq!(lr.curve.settings.len(), 9);
    assert!(lr.curve.frontier_area > 0.0 && lr.curve.frontier_area <= r.oracle.quality + 1e-9);

    let text = std::fs::read_to_string(a.join("decisions.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 72 * 9);
    for l in &lines {
        assert!(l["id"].as_str().unwrap().starts_with("llmrouter-"));
        assert!(s.models.iter().any(|m| m == l["model"].as_str().unwrap()));
        assert!(l["setting"].as_f64().is_some());
    }
    // The fitted prior is a valid bandit state for the head's context.
    let state: switchyard::policy::bandit::BanditState =
        serde_json::from_str(&std::fs::read_to_string(a.join("prior.json")).unwrap()).unwrap();
    assert_eq!(
        state.dim,
        switchyard::policy::features::dim(s.head.labels, s.models.len())
    );
}

#[test]
fn a_two_model_subset_reports_apgr_and_cpt() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&dir, "mmlu-pro", tmp.path(), &tmp.path().join("cache"));
    o.models_subset = Some(vec!["gemini-1.5-pro-002".into(), "Llama-2-7b-hf".into()]);
    let s = eval::run(&o, &config()).unwrap();
    assert_eq!(s.models.len(), 2);
    let t = s.router.as_ref().unwrap().two_model.as_ref().unwrap();
    assert_eq!(
        (t.strong.as_str(), t.weak.as_str()),
        ("gemini-1.5-pro-002", "Llama-2-7b-hf")
    );
    // The frontier includes both single models, so it is never below random mixing.
    assert!((0.5..=1.0).contains(&t.apgr), "APGR {}", t.apgr);
    let (c50, c80) = (t.cpt50.unwrap(), t.cpt80.unwrap());
    assert!(c50 <= c80 && c80 <= 1.0, "CPT(50%) {c50} CPT(80%) {c80}");
    // The baseline gets the same metrics.
    assert!(s.knn.as_ref().unwrap().two_model.is_some());
    assert!(s.logreg.as_ref().unwrap().curve.two_model.is_some());
    // The paired bootstrap scores the router against both baselines on the same resamples.
    let b = s.bootstrap.as_ref().unwrap();
    assert_eq!(b.resamples, 50);
    let names: Vec<&str> = b.leads.iter().map(|l| l.baseline.as_str()).collect();
    assert_eq!(names, ["knn", "logreg"]);
    let knn_apgr = s.knn.as_ref().unwrap().two_model.as_ref().unwrap().apgr;
    let lead = b.leads[0].apgr.as_ref().unwrap();
    assert!((lead.estimate - (t.apgr - knn_apgr)).abs() < 1e-12);
    assert!(lead.lo <= lead.hi && (0.0..=1.0).contains(&lead.above_zero));
}

#[test]
fn online_mode_learns_from_the_outcomes() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&dir, "llmrouter", tmp.path(), &tmp.path().join("cache"));
    o.mode = Mode::Online;
    o.limit = 600;
    o.holdout = 0.5;
    let s = eval::run(&o, &config()).unwrap();
    let on = s.online.as_ref().unwrap();
    assert_eq!(on.windows.len(), 10);
    let n = s.reference.single_models.len() as f64;
    let uniform = s
        .reference
        .single_models
        .iter()
        .map(|m| m.quality)
        .sum::<f64>()
        / n;
    let late: f64 = on.windows[5..].iter().map(|w| w.quality).sum::<f64>() / 5.0;
    assert!(
        late > uniform + 0.05,
        "late quality {late:.3} vs uniform {uniform:.3}"
    );
    let lines = std::fs::read_to_string(tmp.path().join("decisions.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 300);
    assert!(tmp.path().join("online.png").is_file());

    // Started from the prior an offline run fits on the same training rows,
    // it does better over the late half than from nothing.
    let fitted = tmp.path().join("fitted");
    let mut f = o.clone();
    f.mode = Mode::Offline;
    f.out = fitted.clone();
    eval::run(&f, &config()).unwrap();
    let mut w = o.clone();
    w.out = tmp.path().join("warm");
    w.warm_start = Some(fitted.join("prior.json"));
    let warm = eval::run(&w, &config()).unwrap();
    let late_of = |s: &eval::Summary| s.online.as_ref().unwrap().late_half.objective;
    assert!(
        late_of(&warm) > late_of(&s),
        "warm {:.3} vs cold {:.3}",
        late_of(&warm),
        late_of(&s)
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let err = |o: EvalOptions| format!("{:#}", eval::run(&o, &config()).unwrap_err());

    let mut o = opts(&dir, "llmrouter", tmp.path(), &cache);
    o.holdout = 1.0;
    assert!(err(o).contains("--holdout"));

    let mut o = opts(&dir, "llmrouter", tmp.path(), &cache);
    o.bootstrap = 1_000_000;
    assert!(err(o).contains("--bootstrap"));

    let mut o = opts(&dir, "llmrouter", tmp.path(), &cache);
    o.models_subset = Some(vec!["no-such-model".into()]);
    assert!(err(o).contains("no-such-model"));

    let mut o = opts(&dir, "llmrouter", tmp.path(), &cache);
    o.dataset = tmp.path().join("missing.jsonl");
    assert!(err(o).contains("missing.jsonl"));

    // A models file that does not match the rows' outcomes.
    let mut o = opts(&dir, "llmrouter", tmp.path(), &cache);
    o.models = dir.join("mmlu-pro.models.json");
    assert!(err(o).contains("no outcome for model"));

    // A warm start of another context's width.
    let state = tmp.path().join("state.json");
    let narrow = switchyard::policy::bandit::BanditState::new(3);
    std::fs::write(&state, serde_json::to_string(&narrow).unwrap()).unwrap();
    let mut o = opts(&dir, "llmrouter", tmp.path(), &cache);
    o.mode = Mode::Online;
    o.warm_start = Some(state);
    assert!(err(o).contains("has dimension 3"));

    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": 1}\n").unwrap();
    let mut o = opts(&dir, "llmrouter", tmp.path(), &cache);
    o.dataset = bad;
    assert!(err(o).contains("bad.jsonl"));
}

#[test]
fn the_command_line_runs_eval_and_rejects_bad_flags() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_BACKTRACE", "0")
            .args(["eval", "--dataset"])
            .arg(dir.join("llmrouter.train.jsonl"))
            .arg("--models")
            .arg(dir.join("llmrouter.models.json"))
            .arg("--out")
            .arg(tmp.path().join("out"))
            .arg("--cache-dir")
            .arg(tmp.path().join("cache"))
            .args(["--limit", "60", "--sweep-points", "4"])
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = run(&["--mode", "online", "--cost-weight", "100"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("online at cost_weight 100"));
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("out/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(s["mode"], "online");
    assert_eq!(s["eval_rows"], 18);

    for (flag, value, says) in [
        ("--head", "clusters:x", "needs a number"),
        ("--holdout", "0", "--holdout"),
        ("--mode", "sideways", "sideways"),
    ] {
        let bad = run(&[flag, value]);
        assert!(!bad.status.success());
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}
