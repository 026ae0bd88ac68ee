//! JSON Schema → Gemini's `Schema`, an OpenAPI 3.0 subset.
//!
//! Used for tool parameters (`functionDeclarations[].parameters`) and for
//! `response_format: json_schema` (`generationConfig.responseSchema`).
//!
//! What is kept: `type` (upper-cased: `OBJECT`, `STRING`, …), `properties`,
//! `required` (only names that are properties), `items`, `enum` (string values
//! only), `format` (only the ones Gemini accepts: `enum`/`date-time` for
//! strings, `int32`/`int64` for integers, `float`/`double` for numbers),
//! `anyOf`, `nullable`, `title`, `description`, `default`, `example`,
//! `minItems`/`maxItems`, `minimum`/`maximum`, `minLength`/`maxLength`,
//! `pattern`, `minProperties`/`maxProperties`, `propertyOrdering`.
//!
//! What is rewritten: `$ref` to `#/$defs/…` or `#/definitions/…` is inlined
//! (a recursive reference is an error: Gemini's schema cannot express it);
//! `oneOf` becomes `anyOf`; a `{"type":"null"}` branch of `anyOf`, a `"null"`
//! in a type list or in `enum` becomes `nullable: true`; a type list becomes
//! `anyOf`; `const` becomes a one-value `enum`; `allOf` is merged.
//!
//! What is dropped: everything else — notably `additionalProperties`,
//! `$schema`, `$id`, `$defs`/`definitions`, `strict`, `examples`, `$comment`,
//! `exclusiveMinimum`/`exclusiveMaximum`, `multipleOf`, `uniqueItems`, `not`,
//! `if`/`then`/`else`, `patternProperties`, `readOnly`/`writeOnly`,
//! `deprecated`, and formats Gemini rejects (`uri`, `email`, …).

use serde_json::{Map, Value};

/// Deepest nesting accepted (Gemini itself refuses very deep schemas).
const MAX_DEPTH: usize = 64;

/// Keys copied verbatim.
const COPIED: &[&str] = &[
    "title",
    "description",
    "default",
    "example",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
    "nullable",
];

/// Converts a JSON Schema to Gemini's subset. `Err` names what cannot be expressed.
pub(crate) fn clean_schema(schema: &Value) -> Result<Value, String> {
    let mut cx = Cx {
        root: schema,
        stack: Vec::new(),
    };
    cx.clean(schema, 0)
}

struct Cx<'a> {
    root: &'a Value,
    /// `$ref`s being inlined (to detect recursion).
    stack: Vec<String>,
}

