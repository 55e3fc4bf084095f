//! Where a client's connections come from: a listener that takes the first connection a call
//! makes and reports its source address (the call itself is then abandoned), for tests that a
//! client leaves from the local address it was given.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// Runs `call` with the address of a fresh listener on 127.0.0.1 and returns the source
/// address of the first connection it opens there. Panics when none comes within 10 s.
pub async fn source_of_first_connection<F, Fut>(call: F) -> SocketAddr
where
    F: FnOnce(String) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback listener");
    let endpoint = listener.local_addr().expect("listener address").to_string();
    let task = tokio::spawn(call(endpoint.clone()));
    let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    task.abort();
    match accepted {
        Ok(Ok((_, peer))) => peer,
        Ok(Err(e)) => panic!("accepting on {endpoint}: {e}"),
        Err(_) => panic!("no connection reached {endpoint} within 10 s"),
    }
}
