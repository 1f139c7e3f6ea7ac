//! Probe set files (`.pset`): the probe images of an index, decoded, resized and center-cropped
//! once, stored as `uint8 [P, 3, S, S]` RGB with their names and a content fingerprint.
//!
//! The byte layout is specified in format-spec.md, appendix "Probe set files (.pset)"; the
//! constants below mirror it. The fingerprint identifies the probe set in an index
//! ([`ProbeSetId`]), so logits computed on other probes (or the same probes in another order or
//! at another size) are refused by the index.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use image::imageops::{self, FilterType};
use image::{ImageReader, RgbImage};
use probelog::ProbeSetId;
use rayon::prelude::*;

use crate::input;

/// First 8 bytes of every probe set file.
pub const MAGIC: [u8; 8] = *b"PLGPSET\0";
/// The one version this code reads and writes.
pub const VERSION: u32 = 1;
/// Colour channels per pixel (RGB).
pub const CHANNELS: u32 = 3;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Bytes of the trailing fingerprint.
pub const TRAILER_LEN: usize = 32;
/// Largest side length accepted (a sanity bound against hostile headers).
pub const MAX_SIZE: u32 = 4096;
/// Domain string that starts the fingerprint's hash input.
pub const FINGERPRINT_DOMAIN: &[u8] = b"probelog probe set pixels v1\0";
/// File extensions `build` picks up from a directory (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

// Header offsets (format-spec.md, "Probe set files"): chained, each from the one before.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = OFF_MAGIC + 8;
const OFF_FLAGS: usize = OFF_VERSION + 4;
const OFF_PROBES: usize = OFF_FLAGS + 4;
const OFF_SIZE: usize = OFF_PROBES + 4;
const OFF_CHANNELS: usize = OFF_SIZE + 4;
const OFF_RESERVED0: usize = OFF_CHANNELS + 4;
const OFF_NAMES_LEN: usize = OFF_RESERVED0 + 4;
const OFF_PIXELS_LEN: usize = OFF_NAMES_LEN + 8;
const OFF_RESERVED1: usize = OFF_PIXELS_LEN + 8;
const _: () = assert!(OFF_RESERVED1 + 16 == HEADER_LEN);

/// The probe images of an index, in their fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSet {
    size: u32,
    names: Vec<String>,
    /// `[P, 3, S, S]`: probe, then channel (R, G, B), then row, then column.
    pixels: Vec<u8>,
    fingerprint: [u8; 32],
}

impl ProbeSet {
    /// A probe set of `names.len()` square `size`x`size` RGB images, `pixels` laid out
    /// `[P, 3, S, S]`.
    pub fn new(size: u32, names: Vec<String>, pixels: Vec<u8>) -> Result<Self> {
        ensure!(
            (1..=MAX_SIZE).contains(&size),
            "probe size {size} is out of range 1..={MAX_SIZE}"
        );
        ensure!(!names.is_empty(), "a probe set needs at least one probe");
        ensure!(
            u32::try_from(names.len()).is_ok(),
            "{} probes are more than a probe set holds (at most {})",
            names.len(),
            u32::MAX
        );
        check_names(&names)?;
        let expected = pixel_len(names.len(), size)?;
        ensure!(
            pixels.len() == expected,
            "{} pixel bytes for {} probes of {size}x{size} RGB; expected {expected}",
            pixels.len(),
            names.len()
        );
        let fingerprint = fingerprint(size, &names, &pixels);
        Ok(ProbeSet {
            size,
            names,
            pixels,
            fingerprint,
        })
    }

