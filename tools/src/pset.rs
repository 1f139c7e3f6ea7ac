//! Probe set files (`.pset`) from images: decoding, resizing and center-cropping probe images
//! into a probe set, and what a model run needs of one (its pixels at another size), on top of
//! the core's probe set codec ([`probelog::probe_set`], format-spec.md appendix "Probe set
//! files"), which reads, checks and fingerprints the files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use image::imageops::{self, FilterType};
use image::{ImageReader, RgbImage};
pub use probelog::probe_set::{MAX_SIZE, ProbeSet, fingerprint};
use rayon::prelude::*;

use crate::input;

/// File extensions `build` picks up from a directory (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// What the command line does with a probe set beyond the core's codec.
pub trait ProbeSetFiles {
    /// Pixels of probes `range`, `[n, 3, size, size]`, resized from the stored size when `size`
    /// differs (bilinear, as [`square_crop`] does). The identity stays the stored set's.
    fn pixels_at(&self, range: std::ops::Range<usize>, size: u32) -> Vec<u8>;
    /// Writes the file to a temporary file beside `path`, syncs it and renames it into place:
    /// `path` is either the complete new file or untouched.
    fn write(&self, path: &Path) -> Result<()>;
}

impl ProbeSetFiles for ProbeSet {
    fn pixels_at(&self, range: std::ops::Range<usize>, size: u32) -> Vec<u8> {
        if size == self.size() {
            let n = 3 * (self.size() as usize).pow(2);
            return self.pixels()[range.start * n..range.end * n].to_vec();
        }
        range
            .flat_map(|i| {
                let rgb = chw_to_image(self.probe(i), self.size());
                image_to_chw(&imageops::resize(&rgb, size, size, FilterType::Triangle))
            })
            .collect()
    }

    fn write(&self, path: &Path) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // Readable like any file the user creates (0644 less the umask), not 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".pset-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        tmp.write_all(&self.to_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        tmp.persist(path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot rename the new probe set to {}", path.display()))?;
        Ok(())
    }
}

/// Decodes an image file (format from its content), converts it to RGB, and returns it as
/// `[3, size, size]` after [`square_crop`].
pub fn load_image(path: &Path, size: u32) -> Result<Vec<u8>> {
    // A regular file only: an image path naming a FIFO would block the decoder for ever.
    let file = input::open(path, "the image")?.file;
    let img = ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(anyhow::Error::from)
        .and_then(|r| r.decode().map_err(anyhow::Error::from))?;
    Ok(image_to_chw(&square_crop(&img.to_rgb8(), size)))
}

/// Resizes the shorter side to `size` (bilinear, with the filter widened when shrinking so that
/// every source pixel counts) and keeps the centered `size`x`size` square.
pub fn square_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let short = w.min(h).max(1);
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(size) + u64::from(short) / 2) / u64::from(short)).max(1)
            as u32
    };
    let (nw, nh) = (scale(w).max(size), scale(h).max(size));
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        imageops::resize(img, nw, nh, FilterType::Triangle)
    };
    if (nw, nh) == (size, size) {
        return resized;
    }
    imageops::crop_imm(&resized, (nw - size) / 2, (nh - size) / 2, size, size).to_image()
}

/// An RGB image as `[3, H, W]` bytes.
pub fn image_to_chw(img: &RgbImage) -> Vec<u8> {
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px.0[c];
        }
    }
    out
}

/// `[3, S, S]` bytes as an RGB image.
pub fn chw_to_image(chw: &[u8], size: u32) -> RgbImage {
    let plane = (size * size) as usize;
    RgbImage::from_fn(size, size, |x, y| {
        let i = (y * size + x) as usize;
        image::Rgb([chw[i], chw[plane + i], chw[2 * plane + i]])
    })
}

