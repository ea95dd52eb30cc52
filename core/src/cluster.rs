//! Which OpenBao node to call when `openbao.addresses` names the nodes of an HA cluster.
//!
//! OpenBao HA has one active node. Standbys forward writes to it but (with integrated storage)
//! answer reads themselves, so right after a rotation a standby can still report the old
//! `latest_version` and refuse an encrypt with the new one. The plugin therefore sends every
//! call to the active node, finds it with `sys/health` (200 active, 429 standby, 473
//! performance standby, 503 sealed, 501 uninitialised) and looks again whenever the node in use
//! stops answering like an active node. A `307` redirect is honoured only when it points at a
//! configured node: the plugin never sends a token to an address the operator did not name.
//!
//! The machine only decides; the runtime asks every node's `sys/health` when
//! [`Cluster::needs_discovery`] says so, reports what it saw, and sends each call to
//! [`Cluster::current`].

use crate::transit::FailureClass;

/// What one node said to `GET sys/health`, or that it did not answer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum NodeHealth {
    /// An HTTP answer with this status code.
    Status(u16),
    /// No answer: refused, reset, timed out, or not an OpenBao health answer.
    Unreachable,
}

/// A node's role as last seen.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub enum NodeRole {
    /// Not asked yet.
    Unknown,
    /// Unsealed and active: every call goes here.
    Active,
    /// Unsealed standby (forwards writes, may serve stale reads).
    Standby,
    /// Sealed or not initialised: answers nothing useful.
    Sealed,
    /// Did not answer.
    Unreachable,
}

impl NodeRole {
    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Active => "active",
            Self::Standby => "standby",
            Self::Sealed => "sealed",
            Self::Unreachable => "unreachable",
        }
    }

    fn from_health(health: NodeHealth) -> Self {
        match health {
            NodeHealth::Status(200) => Self::Active,
            // 429 standby, 473 performance standby, 472 DR secondary (never active for us).
            NodeHealth::Status(429 | 472 | 473) => Self::Standby,
            NodeHealth::Status(501 | 503) => Self::Sealed,
            NodeHealth::Status(_) | NodeHealth::Unreachable => Self::Unreachable,
        }
    }
}

/// What an operator should make of the nodes' roles (for `doctor`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ClusterVerdict {
    /// One node, never probed: nothing to say beyond the single node's own health.
    SingleNode,
    /// One active node and every other node a standby.
    Healthy,
    /// One active node, but this many nodes are sealed or unreachable: the cluster has less
    /// room for the next failure.
    Degraded {
        /// Sealed or unreachable nodes.
        unhealthy: usize,
    },
    /// No node is active: calls fail until an election ends or a node is unsealed.
    NoActive,
}

/// Judges the nodes' roles after a discovery.
pub fn verdict(roles: &[NodeRole]) -> ClusterVerdict {
    if roles.len() < 2 {
        return ClusterVerdict::SingleNode;
    }
    if !roles.contains(&NodeRole::Active) {
        return ClusterVerdict::NoActive;
    }
    let unhealthy = roles
        .iter()
        .filter(|role| {
            matches!(
                role,
                NodeRole::Sealed | NodeRole::Unreachable | NodeRole::Unknown
            )
        })
        .count();
    if unhealthy == 0 {
        ClusterVerdict::Healthy
    } else {
        ClusterVerdict::Degraded { unhealthy }
    }
}

/// The configured nodes and which one is in use.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Cluster {
    roles: Vec<NodeRole>,
    current: usize,
    discovery_needed: bool,
}

impl Cluster {
    /// A cluster of `nodes` configured addresses (at least one), in configuration order; the
    /// first is used until discovery says otherwise. With several nodes the first call
    /// discovers the active one.
    pub fn new(nodes: usize) -> Self {
        let nodes = nodes.max(1);
        Self {
            roles: vec![NodeRole::Unknown; nodes],
            current: 0,
            discovery_needed: nodes > 1,
        }
    }

    /// The node every call goes to now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Every node's role as last seen, in configuration order.
    pub fn roles(&self) -> &[NodeRole] {
        &self.roles
    }

    /// Whether the runtime should ask every node's `sys/health` before the next call. Never
    /// with a single node: there is nowhere else to go.
    pub fn needs_discovery(&self) -> bool {
        self.discovery_needed && self.roles.len() > 1
    }

    /// A call to `node` failed with `class` (or answered `http_status`). Failures that an
    /// active node does not give (refused or reset connections, 5xx, sealed, a standby's
    /// answer) mean the cluster may have changed leader: the next call first rediscovers.
    /// Failures of the request itself (4xx, decrypt errors, permissions) say nothing about the
    /// node.
    pub fn call_failed(&mut self, node: usize, class: FailureClass) {
        let node_trouble = matches!(
            class,
            FailureClass::ConnectionFailed
                | FailureClass::Unavailable
                | FailureClass::Sealed
                | FailureClass::Timeout
        );
        if node_trouble && node == self.current {
            if let Some(role) = self.roles.get_mut(node) {
                *role = if class == FailureClass::Sealed {
                    NodeRole::Sealed
                } else {
                    NodeRole::Unreachable
                };
            }
            self.discovery_needed = true;
        }
    }

