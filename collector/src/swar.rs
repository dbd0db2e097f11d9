//! Eight bytes at a time in one `u64` ("SIMD within a register"): where the first byte of a
//! word equal to a given one (or below a bound) is. The decoders and the JSON reader use it to
//! step over the plain runs between escapes a word at a time.

/// `0x01` in every byte.
const ONES: u64 = 0x0101_0101_0101_0101;

/// A word with the high bit set in each byte of `word` (little-endian) equal to `byte`. Bits
/// above the first such byte may be set falsely, so only the lowest set bit is exact, also in
/// the union of several masks: [`first`] reads just that one.
pub(crate) fn equal(word: u64, byte: u8) -> u64 {
    let zeroed = word ^ (ONES * u64::from(byte));
    zeroed.wrapping_sub(ONES) & !zeroed & (ONES * 0x80)
}

/// A word with the high bit set in each byte of `word` below `bound` (at most 0x80); like
/// [`equal`], only the lowest set bit is exact.
pub(crate) fn below(word: u64, bound: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(bound)) & !word & (ONES * 0x80)
}

/// The index of the first marked byte of a mask from [`equal`] or [`below`]; 8 when none is.
pub(crate) fn first(mask: u64) -> usize {
    mask.trailing_zeros() as usize / 8
}

/// The index of the first byte of `bytes` that `stops`, eight bytes at a time: `word_stops`
/// marks a word's stopping bytes (a union of [`equal`] and [`below`] masks) and `stops` says
/// the same of one byte, for the last few.
#[inline]
pub(crate) fn position(
    bytes: &[u8],
    word_stops: impl Fn(u64) -> u64,
    stops: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let mask = word_stops(u64::from_le_bytes(word));
        if mask != 0 {
            return Some(at + first(mask));
        }
        at += 8;
    }
    let tail = chunks.remainder();
    tail.iter().position(|&b| stops(b)).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_equal_byte() {
        let word = u64::from_le_bytes(*b"ab%c+%\x80%");
        assert_eq!(first(equal(word, b'%')), 2);
        assert_eq!(first(equal(word, b'%') | equal(word, b'+')), 2);
        assert_eq!(first(equal(word, b'+')), 4);
        assert_eq!(first(equal(word, b'z')), 8);
        // Bytes after the first match may be marked falsely; the first one is exact.
        let word = u64::from_le_bytes(*b"xx%&%&%&");
        assert_eq!(first(equal(word, b'&')), 3);
        let word = u64::from_le_bytes(*b"a\"b\x1f\x00cd\n");
        assert_eq!(first(below(word, 0x20)), 3);
        assert_eq!(first(below(word, 0x20) | equal(word, b'"')), 1);
        assert_eq!(first(below(u64::from_le_bytes(*b"abcdefgh"), 0x20)), 8);
    }
}
