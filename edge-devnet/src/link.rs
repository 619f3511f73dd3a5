//! Link emulation: a userspace TCP proxy that gives the traffic through it
//! a one-way latency (with optional jitter) and a bandwidth per direction,
//! the way a parent–child link of a real hierarchy would (issue 8; this
//! machine's kernel has no netem).
//!
//! A [`LinkProfile`] is one direction's behaviour, written as
//! `LATENCY[+JITTER][/BANDWIDTH]` (`"55ms/160mbit"`, `"0.5ms+0.1ms/1gbit"`)
//! or a name (`lan`, `cloud`, `none`). A [`Link`] is a pair of profiles
//! (`up`: from the side that connects to the upstream; `down`: back) plus
//! what the link's connections share: the bandwidth of each direction and
//! byte counters. A [`LinkProxy`] accepts TCP connections and forwards each
//! to one upstream address through a link; several proxies may share one
//! link.
//!
//! Each direction of a connection is a pipeline, so that latency does not
//! limit throughput: a reader stamps every chunk it reads with the time its
//! last bit leaves the link (the direction's wire, shared by all the link's
//! connections, is reserved chunk after chunk at the bandwidth) plus the
//! one-way latency (plus uniform jitter), and queues it; a writer delivers
//! each chunk at that time. A chunk never overtakes an earlier one of its
//! connection (jitter included). The reader stays at most a few
//! milliseconds ahead of the wire, so a fast sender is held back by TCP's
//! own flow control, and the bytes queued per direction are bounded.
//! End of stream is propagated as a half-close once the queued bytes are
//! delivered; an I/O error on either side closes both.
//!
//! Not emulated: the TCP handshake's round trip (a client's `connect`
//! completes at the proxy at once; its first bytes pay one one-way latency),
//! loss and reordering.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// The most bytes read at once: one chunk of the pipeline.
const CHUNK: usize = 64 * 1024;
/// How far the reader may run ahead of the wire before it waits.
const AHEAD: Duration = Duration::from_millis(4);

/// One direction of an emulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LinkProfile {
    /// Added to every byte's trip: half the round-trip time of a symmetric
    /// link.
    pub one_way_latency: Duration,
    /// Each chunk's latency is drawn uniformly from `one_way_latency ±
    /// jitter` (at least zero); a chunk still never overtakes an earlier one
    /// of its connection, so jitter delays rather than reorders.
    pub jitter: Duration,
    /// The direction's capacity in bits per second, shared by all the
    /// link's connections; `None` for no limit.
    pub bandwidth_bits_per_sec: Option<u64>,
}

impl LinkProfile {
    /// A profile without jitter.
    pub const fn new(one_way_latency: Duration, bandwidth_bits_per_sec: Option<u64>) -> Self {
        Self {
            one_way_latency,
            jitter: Duration::ZERO,
            bandwidth_bits_per_sec,
        }
    }

    /// The same profile with `jitter`.
    pub const fn with_jitter(self, jitter: Duration) -> Self {
        Self { jitter, ..self }
    }

    /// No latency and no bandwidth limit (`none`).
    pub const fn unshaped() -> Self {
        Self::new(Duration::ZERO, None)
    }

    /// A local network (`lan`): 0.5 ms one way (1 ms round trip), 1 Gbit/s.
    pub const fn lan() -> Self {
        Self::new(Duration::from_micros(500), Some(1_000_000_000))
    }

    /// A link to a cloud region (`cloud`): 55 ms one way (110 ms round
    /// trip), 160 Mbit/s.
    pub const fn cloud() -> Self {
        Self::new(Duration::from_millis(55), Some(160_000_000))
    }

    /// Whether the profile adds nothing.
    pub fn is_unshaped(&self) -> bool {
        self.one_way_latency.is_zero()
            && self.jitter.is_zero()
            && self.bandwidth_bits_per_sec.is_none()
    }

