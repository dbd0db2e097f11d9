//! The few parts of an absolute URL that the enrichments read, split without allocating.

use memchr::{memchr, memchr2, memrchr};

/// An absolute URL `scheme://[userinfo@]host[:port][/path][?query][#fragment]`, split.
///
/// Only what the enrichments need: the host (compare it with [`UrlParts::host_is`] or
/// [`UrlParts::host_lowercase`]; hosts are case-insensitive), the path and the query (without
/// `?`). Nothing is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UrlParts<'a> {
    /// The host as written, without brackets for an IPv6 literal; never empty.
    pub host: &'a str,
    /// The path, `""` when absent.
    pub path: &'a str,
    /// The query without its `?`, if there is one.
    pub query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    /// Splits `url`; `None` when it has no `scheme://` or no host.
    ///
    /// Every delimiter is ASCII, so the text is searched as bytes (with `memchr` past the
    /// scheme, since page URLs and referers run to a hundred bytes or more) and each part sliced
    /// where its delimiter is: no substring searcher to set up for `://`, no character decoding
    /// for a set of delimiters.
    pub fn parse(url: &'a str) -> Option<UrlParts<'a>> {
        let url = url.trim();
        // The first `://` ends the scheme exactly when the scheme characters run up to it: a
        // `:` is not one of them.
        let scheme = url
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
            .unwrap_or(url.len());
        if scheme == 0 {
            return None;
        }
        let rest = url[scheme..].strip_prefix("://")?;
        let rest = before(rest, memchr(b'#', rest.as_bytes()));
        let authority = before(rest, memchr2(b'/', b'?', rest.as_bytes()));
        let after = &rest[authority.len()..];
        let path = before(after, memchr(b'?', after.as_bytes()));
        let query = after.get(path.len() + 1..);
        let host_port = match memrchr(b'@', authority.as_bytes()) {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        let host = match host_port.strip_prefix('[') {
            Some(bracketed) => before(bracketed, memchr(b']', bracketed.as_bytes())),
            None => before(host_port, memchr(b':', host_port.as_bytes())),
        };
        let host = host.trim_end_matches('.');
        if host.is_empty() {
            return None;
        }
        Some(UrlParts { host, path, query })
    }

    /// The host in lower case.
    pub fn host_lowercase(&self) -> String {
        self.host.to_ascii_lowercase()
    }

    /// Whether the host is `other`, ignoring ASCII case.
    pub fn host_is(&self, other: &str) -> bool {
        self.host.eq_ignore_ascii_case(other)
    }
}

/// `text` up to `end`, the position of an ASCII delimiter in it, or all of it.
fn before(text: &str, end: Option<usize>) -> &str {
    &text[..end.unwrap_or(text.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_parts() {
        let url = UrlParts::parse("https://user:pw@WWW.Example.com:8080/a/b?x=1&y=2#frag").unwrap();
        assert_eq!(url.host, "WWW.Example.com");
        assert_eq!(url.host_lowercase(), "www.example.com");
        assert_eq!(url.path, "/a/b");
        assert_eq!(url.query, Some("x=1&y=2"));
        assert!(url.host_is("www.example.COM"));
    }

    #[test]
    fn handles_missing_parts_and_ipv6() {
        let url = UrlParts::parse("http://example.com?q=1").unwrap();
        assert_eq!(
            (url.host, url.path, url.query),
            ("example.com", "", Some("q=1"))
        );
        let url = UrlParts::parse("http://[2001:db8::1]:80/p").unwrap();
        assert_eq!(url.host, "2001:db8::1");
        let url = UrlParts::parse("android-app://com.google.android.gm/").unwrap();
        assert_eq!(url.host, "com.google.android.gm");
    }

    #[test]
    fn refuses_what_is_not_an_absolute_url() {
        for text in [
            "",
            "example.com/path",
            "/relative?x",
            "http://",
            "http:///path",
            "://x",
        ] {
            assert_eq!(UrlParts::parse(text), None, "{text:?}");
        }
    }

    /// The splitting as first written, with the standard library's searches.
    fn reference(url: &str) -> Option<UrlParts<'_>> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(authority_end);
        let (path, query) = match after.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (after, None),
        };
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let host = if let Some(bracketed) = host_port.strip_prefix('[') {
            bracketed.split(']').next().unwrap_or_default()
        } else {
            host_port.split(':').next().unwrap_or_default()
        };
        let host = host.trim_end_matches('.');
        if host.is_empty() {
            return None;
        }
        Some(UrlParts { host, path, query })
    }

    proptest::proptest! {
        #[test]
        fn splits_as_the_reference_does(url in "( ?[aA1+.:-]{0,3}(://)?[a:/?#@.\\[\\]é1 -]{0,8}){1,3}") {
            proptest::prop_assert_eq!(UrlParts::parse(&url), reference(&url));
        }
    }
}
