//! An in-path TCP proxy for one link (a client to a node, or one Raft peer link), so that a
//! client's reconnection behaviour is measured where the client has no say.
//!
//! A [`LinkProxy`] listens on one loopback socket and forwards every connection to one loopback
//! upstream. It reports, through an [`ObservationSink`], every connection accepted, its upstream
//! connect, and its close; with [`ProxyConfig::observe_http2`] it also watches the HTTP/2 frames
//! (without decoding headers) and reports every stream, i.e. every gRPC request, opening and how
//! it ended. Times are taken when the proxy read the bytes, before any injected delay. The gaps
//! between a client's attempts can then be computed from the observations, e.g. with
//! [`stream_spans`].
//!
//! The same proxy injects link faults ([`LinkFault`]): added latency, TCP resets, and a
//! blackhole. Faults apply to existing and new connections at once:
//! - `Delay` holds every chunk read, in each direction, until `each_way` after it was read; a FIN
//!   is held the same way, a reset passes at once;
//! - `Reset` closes every existing connection, both sides, with a TCP RST (`SO_LINGER` 0), and
//!   resets every new one right after accept; every call to `set_fault(Reset)` resets the
//!   connections open at that moment, even if the fault changes again immediately;
//! - `Blackhole` keeps accepting and reading (and observing) but forwards nothing either way and
//!   does not connect new connections upstream. Closes do not pass either: if the server closes,
//!   the client's connection stays open (and observed); if the client closes, that is reported
//!   and the client gets its FIN, but the upstream socket is held open, silent. Bytes read
//!   meanwhile are gone, so leaving a blackhole resets (RST) every connection and held socket
//!   that lived through it; clients reconnect.
//!
//! Only IPv4 loopback addresses (127.0.0.0/8) are accepted, for the listener, the upstream, and
//! the outgoing source address; anything else is refused before any socket is opened.
//!
//! Not done here: judging backoff. That is the checks' job, from the observations.

mod h2;
mod spans;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use h2::{H2Event, H2Watcher};
pub use spans::{StreamSpan, stream_spans};

/// What one proxy listens on, forwards to, and watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Name for the observations, e.g. `client-1->chainfire-2`.
    pub link: String,
    /// Where to listen; port 0 picks a free port. Must be IPv4 loopback.
    pub listen: SocketAddr,
    /// Where to forward. Must be IPv4 loopback.
    pub upstream: SocketAddr,
    /// Source address of the outgoing connections (port chosen by the kernel), so that packet
    /// filter rules written for a node's address still apply. Must be IPv4 loopback.
    pub upstream_bind: Option<IpAddr>,
    /// Bind each outgoing connection to the source address of the connection it carries
    /// instead (a shared proxy in front of a Raft peer: node A's traffic still leaves from A's
    /// address, so partition rules between node addresses hold). Loopback sources only.
    pub bind_as_peer: bool,
    /// Watch HTTP/2 frames to report streams (gRPC requests).
    pub observe_http2: bool,
}

/// A fault on the link; see the module documentation for the exact behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkFault {
    Pass,
    Delay { each_way: Duration },
    Reset,
    Blackhole,
}

/// Receives every observation, synchronously, from the proxy's tasks. Keep it quick.
pub type ObservationSink = Arc<dyn Fn(Observation) + Send + Sync>;

/// One thing the proxy saw, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub link: String,
    pub at: Instant,
    /// Connection number, unique within one proxy, from 1.
    pub conn: u64,
    pub what: Observed,
}

/// [`Observation`] without its time, as plain data for a history that keeps its own clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedAt {
    pub link: String,
    pub conn: u64,
    pub what: Observed,
}

impl Observation {
    /// Splits off the time, leaving plain data.
    pub fn into_parts(self) -> (Instant, ObservedAt) {
        (
            self.at,
            ObservedAt {
                link: self.link,
                conn: self.conn,
                what: self.what,
            },
        )
    }
}

