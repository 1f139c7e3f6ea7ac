//! `probes embed` and `search --text`: CLIP-style image and text encoders run through libtorch.
//! The encoders are tiny TorchScript modules traced here with tch, the tokenizer is a WordLevel
//! tokenizer.json written here, and the probes are PNGs drawn here. Stored embeddings are
//! checked against an independent run of the image encoder, and text searches against logits
//! built to follow the text's direction over the probes.
#![cfg(feature = "torch")]

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use image::{Rgb, RgbImage};
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use probelog::Index;
use serde_json::Value;
use tch::{CModule, Device, Kind, Tensor};
use tempfile::TempDir;

/// Probes, their side, and the embedding dimension.
const P: usize = 12;
const S: u32 = 8;
const D: i64 = 4;
/// The context length the tests use (the tool's default, CLIP's).
const T: usize = 77;

const VOCAB: [&str; 10] = [
    "[PAD]", "[CLS]", "[SEP]", "[UNK]", "a", "photo", "of", "dog", "cat", "car",
];

/// A WordLevel tokenizer.json over [`VOCAB`] (tests/data/word-level-tokenizer.json, shared with
/// the tool's unit tests): lower-cased, split on whitespace, `[CLS] ... [SEP]`, unknown words as
/// `[UNK]`, no padding section (so the tool pads with id 0).
fn tokenizer_json() -> String {
    let text = include_str!("data/word-level-tokenizer.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    for (id, word) in VOCAB.iter().enumerate() {
        assert_eq!(
            doc["model"]["vocab"][word], id,
            "the tokenizer file's vocabulary is VOCAB"
        );
    }
    text.to_string()
}

/// The ids the tokenizer gives `text`, padded with 0 to T, and the mask.
fn token_ids(text: &str) -> (Vec<i64>, Vec<i64>) {
    let mut ids = vec![1i64];
    for w in text.split_whitespace() {
        let w = w.to_lowercase();
        ids.push(VOCAB.iter().position(|v| *v == w).unwrap_or(3) as i64);
    }
    ids.push(2);
    let mask: Vec<i64> = (0..T).map(|i| i64::from(i < ids.len())).collect();
    ids.resize(T, 0);
    (ids, mask)
}

/// Image encoders.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Image {
    /// Spatial mean of the channels -> linear 3 -> D, plus a per-channel square term: `[N, D]`.
    Good,
    /// `Good` flattened to one dimension.
    OneD,
    /// `Good` plus NaN.
    NaN,
}

fn make_image_encoder(path: &Path, kind: Image) {
    tch::manual_seed(7);
    let w = Tensor::randn([3, D], (Kind::Float, Device::Cpu));
    let v = Tensor::randn([3, D], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([D], (Kind::Float, Device::Cpu));
    let example = Tensor::rand([2, 3, S as i64, S as i64], (Kind::Float, Device::Cpu));
    let module = CModule::create_by_tracing("ImageEncoder", "forward", &[example], &mut |xs| {
        let m = xs[0].mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        let out = m.matmul(&w) + (&m * &m).matmul(&v) + &b;
        vec![match kind {
            Image::Good => out,
            Image::OneD => out.flatten(0, -1),
            Image::NaN => out + f64::NAN,
        }]
    })
    .unwrap();
    module.save(path).unwrap();
}

/// Text encoders.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Text {
    /// Embedding lookup (id 0 maps to zeros) -> mean over the T positions: `[N, D]`.
    Mean,
    /// Ids and mask: the mean over the unmasked positions.
    Masked,
    /// `Mean` with a middle dimension: `[N, 1, D]`.
    ThreeD,
    /// `Mean` with D + 1 dimensions.
    WrongDim,
}

/// The embedding table of the text encoders: `[vocab, dim]`, row 0 (padding) zero.
fn text_table(dim: i64) -> Tensor {
    tch::manual_seed(11);
    let t = Tensor::randn([VOCAB.len() as i64, dim], (Kind::Float, Device::Cpu));
    let _ = t.narrow(0, 0, 1).zero_();
    t
}

