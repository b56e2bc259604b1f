use tern_control::Store;
use tern_control::clock::now_ms;
use tern_control::sessions::SessionRecord;

use crate::both_stores;

fn record(id: &str, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        data: r#"{"user_id":1}"#.into(),
        expires_at,
    }
}

both_stores!(
    a_session_survives_until_it_expires,
    |store: Store| async move {
        let live = record("live", now_ms() + 60_000);
        let stale = record("stale", now_ms() - 1);
        assert!(store.create_session(&live).await?);
        assert!(store.create_session(&stale).await?);

        assert_eq!(store.load_session("live").await?, Some(live.clone()));
        assert_eq!(store.load_session("stale").await?, None);
        assert_eq!(store.delete_expired_sessions().await?, 1);

        store.delete_session("live").await?;
        assert_eq!(store.load_session("live").await?, None);
        Ok(())
    }
);

both_stores!(
    creating_a_taken_session_id_is_refused_and_saving_replaces,
    |store: Store| async move {
        let first = record("same", now_ms() + 60_000);
        assert!(store.create_session(&first).await?);
        assert!(!store.create_session(&first).await?);

        let updated = SessionRecord {
            data: r#"{"user_id":2}"#.into(),
            ..first
        };
        store.save_session(&updated).await?;
        assert_eq!(
            store.load_session("same").await?.map(|r| r.data),
            Some(updated.data)
        );
        Ok(())
    }
);
