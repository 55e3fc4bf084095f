//! The runner's clients reach every node through an in-path proxy of their own ([`proxy`]),
//! so the time between a client's attempts is observed where the client has no say, and link
//! faults (latency, resets, a blackhole) can be put on one client's path.
//!
//! Client `k` of a scenario reaches node `i` of a service through `127.<10+k>.<s>.<i>` at the
//! node's own client port (`s` is 1 for ChainFire, 2 for FlareDB), so an address in a client's
//! error still says which node it meant; on the host network, inside the run's own address
//! range (`supervisor::addresses::client_proxy_ip`). The client is told to dial the proxy wherever a
//! server names the node (`with_address_map`), so leader hints do not bypass it. Every
//! observation goes into the history as a `link` event, stamped with the history's clock.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::history::{EventKind, History, LinkRecord};
use crate::proxy::{LinkFault, LinkProxy, Observation, ObservationSink, ProxyConfig, ProxyError};
use crate::supervisor::NodeInfo;
use crate::supervisor::addresses::client_proxy_ip;

/// The proxied view of a cluster one client gets.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLinks {
    /// The proxy address of each node given, in the order given.
    pub endpoints: Vec<String>,
    /// Node address -> proxy address, for every node of the cluster.
    pub address_map: Vec<(String, String)>,
}

/// Records one proxy observation as a `link` event from `from` to `to`, on the history's clock.
pub fn record_link(history: &History, obs: Observation, from: String, to: String) {
    let (at, seen) = obs.into_parts();
    history.record_at(
        history.instant_to_ms(at),
        EventKind::Link(LinkRecord {
            link: seen.link,
            from,
            to,
            conn: seen.conn,
            what: seen.what,
        }),
    );
}

/// The proxies by (client name, node name).
type ProxyTable = BTreeMap<(String, String), Arc<LinkProxy>>;

/// The link fault on each node's client links (node name -> fault), for proxies started later.
type FaultTable = BTreeMap<String, LinkFault>;

/// Every link proxy of one scenario run.
#[derive(Clone)]
pub struct Links {
    history: History,
    proxies: Arc<Mutex<ProxyTable>>,
    faults: Arc<Mutex<FaultTable>>,
    /// Client name -> its number (from 1), in order of first use.
    numbers: Arc<Mutex<BTreeMap<String, u8>>>,
}

/// Where client number `client` (from 1) reaches `node`.
pub fn proxy_addr(client: u8, node: &NodeInfo) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(client_proxy_ip(client, node.service, node.index)),
        node.client_addr.port(),
    )
}

impl Links {
    pub fn new(history: History) -> Self {
        Links {
            history,
            proxies: Arc::new(Mutex::new(BTreeMap::new())),
            faults: Arc::new(Mutex::new(BTreeMap::new())),
            numbers: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn sink(&self, from: &str, to: &str) -> ObservationSink {
        let history = self.history.clone();
        let (from, to) = (from.to_owned(), to.to_owned());
        Arc::new(move |obs| record_link(&history, obs, from.clone(), to.clone()))
    }

    /// Starts (once) the proxies client `name` uses to reach `cluster`, and returns the proxy
    /// endpoints of `targets` and the address map for the whole cluster.
    pub async fn for_client(
        &self,
        name: &str,
        cluster: &[NodeInfo],
        targets: &[NodeInfo],
    ) -> Result<ClientLinks, ProxyError> {
        let number = {
            let mut numbers = self.numbers.lock().unwrap_or_else(|e| e.into_inner());
            let next = numbers.len() as u8 + 1;
            *numbers.entry(name.to_owned()).or_insert(next)
        };
        let mut address_map = Vec::new();
        let mut by_node = BTreeMap::new();
        for node in cluster {
            let key = (name.to_owned(), node.name.clone());
            let existing = self.lock().get(&key).cloned();
            let proxy = match existing {
                Some(p) => p,
                None => {
                    let config = ProxyConfig {
                        link: format!("{name}>{}", node.name),
                        listen: proxy_addr(number, node),
                        upstream: node.client_addr,
                        upstream_bind: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                        bind_as_peer: false,
                        observe_http2: true,
                    };
                    let proxy =
                        Arc::new(LinkProxy::start(config, self.sink(name, &node.name)).await?);
                    if let Some(fault) = self.faults().get(&node.name) {
                        proxy.set_fault(*fault);
                    }
                    self.lock().insert(key, proxy.clone());
                    proxy
                }
            };
            let addr = proxy.local_addr().to_string();
            address_map.push((node.endpoint(), addr.clone()));
            by_node.insert(node.name.clone(), addr);
        }
        let endpoints = targets
            .iter()
            .filter_map(|n| by_node.get(&n.name).cloned())
            .collect();
        Ok(ClientLinks {
            endpoints,
            address_map,
        })
    }

    /// Puts `fault` on every client link to `node` (clients made later get it too); returns
    /// how many links there are now.
    pub fn set_fault_to(&self, node: &str, fault: LinkFault) -> usize {
        let mut faults = self.faults();
        if fault == LinkFault::Pass {
            faults.remove(node);
        } else {
            faults.insert(node.to_owned(), fault);
        }
        let proxies = self.lock();
        let to_node = proxies.iter().filter(|((_, to), _)| to == node);
        to_node.map(|(_, proxy)| proxy.set_fault(fault)).count()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, FaultTable> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every proxy (their tasks end; connections close).
    pub async fn shutdown(&self) {
        let proxies: Vec<Arc<LinkProxy>> =
            std::mem::take(&mut *self.lock()).into_values().collect();
        for p in proxies {
            if let Ok(p) = Arc::try_unwrap(p) {
                p.shutdown().await;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProxyTable> {
        self.proxies.lock().unwrap_or_else(|e| e.into_inner())
    }
}
