//! From the decoded file, environment and flags to a [`Config`], collecting every problem.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bao_kms_core::config::{BatchPolicy, ConcurrencyLimits};
use bao_kms_core::identity::{IdentityScope, IdentityValues, check_label, check_relative_path};

use super::address::{ListenAddress, is_hostname, normalize_https_url};
use super::bounds::{
    ACTIVATION_DELAY, DEEP_PROBE_INTERVAL, DurationBounds, GRACE_TIMEOUT, JWT_CLOCK_SKEW_LEEWAY,
    JWT_MIN_REMAINING_TTL, LOGIN_BEFORE_TOKEN_EXPIRY, LOGIN_TIMEOUT, OPENBAO_TIMEOUT,
    PROBE_INTERVAL, RETRY_INTERVAL, STATUS_MAX_STALENESS, TOKEN_RENEWAL_INCREMENT,
};
use super::duration::{format_duration, parse_duration};
use super::error::{ConfigError, Problem};
use super::schema::{
    AuthSection, DurationText, FileConfig, JwtSection, OpenBaoSection, ServerSection, Text,
};
use super::settings::{
    AuthMethod, AuthSettings, BootstrapSettings, CONFIG_VERSION, Config, JwtSettings, LogFormat,
    LogLevel, LoggingSettings, OpenBaoSettings, RotationSettings, ServerSettings, StatusSettings,
};
use super::{
    ENV_HEALTH_ADDRESS, ENV_LOG_LEVEL, ENV_METRICS_ADDRESS, EnvLookup, Overrides, first_env,
};

