//! The storage seam: every byte the writer puts on disk goes through [`Storage`], so tests can cut a
//! write short or crash between two syncs ([`FaultyStorage`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::reader::AlignedBytes;

/// What the writer needs from a file. Offsets are absolute byte positions.
pub trait Storage {
    /// The current size of the file in bytes.
    fn size(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes every earlier write durable (fdatasync for files).
    fn sync(&mut self) -> io::Result<()>;

    /// The first `len` bytes, read-only, for validating the committed state as a reader does
    /// before writing after it. By default a copy; files map instead.
    fn committed_view(&self, len: u64) -> io::Result<StorageView> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length exceeds memory"))?;
        let mut bytes = vec![0u8; len];
        self.read_exact_at(&mut bytes, 0)?;
        Ok(StorageView::Copied(AlignedBytes::from_slice(&bytes)))
    }
}

/// Bytes of a [`Storage`] to validate (see [`Storage::committed_view`]).
#[derive(Debug)]
pub enum StorageView {
    Mapped(memmap2::Mmap),
    Copied(AlignedBytes),
}

impl AsRef<[u8]> for StorageView {
    fn as_ref(&self) -> &[u8] {
        match self {
            StorageView::Mapped(map) => map,
            StorageView::Copied(bytes) => bytes.as_ref(),
        }
    }
}

/// A file on disk, held under the writer lock (an exclusive advisory `flock`).
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
}

/// How a writer behaves when another process holds the writer lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockWait {
    /// Block until the lock is free.
    #[default]
    Wait,
    /// Fail at once with [`Error::Locked`].
    Fail,
}

impl FileStorage {
    /// Opens an existing index file for writing and takes the writer lock.
    ///
    /// The lock is taken on the file itself. `compact` replaces the file by renaming a new one
    /// into place, so after the lock is granted this checks that the path still names the locked
    /// file, and starts over on the new file if it does not.
    pub fn open_locked(path: &Path, wait: LockWait) -> Result<Self> {
        // The writer locks and renames the file itself, never a symlink to it: compaction would
        // otherwise replace the link with a regular file and leave its target stale.
        let resolved = std::fs::canonicalize(path).map_err(|e| Error::io("open", path, e))?;
        let path = resolved.as_path();
        loop {
            let file = open_regular_file(path, true)?;
            match wait {
                LockWait::Wait => file.lock().map_err(|e| Error::io("lock", path, e))?,
                LockWait::Fail => match file.try_lock() {
                    Ok(()) => {}
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(Error::Locked {
                            path: path.to_path_buf(),
                        });
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(Error::io("lock", path, e));
                    }
                },
            }
            let held = file.metadata().map_err(|e| Error::io("stat", path, e))?;
            match std::fs::metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(FileStorage {
                        file,
                        path: path.to_path_buf(),
                    });
                }
                // Replaced (compacted) while we waited: lock the new file instead.
                Ok(_) => continue,
                Err(e) => return Err(Error::io("stat", path, e)),
            }
        }
    }

    /// Wraps a freshly created file that no other process can know yet (no lock needed).
    pub fn new_unshared(file: File, path: PathBuf) -> Self {
        FileStorage { file, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Storage for FileStorage {
    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.file, buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn committed_view(&self, len: u64) -> io::Result<StorageView> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length exceeds memory"))?;
        // SAFETY: a read-only map of the file this writer holds the lock on. The writer drops it
        // before it writes, and no writer of probelog changes bytes below the committed length;
        // another program that truncates the file could make a read fault (SIGBUS), the hazard
        // every reader's map shares (format-spec.md §11, "Snapshot").
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.file)? };
        Ok(StorageView::Mapped(map))
    }
}

/// Opens `path` (for reading, and for writing if `write`), which must be a regular file: a FIFO
/// would block the open or the reads forever, and a device such as `/dev/zero` never ends. The
/// open does not block (`O_NONBLOCK`, which means nothing for a regular file), and the check is
/// made on the opened file, so the path cannot change in between.
pub fn open_regular_file(path: &Path, write: bool) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// An in-memory storage that simulates a crash. It keeps what was synced apart from what was only
/// written, and after a chosen number of operations it fails every call, optionally after
/// performing a write only in part. [`FaultyStorage::crash_image`] then gives a possible disk
/// content after the crash: the synced bytes plus a random subset of the unsynced writes.
#[derive(Debug, Clone)]
pub struct FaultyStorage {
    durable: Vec<u8>,
    /// Writes and truncations since the last sync, in order.
    unsynced: Vec<PendingOp>,
    current: Vec<u8>,
    ops: u64,
    fail_at: Option<u64>,
    crashed: bool,
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl FaultyStorage {
    /// A storage holding `bytes`, all of them durable.
    pub fn new(bytes: Vec<u8>) -> Self {
        FaultyStorage {
            durable: bytes.clone(),
            unsynced: Vec::new(),
            current: bytes,
            ops: 0,
            fail_at: None,
            crashed: false,
        }
    }

    /// Fails operation number `n` (0-based; writes, truncations and syncs count) and all later
    /// ones. A failing write first writes the first half of its bytes.
    pub fn fail_at_op(mut self, n: u64) -> Self {
        self.fail_at = Some(n);
        self
    }

    /// Operations performed so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    pub fn crashed(&self) -> bool {
        self.crashed
    }

    /// Everything written, synced or not: what a reader on the same machine sees.
    pub fn current(&self) -> &[u8] {
        &self.current
    }

    /// A disk image after a power loss at this point: durable bytes plus each unsynced operation
    /// applied or dropped at random (seeded), in order.
    pub fn crash_image(&self, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut img = self.durable.clone();
        for op in &self.unsynced {
            if rng.random_bool(0.5) {
                apply(&mut img, op);
            }
        }
        img
    }

    fn step(&mut self) -> io::Result<bool> {
        if self.crashed {
            return Err(io::Error::other("simulated crash: storage is gone"));
        }
        let n = self.ops;
        self.ops += 1;
        if self.fail_at == Some(n) {
            self.crashed = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn record(&mut self, op: PendingOp) {
        apply(&mut self.current, &op);
        self.unsynced.push(op);
    }
}

fn apply(img: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write { offset, bytes } => {
            let end = *offset as usize + bytes.len();
            if img.len() < end {
                img.resize(end, 0);
            }
            img[*offset as usize..end].copy_from_slice(bytes);
        }
        PendingOp::SetLen(len) => img.resize(*len as usize, 0),
    }
}

impl Storage for FaultyStorage {
    fn size(&self) -> io::Result<u64> {
        Ok(self.current.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?));
        let src = range
            .and_then(|r| self.current.get(r))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.step()? {
            let half = buf.len() / 2;
            self.record(PendingOp::Write {
                offset,
                bytes: buf[..half].to_vec(),
            });
            return Err(io::Error::other("simulated crash during a write"));
        }
        self.record(PendingOp::Write {
            offset,
            bytes: buf.to_vec(),
        });
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if !self.step()? {
            return Err(io::Error::other("simulated crash before a truncation"));
        }
        self.record(PendingOp::SetLen(len));
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        if !self.step()? {
            return Err(io::Error::other("simulated crash during a sync"));
        }
        self.durable = self.current.clone();
        self.unsynced.clear();
        Ok(())
    }
}
