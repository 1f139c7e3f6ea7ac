//! The SQLite extension built for the tests, against the headers of the SQLite that rusqlite bundles.

use super::*;

/// The directory of `sqlite3ext.h`: the headers of the SQLite that rusqlite bundles
/// (libsqlite3-sys, a dev-dependency), so that building the extension needs no libsqlite3-dev.
pub fn sqlite_include_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Only the host's packages: those are the ones the build has downloaded.
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let version = Command::new(rustc).arg("-vV").output().expect("rustc runs");
        let host = String::from_utf8_lossy(&version.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
            .expect("rustc -vV names the host");
        let out = output_ok(
            Command::new(env!("CARGO"))
                .current_dir(repo_root())
                .args(["metadata", "--format-version", "1", "--locked"])
                .args(["--filter-platform", &host]),
            "cargo metadata",
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
        let manifest = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "libsqlite3-sys")
            .and_then(|p| p["manifest_path"].as_str())
            .expect("libsqlite3-sys is a dependency");
        let dir = Path::new(manifest).parent().unwrap().join("sqlite3");
        assert!(dir.join("sqlite3ext.h").is_file(), "{}", dir.display());
        dir
    })
    .clone()
}

/// Builds the SQLite extension `sqlite/probelog_sqlite.c` with `libprobelog_c.a` into
/// `dir/probelog.so`, as docs/embedding.md says (plus -Werror).
pub fn build_extension(dir: &Path) -> PathBuf {
    let so = dir.join("probelog.so");
    let include = sqlite_include_dir();
    compile_c(
        &[capi_dir().join("sqlite/probelog_sqlite.c")],
        &so,
        Link::Static,
        &[
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-Wl,--exclude-libs,ALL",
            "-I",
            s(&include),
        ],
    );
    so
}

/// Hex digits of bytes: an SQL blob literal is `X'<hex>'`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
