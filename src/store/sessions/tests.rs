//! The refresh state machine against the store, on both engines: what a
//! presented counter does to the session row.

use super::*;
use crate::store::sql::args;
use crate::store::testing::TestDb;

const RULES: Rules = Rules {
    refresh_ttl: 3600,
    reuse_interval_ms: 10_000,
};

async fn opened(db: &TestDb, sessions: &Sessions) -> SessionId {
    let user = db
        .user(&format!("{}@example.com", uuid::Uuid::new_v4().simple()))
        .await;
    let id = SessionId::random();
    let opened = sessions
        .open(NewSession {
            id: id.clone(),
            user_id: user.id.clone(),
            now: crate::unix_now() as i64,
            user_agent: Some("test".into()),
            ip: "127.0.0.0/24".into(),
        })
        .await
        .unwrap();
    assert_eq!(opened.map(|u| u.id), Some(user.id));
    id
}

fn refresh(session_id: &str, counter: i64) -> Refresh {
    Refresh {
        session_id: session_id.into(),
        counter,
        user_agent: None,
        ip: "127.0.0.0/24".into(),
    }
}

fn pair(found: Refreshed) -> Pair {
    match found {
        Refreshed::Pair(pair) => pair,
        other => panic!("expected a pair, got {other:?}"),
    }
}

