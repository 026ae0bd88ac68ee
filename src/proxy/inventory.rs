//! Every HTTP route the proxy serves, and who may call it.
//!
//! [`ROUTES`] is the one list: [`ProxyService`](super::ProxyService) answers
//! 404 for any path it does not declare before a handler sees the request, so
//! a handler cannot expose a route by accident, and `tests/route_inventory.rs`
//! calls every declared route without a key, with a plain virtual key and with
//! the master key, and checks the answer against [`Access`].
//!
//! ```
//! use tollgate::proxy::inventory::{self, Access};
//!
//! assert_eq!(inventory::find("/v1/chat/completions").unwrap().access, Access::Key);
//! assert_eq!(inventory::find("/key/sk-abc/regenerate").unwrap().access, Access::Admin);
//! assert_eq!(inventory::find("/health/liveliness").unwrap().access, Access::Public);
//! assert!(inventory::find("/admin").is_none());
//! ```

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness and readiness probes, the root.
    Public,
    /// Any valid key: the master key, or a virtual key within its own scope
    /// (its models, its own key, team and spend information; outside it the
    /// handler answers 403 or 404).
    Key,
    /// The master key or a `proxy_admin` user's key. A plain virtual key gets
    /// 403. (Keys of users with a role — `internal_user`,
    /// `proxy_admin_viewer` — may read or manage what their role allows
    /// within their own scope; see the management API.)
    Admin,
    /// `/metrics`: public unless `litellm_settings.require_auth_for_metrics_endpoint`
    /// is true, then [`Access::Admin`].
    Metrics,
}

/// One route.
#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    /// The methods it answers (others get 405).
    pub methods: &'static [&'static str],
    /// The path; `{name}` matches one segment, `{name*}` the rest of the path.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Served only when the proxy has a database (the management API).
    pub database: bool,
}

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const GET_POST: &[&str] = &["GET", "POST"];

const fn route(methods: &'static [&'static str], path: &'static str, access: Access) -> RouteSpec {
    RouteSpec {
        methods,
        path,
        access,
        database: false,
    }
}

const fn managed(
    methods: &'static [&'static str],
    path: &'static str,
    access: Access,
) -> RouteSpec {
    RouteSpec {
        methods,
        path,
        access,
        database: true,
    }
}

use Access::{Admin, Key, Metrics, Public};

/// Every route the proxy serves.
pub const ROUTES: &[RouteSpec] = &[
    // Probes and the root.
    route(GET, "/", Public),
    route(GET, "/health/liveliness", Public),
    route(GET, "/health/liveness", Public),
    route(GET, "/health/readiness", Public),
    route(GET, "/metrics", Metrics),
    // The OpenAI API (with and without the /v1 prefix, as LiteLLM).
    route(POST, "/v1/chat/completions", Key),
    route(POST, "/chat/completions", Key),
    route(POST, "/v1/embeddings", Key),
    route(POST, "/embeddings", Key),
    route(GET, "/v1/models", Key),
    route(GET, "/models", Key),
    route(GET, "/v1/models/{model*}", Key),
    route(GET, "/models/{model*}", Key),
    // Anthropic's Messages API.
    route(POST, "/v1/messages", Key),
    route(POST, "/messages", Key),
    route(POST, "/v1/messages/count_tokens", Key),
    route(POST, "/messages/count_tokens", Key),
    // LiteLLM's helpers.
    route(GET, "/health", Key),
    route(GET, "/model/info", Key),
    route(GET, "/v1/model/info", Key),
    route(POST, "/utils/token_counter", Key),
    route(POST, "/spend/calculate", Key),
    // Response cache administration.
    route(GET, "/cache/ping", Admin),
    route(POST, "/cache/delete", Admin),
    route(POST, "/cache/flushall", Admin),
    // Management API: keys.
    managed(POST, "/key/generate", Admin),
    managed(POST, "/key/update", Admin),
    managed(POST, "/key/delete", Admin),
    managed(POST, "/key/block", Admin),
    managed(POST, "/key/unblock", Admin),
    managed(POST, "/key/regenerate", Admin),
    managed(POST, "/key/{key}/regenerate", Admin),
    managed(POST, "/key/{key}/reset_spend", Admin),
    managed(GET, "/key/info", Key),
    managed(GET, "/key/list", Admin),
    // Teams.
    managed(POST, "/team/new", Admin),
    managed(POST, "/team/update", Admin),
    managed(POST, "/team/delete", Admin),
    managed(POST, "/team/block", Admin),
    managed(POST, "/team/unblock", Admin),
    managed(POST, "/team/member_add", Admin),
    managed(POST, "/team/member_delete", Admin),
    managed(GET, "/team/info", Key),
    managed(GET, "/team/list", Admin),
    // Users.
    managed(POST, "/user/new", Admin),
    managed(POST, "/user/update", Admin),
    managed(POST, "/user/delete", Admin),
    managed(GET, "/user/info", Admin),
    managed(GET, "/user/list", Admin),
    // Customers (end users), under both of LiteLLM's names.
    managed(POST, "/customer/new", Admin),
    managed(POST, "/customer/update", Admin),
    managed(POST, "/customer/delete", Admin),
    managed(POST, "/customer/block", Admin),
    managed(POST, "/customer/unblock", Admin),
    managed(GET, "/customer/info", Admin),
    managed(GET, "/customer/list", Admin),
    managed(POST, "/end_user/new", Admin),
    managed(POST, "/end_user/update", Admin),
    managed(POST, "/end_user/delete", Admin),
    managed(POST, "/end_user/block", Admin),
    managed(POST, "/end_user/unblock", Admin),
    managed(GET, "/end_user/info", Admin),
    managed(GET, "/end_user/list", Admin),
    // Spend.
    managed(GET, "/spend/logs", Key),
    managed(GET, "/global/spend", Admin),
    managed(GET, "/global/spend/keys", Admin),
    managed(GET, "/global/spend/teams", Admin),
    managed(GET, "/global/spend/models", Admin),
    managed(GET_POST, "/global/spend/end_users", Admin),
    managed(POST, "/global/spend/reset", Admin),
];

