//! Per-version request and error counts from per-server counters. HAProxy counts per server,
//! not per version, and a server's address (so its version) changes on a switch: what it counted
//! so far is banked for the version it ran; counters that go down (a restart) are banked too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use super::servers::ServerCounters;
use crate::proxy::VersionStats;
use crate::router::unknown_version;

#[derive(Debug, Default)]
struct Slot {
    version: Option<String>,
    base: ServerCounters,
    last: ServerCounters,
}

#[derive(Debug, Default)]
struct VersionAcc {
    closed: ServerCounters,
    first_request_at: Option<SystemTime>,
    last_error_at: Option<SystemTime>,
    seen: ServerCounters,
}

#[derive(Debug, Default)]
pub(super) struct Memory {
    pub(super) versions: BTreeMap<SocketAddr, String>,
    slots: BTreeMap<String, Slot>,
    acc: BTreeMap<String, VersionAcc>,
}

impl Memory {
    pub(super) fn label(&self, addr: SocketAddr) -> String {
        self.versions
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| unknown_version(addr))
    }

    /// Feeds a fresh reading of `server`'s counters, attributing them to `version`.
    pub(super) fn observe(&mut self, server: &str, version: &str, raw: ServerCounters) {
        let slot = self.slots.entry(server.to_owned()).or_default();
        if raw.requests < slot.last.requests || raw.errors < slot.last.errors {
            // HAProxy restarted or counters were cleared: bank what was counted, start over.
            if let Some(v) = &slot.version {
                let acc = self.acc.entry(v.clone()).or_default();
                acc.closed.requests += slot.last.requests.saturating_sub(slot.base.requests);
                acc.closed.errors += slot.last.errors.saturating_sub(slot.base.errors);
            }
            slot.base = ServerCounters::default();
        }
        slot.last = raw;
        match &slot.version {
            // First look at this server: everything it counted belongs to what it runs now.
            None => slot.version = Some(version.to_owned()),
            Some(v) if v != version => {
                let acc = self.acc.entry(v.clone()).or_default();
                acc.closed.requests += raw.requests.saturating_sub(slot.base.requests);
                acc.closed.errors += raw.errors.saturating_sub(slot.base.errors);
                slot.version = Some(version.to_owned());
                slot.base = raw;
            }
            Some(_) => {}
        }
        self.acc.entry(version.to_owned()).or_default();
    }

    pub(super) fn snapshot(&mut self) -> Vec<VersionStats> {
        let now = SystemTime::now();
        let mut totals: BTreeMap<String, ServerCounters> = self
            .acc
            .iter()
            .map(|(v, a)| (v.clone(), a.closed))
            .collect();
        for slot in self.slots.values() {
            if let Some(v) = &slot.version {
                let t = totals.entry(v.clone()).or_default();
                t.requests += slot.last.requests.saturating_sub(slot.base.requests);
                t.errors += slot.last.errors.saturating_sub(slot.base.errors);
            }
        }
        totals
            .into_iter()
            .map(|(version, t)| {
                let acc = self.acc.entry(version.clone()).or_default();
                if t.requests > 0 && acc.first_request_at.is_none() {
                    acc.first_request_at = Some(now);
                }
                if t.errors > acc.seen.errors {
                    acc.last_error_at = Some(now);
                }
                acc.seen = t;
                VersionStats {
                    version,
                    requests: t.requests,
                    errors: t.errors,
                    latency_buckets_ms: Vec::new(),
                    latency_sum_ms: 0.0,
                    first_request_at: acc.first_request_at,
                    last_error_at: acc.last_error_at,
                }
            })
            .collect()
    }
}
