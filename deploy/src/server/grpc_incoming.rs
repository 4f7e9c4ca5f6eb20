//! The gRPC endpoint's connections, counted against the server's connection cap.
//!
//! tonic accepts whatever stream of connections it is given; this one accepts TCP connections
//! and closes those past [`ServerOptions::max_connections`](super::ServerOptions::max_connections)
//! at once (HTTP/2 has no way to answer before the client's preface, so the client sees the
//! connection close: `UNAVAILABLE`). Each connection handed to tonic holds its place until it is
//! dropped.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// TCP connections, at most `cap` open at once.
pub(super) struct CappedIncoming {
    listener: TcpListener,
    open: Arc<AtomicUsize>,
    cap: usize,
}

impl CappedIncoming {
    pub(super) fn new(listener: TcpListener, cap: usize) -> Self {
        Self {
            listener,
            open: Arc::new(AtomicUsize::new(0)),
            cap,
        }
    }
}

impl Stream for CappedIncoming {
    type Item = io::Result<CountedStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let (stream, peer) = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(accepted)) => accepted,
            };
            if this.open.load(Ordering::SeqCst) >= this.cap {
                tracing::warn!("refusing gRPC connection from {peer}: {} open", this.cap);
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            this.open.fetch_add(1, Ordering::SeqCst);
            return Poll::Ready(Some(Ok(CountedStream {
                stream,
                open: this.open.clone(),
            })));
        }
    }
}

/// A TCP connection that gives its place back when dropped.
pub(super) struct CountedStream {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connected for CountedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