/// Validates everything and builds the configuration, or reports every problem at once.
pub(super) fn validate(
    file: FileConfig,
    overrides: &Overrides,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    let mut check = Checker::default();
    let additions = additions(&file);

    match file.config_version.as_ref().map(Text::as_str) {
        Some(version) if version == CONFIG_VERSION => {}
        Some(version) if !version.trim().is_empty() => {
            check.problem("configVersion", format!("must be {CONFIG_VERSION}"));
        }
        Some(_) | None => check.problem("configVersion", format!("is required ({CONFIG_VERSION})")),
    }

    let server = check.server(file.server.unwrap_or_default(), overrides, env);
    let openbao_section = file.openbao.unwrap_or_default();
    let openbao = check.openbao(&openbao_section);
    let auth = check.auth(
        file.auth.unwrap_or_default(),
        openbao.as_ref().map(|o| o.timeout),
    );

    let transit = file.transit.unwrap_or_default();
    let scope = transit.key_id_scope.unwrap_or_default();
    let identity = IdentityScope::new(IdentityValues {
        provider_name: required_or_empty(scope.provider_name.as_ref()),
        cluster_id: required_or_empty(scope.cluster_id.as_ref()),
        openbao_instance_id: required_or_empty(openbao_section.instance_id.as_ref()),
        openbao_namespace: openbao_section
            .namespace
            .map(|text| text.0)
            .unwrap_or_default(),
        transit_mount_id: required_or_empty(scope.transit_mount_id.as_ref()),
        key_lineage_id: required_or_empty(scope.key_lineage_id.as_ref()),
        transit_mount_path: required_or_empty(transit.mount_path.as_ref()),
        transit_key_name: required_or_empty(transit.key_name.as_ref()),
    });
    let identity = identity
        .map_err(|errors| {
            for error in errors {
                check.problem(error.field, error.reason);
            }
        })
        .ok();

    let state = file.state.unwrap_or_default();
    let state_path = check
        .with_default("state.path", state.path.as_ref(), DEFAULT_STATE_PATH)
        .and_then(|path| check.absolute_path("state.path", &path, PathKind::File));

    let bootstrap = file.bootstrap.unwrap_or_default();
    let grace_timeout = check.duration(
        "bootstrap.graceTimeout",
        bootstrap.grace_timeout.as_ref(),
        Duration::from_secs(60),
        GRACE_TIMEOUT,
    );
    let retry_interval = check.duration(
        "bootstrap.retryInterval",
        bootstrap.retry_interval.as_ref(),
        Duration::from_secs(5),
        RETRY_INTERVAL,
    );

    let status = file.status.unwrap_or_default();
    let probe_interval = check.duration(
        "status.probeInterval",
        status.probe_interval.as_ref(),
        Duration::from_secs(30),
        PROBE_INTERVAL,
    );
    let deep_probe_interval = check.duration(
        "status.deepProbeInterval",
        status.deep_probe_interval.as_ref(),
        Duration::from_secs(300),
        DEEP_PROBE_INTERVAL,
    );
    let status_max_staleness = check.duration(
        "status.statusMaxStaleness",
        status.status_max_staleness.as_ref(),
        Duration::from_secs(120),
        STATUS_MAX_STALENESS,
    );
    if let (Some(probe), Some(staleness)) = (probe_interval, status_max_staleness)
        && probe >= staleness
    {
        check.problem(
            "status.probeInterval",
            format!(
                "must be less than status.statusMaxStaleness ({})",
                format_duration(staleness)
            ),
        );
    }

    let rotation = file.rotation.unwrap_or_default();
    match rotation.mode.as_ref().map(Text::as_str) {
        None | Some("observed") => {}
        Some(_) => check.problem(
            "rotation.mode",
            "must be observed (the only mode of this release)",
        ),
    }
    let activation_delay = check.duration(
        "rotation.activationDelay",
        rotation.activation_delay.as_ref(),
        Duration::from_secs(120),
        ACTIVATION_DELAY,
    );
    let stable_count = check.count(
        "rotation.requireStableObservationCount",
        rotation.require_stable_observation_count,
        3,
        // More would keep a new version from ever being promoted in practice.
        1..=1000,
    );

    let logging = file.logging.unwrap_or_default();
    let level = Sourced::pick(
        logging.level.as_ref(),
        first_env(env, ENV_LOG_LEVEL).map(|(name, value)| (value, name)),
        overrides.log_level.as_deref(),
        "--log-level",
    );
    let level = match level.as_ref().map(|level| level.value.as_str()) {
        None | Some("info") => Some(LogLevel::Info),
        Some("debug") => Some(LogLevel::Debug),
        Some("warn") => Some(LogLevel::Warn),
        Some("error") => Some(LogLevel::Error),
        Some(other) => {
            let hint = if other == "trace" {
                " (trace is not supported)"
            } else {
                ""
            };
            check.sourced_problem(
                "logging.level",
                format!("must be one of debug, info, warn, error{hint}"),
                level.as_ref(),
            );
            None
        }
    };
    let format = match logging.format.as_ref().map(Text::as_str) {
        None | Some("json") => Some(LogFormat::Json),
        Some("text") => Some(LogFormat::Text),
        Some(_) => {
            check.problem("logging.format", "must be json or text");
            None
        }
    };

    let performance = file.performance.unwrap_or_default();
    let batch_items = check.count(
        "performance.decryptBatchMaxItems",
        performance.decrypt_batch_max_items,
        64,
        1..=128,
    );

    let built = (|| {
        Some(Config {
            server: server?,
            openbao: openbao?,
            auth: auth?,
            state_path: state_path?,
            bootstrap: BootstrapSettings {
                grace_timeout: grace_timeout?,
                retry_interval: retry_interval?,
            },
            status: StatusSettings {
                probe_interval: probe_interval?,
                deep_probe_interval: deep_probe_interval?,
                status_max_staleness: status_max_staleness?,
            },
            rotation: RotationSettings {
                activation_delay: activation_delay?,
                require_stable_observation_count: stable_count?,
                reject_version_rollback: rotation.reject_version_rollback.unwrap_or(true),
            },
            logging: LoggingSettings {
                level: level?,
                format: format?,
                log_openbao_request_ids: logging.log_openbao_request_ids.unwrap_or(true),
            },
            decrypt_batching: BatchPolicy {
                max_items: batch_items?,
                ..BatchPolicy::default()
            },
            identity: identity?,
            config_path: None,
            additions,
        })
    })();
    match built {
        Some(config) if check.problems.is_empty() => Ok(config),
        Some(_) | None => Err(ConfigError::new(check.problems)),
    }
}

