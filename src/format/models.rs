//! The Models section (kind 2), one 48-byte record per model of the segment, and the ModelMeta
//! section (kind 4), the key=value records the models refer to.

use std::ops::Range;

use super::bytes::{get_u32, get_u64};
use super::strings::{STRING_REF_LEN, StrRef, StringPool};
use super::{SectionEntry, SegmentCounts};
use crate::error::{Error, Result};

// Model record.
pub const MODEL_RECORD_LEN: usize = 48;
pub const M_FIRST_ENTRY: usize = 0;
pub const M_LOGIT_COUNT: usize = M_FIRST_ENTRY + 8;
pub const M_META_COUNT: usize = M_LOGIT_COUNT + 4;
pub const M_NAME: usize = M_META_COUNT + 4;
pub const M_SOURCE: usize = M_NAME + 8;
pub const M_META_FIRST: usize = M_SOURCE + 8;
pub const M_RESERVED: usize = M_META_FIRST + 8;
const _: () = assert!(M_RESERVED + 8 == MODEL_RECORD_LEN);

/// A key=value record of section ModelMeta: two string references.
pub const META_RECORD_LEN: usize = 2 * STRING_REF_LEN;

/// One model to encode: its entries (local to the segment) and its strings.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub first_entry: u64,
    pub logit_count: u32,
    pub name: String,
    pub source: String,
    pub meta: Vec<(String, String)>,
}

/// Metadata pairs as owned strings, in the same order.
pub(crate) fn owned_meta(meta: &[(&str, &str)]) -> Vec<(String, String)> {
    meta.iter()
        .map(|&(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A decoded model record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRecord {
    /// The model's first entry, local to the segment.
    pub first_entry: u64,
    pub logit_count: u32,
    pub meta_count: u32,
    pub name: StrRef,
    pub source: StrRef,
    /// Its first ModelMeta record.
    pub meta_first: u64,
}

impl ModelRecord {
    fn decode(r: &[u8]) -> Self {
        ModelRecord {
            first_entry: get_u64(r, M_FIRST_ENTRY),
            logit_count: get_u32(r, M_LOGIT_COUNT),
            meta_count: get_u32(r, M_META_COUNT),
            name: StrRef::decode(&r[M_NAME..]),
            source: StrRef::decode(&r[M_SOURCE..]),
            meta_first: get_u64(r, M_META_FIRST),
        }
    }

    /// The model's entries, local to the segment.
    pub fn entries(&self) -> Range<usize> {
        let a = self.first_entry as usize;
        a..a + self.logit_count as usize
    }
}

/// Encodes the Models and ModelMeta sections of `models`; the strings go to `strings` (name and
/// source, then each key and value, model by model).
pub fn encode(models: &[ModelSpec], strings: &mut StringPool) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut table = Vec::with_capacity(models.len() * MODEL_RECORD_LEN);
    let mut meta = Vec::new();
    let mut meta_count_total = 0u64;
    for m in models {
        let name = strings.add(&m.name)?;
        let source = strings.add(&m.source)?;
        table.extend_from_slice(&m.first_entry.to_le_bytes());
        table.extend_from_slice(&m.logit_count.to_le_bytes());
        let mc = u32::try_from(m.meta.len())
            .map_err(|_| Error::InvalidInput("too many metadata pairs".into()))?;
        table.extend_from_slice(&mc.to_le_bytes());
        name.encode_into(&mut table);
        source.encode_into(&mut table);
        table.extend_from_slice(&meta_count_total.to_le_bytes());
        table.extend_from_slice(&0u64.to_le_bytes());
        for (k, v) in &m.meta {
            let k = strings.add(k)?;
            let v = strings.add(v)?;
            k.encode_into(&mut meta);
            v.encode_into(&mut meta);
        }
        meta_count_total += m.meta.len() as u64;
    }
    Ok((table, meta))
}

/// A segment's model table in place.
#[derive(Debug, Clone, Copy)]
pub struct ModelTable<'a>(pub &'a [u8]);

impl<'a> ModelTable<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / MODEL_RECORD_LEN
    }

    pub fn get(&self, m: usize) -> ModelRecord {
        ModelRecord::decode(&self.0[m * MODEL_RECORD_LEN..(m + 1) * MODEL_RECORD_LEN])
    }

    /// The first entry of model `m`, local to the segment.
    pub fn first_entry(&self, m: usize) -> u64 {
        get_u64(&self.0[m * MODEL_RECORD_LEN..], M_FIRST_ENTRY)
    }

    pub fn records(&self) -> impl Iterator<Item = ModelRecord> + 'a {
        self.0
            .chunks_exact(MODEL_RECORD_LEN)
            .map(ModelRecord::decode)
    }

    /// The structural check made on first use: local first entries contiguous from 0, every
    /// logit count at least 1, `entry_count` entries in all, name and source references within
    /// `strings_len` bytes, metadata records within the `meta_records` of the segment. `s` is the
    /// segment's number, for messages.
    pub fn check(
        &self,
        s: usize,
        strings_len: u64,
        meta_records: u64,
        entry_count: u64,
    ) -> std::result::Result<(), String> {
        let mut next = 0u64;
        for (m, r) in self.records().enumerate() {
            let first = r.first_entry;
            let count = u64::from(r.logit_count);
            if first != next || count == 0 {
                return Err(format!(
                    "segment {s}, model {m}: entries start at {first} with {count} logits, expected start {next}"
                ));
            }
            next += count;
            for (what, sr) in [("name", r.name), ("source", r.source)] {
                sr.check(strings_len)
                    .map_err(|e| format!("segment {s}, model {m}: {what} {e}"))?;
            }
            let mf = r.meta_first;
            let mc = u64::from(r.meta_count);
            if mf.checked_add(mc).is_none_or(|end| end > meta_records) {
                return Err(format!(
                    "segment {s}, model {m}: metadata records {mf}..{mf}+{mc} out of {meta_records}"
                ));
            }
        }
        if next != entry_count {
            return Err(format!(
                "segment {s}: models cover {next} entries, the segment holds {entry_count}"
            ));
        }
        Ok(())
    }
}

