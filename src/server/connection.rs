//! What bounds one client connection, apart from its requests: how long a
//! write to it may stay blocked ([`WriteDeadline`]), and how the accept loop
//! backs off when accepting fails ([`AcceptBackoff`]). The cap on open
//! connections itself is a semaphore in [`super::run`].
//!
//! Why wrap the IO: when a client stops reading, the socket buffer fills and
//! hyper stops polling the response body, so nothing in the handler notices;
//! the upstream stream would stay open for as long as the client holds the
//! connection. A write that stays pending past the deadline fails instead,
//! hyper drops the connection, and with it the handler and its upstream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Client IO whose writes fail with `TimedOut` once one has been pending
/// (the peer not reading) for longer than `limit`.
#[derive(Debug)]
pub struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    /// Armed while a write is pending; boxed lazily, so a connection whose
    /// writes never block pays nothing but a branch.
    timer: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl<T> WriteDeadline<T> {
    pub fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            limit,
            timer: None,
            stalled: false,
        }
    }

    /// Called when the inner write is pending: arms the deadline on the
    /// first pending write and fails once it has passed.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let already = std::mem::replace(&mut self.stalled, true);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        if !already {
            timer.as_mut().reset(Instant::now() + limit);
        }
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading (ABRIDGE_WRITE_TIMEOUT)",
        ))
    }

    /// Passes an inner write result through, failing a write pending too long.
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        inner: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match inner {
            Poll::Ready(result) => {
                self.stalled = false;
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_stall(cx).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, inner)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, inner)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, inner)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Delay before the next `accept` after a failure: doubling from
/// [`AcceptBackoff::FIRST`] up to [`AcceptBackoff::MAX`], back to the start
/// after a success. Errors that concern one connection only (it was reset
/// before we took it) are retried at once.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(5);
    pub const MAX: Duration = Duration::from_secs(1);

    /// How long to wait after `error` before accepting again.
    pub fn after_error(&mut self, error: &io::Error) -> Duration {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
        ) {
            return Duration::ZERO;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn accept_errors_back_off_exponentially_up_to_a_cap() {
        let emfile = || io::Error::from_raw_os_error(24);
        let reset = || io::Error::from(io::ErrorKind::ConnectionAborted);
        let mut backoff = AcceptBackoff::default();
        // (error, expected delay)
        let steps: Vec<(io::Error, u64)> = vec![
            (emfile(), 5),
            (emfile(), 10),
            (reset(), 0),
            (emfile(), 20),
            (emfile(), 40),
            (emfile(), 80),
            (emfile(), 160),
            (emfile(), 320),
            (emfile(), 640),
            (emfile(), 1000),
            (emfile(), 1000),
        ];
        for (i, (error, ms)) in steps.iter().enumerate() {
            assert_eq!(
                backoff.after_error(error),
                Duration::from_millis(*ms),
                "step {i}"
            );
        }
        backoff.succeeded();
        assert_eq!(backoff.after_error(&emfile()), AcceptBackoff::FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_past_the_limit_fails() {
        let (client, mut peer) = tokio::io::duplex(64);
        let mut io = WriteDeadline::new(client, Duration::from_secs(2));
        io.write_all(&[1; 64]).await.unwrap();
        let started = Instant::now();
        let err = io.write_all(&[2; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // A reader that keeps up, however slowly, is never cut off.
        let (client, mut peer2) = tokio::io::duplex(64);
        let mut io = WriteDeadline::new(client, Duration::from_secs(2));
        let reader = async {
            let mut buf = [0; 64];
            let mut total = 0;
            while total < 64 * 10 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                total += peer2.read(&mut buf).await.unwrap();
            }
        };
        let writer = async {
            for _ in 0..10 {
                io.write_all(&[3; 64]).await.unwrap();
            }
        };
        tokio::join!(reader, writer);
        let mut drained = [0; 64];
        peer.read_exact(&mut drained).await.unwrap();
        assert_eq!(drained, [1; 64]);
    }
}
