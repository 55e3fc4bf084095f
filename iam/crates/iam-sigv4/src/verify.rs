//! Verifying a signed request, as an AWS service does, failing closed at the first problem with
//! AWS's error code for it.
//!
//! In order: find the signature (the `Authorization` header, else a presigned query); parse it;
//! check the credential scope (region, service, `aws4_request`) and that its date is the request
//! date; check the time (within [`MAX_CLOCK_SKEW`] of now for a header, not expired for a
//! presigned URL, `X-Amz-Expires` at most [`MAX_PRESIGN_EXPIRES_S`]); check the signed headers
//! (`host` and every `x-amz-*` header present must be signed, and each must be there); settle
//! the payload hash (`x-amz-content-sha256` must match the body; `UNSIGNED-PAYLOAD` only where
//! the verifier allows it, as S3 does, and then also for presigned URLs; every other service
//! signs a presigned URL's body hash too); find the secret; then compare the signature
//! with the one computed here in constant time. A mismatch returns the canonical request and
//! string to sign computed here, so the client's author can diff them against their own.

use std::time::{Duration, SystemTime};

use crate::UNSIGNED_PAYLOAD;
#[cfg(test)]
use crate::canonical::Payload;
use crate::canonical::{ALGORITHM, CanonicalRequest, Request, Scope};
use crate::encode::{PathEncoding, query_params};
use crate::key::SigningKeyCache;
use crate::time::AmzDate;

/// How far a request's time may be from the server's, either way (AWS uses 15 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The longest a presigned URL may be valid: 7 days, as AWS allows.
pub const MAX_PRESIGN_EXPIRES_S: u64 = 7 * 24 * 3600;

/// Where the verifier finds an access key's secret.
pub trait SecretLookup {
    /// The secret access key of `access_key_id`; `None` when there is no such (active) key.
    fn secret(&self, access_key_id: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> SecretLookup for F {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        self(access_key_id)
    }
}

/// Who signed a request that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub access_key_id: String,
    pub scope: Scope,
    /// The signed header names, `;`-joined.
    pub signed_headers: String,
    pub presigned: bool,
    pub session_token: Option<String>,
}

/// Why a request did not verify, as AWS's error codes name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("MissingAuthenticationToken: {0}")]
    Missing(String),
    #[error("IncompleteSignature: {0}")]
    Incomplete(String),
    #[error("InvalidClientTokenId: the access key id {0:?} does not exist")]
    UnknownAccessKey(String),
    #[error("SignatureDoesNotMatch: {0}")]
    BadScope(String),
    #[error("RequestExpired: {0}")]
    Expired(String),
    #[error("XAmzContentSHA256Mismatch: {0}")]
    PayloadHash(String),
    #[error(
        "SignatureDoesNotMatch: the request signature we calculated does not match the signature you provided; \
         the canonical request was\n{canonical_request}\n\nand the string to sign\n{string_to_sign}"
    )]
    Mismatch {
        canonical_request: String,
        string_to_sign: String,
    },
}

impl VerifyError {
    /// AWS's error code.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Missing(_) => "MissingAuthenticationToken",
            VerifyError::Incomplete(_) => "IncompleteSignature",
            VerifyError::UnknownAccessKey(_) => "InvalidClientTokenId",
            VerifyError::BadScope(_) | VerifyError::Mismatch { .. } => "SignatureDoesNotMatch",
            VerifyError::Expired(_) => "RequestExpired",
            VerifyError::PayloadHash(_) => "XAmzContentSHA256Mismatch",
        }
    }

    /// What went wrong, without the code in front (AWS's `<Message>`).
    pub fn message(&self) -> String {
        match self {
            VerifyError::Missing(m)
            | VerifyError::Incomplete(m)
            | VerifyError::BadScope(m)
            | VerifyError::Expired(m)
            | VerifyError::PayloadHash(m) => m.clone(),
            VerifyError::UnknownAccessKey(id) => {
                format!(
                    "The security token included in the request is invalid: access key {id:?} does not exist"
                )
            }
            VerifyError::Mismatch { .. } => {
                "The request signature we calculated does not match the signature you provided"
                    .into()
            }
        }
    }

    /// The HTTP status AWS answers it with.
    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::Missing(_) | VerifyError::Incomplete(_) | VerifyError::PayloadHash(_) => {
                400
            }
            VerifyError::Expired(_) => 400,
            _ => 403,
        }
    }
}

