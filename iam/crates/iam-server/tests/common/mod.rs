//! What the IAM integration tests share: one bootstrap administrator, and an `iam` instance on
//! free ports against a test's ChainFire cluster, returned once it has loaded the directory and
//! the administrator exists.

// Each test binary compiles its own copy and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use chainfire_testkit::{Cluster, Process, TestEnv, free_ports};

pub const ADMIN_ID: &str = "AKIAADMINEXAMPLE0001";
pub const ADMIN_SECRET: &str = "adminsecretadminsecretadminsecret0000001";
pub const ADMIN_ARN: &str = "arn:aws:iam::000000000000:user/admin";

/// A running instance: its process, its HTTP (Query API) and gRPC (internal API) addresses.
pub struct Iam {
    pub process: Process,
    pub http: String,
    pub grpc: String,
}

/// Starts `name` with `extra` flags (e.g. a shorter trust window).
pub async fn start_iam(env: &TestEnv, cluster: &Cluster, name: &str, extra: &[String]) -> Iam {
    let [http, grpc] = free_ports(2)[..] else {
        unreachable!("two ports were asked for")
    };
    let (http, grpc) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{grpc}"));
    let mut args: Vec<String> = [
        "--addr",
        &http,
        "--grpc-addr",
        &grpc,
        "--chainfire-endpoints",
        &cluster.endpoint_list(),
        "--bootstrap-key",
        &format!("{ADMIN_ID}:{ADMIN_SECRET}"),
        "--log-level",
        "debug",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(extra);
    let mut process = Process::new(
        name,
        env!("CARGO_BIN_EXE_iam"),
        args,
        env.path(&format!("{name}.log")),
    );
    process.spawn();
    let bound = Duration::from_secs(60);
    process
        .wait_for_log_line(0, "IAM directory loaded", bound)
        .await;
    process
        .wait_for_log_line(0, "bootstrap administrator ready", bound)
        .await;
    process.wait_for_port(&grpc, bound).await;
    Iam {
        process,
        http,
        grpc,
    }
}
