//! LiteLLM's proxy `config.yaml`, read strictly.
//!
//! The file is parsed into a tree that remembers positions, then checked key
//! by key against [`schema`]: a misspelt key is an error naming the key, the
//! file, the line and the closest valid key; a LiteLLM key tollgate does not
//! act on yet is collected into one start-up warning. `include:` files are
//! merged in (`model_list` entries appended, other sections filled in), and
//! every `os.environ/NAME` value anywhere is replaced by the variable (from
//! `environment_variables` first, then the process environment); a missing
//! variable is an error naming it. Error messages never print values, so a
//! secret in the file cannot end up in a log.

pub mod schema;
mod tree;

pub use tree::Pos;

use crate::Secret;
use schema::Support;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use tree::{Located, Node};

/// A config file that cannot be used, with a message that says where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The proxy configuration.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// Deployments.
    pub model_list: Vec<ModelEntry>,
    /// `litellm_settings`.
    pub litellm_settings: LitellmSettings,
    /// `router_settings`.
    pub router_settings: RouterSettings,
    /// `general_settings`.
    pub general_settings: GeneralSettings,
    /// `environment_variables` (used to resolve `os.environ/` and provider keys).
    pub environment_variables: BTreeMap<String, String>,
    /// `callback_settings` (named callbacks and their settings).
    pub callback_settings: serde_json::Map<String, Value>,
}

/// One `model_list` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    /// The name clients use (the model group).
    pub model_name: String,
    /// How to reach the model.
    pub litellm_params: LitellmParams,
    /// Metadata (`id`, `base_model`, limits, prices, free-form).
    #[serde(default)]
    pub model_info: serde_json::Map<String, Value>,
}

/// `litellm_params` of a deployment.
#[derive(Debug, Clone, Deserialize)]
pub struct LitellmParams {
    /// LiteLLM model string (`openai/gpt-4o`).
    pub model: String,
    /// Provider key.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Base URL.
    #[serde(default)]
    pub api_base: Option<String>,
    /// Alias of `api_base`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// OpenAI organization.
    #[serde(default)]
    pub organization: Option<String>,
    /// OpenAI project.
    #[serde(default)]
    pub project: Option<String>,
    /// Request timeout in seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Time to first byte of a stream, in seconds.
    #[serde(default)]
    pub stream_timeout: Option<f64>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Shuffle weight.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Priority order.
    #[serde(default)]
    pub order: Option<u32>,
    /// Canned answer for every request to this deployment.
    #[serde(default)]
    pub mock_response: Option<Value>,
    /// Headers sent upstream.
    #[serde(default)]
    pub extra_headers: Option<BTreeMap<String, String>>,
    /// Same as `extra_headers`.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Provider override for the model string.
    #[serde(default)]
    pub custom_llm_provider: Option<String>,
    /// Everything else: provider parameters forwarded upstream (and
    /// LiteLLM keys not acted on yet, which are not forwarded).
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

impl LitellmParams {
    /// Parameters to forward to the provider: unknown keys that are not LiteLLM settings.
    pub fn forwarded(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.other
            .iter()
            .filter(|(k, _)| schema::lookup(schema::LITELLM_PARAMS, k).is_none())
    }
}

/// `litellm_settings`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LitellmSettings {
    /// Default request timeout in seconds.
    #[serde(default)]
    pub request_timeout: Option<f64>,
    /// Debug logging.
    #[serde(default)]
    pub set_verbose: Option<bool>,
    /// JSON log lines.
    #[serde(default)]
    pub json_logs: Option<bool>,
    /// Keys not acted on yet.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// A `model_group_alias` target: a group name, or `{model, hidden}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AliasTarget {
    /// `alias: group`
    Name(String),
    /// `alias: {model: group, hidden: true}`
    Detailed {
        /// The group.
        model: String,
        /// Hidden from `/v1/models`.
        #[serde(default)]
        hidden: bool,
    },
}

impl AliasTarget {
    /// The group it points to.
    pub fn group(&self) -> &str {
        match self {
            AliasTarget::Name(s) => s,
            AliasTarget::Detailed { model, .. } => model,
        }
    }
}

