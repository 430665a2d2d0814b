//! A network link a test can cut: a relay between a socket that a client connects to (a Unix
//! socket, or a TCP address on a test network) and the server's Unix socket (PostgreSQL's,
//! here), on a thread of its own. [`Link::cut`] drops every
//! connection through it and refuses new ones, as a partition does; [`Link::restore`] lets
//! them through again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixStream};
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
        Self::relay(Entry::Unix(std_listener), listen.to_path_buf(), target)
    }

    /// Relays TCP connections made to `listen` (e.g. a test network's address, so that other
    /// network namespaces reach a server that listens on a Unix socket only) to `target`.
    pub fn tcp(listen: SocketAddr, target: &Path) -> Link {
        let std_listener = std::net::TcpListener::bind(listen).expect("bind the link");
        std_listener.set_nonblocking(true).unwrap();
        Self::relay(Entry::Tcp(std_listener), PathBuf::new(), target)
    }

    fn relay(entry: Entry, listen: PathBuf, target: &Path) -> Link {
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (cut2, gen2, target) = (cut.clone(), generation.clone(), target.to_path_buf());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = entry.into_tokio();
                loop {
                    let Ok(client) = listener.accept().await else {
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
            listen,
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

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum Entry {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Entry {
    fn into_tokio(self) -> Listener {
        match self {
            Entry::Unix(l) => Listener::Unix(UnixListener::from_std(l).unwrap()),
            Entry::Tcp(l) => Listener::Tcp(TcpListener::from_std(l).unwrap()),
        }
    }
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(match self {
            Listener::Unix(l) => Box::new(l.accept().await?.0),
            Listener::Tcp(l) => Box::new(l.accept().await?.0),
        })
    }
}
