//! iam-client's Query API client and `iam call` against real `iam` instances over a real
//! 3-node ChainFire cluster: requests signed by iam-client (iam-sigv4's signer) are accepted,
//! the same request with a wrong secret is refused with AWS's error, the client follows the
//! instance list past a dead instance with the retry reported, and an AWS error answer is
//! final (one attempt). Signature correctness itself is proven against independent signers in
//! iam-sigv4's tests; this proves the client's requests are what the server accepts.

use std::process::Command;
use std::sync::{Arc, Mutex};

use chainfire_testkit::{Cluster, ClusterOptions, TestEnv, free_ports};
use iam_client::RetryEvent;
use iam_client::query::{QueryClient, QueryConfig, QueryError};
use iam_sigv4::Credentials;

mod common;

use common::{ADMIN_ARN, ADMIN_ID, ADMIN_SECRET, start_iam};

fn admin() -> Credentials {
    Credentials {
        access_key_id: ADMIN_ID.into(),
        secret_access_key: ADMIN_SECRET.into(),
        session_token: None,
    }
}

/// A client for `endpoints` signing as `credentials`, and the retries it reports.
fn client(
    endpoints: &[&str],
    credentials: Credentials,
) -> (QueryClient, Arc<Mutex<Vec<RetryEvent>>>) {
    let retries = Arc::new(Mutex::new(Vec::new()));
    let mut config = QueryConfig::new(endpoints.iter().copied(), credentials);
    let seen = retries.clone();
    config.call.retry_observer = Some(Arc::new(move |e: &RetryEvent| {
        seen.lock().unwrap().push(e.clone())
    }));
    (QueryClient::new(config).unwrap(), retries)
}

fn refused(result: Result<impl std::fmt::Debug, QueryError>) -> (String, u16, usize) {
    match result {
        Err(QueryError::Refused { error, op, .. }) => (error.code, error.http_status, op.attempts),
        other => panic!("expected an AWS error answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_calls_follow_the_instances_and_errors_are_final() {
    let env = TestEnv::new("iam-query-client").await;
    let cluster = Cluster::start_in(&env, ClusterOptions::default()).await;
    let mut a = start_iam(&env, &cluster, "iam-a", &[]).await;
    let b = start_iam(&env, &cluster, "iam-b", &[]).await;
    // Nothing listens here: the first attempt is refused.
    let dead = format!("127.0.0.1:{}", free_ports(1)[0]);

    let (admin_client, retries) = client(&[&dead, &a.http, &b.http], admin());
    let me = admin_client
        .get_caller_identity()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.process.log_tail(20)));
    assert_eq!(me.arn, ADMIN_ARN);
    assert_eq!(me.account, "000000000000");
    {
        let retries = retries.lock().unwrap();
        assert_eq!(
            retries.len(),
            1,
            "one retry past the dead endpoint: {retries:?}"
        );
        assert_eq!(retries[0].endpoint, dead);
        assert!(retries[0].cause.contains("connect"), "{:?}", retries[0]);
    }

    // State lives in ChainFire: a user made through one instance signs at the other.
    admin_client.create_user("alice").await.unwrap();
    let alice_key = admin_client.create_access_key("alice").await.unwrap();
    assert!(alice_key.access_key_id.starts_with("AKIA"), "{alice_key:?}");
    assert_eq!(
        admin_client.list_access_keys("alice").await.unwrap(),
        std::slice::from_ref(&alice_key.access_key_id)
    );
    let (alice, _) = client(&[&b.http], alice_key.clone());
    let alice_id = alice.get_caller_identity().await.unwrap();
    assert_eq!(alice_id.arn, "arn:aws:iam::000000000000:user/alice");

    // AWS error answers are final: one attempt, the error whole.
    assert_eq!(
        refused(alice.create_user("mallory").await),
        ("AccessDenied".into(), 403, 1)
    );
    assert_eq!(
        refused(admin_client.create_user("alice").await),
        ("EntityAlreadyExists".into(), 409, 1)
    );
    let wrong = Credentials {
        secret_access_key: "not-the-secret-not-the-secret-0000".into(),
        ..admin()
    };
    let (wrong_client, wrong_retries) = client(&[&a.http], wrong);
    assert_eq!(
        refused(wrong_client.get_caller_identity().await),
        ("SignatureDoesNotMatch".into(), 403, 1)
    );
    assert!(wrong_retries.lock().unwrap().is_empty());

    // The policy document travels form-encoded and signed: it grants alice "m*" users.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"make-m","Effect":"Allow","Action":"iam:CreateUser","Resource":"arn:aws:iam::000000000000:user/m*"}]}"#;
    admin_client
        .put_user_policy("alice", "make-m", policy)
        .await
        .unwrap();
    // Each instance's copy follows ChainFire's watch: the other instance sees the policy soon.
    let written = std::time::Instant::now();
    while let Err(e) = alice.create_user("mallory").await {
        assert!(
            written.elapsed() < std::time::Duration::from_secs(10),
            "the policy never reached the other instance: {e}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    admin_client
        .delete_access_key("alice", &alice_key.access_key_id)
        .await
        .unwrap();
    // The deletion reaches the other instance through the same watch: refused there soon too,
    // and then with AWS's error after one attempt.
    let deleted = std::time::Instant::now();
    let refusal = loop {
        match alice.get_caller_identity().await {
            Ok(_) => {
                assert!(
                    deleted.elapsed() < std::time::Duration::from_secs(10),
                    "the deleted key was still accepted 10 s later"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => break refused(other),
        }
    };
    assert_eq!(refusal, ("InvalidClientTokenId".into(), 403, 1));
    assert_eq!(
        refused(admin_client.delete_user("nobody").await),
        ("NoSuchEntity".into(), 404, 1)
    );

    // An instance killed: the same client goes on at the other, the retry reported.
    a.process.kill();
    let (pinned, pinned_retries) = client(&[&a.http, &b.http], admin());
    assert_eq!(pinned.get_caller_identity().await.unwrap().arn, ADMIN_ARN);
    let pinned_retries = pinned_retries.lock().unwrap();
    assert_eq!(pinned_retries.len(), 1, "{pinned_retries:?}");
    assert_eq!(pinned_retries[0].endpoint, a.http);

    // `iam call`, the command line over the same client.
    let secret = env.path("admin.secret");
    std::fs::write(&secret, format!("{ADMIN_SECRET}\n")).unwrap();
    let call = |secret: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_iam"))
            .args(["call", "--endpoints", &format!("{},{}", a.http, b.http)])
            .args(["--access-key-id", ADMIN_ID, "--secret-access-key-file"])
            .arg(secret)
            .args(args)
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    };
    let out = call(&secret, &["GetCallerIdentity"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("<Arn>{ADMIN_ARN}</Arn>")),
        "{stdout}"
    );
    assert!(
        stderr.contains("iam call: retry 1 in"),
        "the retry past the dead instance: {stderr}"
    );

    let out = call(&secret, &["CreateUser", "UserName=mallory"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("EntityAlreadyExists: ")),
        "{stderr}"
    );

    let wrong_secret = env.path("wrong.secret");
    std::fs::write(&wrong_secret, "not-the-secret-not-the-secret-0000").unwrap();
    let out = call(&wrong_secret, &["GetCallerIdentity"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("SignatureDoesNotMatch: ")),
        "{stderr}"
    );

    let out = call(&secret, &["CreateUser", "UserName"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("expected NAME=VALUE"), "{stderr}");
}
