//! A real `backstop agent serve` process (one host's data plane) with its own token and state
//! folder; optionally inside a network namespace (`prefix`: `ip netns exec NS`).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::{backstop_bin, instance_pids, patience};

pub struct Agent {
    child: Option<Child>,
    pub name: String,
    pub address: SocketAddr,
    pub state_dir: PathBuf,
    /// The token replicas call it with (`agents[].token_env`).
    pub token: String,
    prefix: Vec<String>,
}

impl Agent {
    /// Makes a token for `state_dir` and starts the agent `name` on `address`.
    pub fn start(name: &str, state_dir: &Path, address: SocketAddr) -> Agent {
        Self::start_in(&[], name, state_dir, address)
    }

    /// [`Agent::start`] with its process run through `prefix` (e.g. `ip netns exec h1`).
    pub fn start_in(prefix: &[&str], name: &str, state_dir: &Path, address: SocketAddr) -> Agent {
        std::fs::create_dir_all(state_dir).unwrap();
        let out = Command::new(backstop_bin())
            .args(["agent", "token", "--output", "json", "--state-dir"])
            .arg(state_dir)
            .output()
            .expect("run backstop agent token");
        assert!(out.status.success(), "{out:?}");
        let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut agent = Agent {
            child: None,
            name: name.to_string(),
            address,
            state_dir: state_dir.to_path_buf(),
            token: made["token"].as_str().unwrap().to_string(),
            prefix: prefix.iter().map(ToString::to_string).collect(),
        };
        agent.restart();
        agent
    }

    /// The `agents:` entry of a config for it, its token in `token_env`.
    pub fn config_entry(&self, token_env: &str) -> String {
        format!(
            "  - name: {}\n    address: {}\n    token_env: {token_env}\n",
            self.name, self.address
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the agent runs").id()
    }

    pub fn log_path(&self) -> PathBuf {
        self.state_dir.with_extension("agent.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts it (again), and waits until it accepts connections.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let (program, args): (PathBuf, Vec<String>) = match self.prefix.split_first() {
            None => (backstop_bin(), Vec::new()),
            Some((first, rest)) => {
                let mut args = rest.to_vec();
                args.push(backstop_bin().display().to_string());
                (PathBuf::from(first), args)
            }
        };
        let child = Command::new(program)
            .args(args)
            .args(["agent", "serve", "--name", &self.name, "--listen"])
            .arg(self.address.to_string())
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start backstop agent serve");
        self.child = Some(child);
        let deadline = Instant::now() + patience();
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("agent exited with {status}; log:\n{}", self.log());
            }
            if std::net::TcpStream::connect(self.address).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agent did not start; log:\n{}", self.log());
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Stops it (SIGTERM; SIGKILL after the patience); its instances keep running.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + patience();
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    /// Ends the agent and the instances it started (their process groups, found by their logs
    /// in its state folder).
    fn drop(&mut self) {
        self.stop();
        for pgid in instance_pids(&self.state_dir) {
            let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
        }
    }
}
