//! A reused byte buffer over a file, refilled in large blocks, that knows the file offset of
//! every byte it holds. The binary decoders (DAT, EVT2, EVT3) decode straight out of it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{EventError, Result};

/// Bytes read per refill: large enough that syscalls vanish from the profile, small enough for
/// the cache.
pub const BLOCK_BYTES: usize = 1 << 20;
/// The smallest buffer: a small file gets one this size rather than a whole block, so opening
/// many small files (tests, fuzzing, label-sized recordings) does not allocate a megabyte each.
const MIN_BUFFER_BYTES: usize = 64 << 10;

pub struct BlockReader {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// Next unread byte in `buf`.
    pos: usize,
    /// Valid bytes in `buf`.
    len: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// File length when opened, for progress.
    total: u64,
}

impl BlockReader {
    /// Opens `path` positioned at `offset`.
    pub fn open(path: &Path, offset: u64) -> Result<Self> {
        let file = File::open(path).map_err(|e| EventError::io(path, e))?;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = Self {
            path: path.to_path_buf(),
            file,
            buf: vec![0; buffer_len(total)],
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
            total,
        };
        reader.seek(offset)?;
        Ok(reader)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Total file length in bytes.
    pub fn file_len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| EventError::io(&self.path, e))
    }

    /// Drops the buffer and continues reading at `offset`.
    pub fn seek(&mut self, offset: u64) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| EventError::io(&self.path, e))?;
        self.base = offset;
        self.pos = 0;
        self.len = 0;
        self.eof = false;
        Ok(())
    }

    /// The unread bytes currently buffered.
    #[inline]
    pub fn available(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    /// Bytes consumed and the file's length (when opened), for progress.
    pub fn progress(&self) -> (u64, u64) {
        (self.offset().min(self.total), self.total)
    }

    /// File offset of the first unread byte.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Marks `n` buffered bytes as consumed.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }

    /// Moves the unread tail to the front and reads more. Returns `false` when the file has no
    /// more bytes (the unread tail, if any, is then all that is left).
    pub fn refill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.base += self.pos as u64;
        self.len -= self.pos;
        self.pos = 0;
        let before = self.len;
        while self.len < self.buf.len() {
            match self.file.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(EventError::io(&self.path, e)),
            }
        }
        Ok(self.len > before)
    }

    /// Reads exactly `out.len()` bytes at `offset` without disturbing the buffered position.
    pub fn read_at(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
        let resume = self
            .file
            .stream_position()
            .map_err(|e| EventError::io(&self.path, e))?;
        let result = self
            .file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(out))
            .map_err(|e| EventError::io(&self.path, e));
        self.file
            .seek(SeekFrom::Start(resume))
            .map_err(|e| EventError::io(&self.path, e))?;
        result
    }
}

/// The buffer for a file of `total` bytes: the whole file when it is small, a block otherwise.
fn buffer_len(total: u64) -> usize {
    usize::try_from(total)
        .unwrap_or(usize::MAX)
        .clamp(MIN_BUFFER_BYTES, BLOCK_BYTES)
}
