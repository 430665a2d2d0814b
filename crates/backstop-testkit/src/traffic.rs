//! Steady traffic through a proxy from a background thread, for synchronous tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use backstop_drivers::load::{LoadConfig, LoadGen, LoadStats};

/// The built-in load generator on its own runtime in a thread, counting failures.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<LoadStats>>,
}

impl Traffic {
    pub fn start(proxy_port: u16, rate_per_s: f64) -> Traffic {
        Self::start_at(std::net::Ipv4Addr::LOCALHOST, proxy_port, rate_per_s)
    }

    /// [`Traffic::start`] to a proxy on another (test) host's address.
    pub fn start_at(ip: std::net::Ipv4Addr, proxy_port: u16, rate_per_s: f64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let load = LoadGen::start(LoadConfig {
                    target: (ip, proxy_port).into(),
                    path: "/".into(),
                    rate_per_s,
                    concurrency: 32,
                });
                while !flag.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                load.stop().await
            })
        });
        Traffic {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns (sent, failed).
    pub fn stop(self) -> (u64, u64) {
        let s = self.stop_stats();
        (s.sent, s.failed)
    }

    /// Stops and returns everything the generator counted (e.g. failures per version).
    pub fn stop_stats(mut self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}