    /// Number of probes, P.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// A probe set holds at least one probe once read; this is for clippy's sake (a public `len`).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Side length S of every (square) probe image.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Probe names, in probe order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// All pixels, `[P, 3, S, S]`.
    #[cfg(test)]
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The probes at `indices`, in that order, as a probe set of their own (for running a model
    /// on part of the probes).
    pub fn subset(&self, indices: &[u32]) -> Result<ProbeSet> {
        let mut names = Vec::with_capacity(indices.len());
        let mut pixels = Vec::with_capacity(indices.len() * self.probe(0).len());
        for &i in indices {
            ensure!(
                (i as usize) < self.len(),
                "probe {i} does not exist (the set has {})",
                self.len()
            );
            names.push(self.names[i as usize].clone());
            pixels.extend_from_slice(self.probe(i as usize));
        }
        ProbeSet::new(self.size, names, pixels)
    }

    /// Pixels of probe `i`, `[3, S, S]`.
    pub fn probe(&self, i: usize) -> &[u8] {
        let n = 3 * (self.size as usize).pow(2);
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The identity an index records for this probe set: P and the content fingerprint (see
    /// [`fingerprint`]).
    pub fn id(&self) -> ProbeSetId {
        ProbeSetId {
            num_probes: self.len() as u32,
            fingerprint: self.fingerprint,
        }
    }

    /// Pixels of probes `range`, `[n, 3, size, size]`, resized from the stored size when `size`
    /// differs (bilinear, as [`square_crop`] does). The identity stays the stored set's.
    pub fn pixels_at(&self, range: std::ops::Range<usize>, size: u32) -> Vec<u8> {
        if size == self.size {
            let n = 3 * (self.size as usize).pow(2);
            return self.pixels[range.start * n..range.end * n].to_vec();
        }
        range
            .flat_map(|i| {
                let rgb = chw_to_image(self.probe(i), self.size);
                image_to_chw(&imageops::resize(&rgb, size, size, FilterType::Triangle))
            })
            .collect()
    }

    /// The file bytes (format-spec.md, "Probe set files").
    pub fn to_bytes(&self) -> Vec<u8> {
        let names_len: usize = self.names.iter().map(|n| 4 + n.len()).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + names_len + self.pixels.len() + TRAILER_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // flags
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&CHANNELS.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // reserved
        out.extend_from_slice(&(names_len as u64).to_le_bytes());
        out.extend_from_slice(&(self.pixels.len() as u64).to_le_bytes());
        out.extend_from_slice(&[0u8; 16]); // reserved
        debug_assert_eq!(out.len(), HEADER_LEN);
        for name in &self.names {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(&self.pixels);
        out.extend_from_slice(&self.fingerprint);
        out
    }

    /// Parses and checks file bytes: every length against the file size, the names, and the
    /// fingerprint against the content. Errors say what was wrong, never panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        ensure!(
            bytes.len() >= HEADER_LEN + TRAILER_LEN,
            "not a probe set file: {} bytes is shorter than the {}-byte header and trailer",
            bytes.len(),
            HEADER_LEN + TRAILER_LEN
        );
        ensure!(
            bytes[OFF_MAGIC..OFF_MAGIC + 8] == MAGIC,
            "not a probe set file (wrong magic bytes)"
        );
        let version = le_u32(bytes, OFF_VERSION);
        ensure!(
            version == VERSION,
            "probe set file version {version} is not supported (this tool reads version {VERSION})"
        );
        ensure!(le_u32(bytes, OFF_FLAGS) == 0, "unknown probe set flags");
        let probes = le_u32(bytes, OFF_PROBES);
        let size = le_u32(bytes, OFF_SIZE);
        let channels = le_u32(bytes, OFF_CHANNELS);
        ensure!(
            channels == CHANNELS,
            "probe set has {channels} channels; only {CHANNELS} (RGB) is supported"
        );
        ensure!(
            le_u32(bytes, OFF_RESERVED0) == 0
                && bytes[OFF_RESERVED1..HEADER_LEN].iter().all(|&b| b == 0),
            "probe set header has non-zero reserved bytes"
        );
        ensure!(
            (1..=MAX_SIZE).contains(&size),
            "probe size {size} is out of range 1..={MAX_SIZE}"
        );
        ensure!(probes > 0, "the probe set holds no probes");
        let names_len = le_u64(bytes, OFF_NAMES_LEN);
        let pixels_len = le_u64(bytes, OFF_PIXELS_LEN);
        let expected_pixels = pixel_len(probes as usize, size)?;
        ensure!(
            pixels_len == expected_pixels as u64,
            "pixel section of {pixels_len} bytes; {probes} probes of {size}x{size} RGB need {expected_pixels}"
        );
        let total = described_len(bytes)?;
        ensure!(
            total == bytes.len() as u64,
            "probe set file is {} bytes but its header describes {total} (truncated or damaged)",
            bytes.len()
        );
        let names_end = HEADER_LEN + names_len as usize;
        let names = parse_names(&bytes[HEADER_LEN..names_end], probes)?;
        let pixels = bytes[names_end..names_end + pixels_len as usize].to_vec();
        let stored: [u8; 32] = bytes[bytes.len() - TRAILER_LEN..]
            .try_into()
            .expect("32-byte trailer");
        let set = ProbeSet::new(size, names, pixels)?;
        ensure!(
            set.fingerprint == stored,
            "probe set content does not match its fingerprint (the file is damaged)"
        );
        Ok(set)
    }

    /// Reads and checks a probe set file: a regular file, whose length must be the one its
    /// header describes before the rest is read (memory is bounded by the file's size).
    pub fn read(path: &Path) -> Result<Self> {
        let mut file = input::open(path, "the probe set file")?;
        let bytes =
            Self::read_checked(&mut file, path).with_context(|| path.display().to_string())?;
        Self::from_bytes(&bytes).with_context(|| path.display().to_string())
    }

    /// The bytes of an open probe set file, once its header's lengths match the file's.
    fn read_checked(file: &mut input::InputFile, path: &Path) -> Result<Vec<u8>> {
        let len = file.len;
        if len < (HEADER_LEN + TRAILER_LEN) as u64 {
            // Small: from_bytes says what is wrong.
            return file.read_exact_vec(len, path);
        }
        let mut bytes = file.read_exact_vec(HEADER_LEN as u64, path)?;
        ensure!(
            bytes[OFF_MAGIC..OFF_MAGIC + 8] == MAGIC,
            "not a probe set file (wrong magic bytes)"
        );
        let total = described_len(&bytes)?;
        ensure!(
            total == len,
            "probe set file is {len} bytes but its header describes {total} (truncated or damaged)"
        );
        bytes.extend(file.read_exact_vec(len - HEADER_LEN as u64, path)?);
        Ok(bytes)
    }

    /// Writes the file to a temporary file beside `path`, syncs it and renames it into place:
    /// `path` is either the complete new file or untouched.
    pub fn write(&self, path: &Path) -> Result<()> {
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

/// The fingerprint: blake3 over [`FINGERPRINT_DOMAIN`], P and S (u64 LE), each name (u64 LE
/// byte length, UTF-8 bytes), then the pixel bytes.
pub fn fingerprint(size: u32, names: &[String], pixels: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(FINGERPRINT_DOMAIN);
    h.update(&(names.len() as u64).to_le_bytes());
    h.update(&u64::from(size).to_le_bytes());
    for n in names {
        h.update(&(n.len() as u64).to_le_bytes());
        h.update(n.as_bytes());
    }
    h.update(pixels);
    *h.finalize().as_bytes()
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
    check_names(&names)?;
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
    ProbeSet::new(size, names, pixels)
}

/// Names must be non-empty single lines (an index stores them one per line) and unique.
fn check_names(names: &[String]) -> Result<()> {
    let mut seen = HashSet::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        ensure!(!n.is_empty(), "probe {i} has an empty name");
        ensure!(
            !n.contains(['\n', '\r']),
            "probe name {n:?} contains a line break"
        );
        ensure!(seen.insert(n.as_str()), "probe name {n:?} appears twice");
    }
    Ok(())
}

fn parse_names(mut table: &[u8], probes: u32) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(probes.min(1 << 20) as usize);
    for i in 0..probes {
        ensure!(table.len() >= 4, "names table ends before probe {i}");
        let len = le_u32(table, 0) as usize;
        table = &table[4..];
        ensure!(
            table.len() >= len,
            "name of probe {i} ({len} bytes) runs past the names table"
        );
        let name = std::str::from_utf8(&table[..len])
            .with_context(|| format!("name of probe {i} is not UTF-8"))?;
        names.push(name.to_string());
        table = &table[len..];
    }
    ensure!(
        table.is_empty(),
        "names table has {} bytes after the last name",
        table.len()
    );
    Ok(names)
}

/// The file length a header describes: header, names, pixels and trailer.
fn described_len(header: &[u8]) -> Result<u64> {
    (HEADER_LEN as u64)
        .checked_add(le_u64(header, OFF_NAMES_LEN))
        .and_then(|t| t.checked_add(le_u64(header, OFF_PIXELS_LEN)))
        .and_then(|t| t.checked_add(TRAILER_LEN as u64))
        .context("probe set section lengths overflow")
}

fn pixel_len(probes: usize, size: u32) -> Result<usize> {
    (size as usize)
        .checked_mul(size as usize)
        .and_then(|n| n.checked_mul(CHANNELS as usize))
        .and_then(|n| n.checked_mul(probes))
        .with_context(|| format!("{probes} probes of {size}x{size} RGB overflow the address space"))
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i}.png")).collect()
    }

