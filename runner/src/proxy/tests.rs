//! The proxy against real sockets on 127.0.0.1: plain TCP echo servers, and a real tonic gRPC
//! server and client for the HTTP/2 observations.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfire_api::raft_pb::RaftPayload;
use chainfire_api::raft_pb::raft_transport_client::RaftTransportClient;
use chainfire_api::raft_pb::raft_transport_server::{RaftTransport, RaftTransportServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::*;

/// Upper bound for anything that should happen "at once"; generous for a loaded 2-core machine.
const SOON: Duration = Duration::from_secs(10);
/// How long a read must stay silent to count as blackholed.
const SILENCE: Duration = Duration::from_millis(300);

fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Observation>>>);

impl Recorder {
    fn sink(&self) -> ObservationSink {
        let obs = self.0.clone();
        Arc::new(move |o| obs.lock().unwrap().push(o))
    }

    fn all(&self) -> Vec<Observation> {
        self.0.lock().unwrap().clone()
    }

    fn of(&self, conn: u64) -> Vec<Observed> {
        self.all()
            .into_iter()
            .filter(|o| o.conn == conn)
            .map(|o| o.what)
            .collect()
    }

    /// Waits until `done` holds for the observations so far, or fails the test.
    async fn wait(&self, what: &str, done: impl Fn(&[Observation]) -> bool) -> Vec<Observation> {
        let start = Instant::now();
        loop {
            let all = self.all();
            if done(&all) {
                return all;
            }
            assert!(
                start.elapsed() < SOON,
                "timed out waiting for {what}; observed: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_closed(&self, conn: u64) -> (Side, String) {
        let all = self
            .wait(&format!("conn {conn} closed"), |all| {
                all.iter()
                    .any(|o| o.conn == conn && matches!(o.what, Observed::ConnClosed { .. }))
            })
            .await;
        all.into_iter()
            .find_map(|o| match o.what {
                Observed::ConnClosed { by, reason } if o.conn == conn => Some((by, reason)),
                _ => None,
            })
            .unwrap()
    }
}

fn config(upstream: SocketAddr, observe_http2: bool) -> ProxyConfig {
    ProxyConfig {
        link: "client-1->node-1".into(),
        listen: local(0),
        upstream,
        upstream_bind: None,
        bind_as_peer: false,
        observe_http2,
    }
}

async fn start(config: ProxyConfig) -> (LinkProxy, Recorder) {
    let recorder = Recorder::default();
    let proxy = LinkProxy::start(config, recorder.sink()).await.unwrap();
    (proxy, recorder)
}

/// A TCP echo server; each connection echoes until EOF, then closes.
async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(local(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

async fn round_trip(stream: &mut TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(data).await?;
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).await?;
    Ok(back)
}

/// A read that ends the connection: a reset or EOF, within [`SOON`].
async fn assert_closed_soon(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match timeout(SOON, stream.read(&mut buf)).await {
        Err(_) => panic!("the connection stayed open"),
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => panic!("read {n} bytes from a connection that should be closed"),
        Ok(Err(e)) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "{e}"
        ),
    }
}

async fn assert_silent(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = timeout(SILENCE, stream.read(&mut buf)).await;
    assert!(read.is_err(), "expected silence, got {read:?}");
}

#[tokio::test]
async fn pass_forwards_both_ways_and_reports_the_connection() {
    let (echo, _echo) = echo_server().await;
    let (proxy, rec) = start(config(echo, false)).await;
    assert_eq!(proxy.fault(), LinkFault::Pass);
    assert!(proxy.local_addr().ip().is_loopback());
    assert_ne!(proxy.local_addr().port(), 0);

    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let peer = client.local_addr().unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut client, b"hello").await.unwrap(), b"hello");
    assert_eq!(round_trip(&mut client, &big).await.unwrap(), big);
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(SOON, client.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());

