//! `gemini/…` (Gemini API) and `vertex_ai/…` (Gemini and Claude models on Vertex AI).
//!
//! Gemini, as LiteLLM: the key from `api_key`, else `GEMINI_API_KEY`, else
//! `GOOGLE_API_KEY`; the base from `api_base` (or `base_url`), else
//! `GEMINI_API_BASE`, else `https://generativelanguage.googleapis.com/v1beta`
//! (calls go to `{api_base}/models/{model}:…`).
//!
//! Vertex AI, as LiteLLM: project from `vertex_project` / `vertex_ai_project`,
//! else `VERTEXAI_PROJECT`, else the credentials' `project_id`, else
//! `GOOGLE_CLOUD_PROJECT` (as Google's default credentials read it); location from
//! `vertex_location` / `vertex_ai_location`, else `VERTEXAI_LOCATION` /
//! `VERTEX_LOCATION`, else `us-central1`; credentials from
//! `vertex_credentials` / `vertex_ai_credentials` (a path to a JSON file, or
//! the JSON itself), else `VERTEXAI_CREDENTIALS`, else the file named by
//! `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's application-default file,
//! else the metadata server (`GCE_METADATA_HOST` overrides its address).
//! `api_base` is the whole URL up to `:generateContent`.
//!
//! `vertex_ai/claude-…` models are Claude on Vertex AI (the Anthropic leaf's
//! translation sent to `…/publishers/anthropic/models/{model}:rawPredict`,
//! same settings; `api_base` is then the whole URL up to `:rawPredict`).
//!
//! `fetch_image_urls: true` (a tollgate setting) lets the leaf download
//! `http(s)` image URLs and send them inline (see
//! [`ImageUrls`](crate::provider::gemini::ImageUrls)).

use super::LeafCtx;
use crate::Secret;
use crate::provider::ProviderKind;
use crate::provider::anthropic::{VertexClaude, VertexClaudeConfig};
use crate::provider::gemini::{
    DEFAULT_LOCATION, FetchPolicy, GEMINI_API_BASE, Gemini, GeminiConfig, GoogleAuth,
    GoogleCredentials, ImageUrls, METADATA_BASE, VertexAi, VertexConfig,
};
use crate::proxy::config::ConfigError;
use crate::router::Deployment;
use serde_json::Value;

/// Builds a deployment for `gemini/…` or `vertex_ai/…`.
pub(super) fn build(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    match ctx.kind {
        ProviderKind::VertexAi => vertex(ctx),
        _ => gemini(ctx),
    }
}

fn image_urls(ctx: &LeafCtx<'_>, default: ImageUrls) -> Result<ImageUrls, ConfigError> {
    let fetch = match ctx.entry.litellm_params.other.get("fetch_image_urls") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(ctx.error("`fetch_image_urls` must be true or false")),
    };
    Ok(if fetch {
        ImageUrls::Fetch(FetchPolicy::default())
    } else {
        default
    })
}

fn gemini(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let p = &ctx.entry.litellm_params;
    let base = p
        .api_base
        .clone()
        .or_else(|| p.base_url.clone())
        .or_else(|| ctx.env_any(&["GEMINI_API_BASE"]))
        .unwrap_or_else(|| GEMINI_API_BASE.to_owned());
    let key = p.api_key.clone().or_else(|| {
        ctx.env_any(&["GEMINI_API_KEY", "GOOGLE_API_KEY"])
            .map(Secret::new)
    });
    if key.is_none() {
        let msg = format!(
            "{} has no API key (set litellm_params.api_key or GEMINI_API_KEY); its calls will be refused upstream",
            ctx.where_
        );
        ctx.warnings.push(msg);
    }
    let info = ctx.info("gemini", Some(&base));
    let cfg = GeminiConfig {
        model: ctx.upstream_model.clone(),
        api_base: base,
        api_key: key,
        extra_headers: ctx.headers()?,
        params: ctx.params(),
        drop: ctx.drop.clone(),
        image_urls: image_urls(ctx, ImageUrls::Refuse)?,
        timeouts: ctx.timeouts,
        info: Some(info.clone()),
        client: Some(ctx.client.clone()),
    };
    let leaf = Gemini::new(cfg).map_err(|e| ctx.error(e.message()))?;
    Ok(Deployment::new(info, leaf.clone()).with_embeddings(leaf))
}

/// Vertex AI partner-model prefixes this version does not serve.
const PARTNER_PREFIXES: &[&str] = &[
    "meta/",
    "mistral",
    "codestral",
    "jamba",
    "llama",
    "deepseek",
    "qwen",
    "openai/",
    "gpt-oss",
];

/// The project, location, `api_base` and token source of a Vertex AI deployment.
struct VertexPlace {
    project: Option<String>,
    location: String,
    api_base: Option<String>,
    tokens: std::sync::Arc<dyn crate::provider::gemini::TokenSource>,
}

