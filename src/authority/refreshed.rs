//! What a refresh of the local authority found, on either engine.

use super::User;

/// The pair a refresh hands out: the session's counter and when it was issued.
pub(super) struct Pair {
    pub(super) session_id: String,
    pub(super) counter: u64,
    pub(super) issued_at: u64,
    pub(super) user: User,
}

/// What a refresh found.
pub(super) enum Refreshed {
    Pair(Pair),
    /// An old token came back: the session just ended (revocation seq).
    Reused {
        session_id: String,
        seq: i64,
    },
    Rejected,
}
