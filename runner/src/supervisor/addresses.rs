//! The address plan: which loopback IP and ports each node gets.
//!
//! Every node has its own 127.0.0.0/8 address so faults can name a node by IP the way the design
//! note does (`iptables -A INPUT -s <node2-ip> -j DROP`); 127.0.0.1 is left to the runner and its
//! clients so no client is mistaken for a node. Inside a private network namespace the note's
//! fixed ports are used (nothing else lives there); on the host network free ports are picked so
//! parallel runs and other services never collide, and each worker claims its own address range
//! (127.X.*.*, X in 200..=254, held by a lock file for the process's life) so one run's iptables
//! rules never cut another run's nodes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::sync::OnceLock;

use crate::netns::NetworkMode;

use super::{Service, SupervisorError};

/// Where one node listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddresses {
    pub ip: Ipv4Addr,
    /// The client API (gRPC; IAM's internal API).
    pub client: SocketAddr,
    /// The Raft peer transport; for IAM, which has no peers, its HTTP Query API.
    pub peer: SocketAddr,
}

/// The second octet of this process's node addresses on the host network (see
/// [`claim_host_range`]); 0 inside a private namespace.
static HOST_RANGE: OnceLock<(u8, std::fs::File)> = OnceLock::new();

/// Claims an address range of its own for this process's nodes on the host network: the first
/// X in 200..=254 whose lock file (`$TMPDIR/reconnect-runner-net-X.lock`) no live process holds.
/// The lock goes with the process, however it dies.
pub fn claim_host_range() -> Result<u8, String> {
    if let Some((octet, _)) = HOST_RANGE.get() {
        return Ok(*octet);
    }
    for octet in 200..=254u8 {
        let path = std::env::temp_dir().join(format!("reconnect-runner-net-{octet}.lock"));
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if file.try_lock().is_ok() {
            let _ = HOST_RANGE.set((octet, file));
            return Ok(octet);
        }
    }
    Err("every host-network address range (127.200-254.*.*) is held by another run".into())
}

/// The third octet of a service's addresses: 1 ChainFire, 2 FlareDB, 3 IAM, 4 PlasmaVMC.
pub fn service_octet(service: Service) -> u8 {
    match service {
        Service::ChainFire => 1,
        Service::FlareDb => 2,
        Service::Iam => 3,
        Service::PlasmaVmc => 4,
    }
}

/// The node's loopback IP: ChainFire node i is 127.X.1.i, FlareDB node i is 127.X.2.i, IAM
/// instance i 127.X.3.i, with X 0 in a private namespace and the claimed range on the host
/// network.
pub fn node_ip(service: Service, index: usize) -> Ipv4Addr {
    let third = service_octet(service);
    let second = HOST_RANGE.get().map_or(0, |(octet, _)| *octet);
    Ipv4Addr::new(127, second, third, index as u8)
}

/// Where client number `client` (from 1) reaches node `index` of `service` through its proxy
/// (see `links`): `127.<10+client>.<s>.<i>` in a private namespace (`s` 1 for ChainFire, 2 for
/// FlareDB, 3 for IAM), and inside the claimed range on the host network,
/// `127.X.<10+client>.<10*s+i>`, so two runs' proxies never share an address either.
pub fn client_proxy_ip(client: u8, service: Service, index: usize) -> Ipv4Addr {
    let s = service_octet(service);
    let client = 10u8.saturating_add(client);
    match HOST_RANGE.get() {
        Some((octet, _)) => Ipv4Addr::new(127, *octet, client, 10 * s + index as u8),
        None => Ipv4Addr::new(127, client, s, index as u8),
    }
}

/// Fixed ports of the plan (ChainFire clients 2379.., peers 2389..; FlareDB clients 5000..,
/// peers 5100..; IAM internal gRPC 8091.., HTTP Query API 8081..; PlasmaVMC's API 7001..,
/// and 7101.. as its "peer" port, which nothing listens on: it has no peers).
fn fixed_ports(service: Service, index: usize) -> (u16, u16) {
    let i = index as u16;
    match service {
        Service::ChainFire => (2378 + i, 2388 + i),
        Service::FlareDb => (4999 + i, 5099 + i),
        Service::Iam => (8090 + i, 8080 + i),
        Service::PlasmaVmc => (7000 + i, 7100 + i),
    }
}