pub use crate::history::{Observed, Side, StreamEnd};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "proxy {link}: {what} address {addr} is not IPv4 loopback (127.0.0.0/8); the proxy only \
         ever uses loopback addresses"
    )]
    NotLoopback {
        link: String,
        what: &'static str,
        addr: IpAddr,
    },
    #[error("proxy {link}: cannot listen on {addr}: {source}")]
    Listen {
        link: String,
        addr: SocketAddr,
        source: io::Error,
    },
}

fn is_ipv4_loopback(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_loopback())
}

impl ProxyConfig {
    /// Refuses any address outside 127.0.0.0/8.
    pub fn check_loopback(&self) -> Result<(), ProxyError> {
        let addrs = [
            ("listen", Some(self.listen.ip())),
            ("upstream", Some(self.upstream.ip())),
            ("upstream_bind", self.upstream_bind),
        ];
        for (what, addr) in addrs {
            if let Some(addr) = addr
                && !is_ipv4_loopback(addr)
            {
                return Err(ProxyError::NotLoopback {
                    link: self.link.clone(),
                    what,
                    addr,
                });
            }
        }
        Ok(())
    }
}

/// The fault plus counters that let a connection notice a reset or blackhole it may have missed
/// because the fault changed again before it looked.
#[derive(Debug, Clone, Copy)]
struct FaultState {
    fault: LinkFault,
    /// Incremented by every `set_fault(Reset)`.
    resets: u64,
    /// Incremented on every change into `Blackhole`.
    blackholes: u64,
}

struct Shared {
    config: ProxyConfig,
    sink: ObservationSink,
    faults: watch::Sender<FaultState>,
    shutdown: watch::Sender<bool>,
    next_conn: AtomicU64,
}

impl Shared {
    fn emit(&self, conn: u64, at: Instant, what: Observed) {
        (self.sink)(Observation {
            link: self.config.link.clone(),
            at,
            conn,
            what,
        });
    }
}

/// One listening socket forwarding to one upstream. Dropping it without
/// [`shutdown`](LinkProxy::shutdown) still stops it, in the background.
pub struct LinkProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_loop: Option<JoinHandle<()>>,
}