fn vertex_place(ctx: &LeafCtx<'_>) -> Result<VertexPlace, ConfigError> {
    let param = |keys: &[&str]| keys.iter().find_map(|k| ctx.param_str(k));
    let creds = credentials(ctx)?;
    let project = param(&["vertex_project", "vertex_ai_project"])
        .or_else(|| ctx.env_any(&["VERTEXAI_PROJECT"]))
        .or_else(|| creds.project_id().map(str::to_owned))
        .or_else(|| ctx.env_any(&["GOOGLE_CLOUD_PROJECT"]));
    let location = param(&["vertex_location", "vertex_ai_location"])
        .or_else(|| ctx.env_any(&["VERTEXAI_LOCATION", "VERTEX_LOCATION"]))
        .unwrap_or_else(|| DEFAULT_LOCATION.to_owned());
    let p = &ctx.entry.litellm_params;
    let api_base = p.api_base.clone().or_else(|| p.base_url.clone());
    if project.is_none() && api_base.is_none() {
        return Err(ctx.error(
            "Vertex AI needs a project: set litellm_params.vertex_project or VERTEXAI_PROJECT (or use credentials with a project_id)",
        ));
    }
    let tokens = GoogleAuth::shared_source(creds, ctx.client.clone());
    Ok(VertexPlace {
        project,
        location,
        api_base,
        tokens,
    })
}

fn vertex(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let model = ctx.upstream_model.clone();
    if model.starts_with("claude") {
        return vertex_claude(ctx);
    }
    if model.contains('/') || PARTNER_PREFIXES.iter().any(|pre| model.starts_with(pre)) {
        return Err(ctx.error(format_args!(
            "only Gemini and Claude models are served on Vertex AI by this version of tollgate (not `{}`)",
            ctx.entry.litellm_params.model
        )));
    }
    let place = vertex_place(ctx)?;
    let mut cfg = VertexConfig {
        model,
        project: place.project,
        location: place.location,
        api_base: place.api_base,
        tokens: place.tokens,
        extra_headers: ctx.headers()?,
        params: ctx.params(),
        drop: ctx.drop.clone(),
        image_urls: image_urls(ctx, ImageUrls::PassUri)?,
        timeouts: ctx.timeouts,
        info: None,
        client: Some(ctx.client.clone()),
    };
    let url = cfg.model_url().map_err(|e| ctx.error(e.message()))?;
    let info = ctx.info("vertex_ai", Some(&url));
    cfg.info = Some(info.clone());
    let leaf = VertexAi::new(cfg).map_err(|e| ctx.error(e.message()))?;
    Ok(Deployment::new(info, leaf.clone()).with_embeddings(leaf))
}

/// Claude on Vertex AI: the Anthropic translation sent to `:rawPredict`.
fn vertex_claude(ctx: &mut LeafCtx<'_>) -> Result<Deployment, ConfigError> {
    let place = vertex_place(ctx)?;
    let cache_control_injection_points = super::anthropic::injection_points(ctx)?;
    let cfg = VertexClaudeConfig {
        model: ctx.upstream_model.clone(),
        project: place.project,
        location: place.location,
        api_base: place.api_base,
        tokens: place.tokens,
        extra_headers: ctx.headers()?,
        params: ctx.params(),
        default_max_tokens: None,
        cache_control_injection_points,
        drop: ctx.drop.clone(),
        timeouts: ctx.timeouts,
        info: None,
        client: Some(ctx.client.clone()),
    };
    let url = cfg.model_url().map_err(|e| ctx.error(e.message()))?;
    let info = ctx.info("vertex_ai", Some(&url));
    let cfg = VertexClaudeConfig {
        info: Some(info.clone()),
        ..cfg
    };
    let leaf = VertexClaude::new(cfg).map_err(|e| ctx.error(e.message()))?;
    Ok(Deployment::new(info, leaf))
}

