//! The control-plane store against real databases: every test runs on a
//! SQLite file and on a fresh PostgreSQL schema.

mod db;

use http::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate::Secret;
use tollgate::auth::{Authenticate, Identity, Role};
use tollgate::limits::{BudgetWindow, EndUsers, Scope, ScopeKind, SpendHistory};
use tollgate::pricing::Usd;
use tollgate::store::{
    AccessGroups, EndUserDirectory, KeyAuth, KeyAuthConfig, KeyHash, ManagementApi, SpendRow,
    SpendWriter, SpendWriterConfig, Store, StoreOptions, hash_key,
};

const MASTER: &str = "sk-test-master";

fn master() -> Identity {
    Identity::admin(MASTER)
}

fn groups() -> AccessGroups {
    let mut g = AccessGroups::default();
    g.add("beta", "m-beta-1");
    g.add("beta", "m-beta-2");
    g
}

fn auth_config() -> KeyAuthConfig {
    KeyAuthConfig {
        master_key: Some(Secret::new(MASTER)),
        access_groups: groups(),
        ..KeyAuthConfig::default()
    }
}

fn setup(store: &Store) -> (KeyAuth, ManagementApi) {
    let auth = KeyAuth::new(store.clone(), auth_config());
    let api = ManagementApi::new(store.clone()).with_auth(auth.clone(), groups());
    (auth, api)
}

