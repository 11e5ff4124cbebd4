//! The one HTTP client every adapter uses: connect and total timeouts, bounded retries with
//! backoff and jitter, Retry-After and rate-limit resets, plain http only to loopback, redaction.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::blocking::Client as Inner;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::backoff::Backoff;
use crate::config::HttpSettings;
use crate::error::{Interrupted, Precondition};
use crate::interrupt;
use crate::untrusted::{excerpt, printable};

/// The most rollout reads of one answer's body: API answers are a few KiB, and a bigger body
/// is an error naming this limit, never buffered whole.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// A credential sent with every request, and the variable it came from (for messages).
#[derive(Clone)]
pub struct Auth {
    pub header: HeaderName,
    pub value: HeaderValue,
    pub env: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth {{ header: {}, value: ***, env: {} }}", self.header, self.env)
    }
}

impl Auth {
    /// `format` with `{token}` replaced by the secret read from `env`.
    pub fn from_env(env: &str, header: &str, format: &str, service: &str) -> Result<Auth> {
        let token = crate::redact::secret_from_env(env).ok_or_else(|| {
            anyhow!("{env} is not set: export it with the {service} token (rollout.yaml names it in token_env)")
        })?;
        let mut value = HeaderValue::from_str(&format.replace("{token}", &token))
            .map_err(|_| anyhow!("{env} holds characters that cannot go in an HTTP header"))?;
        value.set_sensitive(true);
        let header =
            HeaderName::from_bytes(header.as_bytes()).map_err(|_| anyhow!("`{header}` is not an HTTP header name"))?;
        Ok(Auth { header, value, env: env.to_string() })
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    Json(serde_json::Value),
    /// JSON with a vendor content type (LaunchDarkly's semantic patch).
    JsonAs(&'static str, serde_json::Value),
    Form(Vec<(String, String)>),
}

/// One answer, whatever its status.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub method: Method,
    /// The URL without query secrets, for messages.
    pub url: String,
    service: &'static str,
    auth_env: Option<String>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// How long to wait before the next call so as to stay within the service's rate limit:
    /// the time left in the window spread over the calls left (GitHub's `x-ratelimit-*`,
    /// Buildkite's and GitLab's `RateLimit-*`).
    pub fn rate_limit_pause(&self) -> Option<Duration> {
        let number = |names: &[&str]| names.iter().find_map(|n| self.header(n)?.trim().parse::<f64>().ok());
        let remaining = number(&["x-ratelimit-remaining", "ratelimit-remaining"])?;
        let reset = number(&["x-ratelimit-reset", "ratelimit-reset"])?;
        let now = jiff::Timestamp::now().as_second() as f64;
        // Resets are whole seconds, rounded down: a second more keeps the last call of a
        // window out of its final second, where it would be over the limit.
        let window = if reset > 1e9 { reset - now } else { reset } + 1.0;
        let pause = window.max(0.0) / (remaining.max(0.0) + 1.0);
        pause.is_finite().then(|| Duration::from_secs_f64(pause.min(3600.0)))
    }

    /// The service's own error message from a JSON error body, if it has one, made printable.
    pub fn service_message(&self) -> Option<String> {
        self.said().map(|message| printable(&message).into_owned())
    }

    fn said(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(&self.text).ok()?;
        ["message", "error", "error_description", "detail"]
            .iter()
            .find_map(|key| value.get(key).and_then(|m| m.as_str()).map(str::to_string))
            .or_else(|| {
                value
                    .get("error")?
                    .get("message")
                    .map(|m| m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string()))
            })
            .or_else(|| value.get("details")?.get(0)?.get("message")?.as_str().map(str::to_string))
            .or_else(|| {
                // JSON:API: `{"errors": [{"detail": "..."}, ...]}`; Datadog: `{"errors": ["..."]}`.
                let details: Vec<&str> = value
                    .get("errors")?
                    .as_array()?
                    .iter()
                    .filter_map(|e| e.as_str().or_else(|| e.get("detail")?.as_str()))
                    .collect();
                (!details.is_empty()).then(|| details.join("; "))
            })
    }

