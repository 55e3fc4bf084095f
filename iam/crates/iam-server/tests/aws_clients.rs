//! The `iam` binary against a real 3-node ChainFire cluster:
//! - botocore (the AWS SDK for Python) drives the whole API through `tests/aws_flow.py`, signing
//!   its own requests and parsing the XML answers with AWS's service models (skipped without
//!   botocore, except under CI, where `.ci/run` installs it);
//! - IAM fails closed: with ChainFire's quorum gone, a request is answered from the copy for at
//!   most `--trust-for-ms`, then 503 "IAM unavailable", never an allow; once ChainFire is back,
//!   IAM answers again. Both times are measured and printed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use chainfire_testkit::{Cluster, ClusterOptions, TestEnv};
use iam_sigv4::{AmzDate, Credentials, Payload, Request, Signer};

const CONFIRM_EVERY_MS: u64 = 500;
const TRUST_FOR_MS: u64 = 3000;

mod common;

use common::{ADMIN_ARN, ADMIN_ID, ADMIN_SECRET, start_iam};

/// A `GetCallerIdentity` signed by iam-sigv4 over plain HTTP/1.1: the status code and body.
/// (Signature correctness is proven against independent signers in iam-sigv4's tests; this is
/// only a client.)
fn caller_identity(addr: &str) -> (u16, String) {
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let headers = vec![
        ("host".to_owned(), addr.to_owned()),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        ),
    ];
    let signer = Signer::new(
        Credentials {
            access_key_id: ADMIN_ID.into(),
            secret_access_key: ADMIN_SECRET.into(),
            session_token: None,
        },
        "us-east-1",
        "sts",
    );
    let request = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        payload: Payload::Bytes(body.as_bytes()),
    };
    let added = signer.sign_headers(&request, AmzDate::from_system_time(SystemTime::now()));
    let mut text = String::from("POST / HTTP/1.1\r\n");
    for (n, v) in headers.iter().chain(added.iter()) {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    let mut stream = TcpStream::connect(addr).expect("iam listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botocore_drives_the_whole_api() {
    let check = std::process::Command::new("python3")
        .args(["-c", "import botocore"])
        .output();
    if !check.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs botocore (.ci/run), but python3 cannot import it"
        );
        eprintln!("skipped: no botocore for python3");
        return;
    }
    let env = TestEnv::new("iam-botocore").await;
    let cluster = Cluster::start_in(&env, ClusterOptions::default()).await;
    let iam = start_iam(&env, &cluster, "iam-1", &[]).await;
    let (iam, addr) = (iam.process, iam.http);
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_flow.py"))
        .arg(format!("http://{addr}"))
        .arg(ADMIN_ID)
        .arg(ADMIN_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws_flow.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        iam.log_tail(40)
    );
    let steps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let step = |name: &str| -> &serde_json::Value {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name:?} in {steps:#?}"))
    };
    let ok = |name: &str| {
        let s = step(name);
        assert_eq!(s["ok"], true, "{name}: {s}\n{}", iam.log_tail(20));
        s["result"].clone()
    };
    let refused = |name: &str, code: &str, status: u64| {
        let s = step(name);
        assert_eq!(s["error"], code, "{name}: {s}");
        assert_eq!(s["status"], status, "{name}: {s}");
        s["message"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(ok("admin identity")["Arn"], ADMIN_ARN);
    assert_eq!(ok("create alice")["User"]["UserName"], "alice");
    refused("create alice again", "EntityAlreadyExists", 409);
    assert!(
        ok("alice's key")["AccessKey"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("AKIA")
    );
    assert_eq!(
        ok("alice identity")["Arn"],
        "arn:aws:iam::000000000000:user/alice"
    );
    let m = refused(
        "alice creates mallory without a policy",
        "AccessDenied",
        403,
    );
    assert!(m.contains("no identity-based policy allows"), "{m}");
    ok("allow alice users m*");
    assert_eq!(ok("alice creates mallory")["User"]["UserName"], "mallory");
    refused("alice creates bob (not m*)", "AccessDenied", 403);
    ok("deny alice");
    let m = refused("alice creates mike despite the deny", "AccessDenied", 403);
    assert!(m.contains("explicit deny") && m.contains("nomore"), "{m}");
    refused("malformed policy", "MalformedPolicyDocument", 400);
    let keys = ok("list alice's keys");
    assert_eq!(
        keys["AccessKeyMetadata"].as_array().unwrap().len(),
        1,
        "{keys}"
    );
    let m = refused("wrong secret", "SignatureDoesNotMatch", 403);
    assert!(
        m.contains("The Canonical String for this request should have been")
            && m.contains("The String-to-Sign should have been")
            && m.contains("AWS4-HMAC-SHA256"),
        "the mismatch shows what the server computed: {m}"
    );
    refused("unknown key", "InvalidClientTokenId", 403);
    refused("delete alice with a key", "DeleteConflict", 409);
    for name in [
        "delete alice's key",
        "delete make-m",
        "delete deny",
        "delete alice",
    ] {
        ok(name);
    }
    refused("delete alice again", "NoSuchEntity", 404);
    refused("alice's deleted key", "InvalidClientTokenId", 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_chainfire_quorum_lost_iam_fails_closed_and_recovers() {
    let env = TestEnv::new("iam-fail-closed").await;
    let mut cluster = Cluster::start_in(&env, ClusterOptions::default()).await;
    let trust = [
        "--confirm-every-ms".to_owned(),
        CONFIRM_EVERY_MS.to_string(),
        "--trust-for-ms".to_owned(),
        TRUST_FOR_MS.to_string(),
    ];
    let iam = start_iam(&env, &cluster, "iam-1", &trust).await;
    let (iam, addr) = (iam.process, iam.http);
    let answer = |addr: String| async move {
        tokio::task::spawn_blocking(move || caller_identity(&addr))
            .await
            .unwrap()
    };
    let (status, body) = answer(addr.clone()).await;
    assert_eq!(status, 200, "{body}\n{}", iam.log_tail(20));
    assert!(body.contains(&format!("<Arn>{ADMIN_ARN}</Arn>")));

    // Two of three ChainFire nodes gone: no quorum.
    cluster.kill(2);
    cluster.kill(3);
    let lost = Instant::now();
    let mut served_from_copy = 0;
    let failed_closed = loop {
        let (status, body) = answer(addr.clone()).await;
        match status {
            200 => served_from_copy += 1,
            503 => {
                assert!(
                    body.contains("<Code>ServiceUnavailable</Code>")
                        && body.contains("IAM unavailable"),
                    "{body}"
                );
                break lost.elapsed();
            }
            other => panic!("while ChainFire has no quorum: {other}\n{body}"),
        }
        assert!(
            lost.elapsed() < Duration::from_secs(30),
            "IAM kept answering 200 for 30 s without a ChainFire quorum"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Never later than the trust window plus a confirmation and a generous margin.
    assert!(
        failed_closed
            < Duration::from_millis(TRUST_FOR_MS + CONFIRM_EVERY_MS) + Duration::from_secs(5),
        "failed closed only after {failed_closed:?}"
    );
    // And it stays closed while the quorum is gone.
    for _ in 0..5 {
        assert_eq!(answer(addr.clone()).await.0, 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    cluster.spawn(2);
    cluster.spawn(3);
    let back = Instant::now();
    let recovered = loop {
        if answer(addr.clone()).await.0 == 200 {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "IAM did not answer again within 60 s of ChainFire's quorum returning\n{}",
            iam.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "fail-closed: answered from the copy {served_from_copy} times, unavailable {} ms after the quorum was lost (trust window {TRUST_FOR_MS} ms); answering again {} ms after the nodes restarted",
        failed_closed.as_millis(),
        recovered.as_millis()
    );
}
