//! iptables rules for network faults, confined to loopback addresses and to one chain of the
//! runner's own that is always removed.
//!
//! Rules live in a dedicated chain jumped to from INPUT and OUTPUT (loopback packets pass both),
//! so removing the faults is removing the chain, and nothing else in the firewall is edited.
//! Inside a private network namespace the chain dies with the namespace anyway; on the host
//! (`--host-network`) it is named after the worker's pid (parallel workers never share one), it
//! is removed on drop, by the SIGINT/SIGTERM teardown, and by the parent after the worker exits
//! (`remove_host_chain`), so even a SIGKILLed worker leaves no rule behind.
//!
//! Every address a rule names is a [`LoopbackIp`], which cannot hold anything outside
//! 127.0.0.0/8: a fault can never reach a real network.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Mutex;

use crate::netns::NetworkMode;

/// An IPv4 address in 127.0.0.0/8: the only kind of address a fault may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopbackIp(Ipv4Addr);

/// An address outside 127.0.0.0/8 was given to a fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to inject a fault on {0}: faults may only target loopback addresses (127.0.0.0/8)"
)]
pub struct NotLoopback(pub IpAddr);

impl LoopbackIp {
    pub fn new(ip: impl Into<IpAddr>) -> Result<LoopbackIp, NotLoopback> {
        match ip.into() {
            IpAddr::V4(v4) if v4.is_loopback() => Ok(LoopbackIp(v4)),
            other => Err(NotLoopback(other)),
        }
    }

    pub fn addr(self) -> Ipv4Addr {
        self.0
    }
}

impl fmt::Display for LoopbackIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/32", self.0)
    }
}

/// One DROP rule, built only from loopback addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Every packet from `from` to `to`.
    DropBetween { from: LoopbackIp, to: LoopbackIp },
    /// TCP packets to `ip:port` (someone talking to the port).
    DropToPort { ip: LoopbackIp, port: u16 },
    /// TCP packets from `ip:port` (the port answering).
    DropFromPort { ip: LoopbackIp, port: u16 },
}

impl Rule {
    /// The rule's match and target, as iptables arguments.
    pub fn spec(&self) -> Vec<String> {
        let v: Vec<String> = match self {
            Rule::DropBetween { from, to } => {
                vec!["-s".into(), from.to_string(), "-d".into(), to.to_string()]
            }
            Rule::DropToPort { ip, port } => vec![
                "-d".into(),
                ip.to_string(),
                "-p".into(),
                "tcp".into(),
                "--dport".into(),
                port.to_string(),
            ],
            Rule::DropFromPort { ip, port } => vec![
                "-s".into(),
                ip.to_string(),
                "-p".into(),
                "tcp".into(),
                "--sport".into(),
                port.to_string(),
            ],
        };
        v.into_iter()
            .chain(["-j".to_string(), "DROP".to_string()])
            .collect()
    }

    /// Rules cutting `a` and `b` apart in both directions.
    pub fn both_ways(a: LoopbackIp, b: LoopbackIp) -> [Rule; 2] {
        [
            Rule::DropBetween { from: a, to: b },
            Rule::DropBetween { from: b, to: a },
        ]
    }

    /// Rules silencing a TCP port: nothing reaches it, nothing comes back from it.
    pub fn port_blocked(ip: LoopbackIp, port: u16) -> [Rule; 2] {
        [
            Rule::DropToPort { ip, port },
            Rule::DropFromPort { ip, port },
        ]
    }
}

/// Why network faults cannot be injected here; cells that need them are reported skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("iptables is not usable: {reason}")]
pub struct FirewallUnavailable {
    pub reason: String,
}

/// An iptables command that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`iptables {}` failed: {stderr}", .args.join(" "))]
pub struct IptablesError {
    pub args: Vec<String>,
    pub stderr: String,
}

/// Host chains that exist right now (for the signal teardown).
static HOST_CHAINS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The runner's chain in the current network namespace, with the rules it holds.
#[derive(Debug)]
pub struct Firewall {
    chain: String,
    mode: NetworkMode,
    rules: Mutex<Vec<Rule>>,
    removed: Mutex<bool>,
}

/// The chain a worker uses: fixed inside its own namespace, per worker pid on the host.
pub fn chain_name(mode: NetworkMode, worker_pid: u32) -> String {
    match mode {
        NetworkMode::PrivateNamespace => "RECONNECT-TESTS".to_string(),
        NetworkMode::HostNetwork => format!("RECONNECT-{worker_pid}"),
    }
}

