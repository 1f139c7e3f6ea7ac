//! The library behind `probelog-tool`: the subcommands ([`cmd`]) and what they share (reading
//! inputs, `.npy` files, probe set files, printing, libtorch). The binary (`main.rs`) only parses
//! the command line and prints errors; the research crate (`research/`, `probelog-research`) reuses
//! these modules for `eval`.

pub mod cmd;
pub mod input;
pub mod npy;
pub mod output;
pub mod paths;
// The pixel accessors and device choice serve `append --model`, which runs models only in a
// build with the `torch` feature.
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
pub mod pset;
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
pub mod torch;
