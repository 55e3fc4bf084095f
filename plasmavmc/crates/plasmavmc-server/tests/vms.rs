//! `plasmavmc` end to end: two instances over one host's driver root, against real ChainFire
//! (3 nodes), FlareDB (3 stores) and IAM processes, driven by plasmavmc-client (signed calls,
//! retries). What must hold:
//! - a created VM runs as a real guest process (its own session) and its record says so;
//! - a repeated request id is a replay, never applied twice; another id is ALREADY_EXISTS;
//! - stop and start change the guest, delete removes guest, state and record;
//! - a wrong secret is UNAUTHENTICATED, a user without a policy PERMISSION_DENIED;
//! - SIGKILL of the reconciling instance leaves the guest running, the other instance takes
//!   reconciliation over and adopts it (same pid), the same client keeps working; the times to
//!   reconcile and to re-adopt are printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chainfire_testkit::binary::iam_bin;
use chainfire_testkit::flaredb::{FlareDb, FlareOptions};
use chainfire_testkit::{Cluster, ClusterOptions, Process, TestEnv, free_ports};
use iam_client::query::{QueryClient, QueryConfig};
use plasmavmc_client::{Client, ClientConfig, ClientError, Credentials, pb};

const ADMIN_ID: &str = "AKIAADMINEXAMPLE0001";
const ADMIN_SECRET: &str = "adminsecretadminsecretadminsecret0000001";
const BOUND: Duration = Duration::from_secs(60);

fn admin() -> Credentials {
    Credentials {
        access_key_id: ADMIN_ID.into(),
        secret_access_key: ADMIN_SECRET.into(),
        session_token: None,
    }
}

/// Kills every guest recorded under the driver root when the test ends, passed or not: guests
/// run in their own sessions, out of reach of the kit's process-group cleanup.
struct GuestReaper(PathBuf);

