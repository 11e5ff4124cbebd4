//! `rollout.yaml`: where the flag service, the git remote, the CI pipeline and the
//! metrics live. Found with `-C`, else in the working directory or the nearest parent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::duration;
use crate::yaml::{Diagnostic, Diagnostics, Source};

pub const FILE_NAME: &str = "rollout.yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FlagProvider {
    Flipper,
    Unleash,
    Launchdarkly,
    Flagd,
}

impl FlagProvider {
    fn as_str(self) -> &'static str {
        match self {
            FlagProvider::Flipper => "flipper",
            FlagProvider::Unleash => "unleash",
            FlagProvider::Launchdarkly => "launchdarkly",
            FlagProvider::Flagd => "flagd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CiProvider {
    Github,
    Gitlab,
    Jenkins,
    Buildkite,
    Buildbot,
    Command,
}

impl CiProvider {
    fn as_str(self) -> &'static str {
        match self {
            CiProvider::Github => "github",
            CiProvider::Gitlab => "gitlab",
            CiProvider::Jenkins => "jenkins",
            CiProvider::Buildkite => "buildkite",
            CiProvider::Buildbot => "buildbot",
            CiProvider::Command => "command",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsProvider {
    Prometheus,
    Datadog,
    Ga4,
}

impl MetricsProvider {
    fn as_str(self) -> &'static str {
        match self {
            MetricsProvider::Prometheus => "prometheus",
            MetricsProvider::Datadog => "datadog",
            MetricsProvider::Ga4 => "ga4",
        }
    }
}

/// The Datadog sites whose API rollout knows, by `site` as Datadog writes it.
pub const DATADOG_SITES: &[&str] =
    &["datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com", "datadoghq.eu", "ap1.datadoghq.com", "ddog-gov.com"];

/// The `flags` section: one variant per provider, holding what that provider uses.
#[derive(Debug, Clone)]
pub enum FlagsConfig {
    Flagd(FlagdConfig),
    Flipper(FlipperConfig),
    Unleash(UnleashConfig),
    Launchdarkly(LaunchdarklyConfig),
}

#[derive(Debug, Clone)]
pub struct FlagdConfig {
    /// The flag file, relative to the config file.
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct FlipperConfig {
    pub url: String,
    pub token_env: Option<String>,
    /// The header that carries the token (default Authorization).
    pub auth_header: Option<String>,
    /// The header's value, with `{token}` for the secret (default `Bearer {token}`).
    pub auth_format: Option<String>,
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone)]
pub struct UnleashConfig {
    pub url: String,
    pub token_env: String,
    pub project: Option<String>,
    pub environment: String,
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone)]
pub struct LaunchdarklyConfig {
    pub url: Option<String>,
    pub token_env: String,
    pub project: String,
    pub environment: String,
    pub allow_insecure_http: bool,
}

/// The `flags` section as written: every provider's fields, checked by [`RawFlags::typed`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlags {
    provider: FlagProvider,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    /// flagd: the flag file, relative to the config file.
    #[serde(default)]
    path: Option<PathBuf>,
    /// flipper: the header that carries the token (default Authorization).
    #[serde(default)]
    auth_header: Option<String>,
    /// flipper: the header's value, with `{token}` for the secret (default `Bearer {token}`).
    #[serde(default)]
    auth_format: Option<String>,
    /// Allow plain http to a host other than this machine.
    #[serde(default)]
    allow_insecure_http: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// A local clone used as an object store; its work tree is never touched.
    pub repo: PathBuf,
    #[serde(default = "default_remote")]
    pub remote: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    /// The variable holding an https token, sent as the password.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The https user name sent with the token (default: the URL's, else `git`).
    #[serde(default)]
    pub username: Option<String>,
    /// A private key file for ssh remotes, tried after ssh-agent (`~` is the home folder).
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    /// How many times a push is prepared again when the branch moved meanwhile.
    #[serde(default = "default_push_attempts")]
    pub push_attempts: u32,
}

