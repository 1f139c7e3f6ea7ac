//! End-to-end tests of the `probelog-tool` binary (real processes, real files). Collaborative
//! probing from the command line: `append --probe-fraction` and its adaptive second round.

mod common;
use common::fixture::*;
use common::*;

#[test]
fn probe_fraction_completes_models_from_stored_factors() {
    let f = Fixture::new();
    let m = f.six_model_manifest().0;
    let args = fixture::half_probed(f.idx(), &m, &["--seed", "3"]);
    // The default rank (32) needs more logits than these 18 to fit factors.
    let e = fails(&args);
    assert!(e.contains("at least 32 logits"), "{e}");
    assert_eq!(
        model_info(f.idx())["model_count"],
        0,
        "nothing was committed"
    );
    let r = ok_json(&[&args[..], &["--rank", "6"]].concat());
    assert_eq!(r["models_added"], 6);
    let info = model_info(f.idx());
    assert_eq!(info["probe_factors"]["rank"], 6);
    for m in info["models"].as_array().unwrap() {
        assert_eq!(m["observed_probes"], (P / 2) as u64);
    }
    // A concept-1 logit finds another model's concept-1 logit first.
    let r = ok_json(&[
        "search",
        f.idx(),
        "--entry",
        "2",
        "--exclude-same-model",
        "--per-model",
    ]);
    assert_eq!(r["query"]["label"], "concept-3");
    assert_eq!(r["results"][0]["label"], "concept-3");
    // A later append folds in with the stored factors (its --rank is not used).
    let (npy, labels, _) = f.model_files("late", &[1, 3], 9);
    let r = ok_json(&f.append_logits(
        &npy,
        "late",
        &[
            "--labels",
            s(&labels),
            "--probe-fraction",
            "0.4",
            "--rank",
            "2",
        ],
    ));
    assert_eq!(r["models_added"], 1);
    let info = model_info(f.idx());
    assert_eq!(info["probe_factors"]["rank"], 6);
    assert_eq!(info["models"][6]["observed_probes"], 20);
    ok(&["verify", f.idx()]);
    // Refitting the factors at compaction takes the new rank and keeps every model.
    let r = ok_json(&["compact", f.idx(), "--refactorize", "--rank", "4"]);
    assert_eq!(r["model_count"], 7);
    let info = model_info(f.idx());
    assert_eq!(info["probe_factors"]["rank"], 4);
    assert_eq!(info["models"][6]["observed_probes"], 20);
    ok(&["verify", f.idx()]);
    let e = fails(&f.append_logits(&npy, "x", &["--probe-fraction", "0"]));
    assert!(e.contains("fraction"), "{e}");
}

#[test]
fn adaptive_round_runs_the_probes_the_first_rounds_completion_ranks_highest() {
    use probelog::collab::{
        CollabOptions, Observations, ProbeFactors, adaptive_probes, adaptive_split,
        sample_probe_count, sample_probes,
    };
    let f = Fixture::new();
    let (m, raw) = f.six_model_manifest();
    let append = |index: &str, share: &str| {
        ok(&["create", index, "--num-probes", &P.to_string()]);
        ok_json(&fixture::half_probed(
            index,
            &m,
            &["--seed", "3", "--rank", "6", "--adaptive-share", share],
        ))
    };
    // Round 1 as the command runs it: each model's random 6 of the 25 probes, factors fitted
    // on those; round 2 takes the 19 probes its completion ranks highest.
    let (random, adaptive) = adaptive_split(P, 0.5, 0.75).unwrap();
    assert_eq!((random, adaptive), (6, 19));
    let first: Vec<(Vec<u32>, Observations)> = raw
        .iter()
        .enumerate()
        .map(|(i, logits)| {
            let l = SIX_MODELS[i].len();
            let observed = sample_probe_count(P, random, 3 + i as u64);
            let rows = probelog::collab::ProbeRows::select(logits, l, &observed).data;
            let matrix = probelog::LogitMatrix::new(&rows, observed.len(), l).unwrap();
            let obs = Observations::from_logits("m", &matrix, &observed, P, false)
                .unwrap()
                .0;
            (observed, obs)
        })
        .collect();
    let opts = CollabOptions {
        rank: 6,
        seed: 3,
        ..CollabOptions::default()
    };
    let observations: Vec<Observations> = first.iter().map(|(_, o)| o.clone()).collect();
    let factors = ProbeFactors::fit(P, &observations, &opts).unwrap();
    let adaptive_index = f.path("adaptive.plog");
    let r = append(s(&adaptive_index), "0.75");
    assert_eq!(r["models_added"], 6);
    let index = probelog::Index::open(&adaptive_index).unwrap();
    for (i, (observed, obs)) in first.iter().enumerate() {
        let predicted = factors.impute(obs, opts.lambda).unwrap();
        let extra = adaptive_probes(&predicted, obs.logits, P, observed, adaptive).unwrap();
        let mut want = [observed.clone(), extra].concat();
        want.sort_unstable();
        let got = index.observed_probes(i as u64).unwrap().unwrap();
        assert_eq!(got, want, "model {i}");
    }
    ok(&["verify", s(&adaptive_index)]);
    // Share 0: the paper's random subsets of the whole budget.
    let random_index = f.path("random.plog");
    append(s(&random_index), "0");
    let index = probelog::Index::open(&random_index).unwrap();
    for i in 0..6 {
        assert_eq!(
            index.observed_probes(i).unwrap().unwrap(),
            sample_probes(P, 0.5, 3 + i).unwrap()
        );
    }
    for bad in ["1", "-0.5", "nan"] {
        let e = fails(&fixture::half_probed(
            f.idx(),
            &m,
            &[&format!("--adaptive-share={bad}")],
        ));
        assert!(e.contains("adaptive share"), "{bad}: {e}");
    }
}