/// The keys only this release understands, in schema order.
fn additions(file: &FileConfig) -> Vec<&'static str> {
    let auth = file.auth.as_ref();
    [
        (
            file.server
                .as_ref()
                .is_some_and(|server| server.socket_directories.is_some()),
            "server.socketDirectories",
        ),
        (auth.is_some_and(|auth| auth.token.is_some()), "auth.token"),
        (
            auth.is_some_and(|auth| auth.approle.is_some()),
            "auth.approle",
        ),
        (file.performance.is_some(), "performance"),
        (
            file.openbao
                .as_ref()
                .is_some_and(|openbao| openbao.addresses.is_some()),
            "openbao.addresses",
        ),
    ]
    .into_iter()
    .filter_map(|(used, key)| used.then_some(key))
    .collect()
}

/// A required identity value: whitespace-only counts as missing, so the core says "is required".
fn required_or_empty(value: Option<&Text>) -> String {
    match value {
        Some(text) if !text.as_str().trim().is_empty() => text.0.clone(),
        Some(_) | None => String::new(),
    }
}

/// A value that the environment or a flag may override, with where it came from.
struct Sourced {
    value: String,
    /// Empty for the file; otherwise the variable or flag name.
    origin: &'static str,
}

impl Sourced {
    /// Flags win over the environment, the environment over the file. An empty environment
    /// variable counts as unset; an empty flag is a value (it disables an address).
    fn pick(
        file: Option<&Text>,
        env: Option<(String, &'static str)>,
        flag: Option<&str>,
        flag_name: &'static str,
    ) -> Option<Self> {
        if let Some(value) = flag {
            return Some(Self {
                value: value.to_owned(),
                origin: flag_name,
            });
        }
        if let Some((value, origin)) = env {
            return Some(Self { value, origin });
        }
        file.map(|text| Self {
            value: text.0.clone(),
            origin: "",
        })
    }
}

#[derive(Clone, Copy, Eq, PartialEq)]
enum PathKind {
    File,
    Directory,
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn server(
        &mut self,
        server: ServerSection,
        overrides: &Overrides,
        env: EnvLookup<'_>,
    ) -> Option<ServerSettings> {
        let socket_directories = match &server.socket_directories {
            None => Some(
                DEFAULT_SOCKET_DIRECTORIES
                    .iter()
                    .map(PathBuf::from)
                    .collect(),
            ),
            Some(list) if list.is_empty() => {
                self.problem(
                    "server.socketDirectories",
                    "must list at least one directory",
                );
                None
            }
            Some(list) => {
                let mut directories = Vec::with_capacity(list.len());
                for (index, entry) in list.iter().enumerate() {
                    let field = format!("server.socketDirectories[{index}]");
                    if let Some(path) =
                        self.absolute_path(&field, entry.as_str(), PathKind::Directory)
                    {
                        directories.push(path);
                    }
                }
                (directories.len() == list.len()).then_some(directories)
            }
        };

        let socket_path = self
            .with_default(
                "server.socketPath",
                server.socket_path.as_ref(),
                DEFAULT_SOCKET_PATH,
            )
            .and_then(|path| self.absolute_path("server.socketPath", &path, PathKind::File))
            .and_then(|path| self.socket_location(&path, socket_directories.as_deref()));

        let socket_mode = self
            .with_default(
                "server.socketMode",
                server.socket_mode.as_ref(),
                DEFAULT_SOCKET_MODE,
            )
            .and_then(|mode| self.socket_mode(&mode));

        let socket_group = match &server.socket_group {
            None => Some(None),
            Some(group) => self.socket_group(group.as_str()).map(Some),
        };

        let metrics = Sourced::pick(
            server.metrics_address.as_ref(),
            first_env(env, ENV_METRICS_ADDRESS).map(|(name, value)| (value, name)),
            overrides.metrics_address.as_deref(),
            "--metrics-address",
        );
        let health = Sourced::pick(
            server.health_address.as_ref(),
            first_env(env, ENV_HEALTH_ADDRESS).map(|(name, value)| (value, name)),
            overrides.health_address.as_deref(),
            "--health-address",
        );
        let metrics = self.listen_address("server.metricsAddress", metrics, DEFAULT_METRICS);
        let health = self.listen_address("server.healthAddress", health, DEFAULT_HEALTH);
        if let (Some(Some((metrics_text, metrics))), Some(Some((health_text, health)))) =
            (&metrics, &health)
            && metrics.conflicts_with(health)
        {
            self.problem(
                "server.healthAddress",
                format!(
                    "{health_text} must differ from server.metricsAddress {metrics_text} \
                     (use port 0 or an empty address to disable one)"
                ),
            );
        }

        let status = self.count(
            "server.maxConcurrentStatus",
            server.max_concurrent_status,
            16,
            1..=1024,
        );
        let encrypt = self.count(
            "server.maxConcurrentEncrypt",
            server.max_concurrent_encrypt,
            32,
            1..=1024,
        );
        let decrypt = self.count(
            "server.maxConcurrentDecrypt",
            server.max_concurrent_decrypt,
            64,
            1..=1024,
        );

        Some(ServerSettings {
            socket_path: socket_path?,
            socket_mode: socket_mode?,
            socket_group: socket_group?,
            socket_directories: socket_directories?,
            metrics_address: metrics?.map(|(text, _)| text),
            health_address: health?.map(|(text, _)| text),
            concurrency: ConcurrencyLimits {
                status: status?,
                encrypt: encrypt?,
                decrypt: decrypt?,
            },
        })
    }

