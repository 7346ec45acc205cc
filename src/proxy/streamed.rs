//! A request too large to hold on a stage that verifies or signs (past the
//! stage's `max_body`, up to its `max_streamed_body`): read as it arrives
//! into a blocking worker that feeds the streaming verifier (or signer) and
//! the encrypted spool together, then — only once the signature verified,
//! or was made — forwarded: the part before the Body's content as the work
//! left it, the rest replayed from the spool. A message that fails never
//! has a byte sent upstream: the upstream request is not even begun. The
//! spool file goes with its last handle, on every path.

use super::body::{read_failure, BodyStats, Limited};
use super::conn::ConnCtx;
use super::wssec::{admit_body, tally, Passed};
use crate::refusal::{Reason, Refusal};
use crate::runtime::route::Route;
use crate::runtime::spool::{SpoolError, SpoolReader, SpoolWriter};
use crate::runtime::upstream::{BoxError, ProxyBody};
use crate::runtime::wssec_stage::{Processed, Recorded, Stage, VerifyStage, Work};
use crate::tls::identity::PeerIdentity;
use crate::wssec::reason::Reason as WssecReason;
use crate::wssec::sign::{Finished, StreamSigner};
use crate::wssec::stream::StreamVerifier;
use crate::wssec::verify::{SignerInfo, WssecError};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// A message read whole (within `max_body`), or one that went past it.
pub(super) enum Received {
    Whole(Bytes, OwnedSemaphorePermit),
    Over(Over),
}

/// What was read of a message before it went past `max_body` (nothing when
/// its Content-Length said so up front), and the rest of it.
pub(super) struct Over {
    held: Vec<u8>,
    body: Limited<Incoming>,
    permit: OwnedSemaphorePermit,
    declared: Option<u64>,
    /// The client waits for `100 Continue` before it sends the body.
    expects_continue: bool,
    /// The whole message must have arrived by then.
    by: tokio::time::Instant,
}

/// Reads a request on a stage that may stream: whole when it fits in
/// `max_body`, otherwise handed on. A message that may stream has the
/// stage's `stream_read_timeout` to arrive in, from its first byte: a slow
/// chunked upload is not cut at `read_timeout` before it is known to be
/// large.
pub(super) async fn receive(
    route: &Route,
    stage: &Stage,
    headers: &HeaderMap,
    body: Incoming,
    stats: &Arc<BodyStats>,
) -> Result<Received, Refusal> {
    let (permit, body) = admit_body(route, &stage.slots, headers, body).await?;
    let expects_continue = super::wssec::expects_continue(headers);
    let declared = super::headers::declared_length(headers);
    let mut body = Limited::new(
        body,
        route.max_streamed,
        route.body_idle_timeout,
        stats.clone(),
    );
    let by = tokio::time::Instant::now() + stage.stream_read_timeout;
    if declared.is_some_and(|n| n > route.max_body) {
        return Ok(Received::Over(Over {
            held: Vec::new(),
            body,
            permit,
            declared,
            expects_continue,
            by,
        }));
    }
    let limit = usize::try_from(route.max_body).unwrap_or(usize::MAX);
    let mut held = Vec::new();
    let read = tokio::time::timeout_at(by, async {
        use http_body_util::BodyExt;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| read_failure(e.as_ref(), stats))?;
            if let Ok(data) = frame.into_data() {
                held.extend_from_slice(&data);
                if held.len() > limit {
                    return Ok::<bool, Reason>(false);
                }
            }
        }
        Ok(true)
    })
    .await;
    match read {
        Err(_) => Err(Reason::BodyReadTimeout.into()),
        Ok(Err(r)) => Err(r.into()),
        Ok(Ok(true)) => Ok(Received::Whole(held.into(), permit)),
        Ok(Ok(false)) => Ok(Received::Over(Over {
            held,
            body,
            permit,
            declared,
            expects_continue,
            by,
        })),
    }
}

