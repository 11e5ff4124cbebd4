//! Google service-account auth: the JSON key file named by an env variable, an RS256 JWT
//! exchanged at its token URI for a bearer token, kept until shortly before it expires.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::config::HttpSettings;
use crate::error::Precondition;
use crate::http::{Body, Client};

/// What the Data API needs: read-only access to Analytics.
pub const SCOPE: &str = "https://www.googleapis.com/auth/analytics.readonly";
/// The longest a JWT may claim to live, as Google allows.
const JWT_LIFETIME: Duration = Duration::from_secs(3600);
/// A token this close to its expiry is renewed before it is used.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// A key file is a few KiB; anything far bigger is not one.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The fields rollout reads of the key file Google issues for a service account.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct Granted {
    access_token: String,
    expires_in: u64,
}

struct Token {
    value: String,
    expires: Instant,
}

/// A service account's tokens: one at a time, renewed when it nears its expiry or is refused.
pub struct Tokens {
    email: String,
    key: EncodingKey,
    key_id: Option<String>,
    token_uri: String,
    client: Client,
    /// The variable naming the key file, for messages.
    env: String,
    current: Mutex<Option<Token>>,
}

impl Tokens {
    /// The account whose key file `env` names.
    pub fn from_env(env: &str, http: &HttpSettings, allow_insecure_http: bool) -> Result<Tokens> {
        let path = std::env::var_os(env).filter(|p| !p.is_empty()).ok_or_else(|| {
            anyhow!("{env} is not set: export it with the path of the service account's JSON key file (rollout.yaml names it in credentials_env)")
        })?;
        let path = std::path::PathBuf::from(path);
        let shown = path.display();
        let size = std::fs::metadata(&path).with_context(|| format!("cannot read the key file {shown} ({env})"))?.len();
        if size > MAX_KEY_FILE {
            return Err(anyhow!("{shown} ({env}) is {size} bytes: not a service account key file"));
        }
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read the key file {shown} ({env})"))?;
        // The file holds a private key: a parse error names the file, never its content.
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            anyhow!("{shown} ({env}) is not a service account key file: line {}, column {}", e.line(), e.column())
        })?;
        if file.kind != "service_account" {
            return Err(anyhow!(
                "{shown} ({env}) is a `{}` credential: gates read GA4 as a service account, so create a key for one (IAM > Service accounts > Keys) and add its email to the property's users",
                crate::untrusted::printable(&file.kind)
            ));
        }
        crate::redact::register(&file.private_key);
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|_| anyhow!("{shown} ({env}): its private_key is not an RSA key in PEM"))?;
        let client = Client::new("Google OAuth", &file.token_uri, http, allow_insecure_http, None)?;
        Ok(Tokens {
            email: file.client_email,
            key,
            key_id: file.private_key_id,
            token_uri: file.token_uri,
            client,
            env: env.to_string(),
            current: Mutex::new(None),
        })
    }

    /// The service account, for messages.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// A token that is good for at least another minute: the one held, or a new one.
    pub fn bearer(&self) -> Result<String> {
        let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(token) = current.as_ref().filter(|t| t.expires > Instant::now() + RENEW_BEFORE) {
            return Ok(token.value.clone());
        }
        let token = self.grant()?;
        let value = token.value.clone();
        *current = Some(token);
        Ok(value)
    }

    /// Forget the token held (the service refused it) and get a new one.
    pub fn renew(&self) -> Result<String> {
        *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.bearer()
    }

    /// A new token for a freshly signed JWT.
    fn grant(&self) -> Result<Token> {
        let now = jiff::Timestamp::now().as_second();
        let claims = Claims {
            iss: &self.email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + JWT_LIFETIME.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key).context("cannot sign the token request")?;
        let form = vec![
            ("grant_type".to_string(), "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string()),
            ("assertion".to_string(), assertion),
        ];
        let asked = Instant::now();
        let response = self.client.send(Method::POST, "", &[], Some(&Body::Form(form)), &[])?;
        if response.status.is_client_error() && response.status.as_u16() != 429 {
            let said: serde_json::Value = serde_json::from_str(&response.text).unwrap_or_default();
            let text = |key: &str| said.get(key).and_then(|v| v.as_str()).map(crate::untrusted::printable);
            let reason = match (text("error"), text("error_description")) {
                (Some(error), Some(description)) => format!("{error}: {description}"),
                (Some(error), None) => error.into_owned(),
                _ => response.status.to_string(),
            };
            return Err(Precondition(format!(
                "Google refused a token for {} (the key file in {}): {reason}; check that the key is current (IAM > Service accounts > Keys) and the clock is right",
                self.email, self.env
            ))
            .into());
        }
        let granted: Granted = response.ok()?.json()?;
        crate::redact::register(&granted.access_token);
        Ok(Token { value: granted.access_token, expires: asked + Duration::from_secs(granted.expires_in) })
    }
}