    /// This response, or an error naming method, URL, status and the service's message.
    /// A refused credential is a failed precondition naming the variable to check.
    pub fn ok(self) -> Result<Response> {
        if self.status.is_success() {
            return Ok(self);
        }
        let said = self.service_message().map(|m| format!(": {m}")).unwrap_or_default();
        let what = format!("{} answered {} {} with {}{said}", self.service, self.method, self.url, self.status);
        match (self.status, &self.auth_env) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, Some(env)) => {
                Err(Precondition(format!("{what}; check {env}: the token it holds was refused")).into())
            }
            _ => Err(anyhow!(what)),
        }
    }

    /// The body both as the service's own JSON (kept whole, e.g. for undo) and typed.
    pub fn json_and_raw<T: DeserializeOwned>(&self) -> Result<(T, serde_json::Value)> {
        let raw: serde_json::Value = self.json()?;
        let typed = serde_json::from_value(raw.clone()).map_err(|e| {
            let why = excerpt(&e.to_string());
            anyhow!("{} answered {} {} with JSON of an unexpected shape ({why})", self.service, self.method, self.url)
        })?;
        Ok((typed, raw))
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.text).map_err(|e| {
            let (why, start) = (excerpt(&e.to_string()), excerpt(&self.text));
            anyhow!("{} answered {} {} with malformed JSON ({why}): \"{start}\"", self.service, self.method, self.url)
        })
    }
}

#[derive(Debug)]
pub struct Client {
    inner: Inner,
    /// The rate-limit pause the last answer asked for (see `Response::rate_limit_pause`), and
    /// when that answer came.
    last_pause: std::cell::Cell<Option<(Instant, Duration)>>,
    base: Url,
    service: &'static str,
    auth: Option<Auth>,
    settings: HttpSettings,
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost" || domain.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A URL fit for messages: no user info, no query.
pub fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.to_string()
}

