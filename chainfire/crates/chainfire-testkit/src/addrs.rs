//! Loopback addresses for test clusters: ports picked by the kernel (bind `127.0.0.1:0`), so
//! tests running at the same time, by several people on one machine, never collide.

use std::net::TcpListener;

/// `n` distinct free loopback ports. Every listener is held until all ports are picked, so the
/// ports differ from each other; they are released on return, right before the caller's
/// processes bind them.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("bind a free port on 127.0.0.1:0: {e}"))
        })
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .unwrap_or_else(|e| panic!("local address of a bound loopback listener: {e}"))
                .port()
        })
        .collect()
}

/// `n` distinct free `127.0.0.1:PORT` addresses.
pub fn loopback_addrs(n: usize) -> Vec<String> {
    free_ports(n)
        .into_iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect()
}

/// `1=ADDR,2=ADDR,...`: members numbered from 1 in the order given, the form of ChainFire's
/// `--initial-cluster` / `--cluster-client-addrs` and FlareDB's `--peers`.
pub fn member_list(addrs: &[String]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_ports(8);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 8, "{ports:?}");
        assert!(ports.iter().all(|&p| p != 0), "{ports:?}");
        for port in ports {
            TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("port {port} was handed out but cannot be bound: {e}"));
        }
    }

    #[test]
    fn member_lists_number_from_one() {
        let addrs = ["127.0.0.1:7001", "127.0.0.1:7002"].map(String::from);
        assert_eq!(member_list(&addrs), "1=127.0.0.1:7001,2=127.0.0.1:7002");
        assert_eq!(member_list(&[]), "");
        assert!(
            loopback_addrs(2)
                .iter()
                .all(|a| a.starts_with("127.0.0.1:"))
        );
    }
}