    assert_eq!(rec.wait_closed(1).await, (Side::Client, "eof".into()));
    assert_eq!(
        rec.of(1),
        vec![
            Observed::ConnAccepted { peer },
            Observed::UpstreamConnected,
            Observed::ConnClosed {
                by: Side::Client,
                reason: "eof".into()
            },
        ]
    );
    let all = rec.all();
    assert!(all.iter().all(|o| o.link == "client-1->node-1"));
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at));

    // A second connection gets the next number.
    let mut second = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut second, b"again").await.unwrap(), b"again");
    drop(second);
    assert_eq!(rec.wait_closed(2).await.0, Side::Client);
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_outgoing_source_address_can_be_chosen() {
    let listener = TcpListener::bind(local(0)).await.unwrap();
    let mut cfg = config(listener.local_addr().unwrap(), false);
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
    cfg.upstream_bind = Some(source);
    let (proxy, rec) = start(cfg).await;
    let _client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (_upstream, from) = timeout(SOON, listener.accept()).await.unwrap().unwrap();
    assert_eq!(from.ip(), source);
    rec.wait("upstream connected", |all| {
        all.iter().any(|o| o.what == Observed::UpstreamConnected)
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn delay_holds_each_direction() {
    let (echo, _echo) = echo_server().await;
    let (proxy, _rec) = start(config(echo, false)).await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut client, b"warm").await.unwrap(), b"warm");

    let each_way = Duration::from_millis(150);
    proxy.set_fault(LinkFault::Delay { each_way });
    assert_eq!(proxy.fault(), LinkFault::Delay { each_way });
    for conn in [
        &mut client,
        &mut TcpStream::connect(proxy.local_addr()).await.unwrap(),
    ] {
        let started = Instant::now();
        let back = timeout(SOON, round_trip(conn, b"slow")).await.unwrap();
        assert_eq!(back.unwrap(), b"slow");
        let took = started.elapsed();
        assert!(took >= 2 * each_way, "round trip took {took:?}");
    }

    // The FIN is held like data: the echo server's EOF comes back a round trip later.
    let started = Instant::now();
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(SOON, client.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(took >= 2 * each_way, "the close took {took:?}");

    proxy.set_fault(LinkFault::Pass);
    let mut fast = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let back = timeout(SOON, round_trip(&mut fast, b"fast")).await.unwrap();
    assert_eq!(back.unwrap(), b"fast");
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_closes_existing_and_new_connections() {
    let (echo, _echo) = echo_server().await;
    let (proxy, rec) = start(config(echo, false)).await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut client, b"up").await.unwrap(), b"up");

    proxy.set_fault(LinkFault::Reset);
    assert_closed_soon(&mut client).await;
    assert_eq!(
        rec.wait_closed(1).await,
        (Side::Proxy, "reset fault".into())
    );

    let mut again = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_closed_soon(&mut again).await;
    assert_eq!(rec.wait_closed(2).await.0, Side::Proxy);
    assert!(!rec.of(2).contains(&Observed::UpstreamConnected));

    proxy.set_fault(LinkFault::Pass);
    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut fresh, b"ok").await.unwrap(), b"ok");
    proxy.shutdown().await;
}

#[tokio::test]
async fn blackhole_forwards_nothing_until_lifted() {
    let (echo, _echo) = echo_server().await;
    let (proxy, rec) = start(config(echo, false)).await;
    let mut before = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut before, b"up").await.unwrap(), b"up");

    proxy.set_fault(LinkFault::Blackhole);
    before.write_all(b"lost").await.unwrap();
    assert_silent(&mut before).await;
    let mut during = TcpStream::connect(proxy.local_addr()).await.unwrap();
    during.write_all(b"lost too").await.unwrap();
    assert_silent(&mut during).await;
    assert_eq!(
        rec.of(2),
        vec![Observed::ConnAccepted {
            peer: during.local_addr().unwrap()
        }]
    );

    // Leaving the blackhole resets the connections that lived through it.
    proxy.set_fault(LinkFault::Pass);
    assert_closed_soon(&mut before).await;
    assert_closed_soon(&mut during).await;
    assert_eq!(rec.wait_closed(1).await.0, Side::Proxy);
    assert_eq!(rec.wait_closed(2).await.0, Side::Proxy);
    let mut after = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut after, b"back").await.unwrap(), b"back");
    proxy.shutdown().await;
}

