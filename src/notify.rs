//! Slack-compatible incoming webhooks: `POST {"text": ...}` to a URL that is itself a secret,
//! so it comes from an environment variable and is never printed.

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde_json::json;

use crate::config::{HttpSettings, NotifyConfig};
use crate::error::{Interrupted, Started};
use crate::http::{Body, Client, MayHaveArrived};

pub struct Webhook {
    client: Client,
    env: String,
}

impl Webhook {
    pub fn new(config: &NotifyConfig, http: &HttpSettings) -> Result<Webhook> {
        let env = &config.webhook_env;
        let url = crate::redact::secret_from_env(env)
            .ok_or_else(|| anyhow!("{env} is not set: export it with the incoming webhook URL (rollout.yaml names it in notify.webhook_env)"))?;
        if let Ok(parsed) = url::Url::parse(&url) {
            crate::redact::register(parsed.as_str());
            crate::redact::register(&crate::http::shown(&parsed));
        }
        let client = Client::new("the webhook", &url, http, config.allow_insecure_http, None)
            .map_err(|e| anyhow!("the webhook in {env} is unusable: {}", crate::redact::scrub(&e.to_string())))?;
        crate::redact::register(&client.base());
        Ok(Webhook { client, env: env.clone() })
    }

    /// Where messages go, without the secret URL.
    pub fn describe(&self) -> String {
        format!("the webhook in {}", self.env)
    }

    /// Post `text` once. A post that may have been received (no whole answer, or a 5xx) fails
    /// with `Started`: it is never posted again. Errors are scrubbed of the secret URL.
    pub fn post(&self, text: &str) -> Result<()> {
        let answer = self.client.send_once(Method::POST, "", &[], Some(&Body::Json(json!({ "text": text }))), &[]);
        let server_error = matches!(&answer, Ok(response) if response.status.is_server_error());
        let may_have_arrived = server_error || matches!(&answer, Err(error) if error.is::<MayHaveArrived>());
        answer.and_then(|r| r.ok()).map(drop).map_err(|e| {
            // Ctrl-C during a wait stays an interruption (exit 130), not a failed post.
            if let Some(Interrupted(when)) = e.chain().find_map(|cause| cause.downcast_ref::<Interrupted>()) {
                return Interrupted(crate::redact::scrub(when).into_owned()).into();
            }
            let said = crate::redact::scrub(&format!("{e:#}")).into_owned();
            let said = if server_error {
                format!("{said}; the message may have been received, so it is not posted again")
            } else {
                said
            };
            if may_have_arrived { Started(anyhow!(said)).into() } else { anyhow!(said) }
        })
    }
}
