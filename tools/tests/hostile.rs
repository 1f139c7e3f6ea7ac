//! Hostile command lines (issue 24, "writers as safe as readers"): output paths that name an
//! input, FIFOs and devices as inputs, hostile `.npy` headers, an index of another probe set,
//! parameters out of range, names that break line-oriented output. Every case must end in a clean
//! error (exit code 1, or 2 for a flag value clap refuses; one `error:` line on stderr; no panic)
//! and leave the index byte for byte as it was.

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use tempfile::TempDir;

/// Probes of the test indexes.
const P: usize = 20;

/// A model's raw logits `[P, l]`: distinct, varying columns.
fn logits(l: usize, seed: usize) -> Vec<f32> {
    (0..P * l)
        .map(|i| {
            let (p, j) = (i / l, i % l);
            ((p * (j + 2) + seed * 7) % 11) as f32 + 0.1 * j as f32
        })
        .collect()
}

/// A `.npy` file with the given header dictionary (version 2: a u32 header length) and data.
fn raw_npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x02\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A flag value clap refuses: exit code 2, the reason on the first stderr line (clap adds only
/// its "For more information, try '--help'" hint), no panic. Returns that line.
fn usage_error(args: &[&str]) -> String {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let first = err.lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("error: "), "{err}");
    assert!(
        err.lines()
            .skip(1)
            .all(|l| l.is_empty() || l.contains("--help")),
        "{args:?}: more than the reason and the hint: {err}"
    );
    first
}

struct Fixture {
    dir: TempDir,
    index: PathBuf,
    /// The index's bytes when the fixture was made (or last [`Fixture::snapshot`]).
    before: Vec<u8>,
}

impl Fixture {
    /// An index of `P` probes holding one labelled model of three logits.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("hub.plog");
        ok(&["create", s(&index), "--num-probes", &P.to_string()]);
        let mut f = Fixture {
            dir,
            index,
            before: Vec::new(),
        };
        let (npy, labels) = f.model_files("m0", 3, 0);
        ok(&f.append_logits(&npy, "m0", &["--labels", s(&labels)]));
        f.snapshot();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn idx(&self) -> &str {
        s(&self.index)
    }

    fn append_logits<'a>(
        &'a self,
        npy: &'a Path,
        name: &'a str,
        extra: &[&'a str],
    ) -> Vec<&'a str> {
        fixture::append_logits(self.idx(), npy, name, extra)
    }

    /// Writes `<name>.npy` (`l` logits) and `<name>.labels` (`c0`, `c1`, ...).
    fn model_files(&self, name: &str, l: usize, seed: usize) -> (PathBuf, PathBuf) {
        let npy = self.path(&format!("{name}.npy"));
        fixture::write_npy(&npy, &logits(l, seed), P, l);
        let labels = self.path(&format!("{name}.labels"));
        let text: String = (0..l).map(|j| format!("c{j}\n")).collect();
        fs::write(&labels, text).unwrap();
        (npy, labels)
    }

    fn snapshot(&mut self) {
        self.before = fs::read(&self.index).unwrap();
    }

    fn assert_unchanged(&self) {
        assert!(
            fs::read(&self.index).unwrap() == self.before,
            "the index changed"
        );
    }
}

