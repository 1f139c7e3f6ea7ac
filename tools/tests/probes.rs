//! `probes build|info` and `create --probes`: probe set files from real image files, through the
//! binary. (Decoding, resizing and the byte format are unit-tested in `src/pset.rs`.)

mod common;
use common::fixture::append_logits;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use probelog::Index;
use serde_json::Value;

/// Writes images named `names` (format from the extension), each a distinct flat colour.
fn write_images(dir: &Path, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let v = (i * 40) as u8;
        RgbImage::from_pixel(20, 10, Rgb([v, 255 - v, 7]))
            .save(&path)
            .unwrap();
    }
}

/// Writes `0.png` to `<n - 1>.png` with [`write_images`]; returns their names.
fn write_numbered_images(dir: &Path, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{i}.png")).collect();
    write_images(dir, &names.iter().map(String::as_str).collect::<Vec<_>>());
    names
}

fn names_of(pset: &Path) -> Vec<String> {
    let v = ok_json(&["probes", "info", s(pset)]);
    v["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// `p.pset`, a probe set of 4x4 images built from `images`, and `hub.plog` created with it, both
/// in `dir`; returns their paths and the JSON summary of `probes build`.
fn probe_set_and_index(dir: &Path, images: &Path) -> (PathBuf, PathBuf, Value) {
    let pset = dir.join("p.pset");
    let built = ok_json(&probes_build(images, &pset, &["--size", "4"]));
    let idx = dir.join("hub.plog");
    ok(&["create", s(&idx), "--probes", s(&pset)]);
    (pset, idx, built)
}

#[test]
fn images_are_ordered_by_name_or_by_list() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_images(&images, &["b.png", "a.jpg", "sub/c.webp", "d.JPEG"]);
    fs::write(images.join("notes.txt"), "not an image").unwrap();
    let out = dir.path().join("p.pset");
    let v = ok_json(&probes_build(&images, &out, &["--size", "6"]));
    assert_eq!(v["probes"], 4);
    assert_eq!(v["size"], 6);
    assert_eq!(names_of(&out), ["a.jpg", "b.png", "d.JPEG", "sub/c.webp"]);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temporary files left"
    );

    let list = dir.path().join("order.txt");
    fs::write(&list, "sub/c.webp\nb.png\n").unwrap();
    let listed = dir.path().join("listed.pset");
    ok(&probes_build(
        &images,
        &listed,
        &["--size", "6", "--list", s(&list)],
    ));
    assert_eq!(names_of(&listed), ["sub/c.webp", "b.png"]);
}

#[test]
fn fingerprint_is_stable_and_follows_content() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_numbered_images(&images, 6);
    let build = |out: &str, extra: &[&str]| {
        let v = ok_json(&probes_build(&images, &dir.path().join(out), extra));
        v["fingerprint"].as_str().unwrap().to_string()
    };
    let a = build("a.pset", &["--size", "8"]);
    assert_eq!(
        build("b.pset", &["--size", "8"]),
        a,
        "same input, same fingerprint"
    );
    assert_eq!(
        fs::read(dir.path().join("a.pset")).unwrap(),
        fs::read(dir.path().join("b.pset")).unwrap()
    );
    assert_ne!(build("c.pset", &["--size", "9"]), a, "another size");
    // One image changes: another fingerprint.
    RgbImage::from_pixel(20, 10, Rgb([1, 2, 3]))
        .save(images.join("3.png"))
        .unwrap();
    assert_ne!(build("d.pset", &["--size", "8"]), a, "other pixels");

    // A seeded sample is reproducible, keeps name order, and depends on the seed.
    let x = build("x.pset", &["--sample", "3", "--seed", "7"]);
    assert_eq!(build("y.pset", &["--sample", "3", "--seed", "7"]), x);
    let sampled = names_of(&dir.path().join("x.pset"));
    assert_eq!(sampled.len(), 3);
    assert!(sampled.windows(2).all(|w| w[0] < w[1]), "{sampled:?}");
    let seeds: Vec<String> = (0..5)
        .map(|seed| build("z.pset", &["--sample", "3", "--seed", &seed.to_string()]))
        .collect();
    assert!(seeds.iter().any(|f| *f != x), "the seed changes the sample");
    let e = fails(&probes_build(
        &images,
        &dir.path().join("w.pset"),
        &["--sample", "7"],
    ));
    assert!(e.contains("--sample 7") && e.contains("6 images"), "{e}");
}

