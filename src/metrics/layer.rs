//! The one tower layer that records every gRPC call of a server: service, method, status code
//! and latency ([`super::RpcMetrics`]).
//!
//! The code is read where gRPC puts it: the `grpc-status` header of a trailers-only answer
//! (errors, denials), else the trailers at the end of the answer's body. The latency runs from
//! the request's headers to that status. An answer whose body ends without trailers counts as
//! `UNKNOWN`; one dropped before its end (the client went away) as `CANCELLED`.
//!
//! Recording is synchronous, in memory, and cannot fail: the answer is never delayed or changed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

use super::{RpcMetrics, Stopwatch, code_name};

/// Wraps a server's routes with [`Rpc`].
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: RpcMetrics,
}

impl RpcLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rpc { inner, metrics: self.metrics.clone() }
    }
}

/// The service [`RpcLayer`] makes.
#[derive(Debug, Clone)]
pub struct Rpc<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S> Service<http::Request<tonic::body::Body>> for Rpc<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let pending =
            Pending { metrics: self.metrics.clone(), path: req.uri().path().to_string(), since: Stopwatch::start() };
        let answer = self.inner.call(req);
        Box::pin(async move {
            match answer.await {
                Ok(resp) => {
                    if let Some(code) = resp.headers().get("grpc-status") {
                        pending.finish(code_name(code.as_bytes()));
                        return Ok(resp);
                    }
                    let (parts, body) = resp.into_parts();
                    let body = tonic::body::Body::new(Metered { inner: body, pending: Some(pending) });
                    Ok(http::Response::from_parts(parts, body))
                }
                Err(e) => {
                    pending.finish("UNKNOWN");
                    Err(e)
                }
            }
        })
    }
}

/// A call not yet counted.
#[derive(Debug)]
struct Pending {
    metrics: RpcMetrics,
    path: String,
    since: Stopwatch,
}

impl Pending {
    fn finish(self, code: &'static str) {
        self.metrics.finished(&self.path, code, self.since.seconds());
    }
}

/// An answer's body that counts its call when its trailers pass (or it ends, or is dropped).
struct Metered {
    inner: tonic::body::Body,
    pending: Option<Pending>,
}

impl Body for Metered {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    let code = code_name(code.as_bytes());
                    if let Some(p) = self.pending.take() {
                        p.finish(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(p) = self.pending.take() {
                    p.finish("UNKNOWN");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.finish("CANCELLED");
        }
    }
}