#[test]
fn outputs_that_name_an_input_are_refused() {
    let f = Fixture::new();
    let out = fails(&["export", f.idx(), "--out", f.idx()]);
    assert!(
        out.contains("--out") && out.contains("would destroy"),
        "{out}"
    );
    f.assert_unchanged();

    // Through a symlink, a hard link, or another spelling of the path.
    let link = f.path("link.npy");
    std::os::unix::fs::symlink(&f.index, &link).unwrap();
    let e = fails(&["export", f.idx(), "--out", s(&link)]);
    assert!(e.contains("is a symlink to"), "{e}");
    let hard = f.path("hard.npy");
    fs::hard_link(&f.index, &hard).unwrap();
    fails(&["export", f.idx(), "--out", s(&hard)]);
    let dotted = f.dir.path().join(".").join("hub.plog");
    fails(&["export", f.idx(), "--out", s(&dotted)]);
    f.assert_unchanged();

    // The sidecar (the .json beside the output) is an output too.
    let json_index = f.path("hub.json");
    fs::copy(&f.index, &json_index).unwrap();
    let json_before = fs::read(&json_index).unwrap();
    let e = fails(&["export", s(&json_index), "--out", s(&f.path("hub.npy"))]);
    assert!(e.contains("the sidecar"), "{e}");
    assert!(fs::read(&json_index).unwrap() == json_before);
    assert!(!f.path("hub.npy").exists(), "nothing is written");

    // An input that is the index being appended to.
    let (npy, _) = f.model_files("m1", 3, 1);
    let e = fails(&f.append_logits(&npy, "m1", &["--labels", f.idx()]));
    assert!(e.contains("the labels"), "{e}");
    f.assert_unchanged();

    // A new index over one of create's inputs.
    let names = f.path("names.txt");
    let text: String = (0..P).map(|i| format!("probe {i}\n")).collect();
    fs::write(&names, &text).unwrap();
    let e = fails(&[
        "create",
        s(&names),
        "--num-probes",
        &P.to_string(),
        "--probe-names",
        s(&names),
    ]);
    assert!(e.contains("--probe-names"), "{e}");
    assert_eq!(fs::read_to_string(&names).unwrap(), text);

    // Other paths still work.
    ok(&["export", f.idx(), "--out", s(&f.path("rows.npy"))]);
}

#[test]
fn fifos_and_devices_are_refused_as_inputs() {
    let f = Fixture::new();
    let fifo = f.path("fifo");
    mkfifo(&fifo);
    for args in [
        &["info", s(&fifo)][..],
        &["verify", s(&fifo)],
        &["search", s(&fifo), "--entry", "0"],
        &["export", s(&fifo), "--out", s(&f.path("x.npy"))],
        &["compact", s(&fifo)],
        &[
            "append",
            s(&fifo),
            "--logits",
            s(&f.path("m0.npy")),
            "--name",
            "x",
        ],
        &["append", f.idx(), "--logits", s(&fifo), "--name", "x"],
        &["append", f.idx(), "--manifest", s(&fifo)],
        &[
            "append",
            f.idx(),
            "--logits",
            s(&f.path("m0.npy")),
            "--name",
            "x",
            "--labels",
            s(&fifo),
        ],
        &["search", f.idx(), "--query-logits", s(&fifo)],
        &[
            "create",
            s(&f.path("new.plog")),
            "--num-probes",
            "20",
            "--probe-names",
            s(&fifo),
        ],
        &["create", s(&f.path("new.plog")), "--probes", s(&fifo)],
        &["probes", "info", s(&fifo)],
    ] {
        let e = fails_bounded(args);
        assert!(
            e.contains("FIFO") && e.contains("regular file"),
            "{args:?}: {e}"
        );
    }
    // A device that never ends.
    for args in [
        &["append", f.idx(), "--logits", "/dev/zero", "--name", "x"][..],
        &["search", f.idx(), "--query-logits", "/dev/zero"],
        &["info", "/dev/zero"],
    ] {
        let e = fails_bounded(args);
        assert!(e.contains("character device"), "{args:?}: {e}");
    }
    let e = fails_bounded(&["info", s(f.dir.path())]);
    assert!(e.contains("directory"), "{e}");
    f.assert_unchanged();
    assert!(!f.path("new.plog").exists());
}

