//! `append --model`: TorchScript classifiers run through libtorch. The models are made here with
//! tch (traced small nets), the probes are PNGs drawn here, and every stored descriptor is
//! checked against an independent run of the same module, z-normalized in f64.
#![cfg(feature = "torch")]

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use probelog::Index;
use serde_json::Value;
use tch::nn::{self, Module};
use tch::{CModule, Device, Kind, Tensor};
use tempfile::TempDir;

/// Probes, and their side.
const P: usize = 12;
const S: u32 = 8;
/// Logits of the test models.
const L: i64 = 5;

/// What the test models compute.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Net {
    /// conv 3x3 -> relu -> spatial mean -> linear: any input size, `[N, L]`.
    Conv,
    /// flatten -> linear: only inputs of the traced size.
    Flat,
    /// `Conv`'s logits flattened to one dimension.
    OneD,
    /// `Conv`'s logits with an extra middle dimension.
    ThreeD,
    /// `Conv`'s logits plus NaN.
    NaN,
}

/// Traces `net` (seeded weights, input side `size`) and saves it as TorchScript.
fn make_model(path: &Path, net: Net, seed: i64, size: i64) {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let conv = nn::conv2d(
        &root / "conv",
        3,
        4,
        3,
        nn::ConvConfig {
            padding: 1,
            ..Default::default()
        },
    );
    let head = nn::linear(&root / "head", 4, L, Default::default());
    let flat = nn::linear(&root / "flat", 3 * size * size, L, Default::default());
    vs.freeze();
    let conv_logits = move |x: &Tensor| {
        head.forward(
            &conv
                .forward(x)
                .relu()
                .mean_dim([2i64, 3].as_slice(), false, Kind::Float),
        )
    };
    let example = Tensor::rand([2, 3, size, size], (Kind::Float, Device::Cpu));
    let module = CModule::create_by_tracing("Net", "forward", &[example], &mut |xs| {
        let x = &xs[0];
        vec![match net {
            Net::Conv => conv_logits(x),
            Net::Flat => flat.forward(&x.flatten(1, -1)),
            Net::OneD => conv_logits(x).flatten(0, -1),
            Net::ThreeD => conv_logits(x).unsqueeze(1),
            Net::NaN => conv_logits(x) + f64::NAN,
        }]
    })
    .unwrap();
    module.save(path).unwrap();
}

/// An 8x8 probe image: a per-probe gradient and colour, so that logits differ between probes.
fn probe_image(i: usize) -> RgbImage {
    RgbImage::from_fn(S, S, |x, y| {
        let i = i as u32;
        Rgb([
            ((x * 29 + i * 37) % 256) as u8,
            ((y * 31 + i * 53) % 256) as u8,
            ((x * y * 7 + i * 91) % 256) as u8,
        ])
    })
}

struct Fixture {
    dir: TempDir,
    /// The index and the probe set, as command-line arguments.
    idx: String,
    pset: String,
}

impl Fixture {
    /// PNG probes, a probe set built from them, and an index created with it.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        fs::create_dir(&images).unwrap();
        for i in 0..P {
            probe_image(i)
                .save(images.join(format!("img{i:02}.png")))
                .unwrap();
        }
        let idx = s(&dir.path().join("hub.plog")).to_string();
        let pset = s(&dir.path().join("probes.pset")).to_string();
        ok(&probes_build(&images, Path::new(&pset), &["--size", "8"]));
        ok(&["create", &idx, "--probes", &pset]);
        Fixture { dir, idx, pset }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn idx(&self) -> &str {
        &self.idx
    }

    fn pset(&self) -> &str {
        &self.pset
    }

    fn model(&self, name: &str, net: Net, seed: i64, size: i64) -> String {
        let path = self.path(name);
        make_model(&path, net, seed, size);
        s(&path).to_string()
    }

    /// `append` into the fixture's index with its probe set, on `device`, plus `args`.
    fn append_on<'a>(&'a self, device: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut argv = vec!["append", self.idx.as_str(), "--probes", self.pset.as_str()];
        argv.extend(["--device", device]);
        argv.extend_from_slice(args);
        argv
    }

    /// `append` into the fixture's index with its probe set, on the CPU, plus `args`.
    fn append_cpu<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        self.append_on("cpu", args)
    }

    /// Writes `models.toml`, a manifest, in the fixture's folder; returns its path.
    fn manifest(&self, text: &str) -> PathBuf {
        let path = self.path("models.toml");
        fs::write(&path, text).unwrap();
        path
    }

    fn info(&self) -> Value {
        serde_json::from_str(&ok(&["info", &self.idx(), "--json"])).unwrap()
    }

    /// The index is as `before`, and verifies.
    fn unchanged(&self, before: &Value) {
        let after = self.info();
        assert_eq!(after["sequence"], before["sequence"]);
        assert_eq!(after["entry_count"], before["entry_count"]);
        ok(&["verify", &self.idx()]);
    }
}

