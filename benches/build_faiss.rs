//! The FAISS side of the build benchmark: the 64-d PCA export (.npy files) and the run of
//! `benches/build_faiss.py` in the Python environment of `tools/setup-bench.sh`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use probelog::search::ScanPlan;
use probelog::{DEFAULT_K, Index, Metric};

use crate::pca::{FitOptions, Projection};

/// Dimensions of the PCA that FAISS indexes.
pub const PCA_DIMS: usize = 64;

/// One efSearch of the FAISS sweep.
#[derive(Debug, Clone)]
pub struct FaissPoint {
    pub ef_search: usize,
    pub recall: f64,
    pub p50_ms: f64,
}

/// What the FAISS run reports.
#[derive(Debug, Clone)]
pub struct FaissRun {
    pub version: String,
    pub build_s: f64,
    pub points: Vec<FaissPoint>,
}

/// The Python interpreter with faiss: `$PROBELOG_BENCH_PYTHON`, `.venv-bench` (made by
/// tools/setup-bench.sh), `.venv-py` (tools/setup-python.sh), then `python3`; the first that
/// imports faiss.
pub fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates: Vec<PathBuf> = std::env::var_os("PROBELOG_BENCH_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            root.join(".venv-bench/bin/python"),
            root.join(".venv-py/bin/python"),
            PathBuf::from("python3"),
        ])
        .collect();
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import faiss, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Writes a little-endian .npy file of `shape` from raw element bytes (`descr` "<f4", "<f2",
/// "<u4", "<u8").
fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let dims = shape
        .iter()
        .map(|d| format!("{d},"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create an .npy"));
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
}

/// Exports what `build_faiss.py` reads for the index `index`: the PCA of its
/// descriptors, the queries' projections, top-k probes and values and own-model ranges, the f16
/// descriptors entry-major, and the exact top 10 of each query (`truth`).
pub fn export(index: &Index, queries: &[u64], truth: &[Vec<u64>], out: &Path) {
    std::fs::create_dir_all(out).expect("export folder");
    let p = index.num_probes();
    let rows = index
        .segment_rows(crate::data_segment(index))
        .expect("segment rows")
        .expect("one segment with entries");
    let n = rows.entries();
    let proj = Projection::fit(
        &rows,
        p,
        &FitOptions {
            dims: PCA_DIMS,
            ..Default::default()
        },
    );
    let base = proj.project_rows(&rows);
    write_npy(
        &out.join("base.npy"),
        "<f4",
        &[n, PCA_DIMS],
        bytemuck::cast_slice(&base),
    );
    drop(base);
    let (mut qvec, mut qprobes, mut qvals, mut qrange) = (vec![], vec![], vec![], vec![]);
    for &e in queries {
        let q = index.descriptor(e).expect("query descriptor");
        qvec.extend(proj.project(&q));
        let plan = ScanPlan::new(&q, DEFAULT_K, Metric::TopK);
        qprobes.extend(plan.probes().iter().copied());
        qvals.extend(plan.probes().iter().map(|&pr| q[pr as usize]));
        let m = index.model(index.model_of_entry(e).unwrap()).unwrap();
        qrange.extend([m.first_entry, m.first_entry + u64::from(m.logit_count)]);
    }
    let nq = queries.len();
    write_npy(
        &out.join("queries.npy"),
        "<f4",
        &[nq, PCA_DIMS],
        bytemuck::cast_slice(&qvec),
    );
    write_npy(
        &out.join("qprobes.npy"),
        "<u4",
        &[nq, DEFAULT_K],
        bytemuck::cast_slice(&qprobes),
    );
    write_npy(
        &out.join("qvals.npy"),
        "<f4",
        &[nq, DEFAULT_K],
        bytemuck::cast_slice(&qvals),
    );
    write_npy(
        &out.join("qrange.npy"),
        "<u8",
        &[nq, 2],
        bytemuck::cast_slice(&qrange),
    );
    let flat: Vec<u64> = truth.iter().flatten().copied().collect();
    write_npy(
        &out.join("truth.npy"),
        "<u8",
        &[nq, flat.len() / nq.max(1)],
        bytemuck::cast_slice(&flat),
    );
    // Entry-major f16 descriptors, built in blocks of entries.
    let block = 4096;
    let mut desc = vec![half::f16::ZERO; n * p];
    let mut buf = vec![0f32; block];
    for b in (0..n).step_by(block) {
        let r = b..(b + block).min(n);
        for pr in 0..p {
            rows.read_row(pr, r.clone(), &mut buf[..r.len()]);
            for (i, &v) in buf[..r.len()].iter().enumerate() {
                desc[(b + i) * p + pr] = half::f16::from_f32(v);
            }
        }
    }
    write_npy(
        &out.join("desc.npy"),
        "<f2",
        &[n, p],
        bytemuck::cast_slice(&desc),
    );
}

/// Runs `build_faiss.py` over the export in `dir` with `threads` threads.
pub fn run(py: &Path, dir: &Path, threads: usize, efs: &str) -> Result<FaissRun, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/build_faiss.py");
    let out = Command::new(py)
        .arg(script)
        .arg(dir)
        .args(["--threads", &threads.to_string(), "--ef", efs])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "build_faiss.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("build_faiss.py printed no JSON ({e})"))?;
    let points = v["points"]
        .as_array()
        .ok_or("no points")?
        .iter()
        .map(|p| FaissPoint {
            ef_search: p["ef_search"].as_u64().unwrap_or(0) as usize,
            recall: p["recall"].as_f64().unwrap_or(0.0),
            p50_ms: p["p50_ms"].as_f64().unwrap_or(f64::NAN),
        })
        .collect();
    Ok(FaissRun {
        version: v["faiss"].as_str().unwrap_or("?").to_string(),
        build_s: v["build_s"].as_f64().ok_or("no build_s")?,
        points,
    })
}