    /// The result of asking every node's `sys/health` (one entry per node, in order). The
    /// active node becomes current. With none active, an unsealed standby is used (it forwards
    /// writes, and reads are only briefly stale), else the next node after the current one,
    /// so a call still goes somewhere and the next failure looks again.
    pub fn discovered(&mut self, health: &[NodeHealth]) {
        for (role, answer) in self.roles.iter_mut().zip(health) {
            *role = NodeRole::from_health(*answer);
        }
        let find = |wanted: NodeRole| self.roles.iter().position(|role| *role == wanted);
        if let Some(active) = find(NodeRole::Active) {
            self.current = active;
            self.discovery_needed = false;
        } else if let Some(standby) = find(NodeRole::Standby) {
            self.current = standby;
            // Keep looking on the next failure: an election may still be running.
            self.discovery_needed = true;
        } else {
            self.current = (self.current + 1) % self.roles.len();
            self.discovery_needed = true;
        }
    }

    /// A `307` from the node in use pointed at configured node `target` (the runtime matched
    /// the `Location` against the configured addresses; anything else is refused). The next
    /// call goes there.
    pub fn redirected_to(&mut self, target: usize) {
        if target < self.roles.len() {
            self.current = target;
            self.discovery_needed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVE: NodeHealth = NodeHealth::Status(200);
    const STANDBY: NodeHealth = NodeHealth::Status(429);
    const SEALED: NodeHealth = NodeHealth::Status(503);
    const DOWN: NodeHealth = NodeHealth::Unreachable;

    #[test]
    fn a_single_node_never_needs_discovery() {
        let mut cluster = Cluster::new(1);
        assert!(!cluster.needs_discovery());
        cluster.call_failed(0, FailureClass::ConnectionFailed);
        assert!(!cluster.needs_discovery());
        assert_eq!(cluster.current(), 0);
    }

    #[test]
    fn several_nodes_discover_the_active_one_before_the_first_call() {
        let mut cluster = Cluster::new(3);
        assert!(cluster.needs_discovery());
        cluster.discovered(&[STANDBY, ACTIVE, STANDBY]);
        assert_eq!(cluster.current(), 1);
        assert!(!cluster.needs_discovery());
        assert_eq!(
            cluster.roles(),
            [NodeRole::Standby, NodeRole::Active, NodeRole::Standby]
        );
    }

    #[test]
    fn a_dead_leader_triggers_discovery_and_the_new_leader_takes_over() {
        let mut cluster = Cluster::new(3);
        cluster.discovered(&[ACTIVE, STANDBY, STANDBY]);
        cluster.call_failed(0, FailureClass::ConnectionFailed);
        assert!(cluster.needs_discovery());
        // During the election nobody is active yet: a standby is used, and discovery repeats.
        cluster.discovered(&[DOWN, STANDBY, STANDBY]);
        assert_eq!(cluster.current(), 1);
        assert!(cluster.needs_discovery());
        cluster.discovered(&[DOWN, STANDBY, ACTIVE]);
        assert_eq!(cluster.current(), 2);
        assert!(!cluster.needs_discovery());
    }

    #[test]
    fn request_errors_say_nothing_about_the_node() {
        let mut cluster = Cluster::new(2);
        cluster.discovered(&[ACTIVE, STANDBY]);
        for class in [
            FailureClass::DecryptFailed,
            FailureClass::PermissionDenied,
            FailureClass::InvalidRequest,
            FailureClass::RateLimited,
        ] {
            cluster.call_failed(0, class);
            assert!(!cluster.needs_discovery(), "{class}");
        }
        // A late failure from a node no longer in use changes nothing either.
        cluster.call_failed(1, FailureClass::ConnectionFailed);
        assert!(!cluster.needs_discovery());
    }

    #[test]
    fn with_nothing_reachable_calls_move_round_the_nodes() {
        let mut cluster = Cluster::new(3);
        cluster.discovered(&[DOWN, SEALED, DOWN]);
        assert_eq!(cluster.current(), 1);
        cluster.discovered(&[DOWN, SEALED, DOWN]);
        assert_eq!(cluster.current(), 2);
        cluster.discovered(&[DOWN, SEALED, DOWN]);
        assert_eq!(cluster.current(), 0);
        assert!(cluster.needs_discovery());
    }

    #[test]
    fn the_verdict_names_a_missing_leader_and_lost_redundancy() {
        assert_eq!(verdict(&[NodeRole::Unknown]), ClusterVerdict::SingleNode);
        let healthy = [NodeRole::Standby, NodeRole::Active, NodeRole::Standby];
        assert_eq!(verdict(&healthy), ClusterVerdict::Healthy);
        let degraded = [NodeRole::Unreachable, NodeRole::Active, NodeRole::Sealed];
        assert_eq!(
            verdict(&degraded),
            ClusterVerdict::Degraded { unhealthy: 2 }
        );
        let leaderless = [NodeRole::Standby, NodeRole::Standby, NodeRole::Unreachable];
        assert_eq!(verdict(&leaderless), ClusterVerdict::NoActive);
    }

    #[test]
    fn a_redirect_to_a_configured_node_is_followed() {
        let mut cluster = Cluster::new(3);
        cluster.discovered(&[ACTIVE, STANDBY, STANDBY]);
        cluster.redirected_to(2);
        assert_eq!(cluster.current(), 2);
        cluster.redirected_to(7);
        assert_eq!(
            cluster.current(),
            2,
            "an index outside the configuration is ignored"
        );
    }
}