/// The image files under `dir` (recursively) with one of [`IMAGE_EXTENSIONS`], as `/`-separated
/// paths relative to `dir`, sorted bytewise.
pub fn list_images(dir: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
        let entries =
            fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                bail!("{}: file names must be UTF-8", entry.path().display());
            };
            let rel = format!("{prefix}{name}");
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", entry.path().display()))?;
            if kind.is_dir() {
                walk(&entry.path(), &format!("{rel}/"), out)?;
            } else if is_image_name(name) {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Decodes `names` (relative to `dir`) in parallel into a probe set of `size`x`size` images, in
/// the order given. `tick` is called once per image. Every unreadable image is named in the
/// error.
pub fn build(
    dir: &Path,
    names: Vec<String>,
    size: u32,
    tick: &(dyn Fn() + Sync),
) -> Result<ProbeSet> {
    ensure!(
        (1..=MAX_SIZE).contains(&size),
        "--size {size} is out of range 1..={MAX_SIZE}"
    );
    probelog::probe_set::check_names(&names)?;
    let decoded: Vec<Result<Vec<u8>, String>> = names
        .par_iter()
        .map(|name| {
            let path: PathBuf = dir.join(name);
            // Decoder messages may span lines; the report stays one line.
            let r = load_image(&path, size).map_err(|e| {
                let why: Vec<String> = e.to_string().split_whitespace().map(String::from).collect();
                format!("{name} ({})", why.join(" "))
            });
            tick();
            r
        })
        .collect();
    let failed: Vec<&String> = decoded.iter().filter_map(|r| r.as_ref().err()).collect();
    if !failed.is_empty() {
        const SHOWN: usize = 10;
        let more = if failed.len() > SHOWN {
            format!("; and {} more", failed.len() - SHOWN)
        } else {
            String::new()
        };
        let list: Vec<&str> = failed.iter().take(SHOWN).map(|s| s.as_str()).collect();
        bail!(
            "cannot read {} of {} images in {}: {}{more}",
            failed.len(),
            names.len(),
            dir.display(),
            list.join("; ")
        );
    }
    let pixels = decoded
        .into_iter()
        .flat_map(|r| r.unwrap_or_default())
        .collect();
    Ok(ProbeSet::new(size, names, pixels)?)
}

/// Where a command's probe set comes from: the `--probes` file when one is given, else the probe
/// set embedded in `index` (`create --embed-probes`, `probes attach`) when the command `needs`
/// one. Returns it with a phrase naming where it came from, or `None` when there is none. When
/// the index holds a probe set and `--probes` names another, the command is refused: an index
/// embeds only its own probe set, so the file cannot be the index's.
pub fn resolve(
    index: &Path,
    given: Option<&Path>,
    needs: bool,
) -> Result<Option<(String, ProbeSet)>> {
    if let Some(path) = given {
        let set = ProbeSet::read(path)?;
        // An index that cannot be opened is reported by the command's own open.
        if let Ok(opened) = probelog::Index::open(index)
            && let Some(bytes) = opened.embedded_probe_set_bytes()
        {
            let embedded = probelog::probe_set::stated_id(bytes)?;
            ensure!(
                set.id() == embedded,
                "--probes {}: this probe set ({}) is not the one embedded in {} ({embedded});                  leave --probes out to use the embedded one",
                path.display(),
                set.id(),
                index.display()
            );
        }
        return Ok(Some((path.display().to_string(), set)));
    }
    if !needs {
        return Ok(None);
    }
    input::require_regular(index, "the index")?;
    let opened =
        probelog::Index::open(index).map_err(|e| anyhow::anyhow!("{}: {e}", index.display()))?;
    let set = opened
        .embedded_probe_set()
        .map_err(|e| anyhow::anyhow!("{}: {e}", index.display()))?;
    Ok(set.map(|set| {
        (
            format!("the probe set embedded in {}", index.display()),
            set,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Range;

    use image::Rgb;

    use probelog::testkit::probe_sets::{probe_names as names, tiny_probe_set as sample_set};

    /// A `w`x`h` image of three vertical (wide) or horizontal (tall) bands: red, green, blue.
    fn bands(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (pos, len) = if w >= h { (x, w) } else { (y, h) };
            match pos * 3 / len {
                0 => Rgb([255, 0, 0]),
                1 => Rgb([0, 255, 0]),
                _ => Rgb([0, 0, 255]),
            }
        })
    }

    /// The 10x10 square crop of [`bands`] `w`x`h`, checked to be green on the columns `xs` of
    /// the rows `ys`.
    fn green_center_crop(w: u32, h: u32, xs: Range<u32>, ys: Range<u32>) -> RgbImage {
        let out = square_crop(&bands(w, h), 10);
        assert_eq!(out.dimensions(), (10, 10));
        for y in ys {
            for x in xs.clone() {
                assert_eq!(out.get_pixel(x, y), &Rgb([0, 255, 0]), "({x}, {y})");
            }
        }
        out
    }

    #[test]
    fn crop_keeps_the_center_of_a_wide_image() {
        // 90x30 -> shorter side 10 -> 30x10 -> centered 10x10 = the green middle band.
        let out = green_center_crop(90, 30, 1..9, 0..10);
        for y in 0..10 {
            // The edge columns blend with the neighbouring bands but stay mostly green.
            let left = out.get_pixel(0, y);
            assert!(left.0[1] > left.0[0] && left.0[2] == 0, "{left:?}");
            let right = out.get_pixel(9, y);
            assert!(right.0[1] > right.0[2] && right.0[0] == 0, "{right:?}");
        }
    }

    #[test]
    fn crop_keeps_the_center_of_a_tall_image() {
        green_center_crop(30, 90, 0..10, 1..9);
    }

    #[test]
    fn crop_of_a_square_image_of_the_target_size_is_exact() {
        let img = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 7]));
        assert_eq!(square_crop(&img, 8), img);
    }

    #[test]
    fn downsampling_averages() {
        // A 2-pixel checkerboard shrunk 4x comes out mid-grey: the filter covers every pixel.
        let img = RgbImage::from_fn(64, 64, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            Rgb([v, v, v])
        });
        let out = square_crop(&img, 16);
        for px in out.pixels() {
            assert!((120..=135).contains(&px.0[0]), "{px:?}");
        }
    }

    #[test]
    fn chw_layout_is_planar_rgb() {
        let img = RgbImage::from_fn(2, 1, |x, _| Rgb([x as u8, 10 + x as u8, 20 + x as u8]));
        assert_eq!(image_to_chw(&img), [0, 1, 10, 11, 20, 21]);
        let sq = RgbImage::from_fn(3, 3, |x, y| Rgb([x as u8, y as u8, (x * y) as u8]));
        assert_eq!(chw_to_image(&image_to_chw(&sq), 3), sq);
    }

    #[test]
    fn decodes_png_jpeg_and_webp_to_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_pixel(12, 12, Rgb([200, 100, 50]));
        for ext in ["png", "jpg", "webp"] {
            let path = dir.path().join(format!("x.{ext}"));
            img.save(&path).unwrap();
            let chw = load_image(&path, 6).unwrap();
            assert_eq!(chw.len(), 3 * 36);
            // JPEG is lossy: allow a small error.
            for (c, want) in [200i32, 100, 50].into_iter().enumerate() {
                for &v in &chw[c * 36..(c + 1) * 36] {
                    assert!((i32::from(v) - want).abs() <= 4, "{ext}: {v} vs {want}");
                }
            }
        }
        // Grey and RGBA inputs become RGB.
        let grey = image::GrayImage::from_pixel(6, 6, image::Luma([90]));
        let path = dir.path().join("grey.png");
        grey.save(&path).unwrap();
        assert!(load_image(&path, 6).unwrap().iter().all(|&v| v == 90));
    }

    #[test]
    fn pixels_at_resizes_each_probe() {
        let set = ProbeSet::new(4, names(2), {
            let mut p = vec![10u8; 3 * 16];
            p.extend(vec![200u8; 3 * 16]);
            p
        })
        .unwrap();
        assert_eq!(set.pixels_at(1..2, 4), vec![200u8; 48]);
        let big = set.pixels_at(0..2, 8);
        assert_eq!(big.len(), 2 * 3 * 64);
        assert!(big[..192].iter().all(|&v| v == 10));
        assert!(big[192..].iter().all(|&v| v == 200));
    }

    #[test]
    fn write_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pset");
        let set = sample_set();
        set.write(&path).unwrap();
        assert_eq!(ProbeSet::read(&path).unwrap(), set);
        // No temporary file is left beside it.
        let files: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }
}
