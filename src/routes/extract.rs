//! Extractors that answer bad input in our `{"detail"}` shape.

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::authority::ClientInfo;
use crate::telemetry;

pub use crate::web::json::ApiJson;

/// The caller's address (as resolved by the envelope) and user agent.
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = telemetry::current_client_ip().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Ok(Client(ClientInfo { ip, user_agent }))
    }
}
