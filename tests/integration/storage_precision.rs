//! f16 storage keeps the results: on a synthetic zoo, f16 and f32 indexes of the same logits give
//! the same top-1 answers and nearly the same top-10 lists.

use probelog::testkit::synth::{SynthConfig, SynthZoo};
use probelog::{
    AppendOptions, CreateOptions, Dtype, Index, IndexWriter, LockWait, LogitMatrix, ModelInput,
    SearchParams, create,
};

fn build(path: &std::path::Path, zoo: &SynthZoo, dtype: Dtype) -> Index {
    let mut opts = CreateOptions::new(zoo.config.probes as u32);
    opts.dtype = dtype;
    create(path, &opts).unwrap();
    let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
    for m in &zoo.models {
        let input = ModelInput {
            name: m.name.clone(),
            source: String::new(),
            meta: vec![],
            labels: Some(m.concepts.iter().map(|c| c.to_string()).collect()),
            logits: LogitMatrix::new(&m.logits, zoo.config.probes, m.concepts.len()).unwrap(),
        };
        w.add_model(input, AppendOptions::default()).unwrap();
    }
    w.commit().unwrap();
    Index::open(path).unwrap()
}

#[test]
fn f16_storage_keeps_the_rankings_of_f32() {
    let seed = 5;
    let zoo = SynthZoo::generate(SynthConfig {
        probes: 500,
        concepts: 60,
        models: 80,
        concept_density: 0.01,
        seed,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let f32_index = build(&dir.path().join("a.plog"), &zoo, Dtype::F32);
    let f16_index = build(&dir.path().join("b.plog"), &zoo, Dtype::F16);
    let params = SearchParams {
        top: 10,
        exclude_same_model: true,
        ..Default::default()
    };
    let (mut same_top1, mut overlap, mut queries) = (0usize, 0usize, 0usize);
    for e in (0..f32_index.entry_count()).step_by(3) {
        // The same query descriptor for both, so only the stored gallery differs.
        let q = f32_index.descriptor(e).unwrap();
        let model = f32_index.model_of_entry(e).unwrap();
        let a = f32_index
            .search_descriptor(&q, Some(model), &params)
            .unwrap();
        let b = f16_index
            .search_descriptor(&q, Some(model), &params)
            .unwrap();
        same_top1 += usize::from(a[0].id == b[0].id);
        overlap += a.iter().filter(|x| b.iter().any(|y| y.id == x.id)).count();
        queries += 1;
        for (x, y) in a.iter().zip(&b) {
            if x.id == y.id {
                assert!(
                    (x.score - y.score).abs() < 5e-3,
                    "seed {seed}, entry {e}: {x:?} vs {y:?}"
                );
            }
        }
    }
    let top1 = same_top1 as f64 / queries as f64;
    let top10 = overlap as f64 / (10 * queries) as f64;
    assert!(
        top1 >= 0.98,
        "seed {seed}: same top-1 for {top1:.3} of {queries} queries"
    );
    assert!(top10 >= 0.95, "seed {seed}: top-10 overlap {top10:.3}");
}
