//! `demo`: a synthetic model zoo in a new index, and one example search showing that the best
//! logits of other models detect the query's concept.

use std::io;
use std::path::PathBuf;

use anyhow::{Result, ensure};
use probelog::testkit::synth::{SynthConfig, SynthZoo};
use probelog::{
    AppendOptions, CreateOptions, Grouping, IndexWriter, LogitMatrix, ModelInput, SearchParams,
};

use super::{LibResult, open_index, search, with_writer_lock};
use crate::output::{outln, progress};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path of the new index; an existing file is never overwritten.
    pub index: PathBuf,
    /// Number of synthetic models.
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub models: u32,
    /// Number of probes.
    #[arg(long, value_name = "P", default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=100_000))]
    pub probes: u32,
    /// Seed of the generator; the same seed builds the same zoo.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

/// Results shown by the example search.
const TOP: usize = 10;

pub fn run(args: Args) -> Result<()> {
    let path = &args.index;
    ensure!(
        !path.exists(),
        "{} exists already; the demo only writes new indexes",
        path.display()
    );
    let zoo = SynthZoo::generate(SynthConfig {
        probes: args.probes as usize,
        models: args.models as usize,
        seed: args.seed,
        ..SynthConfig::default()
    });
    probelog::create(path, &CreateOptions::new(args.probes)).at(path)?;
    let mut writer = with_writer_lock(path, false, |wait| IndexWriter::open(path, wait))?;
    let bar = progress(zoo.models.len() as u64, "models");
    for m in &zoo.models {
        let input = ModelInput {
            name: m.name.clone(),
            source: format!("probelog synth, seed {}", args.seed),
            meta: vec![("generator".into(), "probelog-tool demo".into())],
            labels: Some(m.concepts.iter().map(|c| format!("concept-{c}")).collect()),
            logits: LogitMatrix::new(&m.logits, zoo.config.probes, m.concepts.len()).plain()?,
        };
        writer.add_model(input, AppendOptions::default()).plain()?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let commit = writer.commit().at(path)?;
    drop(writer);
    outln!(
        "built {}: {} synthetic models, {} entries over {} probes (commit {})",
        path.display(),
        commit.model_count,
        commit.entry_count,
        args.probes,
        commit.sequence
    )?;

    // Which other models recognize the concept of model 0's first logit?
    let index = open_index(path)?;
    let params = SearchParams {
        top: TOP,
        exclude_same_model: true,
        grouping: Grouping::PerModel,
        ..SearchParams::default()
    };
    let report = search::search_entry(&index, 0, &params, None)?;
    outln!()?;
    outln!(
        "example: probelog-tool search {} --entry 0 --exclude-same-model --per-model",
        path.display()
    )?;
    report.write_human(&mut io::stdout().lock())?;
    let query_label = format!("concept-{}", zoo.models[0].concepts[0]);
    let shared = report
        .results
        .iter()
        .filter(|r| r.label.as_deref() == Some(query_label.as_str()))
        .count();
    let holders = zoo.models[1..]
        .iter()
        .filter(|m| m.concepts.contains(&zoo.models[0].concepts[0]))
        .count();
    outln!()?;
    outln!(
        "{shared} of the top {} hits share the query's label {query_label} ({holders} other models detect it)",
        report.results.len()
    )?;
    Ok(())
}
