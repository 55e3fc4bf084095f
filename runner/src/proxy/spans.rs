//! Pairs the proxy's stream observations into one span per gRPC request: the raw material for
//! measuring the gaps between a client's attempts.

use std::collections::HashMap;
use std::time::Instant;

use super::{Observation, Observed, StreamEnd};

/// One HTTP/2 stream (one gRPC request) as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpan {
    pub link: String,
    pub conn: u64,
    pub stream: u32,
    /// When the client's HEADERS for it were read.
    pub opened: Instant,
    /// When its end was read; `None` if the observations stop while it is still open.
    pub closed: Option<Instant>,
    pub end: Option<StreamEnd>,
}

/// Every stream in `obs`, in the order they opened. A close without a matching open (the
/// observations were cut) is ignored; a stream id seen opening twice on the same link and
/// connection (never done by the proxy) starts a new span.
pub fn stream_spans(obs: &[Observation]) -> Vec<StreamSpan> {
    let mut spans: Vec<StreamSpan> = Vec::new();
    let mut open: HashMap<(&str, u64, u32), usize> = HashMap::new();
    for o in obs {
        match o.what {
            Observed::StreamOpened { stream } => {
                open.insert((o.link.as_str(), o.conn, stream), spans.len());
                spans.push(StreamSpan {
                    link: o.link.clone(),
                    conn: o.conn,
                    stream,
                    opened: o.at,
                    closed: None,
                    end: None,
                });
            }
            Observed::StreamClosed { stream, by } => {
                if let Some(i) = open.remove(&(o.link.as_str(), o.conn, stream)) {
                    spans[i].closed = Some(o.at);
                    spans[i].end = Some(by);
                }
            }
            _ => {}
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ob(link: &str, conn: u64, at: Instant, what: Observed) -> Observation {
        Observation {
            link: link.to_owned(),
            at,
            conn,
            what,
        }
    }

    #[test]
    fn opens_and_closes_pair_up_per_link_connection_and_stream() {
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        let obs = vec![
            ob("a", 1, t(0), Observed::UpstreamConnected),
            ob("a", 1, t(1), Observed::StreamOpened { stream: 1 }),
            ob("b", 1, t(2), Observed::StreamOpened { stream: 1 }),
            ob("a", 2, t(3), Observed::StreamOpened { stream: 1 }),
            ob(
                "a",
                1,
                t(4),
                Observed::StreamClosed {
                    stream: 1,
                    by: StreamEnd::ServerEndStream,
                },
            ),
            // A close for a stream never seen opening.
            ob(
                "a",
                1,
                t(5),
                Observed::StreamClosed {
                    stream: 9,
                    by: StreamEnd::ClientReset,
                },
            ),
            ob(
                "a",
                2,
                t(6),
                Observed::StreamClosed {
                    stream: 1,
                    by: StreamEnd::ConnectionClosed,
                },
            ),
        ];
        let spans = stream_spans(&obs);
        let span = |link: &str, conn, opened, closed: Option<u64>, end| StreamSpan {
            link: link.to_owned(),
            conn,
            stream: 1,
            opened: t(opened),
            closed: closed.map(t),
            end,
        };
        assert_eq!(
            spans,
            vec![
                span("a", 1, 1, Some(4), Some(StreamEnd::ServerEndStream)),
                span("b", 1, 2, None, None),
                span("a", 2, 3, Some(6), Some(StreamEnd::ConnectionClosed)),
            ]
        );
        assert!(stream_spans(&[]).is_empty());
    }
}
