//! What a search returns: ranked hits with their metadata, the scored ids a ranking keeps, and
//! the bounded heap that keeps the best N of a scan.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::ResolvedSearch;

/// What [`RawIndex::search`] found, best first, and the parameters it ran with. Derefs to the
/// hits.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    pub params: ResolvedSearch,
    pub hits: Vec<Hit>,
}

impl std::ops::Deref for SearchResults {
    type Target = [Hit];
    fn deref(&self) -> &[Hit] {
        &self.hits
    }
}

impl IntoIterator for SearchResults {
    type Item = Hit;
    type IntoIter = std::vec::IntoIter<Hit>;
    fn into_iter(self) -> Self::IntoIter {
        self.hits.into_iter()
    }
}

impl<'a> IntoIterator for &'a SearchResults {
    type Item = &'a Hit;
    type IntoIter = std::slice::Iter<'a, Hit>;
    fn into_iter(self) -> Self::IntoIter {
        self.hits.iter()
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// 1-based.
    pub rank: usize,
    /// The entry; `None` for [`Grouping::ModelMean`], which ranks whole models.
    pub entry: Option<u64>,
    pub model_id: u64,
    pub model: String,
    /// The logit's column in its model; `None` for [`Grouping::ModelMean`].
    pub logit: Option<u32>,
    pub label: Option<String>,
    /// Lower is closer.
    pub score: f32,
}

/// A scored entry or model, before metadata is attached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Entry id, or model id for [`Grouping::ModelMean`].
    pub id: u64,
    pub score: f32,
}

impl Eq for Scored {}
impl PartialOrd for Scored {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// Better (lower score, then lower id) sorts first.
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.id.cmp(&other.id))
    }
}

/// The best `n` items seen; the worst of them sits on top of a max-heap.
#[derive(Debug, Clone)]
pub(crate) struct TopN {
    n: usize,
    heap: BinaryHeap<Scored>,
    /// Once the heap is full: the worst kept score. An item scoring above it cannot enter, which
    /// one float comparison settles for almost every entry of a scan.
    bar: f32,
}

impl TopN {
    pub(crate) fn new(n: usize) -> Self {
        // `n` comes from the caller and may be far larger than the index: grow on demand.
        TopN {
            n,
            heap: BinaryHeap::with_capacity(n.min(1024) + 1),
            bar: f32::INFINITY,
        }
    }
    #[inline]
    pub(crate) fn push(&mut self, s: Scored) {
        // `>` is false for NaN, which takes the slow path and the total order below.
        if s.score > self.bar {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(s);
        } else if let Some(worst) = self.heap.peek()
            && s < *worst
        {
            self.heap.pop();
            self.heap.push(s);
        }
        if self.heap.len() >= self.n {
            self.bar = self.heap.peek().map_or(f32::INFINITY, |w| w.score);
        }
    }
    pub(crate) fn merge(mut self, other: TopN) -> TopN {
        for s in other.heap {
            self.push(s);
        }
        self
    }
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}
