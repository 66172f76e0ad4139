//! `aerodbctl console`: a loopback web console, a local proxy (like `kubectl proxy`) that talks
//! to the control plane with the operator's profile certificate, so no client certificate ever
//! sits in a browser.
//!
//! - [`guard`]: Host, Origin, Sec-Fetch-Site and the per-launch secret, one pure check.
//! - [`http`]: the HTTP/1.1 server (hyper), security headers, routing, the embedded assets.
//! - [`api`]: read-only JSON views, one control-plane call each, stamped with when it answered.
//! - [`actions`]: the action endpoints (only with `--allow-actions` and an actor profile):
//!   one-time tokens, pending actions keyed by a console-local random id, RequestAction /
//!   ConfirmAction / DeclineAction exactly as aerodbctl sends them.
//!
//! The console never decides anything: it asks, shows and relays; the control plane checks and
//! audits every call it makes. It never polls by itself: a view is read when the page asks.

pub mod actions;
pub mod api;
pub mod guard;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use super::Exit;
use super::conn::ConnArgs;
use crate::tls::identity::Role;

/// The default listen address: loopback, the first port after `aerodb dev`'s 7700–7707.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7710";

/// `aerodbctl console` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// Where to serve the console (port 0: any free port; the printed URL names it).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Offer actions (promote, demote, force-promote, diagnostics). Needs an actor profile.
    /// Without it the page has no mutation control and every action endpoint answers 403.
    #[arg(long)]
    pub allow_actions: bool,
    /// Serve on a non-loopback address. Anyone who can reach it and learns the URL can use the
    /// profile's authority: do not.
    #[arg(long)]
    pub danger_allow_non_loopback: bool,
}

/// Why the console could not start (a usage error unless said otherwise).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The listen address is not loopback and the danger flag was not given.
    #[error(
        "--listen {0} is not a loopback address; the console serves loopback only (--danger-allow-non-loopback overrides)"
    )]
    NotLoopback(SocketAddr),
    /// `--allow-actions` with a profile whose certificate is not an actor's.
    #[error("--allow-actions needs an actor profile; this certificate is {0}")]
    NotActor(String),
    /// The connection could not be resolved.
    #[error("{0}")]
    Conn(#[from] super::conn::ConnError),
    /// The profile's certificate could not be read or carries no identity.
    #[error("the profile's certificate: {0}")]
    Identity(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The identity the profile's certificate carries (shown in the page; never the key).
fn profile_identity(conn: &super::conn::Conn) -> Result<crate::tls::identity::Identity, ConsoleError> {
    let certs =
        crate::tls::material::load_certs(&conn.paths.cert).map_err(|e| ConsoleError::Identity(e.to_string()))?;
    let leaf = certs.first().ok_or_else(|| ConsoleError::Identity("no certificate".into()))?;
    crate::tls::identity::identity_from_der(leaf, &conn.trust_domain).map_err(|e| ConsoleError::Identity(e.to_string()))
}

/// Runs the console until SIGINT or SIGTERM; then declines every pending action it holds.
pub async fn run(conn_args: &ConnArgs, args: &ConsoleArgs) -> Exit {
    match start(conn_args, args).await {
        Ok(exit) => exit,
        Err(e @ ConsoleError::Bind { .. }) => {
            eprintln!("error: {e}");
            Exit::Unavailable
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Usage
        }
    }
}

async fn start(conn_args: &ConnArgs, args: &ConsoleArgs) -> Result<Exit, ConsoleError> {
    if !args.listen.ip().is_loopback() && !args.danger_allow_non_loopback {
        return Err(ConsoleError::NotLoopback(args.listen));
    }
    let (conn, channel) = conn_args.channel(Role::ControlPlane)?;
    let identity = profile_identity(&conn)?;
    if args.allow_actions && identity.role != Role::Actor {
        return Err(ConsoleError::NotActor(identity.principal()));
    }
    let signer = if args.allow_actions {
        Some(
            crate::pki::sign::IntentSigner::load(&conn.paths.cert, &conn.paths.key)
                .map_err(|e| ConsoleError::Identity(format!("cannot sign with it: {e}")))?,
        )
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ConsoleError::Bind { address: args.listen, source })?;
    let local = listener.local_addr().map_err(|source| ConsoleError::Bind { address: args.listen, source })?;
    let shutdown = match crate::shutdown::on_signals() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return Ok(Exit::Internal);
        }
    };
    let guard = guard::Expected::new(local, crate::control::flow::random_id());
    let state = Arc::new(http::Console {
        guard: guard.clone(),
        channel,
        endpoint: conn.endpoint.clone(),
        identity: identity.principal(),
        role: identity.role,
        actions: args.allow_actions.then(actions::Actions::default),
        clock: crate::clock::SystemClock::shared(),
        signer,
    });
    println!("aerodbctl console: {} as {}", conn.endpoint, identity.principal());
    println!(
        "mode: {}",
        if args.allow_actions { "actions allowed (each one explained and confirmed by typing)" } else { "read-only" }
    );
    println!("open: {}", guard.url());
    println!("(the URL holds this launch's secret: do not share it; Ctrl-C stops the console)");
    http::serve(listener, state.clone(), crate::shutdown::wait(shutdown)).await;
    if let Some(a) = &state.actions {
        let declined = a.decline_all(&state.channel).await;
        if declined > 0 {
            println!("stopped: declined {declined} pending action(s); nothing of them was executed");
        }
    }
    Ok(Exit::Success)
}
