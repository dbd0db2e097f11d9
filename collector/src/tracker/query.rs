//! Tracker parameters and the tp1 query-string grammar.

use std::borrow::Cow;
use std::cell::OnceCell;

use memchr::memchr2;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::iglu::JsonType;
use crate::swar;

/// One `key=value` pair of a tracker hit.
///
/// A query-string value with escapes (`%XX`, `+`) is decoded when it is first asked for
/// ([`Param::value`]): the JSON payloads (`co`, `ue_pr`), the longest values of a hit, are read
/// straight from their [form-encoded](Param::form_encoded) text and need no decoded copy unless
/// an enrichment or a bad row wants it.
#[derive(Debug, Clone)]
pub struct Param<'a> {
    /// The decoded key.
    pub key: Cow<'a, str>,
    /// The value.
    value: Text<'a>,
    /// The key was invalid UTF-8 after percent-decoding.
    invalid_key: bool,
    /// tp2 only: the value was this JSON type instead of a string. Numbers and booleans are
    /// stringified and accepted; `null`, arrays and objects are kept as their JSON text and
    /// reported as violations.
    pub json_type: Option<JsonType>,
}

/// The text of a value, with whether it was invalid UTF-8 once decoded.
#[derive(Debug, Clone)]
enum Text<'a> {
    /// Decoded when the parameter was made.
    Decoded(Cow<'a, str>, bool),
    /// Form-encoded, with escapes (`%XX`, `+`): decoded when first asked for.
    Encoded(&'a [u8], OnceCell<(String, bool)>),
}

impl<'a> Param<'a> {
    /// A clean string parameter (valid UTF-8, a string in JSON).
    pub fn new(key: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) -> Self {
        Param {
            key: key.into(),
            value: Text::Decoded(value.into(), false),
            invalid_key: false,
            json_type: None,
        }
    }

    /// The decoded value; the empty string for a bare key (`&key&`).
    pub fn value(&self) -> &str {
        match &self.value {
            Text::Decoded(text, _) => text,
            Text::Encoded(encoded, decoded) => {
                &decoded.get_or_init(|| form_decode_escaped(encoded)).0
            }
        }
    }

    /// Whether the value is empty (known without decoding it: escapes decode to something).
    pub fn is_empty(&self) -> bool {
        match &self.value {
            Text::Decoded(text, _) => text.is_empty(),
            Text::Encoded(..) => false,
        }
    }

    /// The key or the value was not valid UTF-8 after percent-decoding: each invalid sequence was
    /// replaced with U+FFFD. Decoding reports it as a warning.
    pub fn invalid_utf8(&self) -> bool {
        self.invalid_key
            || match &self.value {
                Text::Decoded(_, invalid) => *invalid,
                Text::Encoded(encoded, decoded) => {
                    decoded.get_or_init(|| form_decode_escaped(encoded)).1
                }
            }
    }

    /// The value's text when it is at hand without decoding (it needed none, or was asked for
    /// already), else its [form-encoded](Param::form_encoded) text. For a reader that can decode
    /// on its way ([`form_decode_into`]) and so needs no decoded copy of a long value.
    pub fn value_or_encoded(&self) -> Result<&str, &'a [u8]> {
        match &self.value {
            Text::Decoded(text, _) => Ok(text),
            Text::Encoded(encoded, decoded) => {
                decoded.get().map(|(text, _)| &**text).ok_or(encoded)
            }
        }
    }

    /// The value as it was sent in a query string, `+` and `%XX` still in it, when it holds any
    /// (`None` for a value that needed no decoding, and for tp2). Its decoded text is
    /// [`value`](Param::value).
    pub fn form_encoded(&self) -> Option<&'a [u8]> {
        match self.value {
            Text::Decoded(..) => None,
            Text::Encoded(encoded, _) => Some(encoded),
        }
    }

    /// The same parameter, owning its text (decoded).
    pub fn into_owned(self) -> Param<'static> {
        let value = Text::Decoded(Cow::Owned(self.value().to_owned()), self.invalid_utf8());
        Param {
            key: Cow::Owned(self.key.into_owned()),
            value,
            invalid_key: self.invalid_key,
            json_type: self.json_type,
        }
    }
}

/// Parameters are equal when their keys, decoded values, flags and JSON types are, whether the
/// values were decoded yet or not.
impl PartialEq for Param<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.value() == other.value()
            && self.invalid_utf8() == other.invalid_utf8()
            && self.json_type == other.json_type
    }
}

