//! `/v1/models`: Anthropic's list API over the gateway's routable ids.

use abridge::config::{CatalogModel, release_date};
use abridge::upstream::provider::Tier;

use crate::harness::{MockUpstream, Reply, TestApp, hello, openai_app, openai_text};

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn list_is_newest_first_and_pages_with_anthropic_cursors() {
    let (_mock, app) = openai_app().await;
    let (status, all) = app.get_json("/v1/models?limit=1000").await;
    assert_eq!(status, 200, "{all}");
    let every = ids(&all);
    for id in [
        "claude-opus-4-6",
        "claude-3-5-haiku-20241022",
        "claude-sonnet-4-5-20250929",
        "p/p-big",
        "p/p-mid",
        "p/p-small",
    ] {
        assert!(every.iter().any(|i| i == id), "{id} missing from {every:?}");
    }
    let first = &all["data"][0];
    assert_eq!(first["type"], "model");
    assert_eq!(first["id"], "claude-opus-5");
    assert_eq!(first["display_name"], "Claude Opus 5");
    assert_eq!(first["created_at"], "2026-07-24T00:00:00Z");
    let dates: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["created_at"].as_str().unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {dates:?}"
    );
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], "claude-opus-5");
    assert_eq!(all["last_id"].as_str(), every.last().map(String::as_str));

    let (_, default) = app.get_json("/v1/models").await;
    assert_eq!(ids(&default).len(), every.len().min(20), "default limit 20");

    // Walk forward five at a time, then one page back.
    let mut walked = Vec::new();
    let mut path = "/v1/models?limit=5".to_string();
    let mut pages = Vec::new();
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        walked.extend(ids(&page));
        pages.push(page.clone());
        if page["has_more"] == false {
            break;
        }
        path = format!(
            "/v1/models?limit=5&after_id={}",
            page["last_id"].as_str().unwrap()
        );
    }
    assert_eq!(walked, every);
    let second = &pages[1];
    let (_, back) = app
        .get_json(&format!(
            "/v1/models?limit=5&before_id={}",
            second["first_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ids(&back), ids(&pages[0]));
    assert_eq!(back["has_more"], false, "nothing before the first page");

    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("after_id=nope", "after_id"),
        ("before_id=nope", "before_id"),
    ] {
        let (status, body) = app.get_json(&format!("/v1/models?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(param), "{query}: {message}");
    }
    let r = app.client.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn get_model_answers_listed_ids_and_aliases() {
    let (_mock, app) = openai_app().await;
    let (status, model) = app.get_json("/v1/models/p/p-big").await;
    assert_eq!(status, 200, "provider/model ids contain a slash");
    assert_eq!(model["id"], "p/p-big");
    assert_eq!(
        model["created_at"], "1970-01-01T00:00:00Z",
        "release date unknown"
    );
    let (status, model) = app.get_json("/v1/models/claude-opus-4-5").await;
    assert_eq!(status, 200);
    assert_eq!(model["id"], "claude-opus-4-5-20251101", "an alias resolves");
    assert_eq!(model["created_at"], "2025-11-24T00:00:00Z");
    let (status, body) = app.get_json("/v1/models/gpt-unknown").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn only_served_tiers_are_listed_and_operator_ids_route() {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("hi"))).await;
    let providers = format!(
        "[[providers]]\nname = \"big-only\"\nbase_url = \"{}/v1\"\napi_keys = [\"k\"]\nmodels = {{ big = [\"up-big\"] }}\n",
        mock.url()
    );
    let app = TestApp::spawn_with(&providers, |s| {
        s.catalog.models.push(CatalogModel {
            id: "claude-fable-5".into(),
            display_name: Some("Claude Fable 5".into()),
            created_at: release_date::parse("2026-06-09").unwrap(),
            tier: Some(Tier::Big),
        });
    })
    .await;
    let (_, all) = app.get_json("/v1/models?limit=1000").await;
    let every = ids(&all);
    assert!(every.iter().any(|i| i == "claude-opus-4-6"));
    assert!(every.iter().any(|i| i == "claude-fable-5"));
    assert!(
        !every
            .iter()
            .any(|i| i.contains("haiku") || i.contains("sonnet")),
        "no provider serves those tiers: {every:?}"
    );
    let (status, _) = app.get_json("/v1/models/claude-3-5-haiku-20241022").await;
    assert_eq!(status, 404);
    let (status, body) = app.messages(hello("claude-fable-5")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        mock.received()[0].body["model"],
        "up-big",
        "listed ids route"
    );
}
