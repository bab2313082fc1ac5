//! A fault-injecting TCP proxy on loopback, between a client and the broker. It forwards, and
//! on command: cuts every open connection (FIN) or resets it (RST), cuts a connection after a
//! chosen number of bytes in one direction, stalls (stops forwarding but keeps the sockets, as
//! a dead network path does), refuses new connections, and throttles. Tests drive it directly;
//! `chaos-proxy` is the same thing as a binary for manual chaos.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to broker.
    Upstream,
    /// Broker to client.
    Downstream,
}

/// How an open connection is ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// Both sockets closed (FIN).
    Cut,
    /// Both sockets reset (RST).
    Reset,
}

/// The faults in force, shared by the listener and every connection's pumps.
#[derive(Debug)]
struct Faults {
    stalled: AtomicBool,
    refusing: AtomicBool,
    /// Bytes per second per direction and connection; 0: no limit.
    throttle: AtomicU64,
    /// Bytes left before the next cut, per direction (u64::MAX: none armed).
    budget: [AtomicU64; 2],
    /// Each command to kill open connections bumps this epoch.
    kill: watch::Sender<(u64, Kill)>,
    accepted: AtomicUsize,
}

/// A running proxy; its listener ends when it is dropped.
pub struct Proxy {
    port: u16,
    faults: Arc<Faults>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Proxy {
    /// Starts forwarding every connection on an ephemeral loopback port to `upstream`.
    pub async fn start(upstream: String) -> Self {
        Self::start_on("127.0.0.1:0", upstream).await
    }

    /// Starts forwarding connections on `listen` to `upstream`.
    pub async fn start_on(listen: &str, upstream: String) -> Self {
        let listener = TcpListener::bind(listen).await.expect("bind the proxy's port");
        let port = listener.local_addr().expect("bound").port();
        let faults = Arc::new(Faults {
            stalled: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            throttle: AtomicU64::new(0),
            budget: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
            kill: watch::Sender::new((0, Kill::Cut)),
            accepted: AtomicUsize::new(0),
        });
        let listener = tokio::spawn(accept(listener, upstream, faults.clone()));
        Proxy { port, faults, listener }
    }

    /// The address to connect to instead of the broker's.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> usize {
        self.faults.accepted.load(Ordering::SeqCst)
    }

    /// Stops (true) or resumes (false) forwarding; sockets stay open either way.
    pub fn stall(&self, stalled: bool) {
        self.faults.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Refuses (true) new connections: they are accepted and closed at once.
    pub fn refuse(&self, refusing: bool) {
        self.faults.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Limits each direction of each connection to `bytes_per_second` (0: no limit).
    pub fn throttle(&self, bytes_per_second: u64) {
        self.faults.throttle.store(bytes_per_second, Ordering::SeqCst);
    }

    /// Closes every open connection (FIN to both sides).
    pub fn cut(&self) {
        self.kill(Kill::Cut);
    }

    /// Resets every open connection (RST to both sides).
    pub fn reset(&self) {
        self.kill(Kill::Reset);
    }

    /// Arms a cut: after `bytes` more bytes flow in `direction` (on any connection), the
    /// connection they flow on is closed, mid-frame if that is where the count ends.
    pub fn cut_after(&self, direction: Direction, bytes: u64) {
        self.faults.budget[direction as usize].store(bytes, Ordering::SeqCst);
    }

    fn kill(&self, how: Kill) {
        self.faults.kill.send_modify(|(epoch, kill)| {
            *epoch += 1;
            *kill = how;
        });
    }
}

async fn accept(listener: TcpListener, upstream: String, faults: Arc<Faults>) {
    while let Ok((client, _)) = listener.accept().await {
        faults.accepted.fetch_add(1, Ordering::SeqCst);
        if faults.refusing.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(&upstream).await else { continue };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        let kill = faults.kill.subscribe();
        tokio::spawn(pump(cr, sw, Direction::Upstream, faults.clone(), kill.clone()));
        tokio::spawn(pump(sr, cw, Direction::Downstream, faults.clone(), kill));
    }
}

/// Forwards one direction of one connection until either side closes or a fault ends it.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    faults: Arc<Faults>,
    mut kill: watch::Receiver<(u64, Kill)>,
) {
    kill.mark_unchanged();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = kill.changed() => return end(from, to, kill.borrow().1),
        };
        let Ok(n @ 1..) = read else { return };
        let mut chunk = &buf[..n];
        let (cut_now, allowed) = take_budget(&faults.budget[direction as usize], chunk.len());
        chunk = &chunk[..allowed];
        // Bytes read during a stall are held back until it ends, like a dead path.
        while faults.stalled.load(Ordering::SeqCst) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = kill.changed() => return end(from, to, kill.borrow().1),
            }
        }
        let rate = faults.throttle.load(Ordering::SeqCst);
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64)).await;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
        if cut_now {
            return end(from, to, Kill::Cut);
        }
    }
}

/// Takes up to `len` bytes from an armed budget: (whether the cut falls in this chunk, how
/// many bytes of it to forward first).
fn take_budget(budget: &AtomicU64, len: usize) -> (bool, usize) {
    let mut left = budget.load(Ordering::SeqCst);
    loop {
        if left == u64::MAX {
            return (false, len);
        }
        let forward = left.min(len as u64);
        let after = if forward == left { u64::MAX } else { left - forward };
        match budget.compare_exchange(left, after, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return (forward == left, forward as usize),
            Err(now) => left = now,
        }
    }
}

fn end(from: OwnedReadHalf, to: OwnedWriteHalf, how: Kill) {
    if how == Kill::Reset {
        // With zero linger the close is an RST; `forget` skips the write half's FIN, so that
        // the sockets close (both pumps end on the same command) with nothing but the reset.
        let _ = from.as_ref().set_zero_linger();
        let _ = to.as_ref().set_zero_linger();
        to.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_splits_the_chunk_it_ends_in() {
        let budget = AtomicU64::new(10);
        assert_eq!(take_budget(&budget, 4), (false, 4));
        assert_eq!(take_budget(&budget, 8), (true, 6));
        assert_eq!(take_budget(&budget, 8), (false, 8), "disarmed after the cut");
    }
}
