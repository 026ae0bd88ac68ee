//! [`Secret`]: a string that never prints itself.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A credential (provider key, master key, virtual key). `Debug` and `Display`
/// print `<redacted>`, it has no `Serialize`, and comparisons are constant-time,
/// so it cannot leak into logs, error bodies or traces by accident.
///
/// ```
/// use tollgate::Secret;
///
/// let key = Secret::new("sk-live-123");
/// assert_eq!(format!("{key:?}"), "Secret(<redacted>)");
/// assert_eq!(key.expose(), "sk-live-123");
/// assert!(key.matches("sk-live-123"));
/// assert!(!key.matches("sk-live-124"));
/// ```
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The credential itself. Call only where it is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a candidate credential.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = self.0.as_bytes();
        let b = candidate.as_bytes();
        // Lengths are compared in the open: the length of a key is not secret
        // in any scheme we use (fixed-format keys).
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}
