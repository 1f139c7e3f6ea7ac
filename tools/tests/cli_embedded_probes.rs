//! Indexes that ship on their own: `create --embed-probes` and `probes attach` store the probe
//! set file in the index, `probes extract` gives it back byte for byte (never over an existing
//! file without --force, never over the index), `info` shows it, `append` and `probes embed`
//! take it when --probes is left out and refuse a --probes that is not it, verify names a
//! damaged copy, and compaction keeps it. With the `torch` feature, the whole story on the
//! shipped demo: a classifier appended with no --probes at all.

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use probelog::Index;
use tempfile::TempDir;

/// Probes of the small sets built here.
const P: usize = 6;

/// Two probe sets in a new folder, `probes.pset` and `other.pset`, and `hub.plog` created with
/// the first (stored in it when `embed`).
fn two_sets_and_an_index(embed: bool) -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = TempDir::new().unwrap();
    let pset = build_pset(dir.path(), "probes", 0);
    let other = build_pset(dir.path(), "other", 0x55);
    let index = dir.path().join("hub.plog");
    let mut create = vec!["create", s(&index), "--probes", s(&pset)];
    create.extend(embed.then_some("--embed-probes"));
    ok(&create);
    (dir, pset, other, index)
}

/// A probe set of `P` 8x8 images built by `probes build`; `shade` changes every image.
fn build_pset(dir: &Path, name: &str, shade: u8) -> PathBuf {
    let images = dir.join(format!("{name}-images"));
    fs::create_dir_all(&images).unwrap();
    for i in 0..P {
        let v = (i * 40) as u8;
        RgbImage::from_fn(8, 8, |x, y| {
            Rgb([v ^ shade, (x * 30) as u8, (y * 30) as u8])
        })
        .save(images.join(format!("p{i}.png")))
        .unwrap();
    }
    let out = dir.join(format!("{name}.pset"));
    ok(&probes_build(&images, &out, &["--size", "8"]));
    out
}

/// Appends a model of random-looking logits `[P, 3]` with `--logits`.
fn append_logits(dir: &Path, index: &Path, name: &str, extra: &[&str]) -> String {
    let logits: Vec<f32> = (0..P * 3)
        .map(|i| ((i * 7919 + name.len() * 31) % 101) as f32 / 10.0)
        .collect();
    let npy = dir.join(format!("{name}.npy"));
    fixture::write_npy(&npy, &logits, P, 3);
    ok(&fixture::append_logits(s(index), &npy, name, extra))
}

/// The line of `info` that starts with `key`.
fn info_line(index: &Path, key: &str) -> String {
    let text = ok(&["info", s(index)]);
    let line = text.lines().find(|l| l.starts_with(key));
    line.unwrap_or_else(|| panic!("no {key:?} in {text}"))
        .to_string()
}

/// The arguments of `probes extract INDEX --out OUT`, then `extra`.
fn extract_args<'a>(index: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec!["probes", "extract", s(index), "--out", s(out)];
    argv.extend_from_slice(extra);
    argv
}

fn extract(index: &Path, out: &Path) -> String {
    ok(&extract_args(index, out, &[]))
}

#[test]
fn create_embeds_and_extract_gives_the_file_back() {
    let dir = TempDir::new().unwrap();
    let pset = build_pset(dir.path(), "probes", 0);
    let index = dir.path().join("hub.plog");
    let created = ok(&["create", s(&index), "--probes", s(&pset), "--embed-probes"]);
    assert!(created.contains("the probe set embedded"), "{created}");
    let original = fs::read(&pset).unwrap();
    let info = ok_json(&["info", s(&index)]);
    assert_eq!(info["embedded_probe_set_bytes"], original.len() as u64);
    assert!(info_line(&index, "probe set:").contains(" embedded ("));
    append_logits(dir.path(), &index, "m0", &[]);

    let out = dir.path().join("back.pset");
    let v = ok_json(&extract_args(&index, &out, &[]));
    assert_eq!(v["probes"], P);
    assert_eq!(fs::read(&out).unwrap(), original, "byte for byte");

    // An existing --out is kept unless --force; the index is never an --out.
    fs::write(&out, b"keep me").unwrap();
    let e = fails(&extract_args(&index, &out, &[]));
    assert!(e.contains("exists; pass --force"), "{e}");
    assert_eq!(fs::read(&out).unwrap(), b"keep me");
    ok(&extract_args(&index, &out, &["--force"]));
    assert_eq!(fs::read(&out).unwrap(), original);
    let before = fs::read(&index).unwrap();
    let e = fails(&extract_args(&index, &index, &["--force"]));
    assert!(e.contains("would destroy"), "{e}");
    let link = dir.path().join("link.plog");
    std::os::unix::fs::symlink(&index, &link).unwrap();
    let e = fails(&extract_args(&index, &link, &["--force"]));
    assert!(e.contains("is a symlink to"), "{e}");
    assert_eq!(fs::read(&index).unwrap(), before, "the index is untouched");
    ok(&["verify", s(&index)]);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pset-"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left");

    // --embed-probes needs --probes.
    let x = dir.path().join("x.plog");
    let e = fails(&["create", s(&x), "--num-probes", "6", "--embed-probes"]);
    assert!(e.contains("give it with --probes"), "{e}");
    assert!(!x.exists());
}