impl Eq for Param<'_> {}

/// The parameters of one tracker event, in the order they were sent, keys unique.
///
/// The first occurrence of a key wins; later occurrences are kept aside in
/// [`duplicates`](Params::duplicates) so the caller can report them. Serializes as a JSON object
/// of key → value (duplicates left out), the shape bad rows and tests want.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params<'a> {
    params: Vec<Param<'a>>,
    duplicates: Vec<Param<'a>>,
}

impl<'a> Params<'a> {
    /// No parameters.
    pub fn new() -> Self {
        Params::default()
    }

    /// Adds a parameter, or records it as a duplicate when its key is already present.
    ///
    /// Linear in the number of parameters; building from an iterator (`collect`) dedupes in
    /// O(n log n) and is what the parsers use.
    pub fn push(&mut self, param: Param<'a>) {
        if self.params.iter().any(|p| p.key == param.key) {
            self.duplicates.push(param);
        } else {
            self.params.push(param);
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.param(key).map(Param::value)
    }

    /// The parameter `key`, with its flags, if present.
    pub fn param(&self, key: &str) -> Option<&Param<'a>> {
        self.params.iter().find(|p| p.key == key)
    }

    /// The parameters in the order they were sent (first occurrences only).
    pub fn iter(&self) -> std::slice::Iter<'_, Param<'a>> {
        self.params.iter()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// No parameters at all.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Later occurrences of keys already present, in the order they were sent.
    pub fn duplicates(&self) -> &[Param<'a>] {
        &self.duplicates
    }

    /// The same parameters, owning their text.
    pub fn into_owned(self) -> Params<'static> {
        Params {
            params: self.params.into_iter().map(Param::into_owned).collect(),
            duplicates: self.duplicates.into_iter().map(Param::into_owned).collect(),
        }
    }
}

impl<'a> FromIterator<Param<'a>> for Params<'a> {
    fn from_iter<I: IntoIterator<Item = Param<'a>>>(iter: I) -> Self {
        Params::from_vec(iter.into_iter().collect())
    }
}

impl<'a> Params<'a> {
    /// The parameters of `all`, in order, later occurrences of a key set aside. Without
    /// duplicates (the usual case) `all` is kept as it is.
    fn from_vec(all: Vec<Param<'a>>) -> Self {
        let duplicate = find_duplicates(&all);
        if duplicate.is_empty() {
            return Params {
                params: all,
                duplicates: Vec::new(),
            };
        }
        let mut params = Params {
            params: Vec::with_capacity(all.len() - duplicate.len()),
            duplicates: Vec::with_capacity(duplicate.len()),
        };
        let mut duplicate = duplicate.into_iter().peekable();
        for (i, param) in all.into_iter().enumerate() {
            if duplicate.next_if_eq(&i).is_some() {
                params.duplicates.push(param);
            } else {
                params.params.push(param);
            }
        }
        params
    }
}

