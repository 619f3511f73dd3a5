//! The blocking call's own connection: the short path of a blocking call
//! (the pipelined begin and the transaction that commits it) runs on a
//! connection that the call has to itself, taken from a pool at the begin
//! and given back after the commit.
//!
//! Having it to itself is what lets the call `WATCH` its lock from the
//! moment it took it, and commit with a plain `MULTI`/`EXEC` that Redis
//! applies only if nothing touched the lock meanwhile: no script, so no
//! Lua machinery per call. It also lets the encoding and decoding be lean
//! (commands written straight into one buffer, big values written to the
//! socket from where they are, replies decoded in place by
//! `redis-protocol`'s range decoder, one write and usually one read per
//! round trip, no multiplexing task): most of what a call costs the
//! function's process otherwise.
//!
//! Anything unusual on this path (an error reply, a broken connection, a
//! Redis reached over TLS) is not handled here: the caller falls back to
//! the general path on the shared, self-healing connection, where every
//! step is a script that may be repeated safely.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use redis::ConnectionAddr;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Values this long are written to Redis from where they are, not copied
/// into the pipeline first.
const IN_PLACE_MIN: usize = 64 * 1024;

/// Idle connections kept for later calls.
const IDLE: usize = 64;
/// A read buffer grown past this by a large reply is not kept.
const KEPT_BUFFER: usize = 64 * 1024;

enum Stream {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.write_all(bytes).await,
            #[cfg(unix)]
            Stream::Unix(stream) => stream.write_all(bytes).await,
        }
    }

    async fn read_buf(&mut self, buffer: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read_buf(buffer).await,
            #[cfg(unix)]
            Stream::Unix(stream) => stream.read_buf(buffer).await,
        }
    }
}

/// One reply: a decoded frame whose byte ranges, shifted by the offset
/// beside it, index the connection's read buffer.
pub(crate) type Reply = (RangeFrame, usize);

/// A connection of the pool.
pub(crate) struct Conn {
    io: Io,
    /// The bound on each exchange, one timer reset for each (cheaper than
    /// a new one).
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    expected: usize,
    /// Replies to drop from the front (an `UNWATCH` the caller did not ask for).
    skip: usize,
    /// A `WATCH` may be active that nobody wants any more: the next
    /// pipeline starts with `UNWATCH`. Whoever keeps a `WATCH` for its own
    /// next pipeline (the commit after the begin) leaves this unset.
    pub(crate) watching: bool,
}

impl Conn {
    /// Adds a command to the pipeline being built.
    pub(crate) fn cmd(&mut self, args: &[&[u8]]) {
        self.command(args.len());
        for arg in args {
            self.arg(arg);
        }
    }

    /// Starts a command of `args` arguments, each then given with
    /// [`Conn::arg`]. A command is an array of bulk strings (the one
    /// request form of RESP): `*<n>\r\n`, then `$<len>\r\n<bytes>\r\n`
    /// per argument.
    pub(crate) fn command(&mut self, args: usize) {
        if self.expected == 0 && self.watching {
            self.watching = false;
            self.skip = 1;
            self.io.out.extend_from_slice(b"*1\r\n$7\r\nUNWATCH\r\n");
            self.expected += 1;
        }
        self.io.out.push(b'*');
        self.io
            .out
            .extend_from_slice(itoa::Buffer::new().format(args).as_bytes());
        self.io.out.extend_from_slice(b"\r\n");
        self.expected += 1;
    }

    /// One argument of the command started last.
    pub(crate) fn arg(&mut self, arg: &[u8]) {
        let mut head = [0u8; 24];
        head[0] = b'$';
        let mut digits = itoa::Buffer::new();
        let len = digits.format(arg.len()).as_bytes();
        head[1..1 + len.len()].copy_from_slice(len);
        head[1 + len.len()..3 + len.len()].copy_from_slice(b"\r\n");
        self.io.out.reserve(arg.len() + len.len() + 5);
        self.io.out.extend_from_slice(&head[..3 + len.len()]);
        self.io.out.extend_from_slice(arg);
        self.io.out.extend_from_slice(b"\r\n");
    }