#[tokio::test]
async fn closes_do_not_cross_a_blackhole() {
    let listener = TcpListener::bind(local(0)).await.unwrap();
    let (proxy, rec) = start(config(listener.local_addr().unwrap(), false)).await;

    // The server closes during the blackhole: the client hears nothing until it is lifted.
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (upstream, _) = timeout(SOON, listener.accept()).await.unwrap().unwrap();
    rec.wait("upstream connected", |all| {
        all.iter().any(|o| o.what == Observed::UpstreamConnected)
    })
    .await;
    proxy.set_fault(LinkFault::Blackhole);
    drop(upstream);
    assert_silent(&mut client).await;
    assert!(
        !rec.of(1)
            .iter()
            .any(|o| matches!(o, Observed::ConnClosed { .. }))
    );
    proxy.set_fault(LinkFault::Pass);
    assert_closed_soon(&mut client).await;
    assert_eq!(rec.wait_closed(1).await.0, Side::Proxy);

    // The client closes during the blackhole: reported, but the server hears nothing until it
    // is lifted.
    let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut upstream, _) = timeout(SOON, listener.accept()).await.unwrap().unwrap();
    rec.wait("upstream connected", |all| {
        all.iter()
            .any(|o| o.conn == 2 && o.what == Observed::UpstreamConnected)
    })
    .await;
    proxy.set_fault(LinkFault::Blackhole);
    drop(client);
    let (by, reason) = rec.wait_closed(2).await;
    assert_eq!(
        (by, reason.as_str()),
        (Side::Client, "eof during blackhole")
    );
    assert_silent(&mut upstream).await;
    proxy.set_fault(LinkFault::Pass);
    assert_closed_soon(&mut upstream).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_closes_the_client() {
    // A port nobody listens on: bind one, then free it.
    let gone = TcpListener::bind(local(0))
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (proxy, rec) = start(config(gone, true)).await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_closed_soon(&mut client).await;
    let (by, reason) = rec.wait_closed(1).await;
    assert_eq!(by, Side::Proxy);
    assert!(reason.starts_with("upstream connect failed"), "{reason}");
    let seen = rec.of(1);
    assert!(
        matches!(&seen[1], Observed::UpstreamFailed { error } if !error.is_empty()),
        "{seen:?}"
    );

    // A gRPC client sees a transport error, as for a refused connection.
    // (tonic's connect only opens TCP, which the proxy accepts; the first call fails.)
    let grpc = RaftTransportClient::connect(format!("http://{}", proxy.local_addr())).await;
    if let Ok(mut grpc) = grpc {
        let status = timeout(SOON, grpc.append_entries(payload(1)))
            .await
            .unwrap()
            .unwrap_err();
        // A reset after connecting, not a refused connect: tonic reports it as a transport
        // error (code Unknown for a reset, Unavailable for a refused connect).
        assert!(
            status.code() == tonic::Code::Unavailable
                || status.message().contains("transport error"),
            "{status:?}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn garbage_is_forwarded_untouched_and_shows_no_streams() {
    let (echo, _echo) = echo_server().await;
    let (proxy, rec) = start(config(echo, true)).await;
    let mut noise: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for start in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &h2::PREFACE[..10],
        &h2::PREFACE[..],
    ] {
        noise[..start.len()].copy_from_slice(start);
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, &noise).await.unwrap(), noise);
    }
    proxy.shutdown().await;
    let all = rec.all();
    assert_eq!(
        all.iter()
            .filter(|o| matches!(o.what, Observed::ConnClosed { .. }))
            .count(),
        3
    );
    assert!(
        all.iter().all(|o| !matches!(
            o.what,
            Observed::StreamOpened { .. } | Observed::StreamClosed { .. }
        )),
        "{all:#?}"
    );
}

