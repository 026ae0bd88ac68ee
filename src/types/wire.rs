//! Serde plumbing for wire objects that keep the fields they do not know.
//!
//! OpenAI-style objects grow new fields every month. A gateway must forward what
//! it does not understand, byte for byte, instead of silently dropping it. Every
//! wire object in [`crate::types`] therefore carries an [`Extra`]: the unknown
//! fields in arrival order, each value kept as the raw JSON text it arrived as.
//!
//! The objects are declared with the crate-private `wire_object!` macro, which
//! writes the `Deserialize` impl as a single pass over the JSON map (no
//! intermediate tree, unlike `#[serde(flatten)]`), rejects duplicate keys, and
//! writes the `Serialize` impl with known fields first and unknown fields after.

use serde::de::{self, MapAccess};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;

/// Unknown fields of a wire object, kept verbatim (raw JSON text) in arrival order.
///
/// ```
/// use tollgate::types::Message;
///
/// let m: Message = serde_json::from_str(
///     r#"{"role":"user","content":"hi","cache_control":{"type":"ephemeral"}}"#,
/// ).unwrap();
/// assert_eq!(m.extra.get("cache_control").unwrap().get(), r#"{"type":"ephemeral"}"#);
/// assert_eq!(
///     serde_json::to_string(&m).unwrap(),
///     r#"{"role":"user","content":"hi","cache_control":{"type":"ephemeral"}}"#,
/// );
/// ```
#[derive(Clone, Default)]
pub struct Extra(Vec<(Box<str>, Box<RawValue>)>);

impl Extra {
    /// An empty set of fields.
    pub const fn new() -> Self {
        Extra(Vec::new())
    }

    /// Whether there are no unknown fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of unknown fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The raw JSON value of the field `key`, if present.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }

