//! `probelog-research eval`: retrieval accuracy of an index whose entries carry concept labels, measured end to end
//! (the analogues of the ProbeLog paper's Table 1 and ablations).
//!
//! Models whose metadata holds `--query-models KEY=VALUE` (default `split=query`) are the
//! queries; the others are the gallery. A logit query is answered correctly when a retrieved
//! gallery logit carries the query's label. A text query is a concept name, embedded by a text
//! encoder (the CLIP path of `search --text`) and compared with every logit of the index.
//!
//! Sections: the table (ProbeLog top-k, full-query Euclidean, model-level; logit->logit and
//! text->logit); `--ablations` (top-k, bottom-k, random-k, all probes, without normalization);
//! `--k-sweep`; `--probe-curve` (accuracy against the number of probes, each model probed with the
//! same random subset); `--variants` (combined discrepancies against top-k and full-query, with
//! paired bootstrap intervals); `--collab F=INDEX` (collaboratively probed indexes against a fixed
//! subset of the same size). Discrepancies are computed here from the descriptors the index
//! stores, so that variants the core does not implement can be compared.

mod measure;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use probelog::search::check_blend_weight;
use probelog::{DEFAULT_BLEND_WEIGHT, DEFAULT_K, Index};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use self::measure::{
    Difference, Discrepancy, Outcome, Rows, Scorer, Source, Summary, chance, paired_difference,
    retrieve, retrieve_models, summarize,
};
use probelog_tool::cmd::{
    LibResult, check_input_settings, open_index, parse_key_value, read_lines,
};
use probelog_tool::input;
use probelog_tool::npy;
use probelog_tool::output::{Align, Table, excerpt, outln, print_json};
use probelog_tool::paths::{Role, refuse_outputs_over_inputs};
use probelog_tool::pset::ProbeSet;
use probelog_tool::torch::device::DeviceArg;
use probelog_tool::torch::{
    DEFAULT_BATCH, DEFAULT_CONTEXT_LENGTH, InputSpec, MaskArg, Prober, TextSpec, embed_text,
};

const DEFAULT_KS: &[usize] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
const DEFAULT_PROBE_COUNTS: &[usize] = &[25, 50, 100, 200, 400, 700, 1000, 1500];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The index to evaluate; every entry must carry a label (its concept).
    pub index: PathBuf,
    /// Models whose metadata holds KEY=VALUE are the queries; the others are the gallery.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value, default_value = "split=query")]
    pub query_models: (String, String),
    /// Evaluate only the models whose metadata holds KEY=VALUE (e.g. arch=cnn: a hub of one
    /// architecture family); the others are ignored.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub restrict: Option<(String, String)>,
    /// k of the top-k discrepancy and of the variants built on it, from 1 to the probe count
    /// [default: the library's, at most the probe count].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub k: Option<u32>,
    /// Also measure the ablations: bottom-k, random-k, all probes, no normalization.
    #[arg(long)]
    pub ablations: bool,
    /// Also measure top-k accuracy for each k of --ks.
    #[arg(long)]
    pub k_sweep: bool,
    /// The k values of --k-sweep, each from 1 to the probe count [default: powers of 2 up to
    /// 1024, those within the probe count].
    #[arg(long, value_name = "K,K,...", value_delimiter = ',')]
    pub ks: Vec<usize>,
    /// Also measure accuracy against the number of probes (a random subset, the same for
    /// every model, z-normalized again over it).
    #[arg(long)]
    pub probe_curve: bool,
    /// The probe counts of --probe-curve, each from 2 to the probe count less 1 (the full set is
    /// always added) [default: 25 to 1500, those below the probe count].
    #[arg(long, value_name = "N,N,...", value_delimiter = ',')]
    pub probe_counts: Vec<usize>,
    /// Random subsets per probe count (results are pooled over them), from 1 to 1000.
    #[arg(long, value_name = "S", default_value_t = 3)]
    pub subset_seeds: u64,
    /// Also compare combined discrepancies with top-k and full-query.
    #[arg(long)]
    pub variants: bool,
    /// The discrepancy reported beside top-k and full-query in the probe curve and the
    /// collaborative-probing table: topk, full, union, rank, topk+all:W or topk+rms:W (the
    /// default metric of search at W = 8), optionally with @K (another k), optionally behind
    /// calibrated: or calibrated/M: (hubness correction over M neighbours, default 10). Example:
    /// calibrated:topk+rms:8. W is from 0 to 1e6, K from 1 to the probe count.
    #[arg(long, value_name = "NAME")]
    pub candidate: Option<String>,
    /// A discrepancy (named as for --candidate) to add to the --variants comparison; repeat.
    #[arg(long, value_name = "NAME", requires = "variants")]
    pub variant: Vec<String>,
    /// A collaboratively probed index of the gallery models (`append --probe-fraction F`, same
    /// probe set and model names), searched with this index's queries, to compare with a fixed
    /// subset of F of the probes; repeat for more fractions.
    #[arg(long, value_name = "F=INDEX", value_parser = parse_collab)]
    pub collab: Vec<(f64, PathBuf)>,
    /// Manifest the index was appended from (TorchScript models): the models are run again on
    /// --probes to get their raw logits, for the ablation without normalization. Relative paths
    /// in it resolve against its directory.
    #[arg(long, value_name = "FILE.toml", requires = "probes")]
    pub raw_manifest: Option<PathBuf>,
    /// The index's probe set (for --raw-manifest).
    #[arg(long, value_name = "FILE.pset")]
    pub probes: Option<PathBuf>,
    /// Where --raw-manifest and --clip-text run: auto, cpu, cuda, cuda:INDEX.
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: DeviceArg,
    /// Concept names to search by text, one per line (labels as the index spells them; one final
    /// newline is allowed, blank lines are not).
    #[arg(long, value_name = "FILE")]
    pub text_concepts: Option<PathBuf>,
    /// How a concept name becomes the query text; `{}` stands for the name.
    #[arg(long, value_name = "TEXT", default_value = "{}")]
    pub text_template: String,
    /// TorchScript text encoder (as `search --clip-text`).
    #[arg(long, value_name = "FILE.pt", requires_all = ["tokenizer", "text_concepts"], conflicts_with = "text_embeddings")]
    pub clip_text: Option<PathBuf>,
    /// tokenizer.json of the text encoder.
    #[arg(long, value_name = "FILE.json")]
    pub tokenizer: Option<PathBuf>,
    /// Tokens per text (padded or truncated).
    #[arg(long, value_name = "T", default_value_t = DEFAULT_CONTEXT_LENGTH as u32)]
    pub context_length: u32,
    /// Precomputed text embeddings [concepts, d] in the order of --text-concepts, instead of
    /// running a text encoder.
    #[arg(long, value_name = "FILE.npy", requires = "text_concepts")]
    pub text_embeddings: Option<PathBuf>,
    /// Bootstrap resamples of the paired differences.
    #[arg(long, value_name = "B", default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the random-k probes, probe subsets and bootstrap.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Also write the whole report as JSON to this file; it may not be one of the inputs (the
    /// index, a --collab index, ...).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn parse_collab(s: &str) -> Result<(f64, PathBuf), String> {
    let (f, path) = s.split_once('=').ok_or_else(|| {
        format!(
            "expected FRACTION=INDEX, got {}",
            excerpt(&format!("{s:?}"))
        )
    })?;
    let f: f64 = f.parse().map_err(|_| {
        format!(
            "expected a fraction before '=', got {}",
            excerpt(&format!("{f:?}"))
        )
    })?;
    if !(f > 0.0 && f <= 1.0) {
        return Err(format!("the fraction must be in (0, 1], got {f}"));
    }
    Ok((f, PathBuf::from(path)))
}

