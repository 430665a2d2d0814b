//! What HAProxy's runtime API says about the servers of a backend: `show servers state`
//! (address, weight, admin and health-check state) and `show stat` (per-server counters).

use std::net::{IpAddr, SocketAddr};

/// Admin state of a server as Backstop uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

impl Admin {
    pub(super) fn word(self) -> &'static str {
        match self {
            Admin::Ready => "ready",
            Admin::Drain => "drain",
            Admin::Maint => "maint",
        }
    }
}

/// One server as read from `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub name: String,
    pub addr: Option<SocketAddr>,
    /// 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    /// HAProxy's `srv_admin_state` bits.
    pub admin_bits: u32,
    /// User weight (`srv_uweight`).
    pub weight: u32,
    /// `srv_check_state` bits (0x04: health checks enabled).
    pub check_state: u32,
    /// `srv_check_result` of the last check (3 passed, 4 passed conditionally, 2 failed).
    pub check_result: u32,
}

// srv_admin_state bits (HAProxy's SRV_ADMF_*). CMAINT (0x04, `disabled` in the config) stays set
// after `state ready` and does not by itself keep the server in maintenance.
const ADMF_MAINT: u32 = 0x01 | 0x02 | 0x20 | 0x40;
const ADMF_DRAIN: u32 = 0x08 | 0x10;
const CHK_ST_ENABLED: u32 = 0x04;

impl ServerState {
    pub fn admin(&self) -> Admin {
        if self.admin_bits & ADMF_MAINT != 0 {
            Admin::Maint
        } else if self.admin_bits & ADMF_DRAIN != 0 {
            Admin::Drain
        } else {
            Admin::Ready
        }
    }

    /// Up, and when health-checked, its last check passed (HAProxy reports a server that just
    /// left maintenance as running before its first check has run).
    pub fn running(&self) -> bool {
        self.op_state == 2
            && (self.check_state & CHK_ST_ENABLED == 0 || matches!(self.check_result, 3 | 4))
    }

    /// Weight that takes new requests (0 unless ready and up).
    pub(super) fn effective_weight(&self) -> u32 {
        if self.admin() == Admin::Ready && self.running() {
            self.weight
        } else {
            0
        }
    }
}

/// Raw per-server counters from `show stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    pub requests: u64,
    pub errors: u64,
}

/// Parses `show servers state` (format version 1) rows of `backend`.
pub fn parse_servers_state(text: &str, backend: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next().map(str::trim) {
        Some("1") => {}
        Some(v) => {
            return Err(format!(
                "unexpected first line `{v}` (want format version 1)"
            ));
        }
        None => return Err("empty answer".into()),
    }
    let header: Vec<&str> = lines
        .next()
        .and_then(|h| h.strip_prefix('#'))
        .ok_or("no `#` header line")?
        .split_whitespace()
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("no column {name}"))
    };
    let (chk_state, chk_result) = (col("srv_check_state")?, col("srv_check_result")?);
    let (be, name, addr, port, op, admin, uw) = (
        col("be_name")?,
        col("srv_name")?,
        col("srv_addr")?,
        col("srv_port")?,
        col("srv_op_state")?,
        col("srv_admin_state")?,
        col("srv_uweight")?,
    );
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| format!("row `{line}` has no column {}", header[i]))
        };
        if get(be)? != backend {
            continue;
        }
        let num = |i: usize| -> Result<u32, String> {
            let v = get(i)?;
            v.parse()
                .map_err(|_| format!("column {} is `{v}`, not a number", header[i]))
        };
        let a = get(addr)?;
        let p = get(port)?;
        let addr = match (a.parse::<IpAddr>(), p.parse::<u16>()) {
            (Ok(ip), Ok(port)) => Some(SocketAddr::new(ip, port)),
            _ => None,
        };
        out.push(ServerState {
            name: get(name)?.to_owned(),
            addr,
            op_state: num(op)?,
            admin_bits: num(admin)?,
            weight: num(uw)?,
            check_state: num(chk_state)?,
            check_result: num(chk_result)?,
        });
    }
    Ok(out)
}

/// Parses `show stat` CSV into (proxy, server, counters) rows (see the module docs for what
/// is counted).
pub fn parse_stat_csv(text: &str) -> Result<Vec<(String, String, ServerCounters)>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or("no `# ` CSV header line")?
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("no column {name}"))
    };
    let req_cols = [
        col("hrsp_1xx")?,
        col("hrsp_2xx")?,
        col("hrsp_3xx")?,
        col("hrsp_4xx")?,
        col("hrsp_5xx")?,
        col("hrsp_other")?,
    ];
    let (c5, eresp, econ) = (col("hrsp_5xx")?, col("eresp")?, col("econ")?);
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let n = |i: usize| -> Result<u64, String> {
            match f.get(i).copied() {
                None | Some("") => Ok(0),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("column {} is `{v}`, not a count", header[i])),
            }
        };
        let failures = n(eresp)? + n(econ)?;
        let mut requests = failures;
        for c in req_cols {
            requests += n(c)?;
        }
        out.push((
            f.first().copied().unwrap_or_default().to_owned(),
            f.get(1).copied().unwrap_or_default().to_owned(),
            ServerCounters {
                requests,
                errors: n(c5)? + failures,
            },
        ));
    }
    Ok(out)
}