impl LinkProxy {
    /// Checks the addresses, binds the listener, and starts accepting.
    pub async fn start(
        config: ProxyConfig,
        sink: ObservationSink,
    ) -> Result<LinkProxy, ProxyError> {
        config.check_loopback()?;
        let listen_error = |source| ProxyError::Listen {
            link: config.link.clone(),
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(listen_error)?;
        let local_addr = listener.local_addr().map_err(listen_error)?;
        let (faults, _) = watch::channel(FaultState {
            fault: LinkFault::Pass,
            resets: 0,
            blackholes: 0,
        });
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            sink,
            faults,
            shutdown,
            next_conn: AtomicU64::new(1),
        });
        let accept_loop = tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(LinkProxy {
            shared,
            local_addr,
            accept_loop: Some(accept_loop),
        })
    }

    /// The address clients should connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn link(&self) -> &str {
        &self.shared.config.link
    }

    /// Changes the fault for existing and new connections.
    pub fn set_fault(&self, fault: LinkFault) {
        self.shared.faults.send_modify(|state| {
            if fault == LinkFault::Reset {
                state.resets += 1;
            }
            if fault == LinkFault::Blackhole && state.fault != LinkFault::Blackhole {
                state.blackholes += 1;
            }
            state.fault = fault;
        });
    }

    pub fn fault(&self) -> LinkFault {
        self.shared.faults.borrow().fault
    }

    /// Stops accepting, closes every connection (each reported as closed by the proxy), and
    /// returns once every task of this proxy has finished.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(accept_loop) = self.accept_loop.take() {
            let _ = accept_loop.await;
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// Resolves once the proxy is told to stop (or its handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(connection(shared.clone(), conn, client, peer));
                }
                Err(error) => {
                    // E.g. out of file descriptors: do not spin.
                    tracing::warn!(link = %shared.config.link, %error, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Why a connection stops, from the proxy's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Reset,
    LeaveBlackhole,
    Shutdown,
}

/// Follows fault changes for one connection.
struct ControlWatch {
    faults: watch::Receiver<FaultState>,
    shutdown: watch::Receiver<bool>,
    resets: u64,
    blackholes: u64,
    in_blackhole: bool,
}

impl ControlWatch {
    fn new(shared: &Shared) -> ControlWatch {
        let mut faults = shared.faults.subscribe();
        let state = *faults.borrow_and_update();
        ControlWatch {
            faults,
            shutdown: shared.shutdown.subscribe(),
            resets: state.resets,
            blackholes: state.blackholes,
            in_blackhole: state.fault == LinkFault::Blackhole,
        }
    }

    fn fault(&self) -> LinkFault {
        self.faults.borrow().fault
    }

    /// Waits until this connection must stop.
    async fn next(&mut self) -> Control {
        loop {
            if *self.shutdown.borrow_and_update() {
                return Control::Shutdown;
            }
            let state = *self.faults.borrow_and_update();
            if state.resets != self.resets {
                return Control::Reset;
            }
            if state.blackholes != self.blackholes {
                self.in_blackhole = true;
            }
            if self.in_blackhole && state.fault != LinkFault::Blackhole {
                return Control::LeaveBlackhole;
            }
            tokio::select! {
                changed = self.faults.changed() => if changed.is_err() { return Control::Shutdown },
                changed = self.shutdown.changed() => if changed.is_err() { return Control::Shutdown },
            }
        }
    }
}

impl Control {
    fn reason(self) -> &'static str {
        match self {
            Control::Reset => "reset fault",
            Control::LeaveBlackhole => "blackhole lifted (bytes read during it were discarded)",
            Control::Shutdown => "proxy shut down",
        }
    }

    /// Whether to close with a TCP RST rather than a FIN.
    fn abortive(self) -> bool {
        !matches!(self, Control::Shutdown)
    }
}

/// How a connection ended.
struct Ending {
    by: Side,
    reason: String,
    /// Close the sockets with RST.
    abortive: bool,
}

fn reset_close(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Reports the end of a connection: its open streams first, then the connection.
fn report_close(shared: &Shared, conn: u64, watcher: &Mutex<H2Watcher>, ending: &Ending) {
    let at = Instant::now();
    let events = lock(watcher).connection_closed();
    emit_h2(shared, conn, at, events);
    shared.emit(
        conn,
        at,
        Observed::ConnClosed {
            by: ending.by,
            reason: ending.reason.clone(),
        },
    );
}

fn lock(watcher: &Mutex<H2Watcher>) -> std::sync::MutexGuard<'_, H2Watcher> {
    watcher
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn emit_h2(shared: &Shared, conn: u64, at: Instant, events: Vec<H2Event>) {
    for event in events {
        let what = match event {
            H2Event::Opened(stream) => Observed::StreamOpened { stream },
            H2Event::Closed(stream, by) => Observed::StreamClosed { stream, by },
        };
        shared.emit(conn, at, what);
    }
}

async fn connect_upstream(config: &ProxyConfig, peer: SocketAddr) -> io::Result<TcpStream> {
    let source = if config.bind_as_peer && is_ipv4_loopback(peer.ip()) {
        Some(peer.ip())
    } else {
        config.upstream_bind
    };
    match source {
        None => TcpStream::connect(config.upstream).await,
        Some(source) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(config.upstream).await
        }
    }
}

