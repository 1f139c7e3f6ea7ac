//! A small index made by the CLI and the searches every front end must answer as the CLI does.

use super::*;

/// A small hub made by `probelog-tool`: probe embeddings (text search), labelled models, two
/// commits (two segments).
#[derive(Debug)]
pub struct Hub {
    pub dir: tempfile::TempDir,
    pub index: PathBuf,
    pub probes: usize,
    pub dim: usize,
    pub models: usize,
    /// A raw query vector over the probes, also as `.npy` and raw `.f32`.
    pub query: Vec<f32>,
    pub query_npy: PathBuf,
    pub query_f32: PathBuf,
    /// A text embedding, also as `.npy` and raw `.f32`.
    pub text: Vec<f32>,
    pub text_npy: PathBuf,
    pub text_f32: PathBuf,
}

pub const PROBES: usize = 48;
pub const DIM: usize = 8;

impl Hub {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Builds the hub: 14 models of 3 to 7 logits, each logit firing on a few probes of one of
    /// 10 concepts, appended in two manifests (two commits). No ANN graphs.
    pub fn new() -> Hub {
        Hub::build(false)
    }

    /// The same hub whose first segment has an ANN graph (`append --graph-min-entries 2`) and
    /// whose second has none (`--no-graph`), so that hnsw mode both walks a graph and scans.
    pub fn with_graph() -> Hub {
        Hub::build(true)
    }

    fn build(graph: bool) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut rng = Rng::new(7);
        // Probe embeddings [P, d]; concept c's probes lean towards axis c % d.
        let emb = rng.vec(PROBES * DIM);
        write_npy(&d.join("emb.npy"), &[PROBES, DIM], &emb);
        let index = d.join("hub.plog");
        tool_ok(&[
            "create",
            s(&index),
            "--num-probes",
            &PROBES.to_string(),
            "--probe-embeddings",
            s(&d.join("emb.npy")),
        ]);
        let models = 14;
        let mut manifests = [String::new(), String::new()];
        for m in 0..models {
            let l = 3 + m % 5;
            let mut logits = rng.vec(PROBES * l);
            let mut labels = String::new();
            for j in 0..l {
                let concept = (m * 3 + j * 7) % 10;
                for p in (0..PROBES).filter(|p| p % 10 == concept) {
                    logits[p * l + j] += 2.5;
                }
                labels.push_str(&format!("concept-{concept}\n"));
            }
            write_npy(&d.join(format!("m{m}.npy")), &[PROBES, l], &logits);
            // Model 5 has no labels: its hits carry none.
            let labels_line = if m == 5 {
                String::new()
            } else {
                fs::write(d.join(format!("m{m}.txt")), labels).unwrap();
                format!("labels = \"m{m}.txt\"\n")
            };
            manifests[m % 2].push_str(&format!(
                "[[model]]\nlogits = \"m{m}.npy\"\nname = \"model-{m:02}\"\n{labels_line}\n"
            ));
        }
        for (i, text) in manifests.iter().enumerate() {
            let path = d.join(format!("models{i}.toml"));
            fs::write(&path, text).unwrap();
            let mut args = vec!["append", s(&index), "--manifest", s(&path)];
            if graph {
                args.extend(if i == 0 {
                    &["--graph-min-entries", "2"][..]
                } else {
                    &["--no-graph"][..]
                });
            }
            tool_ok(&args);
        }
        let query = rng.concept_query(PROBES, 10);
        let text = rng.vec(DIM);
        let hub = Hub {
            query_npy: d.join("query.npy"),
            query_f32: d.join("query.f32"),
            text_npy: d.join("text.npy"),
            text_f32: d.join("text.f32"),
            index,
            probes: PROBES,
            dim: DIM,
            models,
            query,
            text,
            dir,
        };
        write_npy(&hub.query_npy, &[PROBES], &hub.query);
        write_f32(&hub.query_f32, &hub.query);
        write_npy(&hub.text_npy, &[DIM], &hub.text);
        write_f32(&hub.text_f32, &hub.text);
        hub
    }
}