fn default_push_attempts() -> u32 {
    3
}

/// The `ci` section: one variant per provider, holding what that provider uses.
#[derive(Debug, Clone)]
pub enum CiConfig {
    Github(HostedCiConfig),
    Gitlab(GitlabConfig),
    Jenkins(JenkinsConfig),
    Buildkite(HostedCiConfig),
    Buildbot(BuildbotConfig),
    Command(CommandConfig),
}

/// A hosted service reached with a token: GitHub, GitLab and Buildkite.
#[derive(Debug, Clone)]
pub struct HostedCiConfig {
    pub url: Option<String>,
    /// `owner/name` (GitHub), the project path (GitLab), the organization slug (Buildkite).
    pub repo: String,
    pub token_env: String,
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone)]
pub struct GitlabConfig {
    pub hosted: HostedCiConfig,
    /// A pipeline trigger token instead of a personal/project token, to start pipelines.
    pub trigger_token_env: Option<String>,
}

#[derive(Debug, Clone)]
pub struct JenkinsConfig {
    pub url: String,
    pub username: String,
    pub secret: JenkinsSecret,
    pub allow_insecure_http: bool,
}

/// The variable holding the Jenkins user's secret, and which kind of secret it is.
#[derive(Debug, Clone)]
pub enum JenkinsSecret {
    ApiToken(String),
    /// A password: then a CSRF crumb is fetched first.
    Password(String),
}

#[derive(Debug, Clone)]
pub struct BuildbotConfig {
    pub url: String,
    pub token_env: Option<String>,
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// The argv to run, without a shell, in the config file's folder; never empty.
    pub argv: Vec<String>,
}

/// The `ci` section as written: every provider's fields, checked by [`RawCi::typed`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCi {
    provider: CiProvider,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    /// command: the argv to run, without a shell, in the config file's folder.
    #[serde(default)]
    command: Option<Vec<String>>,
    /// jenkins: the user whose API token (token_env) or password (password_env) is used.
    #[serde(default)]
    username: Option<String>,
    /// jenkins: a password instead of an API token (then a CSRF crumb is fetched first).
    #[serde(default)]
    password_env: Option<String>,
    /// gitlab: a pipeline trigger token instead of a personal/project token.
    #[serde(default)]
    trigger_token_env: Option<String>,
    #[serde(default)]
    allow_insecure_http: bool,
}

/// Where `notify` steps post: a Slack-compatible incoming webhook whose URL is a secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub webhook_env: String,
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// One metrics source under `metrics:`, as written; [`RawMetrics::typed`] checks it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    provider: MetricsProvider,
    #[serde(default)]
    url: Option<String>,
    /// prometheus: a bearer token, when the server sits behind an authenticating proxy.
    #[serde(default)]
    token_env: Option<String>,
    /// datadog: which Datadog site the organisation is on (`ddog-gov.com` for US government).
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    app_key_env: Option<String>,
    /// ga4: the property id, digits (`419143770`).
    #[serde(default)]
    property: Option<String>,
    /// ga4: the variable holding the path of the service account's JSON key file.
    #[serde(default)]
    credentials_env: Option<String>,
    #[serde(default)]
    allow_insecure_http: bool,
}

/// Where gate steps read a metric: one variant per provider.
#[derive(Debug, Clone)]
pub enum MetricsConfig {
    Prometheus(PrometheusConfig),
    Datadog(DatadogConfig),
    Ga4(Ga4Config),
}

/// A Prometheus server's HTTP API (`/api/v1/query`).
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    pub url: String,
    pub token_env: Option<String>,
    pub allow_insecure_http: bool,
}

/// Datadog's metrics query API on one site, with an API key and an application key.
#[derive(Debug, Clone)]
pub struct DatadogConfig {
    /// `https://api.<site>`, or the `url` given instead (a proxy in front of it).
    pub url: String,
    pub api_key_env: String,
    pub app_key_env: String,
    pub allow_insecure_http: bool,
}

