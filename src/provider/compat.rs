//! OpenAI-compatible servers: one leaf ([`super::OpenAi`]) and a table.
//!
//! Each row gives LiteLLM's provider prefix, the default base URL, the
//! environment variables LiteLLM reads for the key and base URL (the proxy
//! reads them; the library never touches the environment), and quirks.
//! Default base URLs are the providers' documented OpenAI-compatible
//! endpoints.

/// One OpenAI-compatible provider.
#[derive(Debug, PartialEq, Eq)]
pub struct CompatProvider {
    /// LiteLLM's prefix (`groq` in `groq/llama-3.1-8b-instant`).
    pub name: &'static str,
    /// Default base URL including the version segment; `None` when the user must give one.
    pub api_base: Option<&'static str>,
    /// Path appended to a user-given `api_base` that lacks it (`/v1` for vLLM and Ollama).
    pub path_suffix: Option<&'static str>,
    /// Environment variables holding the key, in order of preference.
    pub key_env: &'static [&'static str],
    /// Environment variables holding the base URL.
    pub base_env: &'static [&'static str],
    /// Whether a key is required.
    pub key_required: bool,
    /// Whether the server accepts `stream_options.include_usage`.
    pub stream_usage: bool,
    /// Prefix added to model names that lack it (Fireworks' `accounts/fireworks/models/`).
    pub model_prefix: Option<&'static str>,
}

impl CompatProvider {
    const fn hosted(
        name: &'static str,
        base: &'static str,
        key_env: &'static [&'static str],
    ) -> Self {
        CompatProvider {
            name,
            api_base: Some(base),
            path_suffix: None,
            key_env,
            base_env: &[],
            key_required: true,
            stream_usage: true,
            model_prefix: None,
        }
    }

    /// The base URL for a deployment: the configured one (with the path suffix
    /// added when missing) or the provider's default.
    pub fn resolve_base(&self, configured: Option<&str>) -> Option<String> {
        match configured {
            Some(base) => {
                let trimmed = base.trim_end_matches('/');
                Some(match self.path_suffix {
                    Some(suffix) if !trimmed.ends_with(suffix) => format!("{trimmed}{suffix}"),
                    _ => trimmed.to_owned(),
                })
            }
            None => self.api_base.map(str::to_owned),
        }
    }

    /// The upstream model name for `model` (adds the provider's model prefix if needed).
    pub fn upstream_model(&self, model: &str) -> String {
        match self.model_prefix {
            Some(prefix) if !model.starts_with(prefix) && !model.contains('/') => {
                format!("{prefix}{model}")
            }
            _ => model.to_owned(),
        }
    }
}

