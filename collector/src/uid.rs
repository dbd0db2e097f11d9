//! The first-party network-user-id cookie, as nginx's `userid` module writes it.
//!
//! nginx keeps a user id as four 32-bit words. The cookie carries their 16 bytes in base64
//! (`sp=fwAAAWsCOJyhwiHFAwMHAg==`), while the `$uid_got` / `$uid_set` variables print the words as
//! `name=` followed by 32 upper-case hex digits, each word read in the machine's (little-endian)
//! byte order: the cookie bytes `7f 00 00 01 6b 02 38 9c ...` are logged as `sp=0100007F9C38026B...`.
//! (Observed on nginx 1.22 on x86-64; `plow-collector serve` writes the same.)
//!
//! plowline's `network_userid` is the cookie's 16 bytes, in cookie order, formatted as a UUID, so the
//! same cookie gives the same id whether it was read from `$uid_got` or issued in `$uid_set`.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// nginx's `ngx_decode_base64` ignores the unused low bits of the last character.
const NGINX_DECODER: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A 128-bit user id in cookie byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Uid(pub [u8; 16]);

impl Uid {
    /// Reads a cookie value the way nginx does: its first 22 characters are standard base64 for
    /// the 16 bytes; anything shorter or not base64 is no id (nginx logs "invalid userid cookie" and
    /// issues a new one).
    pub fn from_cookie_value(value: &[u8]) -> Option<Uid> {
        let head = value.get(..22)?;
        let mut bytes = [0u8; 16];
        let n = NGINX_DECODER.decode_slice(head, &mut bytes).ok()?;
        (n == 16).then_some(Uid(bytes))
    }

    /// The cookie value nginx sets: base64 with padding, 24 characters.
    pub fn cookie_value(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The `$uid_got` / `$uid_set` form: `NAME=` and four words of 8 upper-case hex digits each.
    pub fn logged(&self, name: &str) -> String {
        let mut out = String::with_capacity(name.len() + 33);
        out.push_str(name);
        out.push('=');
        for word in self.0.chunks_exact(4) {
            let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            out.push_str(&format!("{word:08X}"));
        }
        out
    }

    /// Parses the `$uid_got` / `$uid_set` form back into the cookie name and the id.
    pub fn parse_logged(logged: &[u8]) -> Option<(&[u8], Uid)> {
        let eq = memchr::memrchr(b'=', logged)?;
        let (name, hex) = (&logged[..eq], &logged[eq + 1..]);
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        // Each run of eight hex digits is a 32-bit word written most significant digit first,
        // stored little-endian: its last two digits are the word's first byte.
        for (word, digits) in bytes.chunks_exact_mut(4).zip(hex.chunks_exact(8)) {
            for (byte, pair) in word.iter_mut().zip(digits.chunks_exact(2).rev()) {
                *byte = crate::hex::pair(pair[0], pair[1])?;
            }
        }
        Some((name, Uid(bytes)))
    }

    /// The id as a lower-case UUID string (`8-4-4-4-12`), plowline's `network_userid`.
    pub fn to_uuid_string(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Taken from a real nginx 1.22: the cookie it set and the `$uid_set` it logged.
    const COOKIE: &str = "fwAAAWsCOJyhwiHFAwMHAg==";
    const LOGGED: &str = "sp=0100007F9C38026BC521C2A102070303";

    #[test]
    fn matches_nginx() {
        let uid = Uid::from_cookie_value(COOKIE.as_bytes()).unwrap();
        assert_eq!(uid.logged("sp"), LOGGED);
        assert_eq!(uid.cookie_value(), COOKIE);
        let (name, parsed) = Uid::parse_logged(LOGGED.as_bytes()).unwrap();
        assert_eq!((name, parsed), (&b"sp"[..], uid));
        let lower = LOGGED.to_ascii_lowercase();
        assert_eq!(Uid::parse_logged(lower.as_bytes()).unwrap().1, uid);
        assert_eq!(uid.to_uuid_string(), "7f000001-6b02-389c-a1c2-21c503030702");
    }

    #[test]
    fn rejects_what_nginx_rejects() {
        assert_eq!(Uid::from_cookie_value(b"short"), None);
        assert_eq!(Uid::from_cookie_value(b"!!!!!!!!!!!!!!!!!!!!!!!!!!"), None);
        // nginx reads only the first 22 characters.
        assert!(Uid::from_cookie_value(b"fwAAAWsCOJyhwiHFAwMHAgXYZ").is_some());
        // ...and ignores the unused bits of the 22nd.
        assert!(Uid::from_cookie_value(b"fwAAAWsCOJyhwiHFAwMHAh").is_some());
        assert_eq!(Uid::parse_logged(b"sp=0100007F"), None);
        assert_eq!(
            Uid::parse_logged(b"sp=0100007F9C38026BC521C2A10207030G"),
            None
        );
        assert_eq!(Uid::parse_logged(b"-"), None);
    }
}