/// Verifies requests addressed to one region and a set of services.
pub struct Verifier {
    pub region: String,
    /// Services a credential may be scoped to (`iam`, `sts`).
    pub services: Vec<String>,
    pub path_encoding: PathEncoding,
    /// Whether a request may be signed with `UNSIGNED-PAYLOAD` (`x-amz-content-sha256`, and
    /// presigned URLs): S3 allows it; IAM and STS do not.
    pub allow_unsigned_payload: bool,
    pub max_clock_skew: Duration,
    keys: SigningKeyCache,
}

/// The parts of a signature, from either place.
struct Signature<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
    timestamp: String,
    presigned: Option<u64>,
}

impl Verifier {
    pub fn new(region: &str, services: &[&str]) -> Verifier {
        Verifier {
            region: region.to_owned(),
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            path_encoding: PathEncoding::Double,
            allow_unsigned_payload: false,
            max_clock_skew: MAX_CLOCK_SKEW,
            keys: SigningKeyCache::new(),
        }
    }

    /// How many signing keys were derived so far (once per access key, secret and day).
    pub fn key_derivations(&self) -> u64 {
        self.keys.derivations()
    }

    /// Verifies `request` received at `now`; see the module documentation.
    pub fn verify(
        &self,
        request: &Request<'_>,
        now: SystemTime,
        secrets: &dyn SecretLookup,
    ) -> Result<Authenticated, VerifyError> {
        let params = query_params(request.query);
        let param = |name: &str| -> Option<String> {
            params
                .iter()
                .find(|(k, _)| k.as_slice() == name.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let presigned_params;
        let sig = match request.header("authorization") {
            Some(header) => parse_header(header, request)?,
            None if param("X-Amz-Algorithm").is_some() => {
                presigned_params = PresignedParams::read(&param)?;
                presigned_params.as_signature()?
            }
            None => {
                return Err(VerifyError::Missing(
                    "the request has neither an Authorization header nor a presigned X-Amz-Signature"
                        .into(),
                ));
            }
        };

        // The credential scope.
        let parts: Vec<&str> = sig.credential.split('/').collect();
        let [access_key_id, date, region, service, terminal] = parts[..] else {
            return Err(VerifyError::Incomplete(format!(
                "Credential {:?} is not <access key>/<date>/<region>/<service>/aws4_request",
                sig.credential
            )));
        };
        if terminal != "aws4_request" {
            return Err(VerifyError::BadScope(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not {terminal:?}"
            )));
        }
        if region != self.region {
            return Err(VerifyError::BadScope(format!(
                "Credential should be scoped to a valid region: {:?}, not {region:?}",
                self.region
            )));
        }
        if !self.services.iter().any(|s| s == service) {
            return Err(VerifyError::BadScope(format!(
                "Credential should be scoped to correct service: {}, not {service:?}",
                self.services.join(" or ")
            )));
        }
        let at = AmzDate::parse(&sig.timestamp).ok_or_else(|| {
            VerifyError::Incomplete(format!(
                "the request date {:?} is not YYYYMMDD'T'HHMMSS'Z'",
                sig.timestamp
            ))
        })?;
        if date != at.date() {
            return Err(VerifyError::BadScope(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: {date:?} != {:?}",
                at.date()
            )));
        }

        // The time.
        let now = AmzDate::from_system_time(now);
        match sig.presigned {
            None if at.distance(now) > self.max_clock_skew => {
                return Err(VerifyError::Expired(format!(
                    "Signature expired: {} is more than {} s from the server's time {}",
                    at.timestamp(),
                    self.max_clock_skew.as_secs(),
                    now.timestamp()
                )));
            }
            Some(expires) if now > at.plus(Duration::from_secs(expires)) => {
                return Err(VerifyError::Expired(format!(
                    "Request has expired: signed {} for {expires} s, now {}",
                    at.timestamp(),
                    now.timestamp()
                )));
            }
            Some(_) if at > now && at.distance(now) > self.max_clock_skew => {
                return Err(VerifyError::Expired(format!(
                    "Request is not yet valid: signed for {}, now {}",
                    at.timestamp(),
                    now.timestamp()
                )));
            }
            _ => {}
        }

        // The signed headers.
        let signed: Vec<String> = sig.signed_headers.split(';').map(str::to_owned).collect();
        let mut sorted = signed.clone();
        sorted.sort();
        sorted.dedup();
        if signed
            .iter()
            .any(|n| n.is_empty() || *n != n.to_ascii_lowercase())
            || sorted != signed
        {
            return Err(VerifyError::Incomplete(format!(
                "SignedHeaders {:?} must be lowercase names, sorted, each once, joined with ';'",
                sig.signed_headers
            )));
        }
        if !signed.iter().any(|n| n == "host") {
            return Err(VerifyError::Incomplete(
                "the host header must be signed".into(),
            ));
        }
        let present = request.header_names();
        if let Some(unsigned) = present
            .iter()
            .find(|n| n.starts_with("x-amz-") && !signed.contains(n))
        {
            return Err(VerifyError::Incomplete(format!(
                "every x-amz-* header must be signed; {unsigned} is not"
            )));
        }
        if let Some(missing) = signed.iter().find(|n| !present.contains(n)) {
            return Err(VerifyError::Incomplete(format!(
                "the signed header {missing} is not in the request"
            )));
        }

        // The payload hash.
        let declared = request.header("x-amz-content-sha256");
        let payload_hash = match (declared, request.payload) {
            (Some(UNSIGNED_PAYLOAD), _) if self.allow_unsigned_payload => {
                UNSIGNED_PAYLOAD.to_owned()
            }
            (Some(UNSIGNED_PAYLOAD), _) => {
                return Err(VerifyError::PayloadHash(
                    "UNSIGNED-PAYLOAD is not accepted here: sign the payload's SHA-256".into(),
                ));
            }
            (Some(declared), payload) => {
                let actual = payload.hash();
                if !declared.eq_ignore_ascii_case(&actual) {
                    return Err(VerifyError::PayloadHash(format!(
                        "the x-amz-content-sha256 {declared:?} is not the payload's SHA-256 {actual:?}"
                    )));
                }
                declared.to_owned()
            }
            // S3 signs a presigned URL's payload as UNSIGNED-PAYLOAD; every other service (as
            // botocore and the AWS SDK for Rust sign for them) the body's hash, as for headers.
            (None, _) if sig.presigned.is_some() && self.allow_unsigned_payload => {
                UNSIGNED_PAYLOAD.to_owned()
            }
            (None, payload) => payload.hash(),
        };

        // The signature itself.
        let provided = match hex::decode(sig.signature) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            _ => {
                return Err(VerifyError::Incomplete(format!(
                    "Signature {:?} is not 64 hex digits",
                    sig.signature
                )));
            }
        };
        let secret = secrets
            .secret(access_key_id)
            .ok_or_else(|| VerifyError::UnknownAccessKey(access_key_id.to_owned()))?;
        let scope = Scope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        };
        let canonical = CanonicalRequest::new(
            request,
            &signed,
            &payload_hash,
            self.path_encoding,
            sig.presigned.map(|_| "X-Amz-Signature"),
        );
        let string_to_sign = canonical.string_to_sign(&at.timestamp(), &scope);
        let key = self.keys.get(access_key_id, &secret, &scope);
        if !key.verify(&string_to_sign, &provided) {
            return Err(VerifyError::Mismatch {
                canonical_request: canonical.text,
                string_to_sign,
            });
        }
        Ok(Authenticated {
            access_key_id: access_key_id.to_owned(),
            scope,
            signed_headers: canonical.signed_headers,
            presigned: sig.presigned.is_some(),
            session_token: match sig.presigned {
                Some(_) => param("X-Amz-Security-Token"),
                None => request.header("x-amz-security-token").map(str::to_owned),
            },
        })
    }
}