/// The table of OpenAI-compatible providers.
pub static COMPAT_PROVIDERS: &[CompatProvider] = &[
    CompatProvider {
        name: "hosted_vllm",
        api_base: None,
        path_suffix: Some("/v1"),
        key_env: &["HOSTED_VLLM_API_KEY"],
        base_env: &["HOSTED_VLLM_API_BASE"],
        key_required: false,
        stream_usage: true,
        model_prefix: None,
    },
    CompatProvider {
        name: "ollama",
        api_base: Some("http://localhost:11434/v1"),
        path_suffix: Some("/v1"),
        key_env: &["OLLAMA_API_KEY"],
        base_env: &["OLLAMA_API_BASE"],
        key_required: false,
        stream_usage: true,
        model_prefix: None,
    },
    CompatProvider {
        name: "ollama_chat",
        api_base: Some("http://localhost:11434/v1"),
        path_suffix: Some("/v1"),
        key_env: &["OLLAMA_API_KEY"],
        base_env: &["OLLAMA_API_BASE"],
        key_required: false,
        stream_usage: true,
        model_prefix: None,
    },
    CompatProvider {
        name: "lm_studio",
        api_base: Some("http://localhost:1234/v1"),
        path_suffix: Some("/v1"),
        key_env: &["LM_STUDIO_API_KEY"],
        base_env: &["LM_STUDIO_API_BASE"],
        key_required: false,
        stream_usage: true,
        model_prefix: None,
    },
    CompatProvider::hosted("groq", "https://api.groq.com/openai/v1", &["GROQ_API_KEY"]),
    CompatProvider::hosted(
        "together_ai",
        "https://api.together.xyz/v1",
        &[
            "TOGETHERAI_API_KEY",
            "TOGETHER_AI_API_KEY",
            "TOGETHER_API_KEY",
        ],
    ),
    CompatProvider::hosted(
        "deepseek",
        "https://api.deepseek.com/v1",
        &["DEEPSEEK_API_KEY"],
    ),
    CompatProvider::hosted(
        "openrouter",
        "https://openrouter.ai/api/v1",
        &["OPENROUTER_API_KEY", "OR_API_KEY"],
    ),
    CompatProvider {
        model_prefix: Some("accounts/fireworks/models/"),
        ..CompatProvider::hosted(
            "fireworks_ai",
            "https://api.fireworks.ai/inference/v1",
            &[
                "FIREWORKS_AI_API_KEY",
                "FIREWORKS_API_KEY",
                "FIREWORKSAI_API_KEY",
            ],
        )
    },
    CompatProvider::hosted("xai", "https://api.x.ai/v1", &["XAI_API_KEY"]),
    CompatProvider::hosted(
        "cerebras",
        "https://api.cerebras.ai/v1",
        &["CEREBRAS_API_KEY"],
    ),
    CompatProvider {
        stream_usage: false,
        ..CompatProvider::hosted(
            "perplexity",
            "https://api.perplexity.ai",
            &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
        )
    },
    CompatProvider::hosted(
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        &["DEEPINFRA_API_KEY"],
    ),
    CompatProvider::hosted(
        "nvidia_nim",
        "https://integrate.api.nvidia.com/v1",
        &["NVIDIA_NIM_API_KEY"],
    ),
    CompatProvider::hosted(
        "sambanova",
        "https://api.sambanova.ai/v1",
        &["SAMBANOVA_API_KEY"],
    ),
    CompatProvider {
        name: "openai_like",
        api_base: None,
        path_suffix: None,
        key_env: &[],
        base_env: &[],
        key_required: false,
        stream_usage: true,
        model_prefix: None,
    },
];

/// Finds a provider by its LiteLLM prefix.
pub fn lookup(name: &str) -> Option<&'static CompatProvider> {
    COMPAT_PROVIDERS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, a) in COMPAT_PROVIDERS.iter().enumerate() {
            for b in &COMPAT_PROVIDERS[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn every_default_base_is_a_valid_url() {
        for p in COMPAT_PROVIDERS {
            if let Some(base) = p.api_base {
                assert!(
                    super::super::openai::join_uri(base, "/chat/completions").is_ok(),
                    "{}",
                    p.name
                );
            }
        }
    }

    #[test]
    fn base_resolution_adds_version_segment_once() {
        let vllm = lookup("hosted_vllm").unwrap();
        assert_eq!(
            vllm.resolve_base(Some("http://h:8000")).unwrap(),
            "http://h:8000/v1"
        );
        assert_eq!(
            vllm.resolve_base(Some("http://h:8000/v1/")).unwrap(),
            "http://h:8000/v1"
        );
        assert_eq!(vllm.resolve_base(None), None);
        let groq = lookup("groq").unwrap();
        assert_eq!(
            groq.resolve_base(None).unwrap(),
            "https://api.groq.com/openai/v1"
        );
    }

    #[test]
    fn fireworks_model_prefix() {
        let fw = lookup("fireworks_ai").unwrap();
        assert_eq!(
            fw.upstream_model("llama-v3-8b"),
            "accounts/fireworks/models/llama-v3-8b"
        );
        assert_eq!(
            fw.upstream_model("accounts/fireworks/models/x"),
            "accounts/fireworks/models/x"
        );
    }
}
