//! End-to-end tests of `probelog-tool merge` (real processes, real files): the merged file
//! searches as an index built in one pass, refusals name the input and leave no output, a merge
//! killed at any moment leaves no output or a verifying one, and `--json`.

mod common;
use common::fixture::*;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use probelog::testkit::hidden_files;

/// Nine models `m0`..`m8`: concepts vary with the position.
fn model_files(f: &Fixture) -> Vec<(PathBuf, PathBuf)> {
    (0..9)
        .map(|i| {
            let concepts = [i % 10, (i + 3) % 10, (i + 7) % 10];
            let (npy, labels, _) = f.model_files(&format!("m{i}"), &concepts, i as u64 + 1);
            (npy, labels)
        })
        .collect()
}

fn new_index(f: &Fixture, name: &str, models: &[(PathBuf, PathBuf)], first: usize) -> PathBuf {
    let path = f.path(name);
    ok(&["create", s(&path), "--num-probes", &P.to_string()]);
    for (i, (npy, labels)) in models.iter().enumerate() {
        let name = format!("m{}", first + i);
        ok(&[
            "append",
            s(&path),
            "--logits",
            s(npy),
            "--labels",
            s(labels),
            "--name",
            &name,
        ]);
    }
    path
}

/// The results of a `--json` search.
fn results(args: &[&str]) -> serde_json::Value {
    ok_json(args)["results"].clone()
}

