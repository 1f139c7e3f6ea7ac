//! The harness of the fuzz target `open_search_verify` (fuzz/fuzz_targets/), kept in the library so
//! that the integration tests replay the fuzz corpus and every regression through the very same
//! code. Not part of the public API.
//!
//! A fuzz input is turned into one index image and then exercised: open, verify, look up models,
//! entries and probe names, search by entry, by vector and by text, and append, delete and compact
//! through the writer. Nothing may panic, and an index that opens and verifies cleanly must answer
//! every lookup and query without error and survive an append, a delete and a compaction.
//!
//! Input layout: byte 0 selects what to do with the rest.
//! - bits 0-1, the mode: 0 = the rest is the whole file; 1 = XOR the payload into a valid base
//!   image at a position; 2 = replace the base image from a position on with the payload (which
//!   also truncates or extends it); 3 = overwrite the base image with the payload at a position.
//! - bit 2 picks the base image (an f32 index with probe names and embeddings, or an f16 one).
//! - bit 3: recompute every checksum of the result (static header, commit slots, directories,
//!   sections) so that the fuzzer reaches the structural checks behind them.
//!
//! In modes 1-3, bytes 1-2 (little endian) give the position, counted from byte 128 (the end of the
//! static header) and wrapped to the image; bytes 3.. are the payload.

use std::sync::OnceLock;

use crate::ann::AnnOptions;
use crate::format::Dtype;
use crate::reader::{AlignedBytes, RawIndex};
use crate::search::{Grouping, Metric, Query, SearchParams};
use crate::storage::LockWait;
use crate::testkit::FaultyStorage;
use crate::testkit::layout::*;
use crate::writer::{
    AppendOptions, CompactOptions, CreateOptions, IndexWriter, ModelInput, compact_with, create,
};
use crate::{Error, LogitMatrix};

/// Largest probe count for which the harness builds query vectors and appends.
const MAX_PROBES_EXERCISED: usize = 1 << 12;

/// Runs one fuzz input. Panics only when the library misbehaves.
pub fn open_search_verify(data: &[u8]) {
    exercise(&image_from_input(data));
}

/// The index image a fuzz input stands for (see the module documentation).
pub fn image_from_input(data: &[u8]) -> Vec<u8> {
    let Some((&ctl, rest)) = data.split_first() else {
        return Vec::new();
    };
    let mode = ctl & 3;
    let mut img = if mode == 0 {
        rest.to_vec()
    } else {
        let base = &base_images()[usize::from((ctl >> 2) & 1)];
        let (pos, payload) = match rest {
            [a, b, payload @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), payload),
            _ => (0, &[][..]),
        };
        let start = STATIC_HEADER_LEN;
        let at = start + pos % (base.len() - start);
        let mut img = base.clone();
        match mode {
            1 => {
                for (i, b) in payload.iter().enumerate() {
                    let o = start + (at - start + i) % (img.len() - start);
                    img[o] ^= b;
                }
            }
            2 => {
                img.truncate(at);
                img.extend_from_slice(payload);
            }
            _ => {
                let end = at + payload.len();
                if img.len() < end {
                    img.resize(end, 0);
                }
                img[at..end].copy_from_slice(payload);
            }
        }
        img
    };
    if ctl & 8 != 0 {
        fix_checksums(&mut img);
    }
    img
}

/// Valid base images: `[f32 index with names and embeddings, 3 segments; f16 index, 3 segments]`.
pub fn base_images() -> &'static [Vec<u8>; 2] {
    static IMAGES: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    IMAGES.get_or_init(|| {
        [
            build_base(Dtype::F32, 16, true),
            build_base(Dtype::F16, 8, false),
        ]
    })
}

fn logits(probes: usize, n: usize, seed: usize) -> Vec<f32> {
    (0..probes * n)
        .map(|i| {
            let (p, j) = (i / n, i % n);
            ((p * 7 + j * 13 + seed * 31) % 17) as f32 + (p as f32 * 0.37 + j as f32).sin()
        })
        .collect()
}

