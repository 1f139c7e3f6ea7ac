//! Link settings for the `torch` and `cuda` features; without them this does nothing.
//!
//! - rpath: torch-sys (`links = "tch"`) reports the libtorch library directory as
//!   `DEP_TCH_LIBTORCH_LIB`; it goes into the binaries' and tests' rpath so that `cargo run` and
//!   `cargo test` find libtorch without `LD_LIBRARY_PATH`. libtorch_cpu.so finds the CUDA
//!   runtime and CUPTI it needs through its own rpath (`$ORIGIN/../../nvidia/cu13/lib`, where
//!   tools/setup-libtorch.sh installs them), so no other directory is added.
//! - `cuda`: rustc links with `--as-needed`, which drops libtorch_cuda.so (nothing references
//!   its symbols directly), and then libtorch sees no CUDA device. It is linked explicitly.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) => println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}"),
        Err(_) => println!(
            "cargo:warning=torch-sys did not report DEP_TCH_LIBTORCH_LIB; set LD_LIBRARY_PATH to libtorch's lib directory to run"
        ),
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