    fn sample_set() -> ProbeSet {
        let pixels = (0..2 * 3 * 4 * 4).map(|i| (i * 7 % 256) as u8).collect();
        ProbeSet::new(4, names(2), pixels).unwrap()
    }

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

    #[test]
    fn crop_keeps_the_center_of_a_wide_image() {
        // 90x30 -> shorter side 10 -> 30x10 -> centered 10x10 = the green middle band.
        let out = square_crop(&bands(90, 30), 10);
        assert_eq!(out.dimensions(), (10, 10));
        for y in 0..10 {
            for x in 1..9 {
                assert_eq!(out.get_pixel(x, y), &Rgb([0, 255, 0]), "({x}, {y})");
            }
            // The edge columns blend with the neighbouring bands but stay mostly green.
            let left = out.get_pixel(0, y);
            assert!(left.0[1] > left.0[0] && left.0[2] == 0, "{left:?}");
            let right = out.get_pixel(9, y);
            assert!(right.0[1] > right.0[2] && right.0[0] == 0, "{right:?}");
        }
    }

    #[test]
    fn crop_keeps_the_center_of_a_tall_image() {
        let out = square_crop(&bands(30, 90), 10);
        assert_eq!(out.dimensions(), (10, 10));
        for y in 1..9 {
            for x in 0..10 {
                assert_eq!(out.get_pixel(x, y), &Rgb([0, 255, 0]), "({x}, {y})");
            }
        }
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
    fn bytes_round_trip() {
        let set = sample_set();
        let back = ProbeSet::from_bytes(&set.to_bytes()).unwrap();
        assert_eq!(back, set);
        assert_eq!(back.id().num_probes, 2);
    }

    #[test]
    fn fingerprint_is_stable_and_covers_everything() {
        let set = sample_set();
        // Pinned: a change to the hash input would silently split probe sets.
        assert_eq!(
            set.id().fingerprint_hex(),
            "35a9aed604e8e7af46b880d430de38a32311b41de3e708ae9d2752ae0fa4324d"
        );
        let again = sample_set();
        assert_eq!(set.id().fingerprint, again.id().fingerprint);
        let mut pixels = set.pixels().to_vec();
        pixels[5] ^= 1;
        let changed_pixel = ProbeSet::new(4, names(2), pixels).unwrap();
        assert_ne!(changed_pixel.id().fingerprint, set.id().fingerprint);
        let renamed = ProbeSet::new(
            4,
            vec!["p1.png".into(), "p0.png".into()],
            set.pixels().to_vec(),
        )
        .unwrap();
        assert_ne!(renamed.id().fingerprint, set.id().fingerprint);
        let one = ProbeSet::new(4, names(1), set.probe(0).to_vec()).unwrap();
        assert_ne!(one.id().fingerprint, set.id().fingerprint);
        let resized = ProbeSet::new(2, names(2), set.pixels_at(0..2, 2)).unwrap();
        assert_ne!(resized.id().fingerprint, set.id().fingerprint);
    }

    #[test]
    fn damaged_files_are_refused() {
        let bytes = sample_set().to_bytes();
        let check = |b: &[u8], what: &str| {
            let e = ProbeSet::from_bytes(b).unwrap_err().to_string();
            assert!(e.contains(what), "{e:?} should mention {what:?}");
        };
        check(&bytes[..bytes.len() - 1], "truncated");
        check(&bytes[..10], "shorter than");
        let mut b = bytes.clone();
        b[0] = b'X';
        check(&b, "magic");
        let mut b = bytes.clone();
        b[OFF_VERSION] = 9;
        check(&b, "version 9");
        let mut b = bytes.clone();
        let last_pixel = b.len() - TRAILER_LEN - 1;
        b[last_pixel] ^= 0xff;
        check(&b, "fingerprint");
        let mut b = bytes.clone();
        b[OFF_PROBES] = 0xff;
        check(&b, "need");
        let mut b = bytes;
        b[OFF_NAMES_LEN..OFF_NAMES_LEN + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        check(&b, "overflow");
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
    fn names_are_checked() {
        let px = vec![0u8; 2 * 3];
        assert!(ProbeSet::new(1, vec!["a".into(), "a".into()], px.clone()).is_err());
        assert!(ProbeSet::new(1, vec!["a".into(), "b\nc".into()], px.clone()).is_err());
        assert!(ProbeSet::new(1, vec!["a".into(), String::new()], px).is_err());
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