fn build_base(dtype: Dtype, probes: usize, extras: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary directory for the fuzz base image");
    let path = dir.path().join("base.plog");
    let mut opts = CreateOptions::new(probes as u32);
    opts.dtype = dtype;
    if extras {
        opts.probe_names = Some((0..probes).map(|p| format!("probe-{p}")).collect());
        let emb = (0..probes * 3).map(|i| (i % 5) as f32 + 0.5).collect();
        opts.probe_embeddings = Some((emb, 3));
    }
    create(&path, &opts).expect("create the fuzz base image");
    let bytes = std::fs::read(&path).expect("read the fuzz base image");
    let mut w = IndexWriter::from_storage(FaultyStorage::new(bytes)).expect("open base image");
    for (segment, models) in [[3usize, 2].as_slice(), &[4]].iter().enumerate() {
        for (m, &n) in models.iter().enumerate() {
            let values = logits(probes, n, segment * 10 + m);
            let name = format!("model-{segment}-{m}");
            w.add_model(
                ModelInput {
                    labels: (m == 0).then(|| (0..n).map(|j| format!("{name}/{j}")).collect()),
                    meta: vec![("segment".into(), segment.to_string())],
                    source: if m == 0 { String::new() } else { "src".into() },
                    name,
                    logits: LogitMatrix::new(&values, probes, n).expect("shape"),
                },
                AppendOptions::default(),
            )
            .expect("add a base model");
        }
        if extras && segment == 1 {
            // A partially probed model: the commit fits and stores probe factors.
            let observed: Vec<u32> = (0..probes as u32).filter(|p| p % 3 != 1).collect();
            let values = logits(observed.len(), 3, 77);
            let collab = crate::collab::CollabOptions {
                rank: 2,
                ..Default::default()
            };
            w.add_partial_model(
                ModelInput {
                    labels: None,
                    meta: vec![],
                    source: String::new(),
                    name: "partial".into(),
                    logits: LogitMatrix::new(&values, observed.len(), 3).expect("shape"),
                },
                &observed,
                AppendOptions::default(),
                collab,
            )
            .expect("add a partial base model");
        }
        w.commit().expect("commit the base image");
    }
    w.into_storage().current().to_vec()
}

/// Recomputes the checksums of the static header, the commit slots, and of every directory and
/// section reachable from them, as far as the structure can be followed. Never panics.
pub fn fix_checksums(img: &mut [u8]) {
    if img.len() >= STATIC_HEADER_LEN && img[..8] == MAGIC {
        let crc = crc32fast::hash(&img[..H_CRC]);
        put_u32(img, H_CRC, crc);
    }
    for slot in SLOT_OFFSETS {
        if img.len() < slot + SLOT_LEN || img[slot..slot + SLOT_LEN].iter().all(|&b| b == 0) {
            continue;
        }
        let dir = Extent {
            offset: get_u64(img, slot + C_DIR_OFFSET),
            len: u64::from(get_u32(img, slot + C_DIR_LEN)),
            crc: 0,
        };
        if let Some(crc) = fix_chain(img, dir) {
            put_u32(img, slot + C_DIR_CRC, crc);
        }
        let crc = crc32fast::hash(&img[slot..slot + C_CRC]);
        put_u32(img, slot + C_CRC, crc);
    }
}

/// Fixes the directory chain that starts at `dir`, oldest directory first; returns the checksum
/// of `dir` as its referrer must record it.
fn fix_chain(img: &mut [u8], dir: Extent) -> Option<u32> {
    let mut chain: Vec<(usize, usize)> = Vec::new();
    let mut next = Some(dir);
    while let Some(ext) = next.take() {
        let (Ok(o), Ok(l)) = (usize::try_from(ext.offset), usize::try_from(ext.len)) else {
            break;
        };
        if l < D_SECTIONS + 4
            || o.checked_add(l).is_none_or(|end| end > img.len())
            || chain.len() > 64
            || chain.iter().any(|&(c, _)| c == o)
        {
            break;
        }
        chain.push((o, l));
        let prev = get_u64(img, o + D_PREV_OFFSET);
        if prev != 0 {
            next = Some(Extent {
                offset: prev,
                len: u64::from(get_u32(img, o + D_PREV_LEN)),
                crc: 0,
            });
        }
    }
    let mut prev_crc = None;
    for &(o, l) in chain.iter().rev() {
        let count = get_u32(img, o + D_SECTION_COUNT) as usize;
        for i in 0..count.min(MAX_SECTIONS as usize) {
            let e = o + D_SECTIONS + i * SECTION_ENTRY_LEN;
            if e + SECTION_ENTRY_LEN > o + l - 4 {
                break;
            }
            let (so, sl) = (get_u64(img, e + S_OFFSET), get_u64(img, e + S_LEN));
            if let (Ok(so), Ok(sl)) = (usize::try_from(so), usize::try_from(sl))
                && so.checked_add(sl).is_some_and(|end| end <= img.len())
            {
                let crc = crc32fast::hash(&img[so..so + sl]);
                put_u32(img, e + S_CRC, crc);
            }
        }
        if let Some(crc) = prev_crc {
            put_u32(img, o + D_PREV_CRC, crc);
        }
        let crc = crc32fast::hash(&img[o..o + l - 4]);
        put_u32(img, o + l - 4, crc);
        prev_crc = Some(crc);
    }
    prev_crc
}

