//! Mutual TLS, identity and authorization: everything between a TCP connection and a service.
//!
//! TLS 1.3 only, client certificate required (`material`, `verifier`), the caller's identity
//! derived once per connection from its single SPIFFE URI SAN (`identity`, `server`), a static
//! method table deciding which roles may call what (`authz`), client channels (`client`), and
//! reload of certificates, keys, CA and CRLs without restart (`reload`), and the bounds on what
//! one identity or one address may hold (`limits`).

pub mod authz;
pub mod client;
pub mod identity;
pub mod limits;
pub mod material;
pub mod reload;
pub mod server;
pub mod server_identity;
pub mod verifier;
