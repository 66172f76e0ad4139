//! Mutual TLS, identity and authorization: everything between a TCP connection and a service.
//!
//! TLS 1.3 only, client certificate required (`material`, `verifier`), the accept loop that runs
//! each handshake and derives the caller's identity once per connection from its single SPIFFE
//! URI SAN (`accept`, `identity`), a static method table deciding which roles may call what
//! (`authz`), client channels and the server identity they expect (`client`, `server_identity`),
//! reload of certificates, keys, CA and CRLs without restart (`reload`), and the bounds on what
//! one identity or one address may hold (`limits`).

pub mod accept;
pub mod authz;
pub mod client;
pub mod identity;
pub mod limits;
pub mod material;
pub mod reload;
pub mod server_identity;
pub mod verifier;
