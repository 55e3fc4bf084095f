//! Reading the TCP connection table of the current network namespace (`/proc/net/tcp`) to check
//! which source address nodes use for their outgoing peer connections.
//!
//! A partition by IP (`-s A -d B`) only cuts node A off if A's outgoing connections come from
//! A's own address. On loopback the kernel picks 127.0.0.1 unless the program binds its source,
//! so the runner checks before it pretends to have partitioned anything.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// One established IPv4 TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

/// Established connections listed in a `/proc/net/tcp` text.
pub fn parse_proc_net_tcp(text: &str) -> Vec<Connection> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?;
            let local = parse_hex_addr(fields.next()?)?;
            let remote = parse_hex_addr(fields.next()?)?;
            let state = fields.next()?;
            // 01 = TCP_ESTABLISHED
            (state == "01").then_some(Connection { local, remote })
        })
        .collect()
}

/// `0100007F:0950` -> 127.0.0.1:2384 on a little-endian machine.
fn parse_hex_addr(field: &str) -> Option<SocketAddrV4> {
    let (ip, port) = field.split_once(':')?;
    let raw = u32::from_str_radix(ip, 16).ok()?;
    // The kernel prints the big-endian address as a native u32: its native bytes are the octets.
    let ip = Ipv4Addr::from(raw.to_ne_bytes());
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(ip, port))
}

/// Connections of this namespace that go to one of `peer_addrs`.
pub fn connections_to(peer_addrs: &[SocketAddr]) -> std::io::Result<Vec<Connection>> {
    let text = std::fs::read_to_string("/proc/self/net/tcp")?;
    Ok(parse_proc_net_tcp(&text)
        .into_iter()
        .filter(|c| peer_addrs.contains(&SocketAddr::V4(c.remote)))
        .collect())
}

/// Checks that every connection to a node's peer address comes from one of the node IPs.
pub fn check_sources(connections: &[Connection], node_ips: &[Ipv4Addr]) -> Result<usize, String> {
    if connections.is_empty() {
        return Err("no established connection to any peer port was found, so the source addresses nodes use cannot be checked".into());
    }
    let foreign: Vec<String> = connections
        .iter()
        .filter(|c| !node_ips.contains(c.local.ip()))
        .map(|c| format!("{} -> {}", c.local, c.remote))
        .collect();
    if foreign.is_empty() {
        Ok(connections.len())
    } else {
        Err(format!(
            "{} of {} peer connections do not come from a node address ({}); the nodes do not bind their outgoing connections to their own IP, so a partition by IP would not isolate them",
            foreign.len(),
            connections.len(),
            foreign.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0101007F:0955 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0201007F:C350 0101007F:0955 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C351 0101007F:0955 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn established_connections_are_decoded() {
        let conns = parse_proc_net_tcp(SAMPLE);
        assert_eq!(conns.len(), 2, "the LISTEN socket (0A) is not a connection");
        assert_eq!(conns[0].local.to_string(), "127.0.1.2:50000");
        assert_eq!(conns[0].remote.to_string(), "127.0.1.1:2389");
        assert_eq!(conns[1].local.to_string(), "127.0.0.1:50001");
    }

    #[test]
    fn a_connection_from_127_0_0_1_is_refused() {
        let conns = parse_proc_net_tcp(SAMPLE);
        let nodes = [Ipv4Addr::new(127, 0, 1, 1), Ipv4Addr::new(127, 0, 1, 2)];
        assert_eq!(check_sources(&conns[..1], &nodes), Ok(1));
        let err = check_sources(&conns, &nodes).unwrap_err();
        assert!(err.contains("127.0.0.1:50001 -> 127.0.1.1:2389"), "{err}");
        assert!(check_sources(&[], &nodes).is_err());
    }
}
