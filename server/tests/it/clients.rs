//! Clients over HTTP against the real `tern serve`: API tokens (wrong,
//! revoked, another client's), routing (one key and the batch form) agreeing
//! with the embedded `tern-client`, traffic and shadow reports, gates and an
//! audited override, and the chart endpoints' SVG for seeded traffic.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tern_client::{ClientConfig, Route, TernClient};
use tern_control::Store;
use tern_ramp::Ramp;

use crate::{ApiSession, DataDir, Server, add_user, client, seed};

/// A migration `contacts` with clients `inbox` and `search`, made in the store
/// the server will open.
async fn seed(data: &std::path::Path) -> anyhow::Result<(i64, i64)> {
    let store = Store::open_sqlite_file(&data.join("tern.db")).await?;
    let m = seed::migration(&store, "contacts", "x = 1".into(), 1).await?;
    let ids = seed::clients(&store, m, &["inbox", "search"], "T").await?;
    store.close().await;
    Ok((ids[0], ids[1]))
}

#[tokio::test]
async fn tokens_routing_traffic_shadow_gates_and_charts() -> anyhow::Result<()> {
    // Arrange
    let data = DataDir::new();
    add_user(&data.0, "eng", "engineer", &[]).await?;
    add_user(&data.0, "boss", "admin", &[]).await?;
    let (inbox, search) = seed(&data.0).await?;
    let server = Server::start(&data.0).await?;
    let eng = ApiSession::sign_in(&server, "eng").await?;
    let token_of = |id: i64| {
        let eng = &eng;
        let url = server.url(&format!("/api/v1/clients/{id}/tokens"));
        async move {
            let v: Value = eng
                .post(&url)
                .json(&json!({"label": "test"}))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok((
                v["id"].as_i64().unwrap_or_default(),
                v["token"].as_str().unwrap_or_default().to_string(),
            ))
        }
    };
    let (inbox_token_id, inbox_token) = token_of(inbox).await?;
    let (_, search_token) = token_of(search).await?;
    let api = reqwest::Client::new();
    let route_url = server.url("/api/v1/route?migration=contacts&client=inbox&key=member-7");

    // Act / Assert: no token, a wrong token → 401; the right one → 200.
    assert_eq!(
        api.get(&route_url).send().await?.status(),
        StatusCode::UNAUTHORIZED
    );
    let wrong = api.get(&route_url).bearer_auth("tern_0000").send().await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong.json::<Value>().await?["error"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked")
    );
    let ok: Value = api
        .get(&route_url)
        .bearer_auth(&inbox_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ok["route"], "old", "ramp 0%: everything reads old");

    // Client A's token cannot report or route for client B.
    let cross = api
        .post(server.url("/api/v1/traffic"))
        .bearer_auth(&inbox_token)
        .json(&json!({"migration": "contacts", "reports": [{"client": "search", "old": 1, "new": 0}]}))
        .send()
        .await?;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let cross_route = api
        .get(server.url("/api/v1/route?migration=contacts&client=inbox&key=1"))
        .bearer_auth(&search_token)
        .send()
        .await?;
    assert_eq!(cross_route.status(), StatusCode::FORBIDDEN);

    // Ramp to 10% (below the gate), then 25% is refused with the reason.
    let ramp = |to: &str, override_reason: Option<&str>, who: &ApiSession| {
        who.post(&server.url(&format!("/api/v1/clients/{inbox}/ramp")))
            .json(&json!({"ramp": to, "reason": "step", "override_reason": override_reason}))
            .send()
    };
    assert_eq!(ramp("10%", None, &eng).await?.status(), StatusCode::OK);
    let refused = ramp("25%", None, &eng).await?;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let why = refused.json::<Value>().await?["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("verification") && why.contains("shadow"),
        "{why}"
    );
    let boss = ApiSession::sign_in(&server, "boss").await?;
    assert_eq!(
        ramp("25%", Some("incident 7: verified by hand"), &boss)
            .await?
            .status(),
        StatusCode::OK
    );
    let audit: Value = boss
        .get(&server.url("/api/v1/audit?action=ramp.override"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(audit.as_array().map(Vec::len), Some(1));

    // The embedded client decides like the API, key by key, at 25%.
    let tern = TernClient::connect(ClientConfig::new(
        server.base.clone(),
        "contacts",
        "inbox",
        inbox_token.clone(),
    ))
    .await?;
    assert_eq!(tern.ramp(), Ramp::parse("25%")?);
    let keys: Vec<String> = (0..200).map(|k| format!("member-{k}")).collect();
    let batch: Value = api
        .post(server.url("/api/v1/route"))
        .bearer_auth(&inbox_token)
        .json(&json!({"migration": "contacts", "client": "inbox", "keys": keys}))
        .send()
        .await?
        .json()
        .await?;
    let routes = batch["routes"].as_array().cloned().unwrap_or_default();
    assert_eq!(routes.len(), 200);
    for (k, r) in keys.iter().zip(&routes) {
        let local = match tern.route(k.as_bytes()) {
            Route::New => "new",
            Route::Old => "old",
        };
        assert_eq!(r["route"], local, "key {k}");
    }
    let (old, new) = tern.pending_counts();
    assert!(new > 20 && old > 100, "{old} old, {new} new");
    tern.report().await?;
    let mismatch = tern
        .send_shadow(
            "member-1",
            &json!({"name": "Ann"}),
            &json!({"name": "Anne"}),
        )
        .await?;
    assert!(!mismatch);
    assert!(
        tern.send_shadow("member-2", &json!({"a": 1}), &json!({"a": 1.0}))
            .await?
    );

    // Charts: SVG with both series and the ramp steps.
    let svg = eng
        .get(&server.url(&format!("/charts/clients/{inbox}/traffic.svg")))
        .send()
        .await?;
    assert_eq!(svg.status(), StatusCode::OK);
    assert_eq!(
        svg.headers()[reqwest::header::CONTENT_TYPE],
        "image/svg+xml"
    );
    let svg = svg.text().await?;
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("old system") && svg.contains("new system"));
    assert!(svg.contains("ramp 10%") && svg.contains("ramp 25%"));
    assert!(svg.matches("<polyline").count() >= 2);
    let share = eng
        .get(&server.url("/charts/migrations/1/share.svg"))
        .send()
        .await?
        .text()
        .await?;
    assert!(share.contains("share on new") && share.contains("<circle"));
    let mm = eng
        .get(&server.url(&format!("/charts/clients/{inbox}/mismatch.svg")))
        .send()
        .await?
        .text()
        .await?;
    assert!(mm.contains("mismatched pairs"));
    // Charts are behind the sign-in wall: a stranger is sent to sign in.
    let stranger = client()
        .get(server.url(&format!("/charts/clients/{inbox}/traffic.svg")))
        .send()
        .await?;
    assert!(stranger.status().is_redirection(), "{}", stranger.status());

    // Revoked: 401 at once.
    let revoked = eng
        .delete(&server.url(&format!("/api/v1/tokens/{inbox_token_id}")))
        .send()
        .await?;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&route_url)
            .bearer_auth(&inbox_token)
            .send()
            .await?
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(matches!(
        tern.refresh().await,
        Err(tern_client::ClientError::Unauthorized(_))
    ));
    Ok(())
}
