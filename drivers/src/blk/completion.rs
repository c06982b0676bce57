//! What comes back: the device's answer to a request, checked (virtio 1.2 §5.2.6).

use alloc::vec::Vec;
use core::fmt;

use vireo_virtio::{AvailBufferToken, DmaAllocator, DmaBuffer, UsedBufferToken};

use super::{
    error::BlkDriverError,
    pool::RequestPool,
    request::{ID_LEN, Request, RequestId, RequestKind, split_tag},
};

/// `VIRTIO_BLK_S_*` (§5.2.6).
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// The device id string of [`Request::GetId`]: up to 20 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DeviceId {
    bytes: [u8; ID_LEN],
    len: u8,
}

impl DeviceId {
    /// Parses the device's 20 bytes: ASCII, NUL-padded, with no terminator when all 20 are used
    /// (§5.2.6).
    fn parse(raw: &[u8]) -> Result<Self, BlkDriverError> {
        let mut bytes = [0u8; ID_LEN];
        let raw = raw.get(..ID_LEN).ok_or(BlkDriverError::BadId)?;
        bytes.copy_from_slice(raw);
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(ID_LEN);
        let (id, padding) = bytes.split_at(len);
        if !id.iter().all(|b| b.is_ascii() && !b.is_ascii_control())
            || padding.iter().any(|&b| b != 0)
        {
            return Err(BlkDriverError::BadId);
        }
        Ok(Self {
            bytes,
            len: len as u8,
        })
    }

    /// The id's bytes (no padding).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id as a string (checked ASCII).
    #[must_use]
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeviceId").field(&self.as_str()).finish()
    }
}

/// What a successful request produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The request was carried out (reads: the buffers hold the data).
    Done,
    /// The answer of [`Request::GetId`].
    Id(DeviceId),
}

/// A request the device (or a reset) finished.
pub struct Completion<A: DmaAllocator> {
    /// The id [`submit`](super::BlkDriver::submit) returned.
    pub id: RequestId,
    /// The request's kind.
    pub kind: RequestKind,
    /// The caller's data buffers, in submission order (empty for requests without data).
    pub buffers: Vec<DmaBuffer<A>>,
    /// The outcome, with the device's status and lengths checked.
    pub result: Result<Output, BlkDriverError>,
}

impl<A: DmaAllocator> fmt::Debug for Completion<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("buffers", &self.buffers.len())
            .field("result", &self.result)
            .finish()
    }
}

impl<A: DmaAllocator> Completion<A> {
    /// Interprets a used token: the status byte, the written length and (get-id) the id string.
    /// Nothing the device wrote is trusted: every violation is a typed error in `result`. The
    /// header, the status byte and the driver's element list go back to `pool`.
    pub(crate) fn from_used(used: UsedBufferToken<A>, pool: &mut RequestPool<A>) -> Self {
        let written_len = used.written_len();
        let (kind, id) = split_tag(used.tag());
        let (mut readable, mut writable) = used.into_avail().into_parts();
        let expected_len: usize = writable.iter().map(|b| b.len()).sum();
        let status = writable.pop();
        let id_buf = if kind == RequestKind::GetId {
            writable.pop()
        } else {
            None
        };
        let result = interpret(kind, written_len, expected_len, status.as_deref(), id_buf);
        if let Some(status) = status {
            pool.put_status(status);
        }
        let buffers = match kind {
            RequestKind::Read => {
                if let Some(header) = readable.pop() {
                    pool.put_header(header);
                }
                pool.put_list(readable);
                writable
            }
            RequestKind::Write => {
                if !readable.is_empty() {
                    pool.put_header(readable.remove(0));
                }
                pool.put_list(writable);
                readable
            }
            _ => {
                if !readable.is_empty() {
                    pool.put_header(readable.remove(0));
                }
                pool.put_list(readable);
                pool.put_list(writable);
                Vec::new()
            }
        };
        Self {
            id,
            kind,
            buffers,
            result,
        }
    }

    /// A request given back by a reset, unfinished.
    pub(crate) fn from_reset(token: AvailBufferToken<A>) -> Self {
        let (kind, id) = split_tag(token.tag());
        Self {
            id,
            kind,
            buffers: Request::from_token(token).into_buffers(),
            result: Err(BlkDriverError::DeviceReset),
        }
    }
}

fn interpret<A: DmaAllocator>(
    kind: RequestKind,
    written_len: u32,
    expected_len: usize,
    status: Option<&[u8]>,
    id_buf: Option<DmaBuffer<A>>,
) -> Result<Output, BlkDriverError> {
    let expected = u32::try_from(expected_len).unwrap_or(u32::MAX);
    // The status byte is the last device-writable byte: a used length of 0 means the device
    // never wrote it.
    let status = status.and_then(<[u8]>::last).copied();
    let Some(status) = status.filter(|_| written_len > 0) else {
        return Err(BlkDriverError::UsedLength {
            len: written_len,
            expected,
        });
    };
    match status {
        S_OK => {}
        S_IOERR => return Err(BlkDriverError::IoError),
        S_UNSUPP => return Err(BlkDriverError::DeviceUnsupported),
        other => return Err(BlkDriverError::BadStatus(other)),
    }
    // Data the device reads for us must be covered by the length it reports written.
    if written_len < expected {
        return Err(BlkDriverError::UsedLength {
            len: written_len,
            expected,
        });
    }
    match (kind, id_buf) {
        (RequestKind::GetId, Some(buf)) => DeviceId::parse(&buf).map(Output::Id),
        (RequestKind::GetId, None) => Err(BlkDriverError::BadId),
        _ => Ok(Output::Done),
    }
}

#[cfg(test)]
mod tests {
    use vireo_virtio::mock::GuestDma;

    use super::*;

    #[test]
    fn a_get_id_answer_without_an_id_buffer_is_no_id() {
        // The driver always posts a 20-byte id buffer for get-id; a token that lost it (a
        // driver bug) must not turn an OK status into a success without an id.
        let result = interpret::<GuestDma>(RequestKind::GetId, 1, 1, Some(&[S_OK]), None);
        assert_eq!(result, Err(BlkDriverError::BadId));
        // With the buffer, the same answer is the id.
        let dma = GuestDma::new(1 << 16);
        let id = dma.buffer(b"serial\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let result = interpret(RequestKind::GetId, 21, 21, Some(&[S_OK]), Some(id));
        assert!(matches!(result, Ok(Output::Id(id)) if id.as_str() == "serial"));
    }
}
