//! Temporary credentials from STS `AssumeRole` (LiteLLM's `aws_role_name` +
//! `aws_session_name`).
//!
//! [`AssumeRole`] calls the STS query API —
//! `POST {endpoint}/` with the form
//! `Action=AssumeRole&Version=2011-06-15&RoleArn=…&RoleSessionName=…&DurationSeconds=…`,
//! SigV4-signed with the source credentials, service name `sts` — and reads
//! `AccessKeyId`, `SecretAccessKey` and `SessionToken` from the XML answer.
//! The credentials are cached and reused until five minutes before they
//! expire (the requested duration, counted from the request); one refresh
//! runs at a time, and concurrent callers wait for it. Errors name STS's
//! error code and message, never a key, a secret or a token.

use super::sigv4::{self, AwsCredentials};
use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::transport::HttpClient;
use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body_util::BodyExt;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The default lifetime asked for (STS's own default).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3600);

/// How long before expiry the credentials are refreshed.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long an STS call may take.
const STS_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a role to assume.
#[derive(Clone)]
pub struct AssumeRoleConfig {
    /// The role ARN (`arn:aws:iam::123456789012:role/bedrock`).
    pub role_arn: String,
    /// The role session name.
    pub session_name: String,
    /// The credentials that assume the role.
    pub source: AwsCredentials,
    /// The region of the STS endpoint and of the signature.
    pub region: String,
    /// The STS endpoint (default `https://sts.{region}.amazonaws.com`).
    pub endpoint: Option<String>,
    /// The lifetime asked for.
    pub duration: Duration,
    /// The HTTP client (defaults to the process-wide one).
    pub client: Option<HttpClient>,
}

impl std::fmt::Debug for AssumeRoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRoleConfig")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

struct Cached {
    credentials: AwsCredentials,
    refresh_at: Instant,
}

/// Assumed-role credentials, fetched from STS and cached (see the [module docs](self)).
pub struct AssumeRole {
    config: AssumeRoleConfig,
    client: HttpClient,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRole")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn sts_error(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Authentication, message)
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    sigv4::uri_encode(s, false)
}

/// The text of the first `<name>…</name>` element, XML entities decoded.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let raw = xml[start..start + len].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

impl AssumeRole {
    /// Builds the source. Fails on an empty role ARN or session name.
    pub fn new(config: AssumeRoleConfig) -> Result<Self, Error> {
        if config.role_arn.is_empty() || config.session_name.is_empty() {
            return Err(Error::bad_request(
                "assuming a role needs a role ARN (aws_role_name) and a session name (aws_session_name)",
            ));
        }
        let client = config.client.clone().unwrap_or_else(HttpClient::shared);
        Ok(AssumeRole {
            config,
            client,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The STS endpoint.
    pub fn endpoint(&self) -> String {
        self.config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.config.region))
    }

    /// Valid credentials: the cached ones, or fresh ones from STS.
    pub async fn credentials(&self) -> Result<AwsCredentials, Error> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.credentials.clone());
        }
        let asked = Instant::now();
        let credentials = self.fetch().await?;
        let lifetime = self.config.duration;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cache = Some(Cached {
            credentials: credentials.clone(),
            refresh_at: asked + lifetime - margin,
        });
        Ok(credentials)
    }

    async fn fetch(&self) -> Result<AwsCredentials, Error> {
        let c = &self.config;
        let body = format!(
            "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName={}&DurationSeconds={}",
            form_encode(&c.role_arn),
            form_encode(&c.session_name),
            c.duration.as_secs()
        );
        let uri = super::super::openai::join_uri(&self.endpoint(), "/")?;
        let mut req = http::Request::new(Bytes::from(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        sigv4::sign_request(
            &mut req,
            &c.source,
            &c.region,
            "sts",
            SystemTime::now(),
            false,
        )?;
        let mut secrets: Vec<&str> = vec![
            c.source.secret_access_key.expose(),
            c.source.access_key_id.as_str(),
        ];
        if let Some(t) = &c.source.session_token {
            secrets.push(t.expose());
        }
        let call = async {
            let resp = self.client.send(req).await?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await
                .map_err(|_| sts_error("reading the STS answer failed"))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(STS_TIMEOUT, call)
            .await
            .map_err(|_| sts_error("STS did not answer in time"))?
            .map_err(|e| sts_error(format!("could not reach STS ({})", e.message())))?;
        let xml = String::from_utf8_lossy(&body);
        if !status.is_success() {
            let code = xml_text(&xml, "Code").unwrap_or_else(|| format!("HTTP {status}"));
            let message = xml_text(&xml, "Message").unwrap_or_default();
            let detail: String = format!("{code}: {message}").chars().take(300).collect();
            return Err(Error::from_upstream(
                ErrorKind::Authentication,
                &format!("STS refused to assume the role ({detail})"),
                &secrets,
            ));
        }
        let field = |name: &str| {
            xml_text(&xml, name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| sts_error(format!("the STS answer has no {name}")))
        };
        let id = field("AccessKeyId")?;
        let secret = field("SecretAccessKey")?;
        let token = field("SessionToken")?;
        Ok(AwsCredentials::new(id, Secret::new(secret)).with_session_token(Secret::new(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_fields_and_entities() {
        let xml = "<AssumeRoleResponse><AssumeRoleResult><Credentials>\n<AccessKeyId>ASIAX</AccessKeyId>\n<SessionToken>a&amp;b/c+d=</SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>";
        assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("ASIAX"));
        assert_eq!(xml_text(xml, "SessionToken").as_deref(), Some("a&b/c+d="));
        assert_eq!(xml_text(xml, "Expiration"), None);
        assert_eq!(
            form_encode("arn:aws:iam::1:role/x y"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx%20y"
        );
    }
}