/// What the reader hands the worker.
enum Piece {
    Data(Bytes),
    /// The body arrived whole.
    End,
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Wssec(#[from] WssecError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the body did not arrive whole")]
    Abandoned,
}

/// The worker's answer: the message's new head, the spool to replay (past
/// what the head replaces) and the slot.
type Outcome = Result<(Processed, SpoolReader, OwnedSemaphorePermit), Failure>;

/// Verifies `over` as it arrives and, when it passes, gives the message to
/// forward. `Err`: refused before any judgement (a read failure, a full
/// spool); `Ok(Err(_))`: judged and refused, as the buffered path reports.
pub(super) async fn verify(
    ctx: &ConnCtx,
    route: &Route,
    stage: &Arc<Stage>,
    over: Over,
    stats: &Arc<BodyStats>,
) -> Result<Result<Passed, Option<WssecReason>>, Refusal> {
    let Over {
        held,
        mut body,
        permit,
        declared,
        expects_continue,
        by,
    } = over;
    let spool = match ctx.rt.spool.create(declared) {
        Ok(s) => s,
        Err(e) => {
            // Drained for a while, so the client reads the answer rather
            // than a reset (unless it waits to be asked for the body).
            if !expects_continue {
                super::body::linger(body);
            }
            return Err(spool_refusal(ctx, route, &e));
        }
    };
    let (tx, rx) = mpsc::channel::<Piece>(4);
    let job = stage.clone();
    let client = ctx.identity.clone();
    let worker =
        tokio::task::spawn_blocking(move || consume(&job, rx, spool, client.as_deref(), permit));
    let fed = tokio::time::timeout_at(by, async {
        use http_body_util::BodyExt;
        if !held.is_empty() && tx.send(Piece::Data(held.into())).await.is_err() {
            return Ok::<bool, Reason>(false);
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| read_failure(e.as_ref(), stats))?;
            if let Ok(data) = frame.into_data() {
                // The worker stopped (a refusal): no need to read on.
                if tx.send(Piece::Data(data)).await.is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(tx.send(Piece::End).await.is_ok())
    })
    .await
    .unwrap_or(Err(Reason::BodyReadTimeout));
    drop(tx);
    let outcome = worker.await;
    if let Err(r) = fed {
        // The client's failure, not the message's: the worker was abandoned.
        return Err(r.into());
    }
    let judged = match outcome {
        Ok(Err(Failure::Spool(e))) => return Err(spool_refusal(ctx, route, &e)),
        Ok(Err(Failure::Abandoned)) => return Err(Reason::ClientBodyError.into()),
        Ok(Err(Failure::Wssec(e))) => Some(Err(e)),
        Ok(Ok(done)) => Some(Ok(done)),
        Err(_) => None,
    };
    Ok(
        tally(ctx, route, stage, judged).map(|(done, reader, permit)| Passed {
            done,
            tail: Some(replay(reader, permit, stats.clone())),
        }),
    )
}

fn spool_refusal(ctx: &ConnCtx, route: &Route, e: &SpoolError) -> Refusal {
    match e {
        SpoolError::Full => {
            Refusal::new(Reason::SpoolFull).retry_after(route.gate.retry_after_secs())
        }
        e => {
            tracing::warn!(
                target: "sealgate::wssec",
                route = %route.name,
                peer = %ctx.peer,
                dir = %ctx.rt.spool.dir().display(),
                error = %e,
                "the spool failed for a streamed message"
            );
            Reason::WssecUnavailable.into()
        }
    }
}

/// What reads the message as it streams: the stage's verifier or signer.
enum Streamer<'s> {
    Verify(StreamVerifier<'s>, &'s VerifyStage),
    Sign(StreamSigner<'s>),
}

impl Streamer<'_> {
    fn feed(&mut self, d: &[u8]) -> Result<(), WssecError> {
        match self {
            Streamer::Verify(v, _) => v.feed(d),
            Streamer::Sign(s) => s.feed(d),
        }
    }

    /// A message sure to be refused need not be spooled any further.
    fn will_refuse(&self) -> bool {
        match self {
            Streamer::Verify(v, _) => v.will_refuse(),
            Streamer::Sign(_) => false,
        }
    }

    /// The message to send in place of the first `.1` bytes. A signer that
    /// asks for a second pass reads the message again from `spool`.
    fn finish(
        self,
        client: Option<&PeerIdentity>,
        spool: &mut SpoolReader,
    ) -> Result<(Processed, usize), Failure> {
        let now = SystemTime::now();
        match self {
            Streamer::Verify(sv, v) => {
                let accept = |s: Option<&SignerInfo>| v.check_binding(client, s);
                let s = sv.finish(now, &*v.replay, &accept)?;
                let done = Processed {
                    output: s.verified.output,
                    signer: s.verified.signer,
                    replay_keys: Recorded::new(&v.replay, s.verified.replay_keys),
                };
                Ok((done, s.body_from))
            }
            Streamer::Sign(mut ss) => {
                let h = loop {
                    match ss.finish(now)? {
                        Finished::Signed(h) => break h,
                        Finished::Again(mut next) => {
                            spool.rewind()?;
                            while let Some(c) = spool.next_chunk()? {
                                next.feed(&c)?;
                            }
                            spool.rewind()?;
                            ss = *next;
                        }
                    }
                };
                let done = Processed {
                    output: h.head,
                    signer: None,
                    replay_keys: Recorded::none(),
                };
                Ok((done, h.body_from))
            }
        }
    }
}

/// The worker: every piece into the verifier (or signer) and the spool,
/// then the verdict.
fn consume(
    stage: &Stage,
    mut rx: mpsc::Receiver<Piece>,
    mut spool: SpoolWriter,
    client: Option<&PeerIdentity>,
    permit: OwnedSemaphorePermit,
) -> Outcome {
    let mut streamer = match &stage.work {
        Work::Verify(v) => Streamer::Verify(StreamVerifier::new(&v.policy), v),
        Work::Sign(s) => Streamer::Sign(s.streamer()),
        Work::Strip { .. } => {
            return Err(WssecError::Internal("a stream on a stage that strips").into())
        }
    };
    // A forged message is still read to its end (its refusal's reason may
    // lie anywhere in it), but its bytes stop going to disk.
    loop {
        match rx.blocking_recv() {
            Some(Piece::Data(d)) => {
                streamer.feed(&d)?;
                if !streamer.will_refuse() {
                    spool.write(&d)?;
                }
            }
            Some(Piece::End) => break,
            None => return Err(Failure::Abandoned),
        }
    }
    let mut reader = spool.finish()?;
    let spooled_in_part = streamer.will_refuse();
    let (done, body_from) = streamer.finish(client, &mut reader)?;
    if spooled_in_part {
        return Err(WssecError::Internal("a message sure to be refused was accepted").into());
    }
    reader.skip(body_from as u64);
    Ok((done, reader, permit))
}

/// The spooled rest of the message as a body, read back off the async
/// threads; the slot and the file go when it ends or is dropped. `stats`
/// learns when it ends (the request then counts as sent).
fn replay(
    reader: SpoolReader,
    permit: OwnedSemaphorePermit,
    stats: Arc<BodyStats>,
) -> (ProxyBody, u64) {
    use http_body_util::BodyExt;
    stats.restart();
    let left = reader.remaining();
    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(2);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut reader = reader;
        loop {
            let next = match reader.next_chunk() {
                Ok(Some(c)) => Ok(c),
                Ok(None) => break,
                Err(e) => Err(Box::new(e) as BoxError),
            };
            let failed = next.is_err();
            if tx.blocking_send(next).is_err() || failed {
                break;
            }
        }
    });
    (SpoolBody { rx, left, stats }.boxed_unsync(), left)
}

struct SpoolBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    left: u64,
    stats: Arc<BodyStats>,
}

impl Body for SpoolBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.left = self.left.saturating_sub(b.len() as u64);
                if self.left == 0 {
                    self.stats.mark_done();
                }
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if self.left > 0 => {
                Poll::Ready(Some(Err("the spool ended before the message".into())))
            }
            Poll::Ready(None) => {
                self.stats.mark_done();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