#[test]
fn attach_stores_the_index_own_probe_set_once() {
    let (dir, pset, other, index) = two_sets_and_an_index(false);
    append_logits(dir.path(), &index, "m0", &[]);
    let info = ok_json(&["info", s(&index)]);
    assert!(info["embedded_probe_set_bytes"].is_null());
    assert!(info_line(&index, "probe set:").ends_with(" not embedded"));
    let e = fails(&extract_args(&index, &dir.path().join("x.pset"), &[]));
    assert!(e.contains("holds no probe set"), "{e}");

    let e = fails(&["probes", "attach", s(&index), s(&other)]);
    assert!(
        e.contains("is not the one") && e.contains("other.pset"),
        "{e}"
    );
    let e = fails(&["probes", "attach", s(&index), s(&index)]);
    assert!(
        e.contains("would destroy") || e.contains("not a probe set"),
        "{e}"
    );
    let v = ok_json(&["probes", "attach", s(&index), s(&pset)]);
    assert_eq!(v["sequence"], 3);
    let e = fails(&["probes", "attach", s(&index), s(&pset)]);
    assert!(e.contains("holds its probe set already"), "{e}");
    let out = dir.path().join("back.pset");
    extract(&index, &out);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&pset).unwrap());
    assert_eq!(Index::open(&index).unwrap().model_count(), 1);

    // An index made without a probe set file has no probe set to hold.
    let anon = dir.path().join("anon.plog");
    ok(&["create", s(&anon), "--num-probes", "6"]);
    let e = fails(&["probes", "attach", s(&anon), s(&pset)]);
    assert!(e.contains("is not the one"), "{e}");
}

#[test]
fn append_and_embed_take_the_embedded_set_and_refuse_another() {
    let (dir, pset, other, index) = two_sets_and_an_index(true);
    // The same set given again is fine; another one is refused, naming both.
    append_logits(dir.path(), &index, "m0", &["--probes", s(&pset)]);
    let npy = dir.path().join("m0.npy");
    let e = fails(&fixture::append_logits(
        s(&index),
        &npy,
        "m1",
        &["--probes", s(&other)],
    ));
    assert!(
        e.contains("not the one embedded in") && e.contains("leave --probes out"),
        "{e}"
    );
    // `probes embed` finds no probe set when there is none to take.
    let plain = dir.path().join("plain.plog");
    ok(&["create", s(&plain), "--probes", s(&pset)]);
    let encoder = dir.path().join("encoder.pt");
    fs::write(&encoder, b"not read").unwrap();
    let e = fails(&["probes", "embed", s(&plain), "--clip-image", s(&encoder)]);
    assert!(
        e.contains("holds no probe set") && e.contains("probes attach"),
        "{e}"
    );
    let e = fails(&[
        "probes",
        "embed",
        s(&index),
        "--clip-image",
        s(&encoder),
        "--probes",
        s(&other),
    ]);
    assert!(e.contains("not the one embedded in"), "{e}");
}

/// The offset and length of the index's embedded probe set section.
fn embedded_extent(index: &Path) -> (usize, usize) {
    let opened = Index::open(index).unwrap();
    let (_, off, len) = opened
        .section_extents()
        .into_iter()
        .find(|(name, _, _)| name.ends_with("embedded probe set"))
        .expect("an embedded probe set");
    (off as usize, len as usize)
}

#[test]
fn verify_names_a_damaged_copy_and_extract_refuses_it() {
    let dir = TempDir::new().unwrap();
    let pset = build_pset(dir.path(), "probes", 0);
    let index = dir.path().join("hub.plog");
    ok(&["create", s(&index), "--probes", s(&pset), "--embed-probes"]);
    let (off, len) = embedded_extent(&index);
    let mut bytes = fs::read(&index).unwrap();
    bytes[off + len - 40] ^= 0x5a; // a pixel
    fs::write(&index, &bytes).unwrap();
    let out = run(&["verify", s(&index)]);
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("segment 0 embedded probe set"), "{text}");
    let e = fails(&extract_args(&index, &dir.path().join("x.pset"), &[]));
    assert!(e.contains("fingerprint"), "{e}");
    assert!(!dir.path().join("x.pset").exists());
}

#[test]
fn compaction_keeps_the_embedded_set() {
    let dir = TempDir::new().unwrap();
    let pset = build_pset(dir.path(), "probes", 0);
    let index = dir.path().join("hub.plog");
    ok(&["create", s(&index), "--probes", s(&pset)]);
    append_logits(dir.path(), &index, "m0", &[]);
    ok(&["probes", "attach", s(&index), s(&pset)]);
    append_logits(dir.path(), &index, "m1", &[]);
    ok(&["delete", s(&index), "--model", "m0"]);
    ok(&["compact", s(&index)]);
    let info = ok_json(&["info", s(&index)]);
    assert_eq!(info["segment_count"], 1);
    assert_eq!(info["model_count"], 1);
    let out = dir.path().join("back.pset");
    extract(&index, &out);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&pset).unwrap());
    ok(&["verify", s(&index)]);
}