#[test]
fn unreadable_images_are_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_images(&images, &["good.png", "also-good.png"]);
    fs::write(images.join("broken.png"), b"\x89PNG but not really").unwrap();
    fs::write(images.join("empty.jpg"), b"").unwrap();
    let out = dir.path().join("p.pset");
    let e = fails(&probes_build(&images, &out, &[]));
    assert!(
        e.contains("cannot read 2 of 4 images")
            && e.contains("broken.png")
            && e.contains("empty.jpg"),
        "{e}"
    );
    assert!(!e.contains("good.png ("), "{e}");
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary files left"
    );

    // An existing file is left as it was.
    fs::write(&out, b"previous").unwrap();
    fails(&probes_build(&images, &out, &[]));
    assert_eq!(fs::read(&out).unwrap(), b"previous");
    // A missing --list entry is named too.
    let list = dir.path().join("list.txt");
    fs::write(&list, "good.png\nmissing.png\n").unwrap();
    let e = fails(&probes_build(&images, &out, &["--list", s(&list)]));
    assert!(e.contains("missing.png"), "{e}");
    let e = fails(&["probes", "info", s(&out)]);
    assert!(e.contains("not a probe set file"), "{e}");
}

#[test]
fn create_with_a_probe_set_and_append_logits_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let names = write_numbered_images(&images, 5);
    let (pset, idx, built) = probe_set_and_index(dir.path(), &images);
    let index = Index::open(&idx).unwrap();
    assert_eq!(index.num_probes(), 5);
    assert_eq!(
        index.probe_set().fingerprint_hex(),
        built["fingerprint"].as_str().unwrap()
    );
    assert_eq!(index.probe_names().unwrap().unwrap(), names);

    let out = run(&[
        "create",
        s(&dir.path().join("x.plog")),
        "--probes",
        s(&pset),
        "--num-probes",
        "5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--probes and --num-probes conflict"
    );

    // `append --probes` checks the probe set before anything else, for logits too.
    let npy = dir.path().join("m.npy");
    write_npy(&npy, 5, 2);
    ok(&append_logits(s(&idx), &npy, "m", &["--probes", s(&pset)]));
    let other = dir.path().join("other.pset");
    ok(&probes_build(&images, &other, &["--size", "5"]));
    let e = fails(&append_logits(
        s(&idx),
        &npy,
        "m2",
        &["--probes", s(&other)],
    ));
    assert!(
        e.contains("is not the one") && e.contains("other.pset"),
        "{e}"
    );
    assert_eq!(Index::open(&idx).unwrap().model_count(), 1);
}

#[cfg(not(feature = "torch"))]
#[test]
fn model_probing_says_it_needs_the_torch_feature() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_images(&images, &["a.png", "b.png"]);
    let (pset, idx, _) = probe_set_and_index(dir.path(), &images);
    let e = fails(&["append", s(&idx), "--model", "m.pt", "--probes", s(&pset)]);
    assert!(
        e.contains("--features torch") && e.contains("setup-libtorch.sh"),
        "{e}"
    );
}

/// A float32 `[rows, cols]` .npy with varying values (format v1.0, written by hand).
fn write_npy(path: &Path, rows: usize, cols: usize) {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let mut h = header.into_bytes();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&h);
    for i in 0..rows * cols {
        bytes.extend_from_slice(&(((i * 7919) % 13) as f32).to_le_bytes());
    }
    fs::write(path, bytes).unwrap();
}