/// `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`, with the request time
/// from `x-amz-date` (or `date`).
fn parse_header<'a>(header: &'a str, request: &Request<'_>) -> Result<Signature<'a>, VerifyError> {
    let Some(rest) = header.strip_prefix(ALGORITHM) else {
        return Err(VerifyError::Incomplete(format!(
            "the Authorization header must start with {ALGORITHM}"
        )));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return Err(VerifyError::Incomplete(format!(
                "{:?} in the Authorization header is not name=value",
                part.trim()
            )));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(VerifyError::Incomplete(format!(
                    "unknown Authorization component {other:?}"
                )));
            }
        };
        *slot = Some(value);
    }
    let need = |v: Option<&'a str>, name: &str| {
        v.ok_or_else(|| VerifyError::Incomplete(format!("the Authorization header has no {name}=")))
    };
    let timestamp = match (request.header("x-amz-date"), request.header("date")) {
        (Some(t), _) => t.trim().to_owned(),
        (None, Some(date)) => chrono::DateTime::parse_from_rfc2822(date.trim())
            .map(|t| AmzDate::from_system_time(t.into()).timestamp())
            .map_err(|_| {
                VerifyError::Incomplete(format!("the Date header {date:?} is not an HTTP date"))
            })?,
        (None, None) => {
            return Err(VerifyError::Incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header"
                    .into(),
            ));
        }
    };
    Ok(Signature {
        credential: need(credential, "Credential")?,
        signed_headers: need(signed_headers, "SignedHeaders")?,
        signature: need(signature, "Signature")?,
        timestamp,
        presigned: None,
    })
}

