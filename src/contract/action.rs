//! The closed set of actions and who asks for them: what the control plane sends and the kernel
//! records, with their proto forms.

use crate::proto::kernel as pb;

/// Who asked for an action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requester {
    /// Role from the actor's certificate.
    pub role: String,
    /// Name from the actor's certificate.
    pub name: String,
    /// Hex SHA-256 of the actor's certificate.
    pub cert_sha256: String,
}

impl Requester {
    /// The proto form.
    pub fn to_proto(&self) -> pb::Requester {
        pb::Requester { role: self.role.clone(), name: self.name.clone(), cert_sha256: self.cert_sha256.clone() }
    }

    /// From the proto form.
    pub fn from_proto(r: &pb::Requester) -> Self {
        Self { role: r.role.clone(), name: r.name.clone(), cert_sha256: r.cert_sha256.clone() }
    }

    /// Whether two requesters are the same principal (role and name). A renewed certificate of
    /// the same principal is the same requester; the fingerprint is recorded for the audit.
    pub fn same_principal(&self, other: &Requester) -> bool {
        self.role == other.role && self.name == other.name
    }
}

/// The closed set of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Promote to primary of the next epoch.
    Promote,
    /// Demote the primary.
    Demote,
    /// Read-only scans.
    Diagnostics,
}

/// One action, as asked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Action {
    /// What.
    pub kind: ActionKind,
    /// On which node.
    pub target_node: String,
    /// Skip the fence check (promotion only).
    pub force: bool,
}

impl Action {
    /// The proto form.
    pub fn to_proto(&self) -> pb::Action {
        pb::Action {
            kind: match self.kind {
                ActionKind::Promote => pb::ActionKind::Promote,
                ActionKind::Demote => pb::ActionKind::Demote,
                ActionKind::Diagnostics => pb::ActionKind::Diagnostics,
            } as i32,
            target_node: self.target_node.clone(),
            force: self.force,
        }
    }

    /// From the proto form; `None` for an unspecified kind.
    pub fn from_proto(a: &pb::Action) -> Option<Self> {
        let kind = match pb::ActionKind::try_from(a.kind).ok()? {
            pb::ActionKind::Promote => ActionKind::Promote,
            pb::ActionKind::Demote => ActionKind::Demote,
            pb::ActionKind::Diagnostics => ActionKind::Diagnostics,
            pb::ActionKind::Unspecified => return None,
        };
        Some(Self { kind, target_node: a.target_node.clone(), force: a.force })
    }
}

/// The confirmation given, as forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Confirmation {
    /// `standard`, `enhanced` or `none`.
    pub kind: String,
    /// Invariant ids acknowledged.
    pub acknowledged_invariants: Vec<String>,
    /// Responsibility accepted.
    pub accept_responsibility: bool,
}

impl Confirmation {
    /// From the proto form.
    pub fn from_proto(c: Option<&pb::Confirmation>) -> Self {
        let Some(c) = c else { return Self { kind: "none".into(), ..Default::default() } };
        Self {
            kind: match pb::ConfirmationKind::try_from(c.kind) {
                Ok(pb::ConfirmationKind::Standard) => "standard",
                Ok(pb::ConfirmationKind::Enhanced) => "enhanced",
                _ => "none",
            }
            .into(),
            acknowledged_invariants: c.acknowledged_invariants.clone(),
            accept_responsibility: c.accept_responsibility,
        }
    }

    /// The proto form.
    pub fn to_proto(&self) -> pb::Confirmation {
        pb::Confirmation {
            kind: match self.kind.as_str() {
                "standard" => pb::ConfirmationKind::Standard,
                "enhanced" => pb::ConfirmationKind::Enhanced,
                _ => pb::ConfirmationKind::Unspecified,
            } as i32,
            acknowledged_invariants: self.acknowledged_invariants.clone(),
            accept_responsibility: self.accept_responsibility,
        }
    }
}
