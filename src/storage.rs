//! The storage seam: every byte the writer puts on disk goes through [`Storage`], so tests can cut a
//! write short or crash between two syncs (`testkit::FaultyStorage`, feature `test-kit`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

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

    /// Asks the device to start writing `len` bytes at `offset` back now, without waiting: a
    /// long write then overlaps its disk time with the work that produces the next bytes, and
    /// the final [`Storage::sync`] waits for less. A hint only; by default nothing.
    fn start_writeback(&mut self, offset: u64, len: u64) {
        let _ = (offset, len);
    }

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
    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range reads only its scalar arguments and the descriptor, which
        // `self.file` keeps open for the duration of the call. A failure only means the writeback
        // starts at the next sync, so its result is ignored.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
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
