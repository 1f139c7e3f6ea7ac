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

mod load;
mod measure;
mod report;
mod studies;

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

use self::load::{Hub, load_gallery, load_hub, raw_logits, text_setting};
use self::measure::{
    Difference, Discrepancy, Outcome, Rows, Scorer, Source, Summary, chance, paired_difference,
    retrieve, retrieve_models, summarize,
};
use self::report::print_report;
use self::studies::{ablations, collab, parse_variant, probe_curve, variant_list, variants};
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