#[test]
fn hostile_npy_headers_are_clean_errors() {
    let f = Fixture::new();
    let four = 1.0f32.to_le_bytes();
    let append =
        |path: &Path| fails_bounded(&["append", f.idx(), "--logits", s(path), "--name", "x"]);
    let deep = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}1{}, }}\n",
        "(".repeat(30_000),
        ")".repeat(30_000)
    );
    let huge = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }}{}\n",
        " ".repeat(70_000)
    );
    let long = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': (1,), }}\n",
        "x".repeat(40_000)
    );
    let big = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000), }\n";
    let headers: [(&str, &str, fn(&str) -> bool); 4] = [
        (
            "nesting deep enough to overflow a recursive parser's stack, in a header under 64 KiB",
            &deep,
            |e| e.contains("deeper than"),
        ),
        ("a header over 64 KiB", &huge, |e| e.contains("65536 bytes")),
        ("a 40 KB value is quoted in part only", &long, |e| {
            e.len() < 400 && e.contains('…')
        }),
        (
            "a shape announcing far more data than the file holds: refused before any allocation",
            big,
            |e| e.contains("truncated"),
        ),
    ];
    let path = f.path("deep.npy");
    for (case, header, expected) in headers {
        fs::write(&path, raw_npy(header, &four)).unwrap();
        let e = append(&path);
        assert!(expected(&e), "{case}: {e}");
    }
    // A float64 beyond the float32 range is named with its index, not stored as inf.
    let mut values = vec![0f64; P * 2];
    for (i, v) in values.iter_mut().enumerate() {
        *v = (i % 7) as f64;
    }
    values[3 * 2 + 1] = 1e300;
    let wide = f.path("wide.npy");
    Array2::from_shape_vec((P, 2), values)
        .unwrap()
        .write_npy(fs::File::create(&wide).unwrap())
        .unwrap();
    let e = append(&wide);
    assert!(
        e.contains("1e300") && e.contains("[3, 1]") && e.contains("float32 range"),
        "{e}"
    );
    f.assert_unchanged();
}

#[test]
fn create_refuses_fewer_probes_than_an_index_can_have() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("one.plog");
    for p in ["1", "0"] {
        let e = usage_error(&["create", s(&index), "--num-probes", p]);
        assert!(e.contains("at least 2 probes"), "{e}");
        assert!(!index.exists());
    }
    let e = usage_error(&["create", s(&index), "--num-probes", "1048577"]);
    assert!(e.contains("at most 1048576"), "{e}");
    assert!(!index.exists());
    ok(&["create", s(&index), "--num-probes", "2"]);
    ok(&["info", s(&index)]);
}

#[test]
fn out_of_range_parameters_are_refused_with_clear_messages() {
    let f = Fixture::new();
    // A constant query: the message is about searching, not about appending.
    let flat = f.path("flat.npy");
    fixture::write_npy(&flat, &[3.0; P], P, 1);
    let e = fails(&["search", f.idx(), "--query-logits", s(&flat)]);
    assert!(
        e.contains("constant") && !e.contains("keep-constant"),
        "{e}"
    );
    // Blend weights whose scores would overflow.
    for w in ["3e38", "1e7"] {
        let e = usage_error(&["search", f.idx(), "--entry", "0", "--blend-weight", w]);
        assert!(e.contains("1e6"), "{e}");
    }
    ok(&["search", f.idx(), "--entry", "0", "--blend-weight", "1e6"]);
    // The ridge of collaborative probing: the index only opens factors with a finite lambda > 0.
    for l in ["0", "nan", "inf", "-1"] {
        let lambda = format!("--lambda={l}");
        let e = usage_error(&["compact", f.idx(), "--refactorize", &lambda]);
        assert!(e.contains("finite number > 0"), "{e}");
        let m0 = f.path("m0.npy");
        let e = usage_error(&f.append_logits(&m0, "x", &["--probe-fraction", "0.5", &lambda]));
        assert!(e.contains("finite number > 0"), "{e}");
    }

    // A NaN in a manifest names the manifest file and the entry.
    let e = fixture::append_manifest_fails(
        f.idx(),
        &f.path("nan.toml"),
        "[[model]]\nmodel = \"x.pt\"\nname = \"good\"\n\n[[model]]\nmodel = \"y.pt\"\nmean = [nan, 0.5, 0.5]\n",
        &[],
    );
    assert!(
        e.contains("nan.toml")
            && e.contains("model 2")
            && e.contains("\"y\"")
            && e.contains("mean"),
        "{e}"
    );
    f.assert_unchanged();
    // A NaN in the logits of a manifest's model: the failure names the manifest and the entry,
    // with or without --skip-failed.
    let mut bad = logits(2, 5);
    bad[7] = f32::NAN;
    fixture::write_npy(&f.path("bad.npy"), &bad, P, 2);
    f.model_files("fine", 2, 6);
    let m = f.path("skip.toml");
    let fine_and_bad = "[[model]]\nlogits = \"fine.npy\"\n\n[[model]]\nlogits = \"bad.npy\"\n";
    let e = fixture::append_manifest_fails(f.idx(), &m, fine_and_bad, &[]);
    assert!(
        e.contains("skip.toml") && e.contains("2 of 2") && e.contains("NaN"),
        "{e}"
    );
    f.assert_unchanged();
    let e = fixture::append_manifest_fails(f.idx(), &m, fine_and_bad, &["--skip-failed"]);
    assert!(
        e.contains("skipped 1 of 2 models: \"bad\" (model 2 of ") && e.contains("skip.toml"),
        "{e}"
    );
}

