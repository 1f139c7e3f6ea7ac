//! Why a hit matched: its score split over the probes, so that the probes that decided it can be
//! named. Each probe's share is exact for the top-k term (`|q_p - d_p| / k` on the query's top
//! probes) and proportional to `(q_p - d_p)^2` for a root-mean-square or Euclidean term, so the
//! shares of a hit add up to its score.

use crate::descriptor::top_probes;
use crate::error::Result;
use crate::reader::RawIndex;

use super::{Grouping, Hit, Metric, Query, ResolvedSearch, SearchResults};

/// One probe's part in a hit's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeContribution {
    pub probe: u32,
    /// The query descriptor's value on the probe.
    pub query: f32,
    /// The hit's value: its descriptor's, or for a model-mean hit the model's mean descriptor's.
    pub hit: f32,
    /// The probe's share of the score (the shares of a hit add up to its score).
    pub share: f32,
}

impl<D: AsRef<[u8]> + Sync> RawIndex<D> {
    /// For each hit of `found` (the results of searching `query`), the `n` probes with the
    /// largest shares of its score, largest first.
    pub fn explain(
        &self,
        query: &Query<'_>,
        found: &SearchResults,
        n: usize,
    ) -> Result<Vec<Vec<ProbeContribution>>> {
        let q = self.prepare_query(query)?.descriptor;
        found
            .hits
            .iter()
            .map(|hit| {
                let d = self.hit_descriptor(hit)?;
                let mut shares = probe_shares(&q, &d, &found.params);
                shares.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.probe.cmp(&b.probe)));
                shares.truncate(n);
                Ok(shares)
            })
            .collect()
    }

    /// The descriptor a hit was scored against: its entry's, or its model's mean.
    fn hit_descriptor(&self, hit: &Hit) -> Result<Vec<f32>> {
        if let Some(e) = hit.entry {
            return self.descriptor(e);
        }
        let info = self.model(hit.model_id)?;
        let mut mean = vec![0f64; self.num_probes()];
        for e in info.entry_range() {
            for (m, v) in mean.iter_mut().zip(self.descriptor(e)?) {
                *m += f64::from(v);
            }
        }
        let n = f64::from(info.logit_count);
        Ok(mean.into_iter().map(|m| (m / n) as f32).collect())
    }
}

/// Every probe's share of the score of `d` against `q` under `params`.
fn probe_shares(q: &[f32], d: &[f32], params: &ResolvedSearch) -> Vec<ProbeContribution> {
    let p = q.len();
    let mut share = vec![0f64; p];
    let diff = |i: usize| f64::from(q[i]) - f64::from(d[i]);
    let squares: f64 = (0..p).map(|i| diff(i).powi(2)).sum();
    // A root-mean-square (or Euclidean) term of value `total`, split by squared differences.
    let add_quadratic = |share: &mut [f64], total: f64| {
        if squares > 0.0 {
            for (i, s) in share.iter_mut().enumerate() {
                *s += total * diff(i).powi(2) / squares;
            }
        }
    };
    let metric = match params.grouping {
        Grouping::ModelMean => None,
        _ => params.metric,
    };
    match metric {
        Some(Metric::TopK | Metric::Blend) => {
            let top = top_probes(q, params.k.unwrap_or(1));
            for &t in &top {
                share[t as usize] += diff(t as usize).abs() / top.len() as f64;
            }
            if metric == Some(Metric::Blend) {
                let w = f64::from(params.blend_weight.unwrap_or(0.0));
                add_quadratic(&mut share, w * (squares / p as f64).sqrt());
            }
        }
        Some(Metric::Full) | None => add_quadratic(&mut share, squares.sqrt()),
    }
    share
        .into_iter()
        .enumerate()
        .map(|(i, s)| ProbeContribution {
            probe: i as u32,
            query: q[i],
            hit: d[i],
            share: s as f32,
        })
        .collect()
}
