//! Helpers of the research crate's tests: probelog-tool's test helpers (run the binary under test,
//! here `probelog-research`; expect success or a one-line failure), and the product's commands run
//! in this process.
#![allow(dead_code)] // each test binary uses its own subset

#[path = "../../../tools/tests/common/mod.rs"]
mod cli;

use std::fs;
use std::path::Path;

pub use cli::*;
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;

/// Runs a command of the product (`create`, `append`) in this process, through probelog-tool's
/// library: this crate builds no `probelog-tool` binary.
pub fn product(args: &[&str]) {
    use clap::Parser;
    use probelog_tool::cmd::{append, create};
    #[derive(clap::Parser)]
    enum Product {
        Create(create::Args),
        Append(Box<append::Args>),
    }
    let argv = std::iter::once("probelog-tool").chain(args.iter().copied());
    let done = match Product::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        Product::Create(a) => create::run(a),
        Product::Append(a) => append::run(*a),
    };
    done.unwrap_or_else(|e| panic!("{args:?} failed: {e:#}"));
}

pub fn write_npy(path: &Path, data: &[f32], rows: usize, cols: usize) {
    let a = Array2::from_shape_vec((rows, cols), data.to_vec()).unwrap();
    a.write_npy(fs::File::create(path).unwrap()).unwrap();
}
