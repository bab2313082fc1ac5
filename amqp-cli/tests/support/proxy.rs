//! A TCP proxy on loopback between `amqp` and the broker that cuts every open connection on
//! demand: both sockets of each are shut down, so the client reads EOF with no AMQP close and
//! the broker sees its peer vanish (and requeues what it had delivered unacked), as after a
//! network failure. Plain threads: the tests run `amqp` as a process and need no runtime.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// A running proxy; it stops accepting when dropped.
pub struct CuttingProxy {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Both sockets of every connection forwarded since the last cut.
    open: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
    stopped: AtomicBool,
}

impl CuttingProxy {
    /// Listens on an ephemeral loopback port and forwards each connection to `upstream`.
    pub fn start(upstream: &str) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("a bound address").port();
        let shared = Arc::new(Shared::default());
        let (accepting, upstream) = (shared.clone(), upstream.to_owned());
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(client) = client {
                    accepting.accepted.fetch_add(1, Ordering::Relaxed);
                    // A broker that cannot be reached closes the client: it sees a failed connect.
                    let _ = forward(client, &upstream, &accepting);
                }
            }
        });
        CuttingProxy { port, shared }
    }

    /// An AMQP URI through the proxy.
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Cuts every connection forwarded since the last cut; returns how many there were (one
    /// that ended by itself meanwhile counts too).
    pub fn cut(&self) -> usize {
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap_or_else(PoisonError::into_inner));
        for socket in &open {
            let _ = socket.shutdown(Shutdown::Both);
        }
        open.len() / 2
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.cut();
    }
}

fn forward(client: TcpStream, upstream: &str, shared: &Shared) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    for socket in [&client, &server] {
        socket.set_nodelay(true)?;
    }
    shared.open.lock().unwrap_or_else(PoisonError::into_inner).extend([client.try_clone()?, server.try_clone()?]);
    pump(client.try_clone()?, server.try_clone()?);
    pump(server, client);
    Ok(())
}

/// Copies `from` to `to` until either ends, then ends both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
