//! The HTTP/2 edge of both servers: what a request must be before any service decodes it.
//!
//! One tower layer, inside authorization (so only an authorized caller reaches it, and its
//! refusals name the caller), in front of every route:
//!
//! - the content type is gRPC (`application/grpc` or `application/grpc+proto`), otherwise HTTP
//!   415 with an INVALID_ARGUMENT status;
//! - no message compression (none is offered: `grpc-encoding` other than `identity`, or a frame
//!   with the compressed flag, is refused);
//! - exactly one length-prefixed message, no larger than [`limits::request_bytes_max`] of the
//!   method: a larger length prefix is refused before the body is read further, a second message
//!   in a call that takes one, an empty or truncated body likewise;
//! - a message that tonic cannot decode is answered INVALID_ARGUMENT / OPERATOR_INPUT (tonic
//!   itself says INTERNAL, which would blame the server for the caller's bytes).
//!
//! Every refusal is INVALID_ARGUMENT / OPERATOR_INPUT / NOT_EXECUTED with a stable code, reported
//! to an [`EdgeSink`] (the control plane audits it; a node logs it) and changes nothing. The one
//! bidirectional-streaming method, server reflection, is passed through untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::Code;
use tower::{Layer, Service};

use crate::limits::{self, LimitViolation, Unit};
use crate::tls::authz::Permit;
use crate::wire::{ErrorDomain, Outcome, WireError};

/// The gRPC message prefix: compressed flag (1 byte) and big-endian length (4 bytes).
pub(crate) const PREFIX_LEN: usize = 5;

/// tonic's answer to a request it could not decode, before any handler ran.
const TONIC_DECODE_ERROR: &str = "failed to decode Protobuf message";

/// Why the edge refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeRefusal {
    /// The content type is not gRPC.
    #[error("content-type {0:?} is not application/grpc")]
    ContentType(String),
    /// Compression was used; none is offered.
    #[error("{0}; this server offers no message compression")]
    Compressed(String),
    /// The message is larger than the method accepts.
    #[error("{0}")]
    TooLarge(LimitViolation),
    /// More than one message in a call that takes one.
    #[error("a call to this method carries exactly one request message; a second one followed")]
    SeveralMessages,
    /// No message, or a message cut short.
    #[error("{0}")]
    Truncated(String),
    /// The message is not a valid encoding of the method's request type.
    #[error("the request message could not be decoded: {0}")]
    Undecodable(String),
    /// The body could not be read.
    #[error("the request body could not be read: {0}")]
    Body(String),
}

impl EdgeRefusal {
    /// The wire error: INVALID_ARGUMENT, OPERATOR_INPUT, NOT_EXECUTED, with the server's codes.
    pub fn to_wire(&self, domain: &str, codes: EdgeCodes) -> WireError {
        let (code, field) = match self {
            EdgeRefusal::TooLarge(v) => (codes.too_large, Some((v.field.clone(), v.rule(), v.limit))),
            _ => (codes.malformed, None),
        };
        let message = limits::bounded(&self.to_string(), 512);
        let w = WireError::new(
            Code::InvalidArgument,
            domain,
            code,
            ErrorDomain::OperatorInput,
            Outcome::NotExecuted,
            &[],
            message,
        );
        match field {
            Some((f, rule, limit)) => w.with_field(&f, rule).with_extra("limit", limit.to_string()),
            None => w,
        }
    }
}

/// The stable codes a server answers edge refusals with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeCodes {
    /// A message over the method's size.
    pub too_large: &'static str,
    /// Anything else the edge refuses.
    pub malformed: &'static str,
}

/// The control plane's codes.
pub const CONTROL_CODES: EdgeCodes =
    EdgeCodes { too_large: "PHASE7_FIELD_TOO_LARGE", malformed: "PHASE7_MALFORMED_REQUEST" };
/// A node's codes.
pub const KERNEL_CODES: EdgeCodes =
    EdgeCodes { too_large: crate::kernel::codes::FIELD_TOO_LARGE, malformed: crate::kernel::codes::MALFORMED_REQUEST };

/// Receives every request the edge refused.
pub trait EdgeSink: Send + Sync {
    /// Called once per refused request (the permit is present: the edge runs after
    /// authorization), before the answer is sent.
    fn refused(&self, permit: Option<Permit>, method: String, error: WireError) -> BoxFuture<'static, ()>;
}

