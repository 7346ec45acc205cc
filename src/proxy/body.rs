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

pin_project_lite::pin_project! {
    /// Passes frames through, counting bytes and failing once `limit` is passed.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        limit: u64,
        stats: Arc<BodyStats>,
    }
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64, stats: Arc<BodyStats>) -> Self {
        Limited { inner, limit, stats }
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = this.stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if n > *this.limit {
                        this.stats.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(TooLarge(*this.limit)))));
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
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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
