//! AWS Signature Version 4, exactly as AWS specifies it, in one place for the platform: the IAM
//! server verifies requests with it and `iam-client` signs them with it.
//!
//! - [`encode`]: `aws_uri_encode` (RFC 3986 unreserved characters kept, everything else
//!   percent-encoded with uppercase hex; the slash rule is a parameter) and the canonical URI
//!   and query built from it.
//! - [`canonical`]: the canonical request and the string to sign, from a request's parts.
//! - [`key`]: the signing key, derived once per day, region and service, and cached.
//! - [`sign`]: signing with an `Authorization` header or a presigned URL.
//! - [`verify`]: checking a signed or presigned request: credential scope against the request
//!   date, the clock-skew window, expiry, signed headers, payload hash, and the signature in
//!   constant time. A mismatch carries the canonical request and string to sign this side
//!   computed, as AWS's `SignatureDoesNotMatch` does.
//!
//! The request is given as its parts as they travelled ([`Request`]): the path and query exactly
//! as on the wire (still percent-encoded), headers in order (a name may repeat), and the payload
//! or its SHA-256. Nothing here depends on an HTTP library.

pub mod canonical;
pub mod encode;
pub mod key;
pub mod sign;
pub mod time;
pub mod verify;

pub use canonical::{ALGORITHM, CanonicalRequest, Payload, Request, Scope};
pub use encode::{PathEncoding, aws_uri_encode};
pub use key::{SigningKey, SigningKeyCache};
pub use sign::{Credentials, Signer};
pub use time::AmzDate;
pub use verify::{
    Authenticated, MAX_CLOCK_SKEW, MAX_PRESIGN_EXPIRES_S, SecretLookup, Verifier, VerifyError,
};

/// The payload hash a presigned URL (and S3) may use instead of the body's SHA-256.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
