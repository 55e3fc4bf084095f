//! The internal gRPC API through `iam-client`, against two real `iam` instances on a real
//! 3-node ChainFire: Authenticate and Authorize answer; with one instance SIGKILLed the same
//! client keeps working on the other, reporting its retries; with both gone an allow it got
//! before is served from its cache (marked cached) and anything else is an error naming the
//! operation, the instances and the attempts, never an allow. A plain client without retries
//! fails on the first instance it finds dead, as the design note says of IAM today.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use chainfire_testkit::{Cluster, ClusterOptions, TestEnv};
use iam_client::{Client, ClientConfig, ClientError, RetryPolicy, pb};
use iam_sigv4::{AmzDate, Credentials, Payload, Request, Signer};

mod common;

use common::{ADMIN_ARN, ADMIN_ID, ADMIN_SECRET, start_iam};

/// A request a service received, signed by the admin (iam-sigv4's signer: its correctness is
/// proven against independent signers in iam-sigv4's own tests).
fn received_request(body: &str) -> pb::AuthenticateRequest {
    let headers = vec![("host".to_owned(), "vmc.example.internal".to_owned())];
    let signer = Signer::new(
        Credentials {
            access_key_id: ADMIN_ID.into(),
            secret_access_key: ADMIN_SECRET.into(),
            session_token: None,
        },
        "us-east-1",
        "iam",
    );
    let request = Request {
        method: "POST",
        path: "/vms",
        query: "dry-run=1",
        headers: &headers,
        payload: Payload::Bytes(body.as_bytes()),
    };
    let added = signer.sign_headers(&request, AmzDate::from_system_time(SystemTime::now()));
    pb::AuthenticateRequest {
        method: "POST".into(),
        path: "/vms".into(),
        query: "dry-run=1".into(),
        headers: headers
            .into_iter()
            .chain(added)
            .map(|(name, value)| pb::Header { name, value })
            .collect(),
        payload_sha256: iam_sigv4::canonical::sha256_hex(body.as_bytes()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_instances_retries_and_serves_cached_allows_only() {
    let env = TestEnv::new("iam-internal").await;
    let cluster = Cluster::start_in(&env, ClusterOptions::default()).await;
    let common::Iam {
        process: mut first,
        grpc: first_addr,
        ..
    } = start_iam(&env, &cluster, "iam-1", &[]).await;
    let common::Iam {
        process: mut second,
        grpc: second_addr,
        ..
    } = start_iam(&env, &cluster, "iam-2", &[]).await;

    let retries = Arc::new(AtomicUsize::new(0));
    let mut config = ClientConfig::new([first_addr.clone(), second_addr.clone()]);
    let seen = retries.clone();
    config.call.retry_observer = Some(Arc::new(move |_event: &iam_client::RetryEvent| {
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    let client = Client::new(config).unwrap();

    let (principal, _) = client
        .authenticate(received_request("{\"name\":\"web-1\"}"))
        .await
        .unwrap();
    assert_eq!(principal.arn, ADMIN_ARN);
    assert_eq!(principal.access_key_id, ADMIN_ID);
    // The body the signature covered, changed: not this principal.
    let mut tampered = received_request("{\"name\":\"web-1\"}");
    tampered.payload_sha256 = iam_sigv4::canonical::sha256_hex(b"{\"name\":\"evil\"}");
    match client.authenticate(tampered).await {
        Err(e @ ClientError::Rejected(_)) => {
            assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}")
        }
        other => panic!("a tampered request must be rejected: {other:?}"),
    }

    let vm = "arn:aws:plasmavmc::000000000000:vm/web-1";
    let allowed = client
        .authorize("admin", "plasmavmc:CreateVm", vm)
        .await
        .unwrap();
    assert!(allowed.allowed && allowed.cached.is_none(), "{allowed:?}");
    assert_eq!(allowed.statement, "AdministratorAccess statement 0");
    let nobody = client
        .authorize("nobody", "plasmavmc:CreateVm", vm)
        .await
        .unwrap();
    assert!(!nobody.allowed, "no user, no policy: deny");

    // The instance the client uses, SIGKILLed: the same client carries on with the other.
    first.kill();
    let before = retries.load(Ordering::SeqCst);
    let after_kill = client
        .authorize("admin", "plasmavmc:StartVm", vm)
        .await
        .unwrap();
    assert!(
        after_kill.allowed && after_kill.cached.is_none(),
        "{after_kill:?}"
    );
    assert!(
        retries.load(Ordering::SeqCst) > before,
        "the move to the other instance is a reported retry"
    );

    // A plain client without retries fails on the first instance it finds dead.
    let mut plain = ClientConfig::new([first_addr.clone(), second_addr.clone()]);
    plain.call.retry = RetryPolicy {
        max_retries: 0,
        ..plain.call.retry
    };
    let plain = Client::new(plain).unwrap();
    let e = plain
        .authorize("admin", "plasmavmc:CreateVm", vm)
        .await
        .expect_err("no retries: the dead first instance is the answer");
    assert!(e.to_string().contains("authorize"), "{e}");

    // Both gone: the allow from before comes from the cache, anything else is an error.
    second.kill();
    let cached = client
        .authorize("admin", "plasmavmc:CreateVm", vm)
        .await
        .unwrap();
    assert!(cached.allowed, "{cached:?}");
    let why = cached.cached.expect("served from the cache");
    assert!(why.contains("IAM could not answer"), "{why}");
    match client.authorize("admin", "plasmavmc:DeleteVm", vm).await {
        Err(e @ ClientError::Exhausted(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("authorize")
                    && text.contains(&first_addr)
                    && text.contains(&second_addr)
                    && text.contains("attempt"),
                "the error names the operation, the instances and the attempts: {text}"
            );
        }
        other => panic!("never asked before, IAM down: an error, got {other:?}"),
    }
    match client.authorize("nobody", "plasmavmc:CreateVm", vm).await {
        Err(ClientError::Exhausted(_)) => {}
        other => panic!("a deny is never cached into an allow: {other:?}"),
    }
}