/// The probes as the tool feeds them: float32 `[P, 3, size, size]` in [0, 1], resized with the
/// same bilinear filter when `size` is not the stored 8, then `(x - mean) / std`.
fn probe_batch(size: u32, mean: [f32; 3], std: [f32; 3]) -> Tensor {
    let mut pixels = Vec::new();
    for i in 0..P {
        let img = probe_image(i);
        let img = if size == S {
            img
        } else {
            image::imageops::resize(&img, size, size, image::imageops::FilterType::Triangle)
        };
        for c in 0..3 {
            pixels.extend(img.pixels().map(|px| f32::from(px.0[c]) / 255.0));
        }
    }
    let s = i64::from(size);
    let x = Tensor::from_slice(&pixels).view([P as i64, 3, s, s]);
    (x - Tensor::from_slice(&mean).view([1, 3, 1, 1])) / Tensor::from_slice(&std).view([1, 3, 1, 1])
}

/// Runs the saved module on `input` and z-normalizes each logit over the probes in f64:
/// descriptors, one `Vec` per logit.
fn expected_descriptors(model: &str, input: &Tensor) -> Vec<Vec<f64>> {
    let module = CModule::load(model).unwrap();
    let out = tch::no_grad(|| module.forward_ts(&[input])).unwrap();
    let out: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&out).unwrap();
    assert_eq!(out.len(), P);
    (0..out[0].len())
        .map(|j| {
            let col: Vec<f64> = out.iter().map(|r| f64::from(r[j])).collect();
            let mean = col.iter().sum::<f64>() / P as f64;
            let std = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / P as f64).sqrt();
            assert!(std > 1e-6, "test model has a constant logit");
            col.iter().map(|v| (v - mean) / std).collect()
        })
        .collect()
}

/// The descriptors of `model_id` in the index equal `expected` within 1e-4.
fn assert_stored(index: &str, model_id: u64, expected: &[Vec<f64>]) {
    let index = Index::open(Path::new(index)).unwrap();
    let model = index.model(model_id).unwrap();
    assert_eq!(model.logit_count as usize, expected.len());
    for (j, want) in expected.iter().enumerate() {
        let got = index.descriptor(model.first_entry + j as u64).unwrap();
        assert_eq!(got.len(), P);
        for (p, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() < 1e-4,
                "model {model_id}, logit {j}, probe {p}: stored {g}, expected {w}"
            );
        }
    }
}

const NO_MEAN: [f32; 3] = [0.0; 3];
const NO_STD: [f32; 3] = [1.0; 3];