/// The indices of every occurrence of a key after its first, ascending.
fn find_duplicates(all: &[Param<'_>]) -> Vec<usize> {
    let mut duplicate = Vec::new();
    if all.len() <= 64 {
        // A tracker hit has a few dozen keys: an open-addressing table of their indices, keyed
        // by a cheap fingerprint, compares keys only when the fingerprints agree.
        let mut prints = [0u64; 64];
        let mut slots = [0u8; 128]; // index + 1 of a first occurrence; 0 = empty
        for (i, param) in all.iter().enumerate() {
            prints[i] = fingerprint(&param.key);
            let mut slot = (prints[i].wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize;
            loop {
                match usize::from(slots[slot]) {
                    0 => {
                        slots[slot] = i as u8 + 1;
                        break;
                    }
                    j if prints[j - 1] == prints[i] && all[j - 1].key == param.key => {
                        duplicate.push(i);
                        break;
                    }
                    _ => slot = (slot + 1) % slots.len(),
                }
            }
        }
    } else {
        // Hostile bodies may carry many thousands of keys: a stable sort of indices by key finds
        // every later occurrence in O(n log n).
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.sort_by(|&a, &b| all[a].key.cmp(&all[b].key).then(a.cmp(&b)));
        for pair in order.windows(2) {
            if all[pair[0]].key == all[pair[1]].key {
                duplicate.push(pair[1]);
            }
        }
        duplicate.sort_unstable();
    }
    duplicate
}

/// The length and first seven bytes of a key, packed.
fn fingerprint(key: &str) -> u64 {
    key.bytes()
        .take(7)
        .enumerate()
        .fold(key.len() as u64 & 0xff, |acc, (i, b)| {
            acc | u64::from(b) << (8 * (i + 1))
        })
}

impl<'p, 'a> IntoIterator for &'p Params<'a> {
    type Item = &'p Param<'a>;
    type IntoIter = std::slice::Iter<'p, Param<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Params<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.params.len()))?;
        for param in &self.params {
            map.serialize_entry(&*param.key, param.value())?;
        }
        map.end()
    }
}

/// Parses a tp1 query string (the part after `?`, without the `?`).
///
/// Grammar: pairs separated by `&`; in each pair the first `=` separates the key from the value
/// (a pair without `=` is a key with the empty value); a pair with neither key nor value is
/// skipped. Keys and values are form-decoded: `+` is a space, `%XX` is a byte, a `%` without two
/// hex digits after it is kept literally. Text that needed no decoding is borrowed from `query`.
/// Bytes that do not form UTF-8 are replaced with U+FFFD and the parameter is flagged
/// ([`Param::invalid_utf8`]). Never fails: any byte string yields some parameters.
pub fn parse_query(query: &[u8]) -> Params<'_> {
    // Validated once as a whole, the text of every key and value that needs no decoding is a
    // slice of it (`&` and `=` are ASCII, so the slices fall on character boundaries).
    let text = std::str::from_utf8(query).ok();
    let mut all = Vec::with_capacity(memchr::memchr_iter(b'&', query).count() + 1);
    let mut escapes = Escapes::new(query);
    let mut start = 0;
    for end in memchr::memchr_iter(b'&', query).chain([query.len()]) {
        let (pair, pair_text) = (&query[start..end], text.map(|t| &t[start..end]));
        // Keys are a few bytes long: a plain scan finds the `=` sooner than a search call.
        let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
        let value_at = (eq + 1).min(pair.len());
        let (key, value) = (&pair[..eq], &pair[value_at..]);
        let (key_escaped, value_escaped) = (
            escapes.within(start, start + eq),
            escapes.within(start + value_at, end),
        );
        start = end + 1;
        if key.is_empty() && value.is_empty() {
            continue;
        }
        let (key, bad_key) = form_decode(key, key_escaped, pair_text.map(|t| &t[..eq]));
        let value = if value_escaped {
            Text::Encoded(value, OnceCell::new())
        } else {
            let (value, invalid) = form_decode(value, false, pair_text.map(|t| &t[value_at..]));
            Text::Decoded(value, invalid)
        };
        all.push(Param {
            key,
            value,
            invalid_key: bad_key,
            json_type: None,
        });
    }
    Params::from_vec(all)
}

/// Where the `%` and `+` of a query string are, found by one search per run of pairs without
/// any rather than one per key and per value (most are a few bytes long, and a search has a
/// fixed cost).
struct Escapes<'q> {
    query: &'q [u8],
    /// The first `%` or `+` at or after the last position asked about (`query.len()` if none).
    next: usize,
}

impl<'q> Escapes<'q> {
    /// The escapes of `query`, the first one found.
    fn new(query: &'q [u8]) -> Self {
        let next = memchr2(b'%', b'+', query).unwrap_or(query.len());
        Escapes { query, next }
    }

    /// Whether `query[from..to]` holds a `%` or `+`; `from` never decreases between calls.
    fn within(&mut self, from: usize, to: usize) -> bool {
        if self.next < from {
            let rest = self.query.get(from..).unwrap_or_default();
            self.next = memchr2(b'%', b'+', rest).map_or(self.query.len(), |i| from + i);
        }
        self.next < to
    }
}

/// Form-decodes one key or value (`escaped` when it holds a `%` or `+`; `text` is `raw` when
/// it is known to be UTF-8); returns the text and whether it was invalid UTF-8.
fn form_decode<'a>(raw: &'a [u8], escaped: bool, text: Option<&'a str>) -> (Cow<'a, str>, bool) {
    if !escaped {
        return match text.map_or_else(|| std::str::from_utf8(raw), Ok) {
            Ok(text) => (Cow::Borrowed(text), false),
            Err(_) => (String::from_utf8_lossy(raw), true),
        };
    }
    let (text, invalid) = form_decode_escaped(raw);
    (Cow::Owned(text), invalid)
}

