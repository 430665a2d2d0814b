//! JSON Schemas of strings with a shape (non-empty, an environment variable name, a socket
//! address), for fields whose Rust type says less.

use backstop_core::env_var::ENV_VAR_NAME_PATTERN;

use backstop_core::inline_string_schema;

/// Schema of a non-empty string.
pub(crate) struct NonEmptyString;

inline_string_schema!(
    NonEmptyString,
    "NonEmptyString",
    {"type": "string", "minLength": 1}
);

/// Schema of an environment variable name.
pub(crate) struct EnvVarName;

inline_string_schema!(
    EnvVarName,
    "EnvVarName",
    {"type": "string", "pattern": ENV_VAR_NAME_PATTERN, "examples": ["SLACK_HMAC"]}
);

/// Schema of a socket address string (`127.0.0.1:8080`, `[::1]:8080`).
pub(crate) struct SocketAddrString;

inline_string_schema!(
    SocketAddrString,
    "SocketAddr",
    {
        "type": "string",
        "format": "socket-address",
        "examples": ["127.0.0.1:8080", "[::1]:8080"],
    }
);
