//! The bytes disk tests write: a function of the write's generation and the byte's disk offset.
//!
//! The guest writes them (`vireo::testing::fill_disk_pattern`) and reports each completed write
//! on the serial line; after QEMU exits, `xtask` replays the reports and compares every sector of
//! the image with [`disk_pattern_byte`]. Both sides use this module, so a lost, torn or stray
//! write shows and a change to the pattern cannot leave one side behind.
//!
//! Every aligned 8 bytes are one little-endian 64-bit word that mixes the word's index and the
//! generation, so neighbouring sectors, and one sector in two generations, never look alike.

/// The pattern word of the 8 bytes at `8 * index` in generation `generation`.
fn word(generation: u64, index: u64) -> u64 {
    index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ generation.wrapping_mul(0xd6e8_feb8_6659_fd93)
}

/// The byte a disk test writes at disk offset `offset` in write generation `generation`.
pub fn disk_pattern_byte(generation: u64, offset: u64) -> u8 {
    word(generation, offset / 8).to_le_bytes()[(offset % 8) as usize]
}

/// Fills `buf`, destined for disk offset `offset`, with generation `generation`'s pattern: the
/// same bytes as [`disk_pattern_byte`] for every offset, eight at a time where the offset allows.
pub fn fill_disk_pattern(buf: &mut [u8], generation: u64, offset: u64) {
    let total = buf.len();
    let head = ((8 - offset % 8) % 8).min(total as u64) as usize;
    let (head_bytes, rest) = buf.split_at_mut(head);
    for (i, b) in (offset..).zip(head_bytes) {
        *b = disk_pattern_byte(generation, i);
    }
    let rest_offset = offset + head as u64;
    let mut chunks = rest.chunks_exact_mut(8);
    for (index, chunk) in (rest_offset / 8..).zip(&mut chunks) {
        chunk.copy_from_slice(&word(generation, index).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    let tail_offset = offset + (total - tail.len()) as u64;
    for (i, b) in (tail_offset..).zip(tail) {
        *b = disk_pattern_byte(generation, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filling_matches_the_byte_function_at_every_alignment() {
        for offset in [0, 1, 7, 8, 9, 511, 512, 4093, (1 << 40) + 3] {
            for len in [0, 1, 5, 8, 9, 16, 23, 512, 1000] {
                let mut buf = vec![0u8; len];
                fill_disk_pattern(&mut buf, 7, offset);
                for (i, &b) in buf.iter().enumerate() {
                    assert_eq!(
                        b,
                        disk_pattern_byte(7, offset + i as u64),
                        "offset {offset} len {len} byte {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_filled_buffer_is_the_same_whatever_pieces_it_is_filled_in() {
        let mut whole = vec![0u8; 4096];
        fill_disk_pattern(&mut whole, 3, 512);
        let mut pieces = vec![0u8; 4096];
        let mut at = 0;
        for len in [1, 2, 13, 8, 1000, 5].into_iter().cycle() {
            let end = (at + len).min(pieces.len());
            fill_disk_pattern(&mut pieces[at..end], 3, 512 + at as u64);
            at = end;
            if at == pieces.len() {
                break;
            }
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn sectors_and_generations_differ() {
        let sector = |generation, offset| {
            let mut s = [0u8; 512];
            fill_disk_pattern(&mut s, generation, offset);
            s
        };
        let first = sector(1, 0);
        assert_ne!(first, sector(2, 0), "another generation");
        assert_ne!(first, sector(1, 512), "another sector");
        assert_ne!(
            first, [0; 512],
            "never all zero, as an unwritten disk reads"
        );
        // Within a sector, no two 8-byte words are alike.
        let words: std::collections::HashSet<&[u8]> = first.chunks(8).collect();
        assert_eq!(words.len(), 64);
        // A torn sector (half of each generation) matches neither.
        let mut torn = sector(1, 0);
        torn[256..].copy_from_slice(&sector(2, 0)[256..]);
        assert_ne!(torn, first);
        assert_ne!(torn, sector(2, 0));
    }

    #[test]
    fn each_word_is_little_endian() {
        for offset in 0..8 {
            assert_eq!(
                disk_pattern_byte(5, 64 + offset),
                (word(5, 8) >> (8 * offset)) as u8
            );
        }
    }
}
