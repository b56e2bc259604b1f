//! The demo's clients: a few services with an hour of traffic while their read
//! ramps went up, some shadow pairs, offline jobs, and a migration guide, so
//! the client pages are not empty.

use serde_json::json;
use tern_control::clients::NewClient;
use tern_control::clock::now_ms;
use tern_control::offline::NewOfflineJob;
use tern_control::traffic::TrafficReport;
use tern_control::{Actor, Store};
use tern_ramp::Ramp;

const GUIDE: &str = r#"# Moving your reads to the new store

Tern moves your service's reads key by key. Your service asks Tern where a key
goes, reads from there, and reports how many requests went each way.

## 1. Embed `tern-client`

```rust
use tern_client::{ClientConfig, Route, TernClient};

let tern = TernClient::connect(ClientConfig::new(
    "http://tern.internal:3000", "messages-demo", "{{client}}", token,
)).await?;

let messages = match tern.route(member_id.as_bytes()) {
    Route::New => new_store.messages(member_id).await?,
    Route::Old => old_store.messages(member_id).await?,
};
```

## 2. Turn on shadow reads

For a sampled share of requests, read both stores and send both answers:

```rust
tern.shadow(&member_id, &old_answer, &new_answer).await?;
```

## 3. Ramp

Engineers raise your ramp step by step (1%, 10%, 25%, 50%, 100%). A rollback
sends every read back to the old store at once.

| Step | Watch |
|------|-------|
| 1%   | errors and latency |
| 25%  | shadow mismatch rate |
| 100% | old traffic drops to zero |

## 4. Honour the write primary

When a bucket's source of truth is switched, its keys are written to the new
store first (Tern keeps the old store complete behind it), and a rollback sends
them back. `{{client}}` asks Tern where each write goes, as it asks where reads
go: turn on write routing and take a permit per write, held until the write has
committed. During a switch Tern holds a bucket's writes for a moment; the permit
waits it out (at most 5 s).

```rust
use tern_client::{ClientConfig, Primary, TernClient};

let mut cfg = ClientConfig::new(
    "http://tern.internal:3000", "messages-demo", "{{client}}", token,
);
cfg.write_routing = true;
let tern = TernClient::connect(cfg).await?;

// The key is the row's bucket column (here the member id).
let permit = tern.write_permit(&member_id.to_string()).await?;
match permit.primary() {
    Primary::New => new_store.save(&message).await?,
    _ => old_store.save(&message).await?,
}
drop(permit); // after the commit
```

Without `tern-client`, long-poll
`GET /api/v1/write-routing?migration=messages-demo&client={{client}}&applied=V&wait_ms=5000`
with your API token (`applied` is the version whose writes have all finished),
or ask for one key with `GET /api/v1/primary?migration=messages-demo&client={{client}}&key=K`.
A service that has not heard from Tern for 20 s must hold its writes.
"#;

/// Seeds clients, traffic, shadow pairs, jobs and the guide for `migration_id`.
pub async fn seed(store: &Store, migration_id: i64) -> anyhow::Result<()> {
    let sys = Actor::system();
    store.set_guide(&sys, migration_id, GUIDE).await?;
    let migration = store.migration(migration_id).await?;
    // The demo gates ramps above 50%, so its journeys can ramp freely below.
    let mut gates = store.gates(migration_id).await?;
    gates.ramp_threshold = 50_000;
    store.set_gates(&sys, &gates).await?;
    let services = [
        ("inbox-service", "Inbox", "inbox-oncall@example.com", 25.0),
        ("search-api", "Search", "search@example.com", 10.0),
        ("notifications", "Growth", "growth@example.com", 0.0),
    ];
    let (_, collector) = store
        .create_token(&sys, migration_id, None, "demo collector")
        .await?;
    let grant = store
        .check_token(&collector)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the demo collector token was refused"))?;
    let now = now_ms();
    for (name, team, contact, ramp) in services {
        let c = store
            .create_client(
                &sys,
                migration_id,
                NewClient {
                    name: name.into(),
                    owner_team: team.into(),
                    owner_contact: contact.into(),
                    kind: "online".into(),
                },
            )
            .await?;
        if ramp > 0.0 {
            store
                .set_ramp(&sys, c.id, Ramp::from_percent(ramp)?, "demo ramp", None)
                .await?;
        }
        // An hour of traffic, per minute, with the share on new following the ramp.
        let share = ramp / 100.0;
        let reports: Vec<TrafficReport> = (0..60)
            .map(|m| {
                let total = 900 + (m * 37 % 200);
                let on_new = if m < 30 { share / 2.5 } else { share };
                let new = (total as f64 * on_new) as i64;
                TrafficReport {
                    client: name.into(),
                    at: Some(now - (60 - m) * 60_000),
                    interval_ms: Some(60_000),
                    old: total - new,
                    new,
                }
            })
            .collect();
        store.record_traffic(&grant, &reports).await?;
        for k in 0..20 {
            let old = json!({"member": k, "unread": 3, "labels": ["a", "b"]});
            let new = if k % 7 == 0 {
                json!({"member": k, "unread": 4, "labels": ["a", "b"]})
            } else {
                old.clone()
            };
            store
                .record_shadow(
                    &store.client(c.id).await?,
                    &format!("member-{k}"),
                    &old,
                    &new,
                )
                .await?;
        }
    }
    // A caller nobody registered, found from its traffic.
    store
        .record_traffic(
            &grant,
            &[TrafficReport {
                client: "legacy-reports".into(),
                at: None,
                interval_ms: None,
                old: 420,
                new: 0,
            }],
        )
        .await?;
    for (job, owner, schedule, old, new) in [
        (
            "nightly-export",
            "Data platform",
            "0 2 * * *",
            "contacts_v1",
            "contacts_v2",
        ),
        (
            "weekly-audit",
            "Risk",
            "0 6 * * 1",
            "messages_v1",
            "messages_v2",
        ),
    ] {
        store
            .create_offline_job(
                &sys,
                migration_id,
                NewOfflineJob {
                    name: job.into(),
                    owner: owner.into(),
                    schedule: schedule.into(),
                    reads: vec![(old.into(), new.into())],
                    status: String::new(),
                },
            )
            .await?;
        store.record_access(migration_id, job, old, None).await?;
    }
    tracing::info!(migration = %migration.name, "demo clients seeded");
    Ok(())
}