    /// How long `bytes` bytes occupy the wire at this bandwidth.
    pub fn transmission_time(&self, bytes: u64) -> Duration {
        match self.bandwidth_bits_per_sec {
            None => Duration::ZERO,
            Some(bits_per_sec) => {
                let bits_per_sec = u128::from(bits_per_sec.max(1));
                let nanos = (u128::from(bytes) * 8 * 1_000_000_000).div_ceil(bits_per_sec);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        }
    }

    /// One draw of the latency: `one_way_latency ± jitter`, at least zero.
    fn sample_latency(&self, rng: &mut Rng) -> Duration {
        if self.jitter.is_zero() {
            return self.one_way_latency;
        }
        let jitter = self.jitter.as_nanos().min(u128::from(u64::MAX / 4)) as i128;
        let offset = i128::from(rng.below(2 * jitter as u64 + 1)) - jitter;
        let nanos = (self.one_way_latency.as_nanos() as i128 + offset).max(0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The bytes a connection may have queued in one direction: twice what
    /// the wire holds over the latency, within bounds.
    fn queue_budget(&self) -> usize {
        let floor = 4 * CHUNK;
        match self.bandwidth_bits_per_sec {
            None => 16 << 20,
            Some(bits_per_sec) => {
                let window = self.one_way_latency + self.jitter + AHEAD + Duration::from_millis(10);
                let bytes = bits_per_sec as f64 / 8.0 * window.as_secs_f64() * 2.0;
                (bytes as usize).clamp(floor, 64 << 20)
            }
        }
    }
}

/// Why a profile string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid link profile {input:?}: {reason} (expected LATENCY[+JITTER][/BANDWIDTH] \
     such as \"55ms/160mbit\" or \"0.5ms+0.1ms/1gbit\", with latency in us, ms or s and \
     bandwidth in bit, kbit, mbit or gbit per second or \"unlimited\"; or lan, cloud, none)"
)]
pub struct ParseLinkProfileError {
    input: String,
    reason: String,
}

impl FromStr for LinkProfile {
    type Err = ParseLinkProfileError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| ParseLinkProfileError {
            input: input.to_string(),
            reason,
        };
        let text = input.trim().to_ascii_lowercase();
        match text.as_str() {
            "" => return Err(error("it is empty".to_string())),
            "lan" => return Ok(Self::lan()),
            "cloud" => return Ok(Self::cloud()),
            "none" => return Ok(Self::unshaped()),
            _ => {}
        }
        let (delay, bandwidth) = match text.split_once('/') {
            Some((delay, bandwidth)) => (delay.trim(), Some(bandwidth.trim())),
            None => (text.as_str(), None),
        };
        let (latency, jitter) = match delay.split_once('+') {
            Some((latency, jitter)) => (latency.trim(), Some(jitter.trim())),
            None => (delay, None),
        };
        let one_way_latency = parse_duration(latency).map_err(|e| error(format!("latency {e}")))?;
        let jitter = match jitter {
            None => Duration::ZERO,
            Some(jitter) => parse_duration(jitter).map_err(|e| error(format!("jitter {e}")))?,
        };
        let bandwidth_bits_per_sec = match bandwidth {
            None => None,
            Some(bandwidth) => {
                parse_bandwidth(bandwidth).map_err(|e| error(format!("bandwidth {e}")))?
            }
        };
        Ok(Self {
            one_way_latency,
            jitter,
            bandwidth_bits_per_sec,
        })
    }
}

/// `"55"` and `"ms"` from `"55ms"`.
fn split_unit(text: &str) -> (&str, &str) {
    let at = text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len());
    (text[..at].trim(), text[at..].trim())
}

/// A decimal number times `10^scale`, exactly; `None` if it is not a plain
/// non-negative decimal, is finer than `10^-scale` or overflows.
fn parse_scaled(number: &str, scale: u32) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    let (kept, dropped) = fraction.split_at(fraction.len().min(scale as usize));
    if dropped.bytes().any(|b| b != b'0') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let kept_value: u128 = if kept.is_empty() {
        0
    } else {
        kept.parse().ok()?
    };
    let fraction = kept_value * 10u128.pow(scale - kept.len() as u32);
    whole.checked_mul(10u128.pow(scale))?.checked_add(fraction)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_unit(text);
    let scale = match unit {
        "ns" => 0,
        "us" | "µs" => 3,
        "ms" => 6,
        "s" => 9,
        "" if !number.is_empty() && number.bytes().all(|b| b == b'0' || b == b'.') => 0,
        "" => return Err(format!("{text:?} has no unit")),
        _ => return Err(format!("{text:?} has an unknown unit {unit:?}")),
    };
    let nanos = parse_scaled(number, scale)
        .and_then(|nanos| u64::try_from(nanos).ok())
        .ok_or_else(|| format!("{text:?} is not a duration"))?;
    Ok(Duration::from_nanos(nanos))
}