impl Client {
    pub fn new(
        service: &'static str,
        base: &str,
        settings: &HttpSettings,
        allow_insecure_http: bool,
        auth: Option<Auth>,
    ) -> Result<Client> {
        let base = Url::parse(base.trim_end_matches('/'))
            .with_context(|| format!("{service} url `{}` is not a URL", crate::redact::url(base)))?;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&base) || allow_insecure_http => {}
            "http" => bail!(
                "{service} url {} uses plain http to a host that is not this machine: use https, or set allow_insecure_http: true",
                shown(&base)
            ),
            other => bail!("{service} url {} has scheme {other}: use https", shown(&base)),
        }
        let inner = Inner::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("rollout/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the credentials elsewhere; callers read Location themselves.
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls()
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client { inner, last_pause: std::cell::Cell::new(None), base, service, auth, settings: settings.clone() })
    }

    /// How long to wait from now before the next call to stay within the service's rate
    /// limit, as its last answer said.
    pub fn rate_limit_pause(&self) -> Option<Duration> {
        let (at, pause) = self.last_pause.get()?;
        Some(pause.saturating_sub(at.elapsed())).filter(|left| !left.is_zero())
    }

    pub fn base(&self) -> String {
        shown(&self.base)
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut url = if path.starts_with("http://") || path.starts_with("https://") {
            let url = Url::parse(path)?;
            if url.origin() != self.base.origin() {
                bail!(
                    "{} pointed at {}, which is not {}: refusing to send credentials there",
                    self.service,
                    shown(&url),
                    self.base()
                );
            }
            url
        } else {
            Url::parse(&format!("{}{path}", self.base.as_str().trim_end_matches('/')))?
        };
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Response> {
        self.send(Method::GET, path, query, None, &[])
    }

    /// Send (`path` is relative to the base, or an absolute URL on the same origin), retrying
    /// connection failures, 5xx and 429 with backoff within the wait budget. For requests whose
    /// effect must not happen twice, use `send_once`.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Body>,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        self.send_with(method, path, query, body, headers, true)
    }

    /// `send`, except that a POST, which here starts something that must not happen twice (a
    /// pipeline run, a notification), is tried again only when the server cannot have acted on
    /// it (no connection, 429): a 5xx is answered as is, and no whole answer (a timeout, a
    /// reset, a body cut short or too big) says the request may have arrived.
    pub fn send_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Body>,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        let repeatable = method != Method::POST;
        self.send_with(method, path, query, body, headers, repeatable)
    }

    fn send_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Body>,
        headers: &[(&str, &str)],
        repeatable: bool,
    ) -> Result<Response> {
        let url = self.url(path, query)?;
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let deadline = Instant::now() + self.settings.timeout;
            let mut request = self.inner.request(method.clone(), url.clone());
            if let Some(auth) = &self.auth {
                request = request.header(auth.header.clone(), auth.value.clone());
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request = match body {
                // A bodiless write still says so: some servers (WEBrick) answer 411 without it.
                None if method != Method::GET && method != Method::HEAD => request.header(CONTENT_LENGTH, "0"),
                None => request,
                Some(Body::Json(value)) => request.json(value),
                Some(Body::JsonAs(content_type, value)) => {
                    request.header(CONTENT_TYPE, *content_type).body(serde_json::to_vec(value)?)
                }
                Some(Body::Form(pairs)) => request.form(pairs),
            };
            let outcome = request
                .send()
                .map_err(|error| Failure::Transport {
                    why: transport_error(&error, &self.settings),
                    connect: error.is_connect(),
                })
                .and_then(|response| self.answer(response, &method, &url, deadline));
            let (retry, why, wait) = match outcome {
                Ok(answer) => {
                    self.last_pause.set(answer.rate_limit_pause().map(|pause| (Instant::now(), pause)));
                    let status = answer.status;
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS || (repeatable && status.is_server_error());
                    if !retryable {
                        return Ok(answer);
                    }
                    let wait = server_wait(&answer.headers, status);
                    (Some(answer), status.to_string(), wait)
                }
                // The server answered, so a request sent once did arrive: it is not sent again.
                Err(Failure::TooBig(why)) if !repeatable => {
                    return Err(
                        MayHaveArrived(format!("{why}; the request was received, so it was not sent again")).into()
                    );
                }
                Err(Failure::TooBig(why)) => bail!("{why}"),
                Err(Failure::Transport { why, connect: false }) if !repeatable => {
                    return Err(MayHaveArrived(format!(
                        "{} did not answer {method} {}: {why}; the request may have been received, so it was not sent again: check {} before trying again",
                        self.service,
                        shown(&url),
                        self.service
                    ))
                    .into());
                }
                Err(Failure::Transport { why, .. }) => (None, why, None),
            };
            let backoff = wait.unwrap_or_else(|| Backoff::HTTP.pause(attempt - 1));
            let spent = started.elapsed();
            let out_of_attempts = attempt > self.settings.retries;
            let out_of_time = spent.saturating_add(backoff) > self.settings.max_wait;
            if out_of_attempts || out_of_time {
                if let (Some(response), Some(asked), false) = (&retry, wait, out_of_attempts) {
                    let said = response.service_message().map(|m| format!(": {m}")).unwrap_or_default();
                    bail!(
                        "{} answered {method} {} with {}{said}, and asked to wait {} s, past the {} s wait budget (http.max_wait in rollout.yaml)",
                        self.service,
                        shown(&url),
                        response.status,
                        asked.as_secs(),
                        self.settings.max_wait.as_secs()
                    );
                }
                if let Some(response) = retry {
                    return Ok(response);
                }
                let budget = if out_of_time && !out_of_attempts {
                    format!(" (the next try would pass the {} s wait budget)", self.settings.max_wait.as_secs())
                } else {
                    String::new()
                };
                bail!(
                    "{} did not answer {method} {} after {attempt} tries over {:.1} s: {why}{budget}",
                    self.service,
                    shown(&url),
                    spent.as_secs_f64()
                );
            }
            if interrupt::sleep(backoff) {
                return Err(Interrupted(format!("while waiting to retry {method} {}", shown(&url))).into());
            }
        }
    }
}

/// A request sent once (`send_once`) that went out and got no whole answer (or one too big to
/// read): the service may have acted on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MayHaveArrived(String);

