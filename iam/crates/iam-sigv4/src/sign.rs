//! Signing, for `iam-client` and the tests' own requests: the `Authorization` header (with
//! `x-amz-date` and, for temporary credentials, `x-amz-security-token`), or a presigned URL's
//! query (`X-Amz-Algorithm`, `-Credential`, `-Date`, `-Expires`, `-SignedHeaders`,
//! `-Signature`). Every header present is signed except those signers leave out by convention
//! (`user-agent`, `expect`, `x-amzn-trace-id`).

use std::time::Duration;

use crate::canonical::{ALGORITHM, CanonicalRequest, Request, Scope};
use crate::encode::{PathEncoding, aws_uri_encode};
use crate::key::SigningKeyCache;
use crate::time::AmzDate;

/// Headers signers leave out (proxies change them); `authorization` is the signature itself.
pub const NEVER_SIGNED: [&str; 4] = ["authorization", "user-agent", "expect", "x-amzn-trace-id"];

/// An access key.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// For temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Signs requests for one region and service.
pub struct Signer {
    pub credentials: Credentials,
    pub region: String,
    pub service: String,
    pub path_encoding: PathEncoding,
    keys: SigningKeyCache,
}

impl Signer {
    pub fn new(credentials: Credentials, region: &str, service: &str) -> Signer {
        Signer {
            credentials,
            region: region.to_owned(),
            service: service.to_owned(),
            path_encoding: PathEncoding::Double,
            keys: SigningKeyCache::new(),
        }
    }

    fn scope(&self, at: AmzDate) -> Scope {
        Scope {
            date: at.date(),
            region: self.region.clone(),
            service: self.service.clone(),
        }
    }

    /// The headers to add to `request` (which must carry `host`) to sign it at `at`:
    /// `x-amz-date`, `x-amz-security-token` when the credentials have one, `authorization`.
    pub fn sign_headers(&self, request: &Request<'_>, at: AmzDate) -> Vec<(String, String)> {
        let mut added = vec![("x-amz-date".to_owned(), at.timestamp())];
        if let Some(token) = &self.credentials.session_token {
            added.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(n, _)| {
                !n.eq_ignore_ascii_case("x-amz-date")
                    && !n.eq_ignore_ascii_case("x-amz-security-token")
                    && !n.eq_ignore_ascii_case("authorization")
            })
            .cloned()
            .chain(added.iter().cloned())
            .collect();
        let with_date = Request {
            headers: &headers,
            ..*request
        };
        let signed: Vec<String> = with_date
            .header_names()
            .into_iter()
            .filter(|n| !NEVER_SIGNED.contains(&n.as_str()))
            .collect();
        let scope = self.scope(at);
        let (canonical, signature) = self.signature(&with_date, &signed, at, &scope);
        added.push((
            "authorization".to_owned(),
            format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
                self.credentials.access_key_id, canonical.signed_headers
            ),
        ));
        added
    }

    /// The query of a presigned URL for `request` (its own query first, then the signing
    /// parameters), valid for `expires` from `at`. The request's headers (`host` among them) are
    /// signed, and the payload's hash, as for every service but S3.
    pub fn presign_query(&self, request: &Request<'_>, at: AmzDate, expires: Duration) -> String {
        let scope = self.scope(at);
        let signed: Vec<String> = request
            .header_names()
            .into_iter()
            .filter(|n| !NEVER_SIGNED.contains(&n.as_str()))
            .collect();
        let mut params = vec![
            ("X-Amz-Algorithm", ALGORITHM.to_owned()),
            (
                "X-Amz-Credential",
                format!("{}/{scope}", self.credentials.access_key_id),
            ),
            ("X-Amz-Date", at.timestamp()),
            ("X-Amz-Expires", expires.as_secs().to_string()),
            ("X-Amz-SignedHeaders", signed.join(";")),
        ];
        if let Some(token) = &self.credentials.session_token {
            params.push(("X-Amz-Security-Token", token.clone()));
        }
        let mut query = request.query.to_owned();
        for (name, value) in &params {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(name);
            query.push('=');
            query.push_str(&aws_uri_encode(value, true));
        }
        let presigned = Request {
            query: &query,
            ..*request
        };
        let (_, signature) = self.signature(&presigned, &signed, at, &scope);
        format!("{query}&X-Amz-Signature={signature}")
    }

    /// The canonical request of `request` over the `signed` headers (with the payload's hash)
    /// and its signature at `at`.
    fn signature(
        &self,
        request: &Request<'_>,
        signed: &[String],
        at: AmzDate,
        scope: &Scope,
    ) -> (CanonicalRequest, String) {
        let canonical = CanonicalRequest::new(
            request,
            signed,
            &request.payload.hash(),
            self.path_encoding,
            None,
        );
        let signature = self
            .keys
            .get(
                &self.credentials.access_key_id,
                &self.credentials.secret_access_key,
                scope,
            )
            .sign(&canonical.string_to_sign(&at.timestamp(), scope));
        (canonical, signature)
    }
}