/// A presigned URL's signing parameters.
struct PresignedParams {
    algorithm: String,
    credential: Option<String>,
    date: Option<String>,
    expires: Option<String>,
    signed_headers: Option<String>,
    signature: Option<String>,
}

impl PresignedParams {
    fn read(param: &dyn Fn(&str) -> Option<String>) -> Result<Self, VerifyError> {
        Ok(PresignedParams {
            algorithm: param("X-Amz-Algorithm").unwrap_or_default(),
            credential: param("X-Amz-Credential"),
            date: param("X-Amz-Date"),
            expires: param("X-Amz-Expires"),
            signed_headers: param("X-Amz-SignedHeaders"),
            signature: param("X-Amz-Signature"),
        })
    }

    fn as_signature(&self) -> Result<Signature<'_>, VerifyError> {
        if self.algorithm != ALGORITHM {
            return Err(VerifyError::Incomplete(format!(
                "X-Amz-Algorithm must be {ALGORITHM}, not {:?}",
                self.algorithm
            )));
        }
        let need = |v: &Option<String>, name: &str| -> Result<String, VerifyError> {
            v.clone()
                .ok_or_else(|| VerifyError::Incomplete(format!("a presigned URL needs {name}")))
        };
        let expires_text = need(&self.expires, "X-Amz-Expires")?;
        let expires = match expires_text.parse::<u64>() {
            Ok(s) if (1..=MAX_PRESIGN_EXPIRES_S).contains(&s) => s,
            _ => {
                return Err(VerifyError::Incomplete(format!(
                    "X-Amz-Expires must be 1 to {MAX_PRESIGN_EXPIRES_S} seconds, not {expires_text:?}"
                )));
            }
        };
        Ok(Signature {
            credential: self.credential.as_deref().ok_or_else(|| {
                VerifyError::Incomplete("a presigned URL needs X-Amz-Credential".into())
            })?,
            signed_headers: self.signed_headers.as_deref().ok_or_else(|| {
                VerifyError::Incomplete("a presigned URL needs X-Amz-SignedHeaders".into())
            })?,
            signature: self.signature.as_deref().ok_or_else(|| {
                VerifyError::Incomplete("a presigned URL needs X-Amz-Signature".into())
            })?,
            timestamp: need(&self.date, "X-Amz-Date")?,
            presigned: Some(expires),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{Credentials, Signer};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn secrets(id: &str) -> Option<String> {
        (id == "AKIDEXAMPLE").then(|| SECRET.to_owned())
    }

    fn at() -> AmzDate {
        AmzDate::parse("20150830T123600Z").unwrap()
    }

    fn headers() -> Vec<(String, String)> {
        vec![("Host".into(), "example.amazonaws.com".into())]
    }

    fn request<'a>(headers: &'a [(String, String)], query: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            path: "/",
            query,
            headers,
            payload: Payload::Bytes(b""),
        }
    }