/// Why no whole answer was had.
enum Failure {
    /// No answer, or one cut short; `connect` when the request cannot have arrived.
    Transport { why: String, connect: bool },
    /// A body over `MAX_BODY`: final, not tried again.
    TooBig(String),
}

impl Client {
    /// The answer with its body (see `read_capped`).
    fn answer(
        &self,
        mut response: reqwest::blocking::Response,
        method: &Method,
        url: &Url,
        deadline: Instant,
    ) -> Result<Response, Failure> {
        let status = response.status();
        let declared = response.content_length();
        let body = read_capped(&mut response, declared, deadline).map_err(|cut| {
            let cut_short =
                |why: String| Failure::Transport { why: format!("the answer ({status}) {why}"), connect: false };
            match cut {
                Cut::TooBig => Failure::TooBig(format!(
                    "{} answered {method} {} with {status} and a body over {} MiB, the most rollout reads of an answer",
                    self.service,
                    shown(url),
                    MAX_BODY / (1024 * 1024)
                )),
                Cut::Late => cut_short(format!(
                    "did not finish within the {} s timeout (http.timeout in rollout.yaml)",
                    self.settings.timeout.as_secs_f64()
                )),
                Cut::Broke(error) => cut_short(format!("broke off ({error})")),
            }
        })?;
        Ok(Response {
            status,
            headers: response.headers().clone(),
            text: String::from_utf8_lossy(&body).into_owned(),
            method: method.clone(),
            url: shown(url),
            service: self.service,
            auth_env: self.auth.as_ref().map(|a| a.env.clone()),
        })
    }
}

/// Why a body was not read whole.
#[derive(Debug)]
enum Cut {
    TooBig,
    /// Still coming at the deadline: a body that never ends.
    Late,
    Broke(std::io::Error),
}

/// A body read up to `MAX_BODY` bytes (a `declared` length over it is refused unread) and by
/// `deadline`; each read also stops after `http.timeout` without a byte.
fn read_capped(body: &mut impl Read, declared: Option<u64>, deadline: Instant) -> Result<Vec<u8>, Cut> {
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(Cut::TooBig);
    }
    let mut read = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = match body.read(&mut chunk) {
            Ok(0) => return Ok(read),
            Ok(n) => n,
            Err(_) if Instant::now() >= deadline => return Err(Cut::Late),
            Err(error) => return Err(Cut::Broke(error)),
        };
        read.extend_from_slice(&chunk[..n]);
        if read.len() > MAX_BODY {
            return Err(Cut::TooBig);
        }
        if Instant::now() >= deadline {
            return Err(Cut::Late);
        }
    }
}

fn transport_error(error: &reqwest::Error, settings: &HttpSettings) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_timeout() {
        format!("no answer within the {} s timeout", settings.timeout.as_secs_f64())
    } else if error.is_connect() {
        format!("cannot connect ({cause})")
    } else {
        cause.to_string()
    }
}

/// Everything but RFC 3986's unreserved characters, so that a name is one path segment.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A name as one URL path segment, percent-encoded: `a b/c` is `a%20b%2Fc` (a space is never
/// `+` in a path). Every path rollout builds from a name goes through here.
pub fn segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