/// Finds the Google credentials as LiteLLM does (see the module docs).
fn credentials(ctx: &LeafCtx<'_>) -> Result<GoogleCredentials, ConfigError> {
    let other = &ctx.entry.litellm_params.other;
    let configured = ["vertex_credentials", "vertex_ai_credentials"]
        .iter()
        .find_map(|k| other.get(*k).filter(|v| !v.is_null()));
    let text = match configured {
        Some(Value::Object(map)) => Some(Value::Object(map.clone()).to_string()),
        Some(Value::String(s)) => Some(read_credentials(ctx, s, "vertex_credentials")?),
        Some(_) => {
            return Err(
                ctx.error("`vertex_credentials` must be a path to a JSON file, or the JSON itself")
            );
        }
        None => match ctx.env_any(&["VERTEXAI_CREDENTIALS"]) {
            Some(s) => Some(read_credentials(ctx, &s, "VERTEXAI_CREDENTIALS")?),
            None => match ctx.env_any(&["GOOGLE_APPLICATION_CREDENTIALS"]) {
                Some(path) => Some(read_credentials(
                    ctx,
                    &path,
                    "GOOGLE_APPLICATION_CREDENTIALS",
                )?),
                None => ctx.env_any(&["HOME"]).and_then(|home| {
                    let path =
                        format!("{home}/.config/gcloud/application_default_credentials.json");
                    std::fs::read_to_string(path).ok()
                }),
            },
        },
    };
    match text {
        Some(text) => GoogleCredentials::from_json(&text).map_err(|e| ctx.error(e.message())),
        None => {
            let base = ctx
                .env_any(&["GCE_METADATA_HOST"])
                .map(|h| format!("http://{h}"))
                .unwrap_or_else(|| METADATA_BASE.to_owned());
            Ok(GoogleCredentials::MetadataServer(base))
        }
    }
}

