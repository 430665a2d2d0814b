//! `severity`: acknowledgement windows against the rollback SLA; regulated services.

use backstop_core::duration::{format_duration, parse_duration};
use backstop_core::tier::Objectives;
use serde_json::Value;

use super::semantic::positive_duration;

/// `severity`: acknowledgement windows above zero and shorter than the rollback SLA; regulated
/// services roll back on every severity.
pub(super) fn check_severity(
    svc: &Value,
    sp: &str,
    tier: Option<u64>,
    push: &mut impl FnMut(String, String),
) {
    let Some(policy) = svc.get("severity").and_then(Value::as_object) else {
        return;
    };
    let envs = svc
        .get("environments")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let regulated = envs
        .iter()
        .find(|e| e.get("regulated").and_then(Value::as_bool) == Some(true))
        .map(|e| e.get("name").and_then(Value::as_str).unwrap_or("?"));
    // The strictest rollback SLA over the environments, and where it applies.
    let service_sla = svc
        .pointer("/objectives/rollback_sla")
        .and_then(Value::as_str)
        .and_then(|s| parse_duration(s).ok())
        .filter(|d| !d.is_zero())
        .or_else(|| {
            tier.and_then(|t| Objectives::for_tier(u8::try_from(t).unwrap_or(3)).rollback_sla)
        });
    let strictest = envs
        .iter()
        .filter_map(|e| {
            let own = e
                .get("rollback_sla")
                .and_then(Value::as_str)
                .and_then(|s| parse_duration(s).ok())
                .filter(|d| !d.is_zero());
            let name = e.get("name").and_then(Value::as_str).unwrap_or("?");
            own.or(service_sla).map(|d| (d, name))
        })
        .min_by_key(|(d, _)| *d);
    for severity in ["critical", "major", "minor"] {
        let Some(action) = policy.get(severity) else {
            continue;
        };
        let ptr = format!("{sp}/severity/{severity}");
        let name = match action {
            Value::String(s) => s.as_str(),
            Value::Object(m) if m.len() == 1 && m.contains_key("rollback_unless_acknowledged") => {
                "rollback_unless_acknowledged"
            }
            // Anything else is reported by the schema.
            _ => continue,
        };
        if let Some(env) = regulated
            && name != "rollback"
        {
            push(
                ptr.clone(),
                format!(
                    "`{name}` is not allowed: environment `{env}` is regulated, so automatic rollback is mandatory (use `rollback`)"
                ),
            );
            continue;
        }
        let ack_ptr = format!("{ptr}/rollback_unless_acknowledged");
        if let Some(ack) =
            positive_duration(action.get("rollback_unless_acknowledged"), &ack_ptr, push)
            && let Some((sla, env)) = strictest
            && ack >= sla
        {
            push(
                ack_ptr,
                format!(
                    "the acknowledgement window ({}) must be shorter than the rollback SLA ({} in environment `{env}`): an unacknowledged failure would breach the SLA before the rollback starts",
                    format_duration(ack),
                    format_duration(sla)
                ),
            );
        }
    }
}