/// How long the server asked us to wait: Retry-After (seconds or a date), or a rate-limit
/// reset header (seconds to wait, or an epoch time in seconds or milliseconds).
fn server_wait(headers: &HeaderMap, status: StatusCode) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(value) = header("retry-after") {
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(date) = jiff::fmt::rfc2822::parse(value) {
            let now = jiff::Timestamp::now();
            return Some(Duration::try_from(date.timestamp().duration_since(now)).unwrap_or_default());
        }
    }
    if status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let reset = ["x-ratelimit-reset", "ratelimit-reset"].iter().find_map(|name| header(name)?.parse::<f64>().ok())?;
    let now = jiff::Timestamp::now();
    let wait = if reset > 1e12 {
        reset / 1000.0 - now.as_millisecond() as f64 / 1000.0
    } else if reset > 1e9 {
        reset - now.as_second() as f64
    } else {
        reset
    };
    wait.is_finite().then(|| Duration::from_secs_f64(wait.clamp(0.0, 86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Response {
        Response {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            headers: HeaderMap::new(),
            text: text.into(),
            method: Method::POST,
            url: "http://127.0.0.1/x".into(),
            service: "Test",
            auth_env: None,
        }
    }

    #[test]
    fn service_messages_come_from_message_and_json_api_errors() {
        let flipper =
            r#"{"code":3,"message":"Percentage must be a positive number less than or equal to 100.","more_info":"x"}"#;
        assert_eq!(
            answer(flipper).service_message().as_deref(),
            Some("Percentage must be a positive number less than or equal to 100.")
        );
        let json_api = r#"{"errors":[{"status":"422","detail":"name is taken"},{"detail":"key is too long"}]}"#;
        assert_eq!(answer(json_api).service_message().as_deref(), Some("name is taken; key is too long"));
        assert_eq!(answer("<html>oops</html>").service_message(), None);
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        let settings = HttpSettings::default();
        assert!(Client::new("Test", "http://127.0.0.1:4242/api", &settings, false, None).is_ok());
        assert!(Client::new("Test", "http://localhost:4242", &settings, false, None).is_ok());
        assert!(Client::new("Test", "http://[::1]:4242", &settings, false, None).is_ok());
        let refused = Client::new("Test", "http://flags.example.gov/api", &settings, false, None).unwrap_err();
        assert!(refused.to_string().contains("allow_insecure_http"), "{refused}");
        assert!(Client::new("Test", "http://flags.example.gov/api", &settings, true, None).is_ok());
        assert!(Client::new("Test", "https://flags.example.gov/api", &settings, false, None).is_ok());
    }

    #[test]
    fn server_waits_are_read_from_every_header_shape() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(server_wait(&headers, StatusCode::TOO_MANY_REQUESTS), Some(Duration::from_secs(3)));
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-reset", HeaderValue::from_static("2"));
        assert_eq!(server_wait(&headers, StatusCode::TOO_MANY_REQUESTS), Some(Duration::from_secs(2)));
        let in_two_seconds = (jiff::Timestamp::now().as_millisecond() + 2_000).to_string();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset", HeaderValue::from_str(&in_two_seconds).unwrap());
        let wait = server_wait(&headers, StatusCode::TOO_MANY_REQUESTS).unwrap();
        assert!(wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2), "{wait:?}");
        assert_eq!(server_wait(&headers, StatusCode::SERVICE_UNAVAILABLE), None);

        for junk in ["inf", "1e400", "-5", "NaN"] {
            let mut headers = HeaderMap::new();
            headers.insert("x-ratelimit-reset", HeaderValue::from_str(junk).unwrap());
            let wait = server_wait(&headers, StatusCode::TOO_MANY_REQUESTS);
            assert!(wait.is_none_or(|w| w <= Duration::from_secs(86_400)), "{junk}: {wait:?}");
        }
    }

    #[test]
    fn a_name_is_one_path_segment() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("deploy-prod.yml"), "deploy-prod.yml");
        assert_eq!(segment("50%+x?#é"), "50%25%2Bx%3F%23%C3%A9");
    }

    #[test]
    fn bodies_are_read_up_to_the_cap_and_the_deadline() {
        let later = Instant::now() + Duration::from_secs(60);
        let small = read_capped(&mut &b"{}"[..], Some(2), later).unwrap();
        assert_eq!(small, b"{}");
        let declared = read_capped(&mut std::io::empty(), Some(MAX_BODY as u64 + 1), later);
        assert!(matches!(declared, Err(Cut::TooBig)), "{declared:?}");
        let flood = read_capped(&mut std::io::repeat(b' '), None, later);
        assert!(matches!(flood, Err(Cut::TooBig)), "{:?}", flood.map(|b| b.len()));
        let endless = read_capped(&mut std::io::repeat(b' ').take(1024), None, Instant::now());
        assert!(matches!(endless, Err(Cut::Late)), "{:?}", endless.map(|b| b.len()));
    }

    #[test]
    fn urls_in_messages_carry_no_credentials() {
        let url = Url::parse("https://user:pw@flags.example.gov/api?token=abc").unwrap();
        assert_eq!(shown(&url), "https://flags.example.gov/api");
    }
}
