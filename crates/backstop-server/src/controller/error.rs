//! Why a person's request to the controller was refused; the API maps it to an HTTP answer.

use backstop_store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerError {
    /// What the request names does not exist.
    NotFound(String),
    /// The request does not fit the current state (e.g. promoting a failed rollout).
    Conflict(String),
    /// Something broke while serving it.
    Internal(String),
}

impl std::fmt::Display for ControllerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(m) | Self::Conflict(m) | Self::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ControllerError {}

impl From<StoreError> for ControllerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            StoreError::Conflict(what) => Self::Conflict(what),
            other => {
                tracing::error!(error = %other, "Store failed while serving a request.");
                Self::Internal(other.to_string())
            }
        }
    }
}

impl From<anyhow::Error> for ControllerError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<StoreError>() {
            Ok(store) => store.into(),
            Err(other) => Self::Internal(format!("{other:#}")),
        }
    }
}