    /// Adds a command already encoded (by redis-rs).
    pub(crate) fn raw(&mut self, command: &[u8]) {
        if self.expected == 0 && self.watching {
            self.watching = false;
            self.skip = 1;
            self.io.out.extend_from_slice(b"*1\r\n$7\r\nUNWATCH\r\n");
            self.expected += 1;
        }
        self.io.out.extend_from_slice(command);
        self.expected += 1;
    }

    /// An argument of `len` bytes given only to [`Conn::send_with`]: a
    /// big value is written from where it is rather than copied into the
    /// pipeline's buffer.
    pub(crate) fn arg_in_place(&mut self, len: usize) {
        self.io.out.push(b'$');
        self.io
            .out
            .extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        self.io.out.extend_from_slice(b"\r\n");
        self.io.in_place.push(self.io.out.len());
        self.io.out.extend_from_slice(b"\r\n");
    }

    /// A value argument of the command started last: copied into the
    /// pipeline if small, else written in place (pushed onto `in_place`,
    /// to be given to [`Conn::send_with`]).
    pub(crate) fn value<'a>(&mut self, value: &'a [u8], in_place: &mut Vec<&'a [u8]>) {
        if value.len() >= IN_PLACE_MIN {
            self.arg_in_place(value.len());
            in_place.push(value);
        } else {
            self.arg(value);
        }
    }

    /// Sends the pipeline built so far and reads its replies (an `UNWATCH`
    /// first if one is due, whose reply is dropped).
    pub(crate) async fn send(&mut self, timeout: Duration) -> io::Result<Vec<Reply>> {
        self.send_with(timeout, &[]).await
    }

    /// [`Conn::send`], with the arguments given by [`Conn::arg_in_place`],
    /// in their order.
    pub(crate) async fn send_with(
        &mut self,
        timeout: Duration,
        in_place: &[&[u8]],
    ) -> io::Result<Vec<Reply>> {
        debug_assert_eq!(in_place.len(), self.io.in_place.len());
        let expected = std::mem::take(&mut self.expected);
        let skip = std::mem::take(&mut self.skip);
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + timeout);
        let result = tokio::select! {
            biased;
            replies = self.io.exchange(expected, in_place) => replies,
            () = &mut self.timer => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "redis did not answer in time",
            )),
        };
        self.io.out.clear();
        self.io.in_place.clear();
        if self.io.out.capacity() > KEPT_BUFFER {
            self.io.out = Vec::with_capacity(4096);
        }
        let mut replies = result?;
        replies.drain(..skip);
        Ok(replies)
    }

    /// The input buffer, which the last replies' ranges point into, as
    /// [`bytes::Bytes`] to slice without copying; the connection gets a
    /// fresh one.
    pub(crate) fn take_input(&mut self) -> bytes::Bytes {
        bytes::Bytes::from(std::mem::replace(
            &mut self.io.input,
            Vec::with_capacity(4096),
        ))
    }

    /// The bytes of a bulk or simple string reply; `None` for nil (and for
    /// any other kind).
    pub(crate) fn bytes(&self, (frame, base): (&RangeFrame, usize)) -> Option<&[u8]> {
        match frame {
            RangeFrame::BulkString((start, end)) | RangeFrame::SimpleString((start, end)) => {
                Some(&self.io.input[base + start..base + end])
            }
            _ => None,
        }
    }

    /// The message of an error reply.
    pub(crate) fn error(&self, (frame, base): (&RangeFrame, usize)) -> Option<String> {
        match frame {
            RangeFrame::Error((start, end)) => {
                Some(String::from_utf8_lossy(&self.io.input[base + start..base + end]).into_owned())
            }
            _ => None,
        }
    }
}

/// The socket and its buffers.
struct Io {
    stream: Stream,
    out: Vec<u8>,
    /// Where in `out` the arguments written in place go.
    in_place: Vec<usize>,
    input: Vec<u8>,
}

