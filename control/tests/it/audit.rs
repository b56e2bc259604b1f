use tern_control::audit::{self, AuditEntry, AuditFilter};
use tern_control::{Actor, ControlError, Role, Store};

use crate::support::audit_of;
use crate::{admin, both_stores, new_user};

both_stores!(
    events_are_filtered_and_newest_first,
    |store: Store| async move {
        // Arrange: three events by two actors.
        let alice = Actor {
            name: "alice".into(),
            role: Role::Engineer,
            clients: vec![],
        };
        let bob = Actor {
            name: "bob".into(),
            role: Role::Engineer,
            clients: vec![],
        };
        for (actor, action, id) in [
            (&alice, "ramp.set", "inbox"),
            (&bob, "ramp.set", "search"),
            (&alice, "bucket.phase", "3"),
        ] {
            let mut tx = store.begin().await?;
            audit::record(
                &mut tx,
                AuditEntry::new(actor, action, "x", id).reason("testing"),
            )
            .await?;
            tx.commit().await?;
        }

        // Act
        let by_alice = store
            .list_audit(
                &admin(),
                &AuditFilter {
                    actor: Some("alice".into()),
                    ..Default::default()
                },
            )
            .await?;
        let ramps = audit_of(&store, "ramp").await?;
        let limited = store
            .list_audit(
                &admin(),
                &AuditFilter {
                    limit: Some(1),
                    ..Default::default()
                },
            )
            .await?;

        // Assert
        assert_eq!(
            by_alice
                .iter()
                .map(|e| e.entity_id.as_str())
                .collect::<Vec<_>>(),
            vec!["3", "inbox"]
        );
        assert_eq!(ramps.len(), 2);
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].action, "bucket.phase");
        assert_eq!(limited[0].reason.as_deref(), Some("testing"));
        Ok(())
    }
);

both_stores!(
    an_event_rolled_back_with_its_change_is_not_kept,
    |store: Store| async move {
        let mut tx = store.begin().await?;
        audit::record(
            &mut tx,
            AuditEntry::new(&admin(), "ramp.set", "client", "inbox"),
        )
        .await?;
        tx.rollback().await?;
        assert!(
            store
                .list_audit(&admin(), &AuditFilter::default())
                .await?
                .is_empty()
        );
        Ok(())
    }
);

both_stores!(
    client_owners_cannot_read_the_audit_log,
    |store: Store| async move {
        let owner = store
            .create_user(&admin(), new_user("owner.dan", Role::ClientOwner))
            .await?;
        let refused = store
            .list_audit(&(&owner).into(), &AuditFilter::default())
            .await;
        assert!(matches!(refused, Err(ControlError::Forbidden(_))));
        Ok(())
    }
);
