//! A scripted AMQP server on loopback, for what RabbitMQ will not do on demand: malformed
//! frames, methods out of state, stalls and half-open sockets. It speaks through
//! `amqp-codec` and does exactly what each test tells it, nothing more.

use std::time::Duration;

use amqp_codec::method::{ConnectionOpenOk, ConnectionStart, ConnectionTune};
use amqp_codec::{ChannelId, Frame, FramePayload, Method, Parsed, encode_method, parse_frame};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A listening scripted server.
pub struct Peer {
    listener: TcpListener,
}

/// One accepted client connection.
pub struct PeerConn {
    /// The socket.
    pub stream: TcpStream,
    inbound: BytesMut,
}

impl Peer {
    /// Listens on an ephemeral loopback port.
    pub async fn bind() -> Self {
        Peer { listener: TcpListener::bind("127.0.0.1:0").await.expect("bind loopback") }
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` plus `query`.
    pub fn uri(&self, query: &str) -> String {
        let port = self.listener.local_addr().expect("bound").port();
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f{query}")
    }

    /// Accepts one client and reads its protocol header.
    pub async fn accept(&self) -> PeerConn {
        let (stream, _) = self.listener.accept().await.expect("a client connects");
        let mut conn = PeerConn { stream, inbound: BytesMut::new() };
        let mut header = [0u8; 8];
        conn.stream.read_exact(&mut header).await.expect("protocol header");
        assert_eq!(&header, b"AMQP\x00\x00\x09\x01");
        conn
    }

    /// Accepts one client and runs a well-behaved handshake with `heartbeat` seconds.
    pub async fn accept_open(&self, heartbeat: u16) -> PeerConn {
        let mut conn = self.accept().await;
        conn.send_method(
            0,
            ConnectionStart {
                version_major: 0,
                version_minor: 9,
                mechanisms: b"PLAIN",
                locales: b"en_US",
                ..Default::default()
            },
        )
        .await;
        assert_eq!(conn.recv_method_name().await, "connection.start-ok");
        conn.send_method(0, ConnectionTune { channel_max: 2047, frame_max: 131_072, heartbeat }).await;
        assert_eq!(conn.recv_method_name().await, "connection.tune-ok");
        assert_eq!(conn.recv_method_name().await, "connection.open");
        conn.send_method(0, ConnectionOpenOk::default()).await;
        conn
    }
}

impl PeerConn {
    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to the client");
    }

    /// Encodes and writes a method frame.
    pub async fn send_method<'a>(&mut self, channel: u16, method: impl Into<Method<'a>>) {
        let mut out = BytesMut::new();
        encode_method(ChannelId(channel), &method.into(), u32::MAX, &mut out).expect("encodable");
        self.send_raw(&out).await;
    }

    /// Reads one frame (or `None` at EOF) and hands it to `f`.
    pub async fn recv<T>(&mut self, f: impl FnOnce(Frame<'_>) -> T) -> Option<T> {
        loop {
            if let Parsed::Complete { consumed, .. } =
                parse_frame(&self.inbound, u32::MAX).expect("the client sends valid frames")
            {
                let bytes = self.inbound.split_to(consumed);
                let Ok(Parsed::Complete { value, .. }) = parse_frame(&bytes, u32::MAX) else {
                    unreachable!("parsed above")
                };
                return Some(f(value));
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.inbound))
                .await
                .expect("the client sends within 10 s")
                .expect("read from the client");
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads one method frame's name, failing on other frames or EOF.
    pub async fn recv_method_name(&mut self) -> &'static str {
        self.recv(|f| match f.payload {
            FramePayload::Method(m) => m.name(),
            other => panic!("expected a method, got {other:?}"),
        })
        .await
        .expect("a frame before EOF")
    }

    /// Reads until the client's connection.close and returns its reply code; answers close-ok.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let code = self
                .recv(|f| match f.payload {
                    FramePayload::Method(Method::ConnectionClose(c)) => Some(c.reply_code.0),
                    _ => None,
                })
                .await
                .expect("connection.close before EOF");
            if let Some(code) = code {
                self.send_method(0, amqp_codec::method::ConnectionCloseOk {}).await;
                return code;
            }
        }
    }
}
