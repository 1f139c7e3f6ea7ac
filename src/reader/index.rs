//! [`Index`]: an index file opened read-only through a memory map, and refreshed to newer commits.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::format::{HEADER_USED_LEN, choose_commit, short_header_error};

use super::RawIndex;

/// An index file opened read-only through a memory map. Any number of processes may hold one at
/// the same time as one writer appends: this snapshot stays as it was until [`Index::refresh`].
pub struct Index {
    raw: RawIndex<Mmap>,
    path: PathBuf,
    file_id: (u64, u64),
    options: OpenOptions,
}

/// How [`Index::open_with`] maps the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Ask the kernel for 2 MiB pages for the map (Linux `madvise(MADV_HUGEPAGE)`; a hint,
    /// ignored where unsupported). Where transparent huge pages are enabled (`always` or
    /// `madvise`) and the filesystem caches files in large folios (ext4 and xfs on recent
    /// kernels), the parts of the file this process faults into the page cache arrive as 2 MiB
    /// pages, and every process that maps them later shares them. The HNSW walk and the rerank
    /// touch a few thousand random places of a large index per query, and with 4 KiB pages each
    /// of them is a TLB miss: at 1M entries hnsw queries took 7% to 17% less time with 2 MiB
    /// pages (`cargo bench --bench ann -- pages`; README, "HNSW candidate stage"). The cost: a
    /// cold-cache read of one byte brings in 2 MiB. Default: true.
    pub huge_pages: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { huge_pages: true }
    }
}

/// Asks for huge pages for `map`. Advisory: an error (no THP in this kernel, say) changes
/// nothing but the page size, so it is ignored.
fn advise_huge_pages(map: &Mmap) {
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    #[cfg(not(target_os = "linux"))]
    let _ = map;
}

impl Index {
    /// Opens `path` read-only with the default [`OpenOptions`]. Costs the same for any number
    /// of entries.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens `path` read-only.
    pub fn open_with(path: &Path, options: OpenOptions) -> Result<Self> {
        let file = crate::storage::open_regular_file(path, false)?;
        Self::from_file_with(&file, path, options)
    }

    /// Opens an already open file; `path` is used in messages and by [`Index::refresh`].
    pub fn from_file(file: &File, path: &Path) -> Result<Self> {
        Self::from_file_with(file, path, OpenOptions::default())
    }

    /// [`Index::from_file`] with `options`.
    pub fn from_file_with(file: &File, path: &Path, options: OpenOptions) -> Result<Self> {
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        if !meta.is_file() {
            return Err(Error::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
        let len = meta.len();
        if len < HEADER_USED_LEN as u64 {
            let mut head = vec![0u8; len as usize];
            file.read_exact_at(&mut head, 0)
                .map_err(|e| Error::io("read", path, e))?;
            return Err(short_header_error(&head, len));
        }
        let mut page = vec![0u8; HEADER_USED_LEN];
        file.read_exact_at(&mut page, 0)
            .map_err(|e| Error::io("read header of", path, e))?;
        // SAFETY: the map is read-only (shared with other processes' maps of the same file). Writers never modify bytes
        // below a committed length once committed (they only append after it, and compaction
        // renames a new file into place instead of rewriting this one), and never shrink the
        // file below the committed length this snapshot uses; the commit slots, which do change
        // in place, are read above with a copy and never through the map. Another program that
        // rewrites or truncates the file breaks this contract; probelog's own tools never do.
        let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io("map", path, e))?;
        if options.huge_pages {
            advise_huge_pages(&map);
        }
        let raw = RawIndex::with_header_page(&page, map)?;
        Ok(Index {
            raw,
            path: path.to_path_buf(),
            file_id: (meta.dev(), meta.ino()),
            options,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw(&self) -> &RawIndex<Mmap> {
        &self.raw
    }

    /// Reopens the file if a writer committed since this snapshot was taken (or compaction
    /// replaced it). Returns whether the snapshot changed.
    pub fn refresh(&mut self) -> Result<bool> {
        let meta = std::fs::metadata(&self.path).map_err(|e| Error::io("stat", &self.path, e))?;
        if (meta.dev(), meta.ino()) == self.file_id {
            let file = crate::storage::open_regular_file(&self.path, false)?;
            let mut page = vec![0u8; HEADER_USED_LEN];
            file.read_exact_at(&mut page, 0)
                .map_err(|e| Error::io("read header of", &self.path, e))?;
            let (_, _, c) = choose_commit(&page)?;
            if c.sequence == self.raw.sequence() {
                return Ok(false);
            }
        }
        *self = Index::open_with(&self.path, self.options)?;
        Ok(true)
    }
}

impl std::ops::Deref for Index {
    type Target = RawIndex<Mmap>;
    fn deref(&self) -> &Self::Target {
        &self.raw
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("raw", &self.raw)
            .finish()
    }
}