/// Most random subsets per probe count (`--subset-seeds`): each one measures every query again.
const MAX_SUBSET_SEEDS: u64 = 1000;

/// The values of a list flag, each checked to lie in `range` (a value outside is refused, not
/// dropped); when the flag is not given, the defaults that lie in it.
fn checked_list(
    given: &[usize],
    defaults: &[usize],
    range: std::ops::RangeInclusive<usize>,
    flag: &str,
    what: &str,
) -> Result<Vec<usize>> {
    if given.is_empty() {
        return Ok(defaults
            .iter()
            .copied()
            .filter(|v| range.contains(v))
            .collect());
    }
    for &v in given {
        ensure!(
            range.contains(&v),
            "{flag}: {what} {v} is out of range; each must be from {} to {} for this index",
            range.start(),
            range.end()
        );
    }
    Ok(given.to_vec())
}

/// Refuses a `--report` path that names an input of the evaluation.
fn refuse_report_over_inputs(args: &Args) -> Result<()> {
    let Some(report) = &args.report else {
        return Ok(());
    };
    let mut inputs: Vec<Role<'_>> = vec![("the index", &args.index)];
    inputs.extend(args.collab.iter().map(|(_, p)| ("--collab", p.as_path())));
    for (what, path) in [
        ("--raw-manifest", &args.raw_manifest),
        ("--probes", &args.probes),
        ("--text-concepts", &args.text_concepts),
        ("--clip-text", &args.clip_text),
        ("--tokenizer", &args.tokenizer),
        ("--text-embeddings", &args.text_embeddings),
    ] {
        if let Some(p) = path {
            inputs.push((what, p));
        }
    }
    refuse_outputs_over_inputs(&[("--report", report)], &inputs)
}

/// The labelled entries of an index, split into queries and gallery.
#[derive(Debug)]
struct Hub {
    /// Every usable entry: z-normalized descriptor, label id, model id as group.
    all: Rows,
    /// Positions in `all` of the query entries (whose label the gallery holds) and gallery
    /// entries.
    queries: Vec<usize>,
    gallery: Vec<usize>,
    labels: Vec<String>,
    query_models: usize,
    gallery_models: usize,
    /// Entry id of each row of `all`.
    entry_ids: Vec<u64>,
    /// Query entries left out because the gallery has no logit of their concept.
    unanswerable: usize,
    /// Constant logits (stored as zeros), left out.
    constant: usize,
    /// Names of the gallery models.
    gallery_names: std::collections::HashSet<String>,
    /// A name that two gallery models share (models may share names; `--collab` cannot match
    /// them by name then).
    shared_gallery_name: Option<String>,
}

