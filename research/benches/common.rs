//! What the research benchmarks share: top-1 logit-to-logit retrieval accuracy. Each includes it
//! with `#[path = "common.rs"] mod common;`.

use probelog::search::Metric;
use probelog::{Index, SearchParams};

/// Top-1 accuracy over every logit of the first `queries` models of `index`, each searched with
/// `metric` (and `k`, or the default k) against every other model: a hit when the best entry has
/// the query's label (its concept).
pub fn top1_accuracy(index: &Index, queries: u64, metric: Metric, k: Option<usize>) -> f64 {
    let params = SearchParams {
        top: 1,
        k,
        metric,
        ..Default::default()
    };
    let (mut hits, mut total) = (0usize, 0usize);
    for m in 0..queries {
        let model = index.model(m).unwrap();
        for e in model.first_entry..model.first_entry + u64::from(model.logit_count) {
            let q = index.descriptor(e).unwrap();
            let best = index.search_descriptor(&q, Some(m), &params).unwrap();
            total += 1;
            if index.entry_label(best[0].id).unwrap() == index.entry_label(e).unwrap() {
                hits += 1;
            }
        }
    }
    hits as f64 / total as f64
}