/// A Google Analytics 4 property read through the Data API with a service account's key.
#[derive(Debug, Clone)]
pub struct Ga4Config {
    /// The Data API's base, `https://analyticsdata.googleapis.com` unless `url` says otherwise.
    pub url: String,
    pub property: String,
    pub credentials_env: String,
    pub allow_insecure_http: bool,
}

/// Where the GA4 Data API lives.
const GA4_DATA_API: &str = "https://analyticsdata.googleapis.com";

impl RawMetrics {
    /// The provider's own config, or `None` with what is wrong added to `problems`.
    fn typed(self, source: &Source, name: &str, problems: &mut Vec<Diagnostic>) -> Option<MetricsConfig> {
        let section = format!("metrics.{name}");
        let mut misplaced = |field: &str, what: &str| {
            problems.push(source.at_value(&format!("{section}.{field}"), format!("{section}.{field}: {what}")))
        };
        let fields = [
            ("token_env", self.token_env.is_some(), &[MetricsProvider::Prometheus][..]),
            ("site", self.site.is_some(), &[MetricsProvider::Datadog]),
            ("api_key_env", self.api_key_env.is_some(), &[MetricsProvider::Datadog]),
            ("app_key_env", self.app_key_env.is_some(), &[MetricsProvider::Datadog]),
            ("property", self.property.is_some(), &[MetricsProvider::Ga4]),
            ("credentials_env", self.credentials_env.is_some(), &[MetricsProvider::Ga4]),
        ];
        for (field, given, readers) in fields {
            if given && !readers.contains(&self.provider) {
                let reader = readers[0].as_str();
                misplaced(field, &format!("only the `{reader}` provider reads it"));
            }
        }
        if let Some(site) = &self.site
            && !DATADOG_SITES.contains(&site.as_str())
        {
            misplaced("site", &format!("not a Datadog site: use one of {}", DATADOG_SITES.join(", ")));
        }
        if let Some(property) = &self.property
            && (property.is_empty() || !property.bytes().all(|b| b.is_ascii_digit()))
        {
            misplaced("property", "a GA4 property id is digits, like \"419143770\" (Admin > Property details)");
        }
        let provider = self.provider.as_str();
        let mut need = |field: &str, value: Option<String>| {
            if value.is_none() {
                problems.push(source.at_key(&section, format!("{section}: provider {provider} needs `{field}`")));
            }
            value
        };
        let allow_insecure_http = self.allow_insecure_http;
        Some(match self.provider {
            MetricsProvider::Prometheus => MetricsConfig::Prometheus(PrometheusConfig {
                url: need("url", self.url)?,
                token_env: self.token_env,
                allow_insecure_http,
            }),
            MetricsProvider::Datadog => {
                let api_key_env = need("api_key_env", self.api_key_env);
                let app_key_env = need("app_key_env", self.app_key_env);
                let url = match (self.url, self.site) {
                    (Some(url), _) => url,
                    (None, Some(site)) => format!("https://api.{site}"),
                    (None, None) => need("site", None)?,
                };
                MetricsConfig::Datadog(DatadogConfig {
                    url,
                    api_key_env: api_key_env?,
                    app_key_env: app_key_env?,
                    allow_insecure_http,
                })
            }
            MetricsProvider::Ga4 => {
                let property = need("property", self.property);
                let credentials_env = need("credentials_env", self.credentials_env);
                MetricsConfig::Ga4(Ga4Config {
                    url: self.url.unwrap_or_else(|| GA4_DATA_API.into()),
                    property: property?,
                    credentials_env: credentials_env?,
                    allow_insecure_http,
                })
            }
        })
    }

