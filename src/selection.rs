//! Which entries a search may return: the live models (deleted ones never come back), those whose
//! metadata and name match a [`ModelFilter`], less the query's own model when it is excluded.
//!
//! A search turns these into [`Allowed`] before it scores anything: an [`EntryMask`] (a bitset
//! over the entry ids, built once per index snapshot and filter) less the excluded model's range.
//! The exact scan skips what it leaves out, and the HNSW walk keeps only allowed nodes as
//! candidates (it still steps through the others), so a search for the top N returns N allowed
//! hits whenever N exist.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::reader::{ModelInfo, ModelRef, RawIndex};

/// One condition of a [`ModelFilter`] on a model's metadata or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The model has metadata `key` with exactly this value.
    MetaEquals { key: String, value: String },
    /// The model has no metadata `key`, or has it with another value.
    MetaNotEquals { key: String, value: String },
    /// The model's name matches a shell-style pattern: `*` any run of characters, `?` one.
    NameGlob(String),
}

/// A [`Condition`] ready to test many models (its pattern compiled once).
enum Compiled<'f> {
    Meta {
        key: &'f str,
        value: &'f str,
        equal: bool,
    },
    Name(wildmatch::WildMatch),
}

impl Compiled<'_> {
    fn matches(&self, name: &str, meta: &[(&str, &str)]) -> bool {
        match self {
            Compiled::Meta { key, value, equal } => {
                let found = meta.iter().find(|(k, _)| k == key).map(|(_, v)| v);
                (found == Some(value)) == *equal
            }
            Compiled::Name(pattern) => pattern.matches(name),
        }
    }
}

/// Conditions that all must hold for a model's entries to be searched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelFilter {
    pub conditions: Vec<Condition>,
}

impl ModelFilter {
    /// Parses `KEY=VALUE` or `KEY!=VALUE` (the key is not empty and holds neither `=` nor `!=`)
    /// into a condition and adds it.
    pub fn add_where(&mut self, expr: &str) -> Result<()> {
        let bad = || {
            Error::InvalidParameter(format!(
                "filter {expr:?} is not KEY=VALUE or KEY!=VALUE with a non-empty key"
            ))
        };
        let (condition, key) = match expr.split_once("!=") {
            Some((key, value)) => (
                Condition::MetaNotEquals {
                    key: key.to_string(),
                    value: value.to_string(),
                },
                key,
            ),
            None => {
                let (key, value) = expr.split_once('=').ok_or_else(bad)?;
                (
                    Condition::MetaEquals {
                        key: key.to_string(),
                        value: value.to_string(),
                    },
                    key,
                )
            }
        };
        if key.is_empty() || key.contains('=') {
            return Err(bad());
        }
        self.conditions.push(condition);
        Ok(())
    }

    /// Adds a condition on the model name (`*` and `?` wildcards).
    pub fn add_name_glob(&mut self, pattern: &str) {
        self.conditions
            .push(Condition::NameGlob(pattern.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    pub fn matches(&self, model: &ModelInfo) -> bool {
        let meta: Vec<(&str, &str)> = model.meta.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let compiled = self.compile();
        compiled.iter().all(|c| c.matches(&model.name, &meta))
    }

    fn compile(&self) -> Vec<Compiled<'_>> {
        self.conditions
            .iter()
            .map(|c| match c {
                Condition::MetaEquals { key, value } => Compiled::Meta {
                    key,
                    value,
                    equal: true,
                },
                Condition::MetaNotEquals { key, value } => Compiled::Meta {
                    key,
                    value,
                    equal: false,
                },
                Condition::NameGlob(pattern) => Compiled::Name(wildmatch::WildMatch::new(pattern)),
            })
            .collect()
    }
}

/// The masks of the last few filters an index was searched with (and of its deletions alone,
/// under `None`). An index snapshot never changes, so a mask stays right for its life.
#[derive(Debug, Default)]
pub(crate) struct MaskCache(Mutex<Vec<(Option<ModelFilter>, Arc<EntryMask>)>>);

/// How many filters' masks an index keeps.
const CACHED_MASKS: usize = 8;

impl MaskCache {
    fn get_or_build(
        &self,
        key: Option<&ModelFilter>,
        build: impl FnOnce() -> Result<EntryMask>,
    ) -> Result<Arc<EntryMask>> {
        // A poisoned lock only means another search panicked mid-insert: the list is still whole.
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = lock().iter().find(|(k, _)| k.as_ref() == key) {
            return Ok(m.clone());
        }
        let mask = Arc::new(build()?);
        let mut cache = lock();
        if cache.len() >= CACHED_MASKS {
            cache.remove(0);
        }
        cache.push((key.cloned(), mask.clone()));
        Ok(mask)
    }
}

/// The entries a search may return: a mask (`None`: every entry) less one model's entries.
#[derive(Debug, Clone)]
pub struct Allowed {
    mask: Option<Arc<EntryMask>>,
    excluded: Range<u64>,
}

impl Allowed {
    /// Every entry: the search checks nothing.
    pub fn all() -> Self {
        Allowed {
            mask: None,
            excluded: 0..0,
        }
    }

    pub fn is_all(&self) -> bool {
        self.mask.is_none() && self.excluded.is_empty()
    }

    #[inline]
    pub fn contains(&self, id: u64) -> bool {
        !self.excluded.contains(&id) && self.mask.as_ref().is_none_or(|m| m.contains(id))
    }

    /// How many entries of `r` are allowed.
    pub fn count_in(&self, r: Range<u64>) -> u64 {
        let in_mask = |r: Range<u64>| match &self.mask {
            Some(m) => m.count_in(r),
            None => r.end.saturating_sub(r.start),
        };
        let overlap = r.start.max(self.excluded.start)..r.end.min(self.excluded.end);
        in_mask(r) - in_mask(overlap)
    }

    /// The allowed entries of `r`, ascending.
    pub fn ids_in(&self, r: Range<u64>) -> Vec<u64> {
        let ids = match &self.mask {
            Some(m) => m.ids_in(r),
            None => r.collect(),
        };
        ids.into_iter()
            .filter(|id| !self.excluded.contains(id))
            .collect()
    }
}

/// A set of entry ids, one bit each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMask {
    words: Vec<u64>,
    len: u64,
}

/// The 64-bit words that hold the positions of `r`, each as its index and the bits of `r` in it;
/// whole words where `r` covers them.
fn word_pieces(r: Range<u64>) -> impl Iterator<Item = (usize, u64)> {
    let (mut a, b) = (r.start, r.end);
    std::iter::from_fn(move || {
        if a >= b {
            return None;
        }
        let (w, bit) = ((a / 64) as usize, a % 64);
        let n = (64 - bit).min(b - a);
        let bits = if n == 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << bit
        };
        a += n;
        Some((w, bits))
    })
}

