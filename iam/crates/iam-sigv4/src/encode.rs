//! URI encoding as SigV4 specifies it, and the canonical URI and query built from it.
//!
//! `aws_uri_encode` is the one encoding function: unreserved characters (`A-Z a-z 0-9 - _ . ~`)
//! stay, every other byte of the UTF-8 text becomes `%XX` with uppercase hex, and `/` stays only
//! where the caller says (paths, not query parameters). The canonical URI normalizes the path
//! (RFC 3986 dot segments removed, consecutive slashes folded, as AWS requires; an empty path is
//! `/`) and encodes the on-wire path again for every service but S3 ([`PathEncoding::Double`]).
//! The canonical query decodes each parameter as sent, encodes it again, keeps repeated keys and
//! keys without values (`key=`), and sorts by encoded key, then value.

use std::fmt::Write as _;

/// How the path is encoded into the canonical URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEncoding {
    /// Every AWS service except S3: the path as sent (already percent-encoded) is encoded once
    /// more, so `%20` becomes `%2520`.
    Double,
    /// S3: the path is decoded, then encoded once.
    Single,
}

/// Whether `b` is an RFC 3986 unreserved character.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// SigV4's URI encoding of `text`: unreserved characters kept, `/` kept unless `encode_slash`,
/// every other byte percent-encoded with uppercase hex.
pub fn aws_uri_encode(text: &str, encode_slash: bool) -> String {
    aws_uri_encode_bytes(text.as_bytes(), encode_slash)
}

fn aws_uri_encode_bytes(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if unreserved(b) || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes (either case); anything else, a malformed escape included, is kept as
/// it is. `+` stays `+`: SigV4 never reads it as a space.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The path with dot segments removed and consecutive slashes folded (what AWS signers and
/// services do before encoding); `/` for an empty path.
pub fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical URI of a path as sent on the wire.
pub fn canonical_uri(wire_path: &str, encoding: PathEncoding) -> String {
    let normalized = normalize_path(wire_path);
    match encoding {
        PathEncoding::Double => aws_uri_encode(&normalized, false),
        PathEncoding::Single => aws_uri_encode_bytes(&percent_decode(&normalized), false),
    }
}

/// The query's parameters as sent, decoded: `a=1&b&a=2` is `[(a, 1), (b, ""), (a, 2)]`.
/// Empty pieces (`a=1&&b=2`) are no parameter.
pub fn query_params(wire_query: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    wire_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// The canonical query string of `wire_query`, leaving out the parameter named `skip` (the
/// signature itself, for a presigned URL).
pub fn canonical_query(wire_query: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query_params(wire_query)
        .into_iter()
        .filter(|(key, _)| skip.is_none_or(|s| key.as_slice() != s.as_bytes()))
        .map(|(key, value)| {
            (
                aws_uri_encode_bytes(&key, true),
                aws_uri_encode_bytes(&value, true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_stay_and_everything_else_is_uppercase_hex() {
        assert_eq!(
            aws_uri_encode("AZaz09-_.~", true),
            "AZaz09-_.~",
            "RFC 3986 unreserved"
        );
        assert_eq!(aws_uri_encode(" ", true), "%20", "a space is never +");
        assert_eq!(aws_uri_encode("+*=&%", true), "%2B%2A%3D%26%25");
        assert_eq!(
            aws_uri_encode("é", true),
            "%C3%A9",
            "UTF-8 bytes, uppercase"
        );
        assert_eq!(aws_uri_encode("a/b", false), "a/b", "slashes kept in paths");
        assert_eq!(
            aws_uri_encode("a/b", true),
            "a%2Fb",
            "and encoded in queries"
        );
        // Every byte outside the unreserved set, checked one by one.
        for b in 0u8..128 {
            let text = (b as char).to_string();
            let encoded = aws_uri_encode(&text, true);
            if unreserved(b) {
                assert_eq!(encoded, text);
            } else {
                assert_eq!(encoded, format!("%{b:02X}"));
            }
        }
    }

    #[test]
    fn paths_are_normalized_and_encoded_twice_except_for_s3() {
        assert_eq!(canonical_uri("", PathEncoding::Double), "/");
        assert_eq!(canonical_uri("/", PathEncoding::Double), "/");
        assert_eq!(canonical_uri("//", PathEncoding::Double), "/");
        assert_eq!(canonical_uri("/a/./b/../c/", PathEncoding::Double), "/a/c/");
        assert_eq!(canonical_uri("/a//b", PathEncoding::Double), "/a/b");
        assert_eq!(canonical_uri("/a%20b", PathEncoding::Double), "/a%2520b");
        assert_eq!(canonical_uri("/a%20b", PathEncoding::Single), "/a%20b");
        assert_eq!(canonical_uri("/%C3%A9", PathEncoding::Single), "/%C3%A9");
    }

    #[test]
    fn queries_keep_repeated_keys_and_empty_values_sorted_by_key_then_value() {
        assert_eq!(canonical_query("", None), "");
        assert_eq!(canonical_query("b=2&a=2&a=1&c", None), "a=1&a=2&b=2&c=");
        assert_eq!(canonical_query("k=a%20b&k=a+b", None), "k=a%20b&k=a%2Bb");
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&x=%2f", Some("X-Amz-Signature")),
            "x=%2F"
        );
        // Sorted by the encoded key: "%" sorts before letters.
        assert_eq!(
            canonical_query("b=1&%C3%A9=1&A=1", None),
            "%C3%A9=1&A=1&b=1"
        );
        assert_eq!(
            percent_decode("%zz%4"),
            b"%zz%4",
            "malformed escapes are kept"
        );
    }
}