fn make_text_encoder(path: &Path, kind: Text) {
    let table = text_table(if kind == Text::WrongDim { D + 1 } else { D });
    let ids = Tensor::from_slice(&token_ids("a photo of a dog").0).view([1, T as i64]);
    let mask = Tensor::from_slice(&token_ids("a photo of a dog").1).view([1, T as i64]);
    let inputs = if kind == Text::Masked {
        vec![ids, mask]
    } else {
        vec![ids]
    };
    let module = CModule::create_by_tracing("TextEncoder", "forward", &inputs, &mut |xs| {
        let e = Tensor::embedding(&table, &xs[0], -1, false, false);
        vec![match kind {
            Text::Mean | Text::WrongDim => e.mean_dim(1, false, Kind::Float),
            Text::ThreeD => e.mean_dim(1, true, Kind::Float),
            Text::Masked => {
                let m = xs[1].to_kind(Kind::Float).unsqueeze(-1);
                (e * &m).sum_dim_intlist(1, false, Kind::Float)
                    / m.sum_dim_intlist(1, false, Kind::Float)
            }
        }]
    })
    .unwrap();
    module.save(path).unwrap();
}

/// An independent run of a text encoder on `text`.
fn text_embedding(model: &Path, text: &str, masked: bool) -> Vec<f32> {
    let (ids, mask) = token_ids(text);
    let ids = Tensor::from_slice(&ids).view([1, T as i64]);
    let mask = Tensor::from_slice(&mask).view([1, T as i64]);
    let module = CModule::load(model).unwrap();
    let out = if masked {
        module.forward_ts(&[ids, mask])
    } else {
        module.forward_ts(&[ids])
    };
    Vec::<f32>::try_from(&out.unwrap().flatten(0, -1)).unwrap()
}

/// An 8x8 probe image: a per-probe gradient and colour.
fn probe_image(i: usize, salt: u32) -> RgbImage {
    RgbImage::from_fn(S, S, |x, y| {
        let i = i as u32 + salt;
        Rgb([
            ((x * 29 + i * 37) % 256) as u8,
            ((y * 31 + i * 53) % 256) as u8,
            ((x * y * 7 + i * 91) % 256) as u8,
        ])
    })
}

/// The probes as the tool feeds them: float32 `[P, 3, S, S]` in [0, 1], then `(x - mean) / std`.
fn probe_batch(mean: [f32; 3], std: [f32; 3]) -> Tensor {
    let mut pixels = Vec::new();
    for i in 0..P {
        let img = probe_image(i, 0);
        for c in 0..3 {
            pixels.extend(img.pixels().map(|px| f32::from(px.0[c]) / 255.0));
        }
    }
    let x = Tensor::from_slice(&pixels).view([P as i64, 3, S as i64, S as i64]);
    (x - Tensor::from_slice(&mean).view([1, 3, 1, 1])) / Tensor::from_slice(&std).view([1, 3, 1, 1])
}

fn write_npy(path: &Path, data: &[f32], rows: usize, cols: usize) {
    let a = Array2::from_shape_vec((rows, cols), data.to_vec()).unwrap();
    a.write_npy(fs::File::create(path).unwrap()).unwrap();
}

struct Fixture {
    dir: TempDir,
}