/// Opens, verifies, reads, searches and appends to `img`.
pub fn exercise(img: &[u8]) {
    let opened = RawIndex::new(AlignedBytes::from_slice(img));
    let before = match &opened {
        Ok(idx) => Some(Before {
            probes: idx.num_probes(),
            entries: idx.entry_count(),
            models: idx.model_count(),
            sequence: idx.sequence(),
            clean: check_index(idx),
        }),
        Err(_) => None,
    };
    drop(opened);
    check_append(img, before.as_ref());
    check_delete(img, before.as_ref());
    check_compact(img, before.as_ref());
}

/// Deletes the first live model through the writer. On an image that verified, the delete must
/// commit, the result must verify, and no search may return the deleted model; on any other
/// image it may be refused but never panic.
fn check_delete(img: &[u8], before: Option<&Before>) {
    let Ok(mut w) = IndexWriter::from_storage(FaultyStorage::new(img.to_vec())) else {
        return;
    };
    let clean = before.is_some_and(|b| b.clean && b.sequence < u64::MAX);
    let Ok(raw) = RawIndex::new(AlignedBytes::from_slice(img)) else {
        return;
    };
    let Some(victim) = (0..raw.model_count()).find(|&m| !raw.is_model_deleted(m)) else {
        return;
    };
    if let Err(e) = w.delete_model(victim).and_then(|()| w.commit()) {
        assert!(!clean, "an index that verifies refused a delete: {e}");
        return;
    }
    let after = w.into_storage().current().to_vec();
    let idx = RawIndex::new(AlignedBytes::from_slice(&after))
        .unwrap_or_else(|e| panic!("an index does not open after a delete: {e}"));
    assert!(idx.is_model_deleted(victim));
    if !clean || idx.num_probes() > MAX_PROBES_EXERCISED {
        return;
    }
    let report = idx.verify();
    assert!(
        report.is_ok(),
        "a clean index has problems after a delete: {:?}",
        report.problems
    );
    let v: Vec<f32> = (0..idx.num_probes())
        .map(|i| ((i * 7) % 11) as f32)
        .collect();
    let params = SearchParams {
        top: usize::MAX,
        ..SearchParams::default()
    };
    if let Ok(found) = idx.search(&Query::Vector(&v), &params) {
        assert!(
            found.iter().all(|h| h.model_id != victim),
            "a search returned a deleted model"
        );
    }
}

