//! Deletes, new versions, filters and explanations through the C ABI (the functions of
//! `probelog.h`, called from Rust): deleted models never come back from any call, in any query
//! kind, grouping, metric or mode; the name policy of `ProbelogModel.existing_name`; filters
//! return a full `top` and the CLI's results (`search --where --model-name`); explanations add
//! up to the score and are the CLI's (`search --explain`); the index info counts live and
//! deleted models.

mod common;

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use common::*;
use probelog_c::*;

fn last_error() -> String {
    // SAFETY: never NULL; valid until the next status call on this thread, after the copy.
    unsafe { CStr::from_ptr(probelog_last_error()) }
        .to_string_lossy()
        .into_owned()
}

type Failed = (ProbelogStatus, String);

fn status(st: ProbelogStatus) -> Result<(), Failed> {
    if st == PROBELOG_OK {
        assert_eq!(last_error(), "");
        Ok(())
    } else {
        let msg = last_error();
        assert!(!msg.is_empty(), "a failure leaves a message");
        Err((st, msg))
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// An index handle, closed on drop.
struct Idx(*mut ProbelogIndex);

impl Idx {
    fn open(path: &std::path::Path) -> Idx {
        let p = cstr(s(path));
        let mut h = ptr::null_mut();
        // SAFETY: a NUL-terminated path and a writable out pointer.
        status(unsafe { probelog_index_open(p.as_ptr(), &mut h) }).unwrap();
        Idx(h)
    }

    fn info(&self) -> ProbelogIndexInfo {
        let mut info = ProbelogIndexInfo::default();
        // SAFETY: a live handle and a writable out struct.
        status(unsafe { probelog_index_info(self.0, &mut info) }).unwrap();
        info
    }

    fn refresh(&self) {
        // SAFETY: a live handle; NULL `changed` is allowed.
        status(unsafe { probelog_index_refresh(self.0, ptr::null_mut()) }).unwrap();
    }

    fn descriptor(&self, entry: u64, probes: usize) -> Result<Vec<f32>, Failed> {
        let mut out = vec![0f32; probes];
        // SAFETY: a live handle and room for `probes` floats.
        status(unsafe { probelog_index_descriptor(self.0, entry, out.as_mut_ptr(), probes) })?;
        Ok(out)
    }
}

impl Drop for Idx {
    fn drop(&mut self) {
        // SAFETY: a live handle, not used again.
        unsafe { probelog_index_close(self.0) }
    }
}

/// A writer handle, closed on drop.
struct Writer(*mut ProbelogWriter);

impl Writer {
    fn open(path: &std::path::Path) -> Writer {
        let p = cstr(s(path));
        let mut h = ptr::null_mut();
        // SAFETY: a NUL-terminated path and a writable out pointer.
        status(unsafe { probelog_writer_open(p.as_ptr(), PROBELOG_NO_WAIT, &mut h) }).unwrap();
        Writer(h)
    }

    /// Stages a model named `name` of `l` logits over `p` probes, with metadata `family=new`.
    fn add(
        &self,
        name: &str,
        logits: &[f32],
        p: usize,
        l: usize,
        existing_name: u32,
    ) -> Result<ProbelogModelAdded, Failed> {
        let name = cstr(name);
        let (k, v) = (cstr("family"), cstr("new"));
        let keys = [k.as_ptr()];
        let values = [v.as_ptr()];
        let model = ProbelogModel {
            name: name.as_ptr(),
            source: ptr::null(),
            logits: logits.as_ptr(),
            num_probes: p as u32,
            num_logits: l as u32,
            labels: ptr::null(),
            meta_keys: keys.as_ptr(),
            meta_values: values.as_ptr(),
            meta_count: 1,
            keep_constant: 0,
            existing_name,
        };
        let mut added = ProbelogModelAdded::default();
        // SAFETY: a live writer, a model whose pointers live through the call, a writable out.
        status(unsafe { probelog_writer_add_model(self.0, &model, &mut added) })?;
        Ok(added)
    }

    fn delete_id(&self, id: u64) -> Result<(), Failed> {
        // SAFETY: a live writer.
        status(unsafe { probelog_writer_delete_model(self.0, id) })
    }

    fn delete_named(&self, name: &str) -> Result<u64, Failed> {
        let name = cstr(name);
        let mut n = 99u64;
        // SAFETY: a live writer, a NUL-terminated name, a writable count.
        let st = unsafe { probelog_writer_delete_models_named(self.0, name.as_ptr(), &mut n) };
        status(st).map(|()| n).inspect_err(|_| assert_eq!(n, 0))
    }

    fn commit(&self) -> ProbelogCommitInfo {
        let mut info = ProbelogCommitInfo::default();
        // SAFETY: a live writer and a writable out struct.
        status(unsafe { probelog_writer_commit(self.0, &mut info) }).unwrap();
        info
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: a live writer, not used again.
        unsafe { probelog_writer_close(self.0) }
    }
}

#[derive(Debug, Clone, Copy)]
enum Q<'a> {
    Entry(u64),
    Vector(&'a [f32]),
    Text(&'a [f32]),
}

#[derive(Debug, Clone, PartialEq)]
struct Share {
    probe: u32,
    query: f32,
    hit: f32,
    share: f32,
    name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Found {
    row: Row,
    explain: Vec<Share>,
}

/// A filter as C passes it: the strings live as long as this value.
#[derive(Default)]
struct Filter {
    conditions: Vec<CString>,
    pointers: Vec<*const c_char>,
    name: Option<CString>,
}

impl Filter {
    fn new(conditions: &[&str], name: Option<&str>) -> Filter {
        let conditions: Vec<CString> = conditions.iter().map(|c| cstr(c)).collect();
        let pointers = conditions.iter().map(|c| c.as_ptr()).collect();
        Filter {
            conditions,
            pointers,
            name: name.map(cstr),
        }
    }

    fn apply(&self, p: &mut ProbelogSearchParams) {
        p.where_conditions = if self.pointers.is_empty() {
            ptr::null()
        } else {
            self.pointers.as_ptr()
        };
        p.where_count = self.conditions.len();
        p.model_name = self.name.as_ref().map_or(ptr::null(), |n| n.as_ptr());
    }
}

fn opt_string(p: *const c_char, len: usize) -> Option<String> {
    if p.is_null() {
        assert_eq!(len, 0);
        return None;
    }
    // SAFETY: a NUL-terminated string owned by live results.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    assert_eq!(s.len(), len);
    Some(s)
}

/// Runs one search through the C ABI and reads every result and explanation.
fn search(idx: &Idx, q: Q<'_>, p: &ProbelogSearchParams) -> Result<Vec<Found>, Failed> {
    let mut res = ptr::null_mut();
    // SAFETY: a live handle, queries that live through the call, valid params, writable out.
    let st = unsafe {
        match q {
            Q::Entry(e) => probelog_search_entry(idx.0, e, p, &mut res),
            Q::Vector(v) => probelog_search_vector(idx.0, v.as_ptr(), v.len(), p, &mut res),
            Q::Text(t) => probelog_search_text_embedding(idx.0, t.as_ptr(), t.len(), p, &mut res),
        }
    };
    if let Err(e) = status(st) {
        assert!(res.is_null());
        return Err(e);
    }
    let mut out = Vec::new();
    // SAFETY: `res` is live until the free below; every out struct is writable.
    unsafe {
        for i in 0..probelog_results_len(res) {
            let mut h = std::mem::zeroed::<ProbelogHit>();
            status(probelog_results_get(res, i, &mut h)).unwrap();
            let model = opt_string(h.model, h.model_len).unwrap();
            let row = (
                u64::from(h.rank),
                h.entry,
                h.model_id,
                model,
                h.logit,
                opt_string(h.label, h.label_len),
                h.score,
            );
            let n = probelog_results_explain_len(res, i);
            let mut explain = Vec::new();
            for j in 0..n {
                let mut s = std::mem::zeroed::<ProbelogProbeShare>();
                status(probelog_results_explain_get(res, i, j, &mut s)).unwrap();
                explain.push(Share {
                    probe: s.probe,
                    query: s.query,
                    hit: s.hit,
                    share: s.share,
                    name: opt_string(s.name, s.name_len),
                });
            }
            let mut s = std::mem::zeroed::<ProbelogProbeShare>();
            let past = probelog_results_explain_get(res, i, n, &mut s);
            assert_eq!(past, PROBELOG_ERR_INVALID_ARGUMENT, "{}", last_error());
            out.push(Found { row, explain });
        }
        probelog_results_free(res);
    }
    Ok(out)
}

/// The mode a search ran in (`probelog_results_mode`).
fn ran_mode(idx: &Idx, q: Q<'_>, p: &ProbelogSearchParams) -> u32 {
    let mut res = ptr::null_mut();
    // SAFETY: as in `search`; the results are freed here.
    unsafe {
        let st = match q {
            Q::Entry(e) => probelog_search_entry(idx.0, e, p, &mut res),
            Q::Vector(v) => probelog_search_vector(idx.0, v.as_ptr(), v.len(), p, &mut res),
            Q::Text(t) => probelog_search_text_embedding(idx.0, t.as_ptr(), t.len(), p, &mut res),
        };
        status(st).unwrap();
        let mode = probelog_results_mode(res);
        probelog_results_free(res);
        mode
    }
}

fn params() -> ProbelogSearchParams {
    probelog_search_params_default()
}

/// The CLI's report of the same search (`search ... --json`), with `extra` flags.
fn cli(zoo: &Zoo, q: Q<'_>, extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<String> = vec!["search".into(), s(&zoo.index).into()];
    match q {
        Q::Entry(e) => args.extend(["--entry".into(), e.to_string()]),
        Q::Vector(_) => args.extend(["--query-logits".into(), s(&zoo.query_npy).into()]),
        Q::Text(_) => args.extend(["--text-embedding".into(), s(&zoo.text_npy).into()]),
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    tool_json(&refs)
}

fn rows(found: &[Found]) -> Vec<Row> {
    found.iter().map(|f| f.row.clone()).collect()
}

/// Every metric and grouping: (metric, per_model, the CLI's flags).
const SHAPES: &[(u32, i32, &[&str])] = &[
    (PROBELOG_METRIC_BLEND, 0, &["--metric", "blend"]),
    (
        PROBELOG_METRIC_BLEND,
        1,
        &["--metric", "blend", "--per-model"],
    ),
    (PROBELOG_METRIC_TOPK, 0, &["--metric", "topk"]),
    (
        PROBELOG_METRIC_TOPK,
        1,
        &["--metric", "topk", "--per-model"],
    ),
    (PROBELOG_METRIC_FULL, 0, &["--metric", "full"]),
    (PROBELOG_METRIC_MODEL, 0, &["--metric", "model"]),
];

#[test]
fn deleted_models_never_come_back() {
    let zoo = Zoo::new(true);
    let info = tool_json(&["info", s(&zoo.index)]);
    assert_eq!(info["graphs"], 1, "{info}");
    let idx = Idx::open(&zoo.index);
    let all = (zoo.models * zoo.logits) as u32;

    // m-2 by name, model 5 by id, in one commit.
    let w = Writer::open(&zoo.index);
    assert_eq!(w.delete_named("m-2").unwrap(), 1);
    w.delete_id(5).unwrap();
    // Unknown or repeated ids and names are refused, and nothing more is staged.
    for id in [2, 5, 10, 1000] {
        let (st, msg) = w.delete_id(id).unwrap_err();
        assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT, "{id}: {msg}");
    }
    let (st, msg) = w.delete_named("m-2").unwrap_err();
    assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("m-2"), "{msg}");
    let (st, _) = w.delete_named("no-such-model").unwrap_err();
    assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT);
    // SAFETY: a live writer; a NULL name is refused.
    let st = unsafe { probelog_writer_delete_models_named(w.0, ptr::null(), ptr::null_mut()) };
    assert_eq!(st, PROBELOG_ERR_NULL_POINTER);
    let commit = w.commit();
    assert_eq!(
        (
            commit.models_deleted,
            commit.models_added,
            commit.entries_added
        ),
        (2, 0, 0)
    );
    assert_eq!(commit.model_count, zoo.models as u64);
    drop(w);

    // The handle sees the old snapshot until it refreshes.
    assert_eq!(idx.info().deleted_model_count, 0);
    idx.refresh();
    let i = idx.info();
    let l = zoo.logits as u64;
    assert_eq!((i.model_count, i.entry_count), (10, 10 * l));
    assert_eq!((i.live_model_count, i.deleted_model_count), (8, 2));
    assert_eq!((i.live_entry_count, i.deleted_entry_count), (8 * l, 2 * l));
    let cli_info = tool_json(&["info", s(&zoo.index)]);
    assert_eq!(cli_info["deleted_models"], 2);
    assert_eq!(cli_info["deleted_entries"].as_u64(), Some(2 * l));

    // Their entries are refused as lookups and as queries.
    let deleted = [2u64, 5];
    for m in deleted {
        for e in m * l..(m + 1) * l {
            let (st, msg) = idx.descriptor(e, zoo.probes).unwrap_err();
            assert_eq!(st, PROBELOG_ERR_DELETED, "{msg}");
            assert!(msg.contains("deleted"), "{msg}");
            let (st, _) = search(&idx, Q::Entry(e), &params()).unwrap_err();
            assert_eq!(st, PROBELOG_ERR_DELETED);
        }
    }
    assert!(idx.descriptor(0, zoo.probes).is_ok());

    // Every query kind, grouping and metric, asking for every entry: the deleted models are
    // absent, everything else is there, and the results are the CLI's.
    let queries = [Q::Entry(4), Q::Vector(&zoo.query), Q::Text(&zoo.text)];
    for q in queries {
        for &(metric, per_model, flags) in SHAPES {
            let p = ProbelogSearchParams {
                top: all,
                metric,
                per_model,
                ..params()
            };
            let got = search(&idx, q, &p).unwrap();
            let models: std::collections::BTreeSet<u64> = got.iter().map(|f| f.row.2).collect();
            assert_eq!(models.len(), 8, "{q:?} {flags:?}: {models:?}");
            assert!(
                models.iter().all(|m| !deleted.contains(m)),
                "{q:?} {flags:?}"
            );
            let grouped = per_model != 0 || metric == PROBELOG_METRIC_MODEL;
            assert_eq!(got.len(), if grouped { 8 } else { 8 * zoo.logits });
            let mut args = flags.to_vec();
            args.extend(["--top", "30"]);
            assert_eq!(
                rows(&got),
                cli_rows(&cli(&zoo, q, &args)),
                "{q:?} {flags:?}"
            );
        }
        // Through the ANN graph: the paper's metric in hnsw mode, top 5 and every entry.
        for top in [5, all] {
            let p = ProbelogSearchParams {
                top,
                metric: PROBELOG_METRIC_TOPK,
                mode: PROBELOG_MODE_HNSW,
                candidates: 40,
                ..params()
            };
            assert_eq!(ran_mode(&idx, q, &p), PROBELOG_MODE_HNSW);
            let got = search(&idx, q, &p).unwrap();
            assert_eq!(got.len(), (top as usize).min(8 * zoo.logits), "{q:?}");
            assert!(got.iter().all(|f| !deleted.contains(&f.row.2)), "{q:?}");
            let top = top.to_string();
            let args = [
                "--metric",
                "topk",
                "--mode",
                "hnsw",
                "--candidates",
                "40",
                "--top",
                &top,
            ];
            assert_eq!(rows(&got), cli_rows(&cli(&zoo, q, &args)), "{q:?} hnsw");
        }
    }
    // Excluding the query's own model as well.
    let p = ProbelogSearchParams {
        top: all,
        exclude_same_model: 1,
        ..params()
    };
    let got = search(&idx, Q::Entry(4), &p).unwrap();
    assert_eq!(got.len(), 7 * zoo.logits);
    assert!(got.iter().all(|f| ![1, 2, 5].contains(&f.row.2)));

    // A fresh handle (open, not refresh) sees the same.
    let fresh = Idx::open(&zoo.index);
    assert_eq!(fresh.info().live_model_count, 8);
    let (st, _) = fresh.descriptor(2 * l, zoo.probes).unwrap_err();
    assert_eq!(st, PROBELOG_ERR_DELETED);
}

#[test]
fn the_name_policy_refuses_replaces_or_keeps() {
    let zoo = Zoo::new(false);
    let (p, l) = (zoo.probes, 2);
    let logits = Rng::new(5).vec(p * l);
    let idx = Idx::open(&zoo.index);
    let w = Writer::open(&zoo.index);

    // The default refuses a live model's name, in C's words, and stages nothing.
    let (st, msg) = w
        .add("m-1", &logits, p, l, PROBELOG_NAME_REFUSE)
        .unwrap_err();
    assert_eq!(st, PROBELOG_ERR_DUPLICATE_NAME, "{msg}");
    assert!(
        msg.contains("\"m-1\"") && msg.contains("PROBELOG_NAME_REPLACE"),
        "{msg}"
    );
    let (st, msg) = w.add("m-1", &logits, p, l, 7).unwrap_err();
    assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("PROBELOG_NAME_KEEP"), "{msg}");

    // A new version of m-1 replaces it in the same commit.
    let added = w.add("m-1", &logits, p, l, PROBELOG_NAME_REPLACE).unwrap();
    assert_eq!(added.model_id, 10);
    // A second model of that name in the same commit is refused unless kept.
    let (st, msg) = w
        .add("m-1", &logits, p, l, PROBELOG_NAME_REPLACE)
        .unwrap_err();
    assert_eq!(st, PROBELOG_ERR_DUPLICATE_NAME, "{msg}");
    let (st, msg) = w
        .add("m-1", &logits, p, l, PROBELOG_NAME_REFUSE)
        .unwrap_err();
    assert_eq!(st, PROBELOG_ERR_DUPLICATE_NAME, "{msg}");
    let c = w.commit();
    assert_eq!(
        (c.models_added, c.models_deleted, c.entries_added),
        (1, 1, 2)
    );

    idx.refresh();
    let i = idx.info();
    assert_eq!(
        (i.model_count, i.live_model_count, i.deleted_model_count),
        (11, 10, 1)
    );
    let p_all = ProbelogSearchParams {
        top: 100,
        per_model: 1,
        ..params()
    };
    let got = search(&idx, Q::Vector(&zoo.query), &p_all).unwrap();
    let m1: Vec<u64> = got
        .iter()
        .filter(|f| f.row.3 == "m-1")
        .map(|f| f.row.2)
        .collect();
    assert_eq!(m1, vec![10], "only the new version of m-1");
    let (st, _) = idx.descriptor(3, zoo.probes).unwrap_err();
    assert_eq!(st, PROBELOG_ERR_DELETED, "the old m-1's entries are gone");

    // Keep: two live models named m-3; deleting by name then takes both.
    let kept = w.add("m-3", &logits, p, l, PROBELOG_NAME_KEEP).unwrap();
    assert_eq!(w.commit().models_deleted, 0);
    idx.refresh();
    let got = search(&idx, Q::Vector(&zoo.query), &p_all).unwrap();
    let mut m3: Vec<u64> = got
        .iter()
        .filter(|f| f.row.3 == "m-3")
        .map(|f| f.row.2)
        .collect();
    m3.sort_unstable();
    assert_eq!(m3, vec![3, kept.model_id]);
    assert_eq!(w.delete_named("m-3").unwrap(), 2);
    let c = w.commit();
    assert_eq!(c.models_deleted, 2);
    idx.refresh();
    let i = idx.info();
    assert_eq!((i.live_model_count, i.deleted_model_count), (9, 3));
    assert_eq!(i.live_entry_count, 8 * zoo.logits as u64 + 2);
    let got = search(&idx, Q::Vector(&zoo.query), &p_all).unwrap();
    assert!(got.iter().all(|f| f.row.3 != "m-3"));
    drop(w);
    tool_ok(&["verify", s(&zoo.index)]);
}

#[test]
fn filters_return_a_full_top_and_the_cli_results() {
    let zoo = Zoo::new(true);
    let idx = Idx::open(&zoo.index);
    // (conditions, name glob, the models they keep)
    let cases: &[(&[&str], Option<&str>, &[u64])] = &[
        (&["family=a"], None, &[0, 2, 4, 6, 8]),
        (&["license!=gpl"], None, &[3, 4, 5, 6, 7, 8, 9]),
        (&["family=b", "license!=gpl"], None, &[3, 5, 7, 9]),
        (&["license=mit"], Some("m-[0-5]"), &[]),
        (&[], Some("m-?"), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        (&["family=a"], Some("*-4"), &[4]),
        (&["family=c"], None, &[]),
    ];
    let queries = [Q::Entry(4), Q::Vector(&zoo.query), Q::Text(&zoo.text)];
    for &(conditions, name, keep) in cases {
        let filter = Filter::new(conditions, name);
        let mut flags: Vec<&str> = Vec::new();
        for c in conditions {
            flags.extend(["--where", c]);
        }
        if let Some(n) = name {
            flags.extend(["--model-name", n]);
        }
        for q in queries {
            for &(metric, per_model, shape) in SHAPES {
                for top in [4u32, 5, 12] {
                    let mut p = ProbelogSearchParams {
                        top,
                        metric,
                        per_model,
                        ..params()
                    };
                    filter.apply(&mut p);
                    let got = search(&idx, q, &p).unwrap();
                    let grouped = per_model != 0 || metric == PROBELOG_METRIC_MODEL;
                    let matching = keep.len() * if grouped { 1 } else { zoo.logits };
                    let what = format!("{conditions:?} {name:?} {q:?} {shape:?} top {top}");
                    assert_eq!(got.len(), matching.min(top as usize), "a full top: {what}");
                    assert!(got.iter().all(|f| keep.contains(&f.row.2)), "{what}");
                    let mut args = flags.clone();
                    args.extend(shape);
                    let top_s = top.to_string();
                    args.extend(["--top", &top_s]);
                    let want = cli(&zoo, q, &args);
                    assert_eq!(rows(&got), cli_rows(&want), "{what}");
                }
            }
            // hnsw: the graph walk keeps only allowed nodes.
            let mut p = ProbelogSearchParams {
                top: 5,
                metric: PROBELOG_METRIC_TOPK,
                mode: PROBELOG_MODE_HNSW,
                candidates: 20,
                ..params()
            };
            filter.apply(&mut p);
            assert_eq!(ran_mode(&idx, q, &p), PROBELOG_MODE_HNSW);
            let got = search(&idx, q, &p).unwrap();
            assert_eq!(got.len(), (keep.len() * zoo.logits).min(5));
            assert!(got.iter().all(|f| keep.contains(&f.row.2)));
            let mut args = flags.clone();
            args.extend(HNSW_TOP5_FLAGS);
            assert_eq!(rows(&got), cli_rows(&cli(&zoo, q, &args)));
        }
    }

    // A filter that keeps a deleted model's entries still never returns them.
    let w = Writer::open(&zoo.index);
    w.delete_id(4).unwrap();
    w.commit();
    drop(w);
    idx.refresh();
    let filter = Filter::new(&["family=a"], None);
    let mut p = ProbelogSearchParams {
        top: 30,
        ..params()
    };
    filter.apply(&mut p);
    let got = search(&idx, Q::Vector(&zoo.query), &p).unwrap();
    assert_eq!(got.len(), 4 * zoo.logits);
    assert!(got.iter().all(|f| [0, 2, 6, 8].contains(&f.row.2)));

    // Malformed filters.
    for bad in ["", "=x", "novalue", "!=x"] {
        let filter = Filter::new(&["family=a", bad], None);
        let mut p = params();
        filter.apply(&mut p);
        let (st, msg) = search(&idx, Q::Vector(&zoo.query), &p).unwrap_err();
        assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT, "{bad:?}: {msg}");
        assert!(msg.contains("where_conditions[1]"), "{msg}");
    }
    let mut p = params();
    p.where_count = 2;
    let (st, msg) = search(&idx, Q::Vector(&zoo.query), &p).unwrap_err();
    assert_eq!(st, PROBELOG_ERR_NULL_POINTER, "{msg}");
    let nul = [ptr::null::<c_char>()];
    p.where_conditions = nul.as_ptr();
    p.where_count = 1;
    let (st, msg) = search(&idx, Q::Vector(&zoo.query), &p).unwrap_err();
    assert_eq!(st, PROBELOG_ERR_NULL_POINTER, "{msg}");
    assert!(msg.contains("where_conditions[0]"), "{msg}");
    let bad_utf8 = [0xffu8, 0];
    let mut p = params();
    p.model_name = bad_utf8.as_ptr().cast();
    let (st, _) = search(&idx, Q::Vector(&zoo.query), &p).unwrap_err();
    assert_eq!(st, PROBELOG_ERR_INVALID_UTF8);
}

#[test]
fn explanations_add_up_to_the_score_and_are_the_clis() {
    let zoo = Zoo::new(false);
    let idx = Idx::open(&zoo.index);
    let probes = zoo.probes as u32;
    let queries = [Q::Entry(4), Q::Vector(&zoo.query), Q::Text(&zoo.text)];
    for q in queries {
        for &(metric, per_model, shape) in SHAPES {
            // Every probe: the shares add up to the score.
            let p = ProbelogSearchParams {
                top: 6,
                metric,
                per_model,
                explain: 1000,
                ..params()
            };
            let got = search(&idx, q, &p).unwrap();
            assert_eq!(got.len(), 6);
            for f in &got {
                assert_eq!(f.explain.len(), zoo.probes, "{q:?} {shape:?}");
                let total: f64 = f.explain.iter().map(|s| f64::from(s.share)).sum();
                let score = f64::from(f.row.6);
                assert!(
                    (total - score).abs() <= 1e-4 * score.max(1.0),
                    "{q:?} {shape:?}: shares {total} vs score {score}"
                );
                assert!(f.explain.windows(2).all(|w| w[0].share >= w[1].share));
                let mut seen: Vec<u32> = f.explain.iter().map(|s| s.probe).collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..probes).collect::<Vec<_>>());
                for s in &f.explain {
                    assert_eq!(
                        s.name.as_deref(),
                        Some(format!("probe-{}", s.probe).as_str())
                    );
                    assert!(s.share >= 0.0);
                }
            }
            // The top 3, as the CLI shows them.
            let p = ProbelogSearchParams { explain: 3, ..p };
            let got = search(&idx, q, &p).unwrap();
            let mut args = shape.to_vec();
            args.extend(["--top", "6", "--explain", "3"]);
            let want = cli(&zoo, q, &args);
            assert_eq!(rows(&got), cli_rows(&want), "{q:?} {shape:?}");
            for (f, r) in got.iter().zip(want["results"].as_array().unwrap()) {
                let cli_probes = r["explain"].as_array().unwrap();
                assert_eq!(f.explain.len(), 3);
                assert_eq!(cli_probes.len(), 3);
                for (s, c) in f.explain.iter().zip(cli_probes) {
                    assert_eq!(u64::from(s.probe), c["probe"].as_u64().unwrap());
                    assert_eq!(s.name.as_deref(), c["name"].as_str());
                    for (v, key) in [(s.query, "query"), (s.hit, "hit"), (s.share, "share")] {
                        assert_eq!(v, c[key].as_f64().unwrap() as f32, "{key}");
                    }
                }
            }
        }
    }
    // Without explain: none, and asking for one is an error that says so.
    let got = search(&idx, Q::Entry(0), &params()).unwrap();
    assert!(got.iter().all(|f| f.explain.is_empty()));
    let mut res = ptr::null_mut();
    // SAFETY: a live handle, default params, writable outs; the results are freed below.
    unsafe {
        status(probelog_search_entry(idx.0, 0, ptr::null(), &mut res)).unwrap();
        assert_eq!(probelog_results_explain_len(res, 0), 0);
        assert_eq!(probelog_results_explain_len(res, 1000), 0);
        assert_eq!(probelog_results_explain_len(ptr::null(), 0), 0);
        let mut s = std::mem::zeroed::<ProbelogProbeShare>();
        let st = probelog_results_explain_get(res, 0, 0, &mut s);
        assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("explain > 0"), "{}", last_error());
        let st = probelog_results_explain_get(res, 1000, 0, &mut s);
        assert_eq!(st, PROBELOG_ERR_INVALID_ARGUMENT);
        let st = probelog_results_explain_get(ptr::null(), 0, 0, &mut s);
        assert_eq!(st, PROBELOG_ERR_NULL_POINTER);
        probelog_results_free(res);
    }

    // An index without probe names: the shares have no names.
    let plain = zoo.path("plain.plog");
    tool_ok(&["demo", s(&plain), "--models", "3", "--probes", "16"]);
    let idx = Idx::open(&plain);
    let p = ProbelogSearchParams {
        explain: 2,
        ..params()
    };
    let got = search(&idx, Q::Entry(0), &p).unwrap();
    assert!(!got.is_empty());
    assert_eq!(tool_json(&["info", s(&plain)])["probe_names"], false);
    for f in &got {
        assert_eq!(f.explain.len(), 2);
        assert!(f.explain.iter().all(|s| s.name.is_none()));
    }
}
