//! A network link a test can cut: a relay between a Unix socket that a client connects to and
//! the server's socket (PostgreSQL's, here), on a thread of its own. [`Link::cut`] drops every
//! connection through it and refuses new ones, as a partition does; [`Link::restore`] lets
//! them through again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

pub struct Link {
    listen: PathBuf,
    cut: Arc<AtomicBool>,
    /// Each cut is a new value: connections through the relay end when it changes.
    generation: watch::Sender<u64>,
    _thread: std::thread::JoinHandle<()>,
}

impl Link {
    /// Relays connections made to `listen` to `target` (both Unix socket paths).
    pub fn start(listen: &Path, target: &Path) -> Link {
        let _ = std::fs::remove_file(listen);
        let std_listener = std::os::unix::net::UnixListener::bind(listen).expect("bind the link");
        std_listener.set_nonblocking(true).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (cut2, gen2, target) = (cut.clone(), generation.clone(), target.to_path_buf());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = UnixListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    if cut2.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut ended = gen2.subscribe();
                    let target = target.clone();
                    tokio::spawn(async move {
                        let Ok(server) = UnixStream::connect(&target).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = ended.changed() => {}
                        }
                    });
                }
            });
        });
        Link {
            listen: listen.to_path_buf(),
            cut,
            generation,
            _thread: thread,
        }
    }

    /// Drops every connection through the link and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// The socket clients connect to.
    pub fn path(&self) -> &Path {
        &self.listen
    }
}