impl Fixture {
    /// PNG probes, a probe set, an index created with it, the tokenizer and the encoders.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        for (sub, salt) in [("images", 0), ("other", 5)] {
            let images = f.path(sub);
            fs::create_dir(&images).unwrap();
            for i in 0..P {
                probe_image(i, salt)
                    .save(images.join(format!("img{i:02}.png")))
                    .unwrap();
            }
            let out = f.path(&format!("{sub}.pset"));
            ok(&probes_build(&images, &out, &["--size", "8"]));
        }
        ok(&["create", &f.idx(), "--probes", s(&f.path("images.pset"))]);
        fs::write(f.path("tokenizer.json"), tokenizer_json()).unwrap();
        make_image_encoder(&f.path("image.pt"), Image::Good);
        make_text_encoder(&f.path("text.pt"), Text::Mean);
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        s(&self.path(name)).to_string()
    }

    fn idx(&self) -> String {
        self.p("hub.plog")
    }

    fn info(&self) -> Value {
        serde_json::from_str(&ok(&["info", &self.idx(), "--json"])).unwrap()
    }

    /// `probes embed` into the fixture's index on the CPU with the image encoder `encoder` and
    /// the probe set `pset` (files of the fixture), then `extra`.
    fn embed_args(&self, encoder: &str, pset: &str, extra: &[&str]) -> Vec<String> {
        let (idx, encoder, pset) = (self.idx(), self.p(encoder), self.p(pset));
        let fixed = [
            "probes",
            "embed",
            &idx,
            "--clip-image",
            &encoder,
            "--probes",
            &pset,
            "--device",
            "cpu",
        ];
        owned_args(&fixed, extra)
    }

    /// `probes embed` with the fixture's image encoder and probe set, then `extra`.
    fn embed(&self, extra: &[&str]) -> Output {
        run(&as_strs(&self.embed_args("image.pt", "images.pset", extra)))
    }

    /// `probes embed` with `encoder` and `pset`, which must fail; returns the error line.
    fn embed_fails(&self, encoder: &str, pset: &str) -> String {
        fails(&as_strs(&self.embed_args(encoder, pset, &[])))
    }

    /// `search --text TEXT --json` with the fixture's tokenizer and `encoder`.
    fn search_args(&self, text: &str, encoder: &str, extra: &[&str]) -> Vec<String> {
        let (idx, encoder, tokenizer) = (self.idx(), self.p(encoder), self.p("tokenizer.json"));
        let fixed = [
            "search",
            &idx,
            "--text",
            text,
            "--clip-text",
            &encoder,
            "--tokenizer",
            &tokenizer,
            "--device",
            "cpu",
        ];
        owned_args(&fixed, extra)
    }

    fn search(&self, text: &str, encoder: &str, extra: &[&str]) -> Value {
        let mut args = self.search_args(text, encoder, extra);
        args.push("--json".into());
        serde_json::from_str(&ok(&as_strs(&args))).unwrap()
    }

    fn search_fails(&self, text: &str, encoder: &str, extra: &[&str]) -> String {
        fails(&as_strs(&self.search_args(text, encoder, extra)))
    }

    /// The index is at `before`'s commit, and verifies.
    fn unchanged(&self, before: &Value) {
        let after = self.info();
        assert_eq!(after["sequence"], before["sequence"]);
        assert_eq!(after["entry_count"], before["entry_count"]);
        assert_eq!(after["probe_embedding_dim"], before["probe_embedding_dim"]);
        ok(&["verify", &self.idx()]);
    }
}

/// `fixed`, then `extra`, as owned arguments.
fn owned_args(fixed: &[&str], extra: &[&str]) -> Vec<String> {
    fixed.iter().chain(extra).map(|a| a.to_string()).collect()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The stored probe embeddings: `[P, d]` rows.
fn stored_embeddings(index: &str) -> Vec<Vec<f32>> {
    let index = Index::open(Path::new(index)).unwrap();
    let (values, dim) = index.probe_embeddings().unwrap().expect("embeddings");
    values.chunks_exact(dim).map(<[f32]>::to_vec).collect()
}

/// The image encoder's output on the probes, each row at unit length (f64).
fn expected_embeddings(model: &Path, input: &Tensor) -> Vec<Vec<f64>> {
    let module = CModule::load(model).unwrap();
    let out = tch::no_grad(|| module.forward_ts(&[input])).unwrap();
    let out: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&out).unwrap();
    assert_eq!(out.len(), P);
    out.iter()
        .map(|r| {
            let norm = r.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            r.iter().map(|&x| f64::from(x) / norm).collect()
        })
        .collect()
}

fn assert_rows_close(got: &[Vec<f32>], want: &[Vec<f64>]) {
    assert_eq!(got.len(), want.len());
    for (p, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len());
        for (j, (g, w)) in g.iter().zip(w).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() < 1e-5,
                "probe {p}, dimension {j}: stored {g}, expected {w}"
            );
        }
    }
}

// CLIP's constants, as written in the README (more digits than f32 holds).
#[allow(clippy::excessive_precision)]
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