impl Drop for GuestReaper {
    fn drop(&mut self) {
        for pid in guest_pids(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Every pid recorded in the driver root's `<vm>/pid` files.
fn guest_pids(root: &Path) -> Vec<u32> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("pid")).ok())
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .filter_map(|v| v["pid"].as_u64())
        .map(|pid| pid as u32)
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

struct Instance {
    process: Process,
    addr: String,
}

fn plasmavmc(
    env: &TestEnv,
    name: &str,
    cf: &Cluster,
    fdb: &FlareDb,
    iam_grpc: &str,
    root: &Path,
) -> Instance {
    let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
    let args: Vec<String> = [
        "--addr",
        &addr,
        "--instance-id",
        name,
        "--flaredb-endpoints",
        &fdb.endpoints().join(","),
        "--chainfire-endpoints",
        &cf.endpoint_list(),
        "--iam-endpoints",
        iam_grpc,
        "--driver-root",
        &root.display().to_string(),
        "--stop-grace-ms",
        "2000",
        "--log-level",
        "info,plasmavmc=debug",
    ]
    .map(String::from)
    .to_vec();
    let mut process = Process::new(
        name,
        env!("CARGO_BIN_EXE_plasmavmc"),
        args,
        env.path(&format!("{name}.log")),
    );
    process.spawn();
    Instance { process, addr }
}

async fn wait_vm(
    client: &Client,
    name: &str,
    what: &str,
    done: impl Fn(&pb::Vm) -> bool,
) -> (pb::Vm, Duration) {
    let started = Instant::now();
    loop {
        match client.get_vm(name).await {
            Ok(vm) if done(&vm) => return (vm, started.elapsed()),
            Ok(vm) if started.elapsed() > BOUND => {
                panic!("{name}: not {what} within {BOUND:?}: {vm:?}")
            }
            Err(e) if started.elapsed() > BOUND => {
                panic!("{name}: not {what} within {BOUND:?}: {e}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Everything PlasmaVMC needs, started in one temp dir: ChainFire (3 nodes), FlareDB (3
/// stores), one IAM instance with the administrator. Field order is drop order.
struct Stack {
    _reaper: GuestReaper,
    _iam: Process,
    fdb: FlareDb,
    cf: Cluster,
    root: PathBuf,
    iam_http: String,
    iam_grpc: String,
    env: TestEnv,
}

impl Stack {
    async fn start(name: &str) -> Stack {
        let env = TestEnv::new(name).await;
        let root = env.path("driver");
        let reaper = GuestReaper(root.clone());
        let cf = Cluster::start_in(&env, ClusterOptions::default()).await;
        cf.wait_leader(BOUND).await;
        let fdb = FlareDb::start(&env, &cf.endpoint_list(), FlareOptions::default()).await;
        fdb.wait_leader(BOUND).await;
        let [iam_http, iam_grpc] = free_ports(2)[..] else {
            unreachable!()
        };
        let (iam_http, iam_grpc) = (
            format!("127.0.0.1:{iam_http}"),
            format!("127.0.0.1:{iam_grpc}"),
        );
        let mut iam = Process::new(
            "iam",
            iam_bin(),
            [
                "--addr",
                &iam_http,
                "--grpc-addr",
                &iam_grpc,
                "--chainfire-endpoints",
                &cf.endpoint_list(),
                "--bootstrap-key",
                &format!("{ADMIN_ID}:{ADMIN_SECRET}"),
            ]
            .map(String::from)
            .to_vec(),
            env.path("iam.log"),
        );
        iam.spawn();
        iam.wait_for_log_line(0, "bootstrap administrator ready", BOUND)
            .await;
        iam.wait_for_port(&iam_grpc, BOUND).await;
        Stack {
            _reaper: reaper,
            _iam: iam,
            fdb,
            cf,
            root,
            iam_http,
            iam_grpc,
            env,
        }
    }

    async fn plasmavmc(&self, name: &str) -> Instance {
        let mut instance = plasmavmc(
            &self.env,
            name,
            &self.cf,
            &self.fdb,
            &self.iam_grpc,
            &self.root,
        );
        instance
            .process
            .wait_for_log_line(0, "plasmavmc ready", BOUND)
            .await;
        instance
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_run_survive_a_reconciler_kill_and_calls_are_authorised() {
    let stack = Stack::start("plasmavmc-vms").await;
    let (root, cf) = (&stack.root, &stack.cf);
    let mut a = stack.plasmavmc("vmc-a").await;
    let mut b = stack.plasmavmc("vmc-b").await;
    let client = Client::new(ClientConfig::new([a.addr.clone(), b.addr.clone()], admin())).unwrap();

    // Create: a real guest, in its own session, with its name in its environment.
    let created_at = Instant::now();
    let command = ["sh", "-c", "echo \"$VM_NAME\" > name; exec sleep 300"];
    let reply = client
        .create_vm_with_id("web-1", &command, &[], true, "req-create-1")
        .await
        .unwrap();
    assert!(!reply.replayed);
    let (vm, _) = wait_vm(&client, "web-1", "running", |vm| {
        vm.actual == "running" && vm.pid > 0
    })
    .await;
    let reconcile_ms = created_at.elapsed().as_millis();
    assert!(alive(vm.pid), "{vm:?}");
    let session = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        session(vm.pid),
        vm.pid.to_string(),
        "the guest leads its own session"
    );
    println!("create -> running in {reconcile_ms} ms");

    // The same request id again: a replay; another id: exists.
    let again = client
        .create_vm_with_id("web-1", &command, &[], true, "req-create-1")
        .await
        .unwrap();
    assert!(again.replayed);
    let other = client
        .create_vm("web-1", &command, &[], true)
        .await
        .unwrap_err();
    assert_eq!(other.code(), Some(tonic::Code::AlreadyExists), "{other}");
    assert_eq!(guest_pids(root), [vm.pid], "one guest, not two");

    // Calls are authenticated and authorised.
    let wrong = Credentials {
        secret_access_key: "not-the-secret-not-the-secret-00".into(),
        ..admin()
    };
    let wrong_client = Client::new(ClientConfig::new([a.addr.clone()], wrong)).unwrap();
    let e = wrong_client.get_vm("web-1").await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}");
    let iam_admin = QueryClient::new(QueryConfig::new([stack.iam_http.clone()], admin())).unwrap();
    iam_admin.create_user("bob").await.unwrap();
    let bob_key = iam_admin.create_access_key("bob").await.unwrap();
    let bob = Client::new(ClientConfig::new([a.addr.clone()], bob_key)).unwrap();
    let e = bob.stop_vm("web-1").await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied), "{e}");
    assert!(e.to_string().contains("plasmavmc:StopVm"), "{e}");

    // Stop, start.
    client.stop_vm("web-1").await.unwrap();
    let (stopped, _) = wait_vm(&client, "web-1", "stopped", |vm| vm.actual == "stopped").await;
    assert_eq!(stopped.pid, 0);
    assert!(!alive(vm.pid), "the guest was stopped");
    client.start_vm("web-1").await.unwrap();
    let (vm, _) = wait_vm(&client, "web-1", "running again", |vm| {
        vm.actual == "running" && vm.pid > 0
    })
    .await;

    // Kill the reconciler: the guest keeps running, the other instance adopts it.
    let leader = cf
        .client()
        .await
        .get("/plasmavmc/reconciler")
        .await
        .unwrap()
        .kv
        .expect("a reconciler is elected")
        .value;
    let leader = String::from_utf8(leader).unwrap();
    let (dead, survivor) = if leader == "vmc-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    dead.process.kill();
    let killed = Instant::now();
    assert!(alive(vm.pid), "the guest outlives PlasmaVMC");
    let (survivor_leads, _) = survivor
        .process
        .wait_for_log_line(0, "elected reconciler", BOUND)
        .await;
    let adopt_ms = killed.elapsed().as_millis();
    println!(
        "reconciler SIGKILLed: the other instance reconciles after {adopt_ms} ms ({survivor_leads})"
    );
    // The same client keeps working, and a stop now goes through the new reconciler.
    let listed = client.list_vms().await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.pid).collect::<Vec<_>>(),
        [vm.pid],
        "adopted, not restarted"
    );
    client.stop_vm("web-1").await.unwrap();
    wait_vm(&client, "web-1", "stopped by the new reconciler", |vm| {
        vm.actual == "stopped"
    })
    .await;
    assert!(!alive(vm.pid));

    // Delete: guest, state and record gone.
    client.delete_vm("web-1").await.unwrap();
    let started = Instant::now();
    loop {
        match client.get_vm("web-1").await {
            Err(ClientError::Rejected(op)) if op.code == Some(tonic::Code::NotFound) => break,
            other => assert!(
                started.elapsed() < BOUND,
                "not deleted within {BOUND:?}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !root.join("web-1").exists(),
        "the driver's state went with it"
    );
}

/// The S3 burst: creates in flight while the FlareDB leader is SIGKILLed. Every call either
/// completes or fails with a clear error, a repeat with the same request id settles each failed
/// one exactly once, and after reconciliation the running guests are exactly the VMs wanted:
/// none lost, none duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_a_flaredb_leader_kill_loses_and_duplicates_no_vm() {
    let mut stack = Stack::start("plasmavmc-burst").await;
    let a = stack.plasmavmc("vmc-a").await;
    let client = Client::new(ClientConfig::new([a.addr.clone()], admin())).unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("burst-{i}")).collect();
    let command = ["sh", "-c", "exec sleep 300"];
    let leader = stack.fdb.wait_leader(BOUND).await;

    let calls = futures::future::join_all(names.iter().map(|name| {
        let client = client.clone();
        async move {
            client
                .create_vm_with_id(name, &command, &[], true, &format!("req-{name}"))
                .await
        }
    }));
    let store = stack.fdb.store(leader);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        store.proc.kill();
        Instant::now()
    };
    let (results, killed_at) = tokio::join!(calls, kill);
    let mut failed = Vec::new();
    for (name, result) in names.iter().zip(&results) {
        if let Err(e) = result {
            let op = e
                .failed_op()
                .unwrap_or_else(|| panic!("{name}: no call behind {e}"));
            assert!(
                !op.last_cause.is_empty() && !op.endpoints.is_empty(),
                "{name}: unclear: {e}"
            );
            println!("{name}: failed clearly: {e}");
            failed.push(name.clone());
        }
    }
    println!(
        "{} of {} creates answered across the FlareDB leader kill",
        names.len() - failed.len(),
        names.len()
    );

    // The same request ids again: a replay for every applied call, a creation for the rest.
    for name in &names {
        let again = client
            .create_vm_with_id(name, &command, &[], true, &format!("req-{name}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: the repeat failed: {e}"));
        if !failed.contains(name) {
            assert!(
                again.replayed,
                "{name} was answered once already: {again:?}"
            );
        }
    }

    // Reconciled: exactly one running guest per VM.
    let started = Instant::now();
    loop {
        let vms = client.list_vms().await.unwrap();
        let running: Vec<&pb::Vm> = vms.iter().filter(|v| v.actual == "running").collect();
        if running.len() == names.len() {
            let pids = guest_pids(&stack.root);
            let alive_pids: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
            assert_eq!(alive_pids.len(), names.len(), "one guest per VM: {pids:?}");
            let mut recorded: Vec<u32> = running.iter().map(|v| v.pid).collect();
            recorded.sort();
            let mut alive_sorted = alive_pids.clone();
            alive_sorted.sort();
            assert_eq!(
                recorded, alive_sorted,
                "the records name the running guests"
            );
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "not reconciled within {BOUND:?}: {vms:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "every VM running, one guest each, {} ms after the FlareDB leader kill",
        killed_at.elapsed().as_millis()
    );
}
