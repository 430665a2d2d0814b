//! The one rule for names of environment variables Backstop sets on instances and scripts
//! (`run.env`, `params.env` and secrets in the config, a release's `env` in the API).

/// Pattern of an environment variable name: A-Z, 0-9 and `_`, not starting with a digit.
pub const ENV_VAR_NAME_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";

/// The rule in words, for messages.
pub const ENV_VAR_NAME_RULE: &str = "use A-Z, 0-9 and _, not starting with a digit";

/// Whether `name` follows [`ENV_VAR_NAME_PATTERN`].
#[must_use]
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["LOG_LEVEL", "_X", "A1", "X"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["", "1FOO", "log_level", "A-B", "A B"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }
}
