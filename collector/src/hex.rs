//! Hex digits, read through a table: both the percent-decoding of query strings (`%XX`) and the
//! unescaping of nginx log fields (`\xHH`) decode dense runs of them.

/// Marks a byte that is not a hex digit in [`DIGIT`].
const NOT_HEX: u8 = 0xff;

/// The value of each byte as a hex digit (either case), [`NOT_HEX`] for the rest.
const DIGIT: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        let value = i as u8;
        table[b"0123456789abcdef"[i] as usize] = value;
        table[b"0123456789ABCDEF"[i] as usize] = value;
        i += 1;
    }
    table
};

/// The value of one hex digit.
pub(crate) fn digit(b: u8) -> Option<u8> {
    let value = DIGIT[usize::from(b)];
    (value != NOT_HEX).then_some(value)
}

/// The byte two hex digits stand for: `pair(b'2', b'F') == Some(0x2f)`.
pub(crate) fn pair(high: u8, low: u8) -> Option<u8> {
    let (high, low) = (DIGIT[usize::from(high)], DIGIT[usize::from(low)]);
    // Both are digits exactly when neither has a bit above the low four.
    (high | low < 16).then_some(high << 4 | low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_standard_library_on_every_byte() {
        for b in 0..=u8::MAX {
            let want = (b as char).to_digit(16).map(|d| d as u8);
            assert_eq!(digit(b), want, "byte {b:#04x}");
        }
        assert_eq!(pair(b'2', b'F'), Some(0x2f));
        assert_eq!(pair(b'f', b'f'), Some(0xff));
        assert_eq!(pair(b'g', b'0'), None);
        assert_eq!(pair(b'0', b'%'), None);
    }
}
