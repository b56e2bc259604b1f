//! The trust boundary over HTTP against the real `tern serve`: every route of
//! the router (as `tern access` reads it from the router itself) × every role,
//! with the status the access table promises; a client-owner kept to their own
//! client; database passwords kept out of every answer.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tern_control::{Actor, Store};

use crate::{ApiSession, DataDir, Server, add_user, seed, tern_bin};

const ROLES: [(&str, &str); 4] = [
    ("vi", "viewer"),
    ("en", "engineer"),
    ("co", "client-owner"),
    ("ad", "admin"),
];

/// A spec whose URLs carry a password that must never be shown.
const SECRET: &str = "hunter2-never-shown";

struct Fixture {
    migration: i64,
    own_client: i64,
    other_client: i64,
    fix: i64,
    own_token: i64,
    other_token: i64,
}

async fn seed(data: &std::path::Path) -> anyhow::Result<Fixture> {
    let store = Store::open_sqlite_file(&data.join("tern.db")).await?;
    let system = Actor::system();
    let spec = format!(
        "[source]\nurl = \"postgres://app:{SECRET}@db.internal/inbox\"\n\
         [target]\nurl = \"postgres://app@db.internal/inbox_new?password={SECRET}\"\n"
    );
    let m = seed::migration(&store, "contacts", spec, 1).await?;
    let clients = seed::clients(&store, m, &["inbox", "search"], "T").await?;
    let mut tokens = Vec::new();
    for c in &clients {
        let (t, _) = store.create_token(&system, m, Some(*c), "seed").await?;
        tokens.push(t.id);
    }
    let fix = store
        .create_fix(
            &system,
            &tern_datafix::EXAMPLE.replace(
                "# url = \"postgres://postgres@127.0.0.1:5432/app\"",
                "url = \"postgres://app@127.0.0.1:5432/app\"",
            ),
        )
        .await?;
    // A fix stored before connections existed, with its password in the URL.
    let legacy = format!("postgres://app:{SECRET}@127.0.0.1:5432/app");
    sqlx::query(
        "UPDATE fixes SET spec = replace(spec, 'postgres://app@', $1), db_url = $2 WHERE id = $3",
    )
    .bind(format!("postgres://app:{SECRET}@"))
    .bind(&legacy)
    .bind(fix.id)
    .execute(store.pool())
    .await?;
    store.close().await;
    Ok(Fixture {
        migration: m,
        own_client: clients[0],
        other_client: clients[1],
        fix: fix.id,
        own_token: tokens[0],
        other_token: tokens[1],
    })
}

/// One row of `tern access`: method, route pattern, who.
struct Row {
    method: String,
    path: String,
    who: String,
}

async fn access_rows(data: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    let out = tokio::process::Command::new(tern_bin())
        .arg("access")
        .env("TERN_DATA_DIR", data)
        .env("TERN_LOG", "warn")
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "`tern access` failed: a route of the router has no row in the access table:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Row {
                method: f.next()?.to_string(),
                path: f.next()?.to_string(),
                who: f.next()?.to_string(),
            })
        })
        .collect())
}

impl Fixture {
    /// The route with its parameters filled: real records for reads and for a
    /// client's own routes; records that do not exist for other writes, so
    /// that a request that passes the wall changes nothing.
    fn fill(&self, method: &str, path: &str, client: i64, token: i64) -> String {
        let write = method != "GET";
        let id = if path.contains("/clients/{id}") {
            client
        } else if path.contains("/tokens/{id}") {
            token
        } else if write {
            999_999
        } else if path.contains("/fixes/{id}") {
            self.fix
        } else {
            self.migration
        };
        path.replace("{id}", &id.to_string())
            .replace("{idx}", "0")
            .replace("{run}", "999999")
            .replace("{action}", "pause")
    }
}