/// One search, as the CLI's flags.
#[derive(Debug, Clone)]
pub struct Search {
    /// "entry", "vector" or "text".
    pub kind: &'static str,
    pub entry: u64,
    pub top: u32,
    pub k: u32,
    pub exclude_same_model: bool,
    pub per_model: bool,
    /// "blend", "topk", "full" or "model".
    pub metric: &'static str,
    /// `--blend-weight` of the blend metric; 0 for the default.
    pub blend_weight: f32,
    /// "auto", "exact" or "hnsw".
    pub mode: &'static str,
    /// Candidates per graph in hnsw mode; 0 for the default.
    pub candidates: u32,
}

impl Search {
    pub fn new(kind: &'static str) -> Self {
        Search {
            kind,
            entry: 0,
            top: 10,
            k: 0,
            exclude_same_model: false,
            per_model: false,
            metric: "blend",
            blend_weight: 0.0,
            mode: "auto",
            candidates: 0,
        }
    }

    pub fn metric_code(&self) -> u32 {
        match self.metric {
            "topk" => 0,
            "full" => 1,
            "model" => 2,
            "blend" => 3,
            m => panic!("metric {m}"),
        }
    }

    /// PROBELOG_MODE_* of `mode` (also of a report's resolved "mode").
    pub fn mode_code(&self) -> u32 {
        mode_code(self.mode)
    }

