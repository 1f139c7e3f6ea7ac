//! Probing throughput: images per second through a TorchScript CNN at batch 32, by
//! `probelog-tool append --model`, beside the raw tch forward loop on the same model, same batch
//! and same threads (the ratio is the tool's overhead: reading the probe set, building input
//! tensors, checking and collecting outputs), and beside the same TorchScript file in Python
//! torch (`torch.jit.load`, same batch and thread count) when the Python environment of
//! tools/setup-python.sh is there (`.venv-py`, or the interpreter in `$PROBELOG_PYTHON`).
//!
//! The three are timed in interleaved rounds (raw loop, tool, Python; repeated), so that a load
//! that comes and goes on the machine weighs on each alike; each figure is the best round. The
//! model load is excluded from all three. The tool loads each model and runs it once, so its
//! ratio is taken against Python's pass right after a fresh `torch.jit.load` (first forward
//! included); Python's pass on the warm module is printed beside it.
//!
//! `cargo bench -p probelog-tool --features torch --bench probe_throughput`
//! (`-- --probes N --size S --rounds R` to change the defaults of 256 probes at 224 px, 3
//! rounds).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use image::{Rgb, RgbImage};
use tch::nn::{self, Module};
use tch::{CModule, Device, Kind, Tensor};

const BATCH: i64 = 32;