    fn openbao(&mut self, openbao: &OpenBaoSection) -> Option<OpenBaoSettings> {
        let addresses = self.openbao_addresses(openbao);
        let ca_cert_file = self
            .required("openbao.caCertFile", openbao.ca_cert_file.as_ref())
            .and_then(|path| self.absolute_path("openbao.caCertFile", &path, PathKind::File));
        let tls_server_name = self
            .required("openbao.tlsServerName", openbao.tls_server_name.as_ref())
            .and_then(|name| self.label("openbao.tlsServerName", name))
            .and_then(|name| {
                if is_hostname(&name) || name.parse::<IpAddr>().is_ok() {
                    Some(name)
                } else {
                    self.problem(
                        "openbao.tlsServerName",
                        "must be a DNS name or an IP address",
                    );
                    None
                }
            });
        let timeout = self.duration(
            "openbao.timeout",
            openbao.timeout.as_ref(),
            Duration::from_secs(2),
            OPENBAO_TIMEOUT,
        );
        // instanceId and namespace are identity values, checked by the core's IdentityScope.
        let namespace = openbao
            .namespace
            .as_ref()
            .map(|text| text.0.clone())
            .filter(|namespace| !namespace.is_empty());
        let mut addresses = addresses?.into_iter();
        Some(OpenBaoSettings {
            address: addresses.next()?,
            more_addresses: addresses.collect(),
            ca_cert_file: ca_cert_file?,
            tls_server_name: tls_server_name?,
            namespace,
            timeout: timeout?,
        })
    }

