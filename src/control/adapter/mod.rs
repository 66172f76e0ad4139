//! The kernel adapter: the only code in the control plane that calls a kernel.
//!
//! One call per request, never retried; every call has a deadline. A call that fails or times
//! out is reported as a [`TransportError`] and never interpreted: for Execute it means the
//! outcome is unknown, and only the kernel's ledger (GetOutcome) can tell. [`snapshot`] reads
//! what a kernel answers into the control plane's domain values.

pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::Channel;

use crate::contract::cluster::Member;
use crate::proto::kernel as pb;
use crate::proto::kernel::kernel_client::KernelClient;
use crate::tls::client::{ChannelError, ChannelOptions, channel_to};
use crate::tls::material::ClientTls;
use crate::tls::server_identity::ExpectedServer;
use crate::wire::{KERNEL_DOMAIN, WireError};

/// A configured node and its kernel client.
#[derive(Debug, Clone)]
pub struct NodeRef {
    /// Node id.
    pub id: String,
    /// Its address.
    pub address: String,
    client: KernelClient<Channel>,
}

/// A kernel that could not be asked, or did not answer in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// Which node.
    pub node: String,
    /// The gRPC status code name (`Unavailable`, `DeadlineExceeded`, …).
    pub status: String,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.node, self.message, self.status)
    }
}

/// Why an Execute call did not return a decision.
#[derive(Debug, Clone)]
pub enum ExecuteError {
    /// The kernel answered with an error of its own (a malformed request): not executed.
    Kernel(WireError),
    /// Transport failure or deadline: the outcome is unknown.
    Transport(TransportError),
}

/// The kernel adapter.
#[derive(Debug, Clone)]
pub struct Adapter {
    nodes: Vec<NodeRef>,
    read_timeout: Duration,
    execute_timeout: Duration,
}

fn transport(node: &str, status: &tonic::Status) -> TransportError {
    TransportError {
        node: node.to_string(),
        status: format!("{:?}", status.code()),
        message: status.message().to_string(),
    }
}

fn deadline(node: &str, after: Duration) -> TransportError {
    TransportError {
        node: node.to_string(),
        status: "DeadlineExceeded".into(),
        message: format!("no answer within {} ms", after.as_millis()),
    }
}

impl Adapter {
    /// Channels to every node (connected lazily), authenticated as role `controlplane`; each
    /// accepts only the node it is configured for (`node/<id>`, unrevoked under a fresh CRL), so
    /// an address answered by another node fails the call instead of reading the wrong kernel.
    pub fn new(
        nodes: &[Member],
        tls: watch::Receiver<Arc<ClientTls>>,
        read_timeout: Duration,
        execute_timeout: Duration,
    ) -> Result<Self, ChannelError> {
        let nodes = nodes
            .iter()
            .map(|m| {
                let ch = channel_to(
                    &m.address,
                    tls.clone(),
                    ExpectedServer::node(&m.id),
                    ChannelOptions { connect_timeout: read_timeout },
                )?;
                Ok(NodeRef { id: m.id.clone(), address: m.address.clone(), client: KernelClient::new(ch) })
            })
            .collect::<Result<Vec<_>, ChannelError>>()?;
        Ok(Self { nodes, read_timeout, execute_timeout })
    }

    /// The nodes, in configuration order.
    pub fn nodes(&self) -> &[NodeRef] {
        &self.nodes
    }

    /// The position of a node id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    async fn call<T>(
        &self,
        i: usize,
        timeout: Duration,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Result<TransportError, tonic::Status>> {
        let node = &self.nodes[i].id;
        match tokio::time::timeout(timeout, f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(Err(status)),
            Err(_) => Err(Ok(deadline(node, timeout))),
        }
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        r
    }

    /// One Observe of node `i`.
    pub async fn observe(&self, i: usize) -> Result<pb::NodeSnapshot, TransportError> {
        let mut c = self.nodes[i].client.clone();
        let req = self.request(pb::ObserveRequest {}, self.read_timeout);
        self.call(i, self.read_timeout, c.observe(req)).await.map_err(|e| match e {
            Ok(t) => t,
            Err(status) => transport(&self.nodes[i].id, &status),
        })
    }

    /// One Observe of every node, concurrently, in configuration order.
    pub async fn observe_all(&self) -> Vec<Result<pb::NodeSnapshot, TransportError>> {
        futures::future::join_all((0..self.nodes.len()).map(|i| self.observe(i))).await
    }

    /// One GetOutcome of node `i`.
    pub async fn get_outcome(
        &self,
        i: usize,
        req: pb::GetOutcomeRequest,
    ) -> Result<pb::GetOutcomeResponse, TransportError> {
        let mut c = self.nodes[i].client.clone();
        let req = self.request(req, self.read_timeout);
        self.call(i, self.read_timeout, c.get_outcome(req)).await.map_err(|e| match e {
            Ok(t) => t,
            Err(status) => transport(&self.nodes[i].id, &status),
        })
    }

    /// One GetOutcome of every node, concurrently, in configuration order.
    pub async fn get_outcome_all(
        &self,
        req: &pb::GetOutcomeRequest,
    ) -> Vec<Result<pb::GetOutcomeResponse, TransportError>> {
        futures::future::join_all((0..self.nodes.len()).map(|i| self.get_outcome(i, req.clone()))).await
    }

    /// Exactly one Execute on node `i`. Never retried.
    pub async fn execute(&self, i: usize, req: pb::ExecuteRequest) -> Result<pb::ExecuteResponse, ExecuteError> {
        let mut c = self.nodes[i].client.clone();
        let req = self.request(req, self.execute_timeout);
        match self.call(i, self.execute_timeout, c.execute(req)).await {
            Ok(r) => Ok(r),
            Err(Ok(t)) => Err(ExecuteError::Transport(t)),
            Err(Err(status)) => match WireError::from_status(&status).filter(|w| w.domain == KERNEL_DOMAIN) {
                Some(w) => Err(ExecuteError::Kernel(w)),
                None => Err(ExecuteError::Transport(transport(&self.nodes[i].id, &status))),
            },
        }
    }
}
