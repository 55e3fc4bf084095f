//! `reconnect-runner up SCENARIO`: the scenario's clusters, started in their sandbox exactly as
//! a run starts them, kept running until Ctrl-C, for poking by hand (no step runs).
//!
//! The parent validates the scenario, finds the binaries, locks `<evidence>/up/` and starts a
//! worker (`__up`) in a private network namespace (or on the host network). The worker starts
//! the clusters, prints every node's addresses and log, and the commands that reach them from
//! another terminal (`nsenter` into its namespace, then `chainfire-ctl` / `flaredb-ctl`), then
//! waits. Ctrl-C (or SIGTERM to either process) kills every node and removes what it set up,
//! as after a run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SigSet;
use nix::unistd::Pid;

use super::{progress::Progress, start_clusters};
use crate::cli::{UpArgs, UpWorkerArgs};
use crate::history::History;
use crate::netns::{self, NetworkMode};
use crate::scenario::{ScenarioFile, parse_file};
use crate::supervisor::{self, BinaryPaths, NodeInfo, Service, Supervisor, SupervisorConfig};

/// The line the worker prints once every node serves (tests wait for it).
pub const READY: &str = "reconnect-runner up: ready";

/// The parent: starts the worker and waits for it; 0 when it was stopped by a signal.
pub fn up(args: &UpArgs, file: &ScenarioFile, binaries: &BinaryPaths) -> u8 {
    use crate::cli::exit;
    let network = if args.host_network {
        NetworkMode::HostNetwork
    } else {
        if let Err(why) = netns::probe().namespaces {
            eprintln!(
                "error: cannot make a private network namespace here: {why}; pass --host-network"
            );
            return exit::BAD_INPUT;
        }
        NetworkMode::PrivateNamespace
    };
    let root = args.evidence.join("up");
    let _lock = match super::evidence::prepare(&root, &[file]) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    // Signals go to the worker, which tears down; this process only waits (the mask is
    // inherited by the worker, which waits for them itself).
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    let _ = signals.thread_block();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut cmd = Command::new(exe);
    cmd.arg("__up")
        .arg("--scenario")
        .arg(&file.path)
        .arg("--evidence-dir")
        .arg(root.join(&file.scenario.id));
    if args.host_network {
        cmd.arg("--host-network");
    }
    for (flag, path) in [
        ("--chainfire-bin", &binaries.chainfire),
        ("--flaredb-bin", &binaries.flaredb),
    ] {
        if let Some(p) = path {
            cmd.arg(flag).arg(p);
        }
    }
    netns::isolate(&mut cmd, network);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start the clusters' worker: {e}");
            return exit::BAD_INPUT;
        }
    };
    // A signal to this process alone (e.g. `kill`) is passed on.
    let pid = Pid::from_raw(child.id() as i32);
    let _ = std::thread::Builder::new()
        .name("up-signals".into())
        .spawn(move || {
            while let Ok(sig) = signals.wait() {
                let _ = kill(pid, sig);
            }
        });
    match child.wait() {
        Ok(status) if status.success() => exit::PASSED,
        // Stopped by Ctrl-C / SIGTERM: the worker tore everything down.
        Ok(status) if matches!(status.code(), Some(130 | 143)) => {
            eprintln!("reconnect-runner up: stopped; every node is gone");
            exit::PASSED
        }
        Ok(status) => {
            eprintln!("reconnect-runner up: the clusters' worker ended: {status}");
            exit::TESTS_FAILED
        }
        Err(e) => {
            eprintln!("error: waiting for the clusters' worker: {e}");
            exit::TESTS_FAILED
        }
    }
}

/// A command-line client next to the runner, or by name from `PATH`.
fn ctl(name: &str) -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .map_or_else(|| name.to_owned(), |p| p.display().to_string())
}

/// What the worker prints: every node, and how to reach each cluster.
pub fn describe(
    nodes: &[NodeInfo],
    reach: Option<&str>,
    evidence_dir: &Path,
    chainfire_ctl: &str,
    flaredb_ctl: &str,
) -> String {
    let mut out = String::new();
    for n in nodes {
        out.push_str(&format!(
            "  {:<12} client {:<18} peer {:<18} pid {:<8} log {}\n",
            n.name,
            n.client_addr,
            n.peer_addr,
            n.pid.map_or("-".to_owned(), |p| p.to_string()),
            n.log_path.display()
        ));
    }
    let prefix = reach.map_or(String::new(), |r| format!("{r} -- "));
    let list = |s: Service| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| n.service == s)
            .map(NodeInfo::endpoint)
            .collect()
    };
    let (cf, fdb) = (list(Service::ChainFire), list(Service::FlareDb));
    out.push_str("Reach them from another terminal");
    out.push_str(if reach.is_some() {
        " (the clusters live in the runner's own network namespace):\n"
    } else {
        ":\n"
    });
    if !cf.is_empty() {
        out.push_str(&format!(
            "  {prefix}{chainfire_ctl} --endpoints {} status\n",
            cf.join(",")
        ));
    }
    if !fdb.is_empty() {
        out.push_str(&format!(
            "  {prefix}{flaredb_ctl} --endpoints {} status\n",
            fdb.join(",")
        ));
    }
    // IAM's Query API (its "peer" address) with any AWS client, as the bootstrap administrator.
    if let Some(iam) = nodes.iter().find(|n| n.service == Service::Iam) {
        let (id, secret) = crate::supervisor::IAM_ADMIN_KEY;
        out.push_str(&format!(
            "  {prefix}env AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION=us-east-1 aws sts get-caller-identity --endpoint-url http://{}\n",
            iam.peer_addr
        ));
    }
    out.push_str(&format!(
        "Logs, data and the history are in {}. Ctrl-C stops every node.\n",
        evidence_dir.display()
    ));
    out
}