async fn connection(shared: Arc<Shared>, conn: u64, client: TcpStream, peer: SocketAddr) {
    shared.emit(conn, Instant::now(), Observed::ConnAccepted { peer });
    let mut control = ControlWatch::new(&shared);
    let watcher = Mutex::new(H2Watcher::new(shared.config.observe_http2));
    let _ = client.set_nodelay(true);

    let ending = match control.fault() {
        LinkFault::Reset => {
            reset_close(client);
            Ending {
                by: Side::Proxy,
                reason: Control::Reset.reason().to_owned(),
                abortive: true,
            }
        }
        LinkFault::Blackhole => blackholed(&shared, conn, client, &mut control, &watcher).await,
        LinkFault::Pass | LinkFault::Delay { .. } => {
            // While the upstream connect is pending (a blocked port drops the SYN: it can hang
            // for minutes), the client is still read and watched: its requests and, above all,
            // the moment it gives up and closes are part of what is observed. What it sent is
            // held and written upstream first once connected (each piece no earlier than a
            // `Delay` says, counted from when it was read, like every later chunk).
            let mut client = client;
            let mut early: Vec<(Instant, Vec<u8>)> = Vec::new();
            let mut early_len = 0;
            let mut buf = vec![0u8; 16 * 1024];
            let connecting = connect_upstream(&shared.config, peer);
            tokio::pin!(connecting);
            let connected = loop {
                tokio::select! {
                    connected = &mut connecting => break Ok(connected),
                    stop = control.next() => break Err(Pending::Control(stop)),
                    read = client.read(&mut buf), if early_len < EARLY_BYTES_MAX => match read {
                        Ok(0) => break Err(Pending::ClientGone("eof".to_owned(), false)),
                        Ok(n) => {
                            let at = Instant::now();
                            let events = lock(&watcher).client_bytes(&buf[..n]);
                            emit_h2(&shared, conn, at, events);
                            early.push((at, buf[..n].to_vec()));
                            early_len += n;
                        }
                        Err(error) => break Err(Pending::ClientGone(error.to_string(), true)),
                    },
                }
            };
            match connected {
                Ok(Ok(mut server)) => {
                    shared.emit(conn, Instant::now(), Observed::UpstreamConnected);
                    let _ = server.set_nodelay(true);
                    if write_held(&mut server, early, &control).await.is_err() {
                        report_close(
                            &shared,
                            conn,
                            &watcher,
                            &Ending {
                                by: Side::Server,
                                reason: "upstream closed before the held bytes were written".into(),
                                abortive: true,
                            },
                        );
                        reset_close(client);
                        return;
                    }
                    let forwarded =
                        forward(&shared, conn, client, server, &mut control, &watcher).await;
                    if let Some(server) = forwarded.held_upstream {
                        report_close(&shared, conn, &watcher, &forwarded.ending);
                        hold_until_lifted(server, &mut control).await;
                        return;
                    }
                    forwarded.ending
                }
                Ok(Err(error)) => {
                    shared.emit(
                        conn,
                        Instant::now(),
                        Observed::UpstreamFailed {
                            error: error.to_string(),
                        },
                    );
                    if control.fault() == LinkFault::Blackhole {
                        // A blackhole began while connecting: the client must not hear of it.
                        blackholed(&shared, conn, client, &mut control, &watcher).await
                    } else {
                        // Like a refused connection, as far as the client can tell.
                        reset_close(client);
                        Ending {
                            by: Side::Proxy,
                            reason: format!("upstream connect failed: {error}"),
                            abortive: true,
                        }
                    }
                }
                Err(Pending::Control(stop)) => {
                    if stop.abortive() {
                        reset_close(client);
                    }
                    Ending {
                        by: Side::Proxy,
                        reason: stop.reason().to_owned(),
                        abortive: stop.abortive(),
                    }
                }
                Err(Pending::ClientGone(reason, abortive)) => Ending {
                    by: Side::Client,
                    reason: format!("{reason} (before the upstream connect completed)"),
                    abortive,
                },
            }
        }
    };
    report_close(&shared, conn, &watcher, &ending);
}