fn parse_bandwidth(text: &str) -> Result<Option<u64>, String> {
    if matches!(text, "unlimited" | "inf" | "none") {
        return Ok(None);
    }
    let (number, unit) = split_unit(text);
    let scale = match unit.strip_suffix("/s").unwrap_or(unit) {
        "bit" => 0,
        "kbit" => 3,
        "mbit" => 6,
        "gbit" => 9,
        "bps" | "kbps" | "mbps" | "gbps" => {
            return Err(format!(
                "{text:?} is ambiguous (bits or bytes per second?): write bit, kbit, mbit or gbit"
            ));
        }
        "" => return Err(format!("{text:?} has no unit")),
        _ => return Err(format!("{text:?} has an unknown unit {unit:?}")),
    };
    match parse_scaled(number, scale).and_then(|bits| u64::try_from(bits).ok()) {
        None => Err(format!("{text:?} is not a number of bits per second")),
        Some(0) => Err(format!(
            "{text:?} is zero (write \"unlimited\" for no limit)"
        )),
        Some(bits) => Ok(Some(bits)),
    }
}

/// `value / 10^scale` as a short decimal.
fn format_scaled(value: u128, scale: u32) -> String {
    let unit = 10u128.pow(scale);
    let (whole, fraction) = (value / unit, value % unit);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = scale as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// The string form [`LinkProfile::from_str`] reads back: `55ms/160mbit`,
/// `0.5ms+0.1ms/1gbit`, `20ms` (no bandwidth limit).
impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", format_scaled(self.one_way_latency.as_nanos(), 6))?;
        if !self.jitter.is_zero() {
            write!(f, "+{}ms", format_scaled(self.jitter.as_nanos(), 6))?;
        }
        if let Some(bits) = self.bandwidth_bits_per_sec {
            let (unit, scale) = [("gbit", 9), ("mbit", 6), ("kbit", 3)]
                .into_iter()
                .find(|(_, scale)| bits % 10u64.pow(*scale) == 0)
                .unwrap_or(("bit", 0));
            write!(f, "/{}{unit}", bits / 10u64.pow(scale))?;
        }
        Ok(())
    }
}

impl serde::Serialize for LinkProfile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LinkProfile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An emulated link: a profile per direction, and the state all the
/// connections through it share (each direction's wire, byte counters).
/// Clones are the same link.
#[derive(Debug, Clone)]
pub struct Link {
    shared: Arc<LinkShared>,
    /// Whether this handle sees the link from its far end: its `up` is the
    /// link's `down` (see [`Link::reversed`]).
    reversed: bool,
}

#[derive(Debug)]
struct LinkShared {
    up: Direction,
    down: Direction,
    connections: AtomicU64,
}

/// One direction of a link.
#[derive(Debug)]
struct Direction {
    profile: LinkProfile,
    /// When the wire is free again.
    wire_free_at: Mutex<Instant>,
    /// Bytes delivered (or being written) to the far side.
    bytes: AtomicU64,
}

impl Direction {
    fn new(profile: LinkProfile) -> Self {
        Self {
            profile,
            wire_free_at: Mutex::new(Instant::now()),
            bytes: AtomicU64::new(0),
        }
    }

    /// Reserves the wire for `bytes` bytes read at `now`: when their last
    /// bit has left.
    fn transmit(&self, bytes: usize, now: Instant) -> Instant {
        if self.profile.bandwidth_bits_per_sec.is_none() {
            return now;
        }
        let time = self.profile.transmission_time(bytes as u64);
        let mut free_at = self
            .wire_free_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *free_at = (*free_at).max(now) + time;
        *free_at
    }
}

impl Link {
    /// A link with `up` for the bytes from the connecting side to the
    /// upstream and `down` for the bytes back.
    pub fn new(up: LinkProfile, down: LinkProfile) -> Self {
        Self {
            shared: Arc::new(LinkShared {
                up: Direction::new(up),
                down: Direction::new(down),
                connections: AtomicU64::new(0),
            }),
            reversed: false,
        }
    }