    /// AWS's published example ("get-vanilla" of the SigV4 test suite): key AKIDEXAMPLE,
    /// us-east-1, service "service", 2015-08-30 12:36:00. The expected signature is AWS's, not
    /// this crate's.
    #[test]
    fn the_aws_documented_example_verifies() {
        let mut h = headers();
        h.push(("X-Amz-Date".into(), "20150830T123600Z".into()));
        h.push((
            "Authorization".into(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".into(),
        ));
        let verifier = Verifier::new("us-east-1", &["service"]);
        let who = verifier
            .verify(&request(&h, ""), at().to_system_time(), &secrets)
            .unwrap();
        assert_eq!(who.access_key_id, "AKIDEXAMPLE");
        assert!(!who.presigned);
    }

    /// The example key's signer for IAM in us-east-1.
    fn iam_signer() -> Signer {
        Signer::new(
            Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: SECRET.into(),
                session_token: None,
            },
            "us-east-1",
            "iam",
        )
    }

    fn signed(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h = headers();
        h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let signer = iam_signer();
        let added = signer.sign_headers(&request(&h, "Action=ListUsers"), at());
        h.extend(added);
        h
    }

    fn verify(h: &[(String, String)], now: AmzDate) -> Result<Authenticated, VerifyError> {
        Verifier::new("us-east-1", &["iam"]).verify(
            &request(h, "Action=ListUsers"),
            now.to_system_time(),
            &secrets,
        )
    }

    #[test]
    fn the_time_must_be_within_the_skew_window() {
        let h = signed(&[]);
        assert!(verify(&h, at()).is_ok());
        assert!(verify(&h, at().plus(Duration::from_secs(15 * 60))).is_ok());
        let late = verify(&h, at().plus(Duration::from_secs(15 * 60 + 1))).unwrap_err();
        assert_eq!(late.code(), "RequestExpired", "{late}");
    }

    #[test]
    fn every_x_amz_header_must_be_signed_and_unknown_keys_are_refused() {
        let mut h = signed(&[]);
        h.push(("X-Amz-Target".into(), "sneaked-in".into()));
        let e = verify(&h, at()).unwrap_err();
        assert_eq!(e.code(), "IncompleteSignature");
        assert!(e.to_string().contains("x-amz-target is not"), "{e}");
        // The message alone, as AWS's <Message> carries it: the code is <Code>'s.
        assert!(
            e.message().starts_with("every x-amz-* header"),
            "{}",
            e.message()
        );
        let h = signed(&[]);
        let e = Verifier::new("us-east-1", &["iam"])
            .verify(
                &request(&h, "Action=ListUsers"),
                at().to_system_time(),
                &|_: &str| None,
            )
            .unwrap_err();
        assert_eq!(e.code(), "InvalidClientTokenId");
    }

