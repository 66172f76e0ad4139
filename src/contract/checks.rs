//! The kernel's action checks as data: the one table the kernel rejects by and explanations cite.
//!
//! Each check has its order, the stable code and invariants of its rejection, the rule in words
//! (`{target}` and `{epoch}` are filled in by the explanation), and whether a forced promotion
//! skips it. The kernel builds every promotion and demotion rejection from these entries
//! (`kernel::execute`), and explanations list them (`control::explain`) without deciding
//! anything: the facts are the kernel's, and so is the verdict.

use super::codes;

/// One check of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// Its place in the fixed order (1-based).
    pub order: u32,
    /// The stable code of its rejection.
    pub code: &'static str,
    /// The invariants its rejection cites.
    pub invariants: &'static [&'static str],
    /// The rule in words; `{target}` and `{epoch}` are placeholders.
    pub rule: &'static str,
    /// A forced promotion skips it (P6-A1a).
    pub skipped_by_force: bool,
}

impl Check {
    /// The rule with `target` and `epoch` filled in.
    pub fn describe(&self, target: &str, epoch: u64) -> String {
        self.rule.replace("{target}", target).replace("{epoch}", &epoch.to_string())
    }
}

/// Check 1 of a promotion, for a primary target.
pub const PROMOTION_NOT_PRIMARY: Check = Check {
    order: 1,
    code: codes::PROMOTION_ALREADY_PRIMARY,
    invariants: &["P6-A1", "P6-A3"],
    rule: "{target} is a healthy replica (not primary, not halted).",
    skipped_by_force: false,
};
/// Check 1 of a promotion, for a halted target.
pub const PROMOTION_NOT_HALTED: Check = Check {
    order: 1,
    code: codes::PROMOTION_NODE_HALTED,
    invariants: &["P6-F1"],
    rule: "{target} is a healthy replica (not primary, not halted).",
    skipped_by_force: false,
};
/// Check 2 of a promotion.
pub const PROMOTION_FENCED: Check = Check {
    order: 2,
    code: codes::PROMOTION_PRIMARY_ACTIVE,
    invariants: &["P6-A1"],
    rule: "The previous primary is fenced: no reachable peer reports itself an active primary, and {target}'s \
           last entry is the previous primary's Fence.",
    skipped_by_force: true,
};
/// Check 3 of a promotion.
pub const PROMOTION_NOT_BEHIND: Check = Check {
    order: 3,
    code: codes::PROMOTION_REPLICA_BEHIND,
    invariants: &["P6-S1", "P6-S2"],
    rule: "{target} holds every entry any reachable node reports committed.",
    skipped_by_force: false,
};
/// Check 4 of a promotion.
pub const PROMOTION_EPOCH_CURRENT: Check = Check {
    order: 4,
    code: codes::PLAN_EPOCH_STALE,
    invariants: &["P6-A1", "P7-A2", "P7-D2"],
    rule: "Epoch {epoch} is above every epoch {target} or a reachable peer knows (started or granted); otherwise \
           the plan is stale.",
    skipped_by_force: false,
};
/// Check 5 of a promotion.
pub const PROMOTION_QUORUM: Check = Check {
    order: 5,
    code: codes::PROMOTION_NO_QUORUM,
    invariants: &["P6-A1"],
    rule: "A majority grants epoch {epoch}; each grants an epoch once, only to a log at least as up to date as its \
           own.",
    skipped_by_force: false,
};

/// A promotion's checks in order, as an explanation lists them (check 1 once).
pub const PROMOTION: &[Check] =
    &[PROMOTION_NOT_PRIMARY, PROMOTION_FENCED, PROMOTION_NOT_BEHIND, PROMOTION_EPOCH_CURRENT, PROMOTION_QUORUM];

/// Check 1 of a demotion.
pub const DEMOTION_EPOCH_CURRENT: Check = Check {
    order: 1,
    code: codes::PLAN_EPOCH_STALE,
    invariants: &["P6-A2", "P7-A2", "P7-D2"],
    rule: "{target} leads epoch {epoch} (as its primary, or halted as a stale or diverged primary of it).",
    skipped_by_force: false,
};
/// Check 2 of a demotion, for a node that leads nothing.
pub const DEMOTION_IS_PRIMARY: Check = Check {
    order: 2,
    code: codes::DEMOTION_NOT_PRIMARY,
    invariants: &["P6-A2"],
    rule: "{target} is the primary (or halted as a stale or diverged primary).",
    skipped_by_force: false,
};
/// Check 2 of a demotion, for a node halted for a reason demotion does not resolve.
pub const DEMOTION_RESOLVES_HALT: Check = Check {
    order: 2,
    code: codes::DEMOTION_NODE_HALTED,
    invariants: &["P6-F1"],
    rule: "{target} is the primary (or halted as a stale or diverged primary).",
    skipped_by_force: false,
};

/// A demotion's checks in order, as an explanation lists them.
pub const DEMOTION: &[Check] = &[DEMOTION_EPOCH_CURRENT, DEMOTION_IS_PRIMARY];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_in_order_and_only_the_fence_check_is_skipped_by_force() {
        for table in [PROMOTION, DEMOTION] {
            let orders: Vec<u32> = table.iter().map(|c| c.order).collect();
            assert_eq!(orders, (1..=table.len() as u32).collect::<Vec<_>>());
        }
        let skipped: Vec<&str> = PROMOTION.iter().filter(|c| c.skipped_by_force).map(|c| c.code).collect();
        assert_eq!(skipped, vec![codes::PROMOTION_PRIMARY_ACTIVE]);
        assert_eq!(
            PROMOTION_QUORUM.describe("n2", 3),
            "A majority grants epoch 3; each grants an epoch once, only to a log at least as up to date as its own."
        );
    }
}