    /// The same link entered from its far end: connections through the
    /// returned handle send on this link's `down` direction and receive on
    /// its `up` direction, sharing their wires and counters. A tree edge is
    /// one link whichever end a connection starts from.
    pub fn reversed(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            reversed: !self.reversed,
        }
    }

    fn towards_upstream(&self) -> &Direction {
        if self.reversed {
            &self.shared.down
        } else {
            &self.shared.up
        }
    }

    fn towards_client(&self) -> &Direction {
        if self.reversed {
            &self.shared.up
        } else {
            &self.shared.down
        }
    }

    /// A link with the same profile both ways.
    pub fn symmetric(profile: LinkProfile) -> Self {
        Self::new(profile, profile)
    }

    /// The profile from the connecting side to the upstream.
    pub fn up(&self) -> LinkProfile {
        self.towards_upstream().profile
    }

    /// The profile from the upstream back to the connecting side.
    pub fn down(&self) -> LinkProfile {
        self.towards_client().profile
    }

    /// Bytes delivered to the upstream so far.
    pub fn bytes_up(&self) -> u64 {
        self.towards_upstream().bytes.load(Ordering::Relaxed)
    }

    /// Bytes delivered back to the connecting side so far.
    pub fn bytes_down(&self) -> u64 {
        self.towards_client().bytes.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

/// Forwards every connection accepted on `listen` to `upstream` through a
/// link with `up` (towards `upstream`) and `down` (back). Runs until it is
/// dropped, or until accepting fails for a reason that is not about one
/// connection or a momentary lack of resources, which it returns. See
/// [`LinkProxy`] for one that can be stopped and counts bytes.
pub async fn proxy(
    listen: TcpListener,
    upstream: SocketAddr,
    up: LinkProfile,
    down: LinkProfile,
) -> io::Result<()> {
    accept_loop(
        listen,
        upstream,
        Link::new(up, down),
        std::future::pending(),
    )
    .await
}

/// A running link proxy: accepts TCP connections and forwards each to one
/// upstream address through a [`Link`]. Stopping it, or dropping it, closes
/// its listener and every connection through it.
#[derive(Debug)]
pub struct LinkProxy {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    link: Link,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl LinkProxy {
    /// Starts forwarding the connections accepted on `listener` to
    /// `upstream` through `link` (which other proxies may share). Must be
    /// called within a Tokio runtime.
    pub fn start(listener: TcpListener, upstream: SocketAddr, link: Link) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, upstream, link.clone(), async move {
            // A dropped sender stops too.
            let _ = stopped.await;
        }));
        Ok(Self {
            local_addr,
            upstream,
            link,
            stop: Some(stop),
            task,
        })
    }

    /// Binds `listen` (port 0 for any free port) and [starts](Self::start).
    pub async fn bind(listen: SocketAddr, upstream: SocketAddr, link: Link) -> io::Result<Self> {
        Self::start(TcpListener::bind(listen).await?, upstream, link)
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where connections are forwarded.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The link the connections go through.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Bytes delivered to the upstream so far (by all proxies of the link).
    pub fn bytes_up(&self) -> u64 {
        self.link.bytes_up()
    }

    /// Bytes delivered back to clients so far (by all proxies of the link).
    pub fn bytes_down(&self) -> u64 {
        self.link.bytes_down()
    }

    /// Stops accepting, closes every connection through this proxy and
    /// waits until they are closed. The error, if accepting had failed.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) if error.is_cancelled() => Ok(()),
            Err(error) => Err(io::Error::other(error)),
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // Dropping the stop sender ends the accept loop, which closes the
        // connections; aborting makes sure of it.
        self.stop.take();
        self.task.abort();
    }
}

