//! Models, entries and the probe-level sections of a [`RawIndex`]: model tables checked on
//! first use, strings, labels, metadata, probe names, embeddings, factors and observed probes.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::format::models::{self, ModelTable};
use crate::format::strings::{StrError, StrRef};
use crate::format::{labels, observed, probe_embeddings, probe_factors, probe_names};

use super::RawIndex;

/// Metadata of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: u64,
    pub name: String,
    pub source: String,
    pub meta: Vec<(String, String)>,
    pub first_entry: u64,
    pub logit_count: u32,
}

/// A model's name, metadata and entries, borrowed from the index.
#[derive(Debug, Clone)]
pub(crate) struct ModelRef<'a> {
    pub name: &'a str,
    pub meta: Vec<(&'a str, &'a str)>,
    pub entries: Range<u64>,
}

impl ModelInfo {
    /// The global ids of the model's entries.
    pub fn entry_range(&self) -> Range<u64> {
        self.first_entry..self.first_entry + u64::from(self.logit_count)
    }
}

/// Metadata of one entry (one logit of one model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub id: u64,
    pub model_id: u64,
    pub model: String,
    pub logit: u32,
    pub label: Option<String>,
}

impl<D: AsRef<[u8]>> RawIndex<D> {
    // ---- Models and entries -------------------------------------------------------------------