#[tokio::test]
async fn only_loopback_addresses_are_accepted() {
    let ok = config(local(1), true);
    let cases = [
        (
            "listen",
            ProxyConfig {
                listen: "10.0.0.1:0".parse().unwrap(),
                ..ok.clone()
            },
        ),
        (
            "listen",
            ProxyConfig {
                listen: "0.0.0.0:0".parse().unwrap(),
                ..ok.clone()
            },
        ),
        (
            "upstream",
            ProxyConfig {
                upstream: "192.0.2.1:2379".parse().unwrap(),
                ..ok.clone()
            },
        ),
        (
            "upstream",
            ProxyConfig {
                upstream: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 2379),
                ..ok.clone()
            },
        ),
        (
            "upstream_bind",
            ProxyConfig {
                upstream_bind: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                bind_as_peer: false,
                ..ok.clone()
            },
        ),
        (
            "upstream_bind",
            ProxyConfig {
                upstream_bind: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                bind_as_peer: false,
                ..ok.clone()
            },
        ),
    ];
    for (what, cfg) in cases {
        let refused = LinkProxy::start(cfg, Recorder::default().sink()).await;
        match refused {
            Err(e @ ProxyError::NotLoopback { what: w, .. }) => {
                assert_eq!(w, what);
                let message = e.to_string();
                assert!(message.contains("not IPv4 loopback"), "{message}");
                assert!(message.contains("client-1->node-1"), "{message}");
            }
            Err(other) => panic!("{what}: wrong error {other}"),
            Ok(_) => panic!("{what}: a non-loopback address was accepted"),
        }
    }
    assert!(ok.check_loopback().is_ok());
}

#[tokio::test]
async fn shutdown_closes_connections_and_the_listener() {
    let (echo, _echo) = echo_server().await;
    let (proxy, rec) = start(config(echo, false)).await;
    let addr = proxy.local_addr();
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut client, b"up").await.unwrap(), b"up");
    timeout(SOON, proxy.shutdown()).await.unwrap();
    assert_eq!(
        rec.of(1).last(),
        Some(&Observed::ConnClosed {
            by: Side::Proxy,
            reason: "proxy shut down".into()
        })
    );
    assert_closed_soon(&mut client).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---- HTTP/2: a real tonic server and client ----

struct Raft;

#[tonic::async_trait]
impl RaftTransport for Raft {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }

    /// Never answers in time: for cancelled calls and a server dying mid-call.
    async fn vote(
        &self,
        _: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Err(tonic::Status::unavailable("slept"))
    }

    async fn install_snapshot(
        &self,
        _: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        Err(tonic::Status::unimplemented("install_snapshot"))
    }

    async fn identity(
        &self,
        _: tonic::Request<chainfire_api::raft_pb::IdentityQuery>,
    ) -> Result<tonic::Response<chainfire_api::raft_pb::IdentityAnswer>, tonic::Status> {
        Err(tonic::Status::unimplemented("identity"))
    }
}

/// A gRPC server on its own runtime, so that killing it closes every connection at once.
struct GrpcServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl GrpcServer {
    fn start() -> GrpcServer {
        let listener = std::net::TcpListener::bind(local(0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(RaftTransportServer::new(Raft))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
        });
        GrpcServer {
            addr,
            runtime: Some(runtime),
        }
    }

    /// Drops every task of the server, its connections included.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn payload(i: u8) -> RaftPayload {
    RaftPayload {
        data: vec![i; 100],
        from: u64::from(i),
        ..Default::default()
    }
}

fn stream_events(all: &[Observation]) -> Vec<(u64, Observed)> {
    all.iter()
        .filter(|o| {
            matches!(
                o.what,
                Observed::StreamOpened { .. } | Observed::StreamClosed { .. }
            )
        })
        .map(|o| (o.conn, o.what.clone()))
        .collect()
}

