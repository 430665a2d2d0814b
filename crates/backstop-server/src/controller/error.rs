//! Why a person's request to the controller was refused; the API maps it to an HTTP answer.

use backstop_store::StoreError;

/// (Serializable: a replica that runs a command for another one sends its answer back through
/// the store.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum ControllerError {
    /// What the request names does not exist.
    NotFound(String),
    /// The request does not fit the current state (e.g. promoting a failed rollout).
    Conflict(String),
    /// The store refuses writes (disk full, I/O error, read-only file system): nothing was
    /// done, and the controller is failing safe until writes work again.
    StoreUnwritable(String),
    /// Another replica took the work's lease over while this one served it: the store
    /// refused the write, so nothing was changed.
    TakenOver(String),
    /// Something broke while serving it.
    Internal(String),
}

impl std::fmt::Display for ControllerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(m) | Self::Conflict(m) | Self::Internal(m) => f.write_str(m),
            Self::TakenOver(why) => write!(
                f,
                "another replica took this work over meanwhile ({why}); nothing was changed: ask again"
            ),
            Self::StoreUnwritable(reason) => write!(
                f,
                "the store refuses writes ({reason}); nothing was changed, canaries are out of traffic and no step starts until writes work again"
            ),
        }
    }
}

impl std::error::Error for ControllerError {}

impl From<StoreError> for ControllerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::Fenced(why) => Self::TakenOver(why),
            other if other.is_write_failure() => Self::StoreUnwritable(other.to_string()),
            other => {
                tracing::error!(error = %other, "Store failed while serving a request.");
                Self::Internal(other.to_string())
            }
        }
    }
}

impl From<anyhow::Error> for ControllerError {
    fn from(e: anyhow::Error) -> Self {
        if let Some(reason) = super::fail_safe::write_failure(&e) {
            return Self::StoreUnwritable(reason);
        }
        if let Some(why) = super::leases::fenced_write(&e) {
            return Self::TakenOver(why);
        }
        match e.downcast::<StoreError>() {
            Ok(store) => store.into(),
            Err(other) => Self::Internal(format!("{other:#}")),
        }
    }
}
