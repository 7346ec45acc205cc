//! Body wrappers that keep streaming: a byte ceiling for requests, and a
//! response body that finishes the request's bookkeeping exactly once.

use crate::runtime::upstream::{BoxError, ProxyBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Shared between a request body and the pipeline: bytes seen, and whether the
/// ceiling was crossed (so an upstream failure can be reported as 413).
#[derive(Default, Debug)]
pub struct BodyStats {
    pub bytes: AtomicU64,
    pub too_large: AtomicBool,
}

/// The request body grew past the route's ceiling.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the route's limit of {0} bytes")]
pub struct TooLarge(pub u64);

/// Passes frames through, counting bytes and failing once `limit` is passed.
/// What is left of the body is then drained (see [`linger`]) so the client can
/// read the 413 instead of a reset.
pub struct Limited<B> {
    inner: Option<B>,
    limit: u64,
    stats: Arc<BodyStats>,
    /// Removed from trailers too: a client must not pass it on at the end of a body.
    identity_header: Option<http::HeaderName>,
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64, stats: Arc<BodyStats>) -> Self {
        Limited {
            inner: Some(inner),
            limit,
            stats,
            identity_header: None,
        }
    }

    pub fn stripping(mut self, identity_header: &http::HeaderName) -> Self {
        self.identity_header = Some(identity_header.clone());
        self
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(TooLarge(this.limit)))));
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = this
                        .stats
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if n > this.limit {
                        this.stats.too_large.store(true, Ordering::Relaxed);
                        if let Some(rest) = this.inner.take() {
                            linger(rest);
                        }
                        return Poll::Ready(Some(Err(Box::new(TooLarge(this.limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

/// How much of an unwanted request body is read and thrown away, at most.
const LINGER_BYTES: u64 = 8 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(3);

/// Reads and discards the rest of a request body the gateway has refused, for
/// a bounded time and size, as nginx's lingering close does: an HTTP/1.1 client
/// still uploading then reads the error reply instead of a connection reset.
pub fn linger<B>(body: B)
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            let mut n = 0u64;
            while let Some(Ok(f)) = body.frame().await {
                n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                if n > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

/// Called once when a response body ends or is dropped: bytes sent, and whether
/// the body reached its end (false when the client went away or it failed).
pub type Finish = Box<dyn FnOnce(u64, bool) + Send>;

pin_project_lite::pin_project! {
    /// The response body handed to hyper; runs `finish` exactly once.
    pub struct Tracked {
        #[pin]
        inner: ProxyBody,
        sent: u64,
        finish: Option<Finish>,
    }

    impl PinnedDrop for Tracked {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.finish.take() {
                // An empty body is never polled, yet it was delivered whole.
                f(*this.sent, this.inner.is_end_stream());
            }
        }
    }
}

impl Tracked {
    pub fn new(inner: ProxyBody, finish: Finish) -> Self {
        Tracked {
            inner,
            sent: 0,
            finish: Some(finish),
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let out = this.inner.as_mut().poll_frame(cx);
        match &out {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    *this.sent += d.len() as u64;
                }
                // hyper stops polling once the body says it has ended.
                if this.inner.is_end_stream() {
                    if let Some(f) = this.finish.take() {
                        f(*this.sent, true);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = this.finish.take() {
                    f(*this.sent, true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = this.finish.take() {
                    f(*this.sent, false);
                }
            }
            Poll::Pending => {}
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A complete body from bytes the gateway wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