/// Moves the last rotation `ms` into the past (the reuse interval's clock).
async fn rotated_ago(db: &TestDb, session_id: &str, ms: i64) {
    db.db
        .write(
            "UPDATE sessions SET rotated_at_ms = rotated_at_ms - $1 WHERE id = $2",
            args![ms, session_id],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_current_token_rotates_and_its_repeat_within_the_interval_gets_the_same_pair() {
    for db in TestDb::both().await {
        let sessions = Sessions::new(db.db.clone(), RULES);
        let id = opened(&db, &sessions).await;
        let first = pair(sessions.rotate(refresh(&id, 0)).await.unwrap());
        assert_eq!(first.counter, 1, "{}", db.engine());
        let again = pair(sessions.rotate(refresh(&id, 0)).await.unwrap());
        assert_eq!(again, first, "{}: two tabs get one pair", db.engine());
        let second = pair(sessions.rotate(refresh(&id, 1)).await.unwrap());
        assert_eq!(second.counter, 2, "{}", db.engine());
    }
}

#[tokio::test]
async fn the_previous_token_after_the_interval_ends_the_session_and_records_its_revocation() {
    for db in TestDb::both().await {
        let sessions = Sessions::new(db.db.clone(), RULES);
        let id = opened(&db, &sessions).await;
        pair(sessions.rotate(refresh(&id, 0)).await.unwrap());
        rotated_ago(&db, &id, RULES.reuse_interval_ms + 1).await;
        let Refreshed::Reused { session_id, seq } = sessions.rotate(refresh(&id, 0)).await.unwrap()
        else {
            panic!("{}: a replay after the interval is theft", db.engine());
        };
        assert_eq!(session_id, id);
        let recorded: Option<String> = db
            .db
            .read_optional(
                "SELECT session_id FROM revocations WHERE seq = $1",
                args![seq],
            )
            .await
            .unwrap();
        assert_eq!(recorded.as_deref(), Some(id.as_str()), "{}", db.engine());
        // The family is over: even the current token is refused now.
        assert_eq!(
            sessions.rotate(refresh(&id, 1)).await.unwrap(),
            Refreshed::Rejected,
            "{}",
            db.engine()
        );
    }
}

#[tokio::test]
async fn a_token_two_rotations_old_is_theft_even_within_the_interval() {
    for db in TestDb::both().await {
        let sessions = Sessions::new(db.db.clone(), RULES);
        let id = opened(&db, &sessions).await;
        pair(sessions.rotate(refresh(&id, 0)).await.unwrap());
        pair(sessions.rotate(refresh(&id, 1)).await.unwrap());
        assert!(
            matches!(
                sessions.rotate(refresh(&id, 0)).await.unwrap(),
                Refreshed::Reused { .. }
            ),
            "{}",
            db.engine()
        );
    }
}

#[tokio::test]
async fn ended_idle_unknown_and_orphaned_sessions_are_rejected() {
    for db in TestDb::both().await {
        let sessions = Sessions::new(db.db.clone(), RULES);
        let engine = db.engine();
        // Ended.
        let ended = opened(&db, &sessions).await;
        let which = EndSessions::Any {
            session_id: ended.clone(),
        };
        assert_eq!(sessions.end(&which, 1).await.unwrap(), vec![ended.clone()]);
        assert_eq!(
            sessions.end(&which, 2).await.unwrap(),
            Vec::<SessionId>::new()
        );
        assert_eq!(
            sessions.rotate(refresh(&ended, 0)).await.unwrap(),
            Refreshed::Rejected,
            "{engine}"
        );
        // Idle past the refresh token's life.
        let idle = opened(&db, &sessions).await;
        db.db
            .write(
                "UPDATE sessions SET refresh_issued_at = refresh_issued_at - $1 WHERE id = $2",
                args![RULES.refresh_ttl, &idle],
            )
            .await
            .unwrap();
        assert_eq!(
            sessions.rotate(refresh(&idle, 0)).await.unwrap(),
            Refreshed::Rejected,
            "{engine}"
        );
        // Never existed.
        let unknown = SessionId::random();
        assert_eq!(
            sessions.rotate(refresh(&unknown, 0)).await.unwrap(),
            Refreshed::Rejected,
            "{engine}"
        );
        // Its account deleted (the session goes with it).
        let orphan = opened(&db, &sessions).await;
        let owner = sessions.owner(&orphan).await.unwrap().unwrap();
        crate::store::accounts::Accounts::new(db.db.clone())
            .delete(&owner.user_id)
            .await
            .unwrap();
        assert_eq!(
            sessions.rotate(refresh(&orphan, 0)).await.unwrap(),
            Refreshed::Rejected,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn ending_a_users_sessions_takes_only_theirs_and_only_live_ones() {
    for db in TestDb::both().await {
        let sessions = Sessions::new(db.db.clone(), RULES);
        let a = opened(&db, &sessions).await;
        let b = opened(&db, &sessions).await;
        let owner_a = sessions.owner(&a).await.unwrap().unwrap().user_id;
        let not_theirs = EndSessions::OwnedBy {
            user_id: owner_a.clone(),
            session_id: b.clone(),
        };
        assert!(
            sessions.end(&not_theirs, 1).await.unwrap().is_empty(),
            "{}",
            db.engine()
        );
        let all = EndSessions::AllOf { user_id: owner_a };
        assert_eq!(
            sessions.end(&all, 1).await.unwrap(),
            vec![a.clone()],
            "{}",
            db.engine()
        );
        assert_eq!(
            sessions
                .list_of(
                    &sessions.owner(&b).await.unwrap().unwrap().user_id,
                    0,
                    i64::MIN
                )
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn purging_deletes_idle_and_long_ended_sessions_and_keeps_the_rest() {
    for db in TestDb::both().await {
        let sessions = Sessions::new(db.db.clone(), RULES);
        let live = opened(&db, &sessions).await;
        let idle = opened(&db, &sessions).await;
        let ended = opened(&db, &sessions).await;
        db.db
            .write(
                "UPDATE sessions SET last_used_at = 5 WHERE id = $1",
                args![&idle],
            )
            .await
            .unwrap();
        sessions
            .end(
                &EndSessions::Any {
                    session_id: ended.clone(),
                },
                5,
            )
            .await
            .unwrap();
        let purged = sessions.purge(10, 10).await.unwrap();
        assert_eq!(purged, 2, "{}", db.engine());
        assert!(sessions.owner(&live).await.unwrap().is_some());
        assert!(sessions.owner(&idle).await.unwrap().is_none());
        assert!(sessions.owner(&ended).await.unwrap().is_none());
    }
}