    fn secrets(&self) -> [(&'static str, Option<&str>); 4] {
        [
            ("token_env", self.token_env.as_deref()),
            ("api_key_env", self.api_key_env.as_deref()),
            ("app_key_env", self.app_key_env.as_deref()),
            ("credentials_env", self.credentials_env.as_deref()),
        ]
    }
}

/// Timeouts and retries of every HTTP call (the `http` section; all optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// How long to wait for a connection (1 s to 10 min).
    #[serde(deserialize_with = "duration::http_timeout")]
    pub connect_timeout: Duration,
    /// How long one request may take in all (1 s to 10 min).
    #[serde(deserialize_with = "duration::http_timeout")]
    pub timeout: Duration,
    /// How many times a failed call (no connection, 5xx, 429) is tried again (at most 10).
    pub retries: u32,
    /// The most time spent waiting between tries of one call (0 to 10 min).
    #[serde(deserialize_with = "duration::http_max_wait")]
    pub max_wait: Duration,
}

/// The most `http.retries`.
const MAX_HTTP_RETRIES: u32 = 10;

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            retries: 3,
            max_wait: Duration::from_secs(30),
        }
    }
}

fn default_remote() -> String {
    "origin".into()
}

fn default_branch() -> String {
    "main".into()
}

fn default_runbooks() -> PathBuf {
    PathBuf::from("runbooks")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    #[serde(default = "default_runbooks")]
    runbooks: PathBuf,
    #[serde(default)]
    flags: Option<RawFlags>,
    #[serde(default)]
    git: Option<GitConfig>,
    #[serde(default)]
    ci: Option<RawCi>,
    #[serde(default)]
    metrics: IndexMap<String, RawMetrics>,
    #[serde(default)]
    notify: Option<NotifyConfig>,
    #[serde(default)]
    http: HttpSettings,
    #[serde(default)]
    state: Option<RawState>,
}

/// The `state` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    backend: StateBackend,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default, deserialize_with = "duration::state_patience")]
    patience: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StateBackend {
    Local,
    Postgres,
}

/// Where journals and locks live.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum StateConfig {
    /// Files in the state folder, this machine's alone.
    #[default]
    Local,
    /// A PostgreSQL database the team shares: the connection string is read from `url_env`,
    /// rollout's tables live in `schema`; a run waits `patience` for it before a step.
    Postgres { url_env: String, schema: String, patience: Duration },
}

/// How long a run waits for an unreachable shared backend before a step, unless it says.
pub const DEFAULT_STATE_PATIENCE: Duration = Duration::from_secs(30);

/// The schema rollout's tables live in when `state.schema` does not say.
pub const DEFAULT_STATE_SCHEMA: &str = "rollout";

impl RawState {
    fn typed(self, source: &Source, problems: &mut Vec<Diagnostic>) -> Option<StateConfig> {
        match self.backend {
            StateBackend::Local => {
                let fields = [
                    ("url_env", self.url_env.is_some()),
                    ("schema", self.schema.is_some()),
                    ("patience", self.patience.is_some()),
                ];
                for (field, given) in fields {
                    if given {
                        let path = format!("state.{field}");
                        problems.push(source.at_value(&path, format!("{path}: only `backend: postgres` reads it")));
                    }
                }
                Some(StateConfig::Local)
            }
            StateBackend::Postgres => {
                let schema = self.schema.unwrap_or_else(|| DEFAULT_STATE_SCHEMA.into());
                let named = schema.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && schema.len() <= 63
                    && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !named {
                    let why = "a schema name is lowercase letters, digits and _, from a letter, at most 63";
                    problems.push(source.at_value("state.schema", format!("state.schema: {why}")));
                }
                let Some(url_env) = self.url_env else {
                    problems.push(source.at_key(
                        "state",
                        "state: backend postgres needs `url_env`, the variable holding the connection string",
                    ));
                    return None;
                };
                let patience = self.patience.unwrap_or(DEFAULT_STATE_PATIENCE);
                Some(StateConfig::Postgres { url_env, schema, patience })
            }
        }
    }
}

/// A loaded and checked config; relative paths are resolved against its folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub runbooks: PathBuf,
    pub flags: Option<FlagsConfig>,
    pub git: Option<GitConfig>,
    pub ci: Option<CiConfig>,
    /// The sources gate steps read, by name.
    pub metrics: IndexMap<String, MetricsConfig>,
    pub notify: Option<NotifyConfig>,
    pub http: HttpSettings,
    /// Where journals and locks live.
    pub state: StateConfig,
}