fn iptables(args: &[String]) -> Result<String, IptablesError> {
    let mut full = vec!["-w".to_string()];
    full.extend(args.iter().cloned());
    let output = Command::new("iptables")
        .args(&full)
        .output()
        .map_err(|e| IptablesError {
            args: full.clone(),
            stderr: format!("cannot run iptables: {e}"),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(IptablesError {
            args: full,
            stderr: format!(
                "{} ({})",
                String::from_utf8_lossy(&output.stderr).trim(),
                output.status
            ),
        })
    }
}

fn strs(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

impl Firewall {
    /// Checks that iptables works here and installs the runner's (empty) chain.
    pub fn open(mode: NetworkMode) -> Result<Firewall, FirewallUnavailable> {
        let chain = chain_name(mode, std::process::id());
        let unavailable = |e: IptablesError| FirewallUnavailable {
            reason: e.to_string(),
        };
        iptables(&strs(&["-S", "INPUT"])).map_err(unavailable)?;
        // A leftover chain of the same name (a dead worker with a reused pid) is emptied.
        if iptables(&strs(&["-S", &chain])).is_ok() {
            remove_chain(&chain).map_err(unavailable)?;
        }
        iptables(&strs(&["-N", &chain])).map_err(unavailable)?;
        let firewall = Firewall {
            chain: chain.clone(),
            mode,
            rules: Mutex::new(Vec::new()),
            removed: Mutex::new(false),
        };
        if mode == NetworkMode::HostNetwork {
            HOST_CHAINS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(chain.clone());
        }
        for hook in ["INPUT", "OUTPUT"] {
            iptables(&strs(&["-I", hook, "1", "-j", &chain])).map_err(unavailable)?;
        }
        Ok(firewall)
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    pub fn mode(&self) -> NetworkMode {
        self.mode
    }

    /// Appends rules; returns the iptables arguments used (for the evidence).
    pub fn add(&self, rules: &[Rule]) -> Result<Vec<String>, IptablesError> {
        let mut applied = Vec::new();
        for rule in rules {
            let mut args = vec!["-A".to_string(), self.chain.clone()];
            args.extend(rule.spec());
            iptables(&args)?;
            self.rules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(rule.clone());
            applied.push(args.join(" "));
        }
        Ok(applied)
    }

    /// Deletes rules added before (one instance each); returns the iptables arguments used.
    pub fn delete(&self, rules: &[Rule]) -> Result<Vec<String>, IptablesError> {
        let mut applied = Vec::new();
        for rule in rules {
            let mut args = vec!["-D".to_string(), self.chain.clone()];
            args.extend(rule.spec());
            iptables(&args)?;
            let mut held = self.rules.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pos) = held.iter().position(|r| r == rule) {
                held.remove(pos);
            }
            applied.push(args.join(" "));
        }
        Ok(applied)
    }

    /// The rules the chain holds now, as iptables lists them (`-S`), for evidence and tests.
    pub fn list(&self) -> Result<Vec<String>, IptablesError> {
        Ok(iptables(&strs(&["-S", &self.chain]))?
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect())
    }

    /// Removes every rule and the chain itself (idempotent).
    pub fn remove(&self) -> Result<(), IptablesError> {
        let mut removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        if *removed {
            return Ok(());
        }
        remove_chain(&self.chain)?;
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
        HOST_CHAINS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.chain);
        *removed = true;
        Ok(())
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if let Err(err) = self.remove() {
            eprintln!(
                "reconnect-runner: removing iptables chain {}: {err}",
                self.chain
            );
        }
    }
}

/// Unhooks, flushes and deletes a chain; a chain that does not exist is fine.
fn remove_chain(chain: &str) -> Result<(), IptablesError> {
    for hook in ["INPUT", "OUTPUT"] {
        // Delete every jump (there is one unless something went wrong halfway).
        while iptables(&strs(&["-D", hook, "-j", chain])).is_ok() {}
    }
    if iptables(&strs(&["-S", chain])).is_err() {
        return Ok(());
    }
    iptables(&strs(&["-F", chain]))?;
    iptables(&strs(&["-X", chain]))?;
    Ok(())
}

/// Removes the host chains (`RECONNECT-<pid>`) of workers that are gone: a runner killed with
/// SIGKILL leaves its workers' chains hooked into INPUT/OUTPUT with their DROP rules. Returns
/// the chains removed, for the run to say so.
pub fn remove_orphaned_host_chains() -> Result<Vec<String>, IptablesError> {
    let listing = iptables(&strs(&["-S"]))?;
    let mut removed = Vec::new();
    for line in listing.lines() {
        let Some(chain) = line.strip_prefix("-N ") else {
            continue;
        };
        let Some(pid) = chain
            .strip_prefix("RECONNECT-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !is_running(pid) {
            remove_chain(chain)?;
            removed.push(chain.to_owned());
        }
    }
    Ok(removed)
}

/// Whether `pid` is a running process: a zombie (dead, not yet reaped by a parent that was
/// itself killed) is not.
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|state| !matches!(state.trim().chars().next(), Some('Z' | 'X')))
    })
}

