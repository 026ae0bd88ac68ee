//! Per-request cache controls (the body's `cache` object) and who may use them.

use crate::error::{Error, ErrorKind};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The longest TTL a request may ask for (one year).
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The per-request controls of LiteLLM's `cache` object:
/// `{"no-cache": true}`, `{"no-store": true}`, `{"ttl": 300}`,
/// `{"s-maxage": 600}`, `{"namespace": "team-a"}`, `{"use-cache": true}`.
///
/// ```
/// use tollgate::cache::CacheControls;
/// use std::time::Duration;
///
/// let c = CacheControls::parse(&serde_json::json!({"ttl": 60, "no-cache": true})).unwrap();
/// assert_eq!(c.ttl, Some(Duration::from_secs(60)));
/// assert!(c.no_cache && !c.no_store);
/// assert!(CacheControls::parse(&serde_json::json!({"ttl": "soon"})).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheControls {
    /// Do not read the cache (still store the fresh answer).
    pub no_cache: bool,
    /// Do not store the answer.
    pub no_store: bool,
    /// Store the answer for this long instead of the default.
    pub ttl: Option<Duration>,
    /// Accept a cached answer only if it is at most this old.
    pub s_maxage: Option<Duration>,
    /// Read and write under this namespace (a separate cache).
    pub namespace: Option<String>,
    /// Opt in (`true`) when the cache is `default_off`; `false` opts out.
    pub use_cache: Option<bool>,
}

/// The control names a request used, in LiteLLM's spelling.
pub(crate) fn names(value: &Value) -> impl Iterator<Item = &str> {
    value
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys().map(String::as_str))
}

fn bad(message: String) -> Error {
    Error::bad_request(message).with_param("cache")
}

fn flag(key: &str, v: &Value) -> Result<bool, Error> {
    v.as_bool()
        .ok_or_else(|| bad(format!("`cache.{key}` must be true or false")))
}

fn seconds(key: &str, v: &Value) -> Result<Duration, Error> {
    let secs = v
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| {
            bad(format!(
                "`cache.{key}` must be a non-negative number of seconds"
            ))
        })?;
    Ok(Duration::from_secs_f64(secs.min(MAX_TTL.as_secs_f64())))
}

