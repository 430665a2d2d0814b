//! JSON Schemas of strings with a shape (non-empty, an environment variable name, a socket
//! address), for fields whose Rust type says less.

use backstop_core::env_var::ENV_VAR_NAME_PATTERN;

/// Declares a schema-only type whose JSON Schema is always inlined (never a `$defs` entry).
macro_rules! inline_string_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $schema:tt) => {
        $(#[$doc])*
        pub(crate) struct $ty;

        impl schemars::JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!($schema)
            }
        }
    };
}

inline_string_schema!(
    /// Schema of a non-empty string.
    NonEmptyString,
    "NonEmptyString",
    {"type": "string", "minLength": 1}
);

inline_string_schema!(
    /// Schema of an environment variable name.
    EnvVarName,
    "EnvVarName",
    {"type": "string", "pattern": ENV_VAR_NAME_PATTERN, "examples": ["SLACK_HMAC"]}
);

inline_string_schema!(
    /// Schema of a socket address string (`127.0.0.1:8080`, `[::1]:8080`).
    SocketAddrString,
    "SocketAddr",
    {
        "type": "string",
        "format": "socket-address",
        "examples": ["127.0.0.1:8080", "[::1]:8080"],
    }
);
