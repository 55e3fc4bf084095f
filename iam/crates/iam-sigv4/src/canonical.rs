//! The canonical request and the string to sign, from a request's parts as they travelled.
//!
//! Canonical request (one line each, as AWS lists them): the method; the canonical URI; the
//! canonical query; one `name:value` line per signed header (names lowercased and sorted, values
//! trimmed with inner runs of spaces folded to one space, repeated headers joined with
//! commas), then an empty line; the signed header names joined with `;`; the payload hash. The
//! string to sign is the algorithm, the request time, the credential scope and the canonical
//! request's SHA-256, one per line.

use sha2::{Digest, Sha256};

use crate::encode::{PathEncoding, canonical_query, canonical_uri};

/// The only algorithm there is.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The request's body, or its SHA-256 in hex when only that travelled (the internal
/// `Authenticate` call, `x-amz-content-sha256`), or `UNSIGNED-PAYLOAD`.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Bytes(&'a [u8]),
    Hash(&'a str),
}

impl Payload<'_> {
    /// The payload hash of the canonical request.
    pub fn hash(&self) -> String {
        match self {
            Payload::Bytes(bytes) => sha256_hex(bytes),
            Payload::Hash(hash) => (*hash).to_owned(),
        }
    }
}

/// A request's parts as they travelled.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as sent, still percent-encoded, without the query (`/`, `/a%20b`, or empty).
    pub path: &'a str,
    /// The query as sent after `?`, still percent-encoded (empty when there is none).
    pub query: &'a str,
    /// Every header as received, in order; names in any case; a name may repeat. HTTP/2's
    /// `:authority` belongs here as `host`.
    pub headers: &'a [(String, String)],
    pub payload: Payload<'a>,
}

impl<'a> Request<'a> {
    /// Every value of header `name` (any case), in order.
    pub fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// The lowercased names of the headers present, sorted, once each.
    pub fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// A credential scope: `20150830/us-east-1/iam/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// The canonical request and what it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    pub text: String,
    /// The signed header names, lowercased and sorted, joined with `;`.
    pub signed_headers: String,
}

impl CanonicalRequest {
    /// Builds the canonical request of `request` over `signed` (lowercase header names, in any
    /// order), with `payload_hash`, leaving the query parameter `skip_query` out (a presigned
    /// URL's own signature).
    pub fn new(
        request: &Request<'_>,
        signed: &[String],
        payload_hash: &str,
        encoding: PathEncoding,
        skip_query: Option<&str>,
    ) -> CanonicalRequest {
        let mut names: Vec<String> = signed.iter().map(|n| n.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        let mut text = String::new();
        text.push_str(request.method);
        text.push('\n');
        text.push_str(&canonical_uri(request.path, encoding));
        text.push('\n');
        text.push_str(&canonical_query(request.query, skip_query));
        text.push('\n');
        for name in &names {
            let values: Vec<String> = request.header_values(name).map(trim_all).collect();
            text.push_str(name);
            text.push(':');
            text.push_str(&values.join(","));
            text.push('\n');
        }
        text.push('\n');
        let signed_headers = names.join(";");
        text.push_str(&signed_headers);
        text.push('\n');
        text.push_str(payload_hash);
        CanonicalRequest {
            text,
            signed_headers,
        }
    }

    /// The string to sign for this request made at `timestamp` (`YYYYMMDD'T'HHMMSS'Z'`).
    pub fn string_to_sign(&self, timestamp: &str, scope: &Scope) -> String {
        format!(
            "{ALGORITHM}\n{timestamp}\n{scope}\n{}",
            sha256_hex(self.text.as_bytes())
        )
    }
}

/// A header value as SigV4 signs it: trimmed, inner runs of spaces folded to one space. Only
/// spaces fold inside a value, as AWS's own SDK for Rust does; botocore folds tabs too, so a
/// value with inner tabs is the one place where AWS's signers disagree.
fn trim_all(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.trim_matches([' ', '\t']).chars() {
        if c != ' ' || !out.ends_with(' ') {
            out.push(c);
        }
    }
    out
}

/// SHA-256 in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn headers_are_lowercased_sorted_trimmed_folded_and_repeats_joined() {
        let h = headers(&[
            ("Host", "example.amazonaws.com"),
            ("My-Header1", "  a   b   c  "),
            ("X-Amz-Date", "20150830T123600Z"),
            ("my-header2", "\"a   b   c\""),
            ("My-Header1", "second"),
        ]);
        let request = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            payload: Payload::Bytes(b""),
        };
        let signed: Vec<String> = ["x-amz-date", "my-header1", "host", "my-header2"]
            .map(String::from)
            .to_vec();
        let c = CanonicalRequest::new(
            &request,
            &signed,
            &request.payload.hash(),
            PathEncoding::Double,
            None,
        );
        assert_eq!(
            c.text,
            "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:a b c,second\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