/// Writes what a client sent while its upstream connect was pending, each piece no earlier
/// than the link's `Delay` (if any) after it was read.
async fn write_held(
    server: &mut TcpStream,
    held: Vec<(Instant, Vec<u8>)>,
    control: &ControlWatch,
) -> io::Result<()> {
    for (read_at, data) in held {
        if let LinkFault::Delay { each_way } = control.fault() {
            tokio::time::sleep_until((read_at + each_way).into()).await;
        }
        server.write_all(&data).await?;
    }
    Ok(())
}

/// Most bytes held from a client while its upstream connect is pending (reading pauses then).
const EARLY_BYTES_MAX: usize = 256 * 1024;

/// Why a pending upstream connect was given up.
enum Pending {
    Control(Control),
    /// The client closed (reason, abortive) before the upstream connect completed.
    ClientGone(String, bool),
}

/// A connection accepted during a blackhole: read (and observe) the client, forward nothing, no
/// upstream.
async fn blackholed(
    shared: &Shared,
    conn: u64,
    mut client: TcpStream,
    control: &mut ControlWatch,
    watcher: &Mutex<H2Watcher>,
) -> Ending {
    let mut buf = vec![0u8; 16 * 1024];
    let ending = loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) => break Ending { by: Side::Client, reason: "eof".into(), abortive: false },
                Ok(n) => {
                    let at = Instant::now();
                    let events = lock(watcher).client_bytes(&buf[..n]);
                    emit_h2(shared, conn, at, events);
                }
                Err(error) => break Ending { by: Side::Client, reason: error.to_string(), abortive: true },
            },
            stop = control.next() => break Ending {
                by: Side::Proxy,
                reason: stop.reason().to_owned(),
                abortive: stop.abortive(),
            },
        }
    };
    if ending.abortive {
        reset_close(client);
    }
    ending
}

/// Bytes read from one side, with when they were read.
struct Chunk {
    read_at: Instant,
    data: Vec<u8>,
}

/// How many chunks may wait (delayed) per direction before reading pauses.
const QUEUE_CHUNKS: usize = 1024;

async fn read_side(
    shared: &Shared,
    conn: u64,
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: mpsc::Sender<Chunk>,
    from_client: bool,
    watcher: &Mutex<H2Watcher>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        let read_at = Instant::now();
        if n > 0 {
            let events = {
                let mut watcher = lock(watcher);
                if from_client {
                    watcher.client_bytes(&buf[..n])
                } else {
                    watcher.server_bytes(&buf[..n])
                }
            };
            emit_h2(shared, conn, read_at, events);
        }
        // An empty chunk carries the FIN, so that it is delayed like the data before it.
        let chunk = Chunk {
            read_at,
            data: buf[..n].to_vec(),
        };
        if to.send(chunk).await.is_err() || n == 0 {
            return Ok(());
        }
    }
}

async fn write_side(
    mut chunks: mpsc::Receiver<Chunk>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    mut faults: watch::Receiver<FaultState>,
) -> io::Result<()> {
    while let Some(chunk) = chunks.recv().await {
        loop {
            let fault = faults.borrow_and_update().fault;
            if let LinkFault::Delay { each_way } = fault {
                let due = chunk.read_at + each_way;
                if Instant::now() < due {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => {}
                        // The fault changed while waiting: look again.
                        _ = faults.changed() => continue,
                    }
                }
            }
            if fault == LinkFault::Blackhole {
                if chunk.data.is_empty() {
                    // Not even the FIN gets through; leaving the blackhole resets the
                    // connection.
                    std::future::pending::<()>().await;
                }
            } else if chunk.data.is_empty() {
                // The other side finished sending: pass the half-close on.
                return to.shutdown().await;
            } else {
                to.write_all(&chunk.data).await?;
            }
            break;
        }
    }
    Ok(())
}