    /// `openbao.address` and `openbao.addresses` as one list of distinct nodes, `address`
    /// first: either key alone, or both with `address` among `addresses`.
    fn openbao_addresses(&mut self, openbao: &OpenBaoSection) -> Option<Vec<String>> {
        let single = match (&openbao.address, &openbao.addresses) {
            (Some(_), _) => self
                .required("openbao.address", openbao.address.as_ref())
                .and_then(|address| {
                    normalize_https_url(&address)
                        .map_err(|reason| self.problem("openbao.address", reason))
                        .ok()
                }),
            (None, Some(_)) => None,
            (None, None) => {
                self.problem("openbao.address", "is required");
                return None;
            }
        };
        let Some(list) = &openbao.addresses else {
            return single.map(|address| vec![address]);
        };
        if list.is_empty() || list.len() > MAX_OPENBAO_ADDRESSES {
            self.problem(
                "openbao.addresses",
                format!("must list 1 to {MAX_OPENBAO_ADDRESSES} addresses"),
            );
            return None;
        }
        let mut nodes: Vec<String> = Vec::with_capacity(list.len());
        for (index, entry) in list.iter().enumerate() {
            let field = format!("openbao.addresses[{index}]");
            match normalize_https_url(entry.as_str()) {
                Ok(address) if nodes.contains(&address) => {
                    self.problem(&field, "repeats an earlier address");
                }
                Ok(address) => nodes.push(address),
                Err(reason) => self.problem(&field, reason),
            }
        }
        if nodes.len() != list.len() {
            return None;
        }
        match single {
            Some(address) => match nodes.iter().position(|node| *node == address) {
                Some(position) => {
                    let first = nodes.remove(position);
                    nodes.insert(0, first);
                    Some(nodes)
                }
                None => {
                    self.problem(
                        "openbao.address",
                        "must be one of openbao.addresses when both are set",
                    );
                    None
                }
            },
            None if openbao.address.is_some() => None,
            None => Some(nodes),
        }
    }

    fn auth(
        &mut self,
        auth: AuthSection,
        openbao_timeout: Option<Duration>,
    ) -> Option<AuthSettings> {
        let method = match auth.method.as_ref().map(Text::as_str) {
            None | Some("jwt") => Some("jwt"),
            Some("token") => Some("token"),
            Some("approle") => Some("approle"),
            Some("cert") => {
                self.problem(
                    "auth.method",
                    "cert is not supported by this release; use jwt, token or approle",
                );
                None
            }
            Some(_) => {
                self.problem("auth.method", "must be one of jwt, token, approle");
                None
            }
        };
        let login_before_token_expiry = self.duration(
            "auth.loginBeforeTokenExpiry",
            auth.login_before_token_expiry.as_ref(),
            Duration::from_secs(300),
            LOGIN_BEFORE_TOKEN_EXPIRY,
        );
        let token_renewal_increment = self.duration(
            "auth.tokenRenewalIncrement",
            auth.token_renewal_increment.as_ref(),
            Duration::from_secs(3_600),
            TOKEN_RENEWAL_INCREMENT,
        );
        if let (Some(before), Some(increment)) =
            (login_before_token_expiry, token_renewal_increment)
            && increment <= before
        {
            self.problem(
                "auth.tokenRenewalIncrement",
                format!(
                    "must be greater than auth.loginBeforeTokenExpiry ({})",
                    format_duration(before)
                ),
            );
        }
        let login_timeout = self
            .duration(
                "auth.loginTimeout",
                auth.login_timeout.as_ref(),
                Duration::ZERO,
                LOGIN_TIMEOUT,
            )
            .map(|timeout| {
                if timeout.is_zero() {
                    openbao_timeout
                        .unwrap_or(Duration::from_secs(2))
                        .max(MIN_LOGIN_TIMEOUT)
                } else {
                    timeout
                }
            });

        let sections = [
            ("auth.jwt", "jwt", auth.jwt.is_some()),
            ("auth.token", "token", auth.token.is_some()),
            ("auth.approle", "approle", auth.approle.is_some()),
        ];
        if let Some(method) = method {
            for (field, name, present) in sections {
                if present && name != method {
                    self.problem(field, format!("is set but auth.method is {method}"));
                }
            }
        }
        let method = match method? {
            "token" => {
                let token = auth.token.unwrap_or_default();
                let token_file =
                    self.required_file("auth.token.tokenFile", token.token_file.as_ref());
                AuthMethod::Token {
                    token_file: token_file?,
                }
            }
            "approle" => {
                let approle = auth.approle.unwrap_or_default();
                let mount_path = self
                    .with_default(
                        "auth.approle.mountPath",
                        approle.mount_path.as_ref(),
                        DEFAULT_APPROLE_MOUNT,
                    )
                    .and_then(|path| self.auth_mount("auth.approle.mountPath", &path));
                let role_id_file =
                    self.required_file("auth.approle.roleIdFile", approle.role_id_file.as_ref());
                let secret_id_file = self
                    .required_file("auth.approle.secretIdFile", approle.secret_id_file.as_ref());
                AuthMethod::AppRole {
                    mount_path: mount_path?,
                    role_id_file: role_id_file?,
                    secret_id_file: secret_id_file?,
                }
            }
            _ => AuthMethod::Jwt(self.jwt(auth.jwt.unwrap_or_default())?),
        };
        Some(AuthSettings {
            method,
            login_before_token_expiry: login_before_token_expiry?,
            token_renewal_increment: token_renewal_increment?,
            login_timeout: login_timeout?,
        })
    }