/// Why no config could be loaded; the edge maps it to an exit code and hints.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `-C` and no rollout.yaml in `cwd` (the path) or any folder above it.
    #[error("no {FILE_NAME} in {} or any folder above it", .0.display())]
    NotFound(PathBuf),
    /// `-C FILE` names a file that does not exist.
    #[error("config file {} does not exist", .0.display())]
    NoSuchFile(PathBuf),
    /// The file is there but does not load.
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
}

impl Config {
    /// `-C FILE` if given, else the nearest rollout.yaml from `cwd` upwards.
    pub fn find(explicit: Option<&Path>, cwd: &Path) -> Option<PathBuf> {
        if let Some(path) = explicit {
            return Some(cwd.join(path));
        }
        cwd.ancestors().map(|dir| dir.join(FILE_NAME)).find(|candidate| candidate.is_file())
    }

    /// Find and load the config: `-C FILE`, else the nearest rollout.yaml from `cwd` upwards.
    pub fn discover(explicit: Option<&Path>, cwd: &Path) -> Result<Config, ConfigError> {
        let Some(path) = Self::find(explicit, cwd) else {
            return Err(ConfigError::NotFound(cwd.to_path_buf()));
        };
        if !path.is_file() {
            return Err(ConfigError::NoSuchFile(path));
        }
        Ok(Config::load(&path)?)
    }

    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let source = Source::read(path).map_err(|d| Diagnostics(vec![d]))?;
        Self::from_source(&source)
    }

    pub fn from_source(source: &Source) -> Result<Config, Diagnostics> {
        let raw: RawConfig = source.parse()?;
        let checked = check(source, &raw);
        let mut problems = Vec::new();
        if raw.version != 1 {
            problems.push(source.at_key("version", "version: provider this rollout needs `version: 1`"));
        }
        let flags = raw.flags.and_then(|f| f.typed(source, &mut problems));
        let ci = raw.ci.and_then(|c| c.typed(source, &mut problems));
        let state = raw.state.and_then(|s| s.typed(source, &mut problems)).unwrap_or_default();
        let mut metrics = IndexMap::new();
        for (name, raw) in raw.metrics {
            if !crate::runbook::validate::is_identifier(&name, true) {
                let why = "a metrics source's name is lowercase letters, digits, _ and -, from a letter";
                problems.push(source.at_key(&format!("metrics.{name}"), format!("metrics.{name}: {why}")));
            }
            if let Some(typed) = raw.typed(source, &name, &mut problems) {
                metrics.insert(name, typed);
            }
        }
        problems.extend(checked);
        if !problems.is_empty() {
            return Err(Diagnostics(problems));
        }
        let path = std::path::absolute(&source.path).unwrap_or_else(|_| source.path.clone());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Config {
            runbooks: dir.join(&raw.runbooks),
            flags,
            git: raw.git,
            ci,
            metrics,
            notify: raw.notify,
            http: raw.http,
            state,
            path,
            dir,
        })
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Reports the fields a section's provider needs but was not given, at the section's key.
struct Needs<'a> {
    source: &'a Source,
    section: &'static str,
    provider: &'static str,
    problems: &'a mut Vec<Diagnostic>,
}

impl<'a> Needs<'a> {
    fn new(
        source: &'a Source,
        section: &'static str,
        provider: &'static str,
        problems: &'a mut Vec<Diagnostic>,
    ) -> Self {
        Needs { source, section, provider, problems }
    }

    fn field<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            let message = format!("{}: provider {} needs `{field}`", self.section, self.provider);
            self.problems.push(self.source.at_key(self.section, message));
        }
        value
    }
}