#[test]
fn merged_shards_search_as_one_index_built_in_one_pass() {
    let f = Fixture::new();
    let files = model_files(&f);
    let single = new_index(&f, "single.plog", &files, 0);
    let shards: Vec<PathBuf> = (0..3)
        .map(|s| new_index(&f, &format!("s{s}.plog"), &files[s * 3..s * 3 + 3], s * 3))
        .collect();
    // A deleted model in a shard is left out.
    let (npy, labels) = &files[0];
    ok(&[
        "append",
        s(&shards[1]),
        "--logits",
        s(npy),
        "--labels",
        s(labels),
        "--name",
        "gone",
    ]);
    ok(&["delete", s(&shards[1]), "--model", "gone"]);
    let out = f.path("merged.plog");
    let summary = ok_json(
        &[
            &["merge", s(&out)][..],
            &shards.iter().map(|p| s(p)).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    assert_eq!(summary["model_count"], 9);
    assert_eq!(summary["entry_count"], 27);
    assert_eq!(summary["models_dropped"], 1);
    assert_eq!(summary["factors"], "none");
    assert_eq!(summary["inputs"].as_array().unwrap().len(), 3);
    assert!(summary["bytes_written"].as_u64().unwrap() > 0);
    assert!(ok(&["verify", s(&out)]).contains(": OK"));
    for e in ["0", "4", "13", "26"] {
        for extra in [
            &[][..],
            &["--per-model"],
            &["--metric", "topk", "--exclude-same-model"],
        ] {
            let a = results(&[&["search", s(&single), "--entry", e][..], extra].concat());
            let b = results(&[&["search", s(&out), "--entry", e][..], extra].concat());
            assert_eq!(a, b, "entry {e} {extra:?}");
            assert!(!a.as_array().unwrap().is_empty());
        }
    }
    let text = ok(&[
        "merge",
        s(&f.path("again.plog")),
        s(&shards[0]),
        s(&shards[2]),
    ]);
    assert!(text.starts_with("merged 2 indexes"), "{text}");
}

/// `--dtype f16` of an f32 index: a smaller file that verifies, stores f16, and ranks as the
/// f32 one does up to the rounding (the same top hits, scores within f16 precision).
#[test]
fn merge_converts_the_dtype_for_shipping() {
    let f = Fixture::new();
    let files = model_files(&f);
    let single = new_index(&f, "single.plog", &files, 0);
    let half = f.path("half.plog");
    let summary = ok_json(&["merge", s(&half), s(&single), "--dtype", "f16"]);
    assert_eq!(summary["dtype"], "f16");
    assert_eq!(summary["entry_count"], 27);
    assert!(ok(&["verify", s(&half)]).contains(": OK"));
    assert!(ok(&["info", s(&half)]).contains("f16"));
    assert!(
        fs::metadata(&half).unwrap().len() < fs::metadata(&single).unwrap().len(),
        "f16 is smaller"
    );
    for e in ["0", "13", "26"] {
        let a = results(&["search", s(&single), "--entry", e, "--top", "3"]);
        let b = results(&["search", s(&half), "--entry", e, "--top", "3"]);
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            let (sx, sy) = (x["score"].as_f64().unwrap(), y["score"].as_f64().unwrap());
            assert!((sx - sy).abs() <= 0.02 * sx.abs().max(1.0), "entry {e}: {sx} vs {sy}");
        }
        assert_eq!(a[0]["entry"], b[0]["entry"], "entry {e}: the best hit");
    }
    // Without --dtype the inputs' dtype is kept.
    let same = f.path("same.plog");
    assert_eq!(ok_json(&["merge", s(&same), s(&half)])["dtype"], "f16");
    let out = run(&["merge", s(&f.path("x.plog")), s(&single), "--dtype", "f8"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("f8"), "{}", stderr(&out));
}

#[test]
fn refusals_name_the_input_and_leave_no_output() {
    let f = Fixture::new();
    let files = model_files(&f);
    let a = new_index(&f, "a.plog", &files[..2], 0);
    let b = new_index(&f, "b.plog", &files[2..4], 2);
    let out = f.path("out.plog");
    let refused = |args: &[&str], words: &[&str]| {
        let line = fails(args);
        for w in words {
            assert!(line.contains(w), "{args:?}: {line}");
        }
        assert!(!out.exists(), "{args:?}: the output exists");
        assert!(
            hidden_files(f.dir.path()).is_empty(),
            "{:?}",
            hidden_files(f.dir.path())
        );
    };
    let wide = f.path("wide.plog");
    ok(&["create", s(&wide), "--num-probes", &(P + 1).to_string()]);
    refused(&["merge", s(&out), s(&a), s(&wide)], &[s(&wide), "probes"]);
    let half = f.path("half.plog");
    ok(&[
        "create",
        s(&half),
        "--num-probes",
        &P.to_string(),
        "--dtype",
        "f16",
    ]);
    refused(&["merge", s(&out), s(&a), s(&half)], &[s(&half), "f16"]);
    let other = f.path("other.plog");
    let fp = "ab".repeat(32);
    ok(&[
        "create",
        s(&other),
        "--num-probes",
        &P.to_string(),
        "--probe-fingerprint",
        &fp,
    ]);
    refused(
        &["merge", s(&out), s(&a), s(&other)],
        &[s(&other), "fingerprint"],
    );
    let twin = new_index(&f, "twin.plog", &files[..1], 0);
    refused(
        &["merge", s(&out), s(&a), s(&twin)],
        &[s(&twin), "\"m0\"", "--keep-duplicate-names"],
    );
    // A damaged input, by the section that is damaged.
    let bad = f.path("bad.plog");
    fs::copy(&b, &bad).unwrap();
    let (name, offset, len) = probelog::Index::open(&bad)
        .unwrap()
        .section_extents()
        .into_iter()
        .find(|(n, _, _)| n.ends_with("descriptors"))
        .unwrap();
    let mut img = fs::read(&bad).unwrap();
    img[(offset + len / 2) as usize] ^= 0x40;
    fs::write(&bad, &img).unwrap();
    refused(
        &["merge", s(&out), s(&a), s(&bad)],
        &[s(&bad), &name, "damaged"],
    );
    // An output that exists, or names an input.
    ok(&["merge", s(&out), s(&a), s(&twin), "--keep-duplicate-names"]);
    let before = fs::read(&out).unwrap();
    let line = fails(&["merge", s(&out), s(&a), s(&b)]);
    assert!(line.contains("exists"), "{line}");
    let line = fails(&["merge", s(&out), s(&out), s(&b), "--force"]);
    assert!(line.contains("names the same file as"), "{line}");
    assert_eq!(fs::read(&out).unwrap(), before);
    let r = ok_json(&["merge", s(&out), s(&a), s(&b), "--force"]);
    assert_eq!(r["model_count"], 4);
    assert!(ok(&["verify", s(&out)]).contains(": OK"));
}

/// Inputs large enough that a merge takes a while: `n` entries of 500 probes each.
fn large_input(path: &Path, seed: u64, n: usize) {
    let p = 500;
    let mut opts = probelog::CreateOptions::new(p as u32);
    opts.probe_set = probelog::ProbeSetId::anonymous(p as u32);
    probelog::create(path, &opts).unwrap();
    let mut w = probelog::IndexWriter::open(path, probelog::LockWait::Fail).unwrap();
    let mut noise = Noise(seed);
    for m in 0..n / 50 {
        let logits: Vec<f32> = (0..p * 50).map(|_| noise.next()).collect();
        w.add_model(
            probelog::ModelInput {
                name: format!("s{seed}-m{m}"),
                source: String::new(),
                meta: vec![],
                labels: None,
                logits: probelog::LogitMatrix::new(&logits, p, 50).unwrap(),
            },
            probelog::AppendOptions::default(),
        )
        .unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn a_killed_merge_leaves_no_output_or_a_verifying_one() {
    let f = Fixture::new();
    let inputs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = f.path(&format!("big{i}.plog"));
            large_input(&p, i + 1, 3000);
            p
        })
        .collect();
    let out = f.path("out.plog");
    let mut args = vec![
        "merge".to_string(),
        s(&out).to_string(),
        "--no-graph".to_string(),
    ];
    args.extend(inputs.iter().map(|p| s(p).to_string()));
    // How long one merge takes here, so that the kills spread over all of it.
    let start = std::time::Instant::now();
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let full = start.elapsed().as_millis() as u64 + 1;
    fs::remove_file(&out).unwrap();
    let (mut completed, mut interrupted_with_temp) = (0, 0);
    // Kills the merge `kill_when` says, then checks what it left: OUT verifies if it is there.
    let mut kill_merge = |kill_when: &dyn Fn(&mut std::process::Child)| {
        let mut child = tool()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        kill_when(&mut child);
        let _ = child.kill();
        child.wait().unwrap();
        if out.exists() {
            let v = run(&["verify", s(&out)]);
            assert!(v.status.success(), "a killed merge left {}", stderr(&v));
            completed += 1;
            fs::remove_file(&out).unwrap();
        } else {
            interrupted_with_temp += usize::from(!hidden_files(f.dir.path()).is_empty());
        }
    };
    for round in 0..24u64 {
        kill_merge(&|_| std::thread::sleep(Duration::from_millis(full * round / 12)));
    }
    // Kills timed by the clock may all miss the moment the temporary file exists on a loaded
    // machine: these wait for a new temporary file to appear, then kill at once.
    for _ in 0..10 {
        let before = hidden_files(f.dir.path());
        kill_merge(&|child| {
            while child.try_wait().unwrap().is_none()
                && hidden_files(f.dir.path())
                    .iter()
                    .all(|n| before.contains(n))
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        });
    }
    println!("{completed} completed ({full} ms each), {interrupted_with_temp} killed left a file");
    assert!(
        interrupted_with_temp > 0,
        "no merge was killed while writing its file"
    );
    assert!(completed < 24, "no merge was killed before it completed");
    // The next merge removes what killed ones left, and completes.
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok(&["verify", s(&out)]).contains(": OK"));
    assert!(
        hidden_files(f.dir.path()).is_empty(),
        "{:?} ({completed} completed)",
        hidden_files(f.dir.path())
    );
}

/// (model, logit, label, score) of each hit of a `--json` search.
fn hits(args: &[&str]) -> Vec<(String, u64, String, f64)> {
    results(args)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().to_string(),
                r["logit"].as_u64().unwrap(),
                r["label"].as_str().unwrap().to_string(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn search_over_several_files_equals_search_over_their_merge() {
    let f = Fixture::new();
    let files = model_files(&f);
    let shards: Vec<PathBuf> = (0..3)
        .map(|s| new_index(&f, &format!("s{s}.plog"), &files[s * 3..s * 3 + 3], s * 3))
        .collect();
    let out = f.path("merged.plog");
    ok(&[
        "merge",
        s(&out),
        s(&shards[0]),
        s(&shards[1]),
        s(&shards[2]),
    ]);
    let many: Vec<&str> = shards.iter().map(|p| s(p)).collect();
    // Each shard holds 9 entries: entry e of shard i is entry 9 i + e of the merge.
    for (i, shard) in shards.iter().enumerate() {
        for e in [0, 4, 8] {
            let entry = e.to_string();
            let merged_entry = (9 * i + e).to_string();
            for extra in [
                &[][..],
                &["--per-model"],
                &["--exclude-same-model", "--top", "30"],
            ] {
                let a = hits(
                    &[
                        &["search"][..],
                        &many,
                        &["--entry", &entry, "--entry-file", s(shard)],
                        extra,
                    ]
                    .concat(),
                );
                let b = hits(&[&["search", s(&out), "--entry", &merged_entry][..], extra].concat());
                assert_eq!(a, b, "shard {i} entry {e} {extra:?}");
            }
        }
    }
    let report = ok_json(
        &[
            &["search"][..],
            &many,
            &[
                "--entry",
                "2",
                "--entry-file",
                s(&shards[1]),
                "--metric",
                "topk",
            ],
        ]
        .concat(),
    );
    assert_eq!(report["query_file"], s(&shards[1]));
    assert_eq!(report["files"].as_array().unwrap().len(), 3);
    assert_eq!(report["files"][0]["mode"], "exact");
    for r in report["results"].as_array().unwrap() {
        let file = r["file"].as_str().unwrap();
        assert!(many.contains(&file), "{file}");
    }
    // A single file keeps its output: no file fields.
    let single = ok_json(&["search", s(&shards[0]), "--entry", "0"]);
    assert!(single.get("files").is_none() && single["results"][0].get("file").is_none());
    let table = ok(&[&["search"][..], &many, &["--entry", "0"]].concat());
    assert!(
        table.contains("3 indexes searched as one") && table.contains("file"),
        "{table}"
    );
    // Files of another probe set are refused by name; so is an --entry-file not searched.
    let other = f.path("other.plog");
    ok(&["create", s(&other), "--num-probes", &(P + 1).to_string()]);
    let line = fails(&["search", s(&shards[0]), s(&other), "--entry", "0"]);
    assert!(
        line.contains(s(&other)) && line.contains("probe set"),
        "{line}"
    );
    let line = fails(
        &[
            &["search"][..],
            &many,
            &["--entry", "0", "--entry-file", s(&out)],
        ]
        .concat(),
    );
    assert!(line.contains("not one of the indexes"), "{line}");
    let line = fails(&[&["search"][..], &many, &["--entry", "0", "--explain", "3"]].concat());
    assert!(line.contains("--explain takes one index"), "{line}");
}