/// `router_settings`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouterSettings {
    /// Other names for model groups.
    #[serde(default)]
    pub model_group_alias: BTreeMap<String, AliasTarget>,
    /// Routing strategy.
    #[serde(default)]
    pub routing_strategy: Option<String>,
    /// Default request timeout in seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Default stream first-byte timeout in seconds.
    #[serde(default)]
    pub stream_timeout: Option<f64>,
    /// Keys not acted on yet.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// `general_settings`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GeneralSettings {
    /// The admin key; required on every API call when set.
    #[serde(default)]
    pub master_key: Option<Secret>,
    /// Largest request body in MiB.
    #[serde(default)]
    pub max_request_size_mb: Option<f64>,
    /// Accept `api_key`/`api_base` in request bodies.
    #[serde(default)]
    pub allow_client_side_credentials: Option<bool>,
    /// Keys not acted on yet.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// A loaded config and what the loader wants to say about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: ProxyConfig,
    /// Warnings to print at start-up (never contain values).
    pub warnings: Vec<String>,
}

/// Reads and checks a config file. `env` looks up environment variables.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    load_str(&text, path, env)
}

/// Checks config text as if read from `path` (includes resolve relative to it).
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut root = tree::parse(text, path).map_err(ConfigError)?;
    let mut warnings = Warnings::default();
    check_top(&root, &mut warnings)?;
    let mut seen = vec![path.to_path_buf()];
    expand_includes(&mut root, path, &mut seen, &mut warnings)?;

    // environment_variables first: they feed os.environ/ resolution.
    let mut overlay: HashMap<String, String> = HashMap::new();
    if let Some(section) = section(&root, "environment_variables") {
        let Node::Map(entries) = &section.value else {
            return err(format!(
                "{}: `environment_variables` must be a mapping of NAME: value",
                section.pos
            ));
        };
        for (k, v) in entries {
            let value = match &v.value {
                Node::Str(s) => resolve_env_str(s, &v.pos, &|n| env(n))?,
                Node::Int(i) => i.to_string(),
                Node::Float(f) => f.to_string(),
                Node::Bool(b) => b.to_string(),
                Node::Null => String::new(),
                other => {
                    return err(format!(
                        "{}: environment variable `{}` must be a scalar, not {}",
                        v.pos,
                        k.value,
                        other.kind()
                    ));
                }
            };
            overlay.insert(k.value.clone(), value);
        }
    }
    let lookup = |name: &str| overlay.get(name).cloned().or_else(|| env(name));
    resolve_all(&mut root, &lookup)?;

    check_sections(&root, &mut warnings)?;

    let mut positions = HashMap::new();
    index_positions(&root, String::new(), &mut positions);
    let json = root.value.to_json();
    let config = typed(json, &positions)?;
    let mut config = config;
    config.environment_variables = overlay.into_iter().collect();
    validate(&config, &positions)?;
    Ok(Loaded {
        config,
        warnings: warnings.finish(),
    })
}

#[derive(Default)]
struct Warnings {
    later: BTreeSet<String>,
    other: Vec<String>,
}

impl Warnings {
    fn finish(self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.later.is_empty() {
            out.push(format!(
                "these LiteLLM settings are accepted but not acted on by this version of tollgate: {}",
                self.later.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        out.extend(self.other);
        out
    }
}

fn section<'a>(root: &'a Located, name: &str) -> Option<&'a Located> {
    match &root.value {
        Node::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.value == name)
            .map(|(_, v)| v),
        _ => None,
    }
}

fn unknown_key(key: &Located<String>, table: &[(&str, Support)], where_: &str) -> ConfigError {
    let suggestion = crate::util::closest(&key.value, table.iter().map(|(k, _)| *k));
    let shown: String = key.value.chars().take(80).collect();
    ConfigError(match suggestion {
        Some(s) => format!(
            "{}: unknown key `{shown}` in {where_}; did you mean `{s}`?",
            key.pos
        ),
        None => format!("{}: unknown key `{shown}` in {where_}", key.pos),
    })
}

