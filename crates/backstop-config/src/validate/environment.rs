//! An environment's `params`: each path once, no variable both a value and a secret.

use serde_json::Value;

use crate::yaml::escape_token;

/// `params`: each path once (a file and a folder must not overlap), and no variable both a
/// plain value and a secret.
pub(super) fn check_params(env: &Value, ep: &str, push: &mut impl FnMut(String, String)) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for kind in ["files", "folders"] {
        let Some(list) = env
            .pointer(&format!("/params/{kind}"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for (k, p) in list.iter().enumerate() {
            let Some(path) = p.as_str() else { continue };
            let norm = path.trim_end_matches('/').to_owned();
            let here = format!("{ep}/params/{kind}/{k}");
            let clash = seen.iter().find(|(other, _)| {
                *other == norm
                    || norm.starts_with(&format!("{other}/"))
                    || other.starts_with(&format!("{norm}/"))
            });
            if let Some((other, at)) = clash {
                push(
                    here,
                    format!("`{path}` overlaps `{other}` (at {at}); list each file or folder once"),
                );
            } else {
                seen.push((norm, here));
            }
        }
    }
    if let (Some(vals), Some(secrets)) = (
        env.pointer("/params/env").and_then(Value::as_object),
        env.pointer("/params/secrets").and_then(Value::as_object),
    ) {
        for key in secrets.keys().filter(|k| vals.contains_key(*k)) {
            push(
                format!("{ep}/params/secrets/{}", escape_token(key)),
                format!("`{key}` is both in params.env and params.secrets; keep one"),
            );
        }
    }
}