impl CacheControls {
    /// Reads a `cache` object. Unknown keys are ignored (as LiteLLM does);
    /// a known key with a wrong type, or a `cache` that is not an object, is
    /// a 400 naming the key.
    pub fn parse(value: &Value) -> Result<CacheControls, Error> {
        let Some(map) = value.as_object() else {
            return Err(bad(
                "`cache` must be an object such as {\"no-cache\": true}".to_owned(),
            ));
        };
        let mut c = CacheControls::default();
        for (k, v) in map {
            match k.as_str() {
                "no-cache" => c.no_cache = flag(k, v)?,
                "no-store" => c.no_store = flag(k, v)?,
                "use-cache" => c.use_cache = Some(flag(k, v)?),
                "ttl" => c.ttl = Some(seconds(k, v)?),
                "s-maxage" | "s-max-age" => c.s_maxage = Some(seconds(k, v)?),
                "namespace" => {
                    let ns = v.as_str().filter(|s| s.len() <= 256).ok_or_else(|| {
                        bad("`cache.namespace` must be a string of at most 256 bytes".to_owned())
                    })?;
                    c.namespace = Some(ns.to_owned());
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

/// The cache-control names a key's `allowed_cache_controls` may list
/// (`*`: every control).
pub const CACHE_CONTROLS: &[&str] = &[
    "no-cache",
    "no-store",
    "ttl",
    "s-maxage",
    "s-max-age",
    "namespace",
    "use-cache",
    "*",
];

/// Which per-request cache controls a caller may use. Read from the request
/// extensions (the key-auth layer puts it there from the key's and team's
/// metadata); absent means every control is allowed.
///
/// A request that uses a control it may not gets a 403, as in LiteLLM
/// (`allowed_cache_controls` in key metadata).
///
/// ```
/// use tollgate::cache::CacheControlsPolicy;
///
/// let p = CacheControlsPolicy::only(["no-cache"]);
/// assert!(p.allows("no-cache"));
/// assert!(!p.allows("ttl"));
/// assert!(CacheControlsPolicy::allow_all().allows("ttl"));
/// assert!(!CacheControlsPolicy::deny_all().allows("no-store"));
/// // LiteLLM treats an empty `allowed_cache_controls` list as "no restriction".
/// assert!(CacheControlsPolicy::from_litellm(&[]).allows("ttl"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheControlsPolicy {
    /// `None`: everything; `Some(list)`: only these names.
    allowed: Option<Arc<[String]>>,
}

impl CacheControlsPolicy {
    /// Every control is allowed (the default).
    pub fn allow_all() -> Self {
        CacheControlsPolicy { allowed: None }
    }

    /// No control is allowed.
    pub fn deny_all() -> Self {
        CacheControlsPolicy {
            allowed: Some(Arc::from(Vec::new())),
        }
    }

    /// Only the named controls (`no-cache`, `no-store`, `ttl`, `s-maxage`,
    /// `namespace`, `use-cache`) are allowed.
    pub fn only<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CacheControlsPolicy {
            allowed: Some(names.into_iter().map(Into::into).collect()),
        }
    }

    /// From LiteLLM's `allowed_cache_controls` metadata: an empty list means
    /// no restriction.
    pub fn from_litellm(list: &[String]) -> Self {
        CacheControlsPolicy::from_shared(list.iter().cloned().collect())
    }

    /// Like [`from_litellm`](Self::from_litellm), sharing the list instead
    /// of copying it (a key's list, attached to each of its requests).
    pub fn from_shared(list: Arc<[String]>) -> Self {
        CacheControlsPolicy {
            allowed: (!list.is_empty()).then_some(list),
        }
    }

    /// Whether the control `name` is allowed.
    pub fn allows(&self, name: &str) -> bool {
        match &self.allowed {
            None => true,
            Some(list) => list
                .iter()
                .any(|n| n == name || (name == "s-max-age" && n == "s-maxage") || n == "*"),
        }
    }

    /// Checks every control a request used: a 403 for the first one denied.
    pub(crate) fn check(&self, value: &Value) -> Result<(), Error> {
        if self.allowed.is_none() {
            return Ok(());
        }
        match names(value).find(|n| !self.allows(n)) {
            None => Ok(()),
            Some(denied) => {
                let shown: String = denied.chars().take(64).collect();
                Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "not allowed to set `{shown}` as a cache control; ask an admin to change this key's permissions"
                    ),
                )
                .with_param("cache"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_control_parses() {
        let c = CacheControls::parse(&json!({
            "no-cache": true, "no-store": false, "ttl": 1.5, "s-maxage": 10,
            "namespace": "ns", "use-cache": true, "future-control": 1
        }))
        .unwrap();
        assert_eq!(
            c,
            CacheControls {
                no_cache: true,
                no_store: false,
                ttl: Some(Duration::from_millis(1500)),
                s_maxage: Some(Duration::from_secs(10)),
                namespace: Some("ns".into()),
                use_cache: Some(true),
            }
        );
        assert_eq!(
            CacheControls::parse(&json!({"s-max-age": 3}))
                .unwrap()
                .s_maxage,
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            CacheControls::parse(&json!({"ttl": 1e300})).unwrap().ttl,
            Some(MAX_TTL)
        );
    }

    #[test]
    fn wrong_types_are_400_naming_the_control() {
        for (v, key) in [
            (json!({"no-cache": "yes"}), "no-cache"),
            (json!({"ttl": -1}), "ttl"),
            (json!({"s-maxage": null}), "s-maxage"),
            (json!({"namespace": 5}), "namespace"),
            (json!(true), "cache"),
        ] {
            let e = CacheControls::parse(&v).unwrap_err();
            assert_eq!(e.status().as_u16(), 400);
            assert_eq!(e.param(), Some("cache"));
            assert!(e.message().contains(key), "{}", e.message());
        }
    }

    #[test]
    fn policy_denies_with_403() {
        let p = CacheControlsPolicy::only(["ttl"]);
        assert!(p.check(&json!({"ttl": 3})).is_ok());
        let e = p.check(&json!({"ttl": 3, "no-cache": true})).unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
        assert!(e.message().contains("`no-cache`"), "{}", e.message());
        assert!(CacheControlsPolicy::deny_all().check(&json!({})).is_ok());
        assert!(CacheControlsPolicy::only(["*"]).allows("anything"));
    }
}
