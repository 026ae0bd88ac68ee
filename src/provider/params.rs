//! `drop_params`: what happens to OpenAI parameters a provider does not support.
//!
//! LiteLLM's rule, which tollgate follows: a parameter the provider cannot
//! honour is a 400 `UnsupportedParams` error naming it — unless `drop_params`
//! is on (globally, per deployment or per request), then it is left out.
//! `additional_drop_params` names parameters to leave out even when the
//! provider supports them.
//!
//! ```
//! use tollgate::provider::DropParams;
//! use tollgate::ChatRequest;
//!
//! let req = ChatRequest::from_json(br#"{"model":"m","messages":[],"logit_bias":{"1":2},"temperature":0.1}"#).unwrap();
//! let strict = DropParams::default();
//! let err = strict.check(req.body(), &["temperature"], "anthropic").unwrap_err();
//! assert_eq!(err.param(), Some("logit_bias"));
//! let lenient = DropParams { drop: true, additional: vec![] };
//! assert_eq!(lenient.check(req.body(), &["temperature"], "anthropic").unwrap(), vec!["logit_bias"]);
//! ```

use crate::error::{Error, ErrorKind};
use crate::types::ChatRequestBody;

/// Parameters that every leaf handles itself (never "unsupported").
const ALWAYS_HANDLED: &[&str] = &["stream", "stream_options"];

/// The drop policy of a deployment (and, merged, of a request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropParams {
    /// Leave out unsupported parameters instead of failing.
    pub drop: bool,
    /// Parameters to always leave out.
    pub additional: Vec<String>,
}

impl DropParams {
    /// The policy for one request: the request's `drop_params` overrides the
    /// deployment's; its `additional_drop_params` add to the deployment's.
    pub fn for_request(&self, body: &ChatRequestBody) -> DropParams {
        let mut p = self.clone();
        if let Some(d) = body.drop_params {
            p.drop = d;
        }
        if let Some(extra) = &body.additional_drop_params {
            for name in extra {
                if !p.additional.contains(name) {
                    p.additional.push(name.clone());
                }
            }
        }
        p
    }

    /// Checks the OpenAI parameters set in `body` against those `provider`
    /// supports. Returns the parameters to leave out, or the error for the first
    /// unsupported one when dropping is off. The request's own
    /// `drop_params`/`additional_drop_params` are taken into account.
    pub fn check(
        &self,
        body: &ChatRequestBody,
        supported: &[&str],
        provider: &str,
    ) -> Result<Vec<&'static str>, Error> {
        let policy = self.for_request(body);
        let mut dropped = Vec::new();
        let mut unsupported = Vec::new();
        for &name in ChatRequestBody::OPTIONAL_FIELDS {
            if !body.has_field(name) {
                continue;
            }
            if policy.additional.iter().any(|a| a == name) {
                dropped.push(name);
            } else if !supported.contains(&name) && !ALWAYS_HANDLED.contains(&name) {
                if policy.drop {
                    dropped.push(name);
                } else {
                    unsupported.push(name);
                }
            }
        }
        if let Some(first) = unsupported.first() {
            return Err(Error::new(
                ErrorKind::UnsupportedParams,
                format!(
                    "{provider} does not support the parameter{} {}. Remove {}, or set `drop_params: true` \
                     (in litellm_settings, the deployment's litellm_params, or the request) to drop unsupported parameters.",
                    if unsupported.len() > 1 { "s" } else { "" },
                    unsupported
                        .iter()
                        .map(|u| format!("`{u}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if unsupported.len() > 1 { "them" } else { "it" },
                ),
            )
            .with_param(*first));
        }
        Ok(dropped)
    }

    /// Names of unknown (non-OpenAI) body fields to leave out per `additional`.
    pub fn drops_extra(&self, body: &ChatRequestBody, name: &str) -> bool {
        self.additional.iter().any(|a| a == name)
            || body
                .additional_drop_params
                .as_ref()
                .is_some_and(|v| v.iter().any(|a| a == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> ChatRequestBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn request_overrides_and_additional() {
        let b = body(r#"{"model":"m","messages":[],"seed":1,"n":2,"drop_params":true}"#);
        let strict = DropParams::default();
        assert_eq!(strict.check(&b, &["n"], "p").unwrap(), vec!["seed"]);
        let b =
            body(r#"{"model":"m","messages":[],"seed":1,"n":2,"additional_drop_params":["n"]}"#);
        let err = strict.check(&b, &["n"], "p").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsupportedParams);
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.param(), Some("seed"));
        let b = body(
            r#"{"model":"m","messages":[],"n":2,"stream":true,"additional_drop_params":["n"]}"#,
        );
        assert_eq!(strict.check(&b, &["n"], "p").unwrap(), vec!["n"]);
        let deployment = DropParams {
            drop: true,
            additional: vec![],
        };
        let b = body(r#"{"model":"m","messages":[],"seed":1,"drop_params":false}"#);
        assert!(
            deployment.check(&b, &[], "p").is_err(),
            "the request's false wins"
        );
    }
}
