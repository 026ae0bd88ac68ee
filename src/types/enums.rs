//! String enums of the OpenAI wire format, each with an `Other` arm so a value
//! added upstream next month parses instead of failing the request.

/// Declares a string enum with an `Other(Box<str>)` fallback arm.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version of tollgate does not know, kept verbatim.
            Other(Box<str>),
        }

        impl $name {
            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Other(s) => s,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(match s {
                    $( $text => $name::$variant, )*
                    other => $name::Other(other.into()),
                })
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s.parse() {
                    Ok(v) => v,
                    Err(never) => match never {},
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let key = <$crate::types::wire::Key<'de>>::deserialize(d)?;
                Ok($name::from(key.as_str()))
            }
        }
    };
}

string_enum! {
    /// The author of a chat message.
    pub enum Role {
        /// Instructions from the application.
        System = "system",
        /// Instructions from the developer (o-series models); treated as `system` by translators.
        Developer = "developer",
        /// The end user.
        User = "user",
        /// The model.
        Assistant = "assistant",
        /// The result of a tool call.
        Tool = "tool",
        /// The result of a legacy function call.
        Function = "function",
    }
}

string_enum! {
    /// Why the model stopped generating.
    pub enum FinishReason {
        /// Natural end or a stop sequence.
        Stop = "stop",
        /// The token limit was reached.
        Length = "length",
        /// The model called one or more tools.
        ToolCalls = "tool_calls",
        /// Output was withheld by a content filter.
        ContentFilter = "content_filter",
        /// The model called a legacy function.
        FunctionCall = "function_call",
    }
}

string_enum! {
    /// The `type` of a content part.
    pub enum PartType {
        /// `{"type":"text","text":..}`
        Text = "text",
        /// `{"type":"image_url","image_url":{"url":..}}`
        ImageUrl = "image_url",
        /// `{"type":"input_audio","input_audio":{"data":..,"format":..}}`
        InputAudio = "input_audio",
        /// `{"type":"file","file":{..}}`
        File = "file",
        /// `{"type":"refusal","refusal":..}` (assistant history)
        Refusal = "refusal",
    }
}

string_enum! {
    /// The `type` of a `response_format`.
    pub enum ResponseFormatType {
        /// Plain text.
        Text = "text",
        /// Any JSON object.
        JsonObject = "json_object",
        /// JSON conforming to a schema.
        JsonSchema = "json_schema",
    }
}

string_enum! {
    /// How hard a reasoning model should think.
    pub enum ReasoningEffort {
        /// No reasoning (where supported).
        None = "none",
        /// Minimal reasoning.
        Minimal = "minimal",
        /// Low effort.
        Low = "low",
        /// Medium effort.
        Medium = "medium",
        /// High effort.
        High = "high",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_kept() {
        let r: Role = serde_json::from_str(r#""ipython""#).unwrap();
        assert_eq!(r, Role::Other("ipython".into()));
        assert_eq!(serde_json::to_string(&r).unwrap(), r#""ipython""#);
        let f: FinishReason = serde_json::from_str(r#""length""#).unwrap();
        assert_eq!(f, FinishReason::Length);
    }
}