fn load_hub(
    index: &Arc<Index>,
    split: &(String, String),
    restrict: Option<&(String, String)>,
) -> Result<Hub> {
    let raw = index.raw();
    let p = raw.num_probes();
    let mut all = Rows {
        probes: p,
        ..Default::default()
    };
    let mut labels: Vec<String> = Vec::new();
    let mut label_ids: HashMap<String, u32> = HashMap::new();
    let mut is_query = Vec::new();
    let mut entry_ids = Vec::new();
    let mut constant = 0;
    let (mut query_models, mut gallery_models) = (0, 0);
    let mut gallery_names = std::collections::HashSet::new();
    let mut shared_gallery_name = None;
    for m in 0..raw.model_count() {
        let info = raw.model(m).plain()?;
        let has =
            |(key, value): &(String, String)| info.meta.iter().any(|(k, v)| k == key && v == value);
        if restrict.is_some_and(|r| !has(r)) {
            continue;
        }
        let query = has(split);
        if query {
            query_models += 1;
        } else {
            gallery_models += 1;
            if !gallery_names.insert(info.name.clone()) {
                shared_gallery_name.get_or_insert_with(|| info.name.clone());
            }
        }
        for e in info.first_entry..info.first_entry + u64::from(info.logit_count) {
            let Some(label) = raw.entry_label(e).plain()? else {
                bail!(
                    "entry {e} (model {:?}) has no label: eval needs every logit's concept \
                     (append with --labels)",
                    info.name
                );
            };
            let d = raw.descriptor(e).plain()?;
            if d.iter().all(|&x| x == 0.0) {
                constant += 1;
                continue;
            }
            let next = label_ids.len() as u32;
            let id = *label_ids.entry(label.clone()).or_insert_with(|| {
                labels.push(label);
                next
            });
            all.values.extend(d);
            all.label.push(id);
            all.group.push(m as u32);
            is_query.push(query);
            entry_ids.push(e);
        }
    }
    ensure!(
        query_models > 0 && gallery_models > 0,
        "no split: {query_models} models have {}={} and {gallery_models} do not; eval needs both \
         query and gallery models",
        split.0,
        split.1
    );
    let gallery: Vec<usize> = (0..all.len()).filter(|&i| !is_query[i]).collect();
    let mut in_gallery = vec![false; labels.len()];
    for &i in &gallery {
        in_gallery[all.label[i] as usize] = true;
    }
    let candidates: Vec<usize> = (0..all.len()).filter(|&i| is_query[i]).collect();
    let queries: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| in_gallery[all.label[i] as usize])
        .collect();
    ensure!(
        !queries.is_empty(),
        "no query logit has its concept among the gallery's labels"
    );
    all.source = Some(Source {
        index: Arc::clone(index),
        entries: entry_ids.clone(),
    });
    Ok(Hub {
        unanswerable: candidates.len() - queries.len(),
        all,
        queries,
        gallery,
        labels,
        query_models,
        gallery_models,
        entry_ids,
        constant,
        gallery_names,
        shared_gallery_name,
    })
}

/// One evaluated setting: queries, gallery and the scores' inputs.
#[derive(Debug)]
struct Setting {
    name: String,
    queries: Rows,
    gallery: Rows,
    /// Raw (not normalized) queries and gallery, for the ablation without normalization.
    raw_queries: Option<Rows>,
    raw_gallery: Option<Rows>,
}

/// A measured line of a report section.
#[derive(Debug, Clone, Serialize)]
struct Line {
    setting: String,
    method: String,
    #[serde(flatten)]
    summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_topk: Option<Difference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_full: Option<Difference>,
    /// A parameter of the line (k, probe count, fraction), when the section varies one.
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    index: String,
    probes: usize,
    k: usize,
    query_models: usize,
    gallery_models: usize,
    logit_queries: usize,
    unanswerable_queries: usize,
    constant_logits: usize,
    gallery_entries: usize,
    chance: Vec<Chance>,
    table: Vec<Line>,
    ablations: Vec<Line>,
    k_sweep: Vec<Line>,
    probe_curve: Vec<Line>,
    variants: Vec<Line>,
    collab: Vec<Line>,
}

#[derive(Debug, Serialize)]
struct Chance {
    setting: String,
    queries: usize,
    gallery: usize,
    top1: f64,
    top5: f64,
}

