use tern_control::{ControlError, Role, Store};

use crate::support::audit_of;
use crate::{admin, both_stores, new_user};

both_stores!(
    created_user_signs_in_with_the_right_password_only,
    |store: Store| async move {
        // Arrange
        store
            .create_user(&admin(), new_user("pm.alice", Role::Viewer))
            .await?;

        // Act
        let good = store
            .authenticate("pm.alice", "correct horse battery")
            .await?;
        let wrong = store
            .authenticate("pm.alice", "wrong horse battery")
            .await?;
        let unknown = store
            .authenticate("nobody", "correct horse battery")
            .await?;

        // Assert
        let user = good.ok_or_else(|| anyhow::anyhow!("right password refused"))?;
        assert_eq!(user.role, Role::Viewer);
        assert_eq!(user.display_name, "pm.alice");
        assert!(wrong.is_none());
        assert!(unknown.is_none());
        Ok(())
    }
);

both_stores!(
    a_duplicate_username_is_a_conflict,
    |store: Store| async move {
        store
            .create_user(&admin(), new_user("eng.bob", Role::Engineer))
            .await?;
        let again = store
            .create_user(&admin(), new_user("eng.bob", Role::Viewer))
            .await;
        assert!(
            matches!(again, Err(ControlError::Conflict(ref m)) if m.contains("already exists"))
        );
        assert_eq!(store.list_users().await?.len(), 1);
        Ok(())
    }
);

both_stores!(only_admins_create_users, |store: Store| async move {
    let engineer = store
        .create_user(&admin(), new_user("eng.bob", Role::Engineer))
        .await?;
    let refused = store
        .create_user(&(&engineer).into(), new_user("pm.carol", Role::Viewer))
        .await;
    assert!(matches!(refused, Err(ControlError::Forbidden(ref m)) if m.contains("admin role")));
    assert!(
        store
            .authenticate("pm.carol", "correct horse battery")
            .await?
            .is_none()
    );
    Ok(())
});

both_stores!(
    client_owners_are_bound_to_their_clients,
    |store: Store| async move {
        let mut owner = new_user("owner.dan", Role::ClientOwner);
        owner.clients = vec!["search-api".into(), "inbox-service".into()];
        store.create_user(&admin(), owner).await?;
        let user = store
            .authenticate("owner.dan", "correct horse battery")
            .await?
            .ok_or_else(|| anyhow::anyhow!("sign-in refused"))?;
        assert_eq!(
            user.clients,
            vec!["inbox-service".to_string(), "search-api".to_string()]
        );

        let mut lonely = new_user("owner.eve", Role::ClientOwner);
        lonely.clients.clear();
        let refused = store.create_user(&admin(), lonely).await;
        assert!(
            matches!(refused, Err(ControlError::Invalid(ref m)) if m.contains("owns no client"))
        );
        Ok(())
    }
);

both_stores!(
    short_passwords_and_bad_usernames_are_refused,
    |store: Store| async move {
        let mut short = new_user("pm.alice", Role::Viewer);
        short.password = "short".into();
        let refused = store.create_user(&admin(), short).await;
        assert!(matches!(refused, Err(ControlError::Invalid(ref m)) if m.contains("too short")));
        let refused = store
            .create_user(&admin(), new_user("Bad Name", Role::Viewer))
            .await;
        assert!(matches!(refused, Err(ControlError::Invalid(ref m)) if m.contains("not valid")));
        Ok(())
    }
);

both_stores!(
    a_disabled_user_cannot_sign_in_and_it_is_audited,
    |store: Store| async move {
        store
            .create_user(&admin(), new_user("eng.bob", Role::Engineer))
            .await?;
        store.set_user_disabled(&admin(), "eng.bob", true).await?;
        assert!(
            store
                .authenticate("eng.bob", "correct horse battery")
                .await?
                .is_none()
        );

        let events = audit_of(&store, "user.").await?;
        let actions: Vec<_> = events
            .iter()
            .map(|e| (e.action.as_str(), e.to_state.as_deref()))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("user.disable", Some("disabled")),
                ("user.create", Some("engineer"))
            ]
        );
        Ok(())
    }
);
