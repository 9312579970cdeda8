//! Line feeds in request heads, found 16 bytes at a time for `framing_guard.rs`: the guard reads
//! every HTTP/1.1 head, and a search call per line (`memchr`) cost more than the rest of it.

/// The positions of the LF bytes of `data` from some offset on, in order.
pub(super) struct Lfs<'a> {
    data: &'a [u8],
    /// Where the block whose LFs `mask` holds starts.
    base: usize,
    /// The LFs of that block not handed out yet, one bit per byte from `base`.
    mask: u32,
    /// Where the next block starts.
    next: usize,
}

impl<'a> Lfs<'a> {
    /// The LFs of `data[from..]`.
    pub(super) fn new(data: &'a [u8], from: usize) -> Self {
        Lfs {
            data,
            base: from,
            mask: 0,
            next: from,
        }
    }
}

impl Iterator for Lfs<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            let (from, len) = (self.next, self.data.len());
            if from >= len {
                return None;
            }
            if let Some(block) = self.data.get(from..from + 16) {
                (self.base, self.mask, self.next) = (from, lf_mask(block), from + 16);
            } else if len >= 16 {
                // The last 16 bytes, without those already looked at.
                let base = len - 16;
                self.mask = lf_mask(&self.data[base..]) & (u32::MAX << (from - base));
                (self.base, self.next) = (base, len);
            } else {
                // Fewer than 16 bytes in all (a head in small pieces): padded with zeros.
                let mut block = [0u8; 16];
                block[..len - from].copy_from_slice(&self.data[from..]);
                (self.base, self.mask, self.next) = (from, lf_mask(&block), len);
            }
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.base + bit)
    }
}

/// One bit per LF in `block` (16 bytes).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lf_mask(block: &[u8]) -> u32 {
    use std::arch::x86_64::_mm_set1_epi8;
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
    assert!(block.len() >= 16);
    // SAFETY: SSE2 is part of x86_64's baseline; the unaligned load reads 16 bytes of `block`,
    // which has at least that many.
    let bits = unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)))
    };
    // The mask has 16 bits.
    bits as u32
}

/// One bit per LF in `block` (16 bytes).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn lf_mask(block: &[u8]) -> u32 {
    (block[..16].iter().enumerate()).fold(0, |m, (i, &b)| m | (u32::from(b == b'\n') << i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lf_is_found_once_in_order_from_any_offset() {
        let mut data: Vec<u8> = (0..80u8)
            .map(|i| if i % 7 == 3 { b'\n' } else { b'a' + i % 26 })
            .collect();
        data[79] = b'\n';
        for len in 0..data.len() {
            for from in 0..=len {
                let expected: Vec<usize> = (from..len).filter(|&i| data[i] == b'\n').collect();
                let found: Vec<usize> = Lfs::new(&data[..len], from).collect();
                assert_eq!(found, expected, "len {len}, from {from}");
            }
        }
    }
}
