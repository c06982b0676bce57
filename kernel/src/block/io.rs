//! The blocking conveniences of [`BlockDevice`]: copying reads and writes split to the device's
//! limits, zero-copy buffer I/O, flush, discard and write-zeroes, all at block granularity.

use alloc::{vec, vec::Vec};

use vireo_drivers::blk::{BlkDriverError, Request, SECTOR_SIZE, SectorRange, SubmitError};

use super::{
    BlockError, Buffer, buffer,
    device::{BlockDevice, COPY_CHUNK},
};
use crate::mm::DeviceAlloc;

/// A failed [`BlockDevice::read_buffer`] / [`BlockDevice::write_buffer`]: the reason, and the
/// caller's buffer unless the device still holds it (after a timeout it is freed when the device
/// completes the request, or never if the device never does).
#[derive(Debug)]
pub struct BufferError {
    /// Why the request failed.
    pub error: BlockError,
    /// The caller's buffer, when it could be taken back.
    pub buffer: Option<Buffer>,
}

impl BlockDevice {
    fn sector_of(&self, block: u64) -> Result<u64, BlockError> {
        let per_block = u64::from(self.info().block_size) / SECTOR_SIZE;
        block
            .checked_mul(per_block)
            .ok_or(BlockError::Driver(BlkDriverError::OutOfRange))
    }

    /// Reads `buf.len()` bytes (a multiple of the block size) from block `block` on, copying
    /// through device memory in requests of up to 256 KiB.
    ///
    /// # Errors
    /// Range and alignment errors before anything reaches the device; the device's errors; timeout.
    pub fn read(&self, block: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let chunk = self.copy_chunk(buf.len())?;
        let mut sector = self.sector_of(block)?;
        for part in buf.chunks_mut(chunk) {
            let c = self.run(
                0,
                Request::Read {
                    sector,
                    buffers: vec![buffer(part.len())?],
                },
            )?;
            c.result?;
            part.copy_from_slice(&c.buffers[0]);
            sector += (part.len() as u64) / SECTOR_SIZE;
        }
        Ok(())
    }

    /// Writes `buf` (a multiple of the block size) from block `block` on, copying through device
    /// memory in requests of up to 256 KiB. Durable after [`flush`](Self::flush) when the device
    /// has a volatile cache ([`BlockInfo::flush`](super::BlockInfo::flush)).
    ///
    /// # Errors
    /// As [`read`](Self::read); read-only devices refuse.
    pub fn write(&self, block: u64, buf: &[u8]) -> Result<(), BlockError> {
        let chunk = self.copy_chunk(buf.len())?;
        let mut sector = self.sector_of(block)?;
        for part in buf.chunks(chunk) {
            let mut dma = buffer(part.len())?;
            dma.copy_from_slice(part);
            self.run(
                0,
                Request::Write {
                    sector,
                    buffers: vec![dma],
                },
            )?
            .result?;
            sector += (part.len() as u64) / SECTOR_SIZE;
        }
        Ok(())
    }

    /// The bounce size for copying `len` bytes: a multiple of the block size within the device's
    /// segment limit.
    fn copy_chunk(&self, len: usize) -> Result<usize, BlockError> {
        let info = self.info();
        let block = u64::from(info.block_size);
        if len == 0 {
            return Err(BlkDriverError::EmptyBuffer.into());
        }
        if !(len as u64).is_multiple_of(block) {
            return Err(BlkDriverError::Misaligned.into());
        }
        let limit = COPY_CHUNK.min(u64::from(info.max_segment_bytes));
        Ok(((limit / block).max(1) * block) as usize)
    }

    /// Reads into `buffer` (one request, no copy) from block `block` on.
    ///
    /// # Errors
    /// See [`BufferError`].
    pub fn read_buffer(&self, block: u64, buffer: Buffer) -> Result<Buffer, BufferError> {
        self.buffer_io(block, buffer, |sector, buffers| Request::Read {
            sector,
            buffers,
        })
    }

