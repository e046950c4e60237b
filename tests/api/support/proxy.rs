//! A TCP proxy the test can sever and restore: a Redis or PostgreSQL
//! outage without touching the machine's servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP proxy to Redis or PostgreSQL that the test can sever and restore.
pub struct Proxy {
    port: u16,
    severed: Arc<AtomicBool>,
    links: Arc<std::sync::Mutex<JoinSet<()>>>,
    /// Redis scripts run through the proxy (`EVAL`/`EVALSHA` commands sent).
    pub scripts: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to the host and port of `url` (any scheme).
    pub async fn to(url: &str) -> Self {
        let parsed = url::Url::parse(url).unwrap();
        let upstream = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(if parsed.scheme() == "redis" {
                6379
            } else {
                5432
            })
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let severed = Arc::new(AtomicBool::new(false));
        let links = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let scripts = Arc::new(AtomicUsize::new(0));
        let (flag, set, counted) = (severed.clone(), links.clone(), scripts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (upstream, counted) = (upstream.clone(), counted.clone());
                set.lock().unwrap().spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&upstream).await {
                        let (mut down_read, mut down_write) = inbound.split();
                        let (mut up_read, mut up_write) = outbound.into_split();
                        tokio::select! {
                            _ = count_scripts(&mut down_read, &mut up_write, &counted) => {}
                            _ = tokio::io::copy(&mut up_read, &mut down_write) => {}
                        }
                    }
                });
            }
        });
        Self {
            port,
            severed,
            links,
            scripts,
        }
    }

    /// The proxy as a Redis URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn through(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).unwrap();
        parsed.set_host(Some("127.0.0.1")).unwrap();
        parsed.set_port(Some(self.port)).unwrap();
        parsed.to_string()
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        self.links.lock().unwrap().abort_all();
    }

    pub fn restore(&self) {
        self.severed.store(false, Ordering::SeqCst);
    }
}

/// Copies a client's bytes to Redis, counting the `EVAL`/`EVALSHA`
/// commands among them (RESP sends each as a bulk string `$4\r\nEVAL` or
/// `$7\r\nEVALSHA`; a match cut by a read is found across the two).
async fn count_scripts(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    count: &AtomicUsize,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        let mut seen = std::mem::take(&mut tail);
        seen.extend_from_slice(&buf[..n]);
        let found = ["$4\r\nEVAL\r\n", "$7\r\nEVALSHA\r\n"]
            .iter()
            .map(|word| {
                seen.windows(word.len())
                    .filter(|w| w == &word.as_bytes())
                    .count()
            })
            .sum::<usize>();
        count.fetch_add(found, Ordering::Relaxed);
        // Keep less than one match, so none is counted twice.
        tail = seen[seen.len().saturating_sub(12)..].to_vec();
    }
}