/// Exercises an index that opened; returns whether it verified cleanly.
fn check_index(idx: &RawIndex<AlignedBytes>) -> bool {
    let report = idx.verify();
    let clean = report.is_ok();
    let entries = idx.entry_count();
    let models = idx.model_count();
    let p = idx.num_probes();

    let names = idx.probe_names();
    let emb = idx.probe_embeddings();
    let factors = idx.probe_factors();
    if clean {
        factors.unwrap_or_else(|err| panic!("verified index: probe factors: {err}"));
    }
    for m in [0, models / 2, models.saturating_sub(1), models] {
        let observed = idx.observed_probes(m);
        if clean && m < models {
            let observed =
                observed.unwrap_or_else(|err| panic!("verified index: model {m} observed: {err}"));
            assert!(observed.is_none_or(|o| o.iter().all(|&q| (q as usize) < p)));
        }
    }
    let mut samples: Vec<u64> = vec![0, entries / 2, entries.saturating_sub(1), entries];
    samples.dedup();
    for &e in &samples {
        let info = idx.entry(e);
        let desc = idx.descriptor(e);
        if clean && e < entries {
            let info = info.unwrap_or_else(|err| panic!("verified index: entry {e}: {err}"));
            assert_eq!(info.id, e);
            assert!(info.model_id < models);
            let desc = desc.unwrap_or_else(|err| panic!("verified index: descriptor {e}: {err}"));
            assert_eq!(desc.len(), p);
        }
    }
    for m in [0, models / 2, models.saturating_sub(1), models] {
        let info = idx.model(m);
        if clean && m < models {
            let info = info.unwrap_or_else(|err| panic!("verified index: model {m}: {err}"));
            assert!(info.first_entry < entries && info.logit_count > 0);
        }
    }
    if clean {
        if let Err(e) = &names {
            panic!("verified index: probe names: {e}");
        }
        if let Err(e) = &emb {
            panic!("verified index: probe embeddings: {e}");
        }
    }

    let param_sets = [
        SearchParams::default(),
        SearchParams {
            top: 3,
            k: Some(1),
            grouping: Grouping::PerModel,
            exclude_same_model: true,
            ..Default::default()
        },
        SearchParams {
            metric: Metric::Full,
            exclude_same_model: true,
            ..Default::default()
        },
        SearchParams {
            grouping: Grouping::ModelMean,
            ..Default::default()
        },
        SearchParams {
            metric: Metric::TopK,
            k: Some(3),
            ..Default::default()
        },
        SearchParams {
            blend_weight: Some(0.5),
            grouping: Grouping::PerModel,
            ..Default::default()
        },
        SearchParams {
            mode: crate::search::SearchMode::Hnsw,
            metric: Metric::TopK,
            candidates: Some(2),
            exclude_same_model: true,
            ..Default::default()
        },
    ];
    for params in &param_sets {
        if entries > 0 {
            let r = idx.search(&Query::Entry(0), params);
            check_hits(&r, params, entries, models);
            if clean
                && let Err(e) = &r
                && !matches!(e, Error::Search(_))
            {
                panic!("verified index: search by entry 0 with {params:?}: {e}");
            }
        }
        if p <= MAX_PROBES_EXERCISED && !params.exclude_same_model {
            let v: Vec<f32> = (0..p)
                .map(|i| ((i * 7) % 11) as f32 + i as f32 * 0.01)
                .collect();
            let r = idx.search(&Query::Vector(&v), params);
            check_hits(&r, params, entries, models);
            if clean && let Err(e) = &r {
                panic!("verified index: search by vector with {params:?}: {e}");
            }
            if let Ok(Some((_, dim))) = emb
                && dim <= MAX_PROBES_EXERCISED
            {
                let t: Vec<f32> = (0..dim).map(|i| 1.0 + i as f32).collect();
                let r = idx.search(&Query::TextEmbedding(&t), params);
                check_hits(&r, params, entries, models);
            }
        }
    }
    clean
}

fn check_hits(
    r: &crate::Result<crate::SearchResults>,
    params: &SearchParams,
    entries: u64,
    models: u64,
) {
    let Ok(hits) = r else { return };
    assert!(hits.len() <= params.top, "more hits than asked for");
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h.rank, i + 1);
        assert!(
            h.model_id < models,
            "hit names model {} of {models}",
            h.model_id
        );
        if let Some(e) = h.entry {
            assert!(e < entries, "hit names entry {e} of {entries}");
        }
        if i > 0 {
            let prev = &hits[i - 1];
            assert!(
                prev.score.total_cmp(&h.score).is_le(),
                "hits out of order: {} before {}",
                prev.score,
                h.score
            );
        }
    }
}

/// What an image that opened held.
#[derive(Debug, Clone, Copy)]
struct Before {
    probes: usize,
    entries: u64,
    models: u64,
    sequence: u64,
    /// Verified without problems.
    clean: bool,
}

