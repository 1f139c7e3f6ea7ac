//! A zoo of models with metadata and deletes, for the filter tests of the C ABI and SQLite.

use super::*;

/// A small hub for deletes, filters and explanations, made by `probelog-tool`: 10 models `m-0`
/// to `m-9` of 3 labelled logits, with metadata `family` (`a` for even models, `b` for odd
/// ones) and `license` (`gpl` for models 0 to 2, `mit` for 3 to 8, none for 9), probe names
/// (`probe-0`, ...) and probe embeddings, in one commit.
#[derive(Debug)]
pub struct Zoo {
    pub dir: tempfile::TempDir,
    pub index: PathBuf,
    pub probes: usize,
    pub dim: usize,
    pub models: usize,
    pub logits: usize,
    /// A raw query vector over the probes, also as `.npy`.
    pub query: Vec<f32>,
    pub query_npy: PathBuf,
    /// A text embedding, also as `.npy`.
    pub text: Vec<f32>,
    pub text_npy: PathBuf,
}

impl Zoo {
    /// The zoo; with `graph`, its one segment has an ANN graph (`--graph-min-entries 2`).
    pub fn new(graph: bool) -> Zoo {
        let (probes, dim, models, l) = (32, 4, 10, 3);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut rng = Rng::new(31);
        write_npy(&d.join("emb.npy"), &[probes, dim], &rng.vec(probes * dim));
        let names: String = (0..probes).map(|p| format!("probe-{p}\n")).collect();
        fs::write(d.join("probes.txt"), names).unwrap();
        let index = d.join("zoo.plog");
        tool_ok(&[
            "create",
            s(&index),
            "--num-probes",
            &probes.to_string(),
            "--probe-names",
            s(&d.join("probes.txt")),
            "--probe-embeddings",
            s(&d.join("emb.npy")),
        ]);
        let mut manifest = String::new();
        for m in 0..models {
            let mut logits = rng.vec(probes * l);
            let mut labels = String::new();
            for j in 0..l {
                let concept = (m + j * 3) % 8;
                for p in (0..probes).filter(|p| p % 8 == concept) {
                    logits[p * l + j] += 2.5;
                }
                labels.push_str(&format!("concept-{concept}\n"));
            }
            write_npy(&d.join(format!("m{m}.npy")), &[probes, l], &logits);
            fs::write(d.join(format!("m{m}.txt")), labels).unwrap();
            let family = if m % 2 == 0 { "a" } else { "b" };
            let license = match m {
                0..=2 => "license = \"gpl\", ",
                9 => "",
                _ => "license = \"mit\", ",
            };
            manifest.push_str(&format!(
                "[[model]]\nlogits = \"m{m}.npy\"\nname = \"m-{m}\"\nlabels = \"m{m}.txt\"\n\
                 meta = {{ {license}family = \"{family}\" }}\n\n"
            ));
        }
        fs::write(d.join("models.toml"), manifest).unwrap();
        let manifest_path = d.join("models.toml");
        let mut args = vec!["append", s(&index), "--manifest", s(&manifest_path)];
        if graph {
            args.extend(["--graph-min-entries", "2"]);
        }
        tool_ok(&args);
        let query = rng.concept_query(probes, 8);
        let text = rng.vec(dim);
        let zoo = Zoo {
            query_npy: d.join("query.npy"),
            text_npy: d.join("text.npy"),
            index,
            probes,
            dim,
            models,
            logits: l,
            query,
            text,
            dir,
        };
        write_npy(&zoo.query_npy, &[probes], &zoo.query);
        write_npy(&zoo.text_npy, &[dim], &zoo.text);
        zoo
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