/// Form-decodes text that holds a `%` or `+`; returns the text and whether it was invalid UTF-8.
fn form_decode_escaped(raw: &[u8]) -> (String, bool) {
    let mut bytes = vec![0; raw.len()];
    let len = decode_into(raw, &mut bytes);
    bytes.truncate(len);
    match String::from_utf8(bytes) {
        Ok(text) => (text, false),
        Err(err) => (String::from_utf8_lossy(err.as_bytes()).into_owned(), true),
    }
}

/// Form-decodes `raw` (`+` is a space, `%XX` a byte, a `%` without two hex digits after it kept
/// literally) into the start of `out`, and returns the decoded length. Decoding never grows the
/// text, so `out` needs `raw.len()` bytes; it is filled with the decoded bytes as they are, not
/// checked as UTF-8 (what [`Param::value`] then does to invalid sequences is up to the caller).
///
/// # Panics
///
/// When `out` is shorter than `raw`.
pub fn form_decode_into(raw: &[u8], out: &mut [u8]) -> usize {
    decode_into(raw, out)
}

/// [`form_decode_into`], inlined into the parser's own decoding ([`form_decode_escaped`]), which
/// runs for most escaped values of every hit.
#[inline(always)]
fn decode_into(raw: &[u8], out: &mut [u8]) -> usize {
    // Values that need decoding are often dense with escapes (a percent-encoded JSON `co` is
    // about one escape in three bytes): one pass over the bytes, with the hex digits read from a
    // table. The text between escapes is copied eight bytes at a time: a word is stored whole and
    // the write position advanced only to its first `%` or `+`, which the next store overwrites.
    let out = &mut out[..raw.len()];
    let mut len = 0;
    let mut i = 0;
    loop {
        if let Some(word) = raw.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            // `len` never passes `i`, so the eight bytes fit in `out` as they do in `raw`.
            out[len..len + 8].copy_from_slice(&word);
            let word = u64::from_le_bytes(word);
            let run = swar::first(swar::equal(word, b'%') | swar::equal(word, b'+'));
            (i, len) = (i + run, len + run);
            if run == 8 {
                continue;
            }
        }
        let Some(&b) = raw.get(i) else { break };
        i += 1;
        out[len] = match b {
            b'+' => b' ',
            b'%' => match raw.get(i..i + 2).and_then(|d| crate::hex::pair(d[0], d[1])) {
                Some(decoded) => {
                    i += 2;
                    decoded
                }
                None => b'%',
            },
            b => b,
        };
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs<'a>(params: &'a Params<'_>) -> Vec<(&'a str, &'a str)> {
        params.iter().map(|p| (&*p.key, p.value())).collect()
    }

    #[test]
    fn splits_pairs_on_ampersand_and_first_equals() {
        let params = parse_query(b"e=pv&url=a=b=c&bare&&=&tv=js-3.0.0");
        assert_eq!(
            pairs(&params),
            [
                ("e", "pv"),
                ("url", "a=b=c"),
                ("bare", ""),
                ("tv", "js-3.0.0")
            ]
        );
        assert!(params.duplicates().is_empty());
    }

    #[test]
    fn empty_key_with_value_is_kept() {
        let params = parse_query(b"=orphan");
        assert_eq!(pairs(&params), [("", "orphan")]);
    }

    #[test]
    fn borrows_when_nothing_to_decode() {
        let params = parse_query(b"page=Home&url=https%3A%2F%2Fexample.com%2F");
        let page = params.param("page").unwrap();
        assert!(matches!(
            page.value,
            Text::Decoded(Cow::Borrowed("Home"), false)
        ));
        assert_eq!(page.form_encoded(), None);
        let url = params.param("url").unwrap();
        assert_eq!(
            url.form_encoded(),
            Some(&b"https%3A%2F%2Fexample.com%2F"[..])
        );
        let Text::Encoded(_, decoded) = &url.value else {
            panic!("{url:?}")
        };
        assert!(decoded.get().is_none(), "decoded only when asked for");
        assert_eq!(url.value(), "https://example.com/");
        assert!(decoded.get().is_some());
    }

    #[test]
    fn decodes_plus_and_escapes_including_separators() {
        let params = parse_query(b"se_la=a+b%2Bc%26d%3De%09tab%22q%22&k%65y=%C3%A9t%C3%A9");
        assert_eq!(params.get("se_la"), Some("a b+c&d=e\ttab\"q\""));
        assert_eq!(params.get("key"), Some("été"));
    }

    #[test]
    fn decodes_into_a_buffer() {
        let mut out = [0xaa; 24];
        let len = form_decode_into(b"a+b%2Fc%zz%C3%A9%4", &mut out);
        assert_eq!(&out[..len], "a b/c%zz\u{e9}%4".as_bytes());
        assert_eq!(form_decode_into(b"", &mut []), 0);
    }

    #[test]
    fn value_or_encoded_gives_what_is_at_hand() {
        let params = parse_query(b"page=Home&url=https%3A%2F%2Fa%2F");
        assert_eq!(params.param("page").unwrap().value_or_encoded(), Ok("Home"));
        let url = params.param("url").unwrap();
        assert_eq!(url.value_or_encoded(), Err(&b"https%3A%2F%2Fa%2F"[..]));
        assert_eq!(url.value(), "https://a/");
        assert_eq!(url.value_or_encoded(), Ok("https://a/"));
    }

    #[test]
    fn invalid_escapes_are_kept_literally() {
        let params = parse_query(b"a=%zz&b=100%&c=%4&d=%u00e9&e=%%41");
        assert_eq!(
            pairs(&params),
            [
                ("a", "%zz"),
                ("b", "100%"),
                ("c", "%4"),
                ("d", "%u00e9"),
                ("e", "%A")
            ]
        );
        assert!(params.iter().all(|p| !p.invalid_utf8()));
    }

    #[test]
    fn invalid_utf8_is_replaced_and_flagged() {
        let params = parse_query(b"page=caf%E9&raw=\xff\xfeok&fine=%C3%A9");
        let page = params.param("page").unwrap();
        assert_eq!(page.value(), "caf\u{fffd}");
        assert!(page.invalid_utf8());
        let raw = params.param("raw").unwrap();
        assert_eq!(raw.value(), "\u{fffd}\u{fffd}ok");
        assert!(raw.invalid_utf8());
        assert!(!params.param("fine").unwrap().invalid_utf8());
    }

    #[test]
    fn first_duplicate_wins_and_later_ones_are_recorded() {
        let params = parse_query(b"e=pv&aid=site&e=se&x=1&e=ue");
        assert_eq!(pairs(&params), [("e", "pv"), ("aid", "site"), ("x", "1")]);
        let dups: Vec<_> = params.duplicates().iter().map(|p| p.value()).collect();
        assert_eq!(dups, ["se", "ue"]);
        let mut pushed = Params::new();
        pushed.push(Param::new("e", "pv"));
        pushed.push(Param::new("e", "se"));
        assert_eq!(pushed.get("e"), Some("pv"));
        assert_eq!(pushed.duplicates().len(), 1);
    }

    #[test]
    fn many_keys_are_deduped_too() {
        let mut query: Vec<String> = (0..200).map(|i| format!("k{i}={i}")).collect();
        query.push("k5=again".to_owned());
        query.insert(0, "k199=first".to_owned());
        let query = query.join("&");
        let params = parse_query(query.as_bytes());
        assert_eq!(params.len(), 200);
        assert_eq!(params.get("k199"), Some("first"));
        assert_eq!(params.get("k5"), Some("5"));
        let dups: Vec<_> = params.duplicates().iter().map(|p| p.value()).collect();
        assert_eq!(dups, ["199", "again"]);
    }

    #[test]
    fn serializes_as_an_object() {
        let params = parse_query(b"e=pv&p=web&e=se");
        assert_eq!(
            serde_json::to_string(&params).unwrap(),
            r#"{"e":"pv","p":"web"}"#
        );
    }

    /// Percent-encodes every byte outside RFC 3986's unreserved set.
    fn encode(text: &str) -> String {
        let mut out = String::new();
        for &b in text.as_bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn encoded_params_parse_back_identically(
            entries in proptest::collection::btree_map(".{1,12}", ".{0,40}", 0..12),
        ) {
            let query = entries
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let params = parse_query(query.as_bytes());
            let got: Vec<(String, String)> = params
                .iter()
                .map(|p| (p.key.to_string(), p.value().to_string()))
                .collect();
            let want: Vec<(String, String)> = entries.into_iter().collect();
            prop_assert_eq!(got, want);
            prop_assert!(params.iter().all(|p| !p.invalid_utf8()));
            prop_assert!(params.duplicates().is_empty());
        }

        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let params = parse_query(&bytes);
            let valid = std::str::from_utf8(&bytes).is_ok() && !bytes.contains(&b'%');
            if valid {
                prop_assert!(params.iter().all(|p| !p.invalid_utf8()));
            }
        }
    }
}