/// Appends one model through the writer. On an image that opened, the append must succeed (unless
/// the commit sequence number is exhausted) and the result must open with the new entries (and
/// verify cleanly if the image did).
fn check_append(img: &[u8], before: Option<&Before>) {
    let writer = IndexWriter::from_storage(FaultyStorage::new(img.to_vec()));
    let mut w = match writer {
        Ok(w) => w,
        Err(e) => {
            assert!(
                before.is_none(),
                "an index that opens refused a writer: {e}"
            );
            return;
        }
    };
    // A writer validates what a reader's open does: data appended after a state that readers
    // refuse could never be read.
    assert!(
        before.is_some(),
        "a writer accepted an index that readers refuse"
    );
    let p = w.probe_set().num_probes as usize;
    if p > MAX_PROBES_EXERCISED {
        return;
    }
    let values = logits(p, 2, 99);
    let added = w.add_model(
        ModelInput {
            name: "appended".into(),
            source: String::new(),
            meta: vec![],
            labels: Some(vec!["a".into(), "b".into()]),
            logits: LogitMatrix::new(&values, p, 2).expect("shape"),
        },
        AppendOptions {
            keep_constant: true,
            probe_set: None,
            // An image may hold a live model of that name already.
            existing_name: crate::writer::ExistingName::Keep,
        },
    );
    if let Err(e) = added {
        assert!(before.is_none(), "an index that opens refused a model: {e}");
        return;
    }
    let committed = w.commit();
    let Some(&Before {
        entries,
        models,
        sequence,
        clean,
        ..
    }) = before
    else {
        return;
    };
    if sequence == u64::MAX {
        // No later commit can be numbered: the writer must refuse rather than wrap around (a
        // wrapped sequence would make the previous commit slot current again).
        assert!(
            matches!(committed, Err(Error::Corrupt { .. })),
            "an append after commit u64::MAX: {committed:?}"
        );
        return;
    }
    if let Err(e) = committed {
        panic!("an index that opens refused an append: {e}");
    }
    let after = w.into_storage().current().to_vec();
    let idx = RawIndex::new(AlignedBytes::from_slice(&after))
        .unwrap_or_else(|e| panic!("an index that opened does not open after an append: {e}"));
    assert_eq!(
        (idx.entry_count(), idx.model_count()),
        (entries + 2, models + 1)
    );
    let report = idx.verify();
    if clean {
        assert!(
            report.is_ok(),
            "a clean index has problems after an append: {:?}",
            report.problems
        );
    }
    let info = idx.entry(entries + 1).expect("the appended entry");
    assert_eq!(
        (info.model.as_str(), info.label.as_deref()),
        ("appended", Some("b"))
    );
}

/// Compacts `img` as a file, with a graph over every entry. Compaction must refuse an image that
/// does not verify (it would hide the damage under fresh checksums) and leave the file as it was;
/// on a clean image it must succeed and give a file that verifies with the same entries.
fn check_compact(img: &[u8], before: Option<&Before>) {
    if before.is_some_and(|b| b.probes > MAX_PROBES_EXERCISED) {
        return;
    }
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("fuzz.plog");
    if std::fs::write(&path, img).is_err() {
        return;
    }
    let opts = CompactOptions {
        ann: AnnOptions {
            min_entries: 1,
            ..AnnOptions::default()
        },
        ..CompactOptions::default()
    };
    let result = compact_with(&path, LockWait::Fail, opts);
    let after = std::fs::read(&path).expect("read the compacted fuzz image");
    let clean = before.is_some_and(|b| b.clean);
    match result {
        Err(e) => {
            // A clean index is compacted, unless no later commit can be numbered.
            assert!(
                !clean || before.is_some_and(|b| b.sequence == u64::MAX),
                "compaction refused an index that verifies: {e}"
            );
            assert!(after == img, "a refused compaction changed the file: {e}");
        }
        Ok(summary) => {
            assert!(clean, "compaction accepted an index that does not verify");
            let idx = RawIndex::new(AlignedBytes::from_slice(&after))
                .unwrap_or_else(|e| panic!("a compacted index does not open: {e}"));
            let report = idx.verify();
            assert!(
                report.is_ok(),
                "a compacted index has problems: {:?}",
                report.problems
            );
            let b = before.expect("clean");
            assert_eq!(
                (summary.entry_count, summary.model_count),
                (b.entries, b.models)
            );
            assert_eq!(
                (idx.entry_count(), idx.model_count()),
                (b.entries, b.models)
            );
        }
    }
}
