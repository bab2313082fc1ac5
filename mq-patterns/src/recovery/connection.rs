//! The recovering connection: a supervisor task that watches the client connection, and when
//! it is lost (socket error or EOF, heartbeat timeout, the broker's connection.close, a failed
//! write) reconnects with backoff across the endpoints and restores, in order: channels with
//! their QoS and confirm mode, exchanges, queues, bindings, consumers, and finally the
//! unconfirmed publishes. Calls made meanwhile wait for it, bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use amqp_client::api::ConnectionOptions;
use amqp_client::core::error::ConnectionError;
use amqp_client::{Channel, Connection, Error};
use tokio::sync::{RwLock, broadcast, watch};

use super::backoff::Backoff;
use super::channel::{ChannelState, RecoveringChannel, lock};
use super::error::RecoveryError;
use super::event::{Counters, RecoveryEvent, RecoveryStats, Restored};
use super::topology::{Destination, Topology};
use crate::message_id::IdSource;

/// How recovery behaves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecoveryOptions {
    /// Delays between reconnection attempts, and the limit on them.
    pub backoff: Backoff,
    /// How long a call waits for the connection to come back before it fails with
    /// [`RecoveryError::NotConnected`].
    pub wait: Duration,
    /// Calls fail at once while the connection is down, instead of waiting.
    pub fail_fast: bool,
    /// Reopen a channel that the broker closed with a channel error (404, 406, ...); by
    /// default the error ends the channel, since retrying the same call would fail again.
    pub reopen_on_channel_error: bool,
    /// Unconfirmed publishes a channel keeps before `basic_publish` waits.
    pub max_unconfirmed: usize,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            backoff: Backoff::default(),
            wait: Duration::from_secs(30),
            fail_fast: false,
            reopen_on_channel_error: false,
            max_unconfirmed: 10_000,
        }
    }
}

impl RecoveryOptions {
    /// With this backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// With this wait for calls made while disconnected.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Failing calls at once while disconnected.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }

    /// Reopening channels the broker closed.
    pub fn reopen_on_channel_error(mut self, reopen: bool) -> Self {
        self.reopen_on_channel_error = reopen;
        self
    }

    /// With this bound on unconfirmed publishes per channel.
    pub fn max_unconfirmed(mut self, messages: usize) -> Self {
        self.max_unconfirmed = messages;
        self
    }
}

/// Where the link to the broker stands.
#[derive(Clone, Debug)]
enum Link {
    /// Connected and restored.
    Up(Connection),
    /// Lost; recovery is under way.
    Down,
    /// For good: closed by the user, or recovery gave up.
    Ended(RecoveryError),
}

/// What the supervisor, the channels and the handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    candidates: Vec<ConnectionOptions>,
    /// The candidate in use (or tried last).
    candidate: AtomicUsize,
    pub(crate) options: RecoveryOptions,
    link: watch::Sender<Link>,
    closing: watch::Sender<bool>,
    /// Recorded calls hold it shared while they run and record; a restore holds it alone.
    pub(crate) ops: RwLock<()>,
    topology: Mutex<Topology>,
    channels: Mutex<Vec<Weak<ChannelState>>>,
    events: broadcast::Sender<RecoveryEvent>,
    counters: Counters,
    pub(crate) ids: IdSource,
}

