//! Probe set files (`.pset`): the probe images of an index, decoded, resized and center-cropped
//! once, stored as `uint8 [P, 3, S, S]` RGB with their names and a content fingerprint. This
//! module holds the byte format only (parse, write, fingerprint); decoding and resizing images is
//! the command line's business (`probelog-tool probes build`).
//!
//! The byte layout is specified in format-spec.md, appendix "Probe set files (.pset)"; the
//! constants below mirror it. The fingerprint identifies the probe set in an index
//! ([`ProbeSetId`]), so logits computed on other probes (or the same probes in another order or
//! at another size) are refused by the index.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::ProbeSetId;

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

/// An error about a probe set's bytes or contents.
fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(bad(format!($($fmt)+)));
        }
    };
}

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

    /// Never true: a probe set holds at least one probe.
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
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Pixels of probe `i`, `[3, S, S]`.
    pub fn probe(&self, i: usize) -> &[u8] {
        let n = 3 * (self.size as usize).pow(2);
        &self.pixels[i * n..(i + 1) * n]
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

    /// The identity an index records for this probe set: P and the content fingerprint (see
    /// [`fingerprint`]).
    pub fn id(&self) -> ProbeSetId {
        ProbeSetId {
            num_probes: self.len() as u32,
            fingerprint: self.fingerprint,
        }
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
    /// fingerprint against the content. Errors ([`Error::InvalidInput`]) say what was wrong,
    /// never panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        check_magic_and_version(bytes)?;
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

    /// Reads and checks a probe set file: a regular file (never a FIFO or device), whose length
    /// must be the one its header describes before the rest is read, so memory is bounded by the
    /// file's size. Errors name the path.
    pub fn read(path: &Path) -> Result<Self> {
        let mut file = crate::storage::open_regular_file(path, false)?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        let with_path = |e: Error| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("{}: {m}", path.display())),
            other => other,
        };
        let read = |file: &mut std::fs::File, n: u64| -> Result<Vec<u8>> {
            let mut buf = Vec::with_capacity(n as usize);
            file.by_ref()
                .take(n)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("read", path, e))?;
            Ok(buf)
        };
        if len < (HEADER_LEN + TRAILER_LEN) as u64 {
            let bytes = read(&mut file, len)?;
            return Self::from_bytes(&bytes).map_err(with_path);
        }
        let mut bytes = read(&mut file, HEADER_LEN as u64)?;
        let header_check = || -> Result<()> {
            ensure!(
                bytes.len() == HEADER_LEN && bytes[OFF_MAGIC..OFF_MAGIC + 8] == MAGIC,
                "not a probe set file (wrong magic bytes)"
            );
            let total = described_len(&bytes)?;
            ensure!(
                total == len,
                "probe set file is {len} bytes but its header describes {total} (truncated or damaged)"
            );
            Ok(())
        };
        header_check().map_err(with_path)?;
        bytes.extend(read(&mut file, len - HEADER_LEN as u64)?);
        Self::from_bytes(&bytes).map_err(with_path)
    }
}