/// The worker: inside its namespace, starts the clusters, says how to reach them, waits.
pub fn worker(args: UpWorkerArgs) -> u8 {
    let network = if args.host_network {
        NetworkMode::HostNetwork
    } else {
        NetworkMode::PrivateNamespace
    };
    let fail = |e: String| {
        eprintln!("reconnect-runner up: {e}");
        1
    };
    if network == NetworkMode::HostNetwork
        && let Err(e) = supervisor::claim_host_range()
    {
        return fail(e);
    }
    let file = match parse_file(&args.scenario) {
        Ok(f) => f,
        Err(p) => return fail(p.to_string()),
    };
    let info = match netns::setup_inside_worker(network) {
        Ok(info) => info,
        Err(e) => return fail(format!("network namespace: {e}")),
    };
    supervisor::install_teardown_handlers(supervisor::OnSignal::ExitAtOnce);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start tokio: {e}")),
    };
    runtime.block_on(async {
        let history = match History::create(&args.evidence_dir.join("history.jsonl")) {
            Ok(h) => h,
            Err(e) => return fail(e.to_string()),
        };
        let binaries = BinaryPaths {
            bin_dir: None,
            chainfire: args.chainfire_bin.clone(),
            flaredb: args.flaredb_bin.clone(),
        };
        let config = SupervisorConfig::new(&args.evidence_dir, network, binaries);
        let supervisor = Supervisor::new(config, history);
        let progress = Progress::new(&file.scenario.id, 1, 1, 0);
        if let Err(e) = start_clusters(&file, &supervisor, &progress).await {
            supervisor.shutdown().await;
            return fail(e);
        }
        let nodes: Vec<NodeInfo> = Service::ALL
            .into_iter()
            .flat_map(|s| supervisor.nodes(s))
            .collect();
        let me = std::process::id();
        let reach = match (network, info.user_ns) {
            (NetworkMode::HostNetwork, _) => None,
            (_, false) => Some(format!("nsenter --target {me} --net")),
            (_, true) => Some(format!(
                "nsenter --target {me} --user --net --preserve-credentials"
            )),
        };
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "{}: {} node(s) running in {}:\n{}{READY}\n",
            file.scenario.id,
            nodes.len(),
            match network {
                NetworkMode::HostNetwork => "the host network".to_owned(),
                NetworkMode::PrivateNamespace => format!("network namespace {}", info.net_ns),
            },
            describe(
                &nodes,
                reach.as_deref(),
                &args.evidence_dir,
                &ctl("chainfire-ctl"),
                &ctl("flaredb-ctl"),
            )
        );
        let _ = out.flush();
        drop(out);
        // Until a signal: the teardown thread kills every node and exits.
        std::future::pending::<u8>().await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::NodeState;

    #[test]
    fn every_node_and_the_command_that_reaches_each_cluster_are_printed() {
        let node = |service, index: usize, ip: [u8; 4], port: u16| NodeInfo {
            service,
            index,
            name: format!("{service}-{index}"),
            ip: ip.into(),
            client_addr: (ip, port).into(),
            peer_addr: (ip, port + 10).into(),
            pid: Some(100 + index as u32),
            state: NodeState::Running,
            log_path: format!("/ev/nodes/{service}-{index}.log").into(),
            data_dir: "/ev/nodes/x.data".into(),
        };
        let nodes = vec![
            node(Service::ChainFire, 1, [127, 0, 1, 1], 2379),
            node(Service::ChainFire, 2, [127, 0, 1, 2], 2380),
            node(Service::FlareDb, 1, [127, 0, 2, 1], 5000),
        ];
        let text = describe(
            &nodes,
            Some("nsenter --target 7 --net"),
            Path::new("/ev"),
            "chainfire-ctl",
            "/bin/flaredb-ctl",
        );
        assert!(text.contains("chainfire-1"), "{text}");
        assert!(text.contains("client 127.0.2.1:5000"), "{text}");
        assert!(text.contains("log /ev/nodes/flaredb-1.log"), "{text}");
        assert!(
            text.contains(
                "  nsenter --target 7 --net -- chainfire-ctl --endpoints 127.0.1.1:2379,127.0.1.2:2380 status"
            ),
            "{text}"
        );
        assert!(
            text.contains("-- /bin/flaredb-ctl --endpoints 127.0.2.1:5000 status"),
            "{text}"
        );
        let host = describe(&nodes[..1], None, Path::new("/ev"), "chainfire-ctl", "f");
        assert!(
            host.contains("\n  chainfire-ctl --endpoints 127.0.1.1:2379 status"),
            "{host}"
        );
        assert!(
            !host.contains("flaredb-ctl") && !host.contains(" f "),
            "{host}"
        );
    }
}