/// Whether an accept error is about one connection or a momentary lack of
/// resources, after which accepting can go on.
fn accept_can_continue(error: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || error.raw_os_error().is_some_and(|code| {
        [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
            .iter()
            .any(|errno| *errno as i32 == code)
    })
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    link: Link,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(stop);
    let mut connections = JoinSet::new();
    let result = loop {
        tokio::select! {
            () = &mut stop => break Ok(()),
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    link.shared.connections.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(serve(client, upstream, link.clone()));
                }
                Err(error) if accept_can_continue(&error) => {
                    tracing::warn!(%upstream, "link proxy: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => break Err(error),
            },
        }
    };
    drop(listener);
    connections.shutdown().await;
    result
}

/// One connection: both directions until both have ended, or until an I/O
/// error on either, which closes both sockets.
async fn serve(client: TcpStream, upstream: SocketAddr, link: Link) {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(error) => {
            tracing::debug!(%upstream, "link proxy: cannot connect: {error}");
            return;
        }
    };
    // The proxy forwards what it reads when it is due: Nagle's algorithm
    // would hold small chunks back for an acknowledgement.
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, link.towards_upstream());
    let down = pump(server_read, client_write, link.towards_client());
    if let Err(error) = tokio::try_join!(up, down) {
        tracing::debug!(%upstream, "link proxy: connection closed: {error}");
    }
}

/// A chunk in flight: delivered at `due`; its bytes count against the
/// connection's queue budget until then.
struct Chunk {
    due: Instant,
    data: Bytes,
    _budget: OwnedSemaphorePermit,
}

/// One direction of one connection: everything `from` sends, delivered to
/// `to` through `direction`, then the half-close.
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf, direction: &Direction) -> io::Result<()> {
    let (queue, queued) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(direction.profile.queue_budget()));
    tokio::try_join!(
        read_side(from, direction, queue, budget),
        write_side(to, direction, queued),
    )?;
    Ok(())
}

async fn read_side(
    mut from: OwnedReadHalf,
    direction: &Direction,
    queue: mpsc::UnboundedSender<Chunk>,
    budget: Arc<Semaphore>,
) -> io::Result<()> {
    let mut rng = Rng::new();
    let mut buffer = vec![0; CHUNK];
    let mut last_due = Instant::now();
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            // Dropping the queue ends the writer once it is empty.
            return Ok(());
        }
        let Ok(permit) = budget.clone().acquire_many_owned(read as u32).await else {
            return Ok(());
        };
        let now = Instant::now();
        let sent = direction.transmit(read, now);
        let due = (sent + direction.profile.sample_latency(&mut rng)).max(last_due);
        last_due = due;
        let chunk = Chunk {
            due,
            data: Bytes::copy_from_slice(&buffer[..read]),
            _budget: permit,
        };
        if queue.send(chunk).is_err() {
            // The writer has failed; its error ends the connection.
            return Ok(());
        }
        if sent > now + AHEAD {
            tokio::time::sleep_until((sent - AHEAD).into()).await;
        }
    }
}

async fn write_side(
    mut to: OwnedWriteHalf,
    direction: &Direction,
    mut queued: mpsc::UnboundedReceiver<Chunk>,
) -> io::Result<()> {
    while let Some(chunk) = queued.recv().await {
        sleep_until_precise(chunk.due).await;
        // Counted first, so that whoever has received the bytes sees them
        // counted.
        direction
            .bytes
            .fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
        to.write_all(&chunk.data).await?;
    }
    to.shutdown().await
}

/// Waits until `deadline`, to within tens of microseconds on average.
/// Tokio's timer fires on millisecond ticks, too coarse for a 0.5 ms link:
/// this waits with it for all but the last 2 ms, and with a thread that has
/// an exact timer ([`PreciseTimer`]) for the rest. Waking that thread and
/// then the task takes time of its own (tens of microseconds, more on a busy
/// machine), so the alarm is set that much early: by a running average of
/// how late the task has been resuming after its alarm.
async fn sleep_until_precise(deadline: Instant) {
    const COARSE_MARGIN: Duration = Duration::from_millis(2);
    const NOT_WORTH_IT: Duration = Duration::from_micros(20);
    /// The running average of the wake-up delay, in nanoseconds.
    /// (Starting from a typical idle machine's.)
    static WAKE_UP_DELAY: AtomicU64 = AtomicU64::new(30_000);
    const MOST_WAKE_UP_DELAY: u64 = 300_000;
    let now = Instant::now();
    if deadline <= now + NOT_WORTH_IT {
        return;
    }
    if deadline - now > COARSE_MARGIN {
        tokio::time::sleep_until((deadline - COARSE_MARGIN).into()).await;
    }
    let average = WAKE_UP_DELAY.load(Ordering::Relaxed);
    let alarm = deadline - Duration::from_nanos(average);
    let now = Instant::now();
    if alarm <= now + NOT_WORTH_IT {
        return;
    }
    let (wake, woken) = oneshot::channel();
    PreciseTimer::global().add(alarm, wake);
    let _ = woken.await;
    let delay = Instant::now().saturating_duration_since(alarm).as_nanos();
    let delay = u64::try_from(delay)
        .unwrap_or(u64::MAX)
        .min(MOST_WAKE_UP_DELAY);
    // An exponential average over about the last 8 wake-ups (racing
    // updates lose one sample at worst).
    let updated = (average * 7 + delay) / 8;
    WAKE_UP_DELAY.store(updated, Ordering::Relaxed);
}

