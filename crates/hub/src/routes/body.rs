//! Reading request bodies with bounded cost (issue 14 items 1 and 2): a
//! declared `Content-Length` above the route's limit is refused before a
//! byte is read; the bytes held by bodies being read, across every
//! connection, come out of one shared budget (`503` when it is spent); and
//! each body has a deadline, so a stalled upload is cut off and its memory
//! freed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::Config;

/// The shared budget of buffered body bytes and the per-body deadline.
/// One per served app (`server::app`), shared by every route that reads a
/// body.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    deadline: Duration,
}

/// A body read in full, and its share of the budget: the share is given
/// back when this is dropped, once the handler is done with the bytes.
#[derive(Debug)]
pub struct Buffered {
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Declared or found larger than the route's limit (413).
    TooLarge { limit: usize },
    /// The budget across connections is spent (503).
    Busy,
    /// Not all of it arrived within the deadline (408).
    TooSlow { deadline: Duration },
    /// The client broke off or sent a malformed body (400).
    Broken,
}

impl BodyError {
    pub fn into_api_error(self) -> ApiError {
        match self {
            BodyError::TooLarge { limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the hub's limit of {limit} bytes"),
            ),
            BodyError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub is reading too many request bodies at once; try again shortly",
            ),
            BodyError::TooSlow { deadline } => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    deadline.as_secs_f32()
                ),
            ),
            BodyError::Broken => {
                ApiError::bad_request("the request body could not be read in full")
            }
        }
    }

    /// The answer: `negotiated` for the hub's routes (plain text unless
    /// JSON is asked for), with `Retry-After` on a 503.
    pub fn answer(self, headers: Option<&HeaderMap>) -> Response {
        let busy = self == BodyError::Busy;
        let error = self.into_api_error();
        let mut response = match headers {
            Some(h) => error.negotiated(h),
            None => error.into_response(),
        };
        if busy {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl BodyBudget {
    pub fn new(config: &Config) -> Self {
        // A budget below one largest body would refuse every such body.
        Self::with_total(
            config,
            config.max_buffered_body_bytes.max(config.max_body_bytes),
        )
    }

    /// A budget of `total` bytes (the token endpoint has its own, as it
    /// reads bodies from callers without a token).
    pub fn with_total(config: &Config, total: usize) -> Self {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            deadline: config.body_timeout,
        }
    }

    /// Bytes of the budget not taken right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Reads `body` in full, at most `limit` bytes. A declared length is
    /// checked, and its bytes reserved, before anything is read; a body of
    /// unknown length (chunked) takes its share chunk by chunk.
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
    ) -> Result<Buffered, BodyError> {
        let declared = declared_length(headers)?;
        if declared.is_some_and(|n| n > limit) {
            return Err(BodyError::TooLarge { limit });
        }
        let mut share = match declared {
            Some(0) => None,
            Some(n) => Some(self.take(n)?),
            None => None,
        };
        let read = async {
            let mut buffer = Vec::with_capacity(declared.unwrap_or(0));
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|_| BodyError::Broken)?;
                if buffer.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                // A declared length was reserved in full; hyper holds the
                // body to it. Otherwise the share grows with the body.
                if declared.is_none() {
                    let needed = buffer.len() + chunk.len();
                    let held = share.as_ref().map_or(0, |s| s.num_permits());
                    if needed > held {
                        let more = self.take(needed - held)?;
                        match share.as_mut() {
                            Some(s) => s.merge(more),
                            None => share = Some(more),
                        }
                    }
                }
                buffer.extend_from_slice(&chunk);
            }
            Ok(buffer)
        };
        let buffer = tokio::time::timeout(self.deadline, read)
            .await
            .map_err(|_| BodyError::TooSlow {
                deadline: self.deadline,
            })??;
        Ok(Buffered {
            bytes: Bytes::from(buffer),
            _share: share,
        })
    }

    fn take(&self, n: usize) -> Result<OwnedSemaphorePermit, BodyError> {
        let n = u32::try_from(n).map_err(|_| BodyError::Busy)?;
        self.bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::Busy)
    }
}

/// The `Content-Length`, if any. hyper has already refused a malformed or
/// conflicting one; a value we cannot read is a bad request all the same.
fn declared_length(headers: &HeaderMap) -> Result<Option<usize>, BodyError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        // Above usize::MAX is above any limit.
        .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
        .ok_or(BodyError::Broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(total: usize, limit: usize) -> BodyBudget {
        let mut c = Config::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
        c.max_buffered_body_bytes = total;
        c.max_body_bytes = limit;
        c.body_timeout = Duration::from_millis(200);
        BodyBudget::new(&c)
    }

    fn with_length(n: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, n.into());
        h
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let b = budget(100, 10);
        // A body that never ends: reading it would hang.
        let (_tx, never) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let body = Body::from_stream(tokio_stream_of(never));
        let got = b.read(&with_length(10 << 30), body, 10).await;
        assert_eq!(got.err(), Some(BodyError::TooLarge { limit: 10 }));
        assert_eq!(b.available(), 100);
    }

    #[tokio::test]
    async fn declared_bodies_share_the_budget_and_give_it_back() {
        let b = budget(100, 60);
        let first = b
            .read(&with_length(60), Body::from(vec![b'a'; 60]), 60)
            .await
            .unwrap();
        assert_eq!(b.available(), 40);
        let second = b
            .read(&with_length(60), Body::from(vec![b'a'; 60]), 60)
            .await;
        assert_eq!(second.err(), Some(BodyError::Busy));
        drop(first);
        assert_eq!(b.available(), 100);
    }

    #[tokio::test]
    async fn chunked_bodies_take_their_share_as_they_grow() {
        let b = budget(100, 100);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        for _ in 0..3 {
            tx.send(Ok(Bytes::from(vec![b'x'; 30]))).await.unwrap();
        }
        drop(tx);
        let got = b
            .read(
                &HeaderMap::new(),
                Body::from_stream(tokio_stream_of(rx)),
                100,
            )
            .await
            .unwrap();
        assert_eq!(got.bytes.len(), 90);
        assert_eq!(b.available(), 10);
        drop(got);
        assert_eq!(b.available(), 100);
        // Over the limit while streaming.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        for _ in 0..4 {
            tx.send(Ok(Bytes::from(vec![b'x'; 30]))).await.unwrap();
        }
        drop(tx);
        let over = b
            .read(
                &HeaderMap::new(),
                Body::from_stream(tokio_stream_of(rx)),
                100,
            )
            .await;
        assert_eq!(over.err(), Some(BodyError::TooLarge { limit: 100 }));
        assert_eq!(b.available(), 100);
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_off_and_its_share_returned() {
        let b = budget(100, 100);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tx.send(Ok(Bytes::from(vec![b'x'; 50]))).await.unwrap();
        let got = b
            .read(
                &with_length(100),
                Body::from_stream(tokio_stream_of(rx)),
                100,
            )
            .await;
        assert!(matches!(got, Err(BodyError::TooSlow { .. })), "{got:?}");
        assert_eq!(b.available(), 100);
        drop(tx);
    }

    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