#[test]
fn stored_descriptors_match_an_independent_run() {
    let f = Fixture::new();
    let model = f.model("tiny-conv.pt", Net::Conv, 1, 8);
    let out = run(&f.append_cpu(&["--model", &model, "--batch", "5", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["models"][0]["name"], "tiny-conv"); // the file stem
    assert_eq!(summary["models"][0]["logits"], L);
    assert!(stderr(&out).contains("images/s"), "{}", stderr(&out));
    let expected = expected_descriptors(&model, &probe_batch(S, NO_MEAN, NO_STD));
    assert_stored(&f.idx(), 0, &expected);
    ok(&["verify", &f.idx()]);
}

#[test]
fn mean_std_and_input_size_are_applied() {
    let f = Fixture::new();
    let mean = [0.485f32, 0.456, 0.406];
    let std = [0.229f32, 0.224, 0.225];
    let conv = f.model("conv.pt", Net::Conv, 2, 8);
    ok(&f.append_cpu(&[
        "--model",
        &conv,
        "--name",
        "normalized",
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
    ]));
    assert_stored(
        &f.idx(),
        0,
        &expected_descriptors(&conv, &probe_batch(S, mean, std)),
    );

    // A model that only takes 12x12 inputs: the probes are resized to it.
    let flat = f.model("flat12.pt", Net::Flat, 3, 12);
    ok(&f.append_cpu(&["--model", &flat, "--input-size", "12", "--batch", "4"]));
    assert_stored(
        &f.idx(),
        1,
        &expected_descriptors(&flat, &probe_batch(12, NO_MEAN, NO_STD)),
    );
}

#[test]
fn manifest_models_commit_together() {
    let f = Fixture::new();
    f.model("a.pt", Net::Conv, 4, 8);
    f.model("b.pt", Net::Flat, 5, 12);
    let manifest = f.manifest(
        "[[model]]\nmodel = \"a.pt\"\nbatch = 3\n\n\
         [[model]]\nmodel = \"b.pt\"\nname = \"bee\"\ninput_size = 12\nmeta = { arch = \"flat\" }\n",
    );
    let before = f.info();
    ok(&f.append_cpu(&["--manifest", s(&manifest)]));
    let after = f.info();
    assert_eq!(
        after["sequence"].as_u64(),
        before["sequence"].as_u64().map(|n| n + 1)
    );
    assert_eq!(after["model_count"], 2);
    let a = f.path("a.pt");
    let b = f.path("b.pt");
    assert_stored(
        &f.idx(),
        0,
        &expected_descriptors(s(&a), &probe_batch(S, NO_MEAN, NO_STD)),
    );
    assert_stored(
        &f.idx(),
        1,
        &expected_descriptors(s(&b), &probe_batch(12, NO_MEAN, NO_STD)),
    );
    let index = Index::open(&f.path("hub.plog")).unwrap();
    assert_eq!(index.model(1).unwrap().name, "bee");
}

#[test]
fn bad_models_are_refused_and_the_index_is_unchanged() {
    let f = Fixture::new();
    let good = f.model("good.pt", Net::Conv, 6, 8);
    ok(&f.append_cpu(&["--model", &good]));
    let before = f.info();
    let (idx, pset) = (f.idx(), f.pset());
    let append = |model: &str, extra: &[&str]| {
        let mut args = vec![
            "append", &idx, "--model", model, "--probes", &pset, "--device", "cpu",
        ];
        args.extend_from_slice(extra);
        let e = fails(&args);
        f.unchanged(&before);
        e
    };

    // Wrong input size: a flatten-linear model traced at 12x12 gets 8x8 probes.
    let flat = f.model("flat12.pt", Net::Flat, 7, 12);
    let e = append(&flat, &[]);
    assert!(
        e.contains("flat12") && e.contains("failed on probes") && e.contains("[12, 3, 8, 8]"),
        "{e}"
    );

    let one_d = f.model("oned.pt", Net::OneD, 8, 8);
    let e = append(&one_d, &[]);
    assert!(
        e.contains("oned") && e.contains("shape [60]") && e.contains("[N, L]"),
        "{e}"
    );
    let three_d = f.model("threed.pt", Net::ThreeD, 9, 8);
    let e = append(&three_d, &[]);
    assert!(e.contains("shape [12, 1, 5]"), "{e}");

    let nan = f.model("nan.pt", Net::NaN, 10, 8);
    let e = append(&nan, &[]);
    assert!(
        e.contains("nan") && e.contains("NaN") && e.contains("img00.png"),
        "{e}"
    );

    let corrupt = f.path("corrupt.pt");
    fs::write(&corrupt, b"this is not a TorchScript archive").unwrap();
    let e = append(s(&corrupt), &[]);
    assert!(
        e.contains("cannot load TorchScript module") && e.contains("corrupt.pt"),
        "{e}"
    );
    let e = append(s(&f.path("missing.pt")), &[]);
    assert!(
        e.contains("missing.pt") && e.to_lowercase().contains("no such file"),
        "{e}"
    );

    // Another probe set of the same size: the same images in reverse order.
    let images = f.path("images");
    let list = f.path("reversed.txt");
    let names: Vec<String> = (0..P).rev().map(|i| format!("img{i:02}.png")).collect();
    fs::write(&list, names.join("\n")).unwrap();
    let other = f.path("other.pset");
    ok(&probes_build(
        &images,
        &other,
        &["--size", "8", "--list", s(&list)],
    ));
    let e = fails(&[
        "append",
        &f.idx(),
        "--model",
        &good,
        "--probes",
        s(&other),
        "--device",
        "cpu",
    ]);
    assert!(e.contains("not the one") && e.contains("other.pset"), "{e}");
    f.unchanged(&before);
}

#[test]
fn a_manifest_is_all_or_nothing_unless_skip_failed() {
    let f = Fixture::new();
    f.model("good.pt", Net::Conv, 11, 8);
    f.model("nan.pt", Net::NaN, 12, 8);
    let manifest = f.manifest("[[model]]\nmodel = \"good.pt\"\n\n[[model]]\nmodel = \"nan.pt\"\n");
    let before = f.info();
    let e = fails(&f.append_cpu(&["--manifest", s(&manifest)]));
    assert!(
        e.contains("\"nan\"") && e.contains("nothing was committed"),
        "{e}"
    );
    f.unchanged(&before);

    let out = run(&f.append_cpu(&["--manifest", s(&manifest), "--skip-failed", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["models_added"], 1);
    assert_eq!(summary["skipped"][0]["name"], "nan");
    let err = stderr(&out);
    assert!(
        err.contains("error: skipped 1 of 2 models: \"nan\"") && err.contains("committed"),
        "{err}"
    );
    assert_eq!(f.info()["model_count"], 1);
    ok(&["verify", &f.idx()]);
}

#[test]
fn device_selection() {
    let f = Fixture::new();
    let model = f.model("m.pt", Net::Conv, 13, 8);
    let cuda = tch::Cuda::is_available();
    let out = run(&["append", &f.idx(), "--model", &model, "--probes", &f.pset()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let says_fallback =
        stderr(&out).contains("no CUDA device (or libtorch built without CUDA); using CPU");
    assert_eq!(says_fallback, !cuda, "{}", stderr(&out));
    if !cuda {
        let before = f.info();
        let e = fails(&f.append_on("cuda", &["--model", &model]));
        assert!(e.contains("--device cuda:0: no CUDA device"), "{e}");
        f.unchanged(&before);
    }
    let out = run(&f.append_on("tpu", &["--model", &model]));
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&out).contains("unknown device \"tpu\""),
        "{}",
        stderr(&out)
    );
    let e = fails(&["append", &f.idx(), "--model", &model]);
    assert!(e.contains("--probes"), "{e}");
}

/// Pearson correlation of two equally long vectors.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn probe_fraction_runs_each_model_on_its_own_subset() {
    let f = Fixture::new();
    f.model("a.pt", Net::Conv, 7, 8);
    f.model("b.pt", Net::Conv, 8, 8);
    let manifest = f.manifest("[[model]]\nmodel = \"a.pt\"\n\n[[model]]\nmodel = \"b.pt\"\n");
    // Share 0: one random round; 0.75: a random round of 2 probes, then 4 chosen ones.
    for share in ["0", "0.75"] {
        let index_path = f.path(&format!("share-{share}.plog"));
        let out = run(&["create", s(&index_path), "--probes", &f.pset()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(&[
            "append",
            s(&index_path),
            "--manifest",
            s(&manifest),
            "--probes",
            &f.pset(),
            "--device",
            "cpu",
            "--probe-fraction",
            "0.5",
            "--seed",
            "4",
            "--rank",
            "3",
            "--adaptive-share",
            share,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        // Two models, each run on half of the 12 probes, over one round or two.
        assert!(
            stderr(&out).contains("probed 2 models on cpu: 12 images"),
            "{}",
            stderr(&out)
        );
        let index = Index::open(&index_path).unwrap();
        assert_eq!(index.probe_factors().unwrap().unwrap().0.rank, 3);
        for (id, name) in [(0u64, "a.pt"), (1, "b.pt")] {
            let observed = index
                .observed_probes(id)
                .unwrap()
                .expect("partially probed");
            if share == "0" {
                let want = probelog::collab::sample_probes(P, 0.5, 4 + id).unwrap();
                assert_eq!(observed, want);
            } else {
                assert_eq!(observed.len(), P / 2);
                let first = probelog::collab::sample_probe_count(P, 2, 4 + id);
                assert!(
                    first.iter().all(|q| observed.contains(q)),
                    "{first:?} {observed:?}"
                );
            }
            // On its observed probes a stored descriptor is an affine image of the model's
            // outputs: the rows of both rounds are where their probes are.
            let full = expected_descriptors(s(&f.path(name)), &probe_batch(S, NO_MEAN, NO_STD));
            let model = index.model(id).unwrap();
            for (j, logit) in full.iter().enumerate() {
                let stored = index.descriptor(model.first_entry + j as u64).unwrap();
                let got: Vec<f64> = observed
                    .iter()
                    .map(|&q| f64::from(stored[q as usize]))
                    .collect();
                let want: Vec<f64> = observed.iter().map(|&q| logit[q as usize]).collect();
                let r = correlation(&got, &want);
                assert!(
                    r > 0.9999,
                    "share {share}, model {id}, logit {j}: correlation {r}"
                );
            }
        }
        let out = run(&["verify", s(&index_path)]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}
