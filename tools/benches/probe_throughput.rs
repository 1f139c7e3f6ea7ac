//! Probing throughput: images per second through a TorchScript CNN at batch 32, by
//! `probelog-tool append --model`, beside the raw tch forward loop on the same model, same batch
//! and same threads: the ratio is the tool's overhead (reading the probe set, building input
//! tensors, checking and collecting outputs).
//!
//! `cargo bench -p probelog-tool --features torch --bench probe_throughput`
//! (`-- --probes N --size S` to change the defaults of 256 probes at 224 px).

use std::path::Path;
use std::process::Command;
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

fn main() {
    let probes = arg("--probes", 256);
    let size = arg("--size", 224) as u32;
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
    println!(
        "probing throughput: {probes} probes at {size} px, batch {BATCH}, a 4-stage CNN with 1,000 logits, {} threads",
        tch::get_num_threads()
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
    let mut raw_best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for x in &inputs {
            let out = tch::no_grad(|| module.forward_ts(&[x])).expect("forward");
            std::hint::black_box(Vec::<f32>::try_from(out.flatten(0, -1)).expect("to host"));
        }
        raw_best = raw_best.min(t.elapsed().as_secs_f64());
    }
    let raw_rate = probes as f64 / raw_best;

    // The tool: `append --model`, which reports images/s over probing time (model load excluded).
    let mut tool_best = 0f64;
    for round in 0..3 {
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
        let rate: f64 = stderr
            .split('(')
            .filter_map(|part| {
                part.strip_suffix(" images/s)\n")
                    .or_else(|| part.strip_suffix(" images/s)"))
            })
            .filter_map(|v| v.trim().parse().ok())
            .next()
            .unwrap_or_else(|| panic!("no images/s in: {stderr}"));
        tool_best = tool_best.max(rate);
    }
    println!("raw tch forward loop:        {raw_rate:8.1} images/s");
    println!(
        "probelog-tool append --model: {tool_best:8.1} images/s ({:.2}x the raw loop; overhead {:.0}%)",
        tool_best / raw_rate,
        100.0 * (raw_rate / tool_best - 1.0)
    );
}