/// The credentials JSON itself, or the contents of the file it names. Errors
/// name the setting and the path, never the contents.
fn read_credentials(ctx: &LeafCtx<'_>, value: &str, setting: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim();
    if trimmed.starts_with('{') {
        return Ok(trimmed.to_owned());
    }
    std::fs::read_to_string(trimmed).map_err(|e| {
        ctx.error(format_args!(
            "`{setting}` names the file `{}`, which cannot be read: {e}",
            trimmed.chars().take(300).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::built;
    use crate::proxy::config::schema::{LITELLM_PARAMS, Support, lookup};

    fn creds_path() -> String {
        format!(
            "{}/tests/fixtures/google_test_key/TEST_ONLY_service_account.json",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    #[test]
    fn gemini_key_and_base_follow_litellm() {
        let yaml = "model_list:\n  - model_name: g\n    litellm_params: {model: gemini/gemini-2.5-flash}\n";
        let b = built(yaml, &[("GOOGLE_API_KEY", "AIza-google-0123456789")]).unwrap();
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        let info = &b.router.group("g").unwrap().deployments[0].info;
        assert_eq!(info.provider.as_ref(), "gemini");
        assert_eq!(info.model.as_ref(), "gemini/gemini-2.5-flash");
        assert_eq!(
            info.api_base.as_deref(),
            Some("https://generativelanguage.googleapis.com/v1beta")
        );
        let b = built(yaml, &[("GEMINI_API_BASE", "http://10.0.0.2:9000/v1beta")]).unwrap();
        assert_eq!(b.warnings.len(), 1);
        assert!(
            b.warnings[0].contains("GEMINI_API_KEY"),
            "{}",
            b.warnings[0]
        );
        assert_eq!(
            b.router.group("g").unwrap().deployments[0]
                .info
                .api_base
                .as_deref(),
            Some("http://10.0.0.2:9000/v1beta")
        );
        assert!(
            b.router.group("g").unwrap().deployments[0]
                .embeddings
                .is_some()
        );
        let e = built(
            "model_list:\n  - model_name: g\n    litellm_params: {model: gemini/m, api_key: k, fetch_image_urls: maybe}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("fetch_image_urls"), "{e}");
        assert!(
            built(
                "model_list:\n  - model_name: g\n    litellm_params: {model: gemini/m, api_key: k, fetch_image_urls: true}\n",
                &[],
            )
            .is_ok()
        );
    }

    #[test]
    fn vertex_project_location_and_credentials() {
        let yaml = format!(
            "model_list:\n  - model_name: v\n    litellm_params: {{model: vertex_ai/gemini-2.5-pro, vertex_credentials: '{}', vertex_location: europe-west4}}\n",
            creds_path()
        );
        let b = built(&yaml, &[]).unwrap();
        let d = &b.router.group("v").unwrap().deployments[0];
        assert_eq!(d.info.provider.as_ref(), "vertex_ai");
        // The project comes from the credentials' project_id.
        assert_eq!(
            d.info.api_base.as_deref(),
            Some(
                "https://europe-west4-aiplatform.googleapis.com/v1/projects/tollgate-test-project/locations/europe-west4/publishers/google/models/gemini-2.5-pro"
            )
        );
        // Environment: VERTEXAI_PROJECT, VERTEXAI_LOCATION, GOOGLE_APPLICATION_CREDENTIALS.
        let yaml = "model_list:\n  - model_name: v\n    litellm_params: {model: vertex_ai/gemini-2.0-flash}\n";
        let path = creds_path();
        let b = built(
            yaml,
            &[
                ("GOOGLE_APPLICATION_CREDENTIALS", path.as_str()),
                ("VERTEXAI_PROJECT", "other-project"),
                ("VERTEXAI_LOCATION", "global"),
            ],
        )
        .unwrap();
        assert_eq!(
            b.router.group("v").unwrap().deployments[0]
                .info
                .api_base
                .as_deref(),
            Some(
                "https://aiplatform.googleapis.com/v1/projects/other-project/locations/global/publishers/google/models/gemini-2.0-flash"
            )
        );
        // The JSON itself works too, as a string or a mapping.
        let json = std::fs::read_to_string(creds_path()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let yaml = format!(
            "model_list:\n  - model_name: v\n    litellm_params:\n      model: vertex_ai/gemini-2.0-flash\n      vertex_ai_project: p1\n      vertex_credentials: {}\n",
            value
        );
        let b = built(&yaml, &[]).unwrap();
        assert!(
            b.router.group("v").unwrap().deployments[0]
                .info
                .api_base
                .as_deref()
                .unwrap()
                .contains("/projects/p1/locations/us-central1/")
        );
        // The settings are tollgate's, never forwarded as body parameters.
        for key in [
            "vertex_project",
            "vertex_location",
            "vertex_credentials",
            "vertex_ai_project",
            "vertex_ai_location",
            "vertex_ai_credentials",
            "fetch_image_urls",
        ] {
            assert_eq!(lookup(LITELLM_PARAMS, key), Some(Support::Yes), "{key}");
        }
    }

    #[test]
    fn vertex_claude_uses_the_anthropic_publisher() {
        let yaml = format!(
            "model_list:\n  - model_name: c\n    litellm_params: {{model: vertex_ai/claude-sonnet-4@20250514, vertex_credentials: '{}', vertex_location: us-east5, cache_control_injection_points: [{{location: message, role: system}}]}}\n  - model_name: g\n    litellm_params: {{model: vertex_ai/claude-3-5-haiku@20241022, vertex_project: p2, vertex_location: global, vertex_credentials: '{}'}}\n",
            creds_path(),
            creds_path()
        );
        let b = built(&yaml, &[]).unwrap();
        let d = &b.router.group("c").unwrap().deployments[0];
        assert_eq!(d.info.provider.as_ref(), "vertex_ai");
        assert_eq!(d.info.model.as_ref(), "vertex_ai/claude-sonnet-4@20250514");
        assert_eq!(
            d.info.api_base.as_deref(),
            Some(
                "https://us-east5-aiplatform.googleapis.com/v1/projects/tollgate-test-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514"
            )
        );
        assert!(d.embeddings.is_none());
        assert_eq!(
            b.router.group("g").unwrap().deployments[0]
                .info
                .api_base
                .as_deref(),
            Some(
                "https://aiplatform.googleapis.com/v1/projects/p2/locations/global/publishers/anthropic/models/claude-3-5-haiku@20241022"
            )
        );
        let e = built(
            "model_list:\n  - model_name: c\n    litellm_params: {model: vertex_ai/claude-sonnet-4@20250514, vertex_project: p, cache_control_injection_points: 3}\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.0.contains("cache_control_injection_points"), "{e}");
    }

    #[test]
    fn vertex_errors_are_clear() {
        let err = |yaml: &str, env: &[(&str, &str)]| built(yaml, env).err().unwrap().0;
        let e = err(
            "model_list:\n  - model_name: c\n    litellm_params: {model: vertex_ai/meta/llama-3.1-405b-instruct-maas, vertex_project: p}\n",
            &[],
        );
        assert!(e.contains("only Gemini and Claude models"), "{e}");
        // No credentials anywhere (the metadata server would be asked) and no project.
        let e = err(
            "model_list:\n  - model_name: v\n    litellm_params: {model: vertex_ai/gemini-2.0-flash}\n",
            &[],
        );
        assert!(e.contains("needs a project"), "{e}");
        let e = err(
            "model_list:\n  - model_name: v\n    litellm_params: {model: vertex_ai/gemini-2.0-flash, vertex_project: p, vertex_credentials: /nonexistent/sa.json}\n",
            &[],
        );
        assert!(e.contains("/nonexistent/sa.json"), "{e}");
        let e = err(
            "model_list:\n  - model_name: v\n    litellm_params: {model: vertex_ai/gemini-2.0-flash, vertex_project: p, vertex_credentials: '{\"type\": \"service_account\", \"private_key\": \"secret-material\"}'}\n",
            &[],
        );
        assert!(e.contains("client_email"), "{e}");
        assert!(!e.contains("secret-material"), "{e}");
        let e = err(
            "model_list:\n  - model_name: v\n    litellm_params: {model: vertex_ai/gemini-2.0-flash, vertex_project: p, vertex_location: 'us-central1.evil.example/x'}\n",
            &[],
        );
        assert!(e.contains("not a Vertex AI location"), "{e}");
    }
}
