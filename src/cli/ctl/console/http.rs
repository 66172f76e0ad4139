//! The console's HTTP/1.1 server: every request passes [`guard`](super::guard) first, every
//! response carries the security headers, and routing is one `match`.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/` | the page (`?secret=…` sets the cookie and redirects to `/`) |
//! | GET | `/console.js`, `/console.css` | the embedded assets |
//! | GET | `/api/session` | who the console acts as, whether actions exist |
//! | GET | `/api/{cluster,replication,promotion,wal,snapshots}` | observer views |
//! | GET | `/api/node?node=ID`, `/api/outcome?key=KEY` | one node; an outcome lookup |
//! | GET | `/api/audit/{records,verify,checkpoint,reconstruct}` | auditor views |
//! | POST | `/api/actions/{prepare,request,confirm,decline}` | actions; 403 when read-only |

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::actions::Actions;
use super::api::{self, ApiError};
use super::guard::{Admit, Expected, Seen};
use crate::clock::SharedClock;
use crate::tls::identity::Role;

/// The page, its script and its style: embedded, so the console needs no network and no files.
const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// The Content-Security-Policy of every response: only this origin's script, style and fetches,
/// never framed.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'";
/// Most bytes of a request body (action forms are a few hundred bytes).
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Most connections served at once; more wait in the accept queue.
pub const CONNECTIONS_MAX: usize = 64;
/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a request handler reads. Shared by every connection task; the only mutable part
/// is [`Actions`], which guards itself.
#[derive(Debug)]
pub struct Console {
    /// The request checks.
    pub guard: Expected,
    /// The control-plane channel, authenticated with the profile's certificate.
    pub channel: Channel,
    /// The control plane's address.
    pub endpoint: String,
    /// `role/name` of the profile's certificate.
    pub identity: String,
    /// The profile's role.
    pub role: Role,
    /// Present only with `--allow-actions` (and an actor profile).
    pub actions: Option<Actions>,
    /// Stamps views with when they were observed.
    pub clock: SharedClock,
    /// With `--allow-actions`: the profile's actor key, which signs the intent of each action
    /// the operator confirms.
    pub signer: Option<crate::pki::sign::IntentSigner>,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    respond(status, "application/json", serde_json::to_vec(v).unwrap_or_default())
}

fn api_result(r: Result<Value, ApiError>) -> Response<Body> {
    match r {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => json_response(e.status, &e.body),
    }
}

/// Adds the headers every response carries. No `Access-Control-*` header is ever sent.
fn secure(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn header_str(req: &Request<hyper::body::Incoming>, name: header::HeaderName) -> Option<String> {
    let values: Vec<&str> = req.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!values.is_empty()).then(|| values.join("; "))
}

/// Answers one request (never fails: every failure is a response).
pub async fn handle(console: Arc<Console>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let post = req.method() == Method::POST;
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let host = header_str(&req, header::HOST);
    let origin = header_str(&req, header::ORIGIN);
    let site = header_str(&req, header::HeaderName::from_static("sec-fetch-site"));
    let cookie = header_str(&req, header::COOKIE);
    let seen = Seen {
        post,
        path: &path,
        host: host.as_deref(),
        origin: origin.as_deref(),
        sec_fetch_site: site.as_deref(),
        cookie: cookie.as_deref(),
        query: query.as_deref(),
    };
    let admit = match console.guard.check(&seen) {
        Ok(a) => a,
        Err(refusal) => {
            tracing::warn!(http.path = %path, reason = %refusal, "console: request refused");
            return secure(json_response(
                refusal.status(),
                &json!({"error": {"code": "CONSOLE_REFUSED", "domain": "CONSOLE", "message": refusal.to_string(), "source": "console"}}),
            ));
        }
    };
    if admit == Admit::UrlSecret {
        // Trade the URL secret for the cookie, and drop it from the address bar and history.
        let mut r = respond(StatusCode::SEE_OTHER, "text/plain", "continue at /\n");
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
        if let Ok(v) = HeaderValue::from_str(&console.guard.set_cookie()) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return secure(r);
    }
    let method = req.method().clone();
    let response = if post {
        let body = match Limited::new(req.into_body(), BODY_BYTES_MAX).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return secure(api_result(Err(ApiError::console(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "CONSOLE_BAD_REQUEST",
                    format!("request body: {e}"),
                ))));
            }
        };
        post_route(&console, &path, &body).await
    } else if method == Method::GET || method == Method::HEAD {
        get_route(&console, &path, query.as_deref()).await
    } else {
        respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET or POST only\n")
    };
    secure(response)
}

async fn get_route(console: &Console, path: &str, query: Option<&str>) -> Response<Body> {
    match path {
        "/" | "/index.html" => respond(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        "/console.js" => respond(StatusCode::OK, "text/javascript; charset=utf-8", CONSOLE_JS),
        "/console.css" => respond(StatusCode::OK, "text/css; charset=utf-8", CONSOLE_CSS),
        "/api/session" => json_response(StatusCode::OK, &api::session(console)),
        p if p.starts_with("/api/audit/") => {
            match api::audit(console, p.trim_start_matches("/api/audit/"), query).await {
                Some(r) => api_result(r),
                None => not_found(),
            }
        }
        p if p.starts_with("/api/") => match api::view(console, p.trim_start_matches("/api/"), query).await {
            Some(r) => api_result(r),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": {"code": "CONSOLE_NOT_FOUND", "domain": "CONSOLE", "message": "no such page or view", "source": "console"}}),
    )
}

async fn post_route(console: &Console, path: &str, body: &[u8]) -> Response<Body> {
    let Some(step) = path.strip_prefix("/api/actions/") else {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "POST is for /api/actions/ only\n");
    };
    let Some(actions) = &console.actions else {
        return api_result(Err(ApiError::console(
            StatusCode::FORBIDDEN,
            "CONSOLE_READ_ONLY",
            "this console is read-only: it has no actions (start it with --allow-actions and an actor profile); nothing was sent",
        )));
    };
    api_result(match step {
        "prepare" => Ok(actions.prepare()),
        "request" => actions.request(console, body).await,
        "confirm" => actions.confirm(console, body).await,
        "decline" => actions.decline(console, body).await,
        _ => return not_found(),
    })
}

/// Serves `listener` until `shutdown` completes, one task per connection, at most
/// [`CONNECTIONS_MAX`] at a time.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: back off so the loop does not spin.
                    tracing::warn!(error = %e, "console: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let console = console.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let console = console.clone();
                async move { Ok::<_, Infallible>(handle(console, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                tracing::debug!(peer.addr = %peer, error = %e, "console connection ended");
            }
        });
    }
}