async fn send(
    server: &Server,
    session: &ApiSession,
    method: &str,
    url_path: &str,
    body: Option<&str>,
) -> anyhow::Result<(StatusCode, String)> {
    let mut req = session.request(
        Method::from_bytes(method.as_bytes())?,
        &server.url(url_path),
    );
    if method != "GET" {
        // Not a valid body for any handler: a request that passes the wall is
        // refused by the handler (422) or finds nothing (404).
        req = req
            .header("Content-Type", "application/json")
            .body(body.unwrap_or("\"not a request\"").to_string());
    }
    let res = req.send().await?;
    let status = res.status();
    Ok((status, res.text().await.unwrap_or_default()))
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_access_table_says() -> anyhow::Result<()> {
    // Arrange
    let data = DataDir::new();
    for (user, role) in ROLES {
        let clients: &[&str] = if role == "client-owner" {
            &["inbox"]
        } else {
            &[]
        };
        add_user(&data.0, user, role, clients).await?;
    }
    let fx = seed(&data.0).await?;
    let rows = access_rows(&data.0).await?;
    let server = Server::start(&data.0).await?;
    let mut sessions = BTreeMap::new();
    for (user, _) in ROLES {
        sessions.insert(user, ApiSession::sign_in(&server, user).await?);
    }
    assert!(
        rows.len() > 60,
        "`tern access` listed {} routes",
        rows.len()
    );
    assert!(
        rows.iter().any(|r| r.path.starts_with("/api/list_fixes")),
        "server functions are listed"
    );

    // Act / Assert: each row × each role.
    let mut wrong = Vec::new();
    for row in rows.iter().filter(|r| r.who != "anyone") {
        for (user, role) in ROLES {
            let session = &sessions[user];
            let url = fx.fill(&row.method, &row.path, fx.own_client, fx.own_token);
            let (status, body) = send(&server, session, &row.method, &url, None).await?;
            let allowed = match row.who.as_str() {
                "signed-in" | "own-client" => true,
                "own-client-write" => role != "viewer",
                "readers" => role != "client-owner",
                "operators" => role == "engineer" || role == "admin",
                "admins" => role == "admin",
                "client-token" => false,
                other => panic!("unknown rule `{other}` for {} {}", row.method, row.path),
            };
            let fine = if row.who == "client-token" {
                // A session is no client token: never answered with data.
                !status.is_success() && !status.is_server_error()
            } else if allowed {
                ![
                    StatusCode::UNAUTHORIZED,
                    StatusCode::FORBIDDEN,
                    StatusCode::METHOD_NOT_ALLOWED,
                ]
                .contains(&status)
                    && (row.path.starts_with("/api/") && !row.path.starts_with("/api/v1/")
                        || !status.is_server_error())
            } else {
                status == StatusCode::FORBIDDEN
            };
            if !fine {
                wrong.push(format!(
                    "{} {url} as {role}: {status} (rule {}) {}",
                    row.method,
                    row.who,
                    body.chars().take(160).collect::<String>()
                ));
            }
            if row.method == "POST" && row.path == "/auth/logout"
                || row.method == "DELETE" && row.path == "/api/v1/session"
            {
                sessions.insert(user, ApiSession::sign_in(&server, user).await?);
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answers break the access table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn a_client_owner_reads_only_their_own_client_and_no_secrets() -> anyhow::Result<()> {
    // Arrange
    let data = DataDir::new();
    add_user(&data.0, "co", "client-owner", &["inbox"]).await?;
    add_user(&data.0, "vi", "viewer", &[]).await?;
    let fx = seed(&data.0).await?;
    let server = Server::start(&data.0).await?;
    let owner = ApiSession::sign_in(&server, "co").await?;
    let viewer = ApiSession::sign_in(&server, "vi").await?;
    let get = |s: &ApiSession, path: String| {
        let req = s.http.get(server.url(&path));
        async move {
            let res = req.send().await?;
            let status = res.status();
            anyhow::Ok((status, res.text().await.unwrap_or_default()))
        }
    };

    // Act / Assert: their own client, yes; another's, no.
    for path in [
        format!("/api/v1/clients/{}", fx.own_client),
        format!("/clients/{}", fx.own_client),
        format!("/charts/clients/{}/traffic.svg", fx.own_client),
        format!("/charts/clients/{}/mismatch.svg", fx.own_client),
    ] {
        let (status, body) = get(&owner, path.clone()).await?;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    for path in [
        format!("/api/v1/clients/{}", fx.other_client),
        format!("/clients/{}", fx.other_client),
        format!("/charts/clients/{}/traffic.svg", fx.other_client),
        format!("/charts/clients/{}/mismatch.svg", fx.other_client),
    ] {
        let (status, body) = get(&owner, path.clone()).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (_, list) = get(&owner, "/api/v1/clients".into()).await?;
    let names: Vec<Value> = serde_json::from_str::<Vec<Value>>(&list)?
        .into_iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("inbox")],
        "the owner's list holds their client only"
    );
    let (status, _) = send(
        &server,
        &owner,
        "POST",
        &format!("/api/v1/clients/{}/tokens", fx.other_client),
        Some(r#"{"label":"mine now"}"#),
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "no token for another's client"
    );
    let (status, _) = send(
        &server,
        &owner,
        "DELETE",
        &format!("/api/v1/tokens/{}", fx.other_token),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "no revoking another's token");

    // The issue's probes: specs, fixes and mismatched rows are not theirs.
    for path in [
        format!("/api/v1/migrations/{}", fx.migration),
        "/api/v1/fixes".to_string(),
        format!("/migrations/{}", fx.migration),
        format!("/migrations/{}/buckets/0", fx.migration),
        "/fixes".to_string(),
    ] {
        let (status, body) = get(&owner, path.clone()).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(!body.contains(SECRET), "{path}");
    }

    // Readers see specs, never a password.
    for path in [
        format!("/api/v1/migrations/{}", fx.migration),
        "/api/v1/fixes".to_string(),
        format!("/api/v1/fixes/{}", fx.fix),
        format!("/migrations/{}", fx.migration),
        format!("/fixes/{}", fx.fix),
    ] {
        let (status, body) = get(&viewer, path.clone()).await?;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(!body.contains(SECRET), "{path} shows the password");
    }
    let (_, body) = get(&viewer, format!("/api/v1/migrations/{}", fx.migration)).await?;
    assert!(
        body.contains("postgres://app:***@db.internal/inbox"),
        "{body}"
    );
    Ok(())
}

/// `tern serve` (its environment with `env`) with an engineer `en` and an
/// admin `ad`, both signed in over the API.
async fn engineer_and_admin(
    env: &[(&str, &str)],
) -> anyhow::Result<(DataDir, Server, ApiSession, ApiSession)> {
    let data = DataDir::new();
    add_user(&data.0, "en", "engineer", &[]).await?;
    add_user(&data.0, "ad", "admin", &[]).await?;
    let server = Server::start_with(&data.0, env).await?;
    let engineer = ApiSession::sign_in(&server, "en").await?;
    let admin = ApiSession::sign_in(&server, "ad").await?;
    Ok((data, server, engineer, admin))
}

#[tokio::test]
async fn no_spec_fix_or_connection_reaches_terns_own_store() -> anyhow::Result<()> {
    // Arrange: the issue's attack, an engineer making themselves admin.
    let (data, server, engineer, admin) = engineer_and_admin(&[]).await?;
    let own = data.0.join("tern.db");
    let link = data.0.join("innocent.db");
    std::os::unix::fs::symlink(&own, &link)?;
    let attack = |url: String| {
        format!(
            "name = \"promote-{}\"\nurl = \"{url}\"\nkey = [\"id\"]\n\n[filter]\n\
             sql = \"SELECT id, role FROM users WHERE username = 'en'\"\n\n\
             [mapper]\nkind = \"update\"\ntable = \"users\"\nset = {{ role = \"'admin'\" }}\n",
            url.len()
        )
    };

    // Act / Assert: every spelling of the control store is refused with 422.
    for url in [
        format!("sqlite://{}", own.display()),
        format!("sqlite://{}?mode=rw", own.display()),
        format!("sqlite:{}", own.display()),
        format!("sqlite://{}", link.display()),
        format!("sqlite://{}/./tern.db", data.0.display()),
    ] {
        let (status, body) = send(
            &server,
            &engineer,
            "POST",
            "/api/v1/fixes",
            Some(&json!({ "spec": attack(url.clone()) }).to_string()),
        )
        .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert!(body.contains("Tern's own control store"), "{url}: {body}");
    }
    let spec = format!(
        "[source]\nurl = \"sqlite://{}\"\n[target]\nurl = \"sqlite://{}/stolen.db\"\n\n\
         [[tables]]\nname = \"users\"\nkey = [\"id\"]\n\
         [tables.source]\ntable = \"users\"\n[tables.columns]\nid = \"id\"\nrole = \"role\"\n",
        link.display(),
        data.0.display()
    );
    let (status, body) = send(
        &server,
        &engineer,
        "POST",
        "/api/v1/migrations",
        Some(&json!({ "name": "exfiltrate", "spec": spec }).to_string()),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("Tern's own control store"), "{body}");
    let (status, body) = send(
        &server,
        &admin,
        "POST",
        "/api/v1/connections",
        Some(
            &json!({ "name": "sneaky", "kind": "sqlite", "database": own.display().to_string() })
                .to_string(),
        ),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // The engineer is still an engineer.
    let me: Value = engineer
        .http
        .get(server.url("/api/v1/me"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["role"], "engineer");
    Ok(())
}

#[tokio::test]
async fn a_connection_keeps_its_secret_and_specs_name_it() -> anyhow::Result<()> {
    // Arrange: a server with a secret key, an admin and an engineer.
    let key = "7".repeat(64);
    let (data, server, engineer, admin) = engineer_and_admin(&[("TERN_SECRET_KEY", &key)]).await?;
    let db = tern_testkit::TestDb::postgres().await?;
    let body = json!({
        "name": "fix-target", "kind": "postgres", "host": "127.0.0.1", "port": 5432,
        "database": db.name, "username": "postgres", "secret": SECRET,
    });

    // Act: the engineer may not register it; the admin does.
    let (status, _) = send(
        &server,
        &engineer,
        "POST",
        "/api/v1/connections",
        Some(&body.to_string()),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, created) = send(
        &server,
        &admin,
        "POST",
        "/api/v1/connections",
        Some(&body.to_string()),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    // Assert: the secret is set and never comes back, anywhere.
    let created: Value = serde_json::from_str(&created)?;
    assert_eq!(created["secret_set"], true);
    assert_eq!(created["secret_source"], "encrypted");
    for path in [
        "/api/v1/connections",
        "/api/v1/connections/fix-target",
        "/api/v1/audit",
        "/admin/connections",
    ] {
        let res = admin.http.get(server.url(path)).send().await?;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let text = res.text().await?;
        assert!(!text.contains(SECRET), "{path} shows the secret");
    }
    let stored = std::fs::read(data.0.join("tern.db"))?;
    assert!(
        !stored.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the secret is encrypted at rest"
    );

    // A spec with a password in a URL is refused and told to use a connection.
    let fix = |db_line: &str| {
        tern_datafix::EXAMPLE.replace(
            "# url = \"postgres://postgres@127.0.0.1:5432/app\"",
            db_line,
        )
    };
    let (status, refused) = send(
        &server,
        &engineer,
        "POST",
        "/api/v1/fixes",
        Some(
            &json!({ "spec": fix(&format!("url = \"postgres://postgres:{SECRET}@127.0.0.1/x\"")) })
                .to_string(),
        ),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused.contains("connection") && !refused.contains(SECRET),
        "{refused}"
    );

    // A fix that names the connection is created, and shows no password.
    let (status, made) = send(
        &server,
        &engineer,
        "POST",
        "/api/v1/fixes",
        Some(&json!({ "spec": fix("connection = \"fix-target\"") }).to_string()),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert!(!made.contains(SECRET), "{made}");
    assert!(made.contains(&db.name), "{made}");
    Ok(())
}

/// Every `href="/…"` of a page, without its query.
fn links(html: &str) -> Vec<String> {
    let mut out: Vec<String> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|h| h.starts_with('/') && !h.starts_with("//") && !h.starts_with("/pkg/"))
        .map(|h| h.split('?').next().unwrap_or(h).to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn the_overview_links_a_client_owner_only_to_pages_they_may_open() -> anyhow::Result<()> {
    // Arrange: a migration with the owner's client and another's.
    let data = DataDir::new();
    add_user(&data.0, "co", "client-owner", &["inbox"]).await?;
    add_user(&data.0, "vi", "viewer", &[]).await?;
    let fx = seed(&data.0).await?;
    let server = Server::start(&data.0).await?;

    for (user, role) in [("co", "client-owner"), ("vi", "viewer")] {
        let session = ApiSession::sign_in(&server, user).await?;
        // Act: the overview, and every page it links to.
        let res = session.http.get(server.url("/")).send().await?;
        assert_eq!(res.status(), StatusCode::OK);
        let html = res.text().await?;
        let found = links(&html);
        let mut refused = Vec::new();
        for href in &found {
            let status = session.http.get(server.url(href)).send().await?.status();
            if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
                refused.push(format!("{href}: {status}"));
            }
        }

        // Assert: nothing on it leads to a refusal.
        assert!(
            refused.is_empty(),
            "the overview links the {role} to pages they may not open: {refused:?}"
        );
        let guide = format!("/migrations/{}/guide", fx.migration);
        let page = format!("/migrations/{}", fx.migration);
        if role == "client-owner" {
            assert!(found.contains(&guide), "{found:?}");
            assert!(!found.contains(&page), "{found:?}");
            assert!(
                html.contains("search"),
                "the other client is still listed, without a link"
            );
        } else {
            assert!(found.contains(&page), "{found:?}");
            assert!(
                found.contains(&format!("/clients/{}", fx.other_client)),
                "{found:?}"
            );
        }
    }
    Ok(())
}
