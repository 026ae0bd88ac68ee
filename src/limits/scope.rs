//! Whose limits apply to a request.

use super::spec::Limits;
use std::fmt;
use std::sync::Arc;

/// What kind of thing a budget or limit belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    /// The whole gateway (`litellm_settings.max_budget`).
    Global,
    /// A virtual key (id: its SHA-256 hash).
    Key,
    /// A team.
    Team,
    /// An internal user.
    User,
    /// An end user (the request's `user` field).
    EndUser,
}

impl ScopeKind {
    /// `global`, `key`, `team`, `user` or `end_user`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Global => "global",
            ScopeKind::Key => "key",
            ScopeKind::Team => "team",
            ScopeKind::User => "user",
            ScopeKind::EndUser => "end_user",
        }
    }
}

/// One scope: a kind and an id. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// The kind.
    pub kind: ScopeKind,
    /// The id within the kind (key hash, team id, …; empty for global).
    pub id: Arc<str>,
}

impl Scope {
    /// A scope.
    pub fn new(kind: ScopeKind, id: impl Into<Arc<str>>) -> Self {
        Scope {
            kind,
            id: id.into(),
        }
    }

    /// The gateway-wide scope.
    pub fn global() -> Self {
        Scope::new(ScopeKind::Global, "")
    }

    /// A stable storage name: `key:<hash>`, `team:<id>`, `global`.
    pub fn storage_key(&self) -> String {
        match self.kind {
            ScopeKind::Global => "global".to_owned(),
            k => format!("{}:{}", k.as_str(), self.id),
        }
    }

    /// A name safe for logs and error messages: key hashes are shortened.
    pub fn display(&self) -> String {
        match self.kind {
            ScopeKind::Global => "global".to_owned(),
            ScopeKind::Key => {
                let short: String = self.id.chars().take(8).collect();
                format!("key {short}…")
            }
            k => format!("{} {}", k.as_str().replace('_', " "), self.id),
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// A scope with its limits and budget anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Who.
    pub scope: Scope,
    /// Their limits.
    pub limits: Arc<Limits>,
    /// When their budget windows start counting (Unix seconds): creation or
    /// the last explicit reset.
    pub budget_anchor: u64,
    /// How they are named in errors and logs (`key my-alias`, `team t1`);
    /// never a key or its hash.
    pub label: Arc<str>,
}

impl Subject {
    /// A subject anchored at `budget_anchor`.
    pub fn new(scope: Scope, limits: impl Into<Arc<Limits>>, budget_anchor: u64) -> Self {
        Subject {
            label: scope.display().into(),
            scope,
            limits: limits.into(),
            budget_anchor,
        }
    }

    /// Names the subject in errors and logs.
    pub fn with_label(mut self, label: impl Into<Arc<str>>) -> Self {
        self.label = label.into();
        self
    }
}

/// Every subject whose limits apply to a request, besides the gateway's own
/// and the end user's (which the layers add): the key, its team, its user.
/// The auth layer puts it into the request extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subjects(pub Arc<[Subject]>);

impl Subjects {
    /// No subjects.
    pub fn none() -> Self {
        Subjects(Arc::from(Vec::new()))
    }

    /// The subjects.
    pub fn iter(&self) -> impl Iterator<Item = &Subject> {
        self.0.iter()
    }
}

impl From<Vec<Subject>> for Subjects {
    fn from(v: Vec<Subject>) -> Self {
        Subjects(v.into())
    }
}
