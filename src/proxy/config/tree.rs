//! The YAML document as a tree that remembers where every key and value came from.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    /// The file.
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A YAML value with positions.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Located>),
    Map(Vec<(Located<String>, Located)>),
}

/// A value and where it is.
#[derive(Clone, Debug)]
pub(crate) struct Located<T = Node> {
    pub(crate) value: T,
    pub(crate) pos: Pos,
}

/// What `serde-saphyr` gives us before positions get their file name.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Raw, E> {
                i64::try_from(v)
                    .map(Raw::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element()? {
                    v.push(x);
                }
                Ok(Raw::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key()? {
                    v.push((k, m.next_value()?));
                }
                Ok(Raw::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

fn pos(file: &Arc<PathBuf>, loc: &serde_saphyr::Location) -> Pos {
    Pos {
        file: file.clone(),
        line: loc.line() as usize,
        column: loc.column() as usize,
    }
}

fn convert(raw: Spanned<Raw>, file: &Arc<PathBuf>) -> Located {
    let p = pos(file, &raw.referenced);
    let value = match raw.value {
        Raw::Null => Node::Null,
        Raw::Bool(b) => Node::Bool(b),
        Raw::Int(i) => Node::Int(i),
        Raw::Float(f) => Node::Float(f),
        Raw::Str(s) => Node::Str(s),
        Raw::Seq(items) => Node::Seq(items.into_iter().map(|i| convert(i, file)).collect()),
        Raw::Map(entries) => Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let kp = pos(file, &k.referenced);
                    (
                        Located {
                            value: k.value,
                            pos: kp,
                        },
                        convert(v, file),
                    )
                })
                .collect(),
        ),
    };
    Located { value, pos: p }
}

/// Parses YAML text from `file` into a located tree. Errors carry the position.
pub(crate) fn parse(text: &str, file: &Path) -> Result<Located, String> {
    let file = Arc::new(file.to_path_buf());
    if text.trim().is_empty() {
        return Ok(Located {
            value: Node::Map(Vec::new()),
            pos: Pos {
                file,
                line: 1,
                column: 1,
            },
        });
    }
    match serde_saphyr::from_str::<Spanned<Raw>>(text) {
        Ok(raw) => Ok(convert(raw, &file)),
        Err(e) => {
            let where_ = e
                .location()
                .map(|l| format!("{}:{}:{}", file.display(), l.line(), l.column()))
                .unwrap_or_else(|| file.display().to_string());
            // The parser's own message, first line only (it may quote the document).
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid YAML");
            let first = first
                .split_once(": ")
                .filter(|(head, _)| head.starts_with("error"))
                .map_or(first, |(_, rest)| rest);
            Err(format!("{where_}: invalid YAML: {first}"))
        }
    }
}

impl Node {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON for typed deserialisation.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::from(*i),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(|i| i.value.to_json()).collect()),
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.value.to_json()))
                    .collect(),
            ),
        }
    }
}
