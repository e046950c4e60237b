//! A load client that follows the rotating cookies of `POST /auth/refresh`
//! (wrk's Lua cannot: every answer replaces the refresh token and the CSRF
//! token the next request must send):
//!
//!     refresh_load BASE_URL SESSIONS_FILE CONNECTIONS SECONDS
//!
//! SESSIONS_FILE has one signed-in session per line,
//! `session_token refresh_token csrf_token`; each connection takes its own.
//! Prints one JSON object: requests, errors (non-200), req/s, p50/p99/max ms.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Session {
    access: String,
    refresh: String,
    csrf: String,
}

/// The value of cookie `name` in a `Set-Cookie` line, if it is that cookie.
fn set_cookie<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let pair = line.split(';').next()?;
    let (k, v) = pair.split_once('=')?;
    (k.trim() == name && !v.is_empty()).then_some(v)
}

async fn run(
    addr: String,
    host: String,
    mut session: Session,
    until: Instant,
) -> anyhow::Result<(Vec<u32>, u64)> {
    let stream = TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    while Instant::now() < until {
        let request = Request::post("/auth/refresh")
            .header("host", &host)
            .header(
                "cookie",
                format!(
                    "chronos_session={}; chronos_refresh={}; chronos_csrf={}",
                    session.access, session.refresh, session.csrf
                ),
            )
            .header("x-csrf-token", &session.csrf)
            .body(Empty::<Bytes>::new())?;
        let started = Instant::now();
        let response = sender.send_request(request).await?;
        let status = response.status();
        for line in response.headers().get_all("set-cookie") {
            let line = line.to_str().unwrap_or_default();
            if let Some(v) = set_cookie(line, "chronos_session") {
                session.access = v.to_string();
            } else if let Some(v) = set_cookie(line, "chronos_refresh") {
                session.refresh = v.to_string();
            } else if let Some(v) = set_cookie(line, "chronos_csrf") {
                session.csrf = v.to_string();
            }
        }
        response.into_body().collect().await?;
        latencies.push(started.elapsed().as_micros() as u32);
        if status != 200 {
            errors += 1;
        }
    }
    Ok((latencies, errors))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, file, connections, seconds] = args.as_slice() else {
        anyhow::bail!("usage: refresh_load BASE_URL SESSIONS_FILE CONNECTIONS SECONDS");
    };
    let url = url::Url::parse(base)?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let addr = format!("{host}:{}", url.port_or_known_default().unwrap_or(80));
    let connections: usize = connections.parse()?;
    let duration = Duration::from_secs(seconds.parse()?);
    let sessions: Vec<Session> = std::fs::read_to_string(file)?
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some(Session {
                access: parts.next()?.to_string(),
                refresh: parts.next()?.to_string(),
                csrf: parts.next()?.to_string(),
            })
        })
        .take(connections)
        .collect();
    anyhow::ensure!(
        sessions.len() == connections,
        "need {connections} sessions in {file}"
    );
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::spawn(run(addr.clone(), host.clone(), s, until)))
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, e) = task.await??;
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{{\"requests\": {}, \"errors\": {}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    Ok(())
}
