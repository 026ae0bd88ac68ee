use super::*;

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn load_text(text: &str) -> Result<Loaded, ConfigError> {
    load_str(
        text,
        Path::new("config.yaml"),
        &env(&[("OPENAI_KEY", "sk-from-env-123456")]),
    )
}

fn error_of(text: &str) -> String {
    load_text(text).unwrap_err().0
}

#[test]
fn full_litellm_config_loads() {
    let loaded = load_text(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_KEY
      rpm: 60
      weight: 2
      temperature: 0.2
      aws_profile_name: default
    model_info:
      id: primary
      base_model: gpt-4o
      custom_thing: 1
  - model_name: local
    litellm_params:
      model: hosted_vllm/llama
      api_base: http://127.0.0.1:8000
litellm_settings:
  request_timeout: 30
  drop_params: true
router_settings:
  routing_strategy: simple-shuffle
  model_group_alias:
    gpt4: gpt-4o
    hidden-one: {model: local, hidden: true}
general_settings:
  master_key: os.environ/MASTER
environment_variables:
  MASTER: sk-master-abcdef123456
"#,
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.model_list.len(), 2);
    let p = &c.model_list[0].litellm_params;
    assert_eq!(p.api_key.as_ref().unwrap().expose(), "sk-from-env-123456");
    assert_eq!(p.rpm, Some(60));
    let forwarded: Vec<_> = p.forwarded().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        forwarded,
        vec!["temperature"],
        "LiteLLM keys are never forwarded"
    );
    assert_eq!(
        c.general_settings.master_key.as_ref().unwrap().expose(),
        "sk-master-abcdef123456"
    );
    assert_eq!(
        c.router_settings.model_group_alias["gpt4"].group(),
        "gpt-4o"
    );
    assert_eq!(c.litellm_settings.request_timeout, Some(30.0));
    assert_eq!(loaded.warnings.len(), 1);
    let w = &loaded.warnings[0];
    assert!(!w.contains("drop_params"), "drop_params is acted on: {w}");
    assert!(w.contains("litellm_params.aws_profile_name"), "{w}");
}

#[test]
fn misspelt_top_level_key_names_file_line_and_suggestion() {
    let e = error_of("model_list: []\nroutr_settings:\n  timeout: 3\n");
    assert_eq!(
        e,
        "config.yaml:2:1: unknown key `routr_settings` in the top level; did you mean `router_settings`?"
    );
}

#[test]
fn misspelt_section_key() {
    let e = error_of("general_settings:\n  master_kye: x\n");
    assert_eq!(
        e,
        "config.yaml:2:3: unknown key `master_kye` in general_settings; did you mean `master_key`?"
    );
}

#[test]
fn misspelt_litellm_param_is_an_error_but_provider_params_pass() {
    let e = error_of(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_bse: http://h\n",
    );
    assert_eq!(
        e,
        "config.yaml:5:7: unknown key `api_bse` in model_list[0].litellm_params; did you mean `api_base`?"
    );
    // A genuine provider parameter (close to nothing LiteLLM knows) is forwarded.
    let ok = load_text(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      top_k: 5\n      max_tokens: 10\n",
    )
    .unwrap();
    let fwd: Vec<_> = ok.config.model_list[0]
        .litellm_params
        .forwarded()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(fwd, vec!["max_tokens", "top_k"]);
}

#[test]
fn unknown_key_without_close_match() {
    let e = error_of("zzzzzzzz: 1\n");
    assert_eq!(
        e,
        "config.yaml:1:1: unknown key `zzzzzzzz` in the top level"
    );
}

#[test]
fn missing_env_var_is_named() {
    let e = error_of(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/NOT_SET_ANYWHERE\n",
    );
    assert_eq!(
        e,
        "config.yaml:5:16: environment variable `NOT_SET_ANYWHERE` is not set (referenced as os.environ/NOT_SET_ANYWHERE)"
    );
}

#[test]
fn type_errors_name_the_key_but_never_the_value() {
    let e = error_of(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      rpm: sk-secret-value\n",
    );
    assert!(
        e.starts_with("config.yaml:5:12: `model_list[0].litellm_params.rpm`"),
        "{e}"
    );
    assert!(!e.contains("sk-secret-value"), "{e}");
    let e = error_of("general_settings:\n  master_key: [sk-a-secret-in-a-list]\n");
    assert!(!e.contains("sk-a-secret"), "{e}");
    assert!(e.contains("general_settings.master_key"), "{e}");
}

#[test]
fn missing_model_and_bad_shapes() {
    let e =
        error_of("model_list:\n  - model_name: a\n    litellm_params:\n      api_base: http://x\n");
    assert!(e.contains("missing required key `model`"), "{e}");
    let e = error_of("model_list:\n  - model_name: a\n");
    assert_eq!(
        e,
        "config.yaml:2:5: model_list[0] has no `litellm_params` (it needs at least `model`)"
    );
    let e = error_of("model_list: 3\n");
    assert_eq!(
        e,
        "config.yaml:1:13: `model_list` must be a list, not an integer"
    );
    let e = error_of("- a\n- b\n");
    assert!(e.contains("must be a mapping at the top level"), "{e}");
}

#[test]
fn invalid_yaml_has_a_position() {
    let e = error_of("model_list: [\n  x: y\n");
    assert!(e.starts_with("config.yaml:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
    let e = error_of("a: 1\na: 2\n");
    assert!(e.contains("duplicate"), "{e}");
}

#[test]
fn routing_strategy_checks() {
    let e = error_of("router_settings:\n  routing_strategy: simple-shufle\n");
    assert!(e.contains("did you mean `simple-shuffle`"), "{e}");
    for s in [
        "least-busy",
        "latency-based-routing",
        "usage-based-routing-v2",
        "cost-based-routing",
    ] {
        let w = load_text(&format!("router_settings:\n  routing_strategy: {s}\n")).unwrap();
        assert!(w.warnings.is_empty(), "{s}: {:?}", w.warnings);
    }
}

#[test]
fn alias_to_unknown_group_is_an_error() {
    let e = error_of(
        "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\nrouter_settings:\n  model_group_alias:\n    b: nope\n",
    );
    assert!(e.contains("model_group_alias `b` points to `nope`"), "{e}");
}

#[test]
fn includes_are_merged() {
    let dir = std::env::temp_dir().join(format!("tollgate-include-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("models.yaml"),
        "model_list:\n  - model_name: b\n    litellm_params: {model: mock/b}\ngeneral_settings:\n  master_key: sk-included-key-123\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        "include:\n  - models.yaml\nmodel_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n",
    )
    .unwrap();
    let loaded = load(&dir.join("config.yaml"), &|_| None).unwrap();
    let names: Vec<_> = loaded
        .config
        .model_list
        .iter()
        .map(|m| m.model_name.as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    assert!(loaded.config.general_settings.master_key.is_some());

    std::fs::write(dir.join("bad.yaml"), "include: [nope.yaml]\n").unwrap();
    let e = load(&dir.join("bad.yaml"), &|_| None).unwrap_err().0;
    assert!(e.contains("cannot read included file nope.yaml"), "{e}");
    std::fs::write(dir.join("loop.yaml"), "include: [loop.yaml]\n").unwrap();
    let e = load(&dir.join("loop.yaml"), &|_| None).unwrap_err().0;
    assert!(e.contains("cycle"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn empty_file_is_an_empty_config() {
    let loaded = load_text("").unwrap();
    assert!(loaded.config.model_list.is_empty());
    assert!(loaded.warnings.is_empty());
}