impl Io {
    async fn exchange(&mut self, expected: usize, in_place: &[&[u8]]) -> io::Result<Vec<Reply>> {
        let mut from = 0;
        for (&at, arg) in self.in_place.iter().zip(in_place) {
            self.stream.write_all(&self.out[from..at]).await?;
            self.stream.write_all(arg).await?;
            from = at;
        }
        self.stream.write_all(&self.out[from..]).await?;
        self.input.clear();
        if self.input.capacity() > KEPT_BUFFER {
            self.input = Vec::with_capacity(4096);
        }
        let mut replies = Vec::with_capacity(expected);
        let mut offset = 0;
        while replies.len() < expected {
            match decode_range(&self.input[offset..]) {
                Ok(Some((frame, used))) => {
                    replies.push((frame, offset));
                    offset += used;
                }
                Ok(None) => {
                    if self.input.capacity() - self.input.len() < 1024 {
                        self.input.reserve(4096.max(self.input.len()));
                    }
                    if self.stream.read_buf(&mut self.input).await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "redis closed the connection",
                        ));
                    }
                }
                Err(error) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        error.to_string(),
                    ));
                }
            }
        }
        Ok(replies)
    }
}

/// Where and how to connect.
pub(crate) struct Pool {
    addr: Option<ConnectionAddr>,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    pub(crate) timeout: Duration,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    pub(crate) fn new(info: &redis::ConnectionInfo, timeout: Duration) -> Pool {
        let settings = info.redis_settings();
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Some(ConnectionAddr::Tcp(host.clone(), *port)),
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Some(ConnectionAddr::Unix(path.clone())),
            // TLS: the general path only.
            _ => None,
        };
        Pool {
            addr,
            username: settings.username().map(str::to_string),
            password: settings.password().map(str::to_string),
            db: settings.db(),
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection, or a new one; `None` if this Redis is only
    /// reached through the general path.
    pub(crate) async fn take(&self) -> Option<io::Result<Conn>> {
        let addr = self.addr.as_ref()?;
        if let Some(conn) = self.idle.lock().expect("connection pool").pop() {
            return Some(Ok(conn));
        }
        Some(
            tokio::time::timeout(self.timeout, self.connect(addr))
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "could not connect to redis in time",
                    ))
                }),
        )
    }

    async fn connect(&self, addr: &ConnectionAddr) -> io::Result<Conn> {
        let stream = match addr {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Stream::Tcp(stream)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                Stream::Unix(tokio::net::UnixStream::connect(path).await?)
            }
            _ => return Err(io::Error::other("unsupported redis address")),
        };
        let mut conn = Conn {
            io: Io {
                stream,
                out: Vec::with_capacity(4096),
                in_place: Vec::new(),
                input: Vec::with_capacity(4096),
            },
            timer: Box::pin(tokio::time::sleep(self.timeout)),
            expected: 0,
            skip: 0,
            watching: false,
        };
        if let Some(password) = &self.password {
            match &self.username {
                Some(user) => conn.cmd(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => conn.cmd(&[b"AUTH", password.as_bytes()]),
            }
        }
        let db = self.db.to_string();
        if self.db != 0 {
            conn.cmd(&[b"SELECT", db.as_bytes()]);
        }
        if conn.expected > 0 {
            let expected = std::mem::take(&mut conn.expected);
            let replies = conn.io.exchange(expected, &[]).await?;
            conn.io.out.clear();
            if let Some(error) = replies.iter().find_map(|(f, base)| conn.error((f, *base))) {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, error));
            }
        }
        Ok(conn)
    }

    /// Gives a connection back for later calls.
    pub(crate) fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().expect("connection pool");
        if idle.len() < IDLE {
            idle.push(conn);
        }
    }

    /// Drops the idle connections (after one was found broken: the others
    /// most likely are too).
    pub(crate) fn clear(&self) {
        self.idle.lock().expect("connection pool").clear();
    }
}