fn check_keys(
    map: &Located,
    table: &[(&str, Support)],
    where_: &str,
    prefix: &str,
    warnings: &mut Warnings,
) -> Result<(), ConfigError> {
    let entries = match &map.value {
        Node::Map(e) => e,
        Node::Null => return Ok(()),
        other => {
            return err(format!(
                "{}: `{where_}` must be a mapping, not {}",
                map.pos,
                other.kind()
            ));
        }
    };
    for (k, _) in entries {
        match schema::lookup(table, &k.value) {
            Some(Support::Yes) => {}
            Some(Support::Later) => {
                warnings.later.insert(format!("{prefix}{}", k.value));
            }
            None => return Err(unknown_key(k, table, where_)),
        }
    }
    Ok(())
}

fn check_top(root: &Located, warnings: &mut Warnings) -> Result<(), ConfigError> {
    match &root.value {
        Node::Map(_) => check_keys(root, schema::TOP, "the top level", "", warnings),
        other => err(format!(
            "{}: the config must be a mapping at the top level, not {}",
            root.pos,
            other.kind()
        )),
    }
}

fn expand_includes(
    root: &mut Located,
    path: &Path,
    seen: &mut Vec<PathBuf>,
    warnings: &mut Warnings,
) -> Result<(), ConfigError> {
    let Node::Map(entries) = &mut root.value else {
        return Ok(());
    };
    let Some(idx) = entries.iter().position(|(k, _)| k.value == "include") else {
        return Ok(());
    };
    let (_, list) = entries.remove(idx);
    let files: Vec<(String, tree::Pos)> = match list.value {
        Node::Seq(items) => items
            .into_iter()
            .map(|i| match i.value {
                Node::Str(s) => Ok((s, i.pos)),
                other => err(format!(
                    "{}: `include` entries must be file names, not {}",
                    i.pos,
                    other.kind()
                )),
            })
            .collect::<Result<_, _>>()?,
        Node::Str(s) => vec![(s, list.pos)],
        other => {
            return err(format!(
                "{}: `include` must be a list of file names, not {}",
                list.pos,
                other.kind()
            ));
        }
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    for (name, pos) in files {
        let file = base.join(&name);
        if seen.contains(&file) || seen.len() > 16 {
            return err(format!("{pos}: `include` of {name} forms a cycle"));
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ConfigError(format!("{pos}: cannot read included file {name}: {e}")))?;
        let mut included = tree::parse(&text, &file).map_err(ConfigError)?;
        check_top(&included, warnings)?;
        seen.push(file.clone());
        expand_includes(&mut included, &file, seen, warnings)?;
        seen.pop();
        let Node::Map(inc) = included.value else {
            continue;
        };
        let Node::Map(entries) = &mut root.value else {
            break;
        };
        for (k, v) in inc {
            match entries.iter_mut().find(|(ek, _)| ek.value == k.value) {
                None => entries.push((k, v)),
                Some((_, existing)) => match (&mut existing.value, v.value) {
                    (Node::Seq(a), Node::Seq(b)) => a.extend(b),
                    (Node::Map(a), Node::Map(b)) => {
                        for (bk, bv) in b {
                            if !a.iter().any(|(ak, _)| ak.value == bk.value) {
                                a.push((bk, bv));
                            }
                        }
                    }
                    _ => {
                        return err(format!(
                            "{}: `{}` in included file {name} conflicts with the main config",
                            k.pos, k.value
                        ));
                    }
                },
            }
        }
    }
    Ok(())
}

const ENV_PREFIX: &str = "os.environ/";

fn resolve_env_str(
    s: &str,
    pos: &tree::Pos,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    match s.strip_prefix(ENV_PREFIX) {
        None => Ok(s.to_owned()),
        Some(name) => {
            let name = name.trim();
            if name.is_empty() {
                return err(format!("{pos}: `os.environ/` needs a variable name"));
            }
            lookup(name).ok_or_else(|| {
                ConfigError(format!(
                    "{pos}: environment variable `{name}` is not set (referenced as os.environ/{name})"
                ))
            })
        }
    }
}

fn resolve_all(
    node: &mut Located,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match &mut node.value {
        Node::Str(s) if s.starts_with(ENV_PREFIX) => {
            *s = resolve_env_str(s, &node.pos, lookup)?;
        }
        Node::Seq(items) => {
            for i in items {
                resolve_all(i, lookup)?;
            }
        }
        Node::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                if k.value != "environment_variables" {
                    resolve_all(v, lookup)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_sections(root: &Located, warnings: &mut Warnings) -> Result<(), ConfigError> {
    for (name, table) in [
        ("litellm_settings", schema::LITELLM_SETTINGS),
        ("router_settings", schema::ROUTER_SETTINGS),
        ("general_settings", schema::GENERAL_SETTINGS),
    ] {
        if let Some(s) = section(root, name) {
            check_keys(s, table, name, &format!("{name}."), warnings)?;
        }
    }
    if let Some(router) = section(root, "router_settings")
        && let Some(strategy) = section(router, "routing_strategy")
        && let Node::Str(s) = &strategy.value
    {
        if !schema::ROUTING_STRATEGIES_KNOWN.contains(&s.as_str()) {
            let hint = crate::util::closest(s, schema::ROUTING_STRATEGIES_KNOWN.iter().copied())
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
            return err(format!(
                "{}: unknown routing_strategy `{s}`{hint} (known: {})",
                strategy.pos,
                schema::ROUTING_STRATEGIES_KNOWN.join(", ")
            ));
        }
        if !schema::ROUTING_STRATEGIES_SUPPORTED.contains(&s.as_str()) {
            warnings.other.push(format!(
                "routing_strategy `{s}` is not implemented yet; using simple-shuffle"
            ));
        }
    }
    let Some(list) = section(root, "model_list") else {
        return Ok(());
    };
    let items = match &list.value {
        Node::Seq(items) => items,
        Node::Null => return Ok(()),
        other => {
            return err(format!(
                "{}: `model_list` must be a list, not {}",
                list.pos,
                other.kind()
            ));
        }
    };
    let openai_fields = crate::types::ChatRequestBody::KNOWN_FIELDS;
    for (i, item) in items.iter().enumerate() {
        let where_ = format!("model_list[{i}]");
        check_keys(
            item,
            schema::MODEL_ENTRY,
            &where_,
            "model_list[].",
            warnings,
        )?;
        let Some(params) = section(item, "litellm_params") else {
            if matches!(item.value, Node::Map(_)) {
                return err(format!(
                    "{}: {where_} has no `litellm_params` (it needs at least `model`)",
                    item.pos
                ));
            }
            continue;
        };
        let Node::Map(entries) = &params.value else {
            return err(format!(
                "{}: `{where_}.litellm_params` must be a mapping, not {}",
                params.pos,
                params.value.kind()
            ));
        };
        for (k, _) in entries {
            match schema::lookup(schema::LITELLM_PARAMS, &k.value) {
                Some(Support::Yes) => {}
                Some(Support::Later) => {
                    warnings.later.insert(format!("litellm_params.{}", k.value));
                }
                None => {
                    // Unknown keys are provider parameters and are forwarded, unless
                    // they look like a misspelt LiteLLM setting.
                    let typo = !openai_fields.contains(&k.value.as_str())
                        && crate::util::closest(
                            &k.value,
                            schema::LITELLM_PARAMS.iter().map(|(n, _)| *n),
                        )
                        .is_some_and(|c| crate::util::edit_distance(c, &k.value) <= 2);
                    if typo {
                        return Err(unknown_key(
                            k,
                            schema::LITELLM_PARAMS,
                            &format!("{where_}.litellm_params"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Maps `a.b[0].c`-style paths to where they are in the files.
fn index_positions(node: &Located, path: String, out: &mut HashMap<String, tree::Pos>) {
    out.insert(path.clone(), node.pos.clone());
    match &node.value {
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                index_positions(item, format!("{path}[{i}]"), out);
            }
        }
        Node::Map(entries) => {
            for (k, v) in entries {
                let p = if path.is_empty() {
                    k.value.clone()
                } else {
                    format!("{path}.{}", k.value)
                };
                index_positions(v, p, out);
            }
        }
        _ => {}
    }
}

fn locate(path: &str, positions: &HashMap<String, tree::Pos>) -> String {
    let mut p = path.to_owned();
    loop {
        if let Some(pos) = positions.get(&p) {
            return pos.to_string();
        }
        match p.rfind(['.', '[']) {
            Some(i) => p.truncate(i),
            None => return positions.get("").map(|p| p.to_string()).unwrap_or_default(),
        }
    }
}

/// A type error without the offending value (it may be a secret).
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        return format!("missing required key `{field}`");
    }
    match text.split_once(", expected ") {
        Some((_, expected)) => {
            let expected = expected.split(" at line").next().unwrap_or(expected);
            format!("expected {expected}")
        }
        None => "invalid value".to_owned(),
    }
}

#[derive(Deserialize)]
struct Typed {
    #[serde(default)]
    model_list: Option<Vec<ModelEntry>>,
    #[serde(default)]
    litellm_settings: Option<LitellmSettings>,
    #[serde(default)]
    router_settings: Option<RouterSettings>,
    #[serde(default)]
    general_settings: Option<GeneralSettings>,
    #[serde(default)]
    callback_settings: Option<serde_json::Map<String, Value>>,
}

fn typed(json: Value, positions: &HashMap<String, tree::Pos>) -> Result<ProxyConfig, ConfigError> {
    let typed: Typed = serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let shown = if path == "." {
            String::new()
        } else {
            format!("`{path}`: ")
        };
        ConfigError(format!(
            "{}: {shown}{}",
            locate(&path, positions),
            describe(&inner)
        ))
    })?;
    Ok(ProxyConfig {
        model_list: typed.model_list.unwrap_or_default(),
        litellm_settings: typed.litellm_settings.unwrap_or_default(),
        router_settings: typed.router_settings.unwrap_or_default(),
        general_settings: typed.general_settings.unwrap_or_default(),
        environment_variables: BTreeMap::new(),
        callback_settings: typed.callback_settings.unwrap_or_default(),
    })
}

fn validate(
    config: &ProxyConfig,
    positions: &HashMap<String, tree::Pos>,
) -> Result<(), ConfigError> {
    for (i, m) in config.model_list.iter().enumerate() {
        let at = |k: &str| locate(&format!("model_list[{i}].{k}"), positions);
        if m.model_name.trim().is_empty() {
            return err(format!(
                "{}: `model_name` must not be empty",
                at("model_name")
            ));
        }
        if m.litellm_params.model.trim().is_empty() {
            return err(format!(
                "{}: `litellm_params.model` must not be empty",
                at("litellm_params.model")
            ));
        }
        for (key, v) in [
            ("timeout", m.litellm_params.timeout),
            ("stream_timeout", m.litellm_params.stream_timeout),
            ("weight", m.litellm_params.weight),
        ] {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                return err(format!(
                    "{}: `litellm_params.{key}` must be a non-negative number",
                    at(&format!("litellm_params.{key}"))
                ));
            }
        }
    }
    for (alias, target) in &config.router_settings.model_group_alias {
        if !config
            .model_list
            .iter()
            .any(|m| m.model_name == target.group())
        {
            return err(format!(
                "{}: model_group_alias `{alias}` points to `{}`, which is not a model_name in model_list",
                locate(
                    &format!("router_settings.model_group_alias.{alias}"),
                    positions
                ),
                target.group()
            ));
        }
    }
    if let Some(mb) = config.general_settings.max_request_size_mb
        && (!mb.is_finite() || mb <= 0.0)
    {
        return err(format!(
            "{}: `max_request_size_mb` must be a positive number",
            locate("general_settings.max_request_size_mb", positions)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