impl Shared {
    pub(crate) fn topology(&self) -> MutexGuard<'_, Topology> {
        lock(&self.topology)
    }

    pub(crate) fn current_queue_name(&self, name: &str) -> String {
        self.topology().current_name(name).to_owned()
    }

    /// How long calls wait for the link.
    pub(crate) fn call_wait(&self) -> Duration {
        if self.options.fail_fast { Duration::ZERO } else { self.options.wait }
    }

    /// The connection once it is up, waiting at most `call_wait`.
    pub(crate) async fn up(&self) -> Result<Connection, RecoveryError> {
        self.link_where(|_| true).await
    }

    /// Waits (bounded) until a connection newer than `generation` is up.
    pub(crate) async fn wait_past(&self, generation: u64) -> Result<(), RecoveryError> {
        self.link_where(|c| c.generation() > generation).await.map(drop)
    }

    async fn link_where(&self, wanted: impl Fn(&Connection) -> bool) -> Result<Connection, RecoveryError> {
        let mut link = self.link.subscribe();
        let wait = self.call_wait();
        let found = async {
            loop {
                match &*link.borrow_and_update() {
                    Link::Up(c) if c.close_reason().is_none() && wanted(c) => return Ok(c.clone()),
                    Link::Ended(error) => return Err(error.clone()),
                    _ => {}
                }
                if link.changed().await.is_err() {
                    return Err(RecoveryError::Closed);
                }
            }
        };
        // `timeout` polls the future first, so a fail-fast call still succeeds when up.
        tokio::time::timeout(wait, found).await.unwrap_or(Err(RecoveryError::NotConnected { waited: wait }))
    }

    fn emit(&self, event: RecoveryEvent) {
        // No receiver is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    fn live_channels(&self) -> Vec<Arc<ChannelState>> {
        let mut channels = lock(&self.channels);
        channels.retain(|c| c.strong_count() > 0);
        channels.iter().filter_map(Weak::upgrade).filter(|c| !c.is_ended()).collect()
    }

    /// How many recorded consumers read `queue`, on every channel.
    pub(crate) fn consumers_of(&self, queue: &str) -> usize {
        let channels = self.live_channels();
        channels.iter().map(|c| lock(&c.consumers).iter().filter(|r| r.queue == queue).count()).sum()
    }

    /// The queue was deleted: the broker cancelled its consumers.
    pub(crate) fn forget_consumers_of(&self, queue: &str) {
        for channel in self.live_channels() {
            lock(&channel.consumers).retain(|r| r.queue != queue);
        }
    }

    fn candidate_endpoint(&self, index: usize) -> String {
        let options = &self.candidates[index % self.candidates.len()];
        options.endpoints().first().map(|(h, p)| format!("{h}:{p}")).unwrap_or_default()
    }
}

/// A connection that recovers from loss by itself, with everything opened and declared on it.
/// Cheap to clone; clones share the connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), mq_patterns::recovery::RecoveryError> {
/// use mq_patterns::client::api::ConnectionOptions;
/// use mq_patterns::recovery::{RecoveringConnection, RecoveryEvent, RecoveryOptions};
///
/// let primary = ConnectionOptions::from_uri("amqp://guest:guest@10.0.0.1:5672/%2f")?;
/// let secondary = ConnectionOptions::from_uri("amqp://guest:guest@10.0.0.2:5672/%2f")?;
/// let conn = RecoveringConnection::connect(vec![primary, secondary], RecoveryOptions::default()).await?;
/// let mut events = conn.events();
/// tokio::spawn(async move {
///     while let Ok(event) = events.recv().await {
///         if let RecoveryEvent::Recovered(restored) = event {
///             println!("back on {} with {} consumers", restored.endpoint, restored.consumers);
///         }
///     }
/// });
/// let channel = conn.open_channel().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RecoveringConnection {
    shared: Arc<Shared>,
}

impl RecoveringConnection {
    /// Connects to the first of `endpoints` that answers (each tried once; an error if none
    /// does), then keeps the connection up. Each options' own endpoints are tried in turn
    /// too: several URIs, a host list, or a DNS name with several addresses all work.
    pub async fn connect(
        endpoints: Vec<ConnectionOptions>,
        options: RecoveryOptions,
    ) -> Result<RecoveringConnection, RecoveryError> {
        let candidates: Vec<ConnectionOptions> = endpoints
            .into_iter()
            .flat_map(|o| {
                let each: Vec<_> = o.endpoints().iter().map(|e| o.clone().with_endpoints([e.clone()])).collect();
                each
            })
            .collect();
        let mut last = Error::Connect { endpoint: "(none)".into(), reason: "no endpoint given".into() };
        for (index, candidate) in candidates.iter().enumerate() {
            match Connection::connect_with(candidate.clone()).await {
                Ok(conn) => return Ok(Self::start(candidates, index, options, conn)),
                Err(error) => last = error,
            }
        }
        Err(RecoveryError::Client(last))
    }

    fn start(candidates: Vec<ConnectionOptions>, index: usize, options: RecoveryOptions, conn: Connection) -> Self {
        let shared = Arc::new(Shared {
            candidates,
            candidate: AtomicUsize::new(index),
            options,
            link: watch::Sender::new(Link::Up(conn.clone())),
            closing: watch::Sender::new(false),
            ops: RwLock::new(()),
            topology: Mutex::new(Topology::default()),
            channels: Mutex::new(Vec::new()),
            events: broadcast::channel(256).0,
            counters: Counters::default(),
            ids: IdSource::new(),
        });
        tokio::spawn(supervise(shared.clone(), conn));
        RecoveringConnection { shared }
    }