/// Plans the addresses of node `index` (1-based) of a cluster.
pub fn plan(
    service: Service,
    index: usize,
    mode: NetworkMode,
) -> Result<NodeAddresses, SupervisorError> {
    if index == 0 || index > 9 {
        return Err(SupervisorError::BadCluster(format!(
            "{service} node index {index} is outside 1..=9"
        )));
    }
    let ip = node_ip(service, index);
    let (client_port, peer_port) = match mode {
        NetworkMode::PrivateNamespace => fixed_ports(service, index),
        NetworkMode::HostNetwork => (free_port(ip)?, free_port(ip)?),
    };
    Ok(NodeAddresses {
        ip,
        client: SocketAddr::V4(SocketAddrV4::new(ip, client_port)),
        peer: SocketAddr::V4(SocketAddrV4::new(ip, peer_port)),
    })
}

/// Asks the kernel for a port that is free on `ip` right now.
fn free_port(ip: Ipv4Addr) -> Result<u16, SupervisorError> {
    let listener = TcpListener::bind((ip, 0)).map_err(|source| SupervisorError::Io {
        what: format!("finding a free port on {ip}"),
        source,
    })?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| SupervisorError::Io {
            what: format!("finding a free port on {ip}"),
            source,
        })?;
    Ok(port)
}

/// Fails with a clear error when something already listens on `addr`.
pub fn ensure_free(addr: SocketAddr, node_name: &str, role: &str) -> Result<(), SupervisorError> {
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(source) => Err(SupervisorError::PortInUse {
            node: node_name.to_string(),
            addr,
            role: role.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_plan_uses_the_notes_ports_and_one_ip_per_node() {
        let a = plan(Service::ChainFire, 1, NetworkMode::PrivateNamespace).unwrap();
        assert_eq!(a.client.to_string(), "127.0.1.1:2379");
        assert_eq!(a.peer.to_string(), "127.0.1.1:2389");
        let c = plan(Service::ChainFire, 3, NetworkMode::PrivateNamespace).unwrap();
        assert_eq!(c.client.to_string(), "127.0.1.3:2381");
        let f = plan(Service::FlareDb, 2, NetworkMode::PrivateNamespace).unwrap();
        assert_eq!(f.client.to_string(), "127.0.2.2:5001");
        assert_eq!(f.peer.to_string(), "127.0.2.2:5101");
        let i = plan(Service::Iam, 3, NetworkMode::PrivateNamespace).unwrap();
        assert_eq!(
            i.client.to_string(),
            "127.0.3.3:8093",
            "the internal gRPC API"
        );
        assert_eq!(i.peer.to_string(), "127.0.3.3:8083", "the HTTP Query API");
        // No node ever gets the runner's own address.
        for s in Service::ALL {
            for i in 1..=9 {
                assert_ne!(node_ip(s, i), Ipv4Addr::LOCALHOST);
                assert!(node_ip(s, i).is_loopback());
            }
        }
    }

    #[test]
    fn host_plan_picks_free_ports_on_the_nodes_ip() {
        let a = plan(Service::ChainFire, 2, NetworkMode::HostNetwork).unwrap();
        assert_eq!(a.ip, Ipv4Addr::new(127, 0, 1, 2));
        assert_ne!(a.client.port(), 0);
        ensure_free(a.client, "chainfire-2", "client").unwrap();
    }

    #[test]
    fn client_proxies_never_take_a_node_address() {
        // (This process never claims a host range: the private-namespace plan.)
        assert_eq!(
            client_proxy_ip(3, Service::FlareDb, 2),
            Ipv4Addr::new(127, 13, 2, 2)
        );
        for s in Service::ALL {
            for i in 1..=9 {
                for k in 1..=40 {
                    let ip = client_proxy_ip(k, s, i);
                    assert!(ip.is_loopback() && ip != Ipv4Addr::LOCALHOST);
                    for node_service in Service::ALL {
                        assert_ne!(ip, node_ip(node_service, i));
                    }
                }
            }
        }
    }

    #[test]
    fn a_taken_port_is_named_in_the_error() {
        let taken = TcpListener::bind("127.0.1.7:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = ensure_free(addr, "chainfire-7", "peer")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&addr.to_string()) && err.contains("chainfire-7"),
            "{err}"
        );
        assert!(plan(Service::ChainFire, 0, NetworkMode::PrivateNamespace).is_err());
    }
}
