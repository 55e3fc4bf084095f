//! A passive, incremental HTTP/2 frame watcher: fed the bytes of one TCP connection as the proxy
//! reads them (in any chunking), it reports which streams (gRPC requests) open and how they end.
//!
//! It only reads frame headers and skips payloads, so it needs no HPACK state. Anything that does
//! not look like HTTP/2 (a wrong client preface, a first frame that is not SETTINGS) switches the
//! watcher off for that connection; the proxy keeps forwarding the bytes either way. It never
//! panics on any input.
//!
//! Rules (client = the side that sent the preface):
//! - a stream opens when the client sends HEADERS on an odd stream id higher than any it used
//!   before;
//! - an open stream closes on RST_STREAM from either side, or when the server sends HEADERS or
//!   DATA with END_STREAM (the response or its trailers are complete; a header block continued in
//!   CONTINUATION frames counts as complete at its HEADERS frame);
//! - GOAWAY closes nothing by itself: streams the server did not process stay open until the
//!   connection closes, when [`H2Watcher::connection_closed`] reports every stream still open.

use std::collections::BTreeSet;

use super::StreamEnd;

/// The client connection preface (RFC 9113, section 3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FLAG_END_STREAM: u8 = 0x1;

/// What the watcher saw in one chunk of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum H2Event {
    Opened(u32),
    Closed(u32, StreamEnd),
}

/// One parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Splits one direction's byte stream into frame headers, skipping payloads.
#[derive(Debug)]
struct FrameReader {
    /// How many preface bytes are still expected before the first frame (24 or 0 to start).
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    /// Whether any frame header was completed yet (the first must be SETTINGS).
    seen_frame: bool,
}

impl FrameReader {
    fn new(expect_preface: bool) -> FrameReader {
        FrameReader {
            preface_left: if expect_preface { PREFACE.len() } else { 0 },
            header: [0; 9],
            header_len: 0,
            skip: 0,
            seen_frame: false,
        }
    }