/// The key and value references of ModelMeta record `i`.
pub fn meta_record(section: &[u8], i: usize) -> (StrRef, StrRef) {
    let rec = &section[i * META_RECORD_LEN..(i + 1) * META_RECORD_LEN];
    (StrRef::decode(rec), StrRef::decode(&rec[STRING_REF_LEN..]))
}

/// The number of records of a ModelMeta section of `len` bytes.
pub fn meta_records(len: u64) -> u64 {
    len / META_RECORD_LEN as u64
}

/// The Models length rule: one record per model.
pub fn required_len(c: &SegmentCounts) -> Option<u64> {
    c.models.checked_mul(MODEL_RECORD_LEN as u64)
}

/// The ModelMeta length rule: whole records.
pub fn meta_required_len(s: &SectionEntry) -> Option<u64> {
    s.len
        .is_multiple_of(META_RECORD_LEN as u64)
        .then_some(s.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(first_entry: u64, logit_count: u32, name: &str, meta: &[(&str, &str)]) -> ModelSpec {
        ModelSpec {
            first_entry,
            logit_count,
            name: name.into(),
            source: String::new(),
            meta: owned_meta(meta),
        }
    }

    #[test]
    fn records_round_trip_and_the_table_check_catches_gaps() {
        let mut pool = StringPool::default();
        let models = [
            spec(0, 2, "a", &[("k", "v")]),
            spec(2, 3, "b", &[("x", "1"), ("y", "2")]),
        ];
        let (table, meta) = encode(&models, &mut pool).unwrap();
        assert_eq!(table.len(), 2 * MODEL_RECORD_LEN);
        assert_eq!(meta.len(), 3 * META_RECORD_LEN);
        let t = ModelTable(&table);
        assert_eq!(t.len(), 2);
        let b = t.get(1);
        assert_eq!(
            (b.first_entry, b.logit_count, b.meta_first, b.meta_count),
            (2, 3, 1, 2)
        );
        assert_eq!(b.name.resolve(pool.bytes()).unwrap(), Some("b"));
        assert_eq!(b.entries(), 2..5);
        assert_eq!(t.first_entry(1), 2);
        let (k, v) = meta_record(&meta, 2);
        assert_eq!(k.resolve(pool.bytes()).unwrap(), Some("y"));
        assert_eq!(v.resolve(pool.bytes()).unwrap(), Some("2"));
        let strings = pool.bytes().len() as u64;
        assert!(
            t.check(0, strings, meta_records(meta.len() as u64), 5)
                .is_ok()
        );
        assert!(t.check(0, strings, 3, 6).is_err());
        assert!(t.check(0, strings, 2, 5).is_err());
        assert!(t.check(0, 0, 3, 5).is_err());
        let (gap, _) = encode(&[spec(0, 2, "a", &[]), spec(3, 1, "b", &[])], &mut pool).unwrap();
        assert!(ModelTable(&gap).check(0, u64::MAX, 0, 4).is_err());
    }
}
