//! What a host does with TCP segmentation offloads between two guests: for a receiver that
//! negotiated `VIRTIO_NET_F_GUEST_TSO4`/`TSO6`, consecutive TCP segments of one flow are
//! coalesced into one segment of up to 64 KiB (Linux's GRO, then tap's GSO), delivered with a
//! partial checksum (`NEEDS_CSUM`) and the GSO fields in the net header ([`coalesce`]); a
//! sender's `HOST_TSO4` segment is cut at its `gso_size` ([`segment`], Linux's GSO).

use super::frames::{ETH, complete_checksum};

/// `VIRTIO_NET_HDR_GSO_TCPV4` and `TCPV6`.
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
/// The longest coalesced frame built (Linux's 64 KiB GSO limit plus the Ethernet header).
pub const MAX_COALESCED: usize = 65_550;

/// The longest coalesced frame over IPv6 or IPv4: [`MAX_COALESCED`], and no more than an IPv4
/// total length can say.
fn max_coalesced(ipv6: bool) -> usize {
    if ipv6 {
        MAX_COALESCED
    } else {
        MAX_COALESCED.min(ETH + 65_535)
    }
}

/// TCP flags: FIN, SYN, RST, PSH, ACK, URG.
const FIN_SYN_RST: u8 = 0x07;
const PSH: u8 = 0x08;
const URG: u8 = 0x20;

/// A frame with its net header, as a tx queue gives it and an rx queue takes it.
pub type Framed = ([u8; 12], Vec<u8>);

/// A TCP segment's layout in its frame.
#[derive(Clone, Copy, Debug)]
struct Segment {
    ipv6: bool,
    /// Offset of the TCP header, and of the payload.
    tcp: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

fn be16(f: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([f[at], f[at + 1]]))
}

/// The TCP segment in `frame` (IPv4 without options or IPv6 without extension headers),
/// carrying data, or `None`.
fn segment_of(frame: &[u8]) -> Option<Segment> {
    let ipv6 = match be16(frame, 12) {
        0x0800 if frame[ETH] == 0x45 && frame[ETH + 9] == 6 => false,
        0x86dd if frame[ETH + 6] == 6 => true,
        _ => return None,
    };
    let tcp = ETH + if ipv6 { 40 } else { 20 };
    let ip_end = if ipv6 {
        tcp + be16(frame, ETH + 4)
    } else {
        ETH + be16(frame, ETH + 2)
    };
    let payload = tcp + usize::from(frame[tcp + 12] >> 4) * 4;
    if ip_end != frame.len() || payload >= frame.len() {
        return None;
    }
    Some(Segment {
        ipv6,
        tcp,
        payload,
        seq: u32::from_be_bytes(frame[tcp + 4..tcp + 8].try_into().unwrap()),
        flags: frame[tcp + 13],
    })
}

/// Whether `next` continues `run` (whose first segment is `first`): same flow, addresses,
/// ports, acknowledgement and TCP options (Linux's `tcp_gro_receive` rules, simplified), in
/// sequence, nothing but ACK and PSH set, and the run not ended by a PSH yet.
fn continues(run: &[u8], first: Segment, last: Segment, next: &[u8], n: Segment) -> bool {
    let addrs = |f: &[u8], s: Segment| {
        if s.ipv6 {
            f[ETH + 8..ETH + 40].to_vec()
        } else {
            f[ETH + 12..ETH + 20].to_vec()
        }
    };
    let run_payload = run.len() - first.payload;
    n.ipv6 == first.ipv6
        && addrs(run, first) == addrs(next, n)
        && run[first.tcp..first.tcp + 4] == next[n.tcp..n.tcp + 4]
        && run[first.tcp + 8..first.tcp + 12] == next[n.tcp + 8..n.tcp + 12]
        && run[first.tcp + 20..first.payload] == next[n.tcp + 20..n.payload]
        && n.seq == first.seq.wrapping_add(run_payload as u32)
        && last.flags & PSH == 0
        && (n.flags | last.flags) & (FIN_SYN_RST | URG) == 0
        && run.len() + next.len() - n.payload <= max_coalesced(first.ipv6)
}