    /// The CLI's `--json` report of this search on `hub`.
    pub fn cli(&self, hub: &Hub) -> Value {
        let mut args: Vec<String> = vec!["search".into(), s(&hub.index).into()];
        match self.kind {
            "entry" => args.extend(["--entry".into(), self.entry.to_string()]),
            "vector" => args.extend(["--query-logits".into(), s(&hub.query_npy).into()]),
            "text" => args.extend(["--text-embedding".into(), s(&hub.text_npy).into()]),
            k => panic!("kind {k}"),
        }
        args.extend(["--top".into(), self.top.to_string()]);
        if self.k != 0 {
            args.extend(["--k".into(), self.k.to_string()]);
        }
        if self.exclude_same_model {
            args.push("--exclude-same-model".into());
        }
        if self.per_model {
            args.push("--per-model".into());
        }
        args.extend(["--metric".into(), self.metric.into()]);
        if self.blend_weight != 0.0 {
            args.extend(["--blend-weight".into(), self.blend_weight.to_string()]);
        }
        args.extend(["--mode".into(), self.mode.into()]);
        if self.candidates != 0 {
            args.extend(["--candidates".into(), self.candidates.to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tool_json(&refs)
    }
}

/// A spread of searches over every query kind, parameter and metric (the blend, the default,
/// unless named).
pub fn searches() -> Vec<Search> {
    let mut v = Vec::new();
    let e = |entry: u64| Search {
        entry,
        ..Search::new("entry")
    };
    v.push(e(0));
    v.push(Search {
        top: 6,
        metric: "topk",
        ..e(0)
    });
    v.push(Search {
        top: 5,
        k: 5,
        blend_weight: 0.75,
        ..e(7)
    });
    v.push(Search {
        top: 7,
        k: 8,
        exclude_same_model: true,
        metric: "topk",
        ..e(5)
    });
    v.push(Search {
        top: 4,
        per_model: true,
        metric: "topk",
        ..e(3)
    });
    v.push(Search {
        top: 6,
        metric: "topk",
        ..Search::new("vector")
    });
    v.push(Search {
        top: 6,
        blend_weight: 3.5,
        per_model: true,
        ..Search::new("vector")
    });
    v.push(Search {
        top: 4,
        k: 6,
        metric: "topk",
        ..Search::new("text")
    });
    v.push(Search {
        top: 7,
        k: 8,
        exclude_same_model: true,
        ..e(5)
    });
    v.push(Search {
        top: 4,
        per_model: true,
        ..e(3)
    });
    v.push(Search {
        top: 5,
        metric: "full",
        ..e(12)
    });
    v.push(Search {
        top: 3,
        metric: "model",
        ..e(2)
    });
    v.push(Search { top: 1000, ..e(40) });
    v.push(Search {
        top: 6,
        ..Search::new("vector")
    });
    v.push(Search {
        top: 5,
        per_model: true,
        k: 4,
        ..Search::new("vector")
    });
    v.push(Search {
        top: 8,
        metric: "full",
        ..Search::new("vector")
    });
    v.push(Search {
        top: 5,
        ..Search::new("text")
    });
    v.push(Search {
        top: 4,
        per_model: true,
        k: 6,
        ..Search::new("text")
    });
    v.push(Search {
        metric: "model",
        ..Search::new("text")
    });
    v
}

/// PROBELOG_MODE_AUTO, _EXACT or _HNSW of a mode's name.
pub fn mode_code(mode: &str) -> u32 {
    match mode {
        "auto" => 0,
        "exact" => 1,
        "hnsw" => 2,
        m => panic!("mode {m}"),
    }
}

/// Searches in each mode for [`Hub::with_graph`]: hnsw with few candidates (so that the graph
/// matters) over every query kind and option, the default candidates, and exact and auto with
/// candidates that they ignore. On a hub this small, auto resolves to exact.
pub fn mode_searches() -> Vec<Search> {
    // The graphs serve the paper's top-k discrepancy and the blend (further below).
    let hnsw = |kind, candidates| Search {
        mode: "hnsw",
        metric: "topk",
        candidates,
        ..Search::new(kind)
    };
    vec![
        Search {
            top: 5,
            ..hnsw("vector", 3)
        },
        Search {
            top: 6,
            k: 4,
            per_model: true,
            ..hnsw("vector", 2)
        },
        Search {
            entry: 5,
            top: 7,
            k: 8,
            exclude_same_model: true,
            ..hnsw("entry", 4)
        },
        Search {
            entry: 3,
            top: 4,
            per_model: true,
            ..hnsw("entry", 1)
        },
        Search {
            entry: 40,
            top: 1000,
            ..hnsw("entry", 1)
        },
        // The default candidates (100): every node of the small graph.
        Search {
            entry: 0,
            ..hnsw("entry", 0)
        },
        Search {
            top: 4,
            ..hnsw("text", 3)
        },
        // The blend: top-k candidates, reranked by the blend.
        Search {
            entry: 7,
            top: 5,
            metric: "blend",
            ..hnsw("entry", 3)
        },
        Search {
            top: 6,
            metric: "blend",
            per_model: true,
            ..hnsw("vector", 2)
        },
        Search {
            top: 5,
            mode: "exact",
            ..hnsw("vector", 3)
        },
        Search {
            top: 5,
            mode: "auto",
            ..hnsw("vector", 3)
        },
        // The default metric, the blend, runs exactly in auto mode.
        Search {
            top: 5,
            mode: "auto",
            candidates: 3,
            ..Search::new("vector")
        },
        Search {
            top: 3,
            metric: "model",
            mode: "auto",
            ..Search::new("text")
        },
    ]
}

/// One result row of a CLI report: (rank, entry or -1, model id, model, logit or -1, label,
/// score).
pub type Row = (u64, i64, u64, String, i64, Option<String>, f32);

/// The results of a CLI `--json` report as rows.
pub fn cli_rows(report: &Value) -> Vec<Row> {
    json_rows(report["results"].as_array().expect("results"))
}

/// Result objects (the CLI's `--json` results, `sqlite3 -json` rows) as rows.
pub fn json_rows(objects: &[Value]) -> Vec<Row> {
    objects
        .iter()
        .map(|r| {
            (
                r["rank"].as_u64().unwrap(),
                r["entry"].as_i64().unwrap_or(-1),
                r["model_id"].as_u64().unwrap(),
                r["model"].as_str().unwrap().to_string(),
                r["logit"].as_i64().unwrap_or(-1),
                r["label"].as_str().map(str::to_string),
                r["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}