    #[test]
    fn a_mismatch_carries_the_canonical_request_and_string_to_sign() {
        let h = signed(&[]);
        let e = Verifier::new("us-east-1", &["iam"])
            .verify(
                &request(&h, "Action=DeleteUser"),
                at().to_system_time(),
                &secrets,
            )
            .unwrap_err();
        let VerifyError::Mismatch {
            canonical_request,
            string_to_sign,
        } = &e
        else {
            panic!("{e}");
        };
        assert!(
            canonical_request.starts_with("GET\n/\nAction=DeleteUser\nhost:"),
            "{canonical_request}"
        );
        assert!(string_to_sign.starts_with(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
        ));
        assert_eq!(e.code(), "SignatureDoesNotMatch");
        assert_eq!(e.http_status(), 403);
    }

    #[test]
    fn the_scope_must_name_this_region_and_service_and_the_request_date() {
        let h = signed(&[]);
        for (region, services) in [("eu-west-1", &["iam"][..]), ("us-east-1", &["sts"][..])] {
            let e = Verifier::new(region, services)
                .verify(
                    &request(&h, "Action=ListUsers"),
                    at().to_system_time(),
                    &secrets,
                )
                .unwrap_err();
            assert_eq!(e.code(), "SignatureDoesNotMatch", "{e}");
        }
        let mut other_day = h.clone();
        for (n, v) in other_day.iter_mut() {
            if n == "x-amz-date" {
                *v = "20150831T000100Z".into();
            }
        }
        let e = verify(&other_day, AmzDate::parse("20150831T000100Z").unwrap()).unwrap_err();
        assert!(e.to_string().contains("Date in Credential scope"), "{e}");
    }

    #[test]
    fn a_declared_payload_hash_must_match_and_unsigned_payload_is_refused() {
        let h = signed(&[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
        assert_eq!(
            verify(&h, at()).unwrap_err().code(),
            "XAmzContentSHA256Mismatch"
        );
        let wrong = signed(&[("x-amz-content-sha256", &"0".repeat(64))]);
        assert_eq!(
            verify(&wrong, at()).unwrap_err().code(),
            "XAmzContentSHA256Mismatch"
        );
    }

    #[test]
    fn presigned_urls_expire() {
        let h = headers();
        let signer = iam_signer();
        let query = signer.presign_query(
            &request(&h, "Action=ListUsers"),
            at(),
            Duration::from_secs(60),
        );
        let check = |now: AmzDate| {
            Verifier::new("us-east-1", &["iam"]).verify(
                &request(&h, &query),
                now.to_system_time(),
                &secrets,
            )
        };
        assert!(check(at()).unwrap().presigned);
        assert!(check(at().plus(Duration::from_secs(60))).is_ok());
        assert_eq!(
            check(at().plus(Duration::from_secs(61)))
                .unwrap_err()
                .code(),
            "RequestExpired"
        );
        let too_long = query.replace("X-Amz-Expires=60", "X-Amz-Expires=604801");
        let e = Verifier::new("us-east-1", &["iam"])
            .verify(&request(&h, &too_long), at().to_system_time(), &secrets)
            .unwrap_err();
        assert_eq!(e.code(), "IncompleteSignature", "{e}");
    }

    #[test]
    fn signing_is_deterministic_and_every_part_counts() {
        // The seed's "signature determinism test": the same request at the same time signs the
        // same, and changing any one part changes the signature.
        let sign = |method: &str, path: &str, query: &str, body: &[u8], at: AmzDate| {
            let h = headers();
            let signer = iam_signer();
            let added = signer.sign_headers(
                &Request {
                    method,
                    path,
                    query,
                    headers: &h,
                    payload: Payload::Bytes(body),
                },
                at,
            );
            added.last().unwrap().1.clone()
        };
        let base = sign("POST", "/", "a=1", b"x", at());
        assert_eq!(base, sign("POST", "/", "a=1", b"x", at()));
        for other in [
            sign("GET", "/", "a=1", b"x", at()),
            sign("POST", "/b", "a=1", b"x", at()),
            sign("POST", "/", "a=2", b"x", at()),
            sign("POST", "/", "a=1", b"y", at()),
            sign("POST", "/", "a=1", b"x", at().plus(Duration::from_secs(1))),
        ] {
            assert_ne!(base, other);
        }
    }
}