pub fn run(args: Args) -> Result<()> {
    refuse_report_over_inputs(&args)?;
    ensure!(
        (1..=MAX_SUBSET_SEEDS).contains(&args.subset_seeds),
        "--subset-seeds {} is out of range: it must be from 1 to {MAX_SUBSET_SEEDS}",
        args.subset_seeds
    );
    ensure!(args.bootstrap >= 1, "--bootstrap must be at least 1");
    let index = Arc::new(open_index(&args.index)?);
    let hub = load_hub(&index, &args.query_models, args.restrict.as_ref())
        .with_context(|| args.index.display().to_string())?;
    let p = hub.all.probes;
    let k = match args.k {
        None => DEFAULT_K.min(p),
        Some(k) => {
            ensure!(
                k as usize <= p,
                "--k {k} is more than the {p} probes of {}",
                args.index.display()
            );
            k as usize
        }
    };
    let ks = checked_list(&args.ks, DEFAULT_KS, 1..=p, "--ks", "k")?;
    let probe_counts = checked_list(
        &args.probe_counts,
        DEFAULT_PROBE_COUNTS,
        2..=p.saturating_sub(1),
        "--probe-counts",
        "probe count",
    )?;
    let candidate = args
        .candidate
        .as_deref()
        .map(|name| -> Result<(String, Discrepancy)> {
            Ok((
                name.to_string(),
                parse_variant(name, k, p).context("--candidate")?,
            ))
        })
        .transpose()?;
    let mut extra: Vec<(String, Discrepancy)> = args
        .variant
        .iter()
        .map(|name| {
            Ok((
                name.clone(),
                parse_variant(name, k, p).context("--variant")?,
            ))
        })
        .collect::<Result<_>>()?;
    // The candidate is always among the variants compared.
    if let Some(c) = &candidate
        && !variant_list(k).iter().chain(&extra).any(|(_, d)| *d == c.1)
    {
        extra.push(c.clone());
    }

    let mut logit = Setting {
        name: "logit->logit".into(),
        queries: hub.all.select(&hub.queries),
        gallery: hub.all.select(&hub.gallery),
        raw_queries: None,
        raw_gallery: None,
    };
    let mut text = match &args.text_concepts {
        Some(path) => Some(text_setting(&args, path, &index, &hub)?),
        None => None,
    };
    if args.ablations
        && let Some(manifest) = &args.raw_manifest
    {
        let probes = args
            .probes
            .as_deref()
            .context("--raw-manifest needs --probes")?;
        let raw = raw_logits(&index, &hub, manifest, probes, args.device)?;
        logit.raw_queries = Some(raw.select(&hub.queries));
        logit.raw_gallery = Some(raw.select(&hub.gallery));
        if let Some(t) = &mut text {
            t.raw_gallery = Some(raw);
        }
    }
    let settings: Vec<&Setting> = std::iter::once(&logit).chain(text.as_ref()).collect();

    let mut report = Report {
        index: args.index.display().to_string(),
        probes: p,
        k,
        query_models: hub.query_models,
        gallery_models: hub.gallery_models,
        logit_queries: hub.queries.len(),
        unanswerable_queries: hub.unanswerable,
        constant_logits: hub.constant,
        gallery_entries: hub.gallery.len(),
        chance: settings
            .iter()
            .map(|s| {
                let (top1, top5) = chance(&s.queries, &s.gallery);
                Chance {
                    setting: s.name.clone(),
                    queries: s.queries.len(),
                    gallery: s.gallery.len(),
                    top1,
                    top5,
                }
            })
            .collect(),
        table: Vec::new(),
        ablations: Vec::new(),
        k_sweep: Vec::new(),
        probe_curve: Vec::new(),
        variants: Vec::new(),
        collab: Vec::new(),
    };

    for s in &settings {
        let topk = Discrepancy::TopK(k);
        report
            .table
            .push(line(s, "ProbeLog top-k", &measure_kind(s, &topk), None));
        report.table.push(line(
            s,
            "full-query Euclidean",
            &measure_kind(s, &Discrepancy::Full),
            None,
        ));
        let model = retrieve_models(&s.queries, &s.gallery);
        report.table.push(line(s, "model-level", &model, None));
        if let Some((name, c)) = &candidate {
            let method = format!("candidate {name}: {}", c.name());
            report
                .table
                .push(line(s, &method, &measure_kind(s, c), None));
        }
    }
    if args.ablations {
        for s in &settings {
            report.ablations.extend(ablations(s, k, args.seed));
        }
    }
    if args.k_sweep {
        for s in &settings {
            for &kk in &ks {
                let mut l = line(s, "top-k", &measure_kind(s, &Discrepancy::TopK(kk)), None);
                l.x = Some(kk as f64);
                report.k_sweep.push(l);
            }
            let mut l = line(
                s,
                "full-query Euclidean",
                &measure_kind(s, &Discrepancy::Full),
                None,
            );
            l.x = Some(p as f64);
            report.k_sweep.push(l);
        }
    }
    if args.probe_curve {
        for s in &settings {
            report.probe_curve.extend(probe_curve(
                s,
                &probe_counts,
                k,
                candidate.as_ref().map(|c| &c.1),
                args.subset_seeds,
                args.seed,
            ));
        }
    }
    if args.variants {
        for s in &settings {
            report
                .variants
                .extend(variants(s, k, &extra, args.bootstrap, args.seed));
        }
    }
    for (fraction, path) in &args.collab {
        report.collab.extend(collab(
            &logit,
            &hub,
            &index,
            *fraction,
            path,
            k,
            candidate.as_ref().map(|c| &c.1),
            args.subset_seeds,
            args.seed,
        )?);
    }

    if let Some(path) = &args.report {
        // Checked again: an input may have been linked to the report's path meanwhile.
        refuse_report_over_inputs(&args)?;
        let text = serde_json::to_string_pretty(&report)?;
        fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        print_json(&report)
    } else {
        print_report(&report)
    }
}

fn measure_kind(s: &Setting, kind: &Discrepancy) -> Vec<Outcome> {
    retrieve(&Scorer::new(kind, &s.gallery), &s.queries)
}

fn line(s: &Setting, method: &str, outcomes: &[Outcome], x: Option<f64>) -> Line {
    Line {
        setting: s.name.clone(),
        method: method.to_string(),
        summary: summarize(outcomes),
        vs_topk: None,
        vs_full: None,
        x,
    }
}

fn ablations(s: &Setting, k: usize, seed: u64) -> Vec<Line> {
    let p = s.gallery.probes;
    let mut out = vec![
        line(
            s,
            &format!("top-k (k={k})"),
            &measure_kind(s, &Discrepancy::TopK(k)),
            None,
        ),
        line(
            s,
            &format!("bottom-k (k={k})"),
            &measure_kind(s, &Discrepancy::BottomK(k)),
            None,
        ),
        line(
            s,
            &format!("random-k (k={k})"),
            &measure_kind(s, &Discrepancy::RandomK { k, seed }),
            None,
        ),
        line(
            s,
            "all probes, L1",
            &measure_kind(s, &Discrepancy::TopK(p)),
            None,
        ),
        line(
            s,
            "all probes, Euclidean",
            &measure_kind(s, &Discrepancy::Full),
            None,
        ),
    ];
    if let (Some(q), Some(g)) = (&s.raw_queries, &s.raw_gallery) {
        let kind = Discrepancy::TopK(k);
        let o = retrieve(&Scorer::new(&kind, g), q);
        out.push(line(
            s,
            &format!("top-k without normalization (k={k})"),
            &o,
            None,
        ));
        let o = retrieve(&Scorer::new(&Discrepancy::Full, g), q);
        out.push(line(s, "full-query without normalization", &o, None));
    }
    out
}

