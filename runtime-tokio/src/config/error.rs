//! The configuration error: every problem found, reported at once.

use std::fmt;

/// One thing wrong with the configuration, named by the dotted camelCase field it concerns.
///
/// A problem that belongs to no single field (a YAML syntax error, an unreadable file) has an
/// empty field name and prints as its message alone.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Problem {
    field: String,
    message: String,
}

impl Problem {
    /// Creates a problem for `field` (a dotted camelCase path such as `openbao.timeout`).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Creates a problem that belongs to the file as a whole.
    pub fn general(message: impl Into<String>) -> Self {
        Self {
            field: String::new(),
            message: message.into(),
        }
    }

    /// The dotted camelCase field, or an empty string for a file-level problem.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// The configuration could not be loaded or is invalid.
///
/// Displays as `config invalid; <field>: <message>; <field>: <message>`, problems in the order of
/// the configuration schema. The CLI exits with [`EXIT_CONFIG`](super::EXIT_CONFIG).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("config invalid; {}", Joined(&self.problems))]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl ConfigError {
    /// Wraps problems found elsewhere (for example by [`check_files`](super::check_files)).
    ///
    /// Problems are put in schema order; an empty list gets a generic problem so the error
    /// always says something.
    pub fn new(mut problems: Vec<Problem>) -> Self {
        if problems.is_empty() {
            problems.push(Problem::general("unknown problem"));
        }
        sort_problems(&mut problems);
        Self { problems }
    }

    /// Every problem found, in schema order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub(super) fn single(problem: Problem) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

/// Puts problems in the order of the configuration schema; problems of one field keep the order
/// in which they were found.
pub(super) fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by_key(|problem| field_rank(problem.field()));
}

/// The position of `field` in [`FIELD_ORDER`]: the longest entry that is the field itself or
/// one of its parents.
fn field_rank(field: &str) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for (index, entry) in FIELD_ORDER.iter().enumerate() {
        let matches = field == *entry
            || field
                .strip_prefix(entry)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
        if matches && best.is_none_or(|(_, length)| entry.len() > length) {
            best = Some((index, entry.len()));
        }
    }
    best.map_or(FIELD_ORDER.len(), |(index, _)| index)
}

struct Joined<'a>(&'a [Problem]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Every field in schema order; problems are reported in this order.
const FIELD_ORDER: &[&str] = &[
    "",
    "configFile",
    "configVersion",
    "server",
    "server.socketPath",
    "server.socketMode",
    "server.socketGroup",
    "server.socketDirectories",
    "server.metricsAddress",
    "server.healthAddress",
    "server.maxConcurrentStatus",
    "server.maxConcurrentEncrypt",
    "server.maxConcurrentDecrypt",
    "openbao",
    "openbao.address",
    "openbao.addresses",
    "openbao.caCertFile",
    "openbao.tlsServerName",
    "openbao.instanceId",
    "openbao.namespace",
    "openbao.timeout",
    "auth",
    "auth.method",
    "auth.loginBeforeTokenExpiry",
    "auth.tokenRenewalIncrement",
    "auth.loginTimeout",
    "auth.jwt",
    "auth.jwt.source",
    "auth.jwt.mountPath",
    "auth.jwt.role",
    "auth.jwt.jwtFile",
    "auth.jwt.minRemainingTtl",
    "auth.jwt.clockSkewLeeway",
    "auth.jwt.expectedIssuer",
    "auth.jwt.expectedAudience",
    "auth.jwt.expectedSubject",
    "auth.token",
    "auth.token.tokenFile",
    "auth.approle",
    "auth.approle.mountPath",
    "auth.approle.roleIdFile",
    "auth.approle.secretIdFile",
    "transit",
    "transit.mountPath",
    "transit.keyName",
    "transit.keyIdScope",
    "transit.keyIdScope.providerName",
    "transit.keyIdScope.clusterId",
    "transit.keyIdScope.transitMountId",
    "transit.keyIdScope.keyLineageId",
    "state",
    "state.path",
    "bootstrap",
    "bootstrap.graceTimeout",
    "bootstrap.retryInterval",
    "status",
    "status.probeInterval",
    "status.deepProbeInterval",
    "status.statusMaxStaleness",
    "rotation",
    "rotation.mode",
    "rotation.activationDelay",
    "rotation.requireStableObservationCount",
    "rotation.rejectVersionRollback",
    "logging",
    "logging.level",
    "logging.format",
    "logging.logOpenBaoRequestIDs",
    "performance",
    "performance.decryptBatchMaxItems",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_sort_in_schema_order_and_keep_their_order_within_a_field() {
        let mut problems = vec![
            Problem::new("logging.level", "a"),
            Problem::new("auth.jwt.expectedAudience[1]", "b"),
            Problem::new("server.socketPath", "c"),
            Problem::new("server.socketPath", "d"),
            Problem::new("auth.jwt", "e"),
        ];
        sort_problems(&mut problems);
        let order: Vec<_> = problems.iter().map(Problem::message).collect();
        assert_eq!(order, ["c", "d", "e", "b", "a"]);
    }

    #[test]
    fn error_displays_every_problem_after_the_prefix() {
        let error = ConfigError::new(vec![
            Problem::new("openbao.timeout", "must be greater than 0"),
            Problem::new("configVersion", "is required"),
        ]);
        assert_eq!(
            error.to_string(),
            "config invalid; configVersion: is required; openbao.timeout: must be greater than 0"
        );
    }
}
