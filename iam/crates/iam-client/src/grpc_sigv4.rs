//! SigV4 for the platform's gRPC calls, both ends in one place: a client signs a call with
//! [`sign_call`], and the service that receives it turns what it received into IAM's
//! `Authenticate` request with [`authenticate_request`]. Both build the same SigV4 request:
//!
//! - method `POST`, path the gRPC method's (`/plasmavmc.v1.Vms/CreateVm`), no query;
//! - `host`: the address the client dialled (`HOST:PORT`). HTTP/2 carries it as `:authority`,
//!   which a tonic handler does not see, so the service names its own address: a call signed
//!   for another address does not verify there;
//! - `x-amz-content-sha256`: the SHA-256 of the request message's protobuf encoding (the
//!   service re-encodes the message it decoded, which prost does byte for byte);
//! - `x-amz-date` and `authorization`, travelling as gRPC metadata.

use std::time::SystemTime;

use iam_sigv4::canonical::sha256_hex;
use iam_sigv4::{AmzDate, Payload, Request, Signer};
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::pb;

/// The metadata keys a signed call carries.
pub const SIGNED_METADATA: [&str; 3] = ["x-amz-date", "x-amz-content-sha256", "authorization"];

/// Signs a call of `path` with `message` (its protobuf encoding) to `authority` now: adds
/// `x-amz-date`, `x-amz-content-sha256` and `authorization` to `metadata`.
pub fn sign_call(
    signer: &Signer,
    authority: &str,
    path: &str,
    message: &[u8],
    metadata: &mut MetadataMap,
) -> Result<(), String> {
    let hash = sha256_hex(message);
    let headers = vec![
        ("host".to_owned(), authority.to_owned()),
        ("x-amz-content-sha256".to_owned(), hash.clone()),
    ];
    let request = Request {
        method: "POST",
        path,
        query: "",
        headers: &headers,
        payload: Payload::Hash(&hash),
    };
    let added = signer.sign_headers(&request, AmzDate::from_system_time(SystemTime::now()));
    for (name, value) in headers.iter().skip(1).chain(&added) {
        let value =
            MetadataValue::try_from(value.as_str()).map_err(|e| format!("metadata {name}: {e}"))?;
        let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
            .map_err(|e| format!("metadata key {name}: {e}"))?;
        metadata.insert(key, value);
    }
    Ok(())
}

/// IAM's `Authenticate` request for a call of `path` received by the service at `own_addr`
/// with `metadata` and `message` (its protobuf encoding, as re-encoded from the decoded
/// message). A missing signature is left for IAM to refuse, with AWS's words.
pub fn authenticate_request(
    own_addr: &str,
    path: &str,
    metadata: &MetadataMap,
    message: &[u8],
) -> pb::AuthenticateRequest {
    let mut headers = vec![pb::Header {
        name: "host".into(),
        value: own_addr.into(),
    }];
    for name in SIGNED_METADATA {
        for value in metadata.get_all(name) {
            if let Ok(value) = value.to_str() {
                headers.push(pb::Header {
                    name: name.into(),
                    value: value.into(),
                });
            }
        }
    }
    pb::AuthenticateRequest {
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        headers,
        payload_sha256: sha256_hex(message),
    }
}

#[cfg(test)]
mod tests {
    use iam_sigv4::{Credentials, Verifier};

    use super::*;

    fn signer() -> Signer {
        Signer::new(
            Credentials {
                access_key_id: "AKIDTESTTESTTEST0001".into(),
                secret_access_key: "secretsecretsecretsecret".into(),
                session_token: None,
            },
            "us-east-1",
            "plasmavmc",
        )
    }

    /// What IAM does with an `Authenticate` request, on iam-sigv4's verifier.
    fn verify(request: &pb::AuthenticateRequest) -> Result<String, String> {
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let signed = Request {
            method: &request.method,
            path: &request.path,
            query: &request.query,
            headers: &headers,
            payload: Payload::Hash(&request.payload_sha256),
        };
        let lookup = |id: &str| {
            (id == "AKIDTESTTESTTEST0001").then(|| "secretsecretsecretsecret".to_owned())
        };
        Verifier::new("us-east-1", &["plasmavmc"])
            .verify(&signed, SystemTime::now(), &lookup)
            .map(|a| a.access_key_id)
            .map_err(|e| e.code().to_owned())
    }

    #[test]
    fn a_signed_call_verifies_only_as_sent() {
        let path = "/plasmavmc.v1.Vms/CreateVm";
        let mut metadata = MetadataMap::new();
        sign_call(&signer(), "127.0.0.1:7000", path, b"message", &mut metadata).unwrap();
        let received = authenticate_request("127.0.0.1:7000", path, &metadata, b"message");
        assert_eq!(verify(&received).unwrap(), "AKIDTESTTESTTEST0001");

        // Another message, another method, another server: refused.
        for (addr, path, message) in [
            ("127.0.0.1:7000", path, &b"messagf"[..]),
            ("127.0.0.1:7000", "/plasmavmc.v1.Vms/DeleteVm", b"message"),
            ("127.0.0.1:7001", path, b"message"),
        ] {
            let received = authenticate_request(addr, path, &metadata, message);
            assert!(verify(&received).is_err(), "{addr} {path} {message:?}");
        }
        // No signature at all: refused, not an anonymous caller.
        let unsigned =
            authenticate_request("127.0.0.1:7000", path, &MetadataMap::new(), b"message");
        assert!(verify(&unsigned).is_err());
    }
}