/// Parent side, after a `--host-network` worker exited (however it exited): removes its chain.
pub fn remove_host_chain(worker_pid: u32) -> Result<(), IptablesError> {
    remove_chain(&chain_name(NetworkMode::HostNetwork, worker_pid))
}

/// Removes every host chain this process made (signal teardown); returns how many.
pub fn remove_registered_chains() -> usize {
    let chains: Vec<String> = HOST_CHAINS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    chains.iter().filter(|c| remove_chain(c).is_ok()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_addresses_are_refused() {
        for bad in [
            "10.0.0.1",
            "192.168.1.10",
            "0.0.0.0",
            "8.8.8.8",
            "255.255.255.255",
            "128.0.0.1",
        ] {
            let ip: Ipv4Addr = bad.parse().unwrap();
            let err = LoopbackIp::new(ip).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(
            LoopbackIp::new(v6).is_err(),
            "IPv6 is not handled, so it is refused"
        );
        assert!(LoopbackIp::new(Ipv4Addr::new(127, 0, 1, 2)).is_ok());
        assert!(LoopbackIp::new(Ipv4Addr::new(127, 255, 0, 1)).is_ok());
    }

    #[test]
    fn rules_render_as_the_note_writes_them() {
        let a = LoopbackIp::new(Ipv4Addr::new(127, 0, 1, 2)).unwrap();
        let b = LoopbackIp::new(Ipv4Addr::new(127, 0, 1, 1)).unwrap();
        let [there, back] = Rule::both_ways(a, b);
        assert_eq!(
            there.spec().join(" "),
            "-s 127.0.1.2/32 -d 127.0.1.1/32 -j DROP"
        );
        assert_eq!(
            back.spec().join(" "),
            "-s 127.0.1.1/32 -d 127.0.1.2/32 -j DROP"
        );
        let [to, from] = Rule::port_blocked(a, 2380);
        assert_eq!(
            to.spec().join(" "),
            "-d 127.0.1.2/32 -p tcp --dport 2380 -j DROP"
        );
        assert_eq!(
            from.spec().join(" "),
            "-s 127.0.1.2/32 -p tcp --sport 2380 -j DROP"
        );
        assert_eq!(chain_name(NetworkMode::HostNetwork, 42), "RECONNECT-42");
    }

    /// Connects from source `from` to `to` within 300 ms (a dropped SYN times out).
    fn reachable(from: Ipv4Addr, to: std::net::SocketAddr) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(std::net::SocketAddr::new(from.into(), 0))
                .unwrap();
            let connect = socket.connect(to);
            matches!(
                tokio::time::timeout(std::time::Duration::from_millis(300), connect).await,
                Ok(Ok(_))
            )
        })
    }

    #[test]
    fn rules_really_drop_traffic_inside_a_namespace() {
        use crate::netns::test_support;
        if !test_support::run_isolated(
            "faults::firewall::tests::rules_really_drop_traffic_inside_a_namespace",
        ) {
            return;
        }
        let node1 = Ipv4Addr::new(127, 0, 1, 1);
        let node2 = Ipv4Addr::new(127, 0, 1, 2);
        let listener = std::net::TcpListener::bind((node1, 2389)).unwrap();
        let target = listener.local_addr().unwrap();
        let firewall = Firewall::open(NetworkMode::PrivateNamespace).unwrap();
        assert!(reachable(node2, target), "no rule yet");

        let ip1 = LoopbackIp::new(node1).unwrap();
        let ip2 = LoopbackIp::new(node2).unwrap();
        let added = firewall.add(&Rule::both_ways(ip2, ip1)).unwrap();
        assert_eq!(
            added[0],
            "-A RECONNECT-TESTS -s 127.0.1.2/32 -d 127.0.1.1/32 -j DROP"
        );
        assert_eq!(firewall.list().unwrap().len(), 2);
        assert!(!reachable(node2, target), "partitioned node got through");
        assert!(
            reachable(Ipv4Addr::new(127, 0, 1, 3), target),
            "a third node must not be cut off"
        );
        firewall.delete(&Rule::both_ways(ip2, ip1)).unwrap();
        assert!(reachable(node2, target), "healed");

        firewall.add(&Rule::port_blocked(ip1, 2389)).unwrap();
        assert!(
            !reachable(Ipv4Addr::new(127, 0, 1, 3), target),
            "blocked port answered"
        );
        firewall.remove().unwrap();
        assert!(
            reachable(Ipv4Addr::new(127, 0, 1, 3), target),
            "removing the chain removes its rules"
        );
        let all = iptables(&strs(&["-S"])).unwrap();
        assert!(
            !all.contains("RECONNECT-TESTS"),
            "chain left behind:\n{all}"
        );
    }
}