impl EntryMask {
    /// No entry of `len`.
    pub fn none(len: u64) -> Self {
        EntryMask {
            words: vec![0; len.div_ceil(64) as usize],
            len,
        }
    }

    /// Every entry of `len`.
    pub fn all(len: u64) -> Self {
        let mut m = EntryMask::none(len);
        m.set_range(0..len, true);
        m
    }

    /// Sets (or clears) every entry of `r`, in whole words where it can.
    pub fn set_range(&mut self, r: Range<u64>, on: bool) {
        for (w, bits) in word_pieces(r.start..r.end.min(self.len)) {
            if on {
                self.words[w] |= bits;
            } else {
                self.words[w] &= !bits;
            }
        }
    }

    #[inline]
    pub fn contains(&self, id: u64) -> bool {
        id < self.len && self.words[(id / 64) as usize] & (1 << (id % 64)) != 0
    }

    /// How many entries of `r` are in the set.
    pub fn count_in(&self, r: Range<u64>) -> u64 {
        word_pieces(r.start..r.end.min(self.len))
            .map(|(w, bits)| u64::from((self.words[w] & bits).count_ones()))
            .sum()
    }

    /// The entries of `r` in the set, ascending.
    pub fn ids_in(&self, r: Range<u64>) -> Vec<u64> {
        let (a, b) = (r.start, r.end.min(self.len));
        let mut out = Vec::new();
        if a >= b {
            return out;
        }
        for w in (a / 64) as usize..=((b - 1) / 64) as usize {
            let mut bits = self.words[w];
            while bits != 0 {
                let id = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if (a..b).contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }
}

impl<D: AsRef<[u8]>> RawIndex<D> {
    /// Ids of the deleted models, ascending.
    pub fn deleted_models(&self) -> &[u64] {
        &self.deleted
    }

    pub fn is_model_deleted(&self, id: u64) -> bool {
        self.deleted.binary_search(&id).is_ok()
    }

    /// Models that are not deleted.
    pub fn live_model_count(&self) -> u64 {
        self.model_count() - self.deleted.len() as u64
    }

    /// Entries of the deleted models.
    pub fn deleted_entry_count(&self) -> Result<u64> {
        self.deleted
            .iter()
            .map(|&m| self.model(m).map(|i| u64::from(i.logit_count)))
            .sum()
    }

    /// Entries of the live models.
    pub fn live_entry_count(&self) -> Result<u64> {
        Ok(self.entry_count() - self.deleted_entry_count()?)
    }

    /// The live models with `name`, ascending.
    pub fn live_models_named(&self, name: &str) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for id in 0..self.model_count() {
            if !self.is_model_deleted(id) && self.model(id)?.name == name {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The live models that `filter` keeps, ascending.
    pub fn matching_models(&self, filter: &ModelFilter) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        self.for_each_match(filter, |id, _| out.push(id))?;
        Ok(out)
    }

    /// Calls `visit` with every live model that `filter` keeps, ascending: its id and what the
    /// filter read of it (the patterns compiled once, the strings borrowed).
    fn for_each_match(
        &self,
        filter: &ModelFilter,
        mut visit: impl FnMut(u64, &ModelRef<'_>),
    ) -> Result<()> {
        let compiled = filter.compile();
        for id in (0..self.model_count()).filter(|&id| !self.is_model_deleted(id)) {
            let m = self.model_ref(id)?;
            if compiled.iter().all(|c| c.matches(m.name, &m.meta)) {
                visit(id, &m);
            }
        }
        Ok(())
    }

    /// The entries a search may return: live, kept by `filter`, not of `exclude_model`. The
    /// mask of a filter is built once per index snapshot and kept for the next searches.
    pub fn allowed(
        &self,
        filter: Option<&ModelFilter>,
        exclude_model: Option<u64>,
    ) -> Result<Allowed> {
        let filter = filter.filter(|f| !f.is_empty());
        let mask = if filter.is_none() && self.deleted.is_empty() {
            None
        } else {
            Some(
                self.masks
                    .get_or_build(filter, || self.build_mask(filter))?,
            )
        };
        let excluded = match exclude_model {
            Some(m) => self.model(m)?.entry_range(),
            None => 0..0,
        };
        Ok(Allowed { mask, excluded })
    }

    /// [`RawIndex::allowed`] as one bitset; `None` when that is every entry.
    pub fn entry_mask(
        &self,
        filter: Option<&ModelFilter>,
        exclude_model: Option<u64>,
    ) -> Result<Option<EntryMask>> {
        let allowed = self.allowed(filter, exclude_model)?;
        if allowed.is_all() {
            return Ok(None);
        }
        let mut mask = match &allowed.mask {
            Some(m) => EntryMask::clone(m),
            None => EntryMask::all(self.entry_count()),
        };
        mask.set_range(allowed.excluded, false);
        Ok(Some(mask))
    }

    /// The live entries `filter` keeps (all live entries without one).
    fn build_mask(&self, filter: Option<&ModelFilter>) -> Result<EntryMask> {
        let n = self.entry_count();
        Ok(match filter {
            Some(f) => {
                let mut mask = EntryMask::none(n);
                self.for_each_match(f, |_, m| mask.set_range(m.entries.clone(), true))?;
                mask
            }
            None => {
                let mut mask = EntryMask::all(n);
                for &id in &self.deleted {
                    mask.set_range(self.model(id)?.entry_range(), false);
                }
                mask
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_ranges_and_counts() {
        let mut m = EntryMask::none(200);
        m.set_range(3..130, true);
        m.set_range(64..70, false);
        assert_eq!(m.count_in(0..200), 127 - 6);
        assert!(m.contains(3) && m.contains(63) && !m.contains(64) && m.contains(70));
        assert!(!m.contains(130) && !m.contains(500));
        assert_eq!(m.count_in(60..72), 4 + 2);
        assert_eq!(m.ids_in(60..72), vec![60, 61, 62, 63, 70, 71]);
        assert_eq!(EntryMask::all(65).count_in(0..1000), 65);
    }

    #[test]
    fn allowed_is_the_mask_less_the_excluded_range() {
        let mut m = EntryMask::none(100);
        m.set_range(10..60, true);
        let a = Allowed {
            mask: Some(Arc::new(m)),
            excluded: 20..30,
        };
        assert_eq!(a.count_in(0..100), 40);
        assert_eq!(a.count_in(25..35), 5);
        assert_eq!(a.ids_in(18..32), vec![18, 19, 30, 31]);
        assert!(!a.contains(25) && a.contains(30) && !a.contains(60));
        let b = Allowed {
            mask: None,
            excluded: 5..8,
        };
        assert_eq!(b.count_in(0..10), 7);
        assert_eq!(b.count_in(6..7), 0);
        assert!(Allowed::all().is_all() && !b.is_all());
    }

    #[test]
    fn where_expressions() {
        let mut f = ModelFilter::default();
        f.add_where("task=pets").unwrap();
        f.add_where("license!=gpl").unwrap();
        f.add_where("note=a=b").unwrap();
        f.add_name_glob("resnet-*");
        for bad in ["", "=x", "novalue", "!=x"] {
            assert!(ModelFilter::default().add_where(bad).is_err(), "{bad:?}");
        }
        let model = |name: &str, meta: &[(&str, &str)]| ModelInfo {
            id: 0,
            name: name.into(),
            source: String::new(),
            meta: crate::format::models::owned_meta(meta),
            first_entry: 0,
            logit_count: 1,
        };
        assert!(f.matches(&model("resnet-18", &[("task", "pets"), ("note", "a=b")])));
        assert!(!f.matches(&model(
            "resnet-18",
            &[("task", "pets"), ("license", "gpl"), ("note", "a=b")]
        )));
        assert!(!f.matches(&model("vit", &[("task", "pets"), ("note", "a=b")])));
        assert!(!f.matches(&model("resnet-18", &[("note", "a=b")])));
    }
}
