//! `traffic`: the block each router needs, and absolute socket and file paths.

use serde_json::Value;

use super::Problem;
use super::semantic::{key_problem, positive_duration};
use crate::yaml::Document;

const ROUTERS_WITH_BLOCKS: [&str; 3] = ["haproxy", "nginx", "command"];

/// `traffic`: the block of the chosen router is required, the others are not allowed; socket
/// and file paths are absolute.
pub(super) fn check_traffic(
    doc: &Document,
    svc: &Value,
    sp: &str,
    router: &str,
    push: &mut impl FnMut(String, String),
    direct: &mut Vec<Problem>,
) {
    let tp = format!("{sp}/traffic");
    let traffic = svc.get("traffic").and_then(Value::as_object);
    let known = router == "builtin" || ROUTERS_WITH_BLOCKS.contains(&router);
    if known {
        for block in ROUTERS_WITH_BLOCKS {
            let present = traffic.is_some_and(|t| t.contains_key(block));
            if block == router && !present {
                let what = match block {
                    "haproxy" => "socket, backend",
                    "nginx" => "upstream_file, upstream",
                    _ => "apply",
                };
                push(
                    format!("{tp}/router"),
                    format!("`router: {block}` needs a `{block}` block under `traffic` ({what})"),
                );
            } else if block != router && present {
                direct.push(key_problem(
                    doc,
                    format!("{tp}/{block}"),
                    format!(
                        "`{block}` settings are only used with `router: {block}` (the router here is `{router}`)"
                    ),
                ));
            }
        }
    }
    let socket_ptr = format!("{tp}/haproxy/socket");
    if let Some(socket) = svc
        .pointer("/traffic/haproxy/socket")
        .and_then(Value::as_str)
        && !socket.trim().is_empty()
        && let Err(message) = crate::model::HaproxySocket::parse(socket)
    {
        push(socket_ptr, message);
    }
    if let Some(file) = svc
        .pointer("/traffic/nginx/upstream_file")
        .and_then(Value::as_str)
        && !file.is_empty()
        && !file.starts_with('/')
    {
        push(
            format!("{tp}/nginx/upstream_file"),
            format!(
                "upstream_file {file:?} must be an absolute path (e.g. /etc/nginx/conf.d/checkout-upstream.conf)"
            ),
        );
    }
    let timeout_ptr = format!("{tp}/command/timeout");
    positive_duration(svc.pointer("/traffic/command/timeout"), &timeout_ptr, push);
}