    /// Parses the field `key` as `T`. `None` when absent; `Some(Err)` when it does not parse.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self, key: &str) -> Option<serde_json::Result<T>> {
        self.get(key).map(|raw| serde_json::from_str(raw.get()))
    }

    /// Whether the field `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to the raw JSON `value`, replacing an existing value.
    pub fn insert_raw(&mut self, key: impl Into<Box<str>>, value: Box<RawValue>) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Sets `key` to `value` serialised as JSON, replacing an existing value.
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<Box<str>>,
        value: &T,
    ) -> serde_json::Result<()> {
        let raw = serde_json::value::to_raw_value(value)?;
        self.insert_raw(key, raw);
        Ok(())
    }

    /// Removes `key` and returns its raw value.
    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        let pos = self.0.iter().position(|(k, _)| &**k == key)?;
        Some(self.0.remove(pos).1)
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &RawValue) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }

    /// Iterates over `(key, raw value)` pairs in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The field names, in arrival order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| &**k)
    }

    pub(crate) fn push_unique<E: de::Error>(
        &mut self,
        key: Box<str>,
        value: Box<RawValue>,
    ) -> Result<(), E> {
        if self.0.iter().any(|(k, _)| *k == key) {
            return Err(E::custom(format_args!("duplicate field `{key}`")));
        }
        if !depth_within(value.get(), MAX_DEPTH) {
            return Err(E::custom(format_args!(
                "recursion limit exceeded: field `{key}` is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        self.0.push((key, value));
        Ok(())
    }

    /// Writes every field into a map being serialised.
    pub(crate) fn serialize_into<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        for (k, v) in &self.0 {
            map.serialize_entry(&**k, &**v)?;
        }
        Ok(())
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v.get())))
            .finish()
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        self.serialize_into(&mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Extra;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extra, A::Error> {
                let mut extra = Extra::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value = map.next_value::<Box<RawValue>>()?;
                    extra.push_unique(key.into_boxed(), value)?;
                }
                Ok(extra)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// How deep an unknown field may nest (the same limit `serde_json` applies to typed fields).
const MAX_DEPTH: usize = 128;

/// Whether the JSON text nests arrays/objects at most `max` deep. Raw values
/// are captured without recursion, so without this check a 10,000-deep value
/// would be accepted and forwarded.
fn depth_within(json: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// A map key, borrowed from the input when possible.
pub(crate) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
    pub(crate) fn into_boxed(self) -> Box<str> {
        match self {
            Key::Borrowed(s) => s.into(),
            Key::Owned(s) => s.into_boxed_str(),
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// Declares a wire object: a struct with up to five groups of fields, in this order:
///
/// - `required`: must be present in the input; always written.
/// - `defaulted`: `Type = "json" => default_expr`; filled with the default when absent; always written.
/// - `nullable`: `Option<Type>`; always written (`null` when absent).
/// - `optional`: `Option<Type>`; written only when present.
/// - `local`: `Option<Type>`; read but never written (gateway-only fields that must not go upstream).
///
/// plus `extra: Extra` for everything else. Types in `nullable`, `optional` and
/// `local` are written bare and become `Option<Type>`.
macro_rules! wire_object {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( required { $( $(#[$rmeta:meta])* pub $rfield:ident : $rty:ty = $rkey:literal, )* } )?
            $( defaulted { $( $(#[$dmeta:meta])* pub $dfield:ident : $dty:ty = $dkey:literal => $ddef:expr, )* } )?
            $( nullable { $( $(#[$nmeta:meta])* pub $nfield:ident : $nty:ty = $nkey:literal, )* } )?
            $( optional { $( $(#[$ometa:meta])* pub $ofield:ident : $oty:ty = $okey:literal, )* } )?
            $( local { $( $(#[$lmeta:meta])* pub $lfield:ident : $lty:ty = $lkey:literal, )* } )?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($( $(#[$rmeta])* pub $rfield: $rty, )*)?
            $($( $(#[$dmeta])* pub $dfield: $dty, )*)?
            $($( $(#[$nmeta])* pub $nfield: Option<$nty>, )*)?
            $($( $(#[$ometa])* pub $ofield: Option<$oty>, )*)?
            $($( $(#[$lmeta])* pub $lfield: Option<$lty>, )*)?
            /// Fields this version of tollgate does not know, kept verbatim and forwarded.
            pub extra: $crate::types::Extra,
        }

        impl $name {
            /// The JSON names of the fields this type knows (unknown ones go to `extra`).
            pub const KNOWN_FIELDS: &'static [&'static str] =
                &[$($($rkey,)*)? $($($dkey,)*)? $($($nkey,)*)? $($($okey,)*)? $($($lkey,)*)?];

            /// The JSON names of the `optional` fields (written only when set).
            #[allow(dead_code)]
            pub const OPTIONAL_FIELDS: &'static [&'static str] = &[$($($okey,)*)?];

            /// Writes the known (non-local) fields, except those named in `except`,
            /// followed by the unknown ones, into `map`.
            #[allow(unused_variables, dead_code)]
            pub(crate) fn serialize_entries<M: serde::ser::SerializeMap>(
                &self,
                map: &mut M,
                except: &[&str],
            ) -> Result<(), M::Error> {
                $($( if !except.contains(&$rkey) { map.serialize_entry($rkey, &self.$rfield)?; } )*)?
                $($( if !except.contains(&$dkey) { map.serialize_entry($dkey, &self.$dfield)?; } )*)?
                $($( if !except.contains(&$nkey) { map.serialize_entry($nkey, &self.$nfield)?; } )*)?
                $($( if let Some(v) = &self.$ofield { if !except.contains(&$okey) { map.serialize_entry($okey, v)?; } } )*)?
                for (k, v) in self.extra.iter() {
                    if !except.contains(&k) { map.serialize_entry(k, v)?; }
                }
                Ok(())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(None)?;
                self.serialize_entries(&mut map, &[])?;
                map.end()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        $($( let mut $rfield: Option<$rty> = None; )*)?
                        $($( let mut $dfield: Option<$dty> = None; )*)?
                        $($( let mut $nfield: Option<Option<$nty>> = None; )*)?
                        $($( let mut $ofield: Option<Option<$oty>> = None; )*)?
                        $($( let mut $lfield: Option<Option<$lty>> = None; )*)?
                        let mut extra = $crate::types::Extra::new();
                        while let Some(key) = map.next_key::<$crate::types::wire::Key<'de>>()? {
                            match key.as_str() {
                                $($( $rkey => {
                                    if $rfield.is_some() { return Err(serde::de::Error::duplicate_field($rkey)); }
                                    $rfield = Some(map.next_value()?);
                                } )*)?
                                $($( $dkey => {
                                    if $dfield.is_some() { return Err(serde::de::Error::duplicate_field($dkey)); }
                                    $dfield = Some(map.next_value()?);
                                } )*)?
                                $($( $nkey => {
                                    if $nfield.is_some() { return Err(serde::de::Error::duplicate_field($nkey)); }
                                    $nfield = Some(map.next_value()?);
                                } )*)?
                                $($( $okey => {
                                    if $ofield.is_some() { return Err(serde::de::Error::duplicate_field($okey)); }
                                    $ofield = Some(map.next_value()?);
                                } )*)?
                                $($( $lkey => {
                                    if $lfield.is_some() { return Err(serde::de::Error::duplicate_field($lkey)); }
                                    $lfield = Some(map.next_value()?);
                                } )*)?
                                _ => {
                                    let value = map.next_value::<Box<serde_json::value::RawValue>>()?;
                                    extra.push_unique(key.into_boxed(), value)?;
                                }
                            }
                        }
                        Ok($name {
                            $($( $rfield: $rfield.ok_or_else(|| serde::de::Error::missing_field($rkey))?, )*)?
                            $($( $dfield: $dfield.unwrap_or_else(|| $ddef), )*)?
                            $($( $nfield: $nfield.flatten(), )*)?
                            $($( $ofield: $ofield.flatten(), )*)?
                            $($( $lfield: $lfield.flatten(), )*)?
                            extra,
                        })
                    }
                }
                deserializer.deserialize_map(Visitor)
            }
        }
    };
}

pub(crate) use wire_object;

#[cfg(test)]
#[allow(unreachable_pub, dead_code)]
mod tests {
    use super::*;

    wire_object! {
        /// A test object.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Sample {
            required {
                /// a
                pub kind: String = "type",
            }
            defaulted {
                /// z
                pub count: u32 = "count" => 7,
            }
            nullable {
                /// b
                pub finish: String = "finish",
            }
            optional {
                /// c
                pub n: u32 = "n",
            }
            local {
                /// d
                pub secret: String = "secret",
            }
        }
    }

    #[test]
    fn round_trip_keeps_unknown_fields_verbatim() {
        let input = r#"{"type":"x","zeta":1.50,"n":3,"alpha":{"b":[1, 2]}}"#;
        let s: Sample = serde_json::from_str(input).unwrap();
        assert_eq!(s.kind, "x");
        assert_eq!(s.n, Some(3));
        assert_eq!(s.finish, None);
        assert_eq!(s.count, 7);
        assert_eq!(s.extra.len(), 2);
        assert_eq!(s.extra.get("zeta").unwrap().get(), "1.50");
        let out = serde_json::to_string(&s).unwrap();
        assert_eq!(
            out,
            r#"{"type":"x","count":7,"finish":null,"n":3,"zeta":1.50,"alpha":{"b":[1, 2]}}"#
        );
    }

    #[test]
    fn local_fields_are_read_but_not_written() {
        let s: Sample = serde_json::from_str(r#"{"type":"x","secret":"k"}"#).unwrap();
        assert_eq!(s.secret.as_deref(), Some("k"));
        assert!(!serde_json::to_string(&s).unwrap().contains("secret"));
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = serde_json::from_str::<Sample>(r#"{"type":"x","type":"y"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field `type`"), "{err}");
        let err = serde_json::from_str::<Sample>(r#"{"type":"x","u":1,"u":2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field `u`"), "{err}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let err = serde_json::from_str::<Sample>(r#"{"n":1}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `type`"), "{err}");
    }

    #[test]
    fn null_optional_reads_as_absent() {
        let s: Sample = serde_json::from_str(r#"{"type":"x","n":null}"#).unwrap();
        assert_eq!(s.n, None);
    }

    #[test]
    fn escaped_keys_are_matched() {
        let s: Sample = serde_json::from_str(r#"{"t\u0079pe":"x"}"#).unwrap();
        assert_eq!(s.kind, "x");
    }

    #[test]
    fn deep_unknown_fields_are_rejected() {
        let deep = format!(
            r#"{{"type":"x","u":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let err = serde_json::from_str::<Sample>(&deep).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
        let ok = format!(
            r#"{{"type":"x","u":{}"[[[\\"{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(serde_json::from_str::<Sample>(&ok).is_ok());
    }

    #[test]
    fn extra_edits() {
        let mut e = Extra::new();
        e.insert("a", &1).unwrap();
        e.insert("b", "x").unwrap();
        e.insert("a", &2).unwrap();
        assert_eq!(e.get("a").unwrap().get(), "2");
        assert_eq!(e.parse::<String>("b").unwrap().unwrap(), "x");
        assert!(e.remove("a").is_some());
        assert!(!e.contains("a"));
        assert_eq!(e.keys().collect::<Vec<_>>(), vec!["b"]);
    }
}
