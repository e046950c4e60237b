//! `POST /auth/dbsc/register`, `POST /auth/dbsc/refresh`: the two calls a
//! browser with Device Bound Session Credentials makes by itself (no
//! script sends them, so they carry no CSRF header: the signed proof and
//! its single-use challenge, issued to this session, are what make them
//! safe). [`crate::security::dbsc`] holds the rules.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};

use crate::cookies::CookieKind;
use crate::error::{ApiError, Result};
use crate::routes::session::authenticate;
use crate::routes::state::AppState;
use crate::security::dbsc::{
    self, ChallengeRefused, Dbsc, Event, Purpose, TakeError, fields, proof,
};
use crate::unix_now;

fn dbsc_of(state: &AppState) -> Result<&Arc<Dbsc>> {
    state.security.dbsc.as_ref().ok_or(ApiError::NotFound)
}

/// The proof in `Secure-Session-Response` (an sf-string).
fn proof_in(headers: &HeaderMap) -> Result<Option<String>> {
    match headers.get(&dbsc::RESPONSE) {
        None => Ok(None),
        Some(value) => fields::parse_string(value.as_bytes())
            .filter(|proof| !proof.is_empty())
            .map(Some)
            .ok_or(ApiError::BadRequest(
                "Secure-Session-Response must be a structured-field string holding the proof",
            )),
    }
}

/// The answer that hands out a bound cookie: the session instructions,
/// with the next challenge ahead of time. (Like every `/auth/*` answer,
/// the envelope marks it `Cache-Control: no-store`.)
fn bound_answer(dbsc: &Dbsc, session_id: &str, thumbprint: &str, now: u64) -> Response {
    let mut response = axum::Json(dbsc.instructions(session_id)).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        dbsc.bound_cookie(session_id, thumbprint, now),
    );
    if let Some(challenge) = dbsc.challenge_header(session_id, now) {
        headers.insert(dbsc::CHALLENGE.clone(), challenge);
    }
    response
}

fn refused(dbsc: &Dbsc, reason: &'static str, error: ApiError) -> ApiError {
    dbsc.count(Event::Refused(reason));
    error
}

/// `POST /auth/dbsc/register`: the session the cookies name (not yet
/// bound) is bound to the key that signed the proof of its challenge.
pub async fn register(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response> {
    let dbsc = dbsc_of(&state)?;
    let claims = authenticate(&state, &headers).await?;
    let token = proof_in(&headers)?.ok_or_else(|| {
        refused(
            dbsc,
            "missing",
            ApiError::BadRequest("Secure-Session-Response is required"),
        )
    })?;
    let proof = proof::verify_registration(&token)
        .map_err(|why| refused(dbsc, why.reason(), ApiError::Refused(why.detail())))?;
    let now = unix_now();
    match dbsc
        .take_challenge(Purpose::Register, &claims.sid, &proof.jti, now)
        .await
    {
        Ok(()) => {}
        Err(TakeError::Refused(why)) => {
            return Err(refused(
                dbsc,
                why.reason(),
                ApiError::Refused(challenge_detail(why)),
            ));
        }
        Err(TakeError::Store(e)) => return Err(ApiError::internal(e)),
    }
    if !dbsc
        .bind(&claims.sid, &proof, now)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(refused(
            dbsc,
            "bound",
            ApiError::Conflict("The session is already bound to a key"),
        ));
    }
    dbsc.count(Event::Registered);
    tracing::info!(session_id = %claims.sid, alg = proof.algorithm, "session bound to a device key");
    Ok(bound_answer(dbsc, &claims.sid, &proof.thumbprint, now))
}

/// `POST /auth/dbsc/refresh` with `Sec-Secure-Session-Id`: a new bound
/// cookie for a fresh proof of the session's key. Without a proof, the
/// challenge to sign (403); for an ended session, `{"continue": false}`.
pub async fn refresh(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response> {
    let dbsc = dbsc_of(&state)?;
    let session_id = headers
        .get(&dbsc::SESSION_ID)
        .and_then(|v| fields::parse_string(v.as_bytes()))
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .ok_or(ApiError::BadRequest(
            "Sec-Secure-Session-Id must name the session as a structured-field string",
        ))?;
    let now = unix_now();
    let binding = match dbsc.binding_of(&session_id).await {
        Ok(Some(binding))
            if state
                .authority
                .is_live(&session_id)
                .await
                .map_err(|e| ApiError::from_auth(e, ApiError::RefreshFailed))? =>
        {
            binding
        }
        // Ended (logout, revocation, an operator, idle past its refresh
        // token's life) or never bound here: the browser stops refreshing
        // it, and its bound cookie goes.
        Ok(_) => {
            dbsc.count(Event::Ended);
            let mut response = axum::Json(serde_json::json!({"continue": false})).into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, state.cookies().clear(CookieKind::Bound));
            return Ok(response);
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let Some(token) = proof_in(&headers)? else {
        return Ok(challenge_answer(
            dbsc,
            &session_id,
            now,
            "A proof is required",
        ));
    };
    let jti = proof::verify_refresh(&token, &binding.algorithm, &binding.public_jwk)
        .map_err(|why| refused(dbsc, why.reason(), ApiError::Refused(why.detail())))?;
    match dbsc
        .take_challenge(Purpose::Refresh, &session_id, &jti, now)
        .await
    {
        Ok(()) => {}
        // The proof is the session's key's: a stale, used or unknown
        // challenge (a cached one; one made under a key DATA_DIR no longer
        // holds) gets a fresh one to sign. Only the key cannot be faked.
        Err(TakeError::Refused(why)) => {
            dbsc.count(Event::Refused(why.reason()));
            return Ok(challenge_answer(
                dbsc,
                &session_id,
                now,
                challenge_detail(why),
            ));
        }
        Err(TakeError::Store(e)) => return Err(ApiError::internal(e)),
    }
    dbsc.proved(&session_id, now)
        .await
        .map_err(ApiError::internal)?;
    dbsc.count(Event::Refreshed);
    Ok(bound_answer(dbsc, &session_id, &binding.thumbprint, now))
}

/// 403 with `Secure-Session-Challenge`: sign this and try again.
fn challenge_answer(dbsc: &Dbsc, session_id: &str, now: u64, detail: &'static str) -> Response {
    let mut response = ApiError::Forbidden(detail).into_response();
    if let Some(challenge) = dbsc.challenge_header(session_id, now) {
        response
            .headers_mut()
            .insert(dbsc::CHALLENGE.clone(), challenge);
    }
    response
}

fn challenge_detail(why: ChallengeRefused) -> &'static str {
    match why {
        ChallengeRefused::Foreign => "The proof answers no challenge issued to this session",
        ChallengeRefused::Expired => "The challenge has expired",
        ChallengeRefused::Used => "The challenge has been answered before",
    }
}
