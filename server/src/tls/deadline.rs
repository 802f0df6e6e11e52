//! A deadline for a whole request body. The listener's per-chunk timeout
//! alone lets a client that sends one byte every few seconds hold its
//! connection for days; with this, a body that has not arrived in full
//! within the deadline fails, the handler answers with an error, and the
//! connection closes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// `body`, failing once `deadline` has passed before its end.
    pub struct Deadline<B> {
        #[pin]
        body: B,
        #[pin]
        sleep: Sleep,
        limit: Duration,
    }
}

impl<B> Deadline<B> {
    /// `body`, which must end within `limit` from now.
    pub fn new(body: B, limit: Duration) -> Deadline<B> {
        Deadline {
            body,
            sleep: tokio::time::sleep_until(Instant::now() + limit),
            limit,
        }
    }
}

/// The error a late body ends with (the handler's extractor reports it).
#[derive(Debug)]
pub struct TooSlow(Duration);

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for TooSlow {}

impl<B> Body for Deadline<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(TooSlow(*this.limit).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    /// A body of one byte every `every`, `n` times.
    fn trickle(
        every: Duration,
        n: usize,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        let frames = futures_util::stream::unfold(0, move |sent| async move {
            if sent == n {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok(Frame::data(Bytes::from_static(b"x"))), sent + 1))
        });
        StreamBody::new(frames)
    }

    #[tokio::test]
    async fn a_trickle_that_outlasts_the_deadline_fails_however_often_it_sends() {
        let body = Deadline::new(
            trickle(Duration::from_millis(20), 1000),
            Duration::from_secs(1),
        );
        let err = body.collect().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the request body did not arrive within 1 s"
        );
    }

    #[tokio::test]
    async fn a_body_within_the_deadline_arrives_whole() {
        let body = Deadline::new(
            trickle(Duration::from_millis(5), 10),
            Duration::from_secs(30),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"xxxxxxxxxx");
    }
}
