//! Refusing output paths that name an input: `export X.plog --out X.plog` would replace the index
//! it reads with its own export, and `eval X.plog --report X.plog` would overwrite it with JSON.
//!
//! Paths are compared by what they name, not by how they are spelled: two paths name the same
//! file when they resolve (through symlinks) to the same device and inode, which also catches
//! `./X.plog`, `dir/../X.plog`, symlinks and hard links. An output that does not exist yet names
//! no input.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Result, bail};

/// One file of a command: what it is (a flag, "the index") and its path.
pub type Role<'a> = (&'a str, &'a Path);

/// The identity of the file a path resolves to, when it exists.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Fails, naming both, if any output is one of the inputs. Every command that writes calls this
/// before it writes anything, with every path it writes (sidecars included) and every file it
/// reads.
pub fn refuse_outputs_over_inputs(outputs: &[Role<'_>], inputs: &[Role<'_>]) -> Result<()> {
    let inputs: Vec<(Role<'_>, (u64, u64))> = inputs
        .iter()
        .filter_map(|&(what, path)| file_id(path).map(|id| ((what, path), id)))
        .collect();
    for &(out_what, out) in outputs {
        let Some(out_id) = file_id(out) else { continue };
        if let Some(((in_what, input), _)) = inputs.iter().find(|(_, id)| *id == out_id) {
            let how = if fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
                "is a symlink to"
            } else {
                "names the same file as"
            };
            bail!(
                "{out_what} {} {how} {in_what} {}: writing the one would destroy the other; give \
                 a path of its own to each",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_by_any_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("hub.plog");
        fs::write(&index, b"index").unwrap();
        let other = dir.path().join("other.npy");
        let link = dir.path().join("link.npy");
        std::os::unix::fs::symlink(&index, &link).unwrap();
        let hard = dir.path().join("hard.npy");
        fs::hard_link(&index, &hard).unwrap();
        let dotted = dir.path().join(".").join("hub.plog");
        let inputs = [("the index", index.as_path())];
        for out in [&index, &link, &hard, &dotted] {
            let e = refuse_outputs_over_inputs(&[("--out", out)], &inputs).unwrap_err();
            assert!(e.to_string().contains("would destroy"), "{e}");
        }
        let e = refuse_outputs_over_inputs(&[("--out", &link)], &inputs).unwrap_err();
        assert!(e.to_string().contains("is a symlink to"), "{e}");
        refuse_outputs_over_inputs(&[("--out", &other)], &inputs).unwrap();
        fs::write(&other, b"x").unwrap();
        refuse_outputs_over_inputs(&[("--out", &other)], &inputs).unwrap();
    }
}