    fn jwt(&mut self, jwt: JwtSection) -> Option<JwtSettings> {
        match jwt.source.as_ref().map(Text::as_str) {
            None | Some("file") => {}
            Some("oauth2") => self.problem(
                "auth.jwt.source",
                "oauth2 is not supported by this release; use source: file with jwtFile",
            ),
            Some(_) => self.problem("auth.jwt.source", "must be file"),
        }
        let mount_path = self
            .required("auth.jwt.mountPath", jwt.mount_path.as_ref())
            .and_then(|path| self.auth_mount("auth.jwt.mountPath", &path));
        let role = self
            .required("auth.jwt.role", jwt.role.as_ref())
            .and_then(|role| self.label("auth.jwt.role", role));
        let jwt_file = self.required_file("auth.jwt.jwtFile", jwt.jwt_file.as_ref());
        let min_remaining_ttl = self.duration(
            "auth.jwt.minRemainingTtl",
            jwt.min_remaining_ttl.as_ref(),
            Duration::from_secs(120),
            JWT_MIN_REMAINING_TTL,
        );
        let clock_skew_leeway = self.duration(
            "auth.jwt.clockSkewLeeway",
            jwt.clock_skew_leeway.as_ref(),
            Duration::from_secs(30),
            JWT_CLOCK_SKEW_LEEWAY,
        );
        let expected_issuer =
            self.optional_label("auth.jwt.expectedIssuer", jwt.expected_issuer.as_ref());
        let expected_subject =
            self.optional_label("auth.jwt.expectedSubject", jwt.expected_subject.as_ref());
        let audiences = jwt.expected_audience.unwrap_or_default();
        let mut expected_audience = Vec::with_capacity(audiences.len());
        for (index, audience) in audiences.into_iter().enumerate() {
            if let Some(audience) =
                self.label(&format!("auth.jwt.expectedAudience[{index}]"), audience.0)
            {
                expected_audience.push(audience);
            }
        }
        Some(JwtSettings {
            mount_path: mount_path?,
            role: role?,
            jwt_file: jwt_file?,
            min_remaining_ttl: min_remaining_ttl?,
            clock_skew_leeway: clock_skew_leeway?,
            expected_issuer: expected_issuer?,
            expected_audience,
            expected_subject: expected_subject?,
        })
    }

    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(field, message));
    }

    /// A problem with a value that may come from the environment or a flag, naming its source.
    fn sourced_problem(&mut self, field: &str, message: String, source: Option<&Sourced>) {
        match source {
            Some(source) if !source.origin.is_empty() => {
                self.problem(field, format!("{message} (from {})", source.origin));
            }
            Some(_) | None => self.problem(field, message),
        }
    }

    /// A required string; whitespace-only counts as missing.
    fn required(&mut self, field: &str, value: Option<&Text>) -> Option<String> {
        match value {
            Some(text) if !text.as_str().trim().is_empty() => Some(text.0.clone()),
            Some(_) | None => {
                self.problem(field, "is required");
                None
            }
        }
    }

    /// A string with a default when absent; given but blank is a problem.
    fn with_default(&mut self, field: &str, value: Option<&Text>, default: &str) -> Option<String> {
        match value {
            None => Some(default.to_owned()),
            Some(_) => self.required(field, value),
        }
    }

    /// An identifier-like value: no surrounding whitespace, no control characters.
    fn label(&mut self, field: &str, value: String) -> Option<String> {
        match check_label(&value) {
            Ok(()) => Some(value),
            Err(reason) => {
                self.problem(field, reason);
                None
            }
        }
    }

    /// An optional identifier: absent or empty means unset.
    fn optional_label(&mut self, field: &str, value: Option<&Text>) -> Option<Option<String>> {
        match value {
            Some(text) if !text.as_str().is_empty() => self.label(field, text.0.clone()).map(Some),
            Some(_) | None => Some(None),
        }
    }

    fn required_file(&mut self, field: &str, value: Option<&Text>) -> Option<PathBuf> {
        let path = self.required(field, value)?;
        self.absolute_path(field, &path, PathKind::File)
    }

    fn absolute_path(&mut self, field: &str, value: &str, kind: PathKind) -> Option<PathBuf> {
        let reason = if value.trim() != value || value.chars().any(char::is_control) {
            Some("must not have surrounding whitespace or control characters")
        } else if !value.starts_with('/') {
            Some("must be an absolute path")
        } else if value
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            Some("must not contain . or .. segments")
        } else if kind == PathKind::File && value.ends_with('/') {
            Some("must name a file, not a directory")
        } else if kind == PathKind::Directory && Path::new(value).parent().is_none() {
            Some("must not be the root directory")
        } else {
            None
        };
        match reason {
            Some(reason) => {
                self.problem(field, reason);
                None
            }
            None => Some(PathBuf::from(value)),
        }
    }

    fn socket_location(&mut self, path: &Path, directories: Option<&[PathBuf]>) -> Option<PathBuf> {
        // Each socket name is copied into sockaddr_un.sun_path with a terminating NUL.
        if path.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
            self.problem(
                "server.socketPath",
                format!(
                    "must be at most {MAX_SOCKET_PATH_BYTES} bytes (the Unix socket path limit)"
                ),
            );
            return None;
        }
        // Without a valid directory list there is nothing to compare with; that list has its
        // own problem already.
        let directories = directories?;
        let parent = path.parent()?;
        if directories
            .iter()
            .any(|directory| directory.components().eq(parent.components()))
        {
            return Some(path.to_path_buf());
        }
        let allowed: Vec<String> = directories
            .iter()
            .map(|directory| directory.display().to_string())
            .collect();
        self.problem(
            "server.socketPath",
            format!(
                "must be directly inside one of server.socketDirectories ({})",
                allowed.join(", ")
            ),
        );
        None
    }

    fn socket_mode(&mut self, text: &str) -> Option<u32> {
        let well_formed = text.len() == 4
            && text.starts_with('0')
            && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let mode = well_formed
            .then(|| u32::from_str_radix(text, 8).ok())
            .flatten();
        let Some(mode) = mode else {
            self.problem(
                "server.socketMode",
                "must be a quoted octal mode such as \"0660\"",
            );
            return None;
        };
        if mode & FORBIDDEN_SOCKET_MODE_BITS != 0 {
            self.problem(
                "server.socketMode",
                format!(
                    "must not grant execute bits or any access to others ({text} includes {:04o})",
                    mode & FORBIDDEN_SOCKET_MODE_BITS
                ),
            );
            return None;
        }
        Some(mode)
    }

    fn socket_group(&mut self, group: &str) -> Option<String> {
        const FIELD: &str = "server.socketGroup";
        if group.trim().is_empty() {
            self.problem(
                FIELD,
                "must not be empty (omit it to keep the process group)",
            );
            return None;
        }
        let group = self.label(FIELD, group.to_owned())?;
        if group.bytes().all(|b| b.is_ascii_digit()) {
            // u32::MAX is (gid_t)-1, which chown reads as "leave unchanged".
            return match group.parse::<u32>() {
                Ok(gid) if gid < u32::MAX => Some(group),
                Ok(_) | Err(_) => {
                    self.problem(FIELD, "must be a decimal gid below 4294967295");
                    None
                }
            };
        }
        let name_ok = group.len() <= 32
            && !group.starts_with('-')
            && group
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !name_ok {
            self.problem(
                FIELD,
                "must be a group name (at most 32 ASCII letters, digits, _, - and .) \
                 or a decimal gid",
            );
            return None;
        }
        Some(group)
    }

    /// `None` means invalid; `Some(None)` means disabled.
    fn listen_address(
        &mut self,
        field: &str,
        value: Option<Sourced>,
        default: &str,
    ) -> Option<Option<(String, ListenAddress)>> {
        let value = value.unwrap_or_else(|| Sourced {
            value: default.to_owned(),
            origin: "",
        });
        if value.value.is_empty() {
            return Some(None);
        }
        match ListenAddress::parse(&value.value) {
            Ok(address) => Some(Some((value.value, address))),
            Err(reason) => {
                self.sourced_problem(field, reason.to_owned(), Some(&value));
                None
            }
        }
    }

    /// A relative auth mount path such as `auth/jwt`, returned without a trailing slash.
    fn auth_mount(&mut self, field: &str, path: &str) -> Option<String> {
        let checked = if path.starts_with('/') {
            Err("must be relative (no leading /)")
        } else {
            check_relative_path(path, false)
        };
        let trimmed = path.trim_end_matches('/');
        let result = checked.and_then(|()| {
            if trimmed.starts_with("auth/") {
                Ok(trimmed.to_owned())
            } else {
                Err("must start with auth/ (for example auth/jwt)")
            }
        });
        result.map_err(|reason| self.problem(field, reason)).ok()
    }

    fn duration(
        &mut self,
        field: &str,
        value: Option<&DurationText>,
        default: Duration,
        bounds: DurationBounds,
    ) -> Option<Duration> {
        let Some(text) = value else {
            return Some(default);
        };
        let duration = match parse_duration(&text.0) {
            Ok(duration) => duration,
            Err(error) => {
                self.problem(field, error.to_string());
                return None;
            }
        };
        if duration.is_zero() && bounds.zero_means_default {
            return Some(duration);
        }
        if duration.is_zero() && !bounds.min.is_zero() {
            self.problem(field, "must be greater than 0");
            return None;
        }
        if duration < bounds.min {
            self.problem(
                field,
                format!("must be at least {}", format_duration(bounds.min)),
            );
            return None;
        }
        if duration > bounds.max {
            self.problem(
                field,
                format!("must be at most {}", format_duration(bounds.max)),
            );
            return None;
        }
        Some(duration)
    }

    fn count(
        &mut self,
        field: &str,
        value: Option<i64>,
        default: u32,
        range: RangeInclusive<u32>,
    ) -> Option<u32> {
        let Some(value) = value else {
            return Some(default);
        };
        match u32::try_from(value) {
            Ok(count) if range.contains(&count) => Some(count),
            Ok(_) | Err(_) => {
                let message = if *range.end() == u32::MAX {
                    format!("must be at least {}", range.start())
                } else {
                    format!("must be between {} and {}", range.start(), range.end())
                };
                self.problem(field, message);
                None
            }
        }
    }
}

/// Most nodes `openbao.addresses` may name (an HA cluster has a handful).
const MAX_OPENBAO_ADDRESSES: usize = 16;

/// Default `server.socketDirectories`.
pub(super) const DEFAULT_SOCKET_DIRECTORIES: [&str; 2] =
    ["/run/openbao-kms", "/var/run/openbao-kms"];
const DEFAULT_SOCKET_PATH: &str = "/run/openbao-kms/kms.sock";
const DEFAULT_SOCKET_MODE: &str = "0660";
const DEFAULT_METRICS: &str = "127.0.0.1:8081";
const DEFAULT_HEALTH: &str = "127.0.0.1:8082";
const DEFAULT_STATE_PATH: &str = "/var/lib/openbao-kms/state/key-registry.json";
const DEFAULT_APPROLE_MOUNT: &str = "auth/approle";
/// Execute bits for everyone and any access for others.
const FORBIDDEN_SOCKET_MODE_BITS: u32 = 0o117;
/// `sizeof(sun_path)` on Linux (108) minus the terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = 107;
/// Lower bound of the resolved `auth.loginTimeout` when the file says `0s`.
const MIN_LOGIN_TIMEOUT: Duration = Duration::from_secs(5);
