//! The site: an ordinary tar archive read whole from a virtio-blk disk into memory at start, its
//! regular files indexed by path.

use alloc::{boxed::Box, collections::BTreeMap, string::String, vec};
use core::fmt;

use tar_no_std::{CorruptDataError, TarArchiveRef};
use vireo::block::{self, BlockError};

/// The largest archive read into memory.
const MAX_ARCHIVE: u64 = 32 << 20;
/// Bytes read from the disk per request.
const CHUNK: usize = 256 << 10;

/// Why the site could not be loaded.
#[derive(Debug)]
pub enum SiteError {
    /// No virtio-blk disk has the serial number.
    NoDisk(&'static str),
    /// The disk is larger than [`MAX_ARCHIVE`].
    TooLarge(u64),
    /// Reading the disk failed.
    Read(BlockError),
    /// The disk does not hold a valid tar archive.
    Corrupt(CorruptDataError),
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDisk(serial) => write!(f, "no virtio-blk disk with serial `{serial}`"),
            Self::TooLarge(bytes) => write!(
                f,
                "the site disk has {bytes} bytes, more than {MAX_ARCHIVE}"
            ),
            Self::Read(e) => write!(f, "reading the site disk: {e}"),
            Self::Corrupt(e) => write!(f, "the site disk is not a tar archive: {e}"),
        }
    }
}

/// The files of the site, by path without the leading `/` (`docs/about.html`).
#[derive(Debug)]
pub struct Site {
    files: BTreeMap<String, &'static [u8]>,
}

impl Site {
    /// Reads the whole disk with serial `serial` and indexes the archive's regular files. The
    /// archive's bytes stay in memory for as long as the server runs.
    pub fn load(serial: &'static str) -> Result<Self, SiteError> {
        let disk = block::by_serial(serial).ok_or(SiteError::NoDisk(serial))?;
        let info = disk.info();
        let bytes = info.blocks.saturating_mul(u64::from(info.block_size));
        if bytes > MAX_ARCHIVE {
            return Err(SiteError::TooLarge(bytes));
        }
        let mut data = vec![0u8; bytes as usize];
        let per_block = info.block_size as usize;
        for (i, chunk) in data.chunks_mut(CHUNK).enumerate() {
            let first = (i * CHUNK / per_block) as u64;
            disk.read(first, chunk).map_err(SiteError::Read)?;
        }
        let data: &'static [u8] = Box::leak(data.into_boxed_slice());
        let archive = TarArchiveRef::new(data).map_err(SiteError::Corrupt)?;
        let mut files = BTreeMap::new();
        for entry in archive.entries() {
            // A name that is not UTF-8 cannot be asked for: it is left out.
            let filename = entry.filename();
            let Ok(name) = filename.as_str() else {
                continue;
            };
            let name = name.trim_start_matches("./").trim_start_matches('/');
            files.insert(String::from(name), entry.data());
        }
        Ok(Self { files })
    }

    /// The file at `path` (without the leading `/`).
    pub fn get(&self, path: &str) -> Option<&'static [u8]> {
        self.files.get(path).copied()
    }

    /// Every file: path and size.
    pub fn files(&self) -> impl Iterator<Item = (&str, usize)> {
        self.files.iter().map(|(p, d)| (p.as_str(), d.len()))
    }
}
