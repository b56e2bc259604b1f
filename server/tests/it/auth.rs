use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{ApiSession, DataDir, Server, add_user, client, sign_in};

#[tokio::test]
async fn signing_in_opens_the_overview_and_a_wrong_password_does_not() -> anyhow::Result<()> {
    // Arrange
    let data = DataDir::new();
    add_user(&data.0, "pm.alice", "viewer", &[]).await?;
    let server = Server::start(&data.0).await?;
    let http = client();

    // Act
    let wrong = http
        .post(server.url("/auth/login"))
        .header("Origin", server.origin())
        .form(&[("username", "pm.alice"), ("password", "not it")])
        .send()
        .await?;
    let right = sign_in(&server, &http, "pm.alice").await?;
    let page = http.get(server.url("/")).send().await?;

    // Assert
    assert_eq!(wrong.status(), StatusCode::SEE_OTHER);
    assert!(
        wrong.headers()["location"]
            .to_str()?
            .starts_with("/login?error=1")
    );
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()["location"], "/");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await?;
    assert!(
        html.contains("pm.alice"),
        "the overview names the signed-in user"
    );
    assert!(
        html.contains("No migrations yet"),
        "an empty store says what to do next"
    );
    Ok(())
}

#[tokio::test]
async fn without_a_session_pages_redirect_to_sign_in_and_the_api_answers_401() -> anyhow::Result<()>
{
    let data = DataDir::new();
    let server = Server::start(&data.0).await?;
    let http = client();

    let page = http.get(server.url("/audit?actor=x")).send().await?;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()["location"], "/login?next=/audit%3Factor%3Dx");

    let api = http.get(server.url("/api/v1/me")).send().await?;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let body: Value = api.json().await?;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("sign in"))
    );

    let login = http.get(server.url("/login")).send().await?;
    assert_eq!(login.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_page_and_an_api_call_above_the_role_are_refused_with_403() -> anyhow::Result<()> {
    let data = DataDir::new();
    add_user(&data.0, "pm.alice", "viewer", &[]).await?;
    add_user(&data.0, "owner.dan", "client-owner", &["inbox-service"]).await?;
    let server = Server::start(&data.0).await?;

    let viewer = client();
    sign_in(&server, &viewer, "pm.alice").await?;
    let page = viewer.get(server.url("/admin/users")).send().await?;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page.text().await?.contains("needs the admin role"));

    let create = viewer
        .post(server.url("/api/v1/users"))
        .header("Origin", server.origin())
        .json(&json!({ "username": "mallory", "role": "admin", "password": "long enough pw" }))
        .send()
        .await?;
    assert_eq!(create.status(), StatusCode::FORBIDDEN);

    let owner = client();
    sign_in(&server, &owner, "owner.dan").await?;
    let audit = owner.get(server.url("/audit")).send().await?;
    assert_eq!(audit.status(), StatusCode::FORBIDDEN);
    let api = owner.get(server.url("/api/v1/audit")).send().await?;
    assert_eq!(api.status(), StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn a_forged_cross_site_post_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let data = DataDir::new();
    add_user(&data.0, "root", "admin", &[]).await?;
    let server = Server::start(&data.0).await?;
    let admin = client();
    sign_in(&server, &admin, "root").await?;
    let new_user = json!({ "username": "mallory", "role": "admin", "password": "long enough pw" });

    // A page on another site makes the admin's browser post (cookies ride along).
    let forged = admin
        .post(server.url("/api/v1/users"))
        .header("Origin", "http://evil.example")
        .json(&new_user)
        .send()
        .await?;
    // A non-browser request with the cookie but without the session's token.
    let tokenless = admin
        .post(server.url("/api/v1/users"))
        .json(&new_user)
        .send()
        .await?;
    // A forged sign-out through a server-rendered form.
    let logout = admin
        .post(server.url("/auth/logout"))
        .header("Referer", "https://evil.example/page")
        .send()
        .await?;

    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(tokenless.status(), StatusCode::FORBIDDEN);
    assert_eq!(logout.status(), StatusCode::FORBIDDEN);
    let users: Value = admin
        .get(server.url("/api/v1/users"))
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<_> = users
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["root"],
        "nothing was created and the admin is still signed in"
    );
    Ok(())
}

#[tokio::test]
async fn a_script_signs_in_over_the_api_and_uses_its_csrf_token() -> anyhow::Result<()> {
    let data = DataDir::new();
    add_user(&data.0, "root", "admin", &[]).await?;
    let server = Server::start(&data.0).await?;
    let root = ApiSession::sign_in(&server, "root").await?;
    assert_eq!(root.csrf.len(), 64);

    let users = server.url("/api/v1/users");
    let bob = json!({ "username": "eng.bob", "role": "engineer", "password": "long enough pw" });
    let created = root.post_json(&users, &bob).await?;
    assert_eq!(created.status(), StatusCode::CREATED);

    let duplicate = root.post_json(&users, &bob).await?;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);

    let audit: Value = root
        .get(&server.url("/api/v1/audit?action=user.create"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(audit[0]["entity_id"], "eng.bob");
    assert_eq!(audit[0]["actor"], "root");
    Ok(())
}

#[tokio::test]
async fn sessions_survive_a_restart_and_end_when_the_user_is_disabled() -> anyhow::Result<()> {
    let data = DataDir::new();
    add_user(&data.0, "eng.bob", "engineer", &[]).await?;
    let http = client();
    {
        let server = Server::start(&data.0).await?;
        sign_in(&server, &http, "eng.bob").await?;
        // The server goes away (the cookie jar keeps the session cookie).
    }
    let server = Server::start(&data.0).await?;
    // The cookie was set for the old port's host; the jar sends it to the same host.
    let me = http.get(server.url("/api/v1/me")).send().await?;
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "still signed in after a restart"
    );
    let me: Value = me.json().await?;
    assert_eq!(me["role"], "engineer");

    let out = tokio::process::Command::new(crate::tern_bin())
        .args(["user", "disable", "eng.bob"])
        .env("TERN_DATA_DIR", &data.0)
        .output()
        .await?;
    assert!(out.status.success());
    let me = http.get(server.url("/api/v1/me")).send().await?;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}