/// An [`EdgeSink`] that only logs.
#[derive(Debug, Default)]
pub struct LogRefusals;

impl EdgeSink for LogRefusals {
    fn refused(&self, permit: Option<Permit>, method: String, error: WireError) -> BoxFuture<'static, ()> {
        tracing::warn!(
            peer.principal = permit.as_ref().map(|p| p.identity.principal()).unwrap_or_default(),
            peer.cert_sha256 = permit.as_ref().map(|p| p.identity.short_fingerprint().to_string()).unwrap_or_default(),
            peer.addr = ?permit.as_ref().and_then(|p| p.peer),
            method = %limits::bounded(&method, 128),
            code = %error.code,
            reason = %error.message,
            "request refused at the edge"
        );
        Box::pin(async {})
    }
}

/// The layer: see the module docs.
#[derive(Clone)]
pub struct EdgeLayer {
    sink: Arc<dyn EdgeSink>,
    domain: &'static str,
    codes: EdgeCodes,
}

impl EdgeLayer {
    /// Refusals go to `sink`, their ErrorInfo in `domain` with `codes`.
    pub fn new(sink: Arc<dyn EdgeSink>, domain: &'static str, codes: EdgeCodes) -> Self {
        Self { sink, domain, codes }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge { inner, layer: self.clone() }
    }
}

/// The service produced by [`EdgeLayer`].
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

fn is_streaming_request(path: &str) -> bool {
    path.ends_with("/ServerReflectionInfo")
}

fn content_type_ok(ct: Option<&http::HeaderValue>) -> Result<(), EdgeRefusal> {
    let ct = ct.and_then(|v| v.to_str().ok()).unwrap_or("");
    let base = ct.split(';').next().unwrap_or("").trim();
    if base == "application/grpc" || base == "application/grpc+proto" {
        Ok(())
    } else {
        Err(EdgeRefusal::ContentType(limits::bounded(ct, 64)))
    }
}

/// Reads exactly one length-prefixed message of at most `max` bytes from `body`.
pub(crate) async fn one_message(mut body: tonic::body::Body, path: &str, max: usize) -> Result<Bytes, EdgeRefusal> {
    let mut buf = BytesMut::new();
    let mut expected: Option<usize> = None;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(e)) => return Err(EdgeRefusal::Body(limits::bounded(e.message(), 256))),
        };
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        if expected.is_none() && buf.len() >= PREFIX_LEN {
            if buf[0] != 0 {
                return Err(EdgeRefusal::Compressed(format!("the message has the compressed flag {}", buf[0])));
            }
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > max {
                return Err(EdgeRefusal::TooLarge(LimitViolation {
                    field: format!("({} message)", path.rsplit('/').next().unwrap_or("request")),
                    limit: max as u64,
                    actual: len as u64,
                    unit: Unit::Bytes,
                }));
            }
            expected = Some(PREFIX_LEN + len);
        }
        if let Some(total) = expected
            && buf.len() > total
        {
            return Err(EdgeRefusal::SeveralMessages);
        }
    }
    match expected {
        None if buf.is_empty() => Err(EdgeRefusal::Truncated("the call carries no request message".into())),
        None => Err(EdgeRefusal::Truncated(format!("the body ends inside the message prefix ({} bytes)", buf.len()))),
        Some(total) if buf.len() < total => Err(EdgeRefusal::Truncated(format!(
            "the message prefix announces {} bytes but the body ends after {}",
            total - PREFIX_LEN,
            buf.len() - PREFIX_LEN
        ))),
        Some(_) => Ok(buf.freeze()),
    }
}

/// True when `resp` is tonic's own answer to an undecodable request.
fn is_decode_failure(resp: &http::Response<tonic::body::Body>) -> Option<String> {
    let h = resp.headers();
    if h.get("grpc-status").map(|v| v.as_bytes()) != Some(b"13") {
        return None;
    }
    let msg = h.get("grpc-message").and_then(|v| v.to_str().ok())?;
    let msg = percent_decode(msg);
    msg.starts_with(TONIC_DECODE_ERROR).then_some(msg)
}

