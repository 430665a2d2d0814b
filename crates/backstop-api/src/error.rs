//! The body of every failed call.

use serde::{Deserialize, Serialize};

/// The body of every 4xx/5xx answer: `{"error": {"code": …, "message": …, "pointer": …}}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `bad_request`, `not_found`, `conflict`, `gate_blocked`
    /// (409: the promotion gate said no), `unauthorized`, `internal`.
    pub code: String,
    pub message: String,
    /// JSON pointer into the request body, when the error is about one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Machine-readable detail, e.g. every check of a refused gate (`code: gate_blocked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub details: Option<serde_json::Value>,
}

/// The `code` of a refusal by the promotion gate (409).
pub const GATE_BLOCKED: &str = "gate_blocked";

/// The `code` of an override that waits for a second person (409): `details.approval` is the
/// request to approve (`backstop approve ID`).
pub const APPROVAL_REQUIRED: &str = "approval_required";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_leaves_out_what_it_lacks_and_reads_back() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: GATE_BLOCKED.into(),
                message: "the gate refuses".into(),
                pointer: None,
                details: None,
            },
        };
        let text = serde_json::to_string(&body).expect("serializes");
        assert_eq!(
            text,
            r#"{"error":{"code":"gate_blocked","message":"the gate refuses"}}"#
        );
        let back: ErrorBody = serde_json::from_str(
            r#"{"error":{"code":"bad_request","message":"m","pointer":"/env"}}"#,
        )
        .expect("reads back");
        assert_eq!(back.error.pointer.as_deref(), Some("/env"));
        assert!(back.error.details.is_none());
    }
}