/// How [`forward`] ended, and the upstream socket if it must be held (silently) until the
/// blackhole it is in ends.
struct Forwarded {
    ending: Ending,
    held_upstream: Option<TcpStream>,
}

async fn forward(
    shared: &Shared,
    conn: u64,
    mut client: TcpStream,
    mut server: TcpStream,
    control: &mut ControlWatch,
    watcher: &Mutex<H2Watcher>,
) -> Forwarded {
    let blackholed =
        |faults: &watch::Sender<FaultState>| faults.borrow().fault == LinkFault::Blackhole;
    // During a blackhole nothing may reach the other side, not even a close: the server
    // closing keeps the client connection open (and watched); the client closing ends the
    // connection but keeps the upstream socket open until the blackhole ends.
    let (ending, hold_upstream) = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let (up_tx, up_rx) = mpsc::channel(QUEUE_CHUNKS);
        let (down_tx, down_rx) = mpsc::channel(QUEUE_CHUNKS);
        let read_client = read_side(shared, conn, &mut client_read, up_tx, true, watcher);
        let read_server = read_side(shared, conn, &mut server_read, down_tx, false, watcher);
        let write_server = write_side(up_rx, &mut server_write, shared.faults.subscribe());
        let write_client = write_side(down_rx, &mut client_write, shared.faults.subscribe());
        tokio::pin!(read_client, read_server, write_server, write_client);
        let (mut rc, mut rs, mut ws, mut wc) = (false, false, false, false);
        // Who sent the first FIN, for the report of an orderly close.
        let mut first_eof = None;
        let error = |by, error: io::Error| Ending {
            by,
            reason: error.to_string(),
            abortive: true,
        };
        loop {
            if rc && rs && ws && wc {
                break (
                    Ending {
                        by: first_eof.unwrap_or(Side::Client),
                        reason: "eof".into(),
                        abortive: false,
                    },
                    false,
                );
            }
            tokio::select! {
                r = &mut read_client, if !rc => {
                    rc = true;
                    if blackholed(&shared.faults) {
                        let reason = match r {
                            Ok(()) => "eof during blackhole".to_owned(),
                            Err(e) => format!("{e} (during blackhole)"),
                        };
                        break (Ending { by: Side::Client, reason, abortive: false }, true);
                    }
                    match r {
                        Ok(()) => { first_eof.get_or_insert(Side::Client); }
                        Err(e) => break (error(Side::Client, e), false),
                    }
                }
                r = &mut read_server, if !rs => {
                    rs = true;
                    match r {
                        Ok(()) => { first_eof.get_or_insert(Side::Server); }
                        // The client must not notice; its side goes on until the blackhole ends.
                        Err(_) if blackholed(&shared.faults) => {
                            first_eof.get_or_insert(Side::Server);
                        }
                        Err(e) => break (error(Side::Server, e), false),
                    }
                }
                r = &mut write_server, if !ws => {
                    ws = true;
                    if let Err(e) = r { break (error(Side::Server, e), false) }
                }
                r = &mut write_client, if !wc => {
                    wc = true;
                    if let Err(e) = r { break (error(Side::Client, e), false) }
                }
                stop = control.next() => break (
                    Ending {
                        by: Side::Proxy,
                        reason: stop.reason().to_owned(),
                        abortive: stop.abortive(),
                    },
                    false,
                ),
            }
        }
    };
    if hold_upstream {
        drop(client);
        return Forwarded {
            ending,
            held_upstream: Some(server),
        };
    }
    if ending.abortive {
        reset_close(client);
        reset_close(server);
    }
    Forwarded {
        ending,
        held_upstream: None,
    }
}

/// Keeps a blackholed upstream socket open, forwarding nothing, until the blackhole ends.
async fn hold_until_lifted(server: TcpStream, control: &mut ControlWatch) {
    let stop = control.next().await;
    if stop.abortive() {
        reset_close(server);
    }
}