impl<'a> Cx<'a> {
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        if !(pointer.starts_with("/$defs/") || pointer.starts_with("/definitions/")) {
            return None;
        }
        self.root.pointer(pointer)
    }

    fn clean(&mut self, node: &Value, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "the schema is nested deeper than {MAX_DEPTH} levels"
            ));
        }
        let Some(obj) = node.as_object() else {
            // `true` (anything) and other non-object schemas carry no constraint Gemini can express.
            return Ok(Value::Object(Map::new()));
        };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            let Some(target) = self.resolve(reference) else {
                return Err(format!("the reference `{reference}` cannot be resolved"));
            };
            if self.stack.iter().any(|r| r == reference) {
                return Err(format!(
                    "the reference `{reference}` is recursive, which Gemini's schema cannot express"
                ));
            }
            self.stack.push(reference.to_owned());
            let resolved = self.clean(target, depth + 1);
            self.stack.pop();
            let mut out = into_map(resolved?);
            // Siblings of `$ref` (a description, usually) refine the target.
            let mut rest = obj.clone();
            rest.remove("$ref");
            if !rest.is_empty() {
                let siblings = into_map(self.clean(&Value::Object(rest), depth + 1)?);
                out.extend(siblings);
            }
            return Ok(Value::Object(out));
        }

        let mut out = Map::new();
        let mut nullable = false;

        // Combinators first: a single remaining branch is merged into this node.
        let branches = obj
            .get("anyOf")
            .or_else(|| obj.get("oneOf"))
            .and_then(Value::as_array);
        if let Some(branches) = branches {
            let mut kept = Vec::new();
            for b in branches {
                if is_null_schema(b) {
                    nullable = true;
                } else {
                    kept.push(self.clean(b, depth + 1)?);
                }
            }
            if kept.len() == 1 {
                if let Some(Value::Object(only)) = kept.pop() {
                    out.extend(only);
                }
            } else if !kept.is_empty() {
                out.insert("anyOf".into(), Value::Array(kept));
            }
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for part in all {
                let cleaned = into_map(self.clean(part, depth + 1)?);
                merge_all_of(&mut out, cleaned);
            }
        }

        match obj.get("type") {
            Some(Value::String(t)) => {
                if t == "null" {
                    nullable = true;
                } else if let Some(t) = gemini_type(t) {
                    out.insert("type".into(), Value::String(t.into()));
                }
            }
            Some(Value::Array(types)) => {
                let mut kinds = Vec::new();
                for t in types.iter().filter_map(Value::as_str) {
                    if t == "null" {
                        nullable = true;
                    } else if let Some(g) = gemini_type(t) {
                        kinds.push(g);
                    }
                }
                match kinds.as_slice() {
                    [] => {}
                    [one] => {
                        out.insert("type".into(), Value::String((*one).into()));
                    }
                    many => {
                        let any: Vec<Value> = many
                            .iter()
                            .map(|k| {
                                let mut m = Map::new();
                                m.insert("type".into(), Value::String((*k).into()));
                                Value::Object(m)
                            })
                            .collect();
                        out.insert("anyOf".into(), Value::Array(any));
                    }
                }
            }
            _ => {}
        }

        for key in COPIED {
            if let Some(v) = obj.get(*key) {
                out.insert((*key).into(), v.clone());
            }
        }

        if let Some(values) = obj.get("enum").and_then(Value::as_array) {
            let mut strings = Vec::with_capacity(values.len());
            let mut all_strings = true;
            for v in values {
                match v {
                    Value::String(_) => strings.push(v.clone()),
                    Value::Null => nullable = true,
                    _ => all_strings = false,
                }
            }
            if all_strings && !strings.is_empty() {
                out.insert("enum".into(), Value::Array(strings));
                out.entry("type")
                    .or_insert_with(|| Value::String("STRING".into()));
            }
        } else if let Some(Value::String(c)) = obj.get("const") {
            out.insert("enum".into(), Value::Array(vec![Value::String(c.clone())]));
            out.entry("type")
                .or_insert_with(|| Value::String("STRING".into()));
        }

        if let Some(format) = obj.get("format").and_then(Value::as_str) {
            let ty = out.get("type").and_then(Value::as_str).unwrap_or("");
            let accepted = match ty {
                "STRING" => matches!(format, "enum" | "date-time"),
                "INTEGER" => matches!(format, "int32" | "int64"),
                "NUMBER" => matches!(format, "float" | "double"),
                _ => false,
            };
            if accepted {
                out.insert("format".into(), Value::String(format.into()));
            }
        }

        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            let mut cleaned = Map::new();
            for (name, schema) in props {
                cleaned.insert(name.clone(), self.clean(schema, depth + 1)?);
            }
            out.insert("properties".into(), Value::Object(cleaned));
        }
        if let Some(required) = obj.get("required").and_then(Value::as_array) {
            let props = out.get("properties").and_then(Value::as_object);
            let names: Vec<Value> = required
                .iter()
                .filter(|r| {
                    r.as_str()
                        .is_some_and(|n| props.is_none_or(|p| p.contains_key(n)))
                })
                .cloned()
                .collect();
            if !names.is_empty() {
                out.insert("required".into(), Value::Array(names));
            }
        }
        match obj.get("items") {
            Some(items @ Value::Object(_)) => {
                out.insert("items".into(), self.clean(items, depth + 1)?);
            }
            Some(Value::Array(tuple)) => {
                if let Some(first) = tuple.first() {
                    out.insert("items".into(), self.clean(first, depth + 1)?);
                }
            }
            _ => {}
        }

        if nullable {
            out.insert("nullable".into(), Value::Bool(true));
        }
        Ok(Value::Object(out))
    }
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

