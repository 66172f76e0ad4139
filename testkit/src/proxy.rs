//! A TCP fault proxy for tests: between client and control plane, or control plane and node.
//! It forwards bytes (TLS stays end to end) and, when armed, cuts a connection at a chosen point:
//! before the next request reaches the server, in the middle of it, after it but before the
//! answer, or in the middle of the answer. It can also delay or black-hole traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What happens to the next chunk of traffic after arming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Forward everything.
    None,
    /// The next client→server chunk is dropped and the connection closed (the request never
    /// reaches the server).
    BeforeRequest,
    /// Half of the next client→server chunk is forwarded, then the connection is closed.
    MidRequest,
    /// The next server→client chunk (the answer) is dropped and the connection closed.
    AfterRequestBeforeAnswer,
    /// Half of the next server→client chunk is forwarded, then the connection is closed.
    MidAnswer,
    /// Nothing is forwarded either way and nothing is closed.
    BlackHole,
}

#[derive(Debug)]
struct State {
    cut: Cut,
    delay: Duration,
}

/// A running proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: String,
    state: Arc<Mutex<State>>,
    kill: watch::Sender<u64>,
    /// Client→server bytes forwarded.
    pub to_server: Arc<AtomicU64>,
    /// Server→client bytes forwarded.
    pub to_client: Arc<AtomicU64>,
    /// Cuts performed.
    pub cuts: Arc<AtomicU64>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(Mutex::new(State { cut: Cut::None, delay: Duration::ZERO }));
        let (kill, _) = watch::channel(0u64);
        let p = Self {
            addr,
            state,
            kill,
            to_server: Arc::new(AtomicU64::new(0)),
            to_client: Arc::new(AtomicU64::new(0)),
            cuts: Arc::new(AtomicU64::new(0)),
        };
        let pp = p.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let Ok(server) = TcpStream::connect(&target).await else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                tokio::spawn(pp.clone().connection(client, server));
            }
        });
        p
    }

    /// Arms a cut for the next matching chunk (one shot).
    pub fn arm(&self, cut: Cut) {
        self.state.lock().unwrap().cut = cut;
    }

    /// Adds latency to every chunk.
    pub fn delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    /// Closes every open connection now.
    pub fn cut_all(&self) {
        self.kill.send_modify(|v| *v += 1);
    }

    /// Whether an armed cut has happened.
    pub fn armed(&self) -> Cut {
        self.state.lock().unwrap().cut
    }

    async fn connection(self, client: TcpStream, server: TcpStream) {
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let mut kill = self.kill.subscribe();
        kill.borrow_and_update();
        let up = {
            let this = self.clone();
            async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let (cut, delay) = {
                        let mut st = this.state.lock().unwrap();
                        let cut = st.cut;
                        if matches!(cut, Cut::BeforeRequest | Cut::MidRequest) {
                            st.cut = Cut::None;
                        }
                        (cut, st.delay)
                    };
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    match cut {
                        Cut::BeforeRequest => {
                            this.cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Cut::MidRequest => {
                            let _ = sw.write_all(&buf[..n / 2]).await;
                            this.cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Cut::BlackHole => continue,
                        _ => {}
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    this.to_server.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        };
        let down = {
            let this = self.clone();
            async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let (cut, delay) = {
                        let mut st = this.state.lock().unwrap();
                        let cut = st.cut;
                        if matches!(cut, Cut::AfterRequestBeforeAnswer | Cut::MidAnswer) {
                            st.cut = Cut::None;
                        }
                        (cut, st.delay)
                    };
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    match cut {
                        Cut::AfterRequestBeforeAnswer => {
                            this.cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Cut::MidAnswer => {
                            let _ = cw.write_all(&buf[..n / 2]).await;
                            this.cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Cut::BlackHole => continue,
                        _ => {}
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    this.to_client.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        };
        tokio::select! {
            _ = up => {}
            _ = down => {}
            _ = kill.changed() => {}
        }
        // Dropping both halves of both sockets closes the connection.
    }
}
