//! What an [`IndexWriter`] has staged for its next commit.

use std::collections::HashSet;

use super::ModelInput;
use super::segment::{RowSource, SegmentContent, SegmentMeta};
use super::staged::StagedRows;
use crate::collab::{Observations, ProbeFactors};
use crate::descriptor::LogitStats;
use crate::error::{Error, Result};
use crate::format::models::ModelSpec;

/// Staged appends: descriptor values, models, deletions and index-wide sections.
pub(super) struct Pending {
    pub(super) probes: usize,
    /// Allocates nothing until the first model is staged: the probe count comes from the file
    /// header, and opening a writer must not allocate by it.
    rows: StagedRows,
    /// Partially observed models: their first column and observations, completed at commit.
    pub(super) partials: Vec<(usize, Observations)>,
    pub(super) meta: SegmentMeta,
    /// The names of `meta.models`, so that a name check costs one lookup, not a pass over every
    /// staged model (a pass per model made a large append quadratic).
    names: HashSet<String>,
}

impl Pending {
    pub(super) fn new(probes: usize) -> Self {
        Pending {
            probes,
            rows: StagedRows::new(probes),
            partials: Vec::new(),
            meta: SegmentMeta::default(),
            names: HashSet::new(),
        }
    }

    /// The staged entries.
    pub(super) fn entries(&self) -> usize {
        self.rows.entries()
    }

    /// Whether a staged model is named `name`.
    pub(super) fn has_model_named(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub(super) fn is_empty(&self) -> bool {
        let m = &self.meta;
        m.models.is_empty()
            && m.deleted.is_empty()
            && m.probe_names.is_none()
            && m.probe_embeddings.is_none()
            && m.probe_factors.is_none()
            && m.embedded_probes.is_none()
    }

    /// Stages a partially observed model: its columns are reserved now (so entry ids are fixed)
    /// and filled at commit, once probe factors are known.
    pub(super) fn push_partial(&mut self, input: ModelInput<'_>, obs: Observations) {
        let first = self.entries();
        let observed = obs.observed.clone();
        self.rows.push_zeros(obs.logits);
        self.push_spec(input, obs.logits);
        *self.meta.observed.last_mut().expect("just pushed") = Some(observed);
        self.partials.push((first, obs));
    }

    /// Completes the staged partial models with `factors`.
    pub(super) fn complete_partials(&mut self, factors: &ProbeFactors, lambda: f32) -> Result<()> {
        for (first, obs) in std::mem::take(&mut self.partials) {
            let desc = factors.impute(&obs, lambda)?;
            for p in 0..self.probes {
                for j in 0..obs.logits {
                    self.rows.set(p, first + j, desc[j * self.probes + p]);
                }
            }
        }
        Ok(())
    }

    /// Staged models as observations for fitting factors: partial ones as observed, complete
    /// ones with all their probes.
    pub(super) fn observations(&self) -> Vec<Observations> {
        let mut out: Vec<Observations> = self.partials.iter().map(|(_, o)| o.clone()).collect();
        for (model, observed) in self.meta.models.iter().zip(&self.meta.observed) {
            if observed.is_none() {
                let (a, l) = (model.first_entry as usize, model.logit_count as usize);
                let mut desc = Vec::with_capacity(l * self.probes);
                for j in a..a + l {
                    desc.extend((0..self.probes).map(|p| self.rows.get(p, j)));
                }
                out.push(Observations::complete(self.probes, desc));
            }
        }
        out
    }

    /// Stages a model: its logits z-normalized with `stats` straight into the probe-major rows
    /// (no entry-major copy: transposing every model cost more than normalizing it).
    pub(super) fn push_model(&mut self, input: ModelInput<'_>, stats: &[LogitStats]) {
        self.rows.push_normalized(&input.logits, stats);
        self.push_spec(input, stats.len());
    }

    /// Stages the model record, labels and name of a model of `l` logits whose rows were pushed.
    fn push_spec(&mut self, input: ModelInput<'_>, l: usize) {
        self.names.insert(input.name.clone());
        self.meta.models.push(ModelSpec {
            first_entry: (self.entries() - l) as u64,
            logit_count: l as u32,
            name: input.name,
            source: input.source,
            meta: input.meta,
        });
        match input.labels {
            Some(labels) => {
                self.meta.any_label = true;
                self.meta.labels.extend(labels.into_iter().map(Some));
            }
            None => self.meta.labels.extend(std::iter::repeat_n(None, l)),
        }
        self.meta.observed.push(None);
    }

    pub(super) fn set_probe_names(&mut self, names: Vec<String>) -> Result<()> {
        if names.len() != self.probes {
            return Err(Error::ProbeCountMismatch {
                what: "the probe name list".into(),
                expected: self.probes as u64,
                actual: names.len() as u64,
            });
        }
        self.meta.probe_names = Some(names);
        Ok(())
    }

    pub(super) fn set_probe_embeddings(&mut self, emb: &[f32], dim: usize) -> Result<()> {
        let p = self.probes;
        if dim == 0 || !emb.len().is_multiple_of(dim) {
            return Err(Error::InvalidInput(format!(
                "probe embeddings: {} values do not form rows of dimension {dim}",
                emb.len()
            )));
        }
        if emb.len() / dim != p {
            return Err(Error::ProbeCountMismatch {
                what: "the probe embedding matrix".into(),
                expected: p as u64,
                actual: (emb.len() / dim) as u64,
            });
        }
        let mut out = emb.to_vec();
        for (r, row) in out.chunks_exact_mut(dim).enumerate() {
            if let Some((c, &x)) = row.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("probe embeddings, column {c}"),
                    row: r,
                    value: x,
                });
            }
            let norm = row
                .iter()
                .map(|&x| f64::from(x).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 {
                return Err(Error::InvalidInput(format!(
                    "probe embeddings: row {r} is all zeros"
                )));
            }
            row.iter_mut()
                .for_each(|x| *x = (f64::from(*x) / norm) as f32);
        }
        self.meta.probe_embeddings = Some((out, dim));
        Ok(())
    }

    /// Stages a probe set file's bytes to embed, after checking them completely against the
    /// index's identity `index`.
    pub(super) fn set_embedded_probe_set(
        &mut self,
        bytes: Vec<u8>,
        index: crate::format::ProbeSetId,
    ) -> Result<()> {
        crate::format::embedded_probes::check_for_index(&bytes, index)?;
        self.meta.embedded_probes = Some(bytes);
        Ok(())
    }

    pub(super) fn as_content(&self) -> SegmentContent<'_> {
        self.meta.as_content(self.entries() as u64, self)
    }
}

impl RowSource for Pending {
    fn fill_row(&self, p: usize, out: &mut [f32]) -> Result<()> {
        self.rows.fill_row(p, out);
        Ok(())
    }
}