/// Runs `append INDEX --model` for the demo's classifier `name` (in `demo/models`) with its
/// labels and ImageNet's normalization, on the CPU, then `extra`; it must succeed. Returns its
/// stdout.
#[cfg(feature = "torch")]
fn append_demo_model(demo: &Path, index: &Path, name: &str, extra: &[&str]) -> String {
    let models = demo.join("models");
    let (model, labels) = (
        models.join(format!("{name}.pt")),
        models.join(format!("{name}.txt")),
    );
    let mut argv = vec![
        "append",
        s(index),
        "--model",
        s(&model),
        "--labels",
        s(&labels),
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
        "--device",
        "cpu",
    ];
    argv.extend_from_slice(extra);
    ok(&argv)
}

/// The user story on the shipped demo: an index made with its probe set embedded is all a
/// user downloads; a classifier is appended with no --probes, the probe set comes back byte
/// for byte, and compaction keeps it.
#[cfg(feature = "torch")]
#[test]
fn demo_index_ships_without_side_files() {
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo");
    let pset = demo.join("probes.pset");
    let dir = TempDir::new().unwrap();
    let index = dir.path().join("hub.plog");
    ok(&["create", s(&index), "--probes", s(&pset), "--embed-probes"]);
    // What a user downloads: the index alone, in a directory of its own.
    let shipped_dir = TempDir::new().unwrap();
    let shipped = shipped_dir.path().join("hub.plog");
    fs::copy(&index, &shipped).unwrap();
    for name in ["pets-cnn", "zoo-dwnet"] {
        let out = append_demo_model(&demo, &shipped, name, &["--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v.is_object(), "{v}");
    }
    // The same model appended with the probe set file beside it gives the same descriptors.
    append_demo_model(&demo, &index, "pets-cnn", &["--probes", s(&pset)]);
    let (a, b) = (Index::open(&shipped).unwrap(), Index::open(&index).unwrap());
    assert_eq!(a.model_count(), 2);
    let logits = a.model(0).unwrap().logit_count as u64;
    for e in 0..logits {
        assert_eq!(a.descriptor(e).unwrap(), b.descriptor(e).unwrap());
    }
    let out = shipped_dir.path().join("probes.pset");
    extract(&shipped, &out);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&pset).unwrap());
    ok(&["verify", s(&shipped)]);
    ok(&["compact", s(&shipped)]);
    fs::remove_file(&out).unwrap();
    extract(&shipped, &out);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&pset).unwrap());
    // A damaged copy: verify names it, and neither append nor extract uses it.
    let (off, len) = embedded_extent(&shipped);
    let mut bytes = fs::read(&shipped).unwrap();
    bytes[off + len / 2] ^= 0x01;
    fs::write(&shipped, &bytes).unwrap();
    let report = run(&["verify", s(&shipped)]);
    assert!(!report.status.success());
    let text = String::from_utf8_lossy(&report.stdout).into_owned() + &stderr(&report);
    assert!(text.contains("segment 0 embedded probe set"), "{text}");
    let e = fails(&[
        "append",
        s(&shipped),
        "--model",
        s(&demo.join("models/zoo-dwnet.pt")),
        "--name",
        "again",
        "--device",
        "cpu",
    ]);
    assert!(e.contains("fingerprint"), "{e}");
}

#[test]
fn merge_keeps_the_embedded_set() {
    let dir = TempDir::new().unwrap();
    let pset = build_pset(dir.path(), "probes", 0);
    let (a, b, c) = (
        dir.path().join("a.plog"),
        dir.path().join("b.plog"),
        dir.path().join("c.plog"),
    );
    ok(&["create", s(&a), "--probes", s(&pset), "--embed-probes"]);
    ok(&["create", s(&b), "--probes", s(&pset), "--embed-probes"]);
    ok(&["create", s(&c), "--probes", s(&pset)]);
    for (index, name) in [(&a, "ma"), (&b, "mb"), (&c, "mc")] {
        append_logits(dir.path(), index, name, &[]);
    }
    let original = fs::read(&pset).unwrap();
    // Every input embeds it, or only some do (first or not): the merge holds it.
    for (name, inputs) in [("ab", [&a, &b]), ("ca", [&c, &a]), ("cb", [&c, &b])] {
        let out = dir.path().join(format!("{name}.plog"));
        ok(&["merge", s(&out), s(inputs[0]), s(inputs[1])]);
        let back = dir.path().join(format!("{name}.pset"));
        extract(&out, &back);
        assert_eq!(fs::read(&back).unwrap(), original, "{name}");
        ok(&["verify", s(&out)]);
    }
    // No input embeds it: neither does the merge.
    let cc = dir.path().join("cc.plog");
    let c2 = dir.path().join("c2.plog");
    ok(&["create", s(&c2), "--probes", s(&pset)]);
    append_logits(dir.path(), &c2, "mc2", &[]);
    ok(&["merge", s(&cc), s(&c), s(&c2)]);
    assert!(ok_json(&["info", s(&cc)])["embedded_probe_set_bytes"].is_null());
}