#[test]
fn embed_stores_unit_rows_of_the_encoder_output() {
    let f = Fixture::new();
    let before = f.info();
    assert!(before["probe_embedding_dim"].is_null());
    let out = f.embed(&["--batch", "5", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("images/s"), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["probes"], P);
    assert_eq!(summary["dim"], D);
    assert_eq!(summary["replaced"], false);
    assert_eq!(summary["device"], "cpu");
    let info = f.info();
    assert_eq!(info["probe_embedding_dim"], D);
    assert_eq!(
        info["sequence"].as_u64().unwrap(),
        before["sequence"].as_u64().unwrap() + 1
    );
    let want = expected_embeddings(&f.path("image.pt"), &probe_batch([0.0; 3], [1.0; 3]));
    assert_rows_close(&stored_embeddings(&f.idx()), &want);
    ok(&["verify", &f.idx()]);

    // Again with CLIP's normalization: the embeddings are replaced.
    let out = f.embed(&[
        "--mean",
        "0.48145466,0.4578275,0.40821073",
        "--std",
        "0.26862954,0.26130258,0.27577711",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.starts_with("replaced the probe embeddings of "),
        "{line}"
    );
    let want = expected_embeddings(&f.path("image.pt"), &probe_batch(CLIP_MEAN, CLIP_STD));
    assert_rows_close(&stored_embeddings(&f.idx()), &want);
    ok(&["verify", &f.idx()]);
}

#[test]
fn embed_refusals_leave_the_index_unchanged() {
    let f = Fixture::new();
    let before = f.info();
    let e = f.embed_fails("image.pt", "other.pset");
    assert!(e.contains("is not the one"), "{e}");
    f.unchanged(&before);

    for (name, kind, want) in [
        ("one-d.pt", Image::OneD, "must return [N, d] embeddings"),
        ("nan.pt", Image::NaN, "returned NaN for dimension"),
    ] {
        make_image_encoder(&f.path(name), kind);
        let e = f.embed_fails(name, "images.pset");
        assert!(e.contains(want), "{e}");
        assert!(e.contains(name), "{e}");
        f.unchanged(&before);
    }
    fs::write(f.path("corrupt.pt"), b"not a model").unwrap();
    let e = f.embed_fails("corrupt.pt", "images.pset");
    assert!(e.contains("cannot load TorchScript module"), "{e}");
    f.unchanged(&before);
}

/// Deterministic noise in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Each probe's similarity to `text` (stored unit rows dot the text embedding).
fn similarities(rows: &[Vec<f32>], text: &[f32]) -> Vec<f32> {
    rows.iter()
        .map(|r| r.iter().zip(text).map(|(a, b)| a * b).sum())
        .collect()
}

/// Appends a model whose logits are `columns` (each `[P]`).
fn append_model(f: &Fixture, name: &str, columns: &[Vec<f32>]) {
    let mut data = Vec::new();
    for p in 0..P {
        data.extend(columns.iter().map(|c| c[p]));
    }
    let npy = f.path(&format!("{name}.npy"));
    write_npy(&npy, &data, P, columns.len());
    ok(&["append", &f.idx(), "--logits", s(&npy), "--name", name]);
}

#[test]
fn text_search_finds_the_logit_that_follows_the_text() {
    let f = Fixture::new();
    assert!(f.embed(&[]).status.success());
    let rows = stored_embeddings(&f.idx());
    let text = f.path("text.pt");
    let dog = similarities(&rows, &text_embedding(&text, "a photo of a dog", false));
    let cat = similarities(&rows, &text_embedding(&text, "a photo of a cat", false));
    // Entries: dogs 0..3 (the dog logit is 1), cats 3..5 (the cat logit is 3), noise 5..8.
    append_model(&f, "dogs", &[noise(P, 1), dog.clone(), noise(P, 2)]);
    append_model(&f, "cats", &[cat.clone(), noise(P, 3)]);
    append_model(&f, "noise", &[noise(P, 4), noise(P, 5), noise(P, 6)]);

    let r = f.search("a photo of a dog", "text.pt", &[]);
    assert_eq!(r["query"]["text"], "a photo of a dog");
    assert_eq!(r["query"]["kind"], "text");
    assert_eq!(r["query"]["dim"], D);
    assert_eq!(r["query"]["tokens"], 7);
    assert_eq!(r["query"]["attention_mask"], false);
    assert_eq!(r["results"][0]["entry"], 1, "{r}");
    assert_eq!(r["results"][0]["model"], "dogs");
    assert!(
        r["results"][0]["score"].as_f64().unwrap().abs() < 1e-3,
        "{r}"
    );

    let r = f.search("A PHOTO OF A CAT", "text.pt", &["--top", "3", "--k", "6"]);
    assert_eq!(r["results"][0]["entry"], 3, "{r}");
    assert_eq!(r["results"].as_array().unwrap().len(), 3);
    let r = f.search(
        "a photo of a cat",
        "text.pt",
        &["--per-model", "--metric", "full"],
    );
    assert_eq!(r["results"][0]["model"], "cats", "{r}");

    // The same ranking through an encoder that takes the attention mask (found automatically):
    // its masked mean has the same direction as the plain mean over T positions.
    make_text_encoder(&f.path("masked.pt"), Text::Masked);
    let r = f.search("a photo of a dog", "masked.pt", &[]);
    assert_eq!(r["query"]["attention_mask"], true);
    assert_eq!(r["results"][0]["entry"], 1, "{r}");
    let r = f.search(
        "a photo of a dog",
        "masked.pt",
        &["--attention-mask", "always"],
    );
    assert_eq!(r["results"][0]["entry"], 1, "{r}");
    let e = f.search_fails(
        "a photo of a dog",
        "masked.pt",
        &["--attention-mask", "never"],
    );
    assert!(e.contains("the text encoder failed on token ids"), "{e}");

    // The human-readable output names the text.
    let args = f.search_args("a photo of a dog", "text.pt", &["--top", "2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(&args);
    assert!(
        out.starts_with("query: text \"a photo of a dog\" (7 tokens, dim 4)"),
        "{out}"
    );
}

#[test]
fn text_search_errors_are_one_clear_line() {
    let f = Fixture::new();
    // No probe embeddings yet.
    let e = f.search_fails("a dog", "text.pt", &[]);
    assert!(e.contains("this index has no probe embeddings"), "{e}");
    assert!(e.contains("probes embed"), "{e}");

    assert!(f.embed(&[]).status.success());
    append_model(&f, "m", &[noise(P, 1), noise(P, 2)]);
    let before = f.info();

    let args = |tok: &str| {
        vec![
            "search".to_string(),
            f.idx(),
            "--text".into(),
            "a dog".into(),
            "--clip-text".into(),
            f.p("text.pt"),
            "--tokenizer".into(),
            tok.to_string(),
            "--device".into(),
            "cpu".into(),
        ]
    };
    let missing = f.p("missing.json");
    let a = args(&missing);
    let e = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        e.contains("--tokenizer") && e.contains("missing.json") && e.contains("No such file"),
        "{e}"
    );
    fs::write(f.path("corrupt.json"), "{\"model\": [1, 2").unwrap();
    let a = args(&f.p("corrupt.json"));
    let e = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("not a Hugging Face tokenizer.json"), "{e}");

    make_text_encoder(&f.path("three-d.pt"), Text::ThreeD);
    let e = f.search_fails("a dog", "three-d.pt", &[]);
    assert!(e.contains("returned shape [1, 1, 4]"), "{e}");
    assert!(e.contains("three-d.pt"), "{e}");

    make_text_encoder(&f.path("wrong-dim.pt"), Text::WrongDim);
    let e = f.search_fails("a dog", "wrong-dim.pt", &[]);
    assert!(
        e.contains("returned 5 dimensions, but the probe embeddings"),
        "{e}"
    );
    assert!(e.contains("have 4"), "{e}");

    fs::write(f.path("corrupt.pt"), b"not a model").unwrap();
    let e = f.search_fails("a dog", "corrupt.pt", &[]);
    assert!(e.contains("cannot load TorchScript module"), "{e}");
    let e = f.search_fails("a dog", "none.pt", &[]);
    assert!(
        e.contains("none.pt") && e.to_lowercase().contains("no such file"),
        "{e}"
    );

    // --text without its encoder is a usage error.
    let out = run(&["search", &f.idx(), "--text", "a dog"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    f.unchanged(&before);
}