impl RawFlags {
    /// The provider's own config, or `None` with what is missing added to `problems`.
    fn typed(self, source: &Source, problems: &mut Vec<Diagnostic>) -> Option<FlagsConfig> {
        let need = &mut Needs::new(source, "flags", self.provider.as_str(), problems);
        let allow_insecure_http = self.allow_insecure_http;
        Some(match self.provider {
            FlagProvider::Flagd => FlagsConfig::Flagd(FlagdConfig { path: need.field("path", self.path)? }),
            FlagProvider::Flipper => FlagsConfig::Flipper(FlipperConfig {
                url: need.field("url", self.url)?,
                token_env: self.token_env,
                auth_header: self.auth_header,
                auth_format: self.auth_format,
                allow_insecure_http,
            }),
            FlagProvider::Unleash => {
                let url = need.field("url", self.url);
                let environment = need.field("environment", self.environment);
                let token_env = need.field("token_env", self.token_env);
                let (url, environment, token_env) = (url?, environment?, token_env?);
                FlagsConfig::Unleash(UnleashConfig {
                    url,
                    token_env,
                    project: self.project,
                    environment,
                    allow_insecure_http,
                })
            }
            FlagProvider::Launchdarkly => {
                let project = need.field("project", self.project);
                let environment = need.field("environment", self.environment);
                let token_env = need.field("token_env", self.token_env);
                let (project, environment, token_env) = (project?, environment?, token_env?);
                let url = self.url;
                FlagsConfig::Launchdarkly(LaunchdarklyConfig {
                    url,
                    token_env,
                    project,
                    environment,
                    allow_insecure_http,
                })
            }
        })
    }
}

impl RawCi {
    /// The provider's own config, or `None` with what is missing added to `problems`.
    fn typed(self, source: &Source, problems: &mut Vec<Diagnostic>) -> Option<CiConfig> {
        let need = &mut Needs::new(source, "ci", self.provider.as_str(), problems);
        let allow_insecure_http = self.allow_insecure_http;
        let hosted = |need: &mut Needs, url, repo, token_env| {
            let (repo, token_env) = (need.field("repo", repo), need.field("token_env", token_env));
            Some(HostedCiConfig { url, repo: repo?, token_env: token_env?, allow_insecure_http })
        };
        Some(match self.provider {
            CiProvider::Command => CiConfig::Command(CommandConfig {
                argv: need.field("command", self.command.filter(|c| !c.is_empty()))?,
            }),
            CiProvider::Github => CiConfig::Github(hosted(need, self.url, self.repo, self.token_env)?),
            CiProvider::Buildkite => CiConfig::Buildkite(hosted(need, self.url, self.repo, self.token_env)?),
            CiProvider::Gitlab => CiConfig::Gitlab(GitlabConfig {
                hosted: hosted(need, self.url, self.repo, self.token_env)?,
                trigger_token_env: self.trigger_token_env,
            }),
            CiProvider::Jenkins => {
                let url = need.field("url", self.url);
                let username = need.field("username", self.username);
                let secret =
                    self.token_env.map(JenkinsSecret::ApiToken).or(self.password_env.map(JenkinsSecret::Password));
                let secret = need.field("token_env or password_env", secret);
                CiConfig::Jenkins(JenkinsConfig {
                    url: url?,
                    username: username?,
                    secret: secret?,
                    allow_insecure_http,
                })
            }
            CiProvider::Buildbot => CiConfig::Buildbot(BuildbotConfig {
                url: need.field("url", self.url)?,
                token_env: self.token_env,
                allow_insecure_http,
            }),
        })
    }
}

