//! iam-sigv4's verifier against signers it shares no code with, over one corpus
//! (`tests/corpus.json`: every character class in paths and queries, spaces, unicode, empty and
//! `/`-only paths, dot segments, repeated query keys, keys without values, multi-value and
//! badly spaced headers, form bodies, session tokens, presigned URLs):
//! - the AWS SDK for Rust's signer (`aws-sigv4`), in-process;
//! - botocore (the AWS SDK for Python's signer), through `tests/botocore_sign.py`. Without
//!   Python's botocore the botocore test says so and returns, except under CI (`CI` set), where
//!   `.ci/run` installs it and its absence is a failure.
//!
//! Every signed request must verify, and the same request changed after signing (its method,
//! or its host) must not: a verifier that accepted anything would fail here.

use std::time::{Duration, SystemTime};

use iam_sigv4::{AmzDate, Authenticated, Payload, Request, Verifier, VerifyError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    host: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    timestamp: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: String,
    service: String,
    token: Option<String>,
    presign_expires: Option<u64>,
}

fn corpus() -> Corpus {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

impl Corpus {
    fn time(&self) -> SystemTime {
        AmzDate::parse(&self.timestamp).unwrap().to_system_time()
    }
}

/// A request as it arrives: the signed URL's path and query, the headers it carries (with
/// `Host`, which clients send but signers do not add), the body.
struct Arrived {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Arrived {
    fn new(corpus: &Corpus, case: &Case, url: &str, mut headers: Vec<(String, String)>) -> Self {
        let rest = url
            .strip_prefix(&format!("https://{}", corpus.host))
            .unwrap_or_else(|| panic!("{}: unexpected URL {url}", case.name));
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            headers.insert(0, ("Host".into(), corpus.host.clone()));
        }
        Arrived {
            method: case.method.clone(),
            path: path.into(),
            query: query.into(),
            headers,
            body: case.body.clone().into_bytes(),
        }
    }

    fn verify(&self, corpus: &Corpus) -> Result<Authenticated, VerifyError> {
        let request = Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            payload: Payload::Bytes(&self.body),
        };
        let secret = corpus.secret_access_key.clone();
        let id = corpus.access_key_id.clone();
        Verifier::new(&corpus.region, &["iam", "sts"]).verify(
            &request,
            corpus.time(),
            &move |key: &str| (key == id).then(|| secret.clone()),
        )
    }
}

/// Each case verifies as signed and fails once changed; returns how many were checked.
fn check_all(corpus: &Corpus, signer: &str, signed: Vec<(String, Arrived)>) -> usize {
    let mut failures = Vec::new();
    for (name, arrived) in &signed {
        let case = corpus.cases.iter().find(|c| &c.name == name).unwrap();
        match arrived.verify(corpus) {
            Ok(who) => {
                assert_eq!(who.access_key_id, corpus.access_key_id);
                assert_eq!(who.scope.service, case.service);
                assert_eq!(who.presigned, case.presign_expires.is_some(), "{name}");
                assert_eq!(who.session_token, case.token, "{name}");
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        let other_method = Arrived {
            method: if arrived.method == "GET" {
                "PUT"
            } else {
                "GET"
            }
            .into(),
            ..clone(arrived)
        };
        let mut other_host = clone(arrived);
        for (n, v) in other_host.headers.iter_mut() {
            if n.eq_ignore_ascii_case("host") {
                *v = "evil.example".into();
            }
        }
        for (what, changed) in [("method", other_method), ("host", other_host)] {
            match changed.verify(corpus) {
                Err(VerifyError::Mismatch { .. }) => {}
                other => failures.push(format!(
                    "{name}: a changed {what} must not verify, got {other:?}"
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{signer}: {} of {} cases:\n{}",
        failures.len(),
        signed.len(),
        failures.join("\n")
    );
    signed.len()
}

fn clone(a: &Arrived) -> Arrived {
    Arrived {
        method: a.method.clone(),
        path: a.path.clone(),
        query: a.query.clone(),
        headers: a.headers.clone(),
        body: a.body.clone(),
    }
}

#[test]
fn requests_signed_by_the_aws_sdk_for_rust_verify() {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let corpus = corpus();
    let mut signed = Vec::new();
    for case in &corpus.cases {
        let identity: Identity = Credentials::new(
            &corpus.access_key_id,
            &corpus.secret_access_key,
            case.token.clone(),
            None,
            "corpus",
        )
        .into();
        let mut settings = SigningSettings::default();
        if let Some(expires) = case.presign_expires {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(expires));
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&corpus.region)
            .name(&case.service)
            .time(corpus.time())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let mut url = format!("https://{}{}", corpus.host, case.path);
        if !case.query.is_empty() {
            url = format!("{url}?{}", case.query);
        }
        // Every service but S3 signs the body's hash, presigned or not.
        let body = SignableBody::Bytes(case.body.as_bytes());
        let request = SignableRequest::new(
            &case.method,
            url.clone(),
            case.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            body,
        )
        .unwrap_or_else(|e| panic!("{}: aws-sigv4 cannot take it: {e}", case.name));
        let (instructions, _) = sign(request, &params)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name))
            .into_parts();
        let mut headers = case.headers.clone();
        headers.extend(
            instructions
                .headers()
                .map(|(n, v)| (n.to_owned(), v.to_owned())),
        );
        for (name, value) in instructions.params() {
            url.push(if url.contains('?') { '&' } else { '?' });
            // Encoded as the SDK itself writes its query parameters.
            url.push_str(&format!(
                "{}={}",
                aws_smithy_http::query::fmt_string(name),
                aws_smithy_http::query::fmt_string(value)
            ));
        }
        signed.push((
            case.name.clone(),
            Arrived::new(&corpus, case, &url, headers),
        ));
    }
    let n = check_all(&corpus, "aws-sigv4", signed);
    assert_eq!(n, corpus.cases.len());
    eprintln!(
        "aws-sigv4: {n} signed cases verified, {} changed ones refused",
        2 * n
    );
}

#[test]
fn requests_signed_by_botocore_verify() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/botocore_sign.py");
    let corpus_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus.json");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(corpus_path)
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                Err(e) => format!("python3: {e}"),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "CI installs botocore (.ci/run), but signing with it failed:\n{why}"
            );
            eprintln!("skipped: no botocore for python3 ({})", why.trim());
            return;
        }
    };
    #[derive(Deserialize)]
    struct Signed {
        name: String,
        url: String,
        headers: Vec<(String, String)>,
    }
    #[derive(Deserialize)]
    struct Output {
        signer: String,
        signed: Vec<Signed>,
    }
    let output: Output = serde_json::from_slice(&out.stdout).unwrap();
    let corpus = corpus();
    let signed: Vec<(String, Arrived)> = output
        .signed
        .into_iter()
        .map(|s| {
            let case = corpus.cases.iter().find(|c| c.name == s.name).unwrap();
            let arrived = Arrived::new(&corpus, case, &s.url, s.headers);
            (s.name, arrived)
        })
        .collect();
    let n = check_all(&corpus, &output.signer, signed);
    assert_eq!(n, corpus.cases.len());
    eprintln!(
        "{}: {n} signed cases verified, {} changed ones refused",
        output.signer,
        2 * n
    );
}