    /// Writes `buffer` (one request, no copy) from block `block` on.
    ///
    /// # Errors
    /// See [`BufferError`].
    pub fn write_buffer(&self, block: u64, buffer: Buffer) -> Result<Buffer, BufferError> {
        self.buffer_io(block, buffer, |sector, buffers| Request::Write {
            sector,
            buffers,
        })
    }

    fn buffer_io(
        &self,
        block: u64,
        buffer: Buffer,
        make: impl FnOnce(u64, Vec<Buffer>) -> Request<DeviceAlloc>,
    ) -> Result<Buffer, BufferError> {
        let sector = match self.sector_of(block) {
            Ok(s) => s,
            Err(error) => {
                return Err(BufferError {
                    error,
                    buffer: Some(buffer),
                });
            }
        };
        let mut request = make(sector, vec![buffer]);
        loop {
            match self.submit(0, request) {
                Ok(id) => {
                    return match self.wait_until(0, Some(id)) {
                        Ok(mut c) => match c.result {
                            Ok(_) => Ok(c.buffers.remove(0)),
                            Err(e) => Err(BufferError {
                                error: e.into(),
                                buffer: c.buffers.pop(),
                            }),
                        },
                        Err(error) => Err(BufferError {
                            error,
                            buffer: None,
                        }),
                    };
                }
                Err(SubmitError {
                    error: BlkDriverError::QueueFull,
                    request: r,
                }) => {
                    match self.wait_until(0, None) {
                        Ok(c) => self.inner.lock().ready[0].push_front(c),
                        Err(error) => {
                            return Err(BufferError {
                                error,
                                buffer: r.into_buffers().pop(),
                            });
                        }
                    }
                    request = r;
                }
                Err(e) => {
                    return Err(BufferError {
                        error: e.error.into(),
                        buffer: e.request.into_buffers().pop(),
                    });
                }
            }
        }
    }

    /// Makes every completed write durable (a no-op success on a device without a volatile cache,
    /// which writes through).
    ///
    /// # Errors
    /// The device's error; timeout.
    pub fn flush(&self) -> Result<(), BlockError> {
        if !self.info().flush {
            return Ok(());
        }
        self.run(0, Request::Flush)?.result?;
        Ok(())
    }

    /// Discards `count` blocks from `block` on (they read back as zeroes on QEMU's devices, but
    /// the virtio spec does not promise it: use [`write_zeroes`](Self::write_zeroes) for that).
    ///
    /// # Errors
    /// [`BlkDriverError::Unsupported`] without `VIRTIO_BLK_F_DISCARD`; range errors; the device's error.
    pub fn discard(&self, block: u64, count: u64) -> Result<(), BlockError> {
        let ranges = self.ranges(block, count)?;
        self.run(0, Request::Discard { ranges })?.result?;
        Ok(())
    }

    /// Writes zeroes over `count` blocks from `block` on, letting the device unmap them.
    ///
    /// # Errors
    /// [`BlkDriverError::Unsupported`] without `VIRTIO_BLK_F_WRITE_ZEROES`; range errors; the device's error.
    pub fn write_zeroes(&self, block: u64, count: u64) -> Result<(), BlockError> {
        let ranges = self.ranges(block, count)?;
        self.run(
            0,
            Request::WriteZeroes {
                ranges,
                unmap: true,
            },
        )?
        .result?;
        Ok(())
    }

    fn ranges(&self, block: u64, count: u64) -> Result<Vec<SectorRange>, BlockError> {
        let sector = self.sector_of(block)?;
        let sectors = self.sector_of(count)?;
        let num_sectors =
            u32::try_from(sectors).map_err(|_| BlockError::Driver(BlkDriverError::OutOfRange))?;
        Ok(vec![SectorRange {
            sector,
            num_sectors,
        }])
    }
}