#[tokio::test]
async fn grpc_requests_are_seen_as_streams() {
    let mut server = GrpcServer::start();
    let (proxy, rec) = start(config(server.addr, true)).await;
    let mut client = RaftTransportClient::connect(format!("http://{}", proxy.local_addr()))
        .await
        .unwrap();

    // N sequential unary calls: N streams on one connection, each ended by the server.
    const N: u8 = 5;
    for i in 0..N {
        let reply = client.append_entries(payload(i)).await.unwrap();
        assert_eq!(reply.into_inner(), payload(i));
    }
    let all = rec
        .wait("N closed streams", |all| {
            stream_events(all)
                .iter()
                .filter(|(_, w)| matches!(w, Observed::StreamClosed { .. }))
                .count()
                == usize::from(N)
        })
        .await;
    let spans = stream_spans(&all);
    assert_eq!(spans.len(), usize::from(N), "{spans:#?}");
    assert!(
        spans
            .iter()
            .all(|s| s.conn == 1 && s.link == "client-1->node-1")
    );
    assert!(
        spans
            .iter()
            .all(|s| s.end == Some(StreamEnd::ServerEndStream) && s.closed >= Some(s.opened))
    );
    let ids: Vec<u32> = spans.iter().map(|s| s.stream).collect();
    assert_eq!(ids, vec![1, 3, 5, 7, 9]);
    // Each call opened after the previous one was answered.
    assert!(spans.windows(2).all(|w| w[0].closed <= Some(w[1].opened)));

    // A call the client gives up on: the client resets the stream.
    let cancelled = timeout(Duration::from_millis(200), client.vote(payload(9))).await;
    assert!(cancelled.is_err(), "the slow call answered: {cancelled:?}");
    let all = rec
        .wait("a client reset", |all| {
            stream_events(all).contains(&(
                1,
                Observed::StreamClosed {
                    stream: 11,
                    by: StreamEnd::ClientReset,
                },
            ))
        })
        .await;
    assert_eq!(stream_spans(&all).len(), usize::from(N) + 1);

    // The server dies during a call: the open stream ends with the connection.
    let mut pending = client.clone();
    let call = tokio::spawn(async move { pending.vote(payload(10)).await });
    rec.wait("the pending call's stream", |all| {
        stream_events(all).contains(&(1, Observed::StreamOpened { stream: 13 }))
    })
    .await;
    server.kill();
    let all = rec
        .wait("the connection closing", |all| {
            all.iter()
                .any(|o| o.conn == 1 && matches!(o.what, Observed::ConnClosed { .. }))
        })
        .await;
    let tail: Vec<Observed> = all
        .iter()
        .filter(|o| o.conn == 1)
        .map(|o| o.what.clone())
        .rev()
        .take(2)
        .collect();
    assert!(
        matches!(
            &tail[..],
            [
                Observed::ConnClosed {
                    by: Side::Server,
                    ..
                },
                Observed::StreamClosed {
                    stream: 13,
                    by: StreamEnd::ConnectionClosed
                }
            ]
        ),
        "{tail:#?}"
    );
    let failed = timeout(SOON, call).await.unwrap().unwrap();
    assert!(failed.is_err());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_reset_is_not_missed_when_the_fault_changes_right_back() {
    let (echo, _echo) = echo_server().await;
    let (proxy, rec) = start(config(echo, false)).await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut client, b"up").await.unwrap(), b"up");
    proxy.set_fault(LinkFault::Reset);
    proxy.set_fault(LinkFault::Pass);
    assert_closed_soon(&mut client).await;
    assert_eq!(
        rec.wait_closed(1).await,
        (Side::Proxy, "reset fault".into())
    );
    proxy.shutdown().await;
}

#[test]
fn observations_are_plain_data() {
    let at = Instant::now();
    let whats = [
        Observed::ConnAccepted { peer: local(4242) },
        Observed::UpstreamConnected,
        Observed::UpstreamFailed {
            error: "connection refused".into(),
        },
        Observed::ConnClosed {
            by: Side::Server,
            reason: "eof".into(),
        },
        Observed::StreamOpened { stream: 3 },
        Observed::StreamClosed {
            stream: 3,
            by: StreamEnd::ClientReset,
        },
    ];
    for what in whats {
        let (when, plain) = Observation {
            link: "a->b".into(),
            at,
            conn: 7,
            what,
        }
        .into_parts();
        assert_eq!(when, at);
        let json = serde_json::to_string(&plain).unwrap();
        assert_eq!(serde_json::from_str::<ObservedAt>(&json).unwrap(), plain);
    }
    let fault = LinkFault::Delay {
        each_way: Duration::from_millis(5),
    };
    let json = serde_json::to_string(&fault).unwrap();
    assert_eq!(serde_json::from_str::<LinkFault>(&json).unwrap(), fault);
}
