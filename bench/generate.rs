//! Builds a realistic database for the scale benchmark, through the
//! server's own schema (migrations) and token code:
//!
//!     generate DATA_DIR [ACCOUNTS] [SESSIONS] [REVOCATIONS] [TOKENS]
//!
//! defaults 1,000,000 accounts, 1,000,000 live sessions (one per account),
//! 100,000 revocations (of other, ended sessions; within the access-token
//! lifetime, so the server holds them all), and writes TOKENS (default
//! 100,000) valid access tokens of distinct live sessions to
//! DATA_DIR/tokens.txt, one per line, for the verify benchmark. PUBLIC_URL
//! must be the one the server will run with (the token issuer).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use chronos::authority::tokens::{AUDIENCE, AccessClaims, AccessTokens};
use rusqlite::params;

/// The hash every generated account shares (a real one, default parameters).
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$j9bOnrW6ZR5CovtaFOSHvA$AjfFSh7i157N1iD1L2kTRgTJ2xLyI3KC7z0rBQ9m2pU";

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or_else(|| {
        anyhow::anyhow!("usage: generate DATA_DIR [ACCOUNTS] [SESSIONS] [REVOCATIONS] [TOKENS]")
    })?);
    let (accounts, sessions, revocations, tokens) = (
        arg(2, 1_000_000),
        arg(3, 1_000_000),
        arg(4, 100_000),
        arg(5, 100_000),
    );
    let public_url = std::env::var("PUBLIC_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    chronos::secrets::ensure_dir(&dir)?;
    let db = dir.join("chronos.db");
    // The schema, exactly as the server makes it.
    let pool = chronos::store::sqlite::connect(&format!("sqlite://{}", db.display())).await?;
    chronos::store::sqlite::MIGRATOR.run(&pool).await?;
    pool.close().await;
    let started = Instant::now();
    let mut conn = rusqlite::Connection::open(&db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let now = chronos::unix_now() as i64;
    let keys = AccessTokens::load_or_generate(&dir, &public_url, 3600, 0)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("tokens.txt"))?);
    let tx = conn.transaction()?;
    {
        let mut user = tx.prepare(
            "INSERT INTO users (id, email, name, avatar_url, created_at) VALUES (?1, ?2, ?3, NULL, ?4)",
        )?;
        let mut password = tx
            .prepare("INSERT INTO password_credentials (user_id, password_hash) VALUES (?1, ?2)")?;
        let mut session = tx.prepare(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip,
                                   refresh_counter, refresh_issued_at, revoked_at)
             VALUES (?1, ?2, ?3, ?3, 'Mozilla/5.0 (X11; Linux x86_64) bench', '203.0.113.0/24', 0, ?3, ?4)",
        )?;
        let mut revocation =
            tx.prepare("INSERT INTO revocations (session_id, revoked_at) VALUES (?1, ?2)")?;
        for n in 0..accounts.max(sessions).max(revocations) {
            let user_id = uuid::Uuid::new_v4().to_string();
            let email = format!("person{n}@example.com");
            let name = format!("Person {n}");
            if n < accounts {
                user.execute(params![user_id, email, name, now - 86_400])?;
                password.execute(params![user_id, HASH])?;
            }
            if n < sessions && n < accounts {
                let session_id = uuid::Uuid::new_v4().to_string();
                session.execute(params![
                    session_id,
                    user_id,
                    now - (n as i64 % 3600),
                    Option::<i64>::None
                ])?;
                if n < tokens {
                    let claims = AccessClaims {
                        iss: keys.issuer().to_string(),
                        aud: AUDIENCE.to_string(),
                        sub: user_id.clone().into(),
                        email: email.clone(),
                        sid: session_id.into(),
                        jti: format!("bench{n}"),
                        iat: now as u64,
                        exp: now as u64 + 3600,
                        nbf: None,
                        name: Some(name.clone()),
                        avatar_url: None,
                        created_at: chronos::store::accounts::rfc3339(now - 86_400),
                    };
                    writeln!(out, "{}", keys.sign(&claims)?)?;
                }
            }
            if n < revocations && n < accounts {
                // An ended session of its own, revoked within the token lifetime.
                let ended = uuid::Uuid::new_v4().to_string();
                session.execute(params![ended, user_id, now - 1800, now - 600])?;
                revocation.execute(params![ended, now - 600])?;
            }
        }
    }
    tx.commit()?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    out.flush()?;
    println!(
        "generated accounts={accounts} sessions={sessions} revocations={revocations} tokens={} in {:.1}s, database {} MiB",
        tokens.min(sessions),
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&db)?.len() / (1 << 20)
    );
    Ok(())
}