    /// Feeds bytes, calling `on_frame` for every completed frame header. Returns `Err(())` when
    /// the bytes are not HTTP/2; the reader must not be fed again after that.
    fn feed(&mut self, mut data: &[u8], on_frame: &mut dyn FnMut(FrameHeader)) -> Result<(), ()> {
        while !data.is_empty() {
            if self.preface_left > 0 {
                let offset = PREFACE.len() - self.preface_left;
                let n = self.preface_left.min(data.len());
                if data[..n] != PREFACE[offset..offset + n] {
                    return Err(());
                }
                self.preface_left -= n;
                data = &data[n..];
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (9 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len < 9 {
                continue;
            }
            self.header_len = 0;
            let h = &self.header;
            let length = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let frame = FrameHeader {
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            };
            if !self.seen_frame {
                // Both connection prefaces start with a SETTINGS frame on stream 0.
                if frame.kind != FRAME_SETTINGS || frame.stream != 0 {
                    return Err(());
                }
                self.seen_frame = true;
            }
            self.skip = length;
            on_frame(frame);
        }
        Ok(())
    }
}

/// Watches both directions of one connection.
#[derive(Debug)]
pub(crate) struct H2Watcher {
    client: FrameReader,
    server: FrameReader,
    /// False once the traffic turned out not to be HTTP/2 (or watching was not wanted).
    active: bool,
    open: BTreeSet<u32>,
    highest_client_stream: u32,
}

/// Bounds the memory a misbehaving peer can make the watcher use.
const MAX_OPEN_STREAMS: usize = 1 << 16;

impl H2Watcher {
    pub(crate) fn new(active: bool) -> H2Watcher {
        H2Watcher {
            client: FrameReader::new(true),
            server: FrameReader::new(false),
            active,
            open: BTreeSet::new(),
            highest_client_stream: 0,
        }
    }

    /// Whether the watcher still understands this connection.
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Bytes the client sent.
    pub(crate) fn client_bytes(&mut self, data: &[u8]) -> Vec<H2Event> {
        self.feed(true, data)
    }

    /// Bytes the server sent.
    pub(crate) fn server_bytes(&mut self, data: &[u8]) -> Vec<H2Event> {
        self.feed(false, data)
    }

    /// The connection ended: every stream still open ends with it.
    pub(crate) fn connection_closed(&mut self) -> Vec<H2Event> {
        self.active = false;
        std::mem::take(&mut self.open)
            .into_iter()
            .map(|stream| H2Event::Closed(stream, StreamEnd::ConnectionClosed))
            .collect()
    }

    fn feed(&mut self, from_client: bool, data: &[u8]) -> Vec<H2Event> {
        let mut events = Vec::new();
        if !self.active {
            return events;
        }
        let open = &mut self.open;
        let highest = &mut self.highest_client_stream;
        let mut on_frame = |frame: FrameHeader| {
            if frame.stream == 0 {
                return;
            }
            if from_client {
                match frame.kind {
                    FRAME_HEADERS
                        if frame.stream % 2 == 1
                            && frame.stream > *highest
                            && open.len() < MAX_OPEN_STREAMS =>
                    {
                        *highest = frame.stream;
                        open.insert(frame.stream);
                        events.push(H2Event::Opened(frame.stream));
                    }
                    FRAME_RST_STREAM if open.remove(&frame.stream) => {
                        events.push(H2Event::Closed(frame.stream, StreamEnd::ClientReset));
                    }
                    _ => {}
                }
            } else {
                match frame.kind {
                    FRAME_RST_STREAM if open.remove(&frame.stream) => {
                        events.push(H2Event::Closed(frame.stream, StreamEnd::ServerReset));
                    }
                    FRAME_HEADERS | FRAME_DATA
                        if frame.flags & FLAG_END_STREAM != 0 && open.remove(&frame.stream) =>
                    {
                        events.push(H2Event::Closed(frame.stream, StreamEnd::ServerEndStream));
                    }
                    _ => {}
                }
            }
        };
        let reader = if from_client {
            &mut self.client
        } else {
            &mut self.server
        };
        if reader.feed(data, &mut on_frame).is_err() {
            self.active = false;
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload_len: usize) -> Vec<u8> {
        let mut out = vec![
            (payload_len >> 16) as u8,
            (payload_len >> 8) as u8,
            payload_len as u8,
            kind,
            flags,
        ];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend(std::iter::repeat_n(0xAB, payload_len));
        out
    }

    fn client_start() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(FRAME_SETTINGS, 0, 0, 12));
        out
    }

    #[test]
    fn a_request_opens_and_the_servers_trailers_close_it() {
        let mut w = H2Watcher::new(true);
        let mut client = client_start();
        client.extend(frame(FRAME_HEADERS, 0x4, 1, 30));
        client.extend(frame(FRAME_DATA, FLAG_END_STREAM, 1, 10));
        assert_eq!(w.client_bytes(&client), vec![H2Event::Opened(1)]);
        let mut server = frame(FRAME_SETTINGS, 0, 0, 6);
        server.extend(frame(FRAME_HEADERS, 0x4, 1, 20));
        server.extend(frame(FRAME_DATA, 0, 1, 5));
        assert_eq!(w.server_bytes(&server), vec![]);
        let trailers = frame(FRAME_HEADERS, 0x4 | FLAG_END_STREAM, 1, 8);
        assert_eq!(
            w.server_bytes(&trailers),
            vec![H2Event::Closed(1, StreamEnd::ServerEndStream)]
        );
        assert!(w.connection_closed().is_empty());
    }

    #[test]
    fn frames_split_byte_by_byte_are_seen_the_same() {
        let mut w = H2Watcher::new(true);
        let mut client = client_start();
        client.extend(frame(FRAME_HEADERS, 0x4, 1, 300));
        client.extend(frame(FRAME_HEADERS, 0x4, 3, 0));
        client.extend(frame(FRAME_RST_STREAM, 0, 3, 4));
        let mut events = Vec::new();
        for b in &client {
            events.extend(w.client_bytes(std::slice::from_ref(b)));
        }
        assert_eq!(
            events,
            vec![
                H2Event::Opened(1),
                H2Event::Opened(3),
                H2Event::Closed(3, StreamEnd::ClientReset)
            ]
        );
        let mut server = frame(FRAME_SETTINGS, 0, 0, 0);
        server.extend(frame(FRAME_RST_STREAM, 0, 1, 4));
        let mut events = Vec::new();
        for b in &server {
            events.extend(w.server_bytes(std::slice::from_ref(b)));
        }
        assert_eq!(events, vec![H2Event::Closed(1, StreamEnd::ServerReset)]);
    }

    #[test]
    fn open_streams_end_with_the_connection() {
        let mut w = H2Watcher::new(true);
        let mut client = client_start();
        client.extend(frame(FRAME_HEADERS, 0x4, 1, 1));
        client.extend(frame(FRAME_HEADERS, 0x4, 5, 1));
        // Trailers or a repeated HEADERS on an open stream, an even id, a lower id: no new stream.
        client.extend(frame(FRAME_HEADERS, 0x5, 5, 1));
        client.extend(frame(FRAME_HEADERS, 0x4, 4, 1));
        client.extend(frame(FRAME_HEADERS, 0x4, 3, 1));
        assert_eq!(
            w.client_bytes(&client),
            vec![H2Event::Opened(1), H2Event::Opened(5)]
        );
        assert_eq!(
            w.connection_closed(),
            vec![
                H2Event::Closed(1, StreamEnd::ConnectionClosed),
                H2Event::Closed(5, StreamEnd::ConnectionClosed)
            ]
        );
        assert!(w.client_bytes(&frame(FRAME_HEADERS, 0x4, 7, 1)).is_empty());
    }

    #[test]
    fn garbage_switches_the_watcher_off() {
        let mut w = H2Watcher::new(true);
        assert!(w.client_bytes(b"GET / HTTP/1.1\r\n\r\n").is_empty());
        assert!(!w.is_active());
        assert!(w.client_bytes(&client_start()).is_empty());

        // A correct preface followed by something that is not SETTINGS.
        let mut w = H2Watcher::new(true);
        let mut client = PREFACE.to_vec();
        client.extend(frame(FRAME_HEADERS, 0x4, 1, 1));
        assert!(w.client_bytes(&client).is_empty());
        assert!(!w.is_active());

        // A server that does not start with SETTINGS.
        let mut w = H2Watcher::new(true);
        assert_eq!(
            w.client_bytes(&[client_start(), frame(FRAME_HEADERS, 0x4, 1, 1)].concat()),
            vec![H2Event::Opened(1)]
        );
        assert!(w.server_bytes(b"HTTP/1.1 400 Bad Request\r\n").is_empty());
        assert!(!w.is_active());
        assert_eq!(
            w.connection_closed(),
            vec![H2Event::Closed(1, StreamEnd::ConnectionClosed)]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator; every prefix of the preface plus noise, in odd chunks.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut w = H2Watcher::new(true);
            let mut bytes = client_start()[..round % 40].to_vec();
            bytes.extend((0..2000).map(|_| next() as u8));
            for chunk in bytes.chunks(1 + (next() % 97) as usize) {
                w.client_bytes(chunk);
                w.server_bytes(chunk);
            }
            w.connection_closed();
        }
    }

    #[test]
    fn a_disabled_watcher_sees_nothing() {
        let mut w = H2Watcher::new(false);
        let mut client = client_start();
        client.extend(frame(FRAME_HEADERS, 0x4, 1, 1));
        assert!(w.client_bytes(&client).is_empty());
        assert!(w.connection_closed().is_empty());
    }
}
