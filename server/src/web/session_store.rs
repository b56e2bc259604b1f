//! `tower-sessions` backed by the control store, so that sessions survive a
//! restart of `tern` and are shared by every `tern` process on one store.

use async_trait::async_trait;
use tern_control::Store;
use tern_control::sessions::SessionRecord;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// Sessions in the control store's `sessions` table.
#[derive(Debug, Clone)]
pub struct ControlSessionStore {
    store: Store,
}

impl ControlSessionStore {
    pub fn new(store: Store) -> Self {
        ControlSessionStore { store }
    }
}

fn to_stored(record: &Record) -> session_store::Result<SessionRecord> {
    let data = serde_json::to_string(&record.data)
        .map_err(|e| session_store::Error::Encode(e.to_string()))?;
    Ok(SessionRecord {
        id: record.id.to_string(),
        data,
        expires_at: record.expiry_date.unix_timestamp() * 1000
            + i64::from(record.expiry_date.millisecond()),
    })
}

fn backend(e: tern_control::ControlError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for ControlSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A fresh random id collides with probability ~2^-128; still, never
        // overwrite someone else's session.
        loop {
            if self
                .store
                .create_session(&to_stored(record)?)
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.store
            .save_session(&to_stored(record)?)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(stored) = self
            .store
            .load_session(&id.to_string())
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_str(&stored.data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(stored.expires_at) * 1_000_000,
        )
        .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store
            .delete_session(&id.to_string())
            .await
            .map_err(backend)
    }
}