/// The variants compared by `--variants`, with their short names.
fn variant_list(k: usize) -> Vec<(String, Discrepancy)> {
    let topk = Discrepancy::TopK(k);
    let mut v = vec![
        ("topk".to_string(), topk.clone()),
        ("full".to_string(), Discrepancy::Full),
    ];
    for w in [0.5f32, 1.0, 2.0, 4.0] {
        v.push((
            format!("topk+all:{w}"),
            Discrepancy::TopKPlusAll { k, weight: w },
        ));
    }
    for w in [2.0f32, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0] {
        v.push((
            format!("topk+rms:{w}"),
            Discrepancy::TopKPlusRms { k, weight: w },
        ));
    }
    v.push(("union".into(), Discrepancy::Union(k)));
    v.push(("rank".into(), Discrepancy::RankTopK(k)));
    for (name, base) in [
        ("topk", topk),
        ("union", Discrepancy::Union(k)),
        (
            "topk+rms:8",
            Discrepancy::TopKPlusRms {
                k,
                weight: DEFAULT_BLEND_WEIGHT,
            },
        ),
        ("full", Discrepancy::Full),
    ] {
        v.push((
            format!("calibrated:{name}"),
            Discrepancy::Calibrated {
                base: Box::new(base),
                neighbours: 10,
            },
        ));
    }
    v
}

/// A discrepancy by name: `topk`, `full`, `union`, `rank`, `topk+all:W` or `topk+rms:W` (W from
/// 0 to [`probelog::search::MAX_BLEND_WEIGHT`]), with `@K` for a k other than the default (at most the probe count
/// `p`), behind `calibrated:` or `calibrated/M:` for the hubness correction over M neighbours
/// (10 by default). Examples: `topk@64`, `calibrated/20:topk+rms:8`.
fn parse_variant(name: &str, k: usize, p: usize) -> Result<Discrepancy> {
    let err = || {
        anyhow::anyhow!(
            "discrepancy {}: expected topk, full, union, rank, topk+all:W or topk+rms:W, optionally \
             with @K, optionally behind calibrated: or calibrated/M:",
            excerpt(&format!("{name:?}"))
        )
    };
    let weight = |w: &str| -> Result<f32> {
        let w: f32 = w.parse().map_err(|_| err())?;
        check_blend_weight(w).map_err(|_| {
            anyhow::anyhow!(
                "discrepancy {}: the blend weight {w:e} is out of range: it must be a number \
                 from 0 to {:e} (larger weights make the scores overflow)",
                excerpt(&format!("{name:?}")),
                probelog::search::MAX_BLEND_WEIGHT
            )
        })
    };
    if let Some(rest) = name.strip_prefix("calibrated") {
        let (m, base) = rest.split_once(':').ok_or_else(err)?;
        let neighbours = match m.strip_prefix('/') {
            Some(m) => m.parse::<usize>().ok().filter(|&m| m > 0).ok_or_else(err)?,
            None if m.is_empty() => 10,
            None => return Err(err()),
        };
        return Ok(Discrepancy::Calibrated {
            base: Box::new(parse_variant(base, k, p)?),
            neighbours,
        });
    }
    let (base, k) = match name.rsplit_once('@') {
        Some((base, kk)) => {
            let kk = kk
                .parse::<usize>()
                .ok()
                .filter(|&x| x > 0)
                .ok_or_else(err)?;
            ensure!(
                kk <= p,
                "discrepancy {}: k = {kk} is more than the {p} probes",
                excerpt(&format!("{name:?}"))
            );
            (base, kk)
        }
        None => (name, k),
    };
    if let Some(w) = base.strip_prefix("topk+rms:") {
        return Ok(Discrepancy::TopKPlusRms {
            k,
            weight: weight(w)?,
        });
    }
    if let Some(w) = base.strip_prefix("topk+all:") {
        return Ok(Discrepancy::TopKPlusAll {
            k,
            weight: weight(w)?,
        });
    }
    match base {
        "topk" => Ok(Discrepancy::TopK(k)),
        "full" => Ok(Discrepancy::Full),
        "union" => Ok(Discrepancy::Union(k)),
        "rank" => Ok(Discrepancy::RankTopK(k)),
        _ => Err(err()),
    }
}

fn variants(
    s: &Setting,
    k: usize,
    extra: &[(String, Discrepancy)],
    reps: usize,
    seed: u64,
) -> Vec<Line> {
    let mut list = variant_list(k);
    list.extend(extra.iter().cloned());
    let outcomes: Vec<Vec<Outcome>> = list.iter().map(|(_, d)| measure_kind(s, d)).collect();
    let groups = &s.queries.group;
    list.iter()
        .zip(&outcomes)
        .map(|((name, d), o)| Line {
            setting: s.name.clone(),
            method: format!("{name}: {}", d.name()),
            summary: summarize(o),
            vs_topk: Some(paired_difference(o, &outcomes[0], groups, reps, seed)),
            vs_full: Some(paired_difference(o, &outcomes[1], groups, reps, seed)),
            x: None,
        })
        .collect()
}

/// Pooled outcomes over `seeds` random subsets of `n` probes.
fn subset_outcomes(
    s: &Setting,
    n: usize,
    kind: &Discrepancy,
    seeds: u64,
    seed: u64,
) -> Vec<Outcome> {
    let p = s.gallery.probes;
    let mut pooled = Vec::new();
    for r in 0..seeds {
        let mut probes: Vec<u32> = (0..p as u32).collect();
        probes.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(1000 + r)));
        probes.truncate(n);
        probes.sort_unstable();
        let sub = Setting {
            name: s.name.clone(),
            queries: s.queries.restrict(&probes),
            gallery: s.gallery.restrict(&probes),
            raw_queries: None,
            raw_gallery: None,
        };
        pooled.extend(measure_kind(&sub, &clamp_k(kind, n)));
    }
    pooled
}