/// One thread that sends on each channel at its deadline, sleeping with the
/// operating system's high-resolution timer in between.
struct PreciseTimer {
    pending: Mutex<BinaryHeap<Reverse<Alarm>>>,
    changed: Condvar,
}

struct Alarm {
    deadline: Instant,
    sequence: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.sequence) == (other.deadline, other.sequence)
    }
}

impl Eq for Alarm {}

impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.sequence).cmp(&(other.deadline, other.sequence))
    }
}

impl PreciseTimer {
    fn global() -> &'static PreciseTimer {
        static TIMER: PreciseTimer = PreciseTimer {
            pending: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        };
        static STARTED: Once = Once::new();
        STARTED.call_once(|| {
            std::thread::Builder::new()
                .name("link-timer".to_string())
                .spawn(|| {
                    // The kernel may otherwise fire a thread's timers up to
                    // 50 µs late, to group them.
                    #[cfg(target_os = "linux")]
                    let _ = nix::sys::prctl::set_timerslack(1);
                    TIMER.run()
                })
                .expect("cannot start the link emulation's timer thread");
        });
        &TIMER
    }

    fn add(&self, deadline: Instant, wake: oneshot::Sender<()>) {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let earliest = pending
            .peek()
            .is_none_or(|Reverse(first)| deadline < first.deadline);
        pending.push(Reverse(Alarm {
            deadline,
            sequence,
            wake,
        }));
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            pending = match pending.peek() {
                None => self
                    .changed
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(Reverse(first)) if first.deadline <= now => {
                    if let Some(Reverse(alarm)) = pending.pop() {
                        let _ = alarm.wake.send(());
                    }
                    pending
                }
                Some(Reverse(first)) => {
                    let wait = first.deadline - now;
                    self.changed
                        .wait_timeout(pending, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// A small pseudo-random generator (xorshift64*) for jitter, seeded
/// differently for each direction of each connection.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        static STREAM: AtomicU64 = AtomicU64::new(0);
        let stream = STREAM.fetch_add(1, Ordering::Relaxed);
        Self(RandomState::new().hash_one(stream) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> LinkProfile {
        text.parse().unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn the_issue_profiles() {
        assert_eq!(
            LinkProfile::lan().one_way_latency,
            Duration::from_micros(500)
        );
        assert_eq!(
            LinkProfile::lan().bandwidth_bits_per_sec,
            Some(1_000_000_000)
        );
        assert_eq!(
            LinkProfile::cloud().one_way_latency,
            Duration::from_millis(55)
        );
        assert_eq!(
            LinkProfile::cloud().bandwidth_bits_per_sec,
            Some(160_000_000)
        );
        assert_eq!(profile("lan"), LinkProfile::lan());
        assert_eq!(profile(" Cloud "), LinkProfile::cloud());
        assert_eq!(profile("none"), LinkProfile::unshaped());
        assert_eq!(profile("0.5ms/1gbit"), LinkProfile::lan());
        assert_eq!(profile("55ms/160mbit"), LinkProfile::cloud());
    }

    #[test]
    fn parses_latency_jitter_and_bandwidth() {
        assert_eq!(
            profile("0.5ms+0.1ms/1gbit"),
            LinkProfile::lan().with_jitter(Duration::from_micros(100))
        );
        assert_eq!(
            profile("20ms/40mbit"),
            LinkProfile::new(Duration::from_millis(20), Some(40_000_000))
        );
        assert_eq!(
            profile("1.5s"),
            LinkProfile::new(Duration::from_millis(1500), None)
        );
        assert_eq!(
            profile("250us/unlimited"),
            LinkProfile::new(Duration::from_micros(250), None)
        );
        assert_eq!(
            profile("250µs/2.5kbit/s").bandwidth_bits_per_sec,
            Some(2500)
        );
        assert_eq!(
            profile("0/100bit"),
            LinkProfile::new(Duration::ZERO, Some(100))
        );
        assert_eq!(
            profile("10MS + 2ms / 1.5GBit").jitter,
            Duration::from_millis(2)
        );
    }

    #[test]
    fn displays_what_it_parses() {
        for text in [
            "55ms/160mbit",
            "0.5ms+0.1ms/1gbit",
            "20ms",
            "0ms",
            "0.000001ms/1bit",
            "1500ms/1500kbit",
        ] {
            assert_eq!(profile(text).to_string(), text);
        }
        assert_eq!(LinkProfile::lan().to_string(), "0.5ms/1gbit");
        assert_eq!(LinkProfile::cloud().to_string(), "55ms/160mbit");
        let json = serde_json::to_string(&LinkProfile::cloud()).unwrap();
        assert_eq!(json, "\"55ms/160mbit\"");
        assert_eq!(
            serde_json::from_str::<LinkProfile>(&json).unwrap(),
            LinkProfile::cloud()
        );
        assert!(serde_json::from_str::<LinkProfile>("\"fast\"").is_err());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let error = |text: &str| text.parse::<LinkProfile>().unwrap_err().to_string();
        assert!(error("").contains("empty"), "{}", error(""));
        assert!(
            error("55/160mbit").contains("latency \"55\" has no unit"),
            "{}",
            error("55/1mbit")
        );
        assert!(error("55ms/160").contains("bandwidth \"160\" has no unit"));
        assert!(error("55ms/160mbps").contains("ambiguous"));
        assert!(error("55ms/0mbit").contains("zero"));
        assert!(error("5h").contains("unknown unit \"h\""));
        assert!(error("-5ms").contains("not a duration"));
        assert!(error("5ms+x").contains("jitter"));
        assert!(error("1.2.3ms").contains("not a duration"));
        assert!(error("0.0000001ms").contains("not a duration"));
        assert!(error("fast").contains("expected LATENCY[+JITTER][/BANDWIDTH]"));
    }

    #[test]
    fn transmission_time_and_jitter_bounds() {
        let profile = LinkProfile::new(Duration::from_millis(10), Some(8_000_000));
        assert_eq!(profile.transmission_time(1_000_000), Duration::from_secs(1));
        assert_eq!(
            LinkProfile::unshaped().transmission_time(1 << 30),
            Duration::ZERO
        );
        let jittered = profile.with_jitter(Duration::from_millis(4));
        let mut rng = Rng::new();
        let samples: Vec<Duration> = (0..10_000)
            .map(|_| jittered.sample_latency(&mut rng))
            .collect();
        let (min, max) = (samples.iter().min().unwrap(), samples.iter().max().unwrap());
        assert!(*min >= Duration::from_millis(6) && *min < Duration::from_micros(6_100));
        assert!(*max <= Duration::from_millis(14) && *max > Duration::from_micros(13_900));
        let big_jitter =
            LinkProfile::new(Duration::from_millis(1), None).with_jitter(Duration::from_millis(5));
        assert!((0..1000).all(|_| big_jitter.sample_latency(&mut rng) <= Duration::from_millis(6)));
    }

    #[test]
    fn the_wire_is_shared_and_never_ahead_of_now() {
        let direction = Direction::new(LinkProfile::new(Duration::ZERO, Some(8_000)));
        let now = Instant::now();
        assert_eq!(direction.transmit(1000, now), now + Duration::from_secs(1));
        assert_eq!(
            direction.transmit(500, now),
            now + Duration::from_millis(1500)
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(
            direction.transmit(1000, later),
            later + Duration::from_secs(1)
        );
    }
}