/// Sum of `data` as big-endian words, folded.
fn sum(data: &[u8], mut acc: u32) -> u16 {
    for w in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Turns a run of more than one segment into one coalesced frame and its header: IP length,
/// IPv4 header checksum, the last segment's flags, window and PSH, the partial TCP checksum
/// (pseudo-header sum), and the GSO fields.
fn finish(mut run: Vec<u8>, first: Segment, last_flags: u8, window: [u8; 2], mss: usize) -> Framed {
    let tcp = first.tcp;
    let tcp_len = run.len() - tcp;
    if first.ipv6 {
        run[ETH + 4..ETH + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
    } else {
        let total = (run.len() - ETH) as u16;
        run[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        run[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let check = !sum(&run[ETH..ETH + 20], 0);
        run[ETH + 10..ETH + 12].copy_from_slice(&check.to_be_bytes());
    }
    run[tcp + 13] = last_flags;
    run[tcp + 14..tcp + 16].copy_from_slice(&window);
    let addrs = if first.ipv6 {
        &run[ETH + 8..ETH + 40]
    } else {
        &run[ETH + 12..ETH + 20]
    };
    let pseudo = sum(addrs, 6 + tcp_len as u32);
    run[tcp + 16..tcp + 18].copy_from_slice(&pseudo.to_be_bytes());
    let gso_type = if first.ipv6 { GSO_TCPV6 } else { GSO_TCPV4 };
    let h = super::net::gso_header(gso_type, first.payload as u16, mss as u16, tcp as u16);
    (h, run)
}

/// A run of segments being coalesced.
struct Run {
    /// The first frame with the later payloads appended.
    frame: Vec<u8>,
    first: Segment,
    last: Segment,
    /// The first segment's payload length: the MSS (`gso_size`).
    mss: usize,
    /// The last segment's header and frame as they came (a run of one passes unchanged).
    last_header: [u8; 12],
    last_frame: Vec<u8>,
    count: usize,
}

impl Run {
    fn new(h: [u8; 12], frame: Vec<u8>, seg: Segment) -> Self {
        Self {
            frame: frame.clone(),
            first: seg,
            last: seg,
            mss: frame.len() - seg.payload,
            last_header: h,
            last_frame: frame,
            count: 1,
        }
    }

    fn push(&mut self, h: [u8; 12], frame: Vec<u8>, seg: Segment) {
        self.frame.extend_from_slice(&frame[seg.payload..]);
        self.last = seg;
        self.last_header = h;
        self.last_frame = frame;
        self.count += 1;
    }

    /// The frame to deliver: coalesced (and `true`), or the single segment as it came.
    fn finish(self) -> (Framed, bool) {
        if self.count == 1 {
            return ((self.last_header, self.last_frame), false);
        }
        let tcp = self.last.tcp;
        let window = [self.last_frame[tcp + 14], self.last_frame[tcp + 15]];
        (
            finish(self.frame, self.first, self.last.flags, window, self.mss),
            true,
        )
    }
}

/// Coalesces runs of consecutive segments in `frames` (as taken from a sender's tx queue:
/// header, frame); every other frame passes unchanged. Returns the frames to deliver and how
/// many coalesced ones there are.
pub fn coalesce(frames: Vec<Framed>) -> (Vec<Framed>, usize) {
    let mut out = Vec::new();
    let mut coalesced = 0;
    let mut run: Option<Run> = None;
    let mut flush = |run: Option<Run>, out: &mut Vec<Framed>| {
        if let Some(r) = run {
            let (frame, merged) = r.finish();
            out.push(frame);
            coalesced += usize::from(merged);
        }
    };
    for (h, frame) in frames {
        let Some(seg) = segment_of(&frame) else {
            flush(run.take(), &mut out);
            out.push((h, frame));
            continue;
        };
        if let Some(r) = run.as_mut()
            && continues(&r.frame, r.first, r.last, &frame, seg)
        {
            r.push(h, frame, seg);
            continue;
        }
        flush(run.take(), &mut out);
        run = Some(Run::new(h, frame, seg));
    }
    flush(run.take(), &mut out);
    (out, coalesced)
}

/// Cuts a frame the sender asked the device to segment (`gso_type` TCPV4 in its header `h`)
/// into frames of at most `gso_size` payload bytes behind copies of its first `hdr_len`
/// bytes: IPv4 total length, identification and header checksum per frame, TCP sequence
/// numbers advanced, FIN and PSH on the last frame only, every checksum complete (as Linux's
/// `tcp_gso_segment` leaves them for a device without checksum offload). Checks what the
/// sender wrote on the way: `NEEDS_CSUM` at the TCP checksum, `hdr_len` at the end of the TCP
/// header, and the pseudo-header sum over the whole segment in the field. Any other frame is
/// returned as it is.
pub fn segment(h: [u8; 12], frame: Vec<u8>) -> Vec<Framed> {
    if h[1] != GSO_TCPV4 {
        return vec![(h, frame)];
    }
    let le16 = |at: usize| usize::from(u16::from_le_bytes([h[at], h[at + 1]]));
    let (hdr_len, mss, start, offset) = (le16(2), le16(4), le16(6), le16(8));
    let seg = segment_of(&frame).expect("a TSO frame is one TCP/IPv4 segment");
    assert!(!seg.ipv6 && h[0] == 1 && mss > 0, "TSO header {h:?}");
    assert_eq!(
        (start, offset, hdr_len),
        (seg.tcp, 16, seg.payload),
        "TSO header {h:?}"
    );
    let tcp_len = frame.len() - seg.tcp;
    let pseudo = sum(&frame[ETH + 12..ETH + 20], 6 + tcp_len as u32);
    assert_eq!(
        be16(&frame, seg.tcp + 16),
        usize::from(pseudo),
        "pseudo-header sum"
    );
    let payload = &frame[seg.payload..];
    let count = payload.len().div_ceil(mss);
    let mut out = Vec::new();
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let mut f = frame[..seg.payload].to_vec();
        f.extend_from_slice(chunk);
        let total = (f.len() - ETH) as u16;
        f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        let id = (be16(&frame, ETH + 4) + i) as u16;
        f[ETH + 4..ETH + 6].copy_from_slice(&id.to_be_bytes());
        f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let check = !sum(&f[ETH..ETH + 20], 0);
        f[ETH + 10..ETH + 12].copy_from_slice(&check.to_be_bytes());
        let seq = seg.seq.wrapping_add((i * mss) as u32);
        f[seg.tcp + 4..seg.tcp + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < count {
            f[seg.tcp + 13] &= !(PSH | 0x01);
        }
        let tcp_len = f.len() - seg.tcp;
        let pseudo = sum(&f[ETH + 12..ETH + 20], 6 + tcp_len as u32);
        f[seg.tcp + 16..seg.tcp + 18].copy_from_slice(&pseudo.to_be_bytes());
        complete_checksum(&mut f, seg.tcp, 16);
        out.push(([0; 12], f));
    }
    out
}