/// Decodes the percent-encoding of `grpc-message`.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl<S> Service<http::Request<tonic::body::Body>> for Edge<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        // Standard tower pattern: use the clone that was driven to readiness.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let permit = req.extensions().get::<Permit>().cloned();
            let refuse = |refusal: EdgeRefusal, http_status: http::StatusCode| {
                let wire = refusal.to_wire(layer.domain, layer.codes);
                let recorded = layer.sink.refused(permit.clone(), path.clone(), wire.clone());
                async move {
                    recorded.await;
                    let mut resp: http::Response<tonic::body::Body> = wire.into_status().into_http();
                    *resp.status_mut() = http_status;
                    resp
                }
            };
            if is_streaming_request(&path) {
                return inner.call(req).await;
            }
            if let Err(r) = content_type_ok(req.headers().get(http::header::CONTENT_TYPE)) {
                return Ok(refuse(r, http::StatusCode::UNSUPPORTED_MEDIA_TYPE).await);
            }
            if let Some(enc) = req.headers().get("grpc-encoding").and_then(|v| v.to_str().ok())
                && enc != "identity"
            {
                let r = EdgeRefusal::Compressed(format!("grpc-encoding {:?}", limits::bounded(enc, 32)));
                return Ok(refuse(r, http::StatusCode::OK).await);
            }
            let (parts, body) = req.into_parts();
            let message = match one_message(body, &path, limits::request_bytes_max(&path)).await {
                Ok(m) => m,
                Err(r) => return Ok(refuse(r, http::StatusCode::OK).await),
            };
            let req = http::Request::from_parts(parts, tonic::body::Body::new(http_body_util::Full::new(message)));
            let resp = inner.call(req).await?;
            match is_decode_failure(&resp) {
                Some(msg) => Ok(refuse(EdgeRefusal::Undecodable(msg), http::StatusCode::OK).await),
                None => Ok(resp),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: Vec<Vec<u8>>) -> tonic::body::Body {
        let stream = futures::stream::iter(
            chunks.into_iter().map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(c)))),
        );
        tonic::body::Body::new(http_body_util::StreamBody::new(stream))
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[tokio::test]
    async fn exactly_one_message_within_the_limit_is_accepted() {
        let m = framed(b"abc");
        let got = one_message(body(vec![m[..2].to_vec(), m[2..].to_vec()]), "/s/M", 16).await;
        assert_eq!(got, Ok(Bytes::from(m)));
    }

    #[tokio::test]
    async fn every_malformed_body_is_refused_with_its_reason() {
        let two = [framed(b"a"), framed(b"b")].concat();
        assert_eq!(one_message(body(vec![two]), "/s/M", 16).await, Err(EdgeRefusal::SeveralMessages));
        assert!(matches!(one_message(body(vec![]), "/s/M", 16).await, Err(EdgeRefusal::Truncated(_))));
        assert!(matches!(one_message(body(vec![vec![0, 0]]), "/s/M", 16).await, Err(EdgeRefusal::Truncated(_))));
        let cut = framed(b"abcdef")[..7].to_vec();
        assert!(matches!(one_message(body(vec![cut]), "/s/M", 16).await, Err(EdgeRefusal::Truncated(_))));
        let mut compressed = framed(b"a");
        compressed[0] = 1;
        assert!(matches!(one_message(body(vec![compressed]), "/s/M", 16).await, Err(EdgeRefusal::Compressed(_))));
        // A large length prefix is refused from the prefix alone.
        let huge = vec![0, 0x7f, 0xff, 0xff, 0xff];
        match one_message(body(vec![huge]), "/s/GetNode", 16).await {
            Err(EdgeRefusal::TooLarge(v)) => {
                assert_eq!(v.field, "(GetNode message)");
                assert_eq!((v.limit, v.actual), (16, 0x7fff_ffff));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_types_other_than_grpc_are_refused() {
        let ok = |s: &str| content_type_ok(Some(&http::HeaderValue::from_str(s).expect("header")));
        assert_eq!(ok("application/grpc"), Ok(()));
        assert_eq!(ok("application/grpc+proto"), Ok(()));
        assert!(ok("application/json").is_err());
        assert!(ok("application/grpc-web").is_err());
        assert!(content_type_ok(None).is_err());
    }

    #[test]
    fn grpc_message_percent_decoding() {
        assert_eq!(
            percent_decode("failed to decode Protobuf message: a%25b%0A"),
            "failed to decode Protobuf message: a%b\n"
        );
        assert_eq!(percent_decode("50%"), "50%");
    }
}