    /// The model table of segment `s`, checked on first use: contiguous entry ranges that cover
    /// the segment, string and metadata references in bounds.
    pub(crate) fn model_table(&self, s: usize) -> Result<ModelTable<'_>> {
        let seg = &self.segments[s];
        let Some(sec) = &seg.models else {
            return Ok(ModelTable(&[]));
        };
        let table = ModelTable(self.section_bytes(sec));
        let checked = seg.models_checked.get_or_init(|| {
            table.check(
                s,
                seg.strings.map_or(0, |x| x.len),
                seg.meta.map_or(0, |x| models::meta_records(x.len)),
                seg.dir.entry_count,
            )
        });
        match checked {
            Ok(()) => Ok(table),
            Err(what) => Err(Error::corrupt(what.clone())),
        }
    }

    /// The string `r` of segment `s` names; `what` names it in errors.
    fn string(&self, s: usize, r: StrRef, what: &str) -> Result<Option<String>> {
        Ok(self.str_at(s, r, what)?.map(str::to_string))
    }

    /// [`RawIndex::string`], borrowed from the index.
    fn str_at(&self, s: usize, r: StrRef, what: &str) -> Result<Option<&str>> {
        let strings = self.segments[s]
            .strings
            .map(|x| self.section_bytes(&x))
            .unwrap_or_default();
        match r.resolve(strings) {
            Ok(text) => Ok(text),
            Err(StrError::OutOfBounds) => Err(Error::corrupt(format!(
                "segment {s}: {what} refers outside the strings section"
            ))),
            Err(StrError::NotUtf8) => {
                Err(Error::corrupt(format!("segment {s}: {what} is not UTF-8")))
            }
        }
    }

    fn segment_of_model(&self, model: u64) -> Result<(usize, usize)> {
        self.segment_holding(model, self.model_count(), ("model", "models"), |d| {
            d.first_model
        })
    }

    /// Model `id`'s name, metadata and entries, borrowed from the index: what a filter reads of
    /// every model, without copying strings.
    pub(crate) fn model_ref(&self, id: u64) -> Result<ModelRef<'_>> {
        let (s, m) = self.segment_of_model(id)?;
        let r = self.model_table(s)?.get(m);
        let seg = &self.segments[s];
        let name = self.str_at(s, r.name, "model name")?.unwrap_or_default();
        let mut meta = Vec::new();
        if let Some(sec) = &seg.meta {
            let recs = self.section_bytes(sec);
            let first = r.meta_first as usize;
            for i in first..first + r.meta_count as usize {
                let (k, v) = models::meta_record(recs, i);
                let k = self.str_at(s, k, "metadata key")?.unwrap_or_default();
                let v = self.str_at(s, v, "metadata value")?.unwrap_or_default();
                meta.push((k, v));
            }
        }
        let first = seg.dir.first_entry + r.first_entry;
        Ok(ModelRef {
            name,
            meta,
            entries: first..first + u64::from(r.logit_count),
        })
    }

    /// Metadata of model `id` (0-based, in append order).
    pub fn model(&self, id: u64) -> Result<ModelInfo> {
        let borrowed = self.model_ref(id)?;
        let (s, m) = self.segment_of_model(id)?;
        let r = self.model_table(s)?.get(m);
        let source = self
            .string(s, r.source, "model source")?
            .unwrap_or_default();
        Ok(ModelInfo {
            id,
            name: borrowed.name.to_string(),
            source,
            meta: models::owned_meta(&borrowed.meta),
            first_entry: borrowed.entries.start,
            logit_count: r.logit_count,
        })
    }

    /// Entry ranges of the models of segment `s`, local to the segment.
    pub(crate) fn model_ranges(&self, s: usize) -> Result<Vec<Range<usize>>> {
        Ok(self
            .model_table(s)?
            .records()
            .map(|r| r.entries())
            .collect())
    }

    /// The model that owns `entry`, which must not be deleted.
    pub(crate) fn live_model_of_entry(&self, entry: u64) -> Result<u64> {
        let model = self.model_of_entry(entry)?;
        if self.is_model_deleted(model) {
            return Err(Error::Deleted { entry, model });
        }
        Ok(model)
    }

    /// The model that owns `entry`.
    pub fn model_of_entry(&self, entry: u64) -> Result<u64> {
        let (s, e) = self.segment_of_entry(entry)?;
        let table = self.model_table(s)?;
        let (mut lo, mut hi) = (0usize, table.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if table.first_entry(mid) as usize <= e {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(self.segments[s].dir.first_model + (lo - 1) as u64)
    }

    /// The class label of `entry`, if one was given.
    pub fn entry_label(&self, entry: u64) -> Result<Option<String>> {
        let (s, e) = self.segment_of_entry(entry)?;
        match &self.segments[s].labels {
            None => Ok(None),
            Some(sec) => self.string(s, labels::label(self.section_bytes(sec), e), "entry label"),
        }
    }

    /// Metadata of `entry`. An entry of a deleted model is an error ([`Error::Deleted`]).
    pub fn entry(&self, entry: u64) -> Result<EntryInfo> {
        let model_id = self.live_model_of_entry(entry)?;
        let model = self.model(model_id)?;
        Ok(EntryInfo {
            id: entry,
            model_id,
            logit: (entry - model.first_entry) as u32,
            model: model.name,
            label: self.entry_label(entry)?,
        })
    }

    // ---- Probe-level sections -----------------------------------------------------------------

    /// Probe names, if the index has them (the latest segment that set them wins).
    pub fn probe_names(&self) -> Result<Option<Vec<String>>> {
        let Some(s) = self.probe_names else {
            return Ok(None);
        };
        let sec = self.segments[s].probe_names.expect("recorded at open");
        probe_names::refs(self.section_bytes(&sec))
            .map(|r| Ok(self.string(s, r, "probe name")?.unwrap_or_default()))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Probe image embeddings, row-major `[num_probes, dim]`, rows of unit length.
    pub fn probe_embeddings(&self) -> Result<Option<(&[f32], usize)>> {
        let Some(s) = self.probe_embeddings else {
            return Ok(None);
        };
        let sec = self.segments[s].probe_embeddings.expect("recorded at open");
        let values = probe_embeddings::view(self.section_bytes(&sec))
            .ok_or_else(|| Error::corrupt("probe embeddings misaligned"))?;
        Ok(Some((values, sec.param as usize)))
    }
}

impl<D: AsRef<[u8]>> RawIndex<D> {
    /// Collaborative probing's low-rank probe factors and their regularization, if the index has
    /// them (the latest segment that set them wins).
    pub fn probe_factors(&self) -> Result<Option<(crate::collab::ProbeFactors, f32)>> {
        let Some(s) = self.probe_factors else {
            return Ok(None);
        };
        let sec = self.segments[s].probe_factors.expect("recorded at open");
        probe_factors::decode(self.section_bytes(&sec), self.num_probes(), sec.param)
            .map(Some)
            .map_err(|e| Error::corrupt(format!("segment {s}: {e}")))
    }

    /// The probes model `id` was run on, or `None` when it was run on all of them.
    pub fn observed_probes(&self, id: u64) -> Result<Option<Vec<u32>>> {
        let (s, m) = self.segment_of_model(id)?;
        let Some(sec) = &self.segments[s].observed else {
            return Ok(None);
        };
        let observed = observed::decode(
            self.section_bytes(sec),
            sec.param as usize,
            m,
            self.num_probes(),
        );
        Ok((observed.len() < self.num_probes()).then_some(observed))
    }
}
