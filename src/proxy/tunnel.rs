//! A WebSocket, once both sides have switched protocols: bytes copied
//! both ways until either side closes, or until its session is revoked
//! (checked every [`REVOCATION_CHECK`]), when both connections are dropped.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::REVOCATION_CHECK;
use crate::authority::{AccessClaims, SessionAuthority};

pub fn spawn(
    client: OnUpgrade,
    upstream: hyper::upgrade::Upgraded,
    authority: Arc<dyn SessionAuthority>,
    claims: Arc<AccessClaims>,
) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "the client did not switch protocols");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let revoked = async {
            let mut tick = tokio::time::interval(REVOCATION_CHECK);
            loop {
                tick.tick().await;
                if authority.refuses(&claims) {
                    return;
                }
            }
        };
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = copied {
                    tracing::debug!(%error, "websocket tunnel ended");
                }
            }
            () = revoked => {
                tracing::info!(session_id = %claims.sid, "websocket closed: its session was revoked");
            }
        }
    });
}
