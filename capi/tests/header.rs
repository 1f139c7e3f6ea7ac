//! The committed header `include/probelog.h` must be what cbindgen makes of the current sources.
//! `PROBELOG_BLESS=1 cargo test -p probelog-capi --test header` rewrites it.

use std::fs;
use std::path::Path;

#[test]
fn committed_header_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // From lib.rs, following its `mod` items; unlike `with_crate`, no `cargo metadata` runs.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses the crate");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).unwrap();
    let path = dir.join("include/probelog.h");
    if std::env::var_os("PROBELOG_BLESS").is_some() {
        fs::write(&path, &fresh).unwrap();
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: regenerate it with `PROBELOG_BLESS=1 cargo test -p probelog-capi --test header`",
        path.display()
    );
    for f in [
        "probelog_abi_version",
        "probelog_index_open",
        "probelog_search_entry",
        "probelog_search_vector",
        "probelog_search_text_embedding",
        "probelog_results_get",
        "probelog_results_mode",
        "probelog_results_candidates",
        "#define PROBELOG_MODE_AUTO 0",
        "probelog_writer_add_model",
        "probelog_last_error",
        "typedef struct ProbelogIndex ProbelogIndex;",
        "#define PROBELOG_ABI_VERSION 1",
    ] {
        assert!(fresh.contains(f), "the header lacks {f}");
    }
}
