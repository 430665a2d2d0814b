//! Test hosts on one machine: network namespaces (`ip netns`), each joined to a bridge in the
//! test's own namespace by a veth pair, on a /24 of their own. A host's link can be cut (its
//! veth taken down on the bridge side) and restored. Needs root, as CI has; everything the lab
//! made is removed when it drops (after the processes in it, which the test ends first).

use std::net::Ipv4Addr;
use std::process::Command;

/// Whether this process may make network namespaces (root, and `ip` installed).
pub fn available() -> bool {
    is_root()
        && Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Whether the effective user is root (from `/proc/self/status`: `Uid: real effective …`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge and the hosts on it.
pub struct Lab {
    tag: String,
    subnet: [u8; 3],
    bridge: String,
    hosts: Vec<String>,
}

/// One test host: a network namespace with an address on the lab's bridge.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// `ip netns exec NS`: the prefix of a command run on this host.
    pub netns: String,
    pub ip: Ipv4Addr,
    /// The veth end on the bridge: down is a cut link.
    link: String,
}

impl Lab {
    /// A new bridge on a /24 chosen from this process's id and a count of the labs it made
    /// (tests run as processes, or as threads of one).
    pub fn new() -> Lab {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let n = (std::process::id().wrapping_mul(7).wrapping_add(made)) % 250;
        let tag = format!("bs{n}");
        let subnet = [10, 213, u8::try_from(n).unwrap()];
        let bridge = format!("{tag}br");
        // Left over by a killed earlier run with the same id: gone first.
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let gateway = format!("{}.{}.{}.1/24", subnet[0], subnet[1], subnet[2]);
        ip(&["addr", "add", &gateway, "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        Lab {
            tag,
            subnet,
            bridge,
            hosts: Vec::new(),
        }
    }

    /// The address of the test's own namespace on the bridge (where servers the test runs
    /// itself, PostgreSQL's link say, are reached from the hosts).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], 1)
    }

    /// Adds host `name` (the `index`-th, from 0) at `.10+index`.
    pub fn host(&mut self, name: &str) -> Host {
        let index = self.hosts.len();
        let netns = format!("{}-{name}", self.tag);
        let link = format!("{}h{index}", self.tag);
        let inner = format!("{}i{index}", self.tag);
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        ip(&["netns", "add", &netns]);
        self.hosts.push(netns.clone());
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &inner]);
        ip(&["link", "set", &inner, "netns", &netns]);
        ip(&["link", "set", &link, "master", &self.bridge]);
        ip(&["link", "set", &link, "up"]);
        let host_ip = Ipv4Addr::new(
            self.subnet[0],
            self.subnet[1],
            self.subnet[2],
            u8::try_from(10 + index).unwrap(),
        );
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        exec(&["link", "set", "lo", "up"]);
        exec(&["addr", "add", &format!("{host_ip}/24"), "dev", &inner]);
        exec(&["link", "set", &inner, "up"]);
        exec(&[
            "route",
            "add",
            "default",
            "via",
            &self.gateway().to_string(),
        ]);
        Host {
            name: name.to_string(),
            netns,
            ip: host_ip,
            link,
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for netns in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", netns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

impl Host {
    /// The command prefix that runs a program on this host.
    pub fn prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.netns.clone(),
        ]
    }

    /// Cuts its link: nothing crosses between it and the other hosts (or the test) until
    /// [`Host::restore`].
    pub fn cut(&self) {
        ip(&["link", "set", &self.link, "down"]);
    }

    pub fn restore(&self) {
        ip(&["link", "set", &self.link, "up"]);
    }

    /// `GET http://127.0.0.1:PORT/` made on this host (by curl), as a user there: the answer's
    /// head and body, or `None` when nothing answered.
    pub fn http_get_here(&self, port: u16) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "curl", "-s", "-i", "-m", "5"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("run curl in the host's namespace");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_lowercase())
    }
}