/// A small ResNet-like stem and three strided stages, global pooling, 1,000 logits.
fn make_cnn(path: &Path, size: i64) {
    tch::manual_seed(1);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let conv = |name: &str, cin, cout, stride| {
        nn::conv2d(
            &root / name,
            cin,
            cout,
            3,
            nn::ConvConfig {
                stride,
                padding: 1,
                ..Default::default()
            },
        )
    };
    let layers = [
        conv("c1", 3, 32, 2),
        conv("c2", 32, 64, 2),
        conv("c3", 64, 128, 2),
        conv("c4", 128, 256, 2),
    ];
    let head = nn::linear(&root / "head", 256, 1000, Default::default());
    vs.freeze();
    let example = Tensor::rand([2, 3, size, size], (Kind::Float, Device::Cpu));
    let module = CModule::create_by_tracing("Cnn", "forward", &[example], &mut |xs| {
        let mut x = xs[0].shallow_clone();
        for layer in &layers {
            x = layer.forward(&x).relu();
        }
        vec![head.forward(&x.mean_dim([2i64, 3].as_slice(), false, Kind::Float))]
    })
    .expect("trace the benchmark CNN");
    module.save(path).expect("save the benchmark CNN");
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn tool(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_probelog-tool"))
        .args(args)
        .output()
        .expect("run probelog-tool");
    assert!(
        out.status.success(),
        "probelog-tool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Python side: loads the TorchScript file, makes its input batches up front (as the raw loop
/// does), prints `ready <threads> <torch version> <output shape>`, then for each `run` line on
/// stdin loads the file afresh and times two passes over all batches (forward, output copied to
/// host memory): the first after the load, what probing one model costs (as `append --model`
/// reports it: load excluded, first forward included), and a second on the warm module. Prints
/// `rate <fresh images/s> <warm images/s>`.
const PYTHON_LOOP: &str = r#"
import sys, time
import torch
path, probes, size, batch, threads = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(threads)
inputs = [torch.rand(min(batch, probes - i), 3, size, size) for i in range(0, probes, batch)]
def one_pass(module):
    t = time.perf_counter()
    for x in inputs:
        module(x).numpy().copy()
    return probes / (time.perf_counter() - t)
with torch.no_grad():
    module = torch.jit.load(path, map_location="cpu").eval()
    shape = list(module(inputs[0]).shape)
    print("ready", torch.get_num_threads(), torch.__version__, "x".join(map(str, shape)), flush=True)
    for line in sys.stdin:
        module = torch.jit.load(path, map_location="cpu").eval()
        fresh = one_pass(module)
        print("rate", fresh, one_pass(module), flush=True)
"#;

/// A running [`PYTHON_LOOP`].
struct PythonLoop {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Its `ready` line: threads, torch version, output shape.
    ready: String,
}

impl PythonLoop {
    /// The interpreter: `$PROBELOG_PYTHON`, else `.venv-py/bin/python` at the repository root;
    /// `None` when there is none or it has no torch.
    fn interpreter() -> Option<PathBuf> {
        let python = std::env::var_os("PROBELOG_PYTHON").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-py/bin/python"),
            PathBuf::from,
        );
        let ok = Command::new(&python)
            .args(["-c", "import torch"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(python)
    }

    fn start(python: &Path, model: &Path, probes: usize, size: u32, threads: i32) -> Self {
        let mut child = Command::new(python)
            .args(["-c", PYTHON_LOOP])
            .arg(model)
            .args([probes, size as usize, BATCH as usize, threads as usize].map(|v| v.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start Python");
        let stdin = child.stdin.take().expect("Python's stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("Python's stdout"));
        let mut ready = String::new();
        stdout.read_line(&mut ready).expect("read from Python");
        let ready = ready
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("Python did not load the model: {ready:?}"))
            .trim()
            .to_string();
        PythonLoop {
            child,
            stdin,
            stdout,
            ready,
        }
    }

    /// One timed round: images/s of a freshly loaded module and of the same module warm.
    fn rates(&mut self) -> (f64, f64) {
        writeln!(self.stdin, "run").expect("write to Python");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from Python");
        let rates: Vec<f64> = line
            .strip_prefix("rate ")
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|r| r.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        match rates[..] {
            [fresh, warm] => (fresh, warm),
            _ => panic!("unexpected line from Python: {line:?}"),
        }
    }

    fn finish(self) {
        drop(self.stdin);
        let mut child = self.child;
        assert!(child.wait().expect("wait for Python").success());
    }
}

fn main() {
    let probes = arg("--probes", 256);
    let size = arg("--size", 224) as u32;
    let rounds = arg("--rounds", 3);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = |name: &str| dir.path().join(name);
    let images = path("images");
    std::fs::create_dir(&images).expect("image directory");
    for i in 0..probes {
        let img = RgbImage::from_fn(size, size, |x, y| {
            Rgb([
                (x * 7 + i as u32) as u8,
                (y * 5) as u8,
                ((x ^ y) + 3 * i as u32) as u8,
            ])
        });
        img.save(images.join(format!("p{i:04}.png")))
            .expect("write a probe");
    }
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    tool(&[
        "probes",
        "build",
        "--images",
        &s(&images),
        "--out",
        &s(&path("p.pset")),
        "--size",
        &size.to_string(),
    ]);
    tool(&[
        "create",
        &s(&path("hub.plog")),
        "--probes",
        &s(&path("p.pset")),
    ]);
    make_cnn(&path("cnn.pt"), i64::from(size));
    let threads = tch::get_num_threads();
    println!(
        "probing throughput: {probes} probes at {size} px, batch {BATCH}, a 4-stage CNN with 1,000 logits, {threads} threads, best of {rounds} interleaved rounds"
    );

    // The raw forward loop: the same module, input tensors made up front.
    let module = CModule::load(path("cnn.pt")).expect("load the benchmark CNN");
    let s64 = i64::from(size);
    let inputs: Vec<Tensor> = (0..probes as i64)
        .step_by(BATCH as usize)
        .map(|first| {
            let n = BATCH.min(probes as i64 - first);
            Tensor::rand([n, 3, s64, s64], (Kind::Float, Device::Cpu))
        })
        .collect();
    let _warm_up = tch::no_grad(|| module.forward_ts(&[&inputs[0]])).expect("warm-up");
    let raw_pass = || {
        let t = Instant::now();
        for x in &inputs {
            let out = tch::no_grad(|| module.forward_ts(&[x])).expect("forward");
            std::hint::black_box(Vec::<f32>::try_from(out.flatten(0, -1)).expect("to host"));
        }
        probes as f64 / t.elapsed().as_secs_f64()
    };

    // The tool: `append --model`, which reports images/s over probing time (model load excluded).
    let tool_pass = |round: usize| {
        let out = tool(&[
            "append",
            &s(&path("hub.plog")),
            "--model",
            &s(&path("cnn.pt")),
            "--probes",
            &s(&path("p.pset")),
            "--batch",
            &BATCH.to_string(),
            "--device",
            "cpu",
            "--name",
            &format!("cnn-{round}"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        stderr
            .split('(')
            .filter_map(|part| {
                part.strip_suffix(" images/s)\n")
                    .or_else(|| part.strip_suffix(" images/s)"))
            })
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .next()
            .unwrap_or_else(|| panic!("no images/s in: {stderr}"))
    };

    // Python torch on the same file, when installed.
    let mut python = PythonLoop::interpreter()
        .map(|py| PythonLoop::start(&py, &path("cnn.pt"), probes, size, threads));
    if let Some(py) = &python {
        let mut ready = py.ready.split(' ');
        let (py_threads, version, shape) = (ready.next(), ready.next(), ready.next());
        assert_eq!(
            py_threads,
            Some(threads.to_string().as_str()),
            "Python's threads"
        );
        assert_eq!(
            shape,
            Some(format!("{}x1000", BATCH.min(probes as i64)).as_str())
        );
        println!(
            "Python torch {} found: timed in the same rounds",
            version.unwrap_or("?")
        );
    } else {
        println!(
            "Python torch not found (tools/setup-python.sh installs it in .venv-py, or set \
             PROBELOG_PYTHON): the raw tch loop is the reference"
        );
    }

    let (mut raw_best, mut tool_best) = (0f64, 0f64);
    let (mut fresh_best, mut warm_best) = (0f64, 0f64);
    for round in 0..rounds {
        raw_best = raw_best.max(raw_pass());
        tool_best = tool_best.max(tool_pass(round));
        if let Some(py) = &mut python {
            let (fresh, warm) = py.rates();
            fresh_best = fresh_best.max(fresh);
            warm_best = warm_best.max(warm);
        }
    }
    assert!(raw_best > 0.0 && tool_best > 0.0, "no throughput measured");
    println!("raw tch forward loop (warm):    {raw_best:8.1} images/s");
    if let Some(py) = python {
        py.finish();
        println!(
            "Python torch, warm module:      {warm_best:8.1} images/s ({:.2}x the raw loop)",
            warm_best / raw_best
        );
        println!(
            "Python torch, freshly loaded:   {fresh_best:8.1} images/s ({:.2}x the raw loop)",
            fresh_best / raw_best
        );
        // The tool loads each model and runs it once: the freshly loaded pass is the same work.
        println!(
            "probelog-tool append --model:   {tool_best:8.1} images/s ({:.2}x the raw loop, {:.2}x Python torch)",
            tool_best / raw_best,
            tool_best / fresh_best
        );
    } else {
        println!(
            "probelog-tool append --model:   {tool_best:8.1} images/s ({:.2}x the raw loop; overhead {:.0}%)",
            tool_best / raw_best,
            100.0 * (raw_best / tool_best - 1.0)
        );
    }
}
