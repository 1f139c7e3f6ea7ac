//! [`FaultyStorage`]: an in-memory [`Storage`] that fails after a chosen number of operations and
//! gives the disk images a crash could leave, so that tests cut an append at every write and sync.

use std::io;

use rand::{Rng, SeedableRng};

use crate::storage::Storage;

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