#[test]
fn echoed_input_is_cut_to_an_excerpt() {
    let f = Fixture::new();
    let long = "9".repeat(40_000);
    let flag = format!("--{}", "q".repeat(40_000));
    let meta = format!("{}novalue", "k".repeat(40_000));
    for args in [
        &["search", f.idx(), "--entry", "0", "--blend-weight", &long][..],
        &["search", f.idx(), "--entry", "0", &flag],
        &f.append_logits(Path::new("a.npy"), "n", &["--meta", &meta])[..],
        &f.append_logits(Path::new("a.npy"), "n", &["--device", &long])[..],
    ] {
        refused_with_an_excerpt(args);
    }
    f.assert_unchanged();
}

#[test]
fn names_and_label_files_keep_line_oriented_output_intact() {
    let f = Fixture::new();
    let (npy, labels) = f.model_files("m1", 3, 1);
    // Control characters in a model name.
    for name in ["two\nlines", "tab\there", "esc\x1b[31m"] {
        let e = fails(&["append", f.idx(), "--logits", s(&npy), "--name", name]);
        assert!(
            e.contains("--name") && e.contains("control character"),
            "{e}"
        );
    }
    let e = fixture::append_manifest_fails(
        f.idx(),
        &f.path("ctl.toml"),
        "[[model]]\nlogits = \"m1.npy\"\nname = \"a\\nb\"\n",
        &[],
    );
    assert!(e.contains("ctl.toml") && e.contains("model 1"), "{e}");
    // Label files: a blank line is an error naming it; one final newline is fine.
    let append_with = |text: &str| {
        fs::write(&labels, text).unwrap();
        run(&f.append_logits(
            &npy,
            "m1",
            &["--labels", s(&labels), "--keep-duplicate-names", "--json"],
        ))
    };
    for (text, line) in [("a\nb\nc\n\n", "line 4"), ("a\n\nb\nc\n", "line 2")] {
        let out = append_with(text);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{e}");
        assert!(e.contains(line) && e.contains("empty"), "{text:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    let out = append_with("a\nb\x07\nc\n");
    assert!(stderr(&out).contains("line 2") && stderr(&out).contains("control"));
    f.assert_unchanged();
    assert!(append_with("a\nb\nc\n").status.success());
    assert!(append_with("a\nb\nc").status.success());

    // Manifest paths leading out of the manifest's folder resolve against that folder.
    fs::create_dir(f.path("sub")).unwrap();
    let m = f.path("sub/m.toml");
    fs::write(
        &m,
        "[[model]]\nlogits = \"../m1.npy\"\nname = \"outside\"\n",
    )
    .unwrap();
    let r = ok_json(&["append", f.idx(), "--manifest", s(&m)]);
    assert_eq!(r["models"][0]["name"], "outside");
}

/// Work sized by the header's probe count stays bounded: `export` of an empty index with the
/// most probes an index may have (2^20) runs within 1 GiB of address space.
#[test]
fn the_largest_probe_count_needs_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("wide.plog");
    let out = dir.path().join("wide.npy");
    ok(&["create", s(&index), "--num-probes", "1048576"]);
    let bin = env!("CARGO_BIN_EXE_probelog-tool");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 1048576 && exec '{bin}' export '{}' --out '{}'",
            s(&index),
            s(&out)
        ))
        .status()
        .unwrap();
    assert!(status.success(), "export of an empty wide index: {status}");
    let info = ok_json(&["info", s(&index)]);
    assert_eq!(info["num_probes"].as_u64(), Some(1 << 20));
}
