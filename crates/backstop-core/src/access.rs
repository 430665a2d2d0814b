//! Who may do what: the roles people hold, and the API tokens that carry them.
//!
//! Roles form a ladder, each holding everything below it: a viewer reads; a deployer adds
//! releases, starts rollouts and snapshots config; a releaser promotes, aborts and rolls back; an
//! incident commander also freezes deployments and resets circuit breakers; an admin also manages
//! tokens. A token may be limited to one environment: there it holds its role, anywhere else it
//! only reads.

use serde::{Deserialize, Serialize};

use crate::Millis;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Viewer,
    Deployer,
    Releaser,
    IncidentCommander,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Deployer,
        Role::Releaser,
        Role::IncidentCommander,
        Role::Admin,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Releaser => "releaser",
            Role::IncidentCommander => "incident-commander",
            Role::Admin => "admin",
        }
    }

    /// Whether holding `self` allows what `needed` allows.
    #[must_use]
    pub fn includes(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?} (expected one of: {})",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })
    }
}

/// A stored API token: never the token itself, only its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// Who holds it; the audit names this (`token:NAME`).
    pub name: String,
    pub role: Role,
    /// Holds `role` only in this environment (reads elsewhere); `None` = everywhere.
    pub env: Option<String>,
    #[serde(skip)]
    pub hash: String,
    pub created_at_ms: Millis,
    pub created_by: String,
    pub expires_at_ms: Option<Millis>,
    pub revoked_at_ms: Option<Millis>,
    pub revoked_by: Option<String>,
}

impl TokenRecord {
    /// Why this token cannot be used at `now`, if it cannot.
    #[must_use]
    pub fn unusable(&self, now: Millis) -> Option<&'static str> {
        if self.revoked_at_ms.is_some() {
            Some("revoked")
        } else if self.expires_at_ms.is_some_and(|t| t <= now) {
            Some("expired")
        } else {
            None
        }
    }
}

/// What a caller may do: a role, everywhere or in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub env: Option<String>,
}

impl Grant {
    /// The role this grant holds in `env` (`None`: an action tied to no environment).
    #[must_use]
    pub fn role_in(&self, env: Option<&str>) -> Role {
        match (&self.env, env) {
            (None, _) => self.role,
            (Some(own), Some(env)) if own == env => self.role,
            // Scoped to one environment: its role also covers actions tied to none (adding a
            // release), but never the admin's, which are about everyone.
            (Some(_), None) => self.role.min(Role::IncidentCommander),
            (Some(_), Some(_)) => Role::Viewer,
        }
    }

    /// `Ok` when the grant allows an action needing `needed` in `env`; else what is missing,
    /// naming the role (the 403 message).
    pub fn allows(&self, needed: Role, env: Option<&str>) -> Result<(), String> {
        if self.role_in(env).includes(needed) {
            return Ok(());
        }
        let place = env.map_or(String::new(), |e| format!(" in environment {e}"));
        let held = match &self.env {
            Some(own) => format!("{} in environment {own} only", self.role),
            None => self.role.to_string(),
        };
        Err(format!(
            "this needs the role {needed}{place} (or higher); the caller holds {held}"
        ))
    }
}

/// A token name: letters, digits, `.`, `_`, `-`, `@`; 1 to 64 characters.
///
/// # Errors
/// What is wrong with it.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid token name {name:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_form_a_ladder_and_read_back() {
        for (i, r) in Role::ALL.into_iter().enumerate() {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            for (j, other) in Role::ALL.into_iter().enumerate() {
                assert_eq!(r.includes(other), i >= j);
            }
        }
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.contains("incident-commander"), "{err}");
    }

    #[test]
    fn a_scoped_grant_holds_its_role_only_in_its_environment() {
        let g = Grant {
            role: Role::Releaser,
            env: Some("prod".into()),
        };
        assert!(g.allows(Role::Releaser, Some("prod")).is_ok());
        assert!(g.allows(Role::Viewer, Some("staging")).is_ok());
        let err = g.allows(Role::Releaser, Some("staging")).unwrap_err();
        assert!(err.contains("releaser in environment staging"), "{err}");
        assert!(err.contains("releaser in environment prod only"), "{err}");
        assert!(g.allows(Role::Deployer, None).is_ok());
        let admin = Grant {
            role: Role::Admin,
            env: Some("prod".into()),
        };
        assert!(admin.allows(Role::Admin, None).is_err());
    }

    #[test]
    fn expired_and_revoked_tokens_are_unusable() {
        let mut t = TokenRecord {
            name: "alice".into(),
            role: Role::Viewer,
            env: None,
            hash: String::new(),
            created_at_ms: 0,
            created_by: "token:admin".into(),
            expires_at_ms: Some(100),
            revoked_at_ms: None,
            revoked_by: None,
        };
        assert_eq!(t.unusable(99), None);
        assert_eq!(t.unusable(100), Some("expired"));
        t.revoked_at_ms = Some(50);
        assert_eq!(t.unusable(10), Some("revoked"));
        assert!(check_token_name("alice@example.com").is_ok());
        assert!(check_token_name("").is_err());
        assert!(check_token_name("a b").is_err());
    }
}