/// The same discrepancy with its k at most `n`.
fn clamp_k(kind: &Discrepancy, n: usize) -> Discrepancy {
    match kind {
        Discrepancy::TopK(k) => Discrepancy::TopK((*k).min(n)),
        Discrepancy::TopKPlusAll { k, weight } => Discrepancy::TopKPlusAll {
            k: (*k).min(n),
            weight: *weight,
        },
        Discrepancy::TopKPlusRms { k, weight } => Discrepancy::TopKPlusRms {
            k: (*k).min(n),
            weight: *weight,
        },
        Discrepancy::Union(k) => Discrepancy::Union((*k).min(n)),
        Discrepancy::RankTopK(k) => Discrepancy::RankTopK((*k).min(n)),
        Discrepancy::Calibrated { base, neighbours } => Discrepancy::Calibrated {
            base: Box::new(clamp_k(base, n)),
            neighbours: *neighbours,
        },
        other => other.clone(),
    }
}

fn probe_curve(
    s: &Setting,
    counts: &[usize],
    k: usize,
    candidate: Option<&Discrepancy>,
    seeds: u64,
    seed: u64,
) -> Vec<Line> {
    let p = s.gallery.probes;
    let mut kinds = vec![
        ("top-k".to_string(), Discrepancy::TopK(k)),
        ("full-query Euclidean".to_string(), Discrepancy::Full),
    ];
    if let Some(c) = candidate {
        kinds.push((c.name(), c.clone()));
    }
    let mut out = Vec::new();
    // The counts were checked to be below p (run).
    let mut counts = counts.to_vec();
    counts.push(p);
    for n in counts {
        for (name, kind) in &kinds {
            let o = if n == p {
                measure_kind(s, kind)
            } else {
                subset_outcomes(s, n, kind, seeds, seed)
            };
            out.push(line(s, name, &o, Some(n as f64)));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn collab(
    full: &Setting,
    hub: &Hub,
    evaluated: &Index,
    fraction: f64,
    path: &Path,
    k: usize,
    candidate: Option<&Discrepancy>,
    seeds: u64,
    seed: u64,
) -> Result<Vec<Line>> {
    if let Some(name) = &hub.shared_gallery_name {
        bail!(
            "--collab matches the gallery models by name, but {} names more than one gallery \
             model of {}; give them names of their own",
            excerpt(&format!("{name:?}")),
            evaluated.path().display()
        );
    }
    let index = Arc::new(open_index(path)?);
    let (theirs, ours) = (index.raw().probe_set(), evaluated.raw().probe_set());
    ensure!(
        theirs == ours,
        "--collab {}: its probe set ({theirs}) is not the one of the evaluated index {} ({ours}); \
         a collaboratively probed index is compared on the same probes",
        path.display(),
        evaluated.path().display()
    );
    let gallery = load_gallery(&index, hub).with_context(|| path.display().to_string())?;
    let partial = Setting {
        name: format!("collaborative {fraction}"),
        queries: full.queries.clone(),
        gallery,
        raw_queries: None,
        raw_gallery: None,
    };
    let p = full.gallery.probes;
    let n = ((p as f64 * fraction).round() as usize).clamp(2, p);
    let mut kinds = vec![
        ("top-k".to_string(), Discrepancy::TopK(k)),
        ("full-query Euclidean".to_string(), Discrepancy::Full),
    ];
    if let Some(c) = candidate {
        kinds.push((c.name(), c.clone()));
    }
    let mut out = Vec::new();
    for (name, kind) in &kinds {
        let mut l = line(
            &partial,
            name,
            &measure_kind(&partial, kind),
            Some(fraction),
        );
        l.setting = format!("collaborative, {n} probes per model");
        out.push(l);
        let mut l = line(
            full,
            name,
            &subset_outcomes(full, n, kind, seeds, seed),
            Some(fraction),
        );
        l.setting = format!("fixed subset, {n} probes");
        out.push(l);
        let mut l = line(full, name, &measure_kind(full, kind), Some(1.0));
        l.setting = format!("full probing, {p} probes");
        out.push(l);
    }
    Ok(out)
}

/// The gallery of a collaboratively probed index: its models that are gallery models of `hub`
/// (by name), every one of them, each logit with the label ids of `hub`.
fn load_gallery(index: &Arc<Index>, hub: &Hub) -> Result<Rows> {
    let raw = index.raw();
    ensure!(
        raw.num_probes() == hub.all.probes,
        "{} probes, the evaluated index has {}",
        raw.num_probes(),
        hub.all.probes
    );
    let ids: HashMap<&str, u32> = hub
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let mut rows = Rows {
        probes: hub.all.probes,
        ..Default::default()
    };
    let mut entries = Vec::new();
    let mut models = 0;
    for m in 0..raw.model_count() {
        let info = raw.model(m).plain()?;
        if !hub.gallery_names.contains(&info.name) {
            continue;
        }
        models += 1;
        for e in info.first_entry..info.first_entry + u64::from(info.logit_count) {
            let label = raw.entry_label(e).plain()?.unwrap_or_default();
            let Some(&id) = ids.get(label.as_str()) else {
                continue;
            };
            let d = raw.descriptor(e).plain()?;
            if d.iter().all(|&x| x == 0.0) {
                continue;
            }
            rows.values.extend(d);
            rows.label.push(id);
            rows.group.push(m as u32);
            entries.push(e);
        }
    }
    ensure!(
        models == hub.gallery_names.len(),
        "holds {models} of the {} gallery models of the evaluated index (matched by name)",
        hub.gallery_names.len()
    );
    rows.source = Some(Source {
        index: Arc::clone(index),
        entries,
    });
    Ok(rows)
}

/// Text queries: each concept of the file that some logit of the index carries.
fn text_setting(args: &Args, path: &Path, index: &Index, hub: &Hub) -> Result<Setting> {
    let raw = index.raw();
    let Some((emb, dim)) = raw.probe_embeddings().plain()? else {
        bail!(
            "{}: the index has no probe embeddings; run `probes embed` before evaluating text \
             queries",
            args.index.display()
        );
    };
    let concepts = read_lines(path, "--text-concepts")?;
    let ids: HashMap<&str, u32> = hub
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let embeddings: Vec<Vec<f32>> = match (&args.text_embeddings, &args.clip_text) {
        (Some(file), _) => {
            let m = npy::read_matrix(file, "[concepts, d]")?;
            ensure!(
                m.rows == concepts.len() && m.cols == dim,
                "{}: shape [{}, {}], expected [{}, {dim}] (one row per line of {})",
                file.display(),
                m.rows,
                m.cols,
                concepts.len(),
                path.display()
            );
            m.data.chunks_exact(dim).map(<[f32]>::to_vec).collect()
        }
        (None, Some(encoder)) => {
            let tokenizer = args
                .tokenizer
                .as_deref()
                .context("--clip-text needs --tokenizer")?;
            input::require_regular(encoder, "--clip-text")?;
            input::require_regular(tokenizer, "--tokenizer")?;
            let spec = TextSpec {
                encoder,
                tokenizer,
                context_length: args.context_length as usize,
                mask: MaskArg::Auto,
                device: args.device,
            };
            concepts
                .iter()
                .map(|c| {
                    let text = args.text_template.replace("{}", c);
                    let e = embed_text(&text, &spec)?;
                    ensure!(
                        e.values.len() == dim,
                        "the text encoder returns {} dimensions, the probe embeddings have {dim}",
                        e.values.len()
                    );
                    Ok(e.values)
                })
                .collect::<Result<_>>()?
        }
        (None, None) => {
            bail!("--text-concepts needs --clip-text and --tokenizer, or --text-embeddings")
        }
    };
    let p = raw.num_probes();
    let mut queries = Rows {
        probes: p,
        ..Default::default()
    };
    let mut raw_queries = queries.clone();
    for (c, t) in concepts.iter().zip(&embeddings) {
        let Some(&id) = ids.get(c.as_str()) else {
            continue; // no logit of the index detects it
        };
        let sims: Vec<f32> = emb
            .chunks_exact(dim)
            .map(|row| {
                row.iter()
                    .zip(t)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum::<f64>() as f32
            })
            .collect();
        let mut z = sims.clone();
        measure::zscore(&mut z);
        let g = queries.len() as u32;
        queries.values.extend(z);
        queries.label.push(id);
        queries.group.push(g);
        raw_queries.values.extend(sims);
        raw_queries.label.push(id);
        raw_queries.group.push(g);
    }
    ensure!(
        !queries.label.is_empty(),
        "{}: no concept of the file is a label of the index",
        path.display()
    );
    Ok(Setting {
        name: "text->logit".into(),
        queries,
        gallery: hub.all.clone(),
        raw_queries: Some(raw_queries),
        raw_gallery: None,
    })
}

/// A manifest table, as far as eval needs it to run the model again.
#[derive(Debug, Deserialize)]
struct RawManifest {
    model: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
struct RawModel {
    model: Option<PathBuf>,
    name: Option<String>,
    input_size: Option<u32>,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    batch: Option<u32>,
}

/// Every row of `hub.all` as the model's raw logits over the probes (entry-major).
fn raw_logits(
    index: &Index,
    hub: &Hub,
    manifest: &Path,
    probes: &Path,
    device: DeviceArg,
) -> Result<Rows> {
    let text = input::read_text(manifest, "--raw-manifest")?;
    let parsed: RawManifest = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", manifest.display(), excerpt(e.message().trim())))?;
    let base = manifest.parent().unwrap_or(Path::new(""));
    let mut by_name = HashMap::new();
    for (i, m) in parsed.model.into_iter().enumerate() {
        let Some(file) = m.model else { continue };
        let name = match m.name {
            Some(n) => n,
            None => file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let entry = format!(
            "{}: model {} ({})",
            manifest.display(),
            i + 1,
            excerpt(&format!("{name:?}"))
        );
        check_input_settings(m.mean, m.std, m.input_size, m.batch, &entry)?;
        ensure!(
            !by_name.contains_key(&name),
            "{entry}: another model of the manifest has this name; eval matches the index's \
             models by name"
        );
        let spec = InputSpec {
            size: m.input_size,
            mean: m.mean,
            std: m.std,
            batch: m.batch.map_or(DEFAULT_BATCH, |b| b as usize),
        };
        by_name.insert(name, (base.join(file), spec));
    }
    let set = ProbeSet::read(probes)?;
    let raw_index = index.raw();
    ensure!(
        set.id() == raw_index.probe_set(),
        "{}: not the index's probe set",
        probes.display()
    );
    let prober = Prober::new(set, device)?;
    let p = hub.all.probes;
    let mut out = Rows {
        probes: p,
        values: vec![0f32; hub.all.values.len()],
        label: hub.all.label.clone(),
        group: hub.all.group.clone(),
        source: None,
    };
    let mut cache: HashMap<u32, (u64, Vec<f32>, usize)> = HashMap::new();
    for (row, &e) in hub.entry_ids.iter().enumerate() {
        let m = hub.all.group[row];
        if !cache.contains_key(&m) {
            let info = raw_index.model(u64::from(m)).plain()?;
            let (path, spec) = by_name.get(&info.name).with_context(|| {
                format!("model {:?} is not in {}", info.name, manifest.display())
            })?;
            input::require_regular(path, &format!("the model file of {:?}", info.name))?;
            let probed = prober
                .probe(path, spec, None, &|| {})
                .with_context(|| format!("model {:?} ({})", info.name, path.display()))?;
            ensure!(
                probed.num_logits == info.logit_count as usize,
                "model {:?}: {} logits, the index holds {}",
                info.name,
                probed.num_logits,
                info.logit_count
            );
            cache.clear(); // rows come model by model
            cache.insert(m, (info.first_entry, probed.logits, probed.num_logits));
        }
        let (first, logits, l) = &cache[&m];
        let j = (e - first) as usize;
        for (pr, v) in out.values[row * p..(row + 1) * p].iter_mut().enumerate() {
            *v = logits[pr * l + j];
        }
    }
    Ok(out)
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

fn with_ci(x: f64, ci: (f64, f64)) -> String {
    format!("{} [{}, {}]", pct(x), pct(ci.0), pct(ci.1))
}

fn diff(d: &Option<Difference>, top5: bool) -> String {
    match d {
        None => String::new(),
        Some(d) => {
            let (v, ci) = if top5 {
                (d.top5, d.top5_ci)
            } else {
                (d.top1, d.top1_ci)
            };
            format!(
                "{:+.1} [{:+.1}, {:+.1}]",
                100.0 * v,
                100.0 * ci.0,
                100.0 * ci.1
            )
        }
    }
}

fn section(
    out: &mut dyn Write,
    title: &str,
    lines: &[Line],
    with_x: Option<&'static str>,
) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{title}")?;
    let differences = lines.iter().any(|l| l.vs_topk.is_some());
    let mut cols = vec![("setting", Align::Left)];
    if let Some(x) = with_x {
        cols.push((x, Align::Right));
    }
    cols.extend([
        ("method", Align::Left),
        ("queries", Align::Right),
        ("top-1 % [95% CI]", Align::Right),
        ("top-5 % [95% CI]", Align::Right),
        ("P@5 %", Align::Right),
    ]);
    if differences {
        cols.extend([
            ("top-1 vs top-k", Align::Right),
            ("top-1 vs full", Align::Right),
            ("top-5 vs top-k", Align::Right),
            ("top-5 vs full", Align::Right),
        ]);
    }
    let mut table = Table::new(&cols);
    for l in lines {
        let mut cells = vec![l.setting.clone()];
        if with_x.is_some() {
            cells.push(l.x.map_or(String::new(), |x| format!("{x}")));
        }
        cells.extend([
            l.method.clone(),
            l.summary.queries.to_string(),
            with_ci(l.summary.top1, l.summary.top1_ci),
            with_ci(l.summary.top5, l.summary.top5_ci),
            pct(l.summary.precision5),
        ]);
        if differences {
            cells.extend([
                diff(&l.vs_topk, false),
                diff(&l.vs_full, false),
                diff(&l.vs_topk, true),
                diff(&l.vs_full, true),
            ]);
        }
        table.row(cells);
    }
    table.write(out)
}

fn print_report(r: &Report) -> Result<()> {
    let mut out = io::stdout().lock();
    outln!(
        "{}: {} probes, k = {}; {} query models ({} logit queries; {} left out: concept not in \
         the gallery), {} gallery models ({} logits); {} constant logits left out",
        r.index,
        r.probes,
        r.k,
        r.query_models,
        r.logit_queries,
        r.unanswerable_queries,
        r.gallery_models,
        r.gallery_entries,
        r.constant_logits
    )?;
    for c in &r.chance {
        outln!(
            "chance, {}: top-1 {}%, top-5 {}% ({} queries, gallery of {})",
            c.setting,
            pct(c.top1),
            pct(c.top5),
            c.queries,
            c.gallery
        )?;
    }
    section(&mut out, "Table 1 analogue", &r.table, None)?;
    section(&mut out, "Ablations", &r.ablations, None)?;
    section(&mut out, "k sweep", &r.k_sweep, Some("k"))?;
    section(
        &mut out,
        "Accuracy against the number of probes",
        &r.probe_curve,
        Some("probes"),
    )?;
    section(
        &mut out,
        "Discrepancy variants (differences in points, paired bootstrap over query models)",
        &r.variants,
        None,
    )?;
    section(
        &mut out,
        "Collaborative probing",
        &r.collab,
        Some("fraction"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_parse() {
        assert_eq!(
            parse_variant("topk", 16, 64).unwrap(),
            Discrepancy::TopK(16)
        );
        assert_eq!(
            parse_variant("topk@64", 16, 64).unwrap(),
            Discrepancy::TopK(64)
        );
        assert_eq!(
            parse_variant("topk+all:0.5@8", 16, 64).unwrap(),
            Discrepancy::TopKPlusAll { k: 8, weight: 0.5 }
        );
        assert_eq!(
            parse_variant("topk+rms:8@32", 16, 64).unwrap(),
            Discrepancy::TopKPlusRms { k: 32, weight: 8.0 }
        );
        assert_eq!(
            parse_variant("calibrated/20:union", 16, 64).unwrap(),
            Discrepancy::Calibrated {
                base: Box::new(Discrepancy::Union(16)),
                neighbours: 20
            }
        );
        assert_eq!(
            parse_variant("calibrated:full", 16, 64).unwrap(),
            Discrepancy::Calibrated {
                base: Box::new(Discrepancy::Full),
                neighbours: 10
            }
        );
        for bad in [
            "",
            "topk@0",
            "topk@x",
            "calibrated",
            "calibrated/0:topk",
            "calibratedx:topk",
            "topk+all:w",
            "topk+all:nan",
            "topk+rms:-1",
            "topk+rms:3e38",
            "topk@65",
            "calibrated:topk+rms:inf",
            "l2",
        ] {
            assert!(parse_variant(bad, 16, 64).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn collab_fractions_parse() {
        assert_eq!(
            parse_collab("0.33=a.plog").unwrap(),
            (0.33, PathBuf::from("a.plog"))
        );
        assert!(parse_collab("0=a.plog").is_err());
        assert!(parse_collab("1.5=a.plog").is_err());
        assert!(parse_collab("a.plog").is_err());
    }
}