fn gemini_type(t: &str) -> Option<&'static str> {
    Some(match t {
        "string" | "STRING" => "STRING",
        "number" | "NUMBER" => "NUMBER",
        "integer" | "INTEGER" => "INTEGER",
        "boolean" | "BOOLEAN" => "BOOLEAN",
        "array" | "ARRAY" => "ARRAY",
        "object" | "OBJECT" => "OBJECT",
        _ => return None,
    })
}

/// Merges one `allOf` branch: properties and required lists are united, other
/// keys are taken from the first branch that sets them.
fn merge_all_of(out: &mut Map<String, Value>, part: Map<String, Value>) {
    for (k, v) in part {
        match (k.as_str(), out.get_mut(&k), v) {
            ("properties", Some(Value::Object(have)), Value::Object(add)) => {
                for (name, schema) in add {
                    have.entry(name).or_insert(schema);
                }
            }
            ("required", Some(Value::Array(have)), Value::Array(add)) => {
                for name in add {
                    if !have.contains(&name) {
                        have.push(name);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, v) => {
                out.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_strict_schema_becomes_gemini_subset() {
        let s = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "title": "Args",
            "additionalProperties": false,
            "strict": true,
            "properties": {
                "city": {"type": "string", "description": "City", "format": "uri", "examples": ["Oslo"]},
                "when": {"type": "string", "format": "date-time"},
                "days": {"type": ["integer", "null"], "minimum": 1, "exclusiveMaximum": 20},
                "unit": {"enum": ["c", "f", null]},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "exact": {"const": "yes"}
            },
            "required": ["city", "days", "ghost"]
        });
        assert_eq!(
            clean_schema(&s).unwrap(),
            json!({
                "type": "OBJECT",
                "title": "Args",
                "properties": {
                    "city": {"type": "STRING", "description": "City"},
                    "when": {"type": "STRING", "format": "date-time"},
                    "days": {"type": "INTEGER", "minimum": 1, "nullable": true},
                    "unit": {"type": "STRING", "enum": ["c", "f"], "nullable": true},
                    "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
                    "exact": {"type": "STRING", "enum": ["yes"]}
                },
                "required": ["city", "days"]
            })
        );
    }

    #[test]
    fn refs_are_inlined_and_any_of_null_is_nullable() {
        let s = json!({
            "type": "object",
            "$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": false}},
            "properties": {
                "pet": {"$ref": "#/$defs/Pet", "description": "The pet"},
                "maybe": {"anyOf": [{"$ref": "#/$defs/Pet"}, {"type": "null"}]},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "both": {"allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "number"}}, "required": ["b"]}
                ]}
            }
        });
        assert_eq!(
            clean_schema(&s).unwrap(),
            json!({
                "type": "OBJECT",
                "properties": {
                    "pet": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}, "description": "The pet"},
                    "maybe": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}, "nullable": true},
                    "either": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
                    "both": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "NUMBER"}}, "required": ["a", "b"]}
                }
            })
        );
    }

    #[test]
    fn recursion_and_depth_are_errors_not_panics() {
        let s = json!({"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}, "$ref": "#/$defs/N"});
        assert!(clean_schema(&s).unwrap_err().contains("recursive"));
        let s = json!({"$ref": "https://example.com/schema"});
        assert!(clean_schema(&s).unwrap_err().contains("cannot be resolved"));
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "array", "items": deep});
        }
        assert!(clean_schema(&deep).unwrap_err().contains("deeper"));
        assert_eq!(clean_schema(&json!(true)).unwrap(), json!({}));
    }
}