/// Fields that mean nothing to their provider, secrets' variable names, and limits.
fn check(source: &Source, raw: &RawConfig) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let mut misplaced = |path: &str, what: &str| problems.push(source.at_value(path, format!("{path}: {what}")));
    if let Some(ci) = &raw.ci
        && ci.provider != CiProvider::Command
        && ci.command.is_some()
    {
        misplaced("ci.command", "only the `command` provider runs a command");
    }
    if let Some(flags) = &raw.flags
        && flags.provider != FlagProvider::Flagd
        && flags.path.is_some()
    {
        misplaced("flags.path", "only the `flagd` provider reads a flag file");
    }
    for (path, name) in [
        ("flags.token_env", raw.flags.as_ref().and_then(|f| f.token_env.as_deref())),
        ("ci.token_env", raw.ci.as_ref().and_then(|c| c.token_env.as_deref())),
        ("git.token_env", raw.git.as_ref().and_then(|g| g.token_env.as_deref())),
        ("ci.password_env", raw.ci.as_ref().and_then(|c| c.password_env.as_deref())),
        ("ci.trigger_token_env", raw.ci.as_ref().and_then(|c| c.trigger_token_env.as_deref())),
        ("notify.webhook_env", raw.notify.as_ref().map(|n| n.webhook_env.as_str())),
        ("state.url_env", raw.state.as_ref().and_then(|s| s.url_env.as_deref())),
    ]
    .into_iter()
    .map(|(path, name)| (path.to_string(), name))
    .chain(raw.metrics.iter().flat_map(|(source, m)| {
        m.secrets().into_iter().map(move |(field, name)| (format!("metrics.{source}.{field}"), name))
    })) {
        if let Some(name) = name
            && !is_env_name(name)
        {
            // The value may be a pasted secret: it is never echoed.
            misplaced(
                &path,
                "this is not an environment variable name (A-Z, 0-9, _): name the variable that holds the secret, like GITHUB_TOKEN, never the secret itself",
            );
        }
    }
    if raw.http.retries > MAX_HTTP_RETRIES {
        problems.push(source.at_value("http.retries", format!("http.retries: at most {MAX_HTTP_RETRIES}")));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Vec<String>> {
        Config::from_source(&Source::new(PathBuf::from("/teams/va/rollout.yaml"), text.into()))
            .map_err(|d| d.0.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn paths_resolve_against_the_config_folder() {
        let config = load("version: 1\nflags: { provider: flagd, path: flags.json }\ngit: { repo: ../app }\n").unwrap();
        assert_eq!(config.runbooks, PathBuf::from("/teams/va/runbooks"));
        assert_eq!(config.dir, PathBuf::from("/teams/va"));
    }

    #[test]
    fn provider_fields_are_checked_where_they_are_written() {
        let problems =
            load("version: 1\nflags:\n  provider: flagd\nci:\n  provider: github\n  token_env: ghp_abc123\n")
                .unwrap_err();
        assert_eq!(
            problems,
            [
                "/teams/va/rollout.yaml:2:1: flags: provider flagd needs `path`",
                "/teams/va/rollout.yaml:4:1: ci: provider github needs `repo`",
                "/teams/va/rollout.yaml:6:14: ci.token_env: this is not an environment variable name (A-Z, 0-9, _): name the variable that holds the secret, like GITHUB_TOKEN, never the secret itself",
            ]
        );
    }

    #[test]
    fn each_provider_gets_its_own_typed_config() {
        let config =
            load("version: 1\nci: { provider: jenkins, url: 'https://j', username: u, password_env: J_PASS }\n")
                .unwrap();
        assert!(
            matches!(config.ci, Some(CiConfig::Jenkins(JenkinsConfig { secret: JenkinsSecret::Password(ref env), .. })) if env == "J_PASS")
        );
        let config = load("version: 1\nci: { provider: command, command: [make, deploy] }\n").unwrap();
        assert!(
            matches!(config.ci, Some(CiConfig::Command(CommandConfig { ref argv })) if argv == &["make", "deploy"])
        );
        assert_eq!(
            load("version: 1\nflags:\n  provider: unleash\n  project: p\n").unwrap_err(),
            [
                "/teams/va/rollout.yaml:2:1: flags: provider unleash needs `url`",
                "/teams/va/rollout.yaml:2:1: flags: provider unleash needs `environment`",
                "/teams/va/rollout.yaml:2:1: flags: provider unleash needs `token_env`",
            ]
        );
        assert_eq!(
            load("version: 1\nflags: { provider: flipper, url: 'http://f', path: f.json }\n").unwrap_err(),
            ["/teams/va/rollout.yaml:2:52: flags.path: only the `flagd` provider reads a flag file"]
        );
    }

    #[test]
    fn the_state_is_local_unless_a_postgres_backend_names_its_variable() {
        assert_eq!(load("version: 1\n").unwrap().state, StateConfig::Local);
        let shared = load("version: 1\nstate: { backend: postgres, url_env: ROLLOUT_STATE_URL }\n").unwrap();
        assert_eq!(
            shared.state,
            StateConfig::Postgres {
                url_env: "ROLLOUT_STATE_URL".into(),
                schema: "rollout".into(),
                patience: DEFAULT_STATE_PATIENCE
            }
        );
        assert_eq!(
            load("version: 1\nstate: { backend: postgres, url_env: 'postgres://u:p@h/db', schema: Team-A }\n")
                .unwrap_err(),
            [
                "/teams/va/rollout.yaml:2:69: state.schema: a schema name is lowercase letters, digits and _, from a letter, at most 63",
                "/teams/va/rollout.yaml:2:38: state.url_env: this is not an environment variable name (A-Z, 0-9, _): name the variable that holds the secret, like GITHUB_TOKEN, never the secret itself",
            ]
        );
        assert_eq!(
            load("version: 1\nstate: { backend: local, schema: team }\n").unwrap_err(),
            ["/teams/va/rollout.yaml:2:34: state.schema: only `backend: postgres` reads it"]
        );
    }

    #[test]
    fn a_ga4_source_needs_a_numeric_property_and_its_key_files_variable() {
        let config = load("version: 1\nmetrics:\n  users: { provider: ga4, property: '419143770', credentials_env: GA_CREDENTIALS }\n").unwrap();
        assert!(matches!(&config.metrics["users"], MetricsConfig::Ga4(g)
            if g.url == "https://analyticsdata.googleapis.com" && g.property == "419143770" && g.credentials_env == "GA_CREDENTIALS"));
        assert_eq!(
            load("version: 1\nmetrics:\n  users: { provider: ga4, property: G-XYZ, site: ddog-gov.com }\n")
                .unwrap_err(),
            [
                "/teams/va/rollout.yaml:3:50: metrics.users.site: only the `datadog` provider reads it",
                "/teams/va/rollout.yaml:3:37: metrics.users.property: a GA4 property id is digits, like \"419143770\" (Admin > Property details)",
                "/teams/va/rollout.yaml:3:3: metrics.users: provider ga4 needs `credentials_env`",
            ]
        );
    }

    #[test]
    fn metrics_sources_are_named_and_typed_per_provider() {
        let config = load(
            "version: 1\nmetrics:\n  errors: { provider: prometheus, url: 'http://127.0.0.1:9090' }\n  apm: { provider: datadog, site: ddog-gov.com, api_key_env: DD_API_KEY, app_key_env: DD_APP_KEY }\n",
        )
        .unwrap();
        assert!(matches!(&config.metrics["errors"], MetricsConfig::Prometheus(p) if p.url == "http://127.0.0.1:9090"));
        assert!(matches!(&config.metrics["apm"], MetricsConfig::Datadog(d) if d.url == "https://api.ddog-gov.com"));
        assert_eq!(
            load("version: 1\nmetrics:\n  apm: { provider: datadog, site: datadog.com, api_key_env: dd-key }\n")
                .unwrap_err(),
            [
                "/teams/va/rollout.yaml:3:35: metrics.apm.site: not a Datadog site: use one of datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, ap1.datadoghq.com, ddog-gov.com",
                "/teams/va/rollout.yaml:3:3: metrics.apm: provider datadog needs `app_key_env`",
                "/teams/va/rollout.yaml:3:61: metrics.apm.api_key_env: this is not an environment variable name (A-Z, 0-9, _): name the variable that holds the secret, like GITHUB_TOKEN, never the secret itself",
            ]
        );
    }
}