    /// Opens a channel that recovery reopens on every new connection.
    pub async fn open_channel(&self) -> Result<RecoveringChannel, RecoveryError> {
        loop {
            let conn = self.shared.up().await?;
            let ops = self.shared.ops.read().await;
            match conn.open_channel().await {
                Ok(channel) => {
                    let state = ChannelState::new(self.shared.clone(), channel);
                    lock(&self.shared.channels).push(Arc::downgrade(&state));
                    drop(ops);
                    return Ok(RecoveringChannel { state });
                }
                Err(Error::Connection(_)) => {
                    drop(ops);
                    self.shared.wait_past(conn.generation()).await?
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Recovery's events: disconnected, reconnecting, recovered, failed. A receiver that falls
    /// more than 256 events behind misses the oldest (and is told so by `recv`).
    pub fn events(&self) -> broadcast::Receiver<RecoveryEvent> {
        self.shared.events.subscribe()
    }

    /// Counts of disconnects, attempts, recoveries, failures and re-sent publishes.
    pub fn stats(&self) -> RecoveryStats {
        self.shared.counters.snapshot()
    }

    /// The client connection, while up.
    pub fn current(&self) -> Option<Connection> {
        match &*self.shared.link.borrow() {
            Link::Up(conn) if conn.close_reason().is_none() => Some(conn.clone()),
            _ => None,
        }
    }

    /// Waits (as calls do) until the connection is up, and returns it.
    pub async fn wait_until_up(&self) -> Result<Connection, RecoveryError> {
        self.shared.up().await
    }

    /// The current name of a queue: a server-named queue gets a new name on each recovery,
    /// and this maps any of its earlier names to the latest. Other names map to themselves.
    pub fn queue_name(&self, name: &str) -> String {
        self.shared.current_queue_name(name)
    }

    /// Closes the connection and stops recovering. Unconfirmed publishes fail with
    /// [`RecoveryError::Closed`].
    pub async fn close(&self) -> Result<(), RecoveryError> {
        self.shared.closing.send_replace(true);
        let conn = self.current();
        if let Some(conn) = conn {
            // Whatever the close handshake says, the connection ends and, with `closing`
            // set, so does recovery.
            if let Err(error) = conn.close().await {
                tracing::debug!(%error, "closing the connection");
            }
        }
        let mut link = self.shared.link.subscribe();
        let _ = link.wait_for(|l| matches!(l, Link::Ended(_))).await;
        Ok(())
    }
}

/// Watches the connection and recovers it, until the user closes it or recovery gives up.
async fn supervise(shared: Arc<Shared>, mut conn: Connection) {
    loop {
        let cause = conn.closed().await;
        if *shared.closing.borrow() || matches!(cause, ConnectionError::ClosedByClient { .. }) {
            end(&shared, RecoveryError::Closed).await;
            return;
        }
        tracing::warn!(%cause, generation = conn.generation(), "connection lost; recovering");
        shared.link.send_replace(Link::Down);
        Counters::bump(&shared.counters.disconnects, 1);
        shared.emit(RecoveryEvent::Disconnected { cause });
        match reconnect(&shared).await {
            Ok((new, endpoint)) => {
                conn = new;
                let restored = restore(&shared, &conn, endpoint).await;
                // Closed by the user while restoring: close what was restored, and stop.
                if *shared.closing.borrow() {
                    let _ = conn.close().await;
                    end(&shared, RecoveryError::Closed).await;
                    return;
                }
                tracing::info!(?restored, "recovered");
                shared.link.send_replace(Link::Up(conn.clone()));
                Counters::bump(&shared.counters.recoveries, 1);
                Counters::bump(&shared.counters.republished, restored.republished as u64);
                shared.emit(RecoveryEvent::Recovered(restored));
            }
            Err(error) => {
                if !matches!(error, RecoveryError::Closed) {
                    Counters::bump(&shared.counters.failures, 1);
                    shared.emit(RecoveryEvent::Failed(error.clone()));
                }
                end(&shared, error).await;
                return;
            }
        }
    }
}

/// Stops for good: calls fail with `error`, kept publishes too, consumers end.
async fn end(shared: &Shared, error: RecoveryError) {
    tracing::info!(%error, "recovering connection ended");
    for channel in shared.live_channels() {
        lock(&channel.consumers).clear();
        channel.fail_publishes(&error).await;
    }
    shared.link.send_replace(Link::Ended(error));
}

/// Tries the candidates in turn, starting after the one just lost, with backoff between
/// attempts, until one answers, the attempt limit is reached, or the user closes.
async fn reconnect(shared: &Shared) -> Result<(Connection, String), RecoveryError> {
    let mut rng = fastrand::Rng::new();
    let mut closing = shared.closing.subscribe();
    let mut failed = 0u32;
    loop {
        let index = (shared.candidate.load(Ordering::Relaxed) + 1) % shared.candidates.len();
        shared.candidate.store(index, Ordering::Relaxed);
        let endpoint = shared.candidate_endpoint(index);
        let delay = shared.options.backoff.delay(failed, &mut rng);
        shared.emit(RecoveryEvent::Reconnecting { attempt: failed + 1, delay, endpoint: endpoint.clone() });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closing.wait_for(|c| *c) => return Err(RecoveryError::Closed),
        }
        Counters::bump(&shared.counters.attempts, 1);
        let attempt = Connection::connect_with(shared.candidates[index].clone()).await;
        if *shared.closing.borrow() {
            if let Ok(conn) = attempt {
                let _ = conn.close().await;
            }
            return Err(RecoveryError::Closed);
        }
        match attempt {
            Ok(conn) => return Ok((conn, endpoint)),
            Err(error) => {
                failed += 1;
                tracing::info!(%error, %endpoint, failed, "reconnection attempt failed");
                if !shared.options.backoff.allows(failed) {
                    return Err(RecoveryError::GaveUp { attempts: failed, last: error });
                }
            }
        }
    }
}

/// Restores everything on `conn`, in order, and says what it did. A failure is reported
/// and the rest goes on; a connection that dies meanwhile is recovered again.
async fn restore(shared: &Shared, conn: &Connection, endpoint: String) -> Restored {
    let _ops = shared.ops.write().await;
    let mut report = Restored { generation: conn.generation(), endpoint, ..Restored::default() };
    let channels = shared.live_channels();
    for channel in &channels {
        match channel.reopen(conn).await {
            Ok(()) => report.channels += 1,
            Err(error) => report.failures.push(format!("channel: {error}")),
        }
    }
    restore_topology(shared, conn, &mut report).await;
    for channel in &channels {
        let (consumers, failures) = channel.restore_consumers().await;
        report.consumers += consumers;
        report.failures.extend(failures);
    }
    for channel in &channels {
        report.republished += channel.resend().await;
    }
    report
}

/// Exchanges, then queues (renaming server-named ones), then bindings, on a channel of
/// their own so that a refused declare does not close a user's channel.
async fn restore_topology(shared: &Shared, conn: &Connection, report: &mut Restored) {
    let (exchanges, queues) = {
        let topology = shared.topology();
        (topology.exchanges.clone(), topology.queues.clone())
    };
    let mut channel = TopologyChannel { conn, channel: None };
    for e in &exchanges {
        let done = channel.run(|c| async move { c.exchange_declare(&e.name, &e.kind, e.options, &e.arguments).await });
        match done.await {
            Ok(()) => report.exchanges += 1,
            Err(error) => report.failures.push(format!("exchange {}: {error}", e.name)),
        }
    }
    for q in &queues {
        let name = if q.server_named { "" } else { q.name.as_str() };
        match channel.run(|c| async move { c.queue_declare(name, q.options, &q.arguments).await }).await {
            Ok(info) => {
                report.queues += 1;
                if q.server_named && info.name != q.name {
                    shared.topology().rename(&q.name, &info.name);
                    report.renamed.push((q.name.clone(), info.name));
                }
            }
            Err(error) => report.failures.push(format!("queue {}: {error}", q.name)),
        }
    }
    let bindings = shared.topology().bindings.clone();
    for b in &bindings {
        let (d, s, k, a) = (&b.destination, &b.source, &b.routing_key, &b.arguments);
        let made = match b.kind {
            Destination::Queue => channel.run(|c| async move { c.queue_bind(d, s, k, false, a).await }).await,
            Destination::Exchange => channel.run(|c| async move { c.exchange_bind(d, s, k, false, a).await }).await,
        };
        match made {
            Ok(()) => report.bindings += 1,
            Err(error) => report.failures.push(format!("binding {s} -> {d} ({k}): {error}")),
        }
    }
    if let Some(c) = channel.channel {
        let _ = c.close().await;
    }
}

/// A channel for restoring topology, opened again after a declare the broker refused.
struct TopologyChannel<'a> {
    conn: &'a Connection,
    channel: Option<Channel>,
}

impl TopologyChannel<'_> {
    async fn run<T, F, Fut>(&mut self, op: F) -> Result<T, Error>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let channel = match self.channel.take().filter(|c| c.close_reason().is_none()) {
            Some(channel) => channel,
            None => self.conn.open_channel().await?,
        };
        self.channel = Some(channel.clone());
        op(channel).await
    }
}