/// The identity a probe set file's bytes state, read from its header (P) and trailer (the
/// fingerprint) without parsing the names or hashing the pixels: O(1). Checks the magic, the
/// version and that the header describes exactly `bytes.len()` bytes; [`ProbeSet::from_bytes`]
/// checks the rest, the fingerprint against the content included.
pub fn stated_id(bytes: &[u8]) -> Result<ProbeSetId> {
    check_magic_and_version(bytes)?;
    let total = described_len(bytes)?;
    ensure!(
        total == bytes.len() as u64,
        "probe set file is {} bytes but its header describes {total} (truncated or damaged)",
        bytes.len()
    );
    Ok(ProbeSetId {
        num_probes: le_u32(bytes, OFF_PROBES),
        fingerprint: bytes[bytes.len() - TRAILER_LEN..]
            .try_into()
            .expect("32-byte trailer"),
    })
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

/// Names must be non-empty single lines (an index stores them one per line) and unique.
pub fn check_names(names: &[String]) -> Result<()> {
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
            .map_err(|_| bad(format!("name of probe {i} is not UTF-8")))?;
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
/// The checks every reading of a probe set file starts with: long enough for the header and the
/// trailer, the magic bytes, a version this build reads.
fn check_magic_and_version(bytes: &[u8]) -> Result<()> {
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
        "probe set file version {version} is not supported (this build reads version {VERSION})"
    );
    Ok(())
}

fn described_len(header: &[u8]) -> Result<u64> {
    (HEADER_LEN as u64)
        .checked_add(le_u64(header, OFF_NAMES_LEN))
        .and_then(|t| t.checked_add(le_u64(header, OFF_PIXELS_LEN)))
        .and_then(|t| t.checked_add(TRAILER_LEN as u64))
        .ok_or_else(|| bad("probe set section lengths overflow"))
}

fn pixel_len(probes: usize, size: u32) -> Result<usize> {
    (size as usize)
        .checked_mul(size as usize)
        .and_then(|n| n.checked_mul(CHANNELS as usize))
        .and_then(|n| n.checked_mul(probes))
        .ok_or_else(|| {
            bad(format!(
                "{probes} probes of {size}x{size} RGB overflow the address space"
            ))
        })
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

    use crate::testkit::probe_sets::{probe_names as names, tiny_probe_set as sample_set};

    #[test]
    fn bytes_round_trip() {
        let set = sample_set();
        let back = ProbeSet::from_bytes(&set.to_bytes()).unwrap();
        assert_eq!(back, set);
        assert_eq!(back.id().num_probes, 2);
    }

    #[test]
    fn fingerprint_is_pinned_and_covers_everything() {
        let set = sample_set();
        // The same pinned value as probelog-tool's pset.rs: the two must never disagree.
        assert_eq!(
            set.id().fingerprint_hex(),
            "35a9aed604e8e7af46b880d430de38a32311b41de3e708ae9d2752ae0fa4324d"
        );
        let mut pixels = set.pixels().to_vec();
        pixels[5] ^= 1;
        let changed = ProbeSet::new(4, names(2), pixels).unwrap();
        assert_ne!(changed.id().fingerprint, set.id().fingerprint);
        let renamed = ProbeSet::new(
            4,
            vec!["p1.png".into(), "p0.png".into()],
            set.pixels().to_vec(),
        )
        .unwrap();
        assert_ne!(renamed.id().fingerprint, set.id().fingerprint);
        let sub = set.subset(&[1]).unwrap();
        assert_eq!(sub.probe(0), set.probe(1));
        assert_ne!(sub.id().fingerprint, set.id().fingerprint);
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
    fn stated_id_reads_header_and_trailer_only() {
        let set = sample_set();
        let bytes = set.to_bytes();
        assert_eq!(stated_id(&bytes).unwrap(), set.id());
        let mut b = bytes.clone();
        b[HEADER_LEN] ^= 1; // a name byte: only the full parse sees it
        assert_eq!(stated_id(&b).unwrap(), set.id());
        assert!(stated_id(&bytes[..bytes.len() - 1]).is_err());
        assert!(stated_id(&bytes[..40]).is_err());
    }

    #[test]
    fn names_are_checked() {
        let px = vec![0u8; 2 * 3];
        assert!(ProbeSet::new(1, vec!["a".into(), "a".into()], px.clone()).is_err());
        assert!(ProbeSet::new(1, vec!["a".into(), "b\nc".into()], px.clone()).is_err());
        assert!(ProbeSet::new(1, vec!["a".into(), String::new()], px).is_err());
    }

    #[test]
    fn read_checks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pset");
        let set = sample_set();
        std::fs::write(&path, set.to_bytes()).unwrap();
        assert_eq!(ProbeSet::read(&path).unwrap(), set);
        let bytes = set.to_bytes();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let e = ProbeSet::read(&path).unwrap_err().to_string();
        assert!(e.contains("p.pset") && e.contains("truncated"), "{e}");
        assert!(matches!(
            ProbeSet::read(dir.path()),
            Err(Error::NotRegularFile { .. }) | Err(Error::Io { .. })
        ));
    }
}