async fn call(
    api: &ManagementApi,
    who: &Identity,
    method: &str,
    path: &str,
    body: Value,
) -> Result<Value, tollgate::Error> {
    let m = match method {
        "GET" => Method::GET,
        "DELETE" => Method::DELETE,
        _ => Method::POST,
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    api.handle(who, &m, path, query, &bytes).await
}

async fn ok(api: &ManagementApi, who: &Identity, method: &str, path: &str, body: Value) -> Value {
    call(api, who, method, path, body.clone())
        .await
        .unwrap_or_else(|e| panic!("{method} {path} {body}: {e:?}"))
}

async fn status(api: &ManagementApi, who: &Identity, method: &str, path: &str, body: Value) -> u16 {
    match call(api, who, method, path, body).await {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    }
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn date(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits (polling) until `cond` holds, or panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(start.elapsed() < limit, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both!(management_crud, |db: db::TestDb| async move {
    let store = db.open().await;
    let (auth, api) = setup(&store);
    let m = master();

    // Teams and members.
    let team = ok(
        &api,
        &m,
        "POST",
        "/team/new",
        json!({
            "team_id": "eng", "team_alias": "Engineering", "models": ["gpt-a", "gpt-b", "beta"],
            "max_budget": 100, "budget_duration": "30d", "rpm_limit": 100,
            "members_with_roles": [{"role": "admin", "user_id": "ann"}],
        }),
    )
    .await;
    assert_eq!(team["team_id"], "eng");
    assert_eq!(
        team["members_with_roles"][0],
        json!({"user_id": "ann", "role": "admin", "user_email": null})
    );
    assert_eq!(team["budget_duration"], "30d");
    assert!(team["budget_reset_at"].is_string());
    assert_eq!(
        status(&api, &m, "POST", "/team/new", json!({"team_id": "eng"})).await,
        400
    );
    let ann = ok(&api, &m, "GET", "/user/info?user_id=ann", Value::Null).await;
    assert_eq!(ann["user_info"]["user_role"], "internal_user_viewer");
    assert_eq!(ann["user_info"]["teams"], json!(["eng"]));

    // Users (with the key LiteLLM creates along).
    let bob = ok(
        &api,
        &m,
        "POST",
        "/user/new",
        json!({
            "user_id": "bob", "user_email": "bob@example.com", "user_role": "internal_user",
            "max_budget": 10, "teams": ["eng"],
        }),
    )
    .await;
    assert_eq!(bob["user_id"], "bob");
    assert!(bob["key"].as_str().unwrap().starts_with("sk-"));
    assert_eq!(bob["teams"], json!(["eng"]));
    assert_eq!(
        status(
            &api,
            &m,
            "POST",
            "/user/new",
            json!({"user_id": "x", "teams": ["nope"]})
        )
        .await,
        400
    );
    assert!(
        store.user("x").await.unwrap().is_none(),
        "a refused /user/new creates nothing"
    );

    // Keys.
    let generated = ok(
        &api,
        &m,
        "POST",
        "/key/generate",
        json!({
            "team_id": "eng", "user_id": "bob", "models": ["gpt-a"], "key_alias": "bob-key",
            "max_budget": 1.5, "tpm_limit": 1000, "rpm_limit": 10, "max_parallel_requests": 2,
            "metadata": {"app": "x"}, "tags": ["t1"], "duration": "30d",
            "model_max_budget": {"gpt-a": {"budget_limit": 0.5, "time_period": "1d"}},
            "model_rpm_limit": {"gpt-a": 5},
        }),
    )
    .await;
    let key = generated["key"].as_str().unwrap().to_owned();
    let hash = hash_key(&key);
    assert!(key.starts_with("sk-") && key.len() >= 35);
    assert_eq!(generated["token"], hash);
    assert_eq!(
        generated["key_name"],
        format!("sk-...{}", &key[key.len() - 4..])
    );
    let expires = generated["expires"].as_str().unwrap();
    assert!(expires.ends_with("+00:00"));
    let stored = store.key(&hash).await.unwrap().unwrap();
    let in_30d = now_secs() + 30 * 86_400;
    assert!((stored.expires.unwrap() - in_30d).abs() <= 5);
    assert_eq!(stored.limits.model_rpm_limit["gpt-a"], 5);
    assert_eq!(
        stored.limits.model_max_budget["gpt-a"]
            .time_period
            .as_deref(),
        Some("1d")
    );

    for q in [format!("key={}", enc(&key)), format!("key={hash}")] {
        let info = ok(&api, &m, "GET", &format!("/key/info?{q}"), Value::Null).await;
        assert_eq!(info["info"]["key_alias"], "bob-key");
        assert_eq!(info["info"]["spend"], 0.0);
        assert_eq!(info["info"]["max_budget"], 1.5);
        assert!(
            info["info"].get("token").is_none(),
            "/key/info never shows the hash"
        );
    }
    let list = ok(&api, &m, "GET", "/key/list", Value::Null).await;
    assert!(list["keys"].as_array().unwrap().contains(&json!(hash)));
    assert_eq!(list["total_count"], 2);
    let list = ok(
        &api,
        &m,
        "GET",
        "/key/list?user_id=bob&return_full_object=true&size=1",
        Value::Null,
    )
    .await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list["total_pages"], 2);
    assert!(list["keys"][0]["key_name"].is_string());

    let upd = ok(
        &api,
        &m,
        "POST",
        "/key/update",
        json!({
            "key": key, "max_budget": 2, "models": ["gpt-a", "gpt-b"], "metadata": {"app": "y"},
        }),
    )
    .await;
    assert_eq!(upd["max_budget"], 2.0);
    assert_eq!(upd["metadata"], json!({"app": "y"}));
    assert_eq!(upd["rpm_limit"], 10, "fields not sent are unchanged");
    assert_eq!(
        status(
            &api,
            &m,
            "POST",
            "/key/update",
            json!({"key": key, "models": ["nope"]})
        )
        .await,
        400
    );
    assert_eq!(
        status(
            &api,
            &m,
            "POST",
            "/key/generate",
            json!({"team_id": "missing"})
        )
        .await,
        400
    );
    assert_eq!(
        status(
            &api,
            &m,
            "POST",
            "/key/generate",
            json!({"key_alias": "bob-key"})
        )
        .await,
        400
    );
    assert_eq!(
        status(
            &api,
            &m,
            "POST",
            "/key/update",
            json!({"key": "sk-unknown-key"})
        )
        .await,
        404
    );

    let info = ok(&api, &m, "GET", "/team/info?team_id=eng", Value::Null).await;
    assert_eq!(info["team_info"]["team_alias"], "Engineering");
    assert!(
        info["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["key_alias"] == "bob-key")
    );
    let added = ok(
        &api,
        &m,
        "POST",
        "/team/member_add",
        json!({
            "team_id": "eng", "member": {"role": "user", "user_id": "carol"},
        }),
    )
    .await;
    assert!(
        added["members"]
            .as_array()
            .unwrap()
            .contains(&json!("carol"))
    );
    assert_eq!(added["updated_users"][0]["user_id"], "carol");
    let removed = ok(
        &api,
        &m,
        "POST",
        "/team/member_delete",
        json!({"team_id": "eng", "user_id": "carol"}),
    )
    .await;
    assert!(
        !removed["members"]
            .as_array()
            .unwrap()
            .contains(&json!("carol"))
    );
    let upd = ok(
        &api,
        &m,
        "POST",
        "/team/update",
        json!({"team_id": "eng", "max_budget": 200}),
    )
    .await;
    assert_eq!(upd["data"]["max_budget"], 200.0);
    assert_eq!(upd["data"]["rpm_limit"], 100);
    let teams = ok(&api, &m, "GET", "/team/list", Value::Null).await;
    assert_eq!(teams.as_array().unwrap().len(), 1);

    let info = ok(&api, &m, "GET", "/user/info?user_id=bob", Value::Null).await;
    assert_eq!(info["user_info"]["user_role"], "internal_user");
    assert_eq!(info["keys"].as_array().unwrap().len(), 2);
    assert_eq!(info["teams"][0]["team_id"], "eng");
    let upd = ok(
        &api,
        &m,
        "POST",
        "/user/update",
        json!({"user_id": "bob", "max_budget": 20}),
    )
    .await;
    assert_eq!(upd["max_budget"], 20.0);
    assert_eq!(upd["user_email"], "bob@example.com");
    let users = ok(&api, &m, "GET", "/user/list", Value::Null).await;
    assert_eq!(users["total"], 3, "{users}");

    // Customers (also under LiteLLM's /end_user/ names).
    let c = ok(
        &api,
        &m,
        "POST",
        "/customer/new",
        json!({
            "user_id": "cust-1", "max_budget": "3", "budget_duration": "1mo", "rpm_limit": 5,
        }),
    )
    .await;
    assert_eq!(c["litellm_budget_table"]["max_budget"], 3.0);
    assert_eq!(c["litellm_budget_table"]["budget_duration"], "1mo");
    let c = ok(
        &api,
        &m,
        "GET",
        "/customer/info?end_user_id=cust-1",
        Value::Null,
    )
    .await;
    assert_eq!(c["spend"], 0.0);
    assert_eq!(c["blocked"], false);
    ok(
        &api,
        &m,
        "POST",
        "/customer/update",
        json!({"user_id": "cust-1", "alias": "Acme"}),
    )
    .await;
    ok(
        &api,
        &m,
        "POST",
        "/customer/block",
        json!({"user_ids": ["cust-1"]}),
    )
    .await;
    let c = ok(
        &api,
        &m,
        "GET",
        "/end_user/info?end_user_id=cust-1",
        Value::Null,
    )
    .await;
    assert_eq!(
        (c["alias"].as_str(), c["blocked"].as_bool()),
        (Some("Acme"), Some(true))
    );
    let dir = EndUserDirectory::new(store.clone(), false);
    let e = dir.end_user("cust-1").await.unwrap_err();
    assert_eq!(e.status().as_u16(), 403);
    ok(
        &api,
        &m,
        "POST",
        "/customer/unblock",
        json!({"user_ids": ["cust-1"]}),
    )
    .await;
    dir.invalidate("cust-1");
    let s = dir.end_user("cust-1").await.unwrap().unwrap();
    assert_eq!(s.scope, Scope::new(ScopeKind::EndUser, "cust-1"));
    assert_eq!(s.limits.max_budget, Some(Usd::from_f64(3.0).unwrap()));
    assert_eq!(s.limits.budget_window, Some(BudgetWindow::Months(1)));
    assert!(dir.end_user("nobody").await.unwrap().is_none());
    assert_eq!(
        ok(&api, &m, "GET", "/customer/list", Value::Null)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    ok(
        &api,
        &m,
        "POST",
        "/customer/delete",
        json!({"user_ids": ["cust-1"]}),
    )
    .await;
    assert_eq!(
        status(
            &api,
            &m,
            "GET",
            "/customer/info?end_user_id=cust-1",
            Value::Null
        )
        .await,
        404
    );

    // Regenerate, block, delete.
    assert!(auth.authenticate(Some(&key)).await.is_ok());
    let regen = ok(
        &api,
        &m,
        "POST",
        "/key/regenerate",
        json!({"key": key, "max_budget": 3}),
    )
    .await;
    let new_key = regen["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(regen["key_alias"], "bob-key");
    assert_eq!(regen["max_budget"], 3.0);
    assert_eq!(
        regen["key_id"], generated["key_id"],
        "the stable id survives regeneration"
    );
    assert_eq!(
        status(
            &api,
            &m,
            "GET",
            &format!("/key/info?key={}", enc(&key)),
            Value::Null
        )
        .await,
        404
    );
    assert_eq!(
        auth.authenticate(Some(&key))
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        401
    );
    assert!(auth.authenticate(Some(&new_key)).await.is_ok());
    let path = format!("/key/{}/regenerate", hash_key(&new_key));
    let regen2 = ok(&api, &m, "POST", &path, json!({})).await;
    let newer = regen2["key"].as_str().unwrap().to_owned();
    assert_eq!(
        auth.authenticate(Some(&new_key))
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        401
    );
    let b = ok(&api, &m, "POST", "/key/block", json!({"key": newer})).await;
    assert_eq!(b["blocked"], true);
    assert_eq!(
        auth.authenticate(Some(&newer))
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        401
    );
    ok(&api, &m, "POST", "/key/unblock", json!({"key": newer})).await;
    assert!(auth.authenticate(Some(&newer)).await.is_ok());
    let d = ok(&api, &m, "POST", "/key/delete", json!({"keys": [newer]})).await;
    assert_eq!(d["deleted_keys"], json!([newer]));
    assert_eq!(
        auth.authenticate(Some(&newer))
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        status(&api, &m, "POST", "/key/delete", json!({"keys": [newer]})).await,
        404
    );

    // Deleting a team deletes its keys; deleting a user deletes theirs.
    let k2 = ok(&api, &m, "POST", "/key/generate", json!({"team_id": "eng"})).await;
    let d = ok(
        &api,
        &m,
        "POST",
        "/team/delete",
        json!({"team_ids": ["eng"]}),
    )
    .await;
    assert_eq!(d["deleted_teams"], json!(["eng"]));
    assert!(
        store
            .key(k2["token"].as_str().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let bobs_key = bob["key"].as_str().unwrap();
    assert!(auth.authenticate(Some(bobs_key)).await.is_ok());
    ok(
        &api,
        &m,
        "POST",
        "/user/delete",
        json!({"user_ids": ["bob"]}),
    )
    .await;
    assert_eq!(
        auth.authenticate(Some(bobs_key))
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(db.count("tollgate_keys").await, 0);
    store.close().await;
});

fn row(
    key: Option<&str>,
    display: &str,
    model: &str,
    pico: Option<i128>,
    start_ms: i64,
) -> SpendRow {
    SpendRow {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: uuid::Uuid::now_v7().to_string(),
        call_type: "chat".into(),
        key_hash: key.map(|k| KeyHash(hash_key(k))),
        key_display: key.map(|_| display.to_owned()),
        team_id: key.map(|_| "t1".to_owned()),
        user_id: key.map(|_| "u1".to_owned()),
        end_user: Some(if key.is_some() { "e1" } else { "e2" }.to_owned()),
        model: model.into(),
        model_group: model.into(),
        model_id: Some("dep-1".into()),
        provider: Some("openai".into()),
        api_base: None,
        prompt_tokens: 10,
        completion_tokens: 5,
        spend: pico.map(Usd::from_pico),
        start_ms,
        end_ms: start_ms + 100,
        ttft_ms: Some(20),
        status: "success",
        http_status: 200,
        error_class: None,
        tags: vec!["x".into()],
        cache_hit: false,
        stream: false,
        usage_estimated: false,
        attempts: 1,
    }
}

// A batch of fresh rows is written many rows per statement, and the same
// batch again (retried after its commit) adds nothing, on every path: whole
// many-row statements, the one-row rest, and a retry overlapping the first.
on_both!(
    retried_large_batches_add_nothing,
    |db: db::TestDb| async move {
        let store = db.open().await;
        let now_ms = now_secs() * 1000;
        let rows: Vec<SpendRow> = (0..60)
            .map(|i| row(None, "", "m1", Some(1_000 + i), now_ms))
            .collect();
        let sum: i128 = (0..60).map(|i| 1_000 + i).sum();
        assert_eq!(store.write_spend(&rows[..40]).await.unwrap(), 40);
        assert_eq!(store.write_spend(&rows).await.unwrap(), 20);
        assert_eq!(store.write_spend(&rows).await.unwrap(), 0);
        assert_eq!(db.count("tollgate_spend_logs").await, 60);
        let total = store.spent(&Scope::global(), None, None).await.unwrap();
        assert_eq!(total, Usd::from_pico(sum));
        let end_user = Scope::new(ScopeKind::EndUser, "e2");
        assert_eq!(
            store.spent(&end_user, None, None).await.unwrap(),
            Usd::from_pico(sum)
        );
    }
);

// A batch spans several multi-row statements; an id repeated inside it and
// a row written by an earlier batch each count once.
on_both!(
    large_batches_count_each_row_once,
    |db: db::TestDb| async move {
        let store = db.open().await;
        let now_ms = now_secs() * 1000;
        let earlier = row(None, "", "m1", Some(7), now_ms);
        assert_eq!(
            store
                .write_spend(std::slice::from_ref(&earlier))
                .await
                .unwrap(),
            1
        );
        let mut rows: Vec<SpendRow> = (0..150)
            .map(|_| row(None, "", "m1", Some(1_000), now_ms))
            .collect();
        rows.insert(70, rows[3].clone());
        rows.push(earlier.clone());
        assert_eq!(store.write_spend(&rows).await.unwrap(), 150);
        assert_eq!(db.count("tollgate_spend_logs").await, 151);
        let total = store.spent(&Scope::global(), None, None).await.unwrap();
        assert_eq!(total, Usd::from_pico(150 * 1_000 + 7));
    }
);

on_both!(spend_sums_are_exact, |db: db::TestDb| async move {
    let store = db.open().await;
    let (_, api) = setup(&store);
    let m = master();
    ok(&api, &m, "POST", "/team/new", json!({"team_id": "t1"})).await;
    ok(
        &api,
        &m,
        "POST",
        "/user/new",
        json!({"user_id": "u1", "auto_create_key": false}),
    )
    .await;
    let generated = ok(
        &api,
        &m,
        "POST",
        "/key/generate",
        json!({"team_id": "t1", "user_id": "u1"}),
    )
    .await;
    let key = generated["key"].as_str().unwrap().to_owned();
    let hash = hash_key(&key);
    let display = generated["key_name"].as_str().unwrap().to_owned();

    // As if the key, team and user had been created long ago.
    for t in ["tollgate_keys", "tollgate_teams", "tollgate_users"] {
        db.exec(&format!("UPDATE {t} SET budget_start = 0")).await;
    }
    let now_ms = now_secs() * 1000;
    let r1 = 1_000_000_000_001i128; // $1.000000000001
    let r2 = 123_456_789_012i128; // $0.123456789012
    let r4 = 2_000_000_000_000i128;
    // r1 two days ago (a whole day in the rollups), r2 an hour ago, r3 unpriced, r4 without a key.
    let rows = vec![
        row(
            Some(&key),
            &display,
            "m1",
            Some(r1),
            now_ms - 2 * 86_400_000,
        ),
        row(Some(&key), &display, "m2", Some(r2), now_ms - 3_600_000),
        row(Some(&key), &display, "m1", None, now_ms),
        row(None, "", "m1", Some(r4), now_ms - 60_000),
    ];
    assert_eq!(store.write_spend(&rows).await.unwrap(), 4);
    assert_eq!(
        store.write_spend(&rows).await.unwrap(),
        0,
        "a retried batch counts once"
    );
    assert_eq!(db.count("tollgate_spend_logs").await, 4);

    let spent = |kind, id: &str, model: Option<&str>, since: Option<u64>| {
        let s = store.clone();
        let scope = if kind == ScopeKind::Global {
            Scope::global()
        } else {
            Scope::new(kind, id)
        };
        let model = model.map(str::to_owned);
        async move {
            s.spent(&scope, model.as_deref(), since)
                .await
                .unwrap()
                .pico()
        }
    };
    assert_eq!(spent(ScopeKind::Global, "", None, None).await, r1 + r2 + r4);
    assert_eq!(spent(ScopeKind::Key, &hash, None, None).await, r1 + r2);
    assert_eq!(spent(ScopeKind::Key, &hash, Some("m1"), None).await, r1);
    assert_eq!(spent(ScopeKind::Key, &hash, Some("m2"), None).await, r2);
    // `since` in the middle of a day: that day comes from the logs, not the rollup.
    let three_hours_ago = (now_secs() - 3 * 3600) as u64;
    assert_eq!(
        spent(ScopeKind::Key, &hash, None, Some(three_hours_ago)).await,
        r2
    );
    let day_of_r1 = ((now_ms - 2 * 86_400_000) / 86_400_000 * 86_400) as u64;
    assert_eq!(
        spent(ScopeKind::Key, &hash, None, Some(day_of_r1)).await,
        r1 + r2
    );
    for (kind, id) in [
        (ScopeKind::Team, "t1"),
        (ScopeKind::User, "u1"),
        (ScopeKind::EndUser, "e1"),
    ] {
        assert_eq!(spent(kind, id, None, None).await, r1 + r2, "{kind:?}");
    }
    assert_eq!(spent(ScopeKind::EndUser, "e2", None, None).await, r4);
    // The customer was created by its spend; the key's spend column follows.
    let e2 = store.end_user("e2").await.unwrap().unwrap();
    assert_eq!(i128::from(e2.spend_pico), r4);
    let k = store.key(&hash).await.unwrap().unwrap();
    assert_eq!(i128::from(k.spend_pico), r1 + r2);
    let info = ok(
        &api,
        &m,
        "GET",
        &format!("/key/info?key={hash}"),
        Value::Null,
    )
    .await;
    assert_eq!(info["info"]["spend"], Usd::from_pico(r1 + r2).as_f64());

    // Spend logs show the key's display form, never the key or its hash.
    let logs = ok(
        &api,
        &m,
        "GET",
        &format!("/spend/logs?api_key={}", enc(&key)),
        Value::Null,
    )
    .await;
    assert_eq!(logs.as_array().unwrap().len(), 3);
    let text = logs.to_string();
    assert!(!text.contains(&hash) && !text.contains(&key));
    assert_eq!(logs[0]["api_key"], display);
    assert_eq!(logs[0]["user"], "u1");
    // By request id (its own index), alone and with the key: exactly that row.
    for query in [
        format!("/spend/logs?request_id={}", enc(&rows[1].request_id)),
        format!(
            "/spend/logs?request_id={}&api_key={}",
            enc(&rows[1].request_id),
            enc(&key)
        ),
    ] {
        let one = ok(&api, &m, "GET", &query, Value::Null).await;
        assert_eq!(one.as_array().unwrap().len(), 1, "{query}");
        assert_eq!(one[0]["request_id"], rows[1].request_id.as_str());
    }
    let none = ok(
        &api,
        &m,
        "GET",
        &format!(
            "/spend/logs?request_id={}&api_key={}",
            enc(&rows[3].request_id),
            enc(&key)
        ),
        Value::Null,
    )
    .await;
    assert_eq!(none.as_array().unwrap().len(), 0, "row 4 has no key");
    let today = now_ms / 86_400_000;
    let daily = ok(
        &api,
        &m,
        "GET",
        &format!(
            "/spend/logs?start_date={}&end_date={}",
            date(today - 2),
            date(today)
        ),
        Value::Null,
    )
    .await;
    let days = daily.as_array().unwrap();
    assert_eq!(days.len(), 3, "{daily}");
    assert_eq!(days[0]["startTime"], date(today - 2));
    assert_eq!(days[0]["spend"], Usd::from_pico(r1).as_f64());
    assert_eq!(days[0]["users"]["u1"], Usd::from_pico(r1).as_f64());
    assert_eq!(days[0]["models"]["m1"], Usd::from_pico(r1).as_f64());
    let total: f64 = days.iter().map(|d| d["spend"].as_f64().unwrap()).sum();
    assert!((total - Usd::from_pico(r1 + r2 + r4).as_f64()).abs() < 1e-9);
    let g = ok(&api, &m, "GET", "/global/spend", Value::Null).await;
    assert_eq!(g["spend"], Usd::from_pico(r1 + r2 + r4).as_f64());
    let models = ok(&api, &m, "GET", "/global/spend/models", Value::Null).await;
    assert_eq!(models[0]["model"], "m1");
    let keys = ok(&api, &m, "GET", "/global/spend/keys?limit=5", Value::Null).await;
    assert_eq!(keys[0]["total_spend"], Usd::from_pico(r1 + r2).as_f64());
    assert_eq!(keys[0]["key_name"], display);
    let teams = ok(&api, &m, "GET", "/global/spend/teams", Value::Null).await;
    assert_eq!(teams["total_spend_per_team"][0]["team_id"], "t1");

    // Regenerating keeps the history; a spend reset starts it over.
    let regen = ok(&api, &m, "POST", "/key/regenerate", json!({"key": key})).await;
    let new_hash = regen["token"].as_str().unwrap().to_owned();
    assert_eq!(spent(ScopeKind::Key, &new_hash, None, None).await, r1 + r2);
    ok(
        &api,
        &m,
        "POST",
        &format!("/key/{new_hash}/reset_spend"),
        json!({"reset_to": 0}),
    )
    .await;
    assert_eq!(spent(ScopeKind::Key, &new_hash, None, None).await, 0);
    assert_eq!(store.key(&new_hash).await.unwrap().unwrap().spend_pico, 0);

    // Sums beyond 64 bits stay exact (rows a day apart, $9M each).
    let big = 9_000_000_000_000_000_000i128;
    let rows: Vec<SpendRow> = (0..3)
        .map(|d| row(None, "", "big", Some(big), now_ms - (d + 5) * 86_400_000))
        .collect();
    store.write_spend(&rows).await.unwrap();
    assert_eq!(
        spent(ScopeKind::Global, "", Some("big"), None).await,
        3 * big
    );
    store.close().await;
});

on_both!(
    key_auth_builds_identities_and_refuses_alike,
    |db: db::TestDb| async move {
        let store = db.open().await;
        let clock = Arc::new(AtomicI64::new(now_secs()));
        let c = clock.clone();
        let auth = KeyAuth::with_clock(store.clone(), auth_config(), move || {
            c.load(Ordering::SeqCst)
        });
        let api = ManagementApi::new(store.clone()).with_auth(auth.clone(), groups());
        let m = master();
        ok(
            &api,
            &m,
            "POST",
            "/team/new",
            json!({"team_id": "tm", "models": ["beta", "gpt-x"], "max_budget": 50}),
        )
        .await;
        ok(
            &api,
            &m,
            "POST",
            "/user/new",
            json!({"user_id": "uu", "max_budget": 7, "auto_create_key": false}),
        )
        .await;
        let generated = ok(&api, &m, "POST", "/key/generate", json!({
        "team_id": "tm", "user_id": "uu", "models": ["beta"], "max_budget": 3, "budget_duration": "1d",
        "rpm_limit": 10, "tpm_limit": 100, "max_parallel_requests": 2, "soft_budget": 2,
        "model_max_budget": {"m-beta-1": 1}, "model_rpm_limit": {"m-beta-1": 3}, "duration": "1h",
        "key_alias": "k1",
    })).await;
        let key = generated["key"].as_str().unwrap().to_owned();
        let hash = hash_key(&key);
        let created = store.key(&hash).await.unwrap().unwrap().created_at as u64;

        let id = auth.authenticate(Some(&key)).await.unwrap();
        assert_eq!(id.role, Role::Key);
        assert_eq!(id.key_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(
            id.key_display.as_deref(),
            Some(format!("sk-...{}", &key[key.len() - 4..]).as_str())
        );
        assert_eq!(
            (
                id.key_alias.as_deref(),
                id.team_id.as_deref(),
                id.user_id.as_deref()
            ),
            (Some("k1"), Some("tm"), Some("uu"))
        );
        assert!(id.may_use("m-beta-1") && id.may_use("m-beta-2"));
        assert!(!id.may_use("gpt-x") && !id.may_use("beta") && !id.may_use("anything"));
        let subjects: Vec<_> = id.subjects.iter().collect();
        assert_eq!(subjects.len(), 3);
        let k = &subjects[0];
        assert_eq!(k.scope, Scope::new(ScopeKind::Key, hash.as_str()));
        assert_eq!(k.budget_anchor, created);
        assert_eq!(k.limits.max_budget, Some(Usd::from_f64(3.0).unwrap()));
        assert_eq!(k.limits.soft_budget, Some(Usd::from_f64(2.0).unwrap()));
        assert_eq!(k.limits.budget_window, Some(BudgetWindow::Seconds(86_400)));
        assert_eq!(
            (k.limits.rpm, k.limits.tpm, k.limits.max_parallel),
            (Some(10), Some(100), Some(2))
        );
        assert_eq!(
            k.limits.model_budgets["m-beta-1"].max_budget,
            Usd::from_f64(1.0).unwrap()
        );
        assert_eq!(k.limits.model_rpm["m-beta-1"], 3);
        assert_eq!(subjects[1].scope, Scope::new(ScopeKind::Team, "tm"));
        assert_eq!(
            subjects[1].limits.max_budget,
            Some(Usd::from_f64(50.0).unwrap())
        );
        assert_eq!(subjects[2].scope, Scope::new(ScopeKind::User, "uu"));
        assert_eq!(
            subjects[2].limits.max_budget,
            Some(Usd::from_f64(7.0).unwrap())
        );
        let shown = format!("{id:?}");
        assert!(!shown.contains(&hash) && !shown.contains(&key), "{shown}");
        // Answered from memory the second time.
        assert!(auth.cached_keys() >= 1);
        assert_eq!(auth.authenticate(Some(&key)).await.unwrap(), id);

        // Expiry by `duration`, on the clock.
        clock.fetch_add(3601, Ordering::SeqCst);
        let expired = auth.authenticate(Some(&key)).await.unwrap_err();
        clock.fetch_sub(3601, Ordering::SeqCst);
        assert!(auth.authenticate(Some(&key)).await.is_ok());

        // Every bad-key variant: the same 401.
        let team2 = ok(&api, &m, "POST", "/team/new", json!({"team_id": "tm2"})).await;
        assert_eq!(team2["team_id"], "tm2");
        let k2 = ok(&api, &m, "POST", "/key/generate", json!({"team_id": "tm2"})).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(auth.authenticate(Some(&k2)).await.is_ok());
        ok(&api, &m, "POST", "/team/block", json!({"team_id": "tm2"})).await;
        let k3 = ok(&api, &m, "POST", "/key/generate", json!({})).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        ok(&api, &m, "POST", "/key/block", json!({"key": k3})).await;
        let k4 = ok(&api, &m, "POST", "/key/generate", json!({})).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(auth.authenticate(Some(&k4)).await.is_ok());
        ok(&api, &m, "POST", "/key/delete", json!({"keys": [k4]})).await;
        let k5 = ok(&api, &m, "POST", "/key/generate", json!({})).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        ok(&api, &m, "POST", "/key/regenerate", json!({"key": k5})).await;
        let long = format!("sk-{}", "a".repeat(10_240));
        let variants: Vec<(&str, Option<&str>)> = vec![
            ("missing", None),
            ("empty", Some("")),
            ("malformed", Some("not-a-key")),
            ("prefix only", Some("sk-")),
            ("unknown", Some("sk-unknown-0123456789abcdef")),
            ("sql", Some("sk-'; DROP TABLE tollgate_keys; --")),
            ("nul", Some("sk-abc\u{0}def")),
            ("10 KB", Some(&long)),
            ("master key typo", Some("sk-test-mastex")),
            ("team blocked", Some(&k2)),
            ("blocked", Some(&k3)),
            ("deleted", Some(&k4)),
            ("regenerated", Some(&k5)),
        ];
        let expected = expired.to_json();
        assert_eq!(expired.status().as_u16(), 401);
        for (what, cred) in variants {
            let e = auth.authenticate(cred).await.unwrap_err();
            assert_eq!(e.status().as_u16(), 401, "{what}");
            assert_eq!(
                e.to_json(),
                expected,
                "{what}: the body must not tell the cases apart"
            );
        }
        assert_eq!(
            db.count("tollgate_keys").await,
            4,
            "nothing was created or dropped by the probes"
        );

        // The master key; a proxy_admin user's key is an admin too.
        assert_eq!(
            auth.authenticate(Some(MASTER)).await.unwrap().role,
            Role::Admin
        );
        ok(
            &api,
            &m,
            "POST",
            "/user/new",
            json!({"user_id": "boss", "user_role": "proxy_admin", "auto_create_key": false}),
        )
        .await;
        let kb = ok(
            &api,
            &m,
            "POST",
            "/key/generate",
            json!({"user_id": "boss"}),
        )
        .await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let boss = auth.authenticate(Some(&kb)).await.unwrap();
        assert_eq!(boss.role, Role::Admin);
        assert!(boss.key_hash.is_some());
        store.close().await;
    }
);

/// A request body with one field replaced.
fn with(base: &Value, field: &str, v: Value) -> Value {
    let mut b = base.clone();
    b[field] = v;
    b
}

on_both!(hostile_inputs_change_nothing, |db: db::TestDb| async move {
    let store = db.open().await;
    let (auth, api) = setup(&store);
    let m = master();
    ok(&api, &m, "POST", "/team/new", json!({"team_id": "base"})).await;
    ok(
        &api,
        &m,
        "POST",
        "/user/new",
        json!({"user_id": "base-user"}),
    )
    .await;
    let kb = ok(
        &api,
        &m,
        "POST",
        "/key/generate",
        json!({"team_id": "base", "key_alias": "kb"}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &api,
        &m,
        "POST",
        "/customer/new",
        json!({"user_id": "base-cust"}),
    )
    .await;
    let before = db.snapshot().await;

    let ten_kb = "x".repeat(10 * 1024);
    let bad_strings: Vec<String> = vec![
        "x'; DROP TABLE tollgate_keys; --".into(),
        "robert\"); DELETE FROM tollgate_teams; --".into(),
        "a\u{0}b".into(),
        "1 OR 1=1; --".into(),
        "<script>alert(1)</script>".into(),
        "back\\slash".into(),
        ten_kb.clone(),
    ];
    let bad_values: Vec<Value> = vec![
        json!(-1),
        json!("abc"),
        json!(1e300),
        json!({"a": 1}),
        json!([1]),
        json!(true),
    ];
    // (route, a valid body, the text fields to spoil)
    let routes: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "/key/generate",
            json!({}),
            vec![
                "key_alias",
                "user_id",
                "team_id",
                "budget_duration",
                "duration",
                "key",
            ],
        ),
        (
            "/key/update",
            json!({"key": kb}),
            vec![
                "key",
                "key_alias",
                "user_id",
                "team_id",
                "budget_duration",
                "duration",
            ],
        ),
        ("/key/block", json!({"key": kb}), vec!["key"]),
        ("/key/unblock", json!({"key": kb}), vec!["key"]),
        (
            "/key/regenerate",
            json!({"key": kb}),
            vec!["key", "new_key"],
        ),
        (
            "/team/new",
            json!({"team_id": "new-team"}),
            vec!["team_id", "team_alias", "budget_duration"],
        ),
        (
            "/team/update",
            json!({"team_id": "base"}),
            vec!["team_id", "team_alias"],
        ),
        ("/team/block", json!({"team_id": "base"}), vec!["team_id"]),
        (
            "/team/member_delete",
            json!({"team_id": "base", "user_id": "base-user"}),
            vec!["team_id", "user_id"],
        ),
        (
            "/user/new",
            json!({"user_id": "new-user"}),
            vec![
                "user_id",
                "user_email",
                "user_alias",
                "user_role",
                "key_alias",
                "team_id",
            ],
        ),
        (
            "/user/update",
            json!({"user_id": "base-user"}),
            vec!["user_id", "user_email", "user_alias", "user_role"],
        ),
        (
            "/customer/new",
            json!({"user_id": "new-cust"}),
            vec!["user_id", "alias", "default_model", "allowed_model_region"],
        ),
        (
            "/customer/update",
            json!({"user_id": "base-cust"}),
            vec!["user_id", "alias", "default_model"],
        ),
    ];
    let object_fields: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "/key/generate",
            json!({}),
            vec![
                "metadata",
                "aliases",
                "model_max_budget",
                "model_rpm_limit",
                "model_tpm_limit",
            ],
        ),
        (
            "/key/update",
            json!({"key": kb}),
            vec!["metadata", "aliases", "model_max_budget", "model_rpm_limit"],
        ),
        (
            "/team/new",
            json!({"team_id": "new-team"}),
            vec!["metadata", "model_rpm_limit", "model_tpm_limit"],
        ),
        (
            "/team/update",
            json!({"team_id": "base"}),
            vec!["metadata", "model_rpm_limit"],
        ),
        (
            "/user/new",
            json!({"user_id": "new-user"}),
            vec!["metadata", "model_max_budget"],
        ),
        (
            "/user/update",
            json!({"user_id": "base-user"}),
            vec!["metadata", "model_max_budget"],
        ),
        (
            "/customer/new",
            json!({"user_id": "new-cust"}),
            vec!["model_max_budget"],
        ),
    ];
    let list_fields: Vec<(&str, Value, &str)> = vec![
        ("/key/generate", json!({}), "models"),
        ("/key/generate", json!({}), "tags"),
        ("/key/update", json!({"key": kb}), "models"),
        ("/key/delete", json!({}), "keys"),
        ("/key/delete", json!({}), "key_aliases"),
        ("/team/new", json!({"team_id": "new-team"}), "models"),
        ("/team/new", json!({"team_id": "new-team"}), "members"),
        ("/team/delete", json!({}), "team_ids"),
        ("/user/new", json!({"user_id": "new-user"}), "teams"),
        ("/user/new", json!({"user_id": "new-user"}), "models"),
        ("/user/delete", json!({}), "user_ids"),
        ("/customer/block", json!({}), "user_ids"),
        ("/customer/delete", json!({}), "user_ids"),
    ];
    let number_fields: Vec<(&str, Value)> = vec![
        ("/key/generate", json!({})),
        ("/key/update", json!({"key": kb})),
        ("/team/new", json!({"team_id": "new-team"})),
        ("/user/new", json!({"user_id": "new-user"})),
        ("/customer/new", json!({"user_id": "new-cust"})),
    ];
    let mut probes: Vec<(String, Value)> = Vec::new();
    for s in &bad_strings {
        for (route, base, fields) in &routes {
            for f in fields {
                probes.push((route.to_string(), with(base, f, json!(s))));
            }
        }
        // JSON-object fields: NUL characters and oversized values (their keys
        // are model names for the per-model maps, checked like ids).
        for (route, base, objects) in &object_fields {
            for obj in objects {
                if obj.starts_with("model_") {
                    probes.push((route.to_string(), with(base, obj, json!({ s.as_str(): 1 }))));
                } else if s.contains('\0') || s.len() > 8192 {
                    probes.push((route.to_string(), with(base, obj, json!({ "k": s }))));
                }
            }
        }
        for (route, base, field) in &list_fields {
            probes.push((route.to_string(), with(base, field, json!(["ok-value", s]))));
        }
        probes.push(("/team/member_add".into(), json!({"team_id": "base", "member": [{"role": "user", "user_id": "fresh-user"}, {"role": "user", "user_id": s}]})));
        probes.push(("/team/new".into(), json!({"team_id": "new-team", "members_with_roles": [{"role": "admin", "user_id": "fresh-user"}, {"role": "user", "user_email": s}]})));
    }
    for (route, base) in &number_fields {
        for f in [
            "max_budget",
            "soft_budget",
            "tpm_limit",
            "rpm_limit",
            "max_parallel_requests",
        ] {
            for v in &bad_values {
                probes.push((route.to_string(), with(base, f, v.clone())));
            }
        }
    }
    probes.push(("/key/generate".into(), json!({"metadata": {"big": ten_kb}})));
    probes.push((
        "/team/member_add".into(),
        json!({"team_id": "base", "member": {"role": "owner", "user_id": "fresh-user"}}),
    ));
    assert!(probes.len() > 300, "{}", probes.len());
    for (route, body) in &probes {
        let st = status(&api, &m, "POST", route, body.clone()).await;
        assert!(
            (400..500).contains(&st),
            "{route} {}: {st}",
            &body.to_string().chars().take(200).collect::<String>()
        );
    }
    // Raw bodies that are not JSON objects, and hostile query strings.
    for raw in [
        "[]",
        "\"x\"",
        "{",
        "{\"team_id\": \"a\u{0}\"}",
        "\u{0}",
        "{\"team_id\": 1}",
    ] {
        let st = match api
            .handle(&m, &Method::POST, "/team/new", None, raw.as_bytes())
            .await
        {
            Ok(_) => 200,
            Err(e) => e.status().as_u16(),
        };
        assert!((400..500).contains(&st), "{raw:?}: {st}");
    }
    for s in &bad_strings {
        for path in [
            "/key/info?key=",
            "/team/info?team_id=",
            "/user/info?user_id=",
            "/customer/info?end_user_id=",
            "/spend/logs?api_key=",
            "/spend/logs?user_id=",
            "/spend/logs?start_date=",
            "/key/list?team_id=",
            "/key/list?page=",
        ] {
            let st = status(&api, &m, "GET", &format!("{path}{}", enc(s)), Value::Null).await;
            assert!((400..500).contains(&st), "{path}: {st}");
        }
        assert_eq!(
            auth.authenticate(Some(s))
                .await
                .unwrap_err()
                .status()
                .as_u16(),
            401
        );
        let st = status(
            &api,
            &m,
            "POST",
            &format!("/key/{}/regenerate", enc(s)),
            json!({}),
        )
        .await;
        assert!((400..500).contains(&st), "regenerate path: {st}");
    }
    assert_eq!(
        db.snapshot().await,
        before,
        "refused requests must change nothing"
    );
    assert!(store.user("fresh-user").await.unwrap().is_none());
    store.close().await;
});

on_both!(keys_cannot_escalate, |db: db::TestDb| async move {
    let store = db.open().await;
    let (auth, api) = setup(&store);
    let m = master();
    ok(
        &api,
        &m,
        "POST",
        "/team/new",
        json!({"team_id": "tx", "models": ["gpt-a", "gpt-b"]}),
    )
    .await;
    ok(
        &api,
        &m,
        "POST",
        "/user/new",
        json!({"user_id": "iu", "user_role": "internal_user", "auto_create_key": false}),
    )
    .await;
    ok(
        &api,
        &m,
        "POST",
        "/user/new",
        json!({"user_id": "iv", "user_role": "internal_user_viewer", "auto_create_key": false}),
    )
    .await;
    let ku = ok(
        &api,
        &m,
        "POST",
        "/key/generate",
        json!({
            "user_id": "iu", "team_id": "tx", "models": ["gpt-a"], "max_budget": 5, "rpm_limit": 10,
            "budget_duration": "30d", "duration": "1h",
        }),
    )
    .await;
    let ku_key = ku["key"].as_str().unwrap().to_owned();
    let other = ok(&api, &m, "POST", "/key/generate", json!({"team_id": "tx"})).await;
    let other_key = other["key"].as_str().unwrap().to_owned();
    let kv = ok(&api, &m, "POST", "/key/generate", json!({"user_id": "iv"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let plain = ok(&api, &m, "POST", "/key/generate", json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let u = auth.authenticate(Some(&ku_key)).await.unwrap();
    let v = auth.authenticate(Some(&kv)).await.unwrap();
    let p = auth.authenticate(Some(&plain)).await.unwrap();
    assert_eq!(u.role, Role::Key);

    let before = db.count("tollgate_keys").await;
    for body in [
        json!({"models": ["gpt-b"]}),
        json!({"models": ["gpt-a", "gpt-b"]}),
        json!({"max_budget": 6}),
        json!({"rpm_limit": 11}),
        json!({"budget_duration": "1d"}),
        json!({"user_id": "someone-else"}),
        json!({"team_id": "other-team"}),
        json!({"key": "sk-i-choose-this-one"}),
        json!({"duration": "2h"}),
    ] {
        assert_eq!(
            status(&api, &u, "POST", "/key/generate", body.clone()).await,
            403,
            "{body}"
        );
    }
    assert_eq!(db.count("tollgate_keys").await, before);
    for (path, body) in [
        ("/team/new", json!({"team_id": "mine"})),
        ("/team/update", json!({"team_id": "tx", "max_budget": 1000})),
        (
            "/team/member_add",
            json!({"team_id": "tx", "member": {"role": "admin", "user_id": "iu"}}),
        ),
        (
            "/user/new",
            json!({"user_id": "evil", "user_role": "proxy_admin"}),
        ),
        (
            "/user/update",
            json!({"user_id": "iu", "user_role": "proxy_admin"}),
        ),
        ("/customer/new", json!({"user_id": "c"})),
        ("/global/spend/reset", json!({})),
        ("/key/update", json!({"key": ku_key, "max_budget": 100})),
        ("/key/update", json!({"key": ku_key, "team_id": "other"})),
        ("/key/reset_spend", json!({})),
    ] {
        let st = status(&api, &u, "POST", path, body.clone()).await;
        assert!(st == 403 || st == 404, "{path} {body}: {st}");
    }
    assert_eq!(
        status(
            &api,
            &u,
            "POST",
            &format!("/key/{}/reset_spend", hash_key(&ku_key)),
            json!({"reset_to": 0})
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &api,
            &u,
            "POST",
            "/key/update",
            json!({"key": other_key, "max_budget": 1})
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &api,
            &u,
            "POST",
            "/key/delete",
            json!({"keys": [other_key]})
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &api,
            &u,
            "GET",
            &format!("/key/info?key={}", enc(&other_key)),
            Value::Null
        )
        .await,
        404
    );
    assert_eq!(
        status(&api, &u, "GET", "/user/info?user_id=iv", Value::Null).await,
        404
    );
    for path in [
        "/user/list",
        "/global/spend",
        "/global/spend/keys",
        "/customer/list",
    ] {
        assert_eq!(
            status(&api, &u, "GET", path, Value::Null).await,
            403,
            "{path}"
        );
    }
    assert_eq!(
        store.user("iu").await.unwrap().unwrap().user_role.as_str(),
        "internal_user"
    );

    // Within its own limits it may make keys: inheriting what it has.
    let mine = ok(&api, &u, "POST", "/key/generate", json!({})).await;
    assert_eq!(
        (mine["user_id"].as_str(), mine["team_id"].as_str()),
        (Some("iu"), Some("tx"))
    );
    assert_eq!(mine["models"], json!(["gpt-a"]));
    assert_eq!(
        (mine["max_budget"].as_f64(), mine["rpm_limit"].as_i64()),
        (Some(5.0), Some(10))
    );
    let ku_expires = store
        .key(&hash_key(&ku_key))
        .await
        .unwrap()
        .unwrap()
        .expires;
    assert_eq!(
        store
            .key(mine["token"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap()
            .expires,
        ku_expires
    );
    let smaller = ok(
        &api,
        &u,
        "POST",
        "/key/generate",
        json!({"models": ["gpt-a"], "max_budget": 1, "duration": "10m"}),
    )
    .await;
    assert_eq!(smaller["max_budget"], 1.0);
    let list = ok(&api, &u, "GET", "/key/list", Value::Null).await;
    assert_eq!(list["total_count"], 3, "its own keys only: {list}");
    ok(
        &api,
        &u,
        "POST",
        "/key/update",
        json!({"key": smaller["key"], "max_budget": 2}),
    )
    .await;
    ok(
        &api,
        &u,
        "POST",
        "/key/delete",
        json!({"keys": [smaller["key"]]}),
    )
    .await;
    let info = ok(&api, &u, "GET", "/user/info", Value::Null).await;
    assert_eq!(info["user_id"], "iu");
    let made = auth.authenticate(mine["key"].as_str()).await.unwrap();
    assert!(made.may_use("gpt-a") && !made.may_use("gpt-b"));

    // A viewer reads its own; a plain key sees only itself.
    assert_eq!(
        status(&api, &v, "POST", "/key/generate", json!({})).await,
        403
    );
    assert_eq!(
        status(&api, &v, "POST", "/key/block", json!({"key": kv})).await,
        403
    );
    ok(&api, &v, "GET", "/key/list", Value::Null).await;
    for (method, path, body) in [
        ("POST", "/key/generate", json!({})),
        (
            "POST",
            "/key/update",
            json!({"key": plain, "max_budget": 9}),
        ),
        ("POST", "/key/block", json!({"key": other_key})),
        ("GET", "/key/list", Value::Null),
        ("GET", "/team/list", Value::Null),
        ("GET", "/global/spend", Value::Null),
        ("GET", "/global/spend/teams", Value::Null),
        ("POST", "/team/new", json!({"team_id": "x"})),
        ("GET", "/user/info?user_id=iu", Value::Null),
    ] {
        let st = status(&api, &p, method, path, body.clone()).await;
        assert!(st == 403 || st == 404, "plain key {method} {path}: {st}");
    }
    let own = ok(&api, &p, "GET", "/key/info", Value::Null).await;
    assert_eq!(
        own["info"]["key_name"],
        format!("sk-...{}", &plain[plain.len() - 4..])
    );
    assert_eq!(
        status(
            &api,
            &p,
            "GET",
            &format!("/key/info?key={}", enc(&other_key)),
            Value::Null
        )
        .await,
        404
    );
    ok(&api, &p, "GET", "/spend/logs", Value::Null).await;
    store.close().await;
});

on_both!(
    writer_queue_is_bounded_while_the_database_stalls,
    |db: db::TestDb| async move {
        let store = db.open().await;
        let config = SpendWriterConfig {
            interval: Duration::from_millis(50),
            max_batch: 10,
            capacity: 100,
        };
        let writer = SpendWriter::spawn(store.clone(), config);
        // Stall the database: another connection holds a write lock on the logs.
        let staller = db::Staller::start(&db).await;
        let now_ms = now_secs() * 1000;
        let mut pushed = 0u64;
        let start = Instant::now();
        // Keep pushing while the writer is stuck, well past several intervals.
        while start.elapsed() < Duration::from_millis(600)
            || !staller.writer_is_stuck(&writer).await
        {
            for _ in 0..200 {
                writer.push(row(None, "", "m", Some(1), now_ms));
                pushed += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the writer never got stuck: {:?}",
                writer.stats()
            );
        }
        let s = writer.stats();
        assert_eq!(s.queued + s.dropped, pushed);
        assert_eq!(s.written, 0);
        assert!(
            s.queued <= 100 + 10,
            "at most capacity + one batch in memory: {s:?}"
        );
        assert!(s.dropped >= pushed - 110, "{s:?}");
        staller.release().await;
        writer.flush().await;
        let s = writer.stats();
        assert_eq!(
            s.written, s.queued,
            "every queued row is written once the database answers: {s:?}"
        );
        assert_eq!(db.count("tollgate_spend_logs").await as u64, s.queued);
        writer.shutdown(Duration::from_secs(5)).await;
        assert!(
            !writer.push(row(None, "", "m", Some(1), now_ms)),
            "after shutdown rows are dropped"
        );
        store.close().await;
    }
);

on_both!(
    other_replicas_see_changes_within_seconds,
    |db: db::TestDb| async move {
        let store_a = db.open().await;
        let store_b = db.open().await;
        let (auth_a, api) = setup(&store_a);
        let auth_b = KeyAuth::new(store_b.clone(), auth_config());
        let feed = store_b.follow_changes(Some(auth_b.clone()), None, Duration::from_millis(100));
        let m = master();
        let key = ok(&api, &m, "POST", "/key/generate", json!({})).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(auth_b.authenticate(Some(&key)).await.is_ok());
        ok(&api, &m, "POST", "/key/block", json!({"key": key})).await;
        assert!(
            auth_a.authenticate(Some(&key)).await.is_err(),
            "at once on the replica that did it"
        );
        let b = auth_b.clone();
        let k = key.clone();
        eventually(
            "replica B refuses the blocked key",
            Duration::from_secs(10),
            || {
                let (b, k) = (b.clone(), k.clone());
                async move { b.authenticate(Some(&k)).await.is_err() }
            },
        )
        .await;
        ok(&api, &m, "POST", "/key/unblock", json!({"key": key})).await;
        eventually(
            "replica B accepts it again",
            Duration::from_secs(10),
            || {
                let (b, k) = (b.clone(), k.clone());
                async move { b.authenticate(Some(&k)).await.is_ok() }
            },
        )
        .await;
        ok(&api, &m, "POST", "/key/delete", json!({"keys": [key]})).await;
        eventually(
            "replica B refuses the deleted key",
            Duration::from_secs(10),
            || {
                let (b, k) = (b.clone(), k.clone());
                async move { b.authenticate(Some(&k)).await.is_err() }
            },
        )
        .await;
        feed.abort();
        store_a.close().await;
        store_b.close().await;
    }
);

on_both!(
    database_outage_follows_allow_requests_on_db_unavailable,
    |db: db::TestDb| async move {
        let store = db.open().await;
        let (_, api) = setup(&store);
        let key = ok(&api, &master(), "POST", "/key/generate", json!({})).await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let cached_then_refreshed = |allow: bool| KeyAuthConfig {
            ttl: Duration::ZERO,
            allow_requests_on_db_unavailable: allow,
            ..auth_config()
        };
        let strict = KeyAuth::new(store.clone(), cached_then_refreshed(false));
        let lenient = KeyAuth::new(store.clone(), cached_then_refreshed(true));
        let unknown = "sk-never-issued-00000000000000000";
        for a in [&strict, &lenient] {
            assert!(a.authenticate(Some(&key)).await.is_ok());
            assert_eq!(
                a.authenticate(Some(unknown))
                    .await
                    .unwrap_err()
                    .status()
                    .as_u16(),
                401
            );
        }
        let customers = EndUserDirectory::new(store.clone(), true);
        store.close().await; // the database is gone
        let s = strict.clone();
        let k = key.clone();
        eventually(
            "the strict replica refuses once its refresh fails",
            Duration::from_secs(10),
            || {
                let (s, k) = (s.clone(), k.clone());
                async move {
                    s.authenticate(Some(&k))
                        .await
                        .is_err_and(|e| e.status().as_u16() == 503)
                }
            },
        )
        .await;
        for _ in 0..20 {
            assert!(
                lenient.authenticate(Some(&key)).await.is_ok(),
                "allow_requests_on_db_unavailable keeps cached keys working"
            );
        }
        // Unknown keys remembered as unknown stay 401; new ones cannot be checked (503).
        assert_eq!(
            strict
                .authenticate(Some(unknown))
                .await
                .unwrap_err()
                .status()
                .as_u16(),
            401
        );
        let e = lenient
            .authenticate(Some("sk-another-never-issued-key-000"))
            .await
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 503);
        assert!(
            customers.end_user("someone").await.unwrap().is_none(),
            "fail open for end users too"
        );
    }
);

on_both!(replicas_migrate_concurrently, |db: db::TestDb| async move {
    let opens = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { Store::open(&StoreOptions::new(url)).await })
    });
    for h in opens {
        let store = h.await.unwrap().expect("every replica starts");
        store.ping().await.unwrap();
        store.close().await;
    }
    let scripts = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count() as i64;
    assert_eq!(
        db.count("tollgate_migrations").await,
        scripts,
        "each migration once"
    );
    let store = db.open().await;
    store.migrate().await.unwrap();
    store.close().await;
});

#[tokio::test]
async fn a_flood_of_random_keys_stays_bounded() {
    let db = db::TestDb::sqlite();
    let store = db.open().await;
    let auth = KeyAuth::new(
        store.clone(),
        KeyAuthConfig {
            negative_max_entries: 100,
            lookup_concurrency: 2,
            ..auth_config()
        },
    );
    let mut tasks = Vec::new();
    for i in 0..500 {
        let a = auth.clone();
        tasks.push(tokio::spawn(async move {
            a.authenticate(Some(&format!("sk-random-{i:08}-padding-padding")))
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().status().as_u16(), 401);
    }
    assert_eq!(auth.cached_keys(), 0, "unknown keys are not cached as keys");
    store.close().await;
}

/// A cached key costs a hash and a map lookup: no I/O. (Printed, with a
/// generous bound so a loaded machine does not fail it.)
#[tokio::test]
async fn cached_key_auth_costs_microseconds() {
    let db = db::TestDb::sqlite();
    let store = db.open().await;
    let (auth, api) = setup(&store);
    let key = ok(
        &api,
        &master(),
        "POST",
        "/key/generate",
        json!({"models": ["a", "b"], "max_budget": 1}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    auth.authenticate(Some(&key)).await.unwrap();
    store.close().await; // from here on, any database access would fail
    let n = 20_000u32;
    let start = Instant::now();
    for _ in 0..n {
        let id = auth.authenticate(Some(&key)).await.unwrap();
        std::hint::black_box(id);
    }
    let per = start.elapsed() / n;
    eprintln!("cached virtual-key authentication: {per:?} per request");
    assert!(per < Duration::from_millis(1), "{per:?}");
}

on_both!(
    many_first_requests_for_one_key_share_one_lookup,
    |db: db::TestDb| async move {
        let store = db.open().await;
        let (_, api) = setup(&store);
        let key = ok(
            &api,
            &master(),
            "POST",
            "/key/generate",
            json!({"max_budget": 1}),
        )
        .await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        // A fresh authenticator (another replica): 200 requests at once on a cold cache.
        let auth = KeyAuth::new(
            store.clone(),
            KeyAuthConfig {
                lookup_concurrency: 1,
                ..auth_config()
            },
        );
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (a, k) = (auth.clone(), key.clone());
                tokio::spawn(async move { a.authenticate(Some(&k)).await })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().expect("every request authenticates"));
        }
        assert!(ids.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(auth.cached_keys(), 1);
        store.close().await;
    }
);

// The budget-window sums read the partial day from the logs by scope: each
// must be served by its scope's index (partial: only rows of some scope), not
// by a scan of every row.
on_both!(
    budget_window_sums_use_the_scope_indexes,
    |db: db::TestDb| async move {
        let store = db.open().await;
        for (kind, index) in [
            (ScopeKind::Key, "tollgate_spend_logs_key"),
            (ScopeKind::Team, "tollgate_spend_logs_team"),
            (ScopeKind::User, "tollgate_spend_logs_user"),
            (ScopeKind::EndUser, "tollgate_spend_logs_end_user"),
            (ScopeKind::Global, "tollgate_spend_logs_start"),
        ] {
            let plan = store.budget_window_plan(kind).await.unwrap();
            assert!(
                plan.contains(index),
                "{}: {kind:?} sum not served by {index}:\n{plan}",
                db.kind
            );
        }
        store.close().await;
    }
);
