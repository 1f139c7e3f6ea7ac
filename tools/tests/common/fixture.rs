//! The index fixture of the command-line tests (`cli_*.rs`): an index of `P` probes, models
//! whose logits detect known concepts, `.npy` writers and the z-normalization the index applies.
#![allow(dead_code)] // each test binary uses its own subset

use std::fs;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use ndarray_npy::WriteNpyExt;
use serde_json::Value;
use tempfile::TempDir;

use super::{fails, ok, ok_json, s};

/// Probes of the test indexes.
pub const P: usize = 50;

/// A small deterministic noise source.
pub struct Noise(pub u64);

impl Noise {
    /// Uniform in [-0.5, 0.5).
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// Raw logits `[P, concepts.len()]`: concept `c` fires on the probes `p` with `p % 10 == c`.
pub fn concept_logits(concepts: &[usize], seed: u64) -> Vec<f32> {
    let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (scale, shift) = (1.0 + (seed % 3) as f32, seed as f32 - 2.0);
    let l = concepts.len();
    let mut v = vec![0f32; P * l];
    for p in 0..P {
        for (j, &c) in concepts.iter().enumerate() {
            let fired = if p % 10 == c { 3.0 } else { 0.0 };
            v[p * l + j] = (fired + 0.6 * noise.next()) * scale + shift;
        }
    }
    v
}

pub fn write_npy(path: &Path, data: &[f32], rows: usize, cols: usize) {
    let a = Array2::from_shape_vec((rows, cols), data.to_vec()).unwrap();
    a.write_npy(fs::File::create(path).unwrap()).unwrap();
}

pub fn write_npy_1d(path: &Path, data: &[f32]) {
    Array1::from_vec(data.to_vec())
        .write_npy(fs::File::create(path).unwrap())
        .unwrap();
}

/// Z-normalizes one column over the probes, as the index stores it.
pub fn znorm(v: &[f32]) -> Vec<f32> {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let std = (v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    v.iter()
        .map(|&x| ((f64::from(x) - mean) / std) as f32)
        .collect()
}

pub fn column(data: &[f32], cols: usize, j: usize) -> Vec<f32> {
    data.iter().skip(j).step_by(cols).copied().collect()
}

/// The concepts of the six models of [`Fixture::six_model_manifest`].
pub const SIX_MODELS: [&[usize]; 6] = [
    &[1, 2, 3],
    &[2, 4, 1],
    &[5, 1, 6],
    &[3, 7, 8],
    &[9, 0, 2],
    &[4, 6, 1],
];

pub struct Fixture {
    pub dir: TempDir,
    pub index: PathBuf,
}

impl Fixture {
    /// An empty index of `P` probes.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("hub.plog");
        ok(&["create", s(&index), "--num-probes", &P.to_string()]);
        Fixture { dir, index }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn idx(&self) -> &str {
        s(&self.index)
    }

    /// Writes `<name>.npy` and `<name>.labels` for a model detecting `concepts`.
    pub fn model_files(
        &self,
        name: &str,
        concepts: &[usize],
        seed: u64,
    ) -> (PathBuf, PathBuf, Vec<f32>) {
        let logits = concept_logits(concepts, seed);
        let npy = self.path(&format!("{name}.npy"));
        write_npy(&npy, &logits, P, concepts.len());
        let labels = self.path(&format!("{name}.labels"));
        let text: Vec<String> = concepts.iter().map(|c| format!("concept-{c}\n")).collect();
        fs::write(&labels, text.concat()).unwrap();
        (npy, labels, logits)
    }

    /// `m.toml`, a manifest of six models (`m0` to `m5`, concepts [`SIX_MODELS`], seeds 1 to 6);
    /// returns its path and each model's raw logits.
    pub fn six_model_manifest(&self) -> (PathBuf, Vec<Vec<f32>>) {
        let mut manifest = String::new();
        let mut raw = Vec::new();
        for (i, c) in SIX_MODELS.iter().enumerate() {
            raw.push(self.model_files(&format!("m{i}"), c, i as u64 + 1).2);
            manifest.push_str(&format!(
                "[[model]]\nlogits = \"m{i}.npy\"\nlabels = \"m{i}.labels\"\n\n"
            ));
        }
        let path = self.path("m.toml");
        fs::write(&path, manifest).unwrap();
        (path, raw)
    }

    /// The arguments of `append` into the fixture's index: see [`append_logits`].
    pub fn append_logits<'a>(
        &'a self,
        npy: &'a Path,
        name: &'a str,
        extra: &[&'a str],
    ) -> Vec<&'a str> {
        append_logits(self.idx(), npy, name, extra)
    }

    /// The arguments of `search` on the fixture's index with `--entry ENTRY`, then `extra`.
    pub fn search_entry<'a>(&'a self, entry: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut argv = vec!["search", self.idx(), "--entry", entry];
        argv.extend_from_slice(extra);
        argv
    }

    /// Appends one model with labels; returns its raw logits.
    pub fn append(&self, name: &str, concepts: &[usize], seed: u64) -> Vec<f32> {
        let (npy, labels, logits) = self.model_files(name, concepts, seed);
        let extra = [
            "--labels",
            s(&labels),
            "--source",
            "test",
            "--meta",
            "seed=1",
        ];
        ok(&self.append_logits(&npy, name, &extra));
        logits
    }

    /// Three models sharing concepts 1 and 2.
    pub fn with_models(self) -> Self {
        self.append("alpha", &[1, 2, 3, 4], 1);
        self.append("beta", &[2, 5, 1], 2);
        self.append("gamma", &[6, 1, 7, 2, 8], 3);
        self
    }
}

/// The arguments of `append INDEX --logits NPY --name NAME`, then `extra`.
pub fn append_logits<'a>(
    index: &'a str,
    npy: &'a Path,
    name: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut argv = vec!["append", index, "--logits", s(npy), "--name", name];
    argv.extend_from_slice(extra);
    argv
}

/// The arguments of `append INDEX --manifest MANIFEST --probe-fraction 0.5`, then `extra`: each
/// model of a manifest probed on half of the probes, collaboratively.
pub fn half_probed<'a>(index: &'a str, manifest: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec![
        "append",
        index,
        "--manifest",
        s(manifest),
        "--probe-fraction",
        "0.5",
    ];
    argv.extend_from_slice(extra);
    argv
}

/// Writes `text` to `manifest`, then runs `append INDEX --manifest MANIFEST` and `extra`, which
/// must fail; returns its error line.
pub fn append_manifest_fails(index: &str, manifest: &Path, text: &str, extra: &[&str]) -> String {
    fs::write(manifest, text).unwrap();
    let mut argv = vec!["append", index, "--manifest", s(manifest)];
    argv.extend_from_slice(extra);
    fails(&argv)
}

pub fn model_info(index: &str) -> Value {
    ok_json(&["info", index])
}