/// Whether `path` matches `pattern` (see [`RouteSpec::path`]).
fn matches(pattern: &str, path: &str) -> bool {
    let mut pat = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return true,
            (Some(p), Some(g)) if p.starts_with('{') && p.ends_with("*}") => {
                // The rest of the path, at least one non-empty character.
                return !g.is_empty() || got.next().is_some_and(|s| !s.is_empty());
            }
            (Some(p), Some(g)) if p.starts_with('{') && p.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(p), Some(g)) if p == g => {}
            _ => return false,
        }
    }
}

/// The declared route for `path` (a trailing `/` is ignored), if any.
pub fn find(path: &str) -> Option<&'static RouteSpec> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let path = if path.is_empty() { "/" } else { path };
    // Most routes are plain paths: compared whole before any pattern is split.
    ROUTES
        .iter()
        .find(|r| r.path == path || (r.path.contains('{') && matches(r.path, path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_segment_or_the_rest() {
        assert!(matches("/key/{key}/regenerate", "/key/sk-1/regenerate"));
        assert!(!matches("/key/{key}/regenerate", "/key//regenerate"));
        assert!(!matches("/key/{key}/regenerate", "/key/a/b/regenerate"));
        assert!(matches("/v1/models/{model*}", "/v1/models/openai/gpt-4o"));
        assert!(!matches("/v1/models/{model*}", "/v1/models/"));
        assert!(!matches("/v1/models", "/v1/models/x"));
    }

    #[test]
    fn trailing_slashes_and_unknown_paths() {
        assert_eq!(find("/v1/models/").unwrap().path, "/v1/models");
        assert_eq!(find("/").unwrap().path, "/");
        assert!(find("/v2/chat/completions").is_none());
        assert!(find("/customer/whatever").is_none());
        assert!(find("/key/a/b/c").is_none());
    }

    #[test]
    fn every_declared_route_is_one_the_handlers_serve() {
        for r in ROUTES {
            let sample = r.path.replace("{key}", "sk-x").replace("{model*}", "m");
            let served = match r.path {
                "/" | "/health/liveliness" | "/health/liveness" | "/health/readiness"
                | "/metrics" => true,
                _ if r.database => crate::store::ManagementApi::is_route(&sample),
                _ => {
                    super::super::routes::is_route(&sample)
                        || crate::edge::Route::of(&sample).is_some()
                }
            };
            assert!(served, "{} is declared but no handler serves it", r.path);
            assert_eq!(find(&sample).map(|f| f.path), Some(r.path), "{sample}");
        }
    }
}
