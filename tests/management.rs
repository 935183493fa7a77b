//! The management API over a real SQLite file and real loopback receivers: every operation,
//! every error path, the tenant-isolation matrix, and the OpenAPI document (every answer of
//! every test is checked against it by `common::management::App::call`).

mod common;
#[path = "common/management.rs"]
mod harness;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::time::Duration;

use dataops_webhooks::management::{self, ManagementOptions};
use harness::{admin, App, Who, NOBODY};
use reqwest::Method;
use serde_json::{json, Value};
use server::{Reply, TestServer};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

const ACME: Who = Who {
    org: "acme",
    projects: None,
};
const GLOBEX: Who = Who {
    org: "globex",
    projects: None,
};
/// An acme user limited to project `traffic-signs`.
const LABELER: Who = Who {
    org: "acme",
    projects: Some("traffic-signs"),
};

fn issue() -> Value {
    common::fixture_value("issue_exported.json")["issue"].clone()
}

async fn create(app: &App, who: Who, project: Option<&str>, url: &str, events: &[&str]) -> String {
    let mut body = json!({ "url": url, "events": events });
    if let Some(p) = project {
        body["project"] = json!(p);
    }
    let answer = app.call(who, POST, "/api/webhooks", &[], Some(body)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.json["id"].as_str().expect("id").to_owned()
}

/// Exports the sample issue in `project` as `who`.
async fn export(app: &App, who: Who, project: &str) -> harness::Answer {
    let body = json!({ "issue": issue() });
    app.call(
        who,
        POST,
        "/api/projects/{project}/export",
        &[project],
        Some(body),
    )
    .await
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn webhooks_are_created_listed_changed_toggled_and_deleted() {
    let app = App::start(None, ManagementOptions::new()).await;
    let receiver = TestServer::start(Reply::Status(200, "ok")).await;
    let body = json!({
        "project": "traffic-signs",
        "url": receiver.url("/labeling"),
        "events": ["issue-exported", "dataset-complete"],
        "description": "labeling hand-off",
        "headers": { "Authorization": "Bearer gateway-key", "X-Team": "vision" },
        "profile": "labelbox",
        "rate_limit": { "per_second": 50.0, "burst": 5 }
    });
    let created = app.call(ACME, POST, "/api/webhooks", &[], Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let hook = &created.json;
    let id = hook["id"].as_str().expect("id").to_owned();
    assert_eq!(hook["project"], "traffic-signs");
    assert_eq!(
        hook["events"],
        json!(["dataset-complete", "issue-exported"])
    );
    assert_eq!(hook["active"], true);
    assert_eq!(hook["profile"], "labelbox");
    assert_eq!(
        hook["rate_limit"],
        json!({ "per_second": 50.0, "burst": 5 })
    );
    assert_eq!(hook["header_names"], json!(["authorization", "x-team"]));
    assert!(
        !created.text.contains("gateway-key"),
        "header values are never shown"
    );

    let org_wide = create(&app, ACME, None, &receiver.url("/all"), &["*"]).await;
    let other = create(
        &app,
        ACME,
        Some("street-scenes"),
        &receiver.url("/s"),
        &["dataset-failed"],
    )
    .await;

    let got = app
        .call(ACME, GET, "/api/webhooks/{id}", &[&id], None)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json, created.json);

    let ids = |answer: &harness::Answer| -> Vec<String> {
        answer.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|w| w["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let all = app.call(ACME, GET, "/api/webhooks", &[], None).await;
    assert_eq!(ids(&all), [id.clone(), org_wide.clone(), other.clone()]);
    let project = app
        .call(ACME, GET, "/api/webhooks?project=traffic-signs", &[], None)
        .await;
    assert_eq!(ids(&project), [id.as_str()]);
    let wide = app
        .call(ACME, GET, "/api/webhooks?scope=organization", &[], None)
        .await;
    assert_eq!(ids(&wide), [org_wide.as_str()]);
    assert_eq!(wide.json["items"][0]["events"], json!(["*"]));

    // Cursor pagination: one at a time, until `next` is null.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/webhooks?limit=1&cursor={c}"),
            None => "/api/webhooks?limit=1".to_owned(),
        };
        let page = app.call(ACME, GET, &path, &[], None).await;
        assert_eq!(page.status, 200);
        seen.extend(ids(&page));
        match page.json["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, [id.clone(), org_wide.clone(), other.clone()]);

    // A change of URL, events, description and headers: `null` keeps a header's value.
    let patch = json!({
        "url": receiver.url("/labeling-v2"),
        "events": ["issue-exported"],
        "description": null,
        "headers": { "authorization": null, "x-new": "1" }
    });
    let changed = app
        .call(ACME, PATCH, "/api/webhooks/{id}", &[&id], Some(patch))
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.json["url"], receiver.url("/labeling-v2"));
    assert_eq!(changed.json["events"], json!(["issue-exported"]));
    assert_eq!(changed.json["description"], Value::Null);
    assert_eq!(
        changed.json["header_names"],
        json!(["authorization", "x-new"])
    );
    let stored = app
        .dispatcher
        .webhooks()
        .get(&id.parse().expect("id"))
        .await
        .expect("stored");
    assert_eq!(
        stored.headers.get("authorization"),
        Some("Bearer gateway-key")
    );

    let off = app
        .call(ACME, POST, "/api/webhooks/{id}/deactivate", &[&id], None)
        .await;
    assert_eq!(
        (
            off.status,
            off.json["active"].clone(),
            off.json["status"].clone()
        ),
        (200, json!(false), json!("inactive"))
    );
    let on = app
        .call(ACME, POST, "/api/webhooks/{id}/activate", &[&id], None)
        .await;
    assert_eq!((on.status, on.json["active"].clone()), (200, json!(true)));
    let via_patch = app
        .call(
            ACME,
            PATCH,
            "/api/webhooks/{id}",
            &[&id],
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(via_patch.json["status"], "inactive");

    let rotated = app
        .call(ACME, POST, "/api/webhooks/{id}/secret/rotate", &[&id], None)
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let secret = rotated.json["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    let after = app
        .call(ACME, GET, "/api/webhooks/{id}", &[&id], None)
        .await;
    assert_eq!(after.json["own_secret"], true);
    assert!(!after.text.contains(&secret));

    let deleted = app
        .call(ACME, DELETE, "/api/webhooks/{id}", &[&id], None)
        .await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    let gone = app
        .call(ACME, GET, "/api/webhooks/{id}", &[&id], None)
        .await;
    assert_eq!((gone.status, gone.problem()), (404, "not-found"));
    assert_eq!(gone.content_type, management::PROBLEM_JSON);
    let again = app
        .call(ACME, DELETE, "/api/webhooks/{id}", &[&id], None)
        .await;
    assert_eq!(again.status, 404);
}

#[tokio::test]
async fn bad_input_is_a_problem_that_points_at_the_field() {
    let app = App::start(None, ManagementOptions::new().max_body_bytes(4096)).await;
    let receiver = TestServer::start(Reply::Status(200, "ok")).await;
    let post = |body: Value| app.call(ACME, POST, "/api/webhooks", &[], Some(body));

    let cases = [
        (
            json!({ "project": "p", "url": "ftp://x.example", "events": ["issue-exported"] }),
            422,
            "invalid-input",
            "/url",
        ),
        (
            json!({ "project": "p", "url": "not a url", "events": ["issue-exported"] }),
            422,
            "invalid-input",
            "/url",
        ),
        (
            json!({ "project": "p", "url": "https://u:pw@x.example/", "events": ["issue-exported"] }),
            422,
            "invalid-input",
            "/url",
        ),
        (
            json!({ "project": "p", "url": receiver.url("/"), "events": ["issue-exported", "nope"] }),
            422,
            "invalid-input",
            "/events/1",
        ),
        (
            json!({ "project": "p", "url": receiver.url("/"), "events": ["webhook-test"] }),
            422,
            "invalid-input",
            "/events/0",
        ),
        (
            json!({ "project": "p", "url": receiver.url("/"), "events": [] }),
            422,
            "invalid-input",
            "/events",
        ),
        (
            json!({ "project": "p", "url": receiver.url("/"), "events": ["issue-exported"], "headers": { "X-Aquarium-Secret": "forged" } }),
            422,
            "invalid-input",
            "/headers",
        ),
        (
            json!({ "project": "p", "url": receiver.url("/"), "events": ["issue-exported"], "profile": "zapier" }),
            422,
            "invalid-input",
            "/profile",
        ),
        (
            json!({ "project": "p", "url": receiver.url("/"), "events": ["issue-exported"], "rate_limit": { "per_second": 0.0 } }),
            422,
            "invalid-input",
            "/rate_limit",
        ),
        (
            json!({ "project": "p", "url": receiver.url("/"), "events": ["issue-exported"], "description": "x".repeat(2000) }),
            422,
            "invalid-input",
            "/description",
        ),
        (
            json!({ "project": "", "url": receiver.url("/"), "events": ["issue-exported"] }),
            422,
            "invalid-input",
            "/project",
        ),
        (
            json!({ "project": "p", "urll": receiver.url("/"), "events": ["issue-exported"] }),
            400,
            "invalid-body",
            "/urll",
        ),
        (
            json!({ "project": "p", "url": receiver.url("/"), "events": [7] }),
            400,
            "invalid-body",
            "/events/0",
        ),
        (
            json!({ "project": "p", "events": ["issue-exported"] }),
            400,
            "invalid-body",
            "",
        ),
    ];
    for (body, status, kind, pointer) in cases {
        let answer = post(body.clone()).await;
        assert_eq!(
            (answer.status, answer.problem()),
            (status, kind),
            "{body}: {}",
            answer.text
        );
        if !pointer.is_empty() {
            assert_eq!(answer.pointer(), pointer, "{body}: {}", answer.text);
        }
        assert!(!answer.json["detail"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
    }
    // Nothing was written by any of them.
    let list = app.call(ACME, GET, "/api/webhooks", &[], None).await;
    assert_eq!(list.json["items"], json!([]));

    // Not JSON, too large, a changed project, bad query parameters.
    let text = app
        .send(
            app.raw(POST, "/api/webhooks")
                .header("content-type", "text/plain")
                .header("x-org", "acme")
                .header("x-requested-with", "t")
                .body("{}"),
        )
        .await;
    assert_eq!(
        (text.status, text.problem()),
        (415, "unsupported-media-type")
    );
    let big = json!({ "project": "p", "url": receiver.url("/"), "events": ["issue-exported"], "description": "x".repeat(5000) });
    let big = post(big).await;
    assert_eq!(
        (big.status, big.problem()),
        (413, "body-too-large"),
        "{}",
        big.text
    );
    let id = create(
        &app,
        ACME,
        Some("p"),
        &receiver.url("/"),
        &["issue-exported"],
    )
    .await;
    let moved = app
        .call(
            ACME,
            PATCH,
            "/api/webhooks/{id}",
            &[&id],
            Some(json!({ "project": "q" })),
        )
        .await;
    assert_eq!((moved.status, moved.pointer()), (400, "/project"));
    let keep_missing = app
        .call(
            ACME,
            PATCH,
            "/api/webhooks/{id}",
            &[&id],
            Some(json!({ "headers": { "x-none": null } })),
        )
        .await;
    assert_eq!(
        (keep_missing.status, keep_missing.pointer()),
        (422, "/headers/x-none")
    );
    for path in [
        "/api/webhooks?cursor=garbage",
        "/api/webhooks?project=p&scope=organization",
        "/api/webhooks?limit=many",
        "/api/subscribers?project=p&event=nope",
        "/api/subscribers?project=p",
    ] {
        let answer = app.call(ACME, GET, path, &[], None).await;
        assert_eq!(
            (answer.status, answer.problem()),
            (400, "invalid-input"),
            "{path}: {}",
            answer.text
        );
    }
    for path in [
        "/api/webhooks/{id}/deliveries?status=lost",
        "/api/webhooks/{id}/deliveries?cursor=x",
        "/api/webhooks/{id}/deliveries?since=yesterday",
    ] {
        let answer = app.call(ACME, GET, path, &[&id], None).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text);
    }
    let recover = app
        .call(
            ACME,
            POST,
            "/api/webhooks/{id}/recover",
            &[&id],
            Some(json!({ "since": "last week" })),
        )
        .await;
    assert_eq!((recover.status, recover.pointer()), (400, "/since"));
    let preview = app
        .call(
            ACME,
            POST,
            "/api/webhooks/{id}/preview",
            &[&id],
            Some(json!({ "event": { "event": "no-such-event" } })),
        )
        .await;
    assert_eq!((preview.status, preview.pointer()), (400, "/event/event"));
}

#[tokio::test]
async fn the_authorizer_decides_and_cross_site_changes_are_refused() {
    let app = App::start(
        None,
        ManagementOptions::new().allow_origin("https://app.acme.example"),
    )
    .await;
    let unknown = app.call(NOBODY, GET, "/api/webhooks", &[], None).await;
    assert_eq!(
        (unknown.status, unknown.problem()),
        (401, "unauthenticated")
    );
    assert_eq!(unknown.json["detail"], "sign in to manage webhooks");
    let banned = app
        .call(admin("banned"), POST, "/api/secret", &[], None)
        .await;
    assert_eq!((banned.status, banned.problem()), (403, "forbidden"));

    let body =
        json!({ "project": "p", "url": "http://127.0.0.1:9/", "events": ["issue-exported"] })
            .to_string();
    let form = app
        .send(
            app.raw(POST, "/api/webhooks")
                .header("x-org", "acme")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("url=x"),
        )
        .await;
    assert_eq!(
        (form.status, form.problem()),
        (403, "cross-site-request"),
        "{}",
        form.text
    );
    let bodiless = app
        .send(app.raw(POST, "/api/secret").header("x-org", "acme"))
        .await;
    assert_eq!(
        (bodiless.status, bodiless.problem()),
        (403, "cross-site-request")
    );
    let evil = app
        .send(
            app.raw(POST, "/api/webhooks")
                .header("x-org", "acme")
                .header("content-type", "application/json")
                .header("origin", "https://evil.example")
                .body(body.clone()),
        )
        .await;
    assert_eq!((evil.status, evil.problem()), (403, "cross-site-request"));
    let fetch_site = app
        .send(
            app.raw(DELETE, "/api/webhooks/x")
                .header("x-org", "acme")
                .header("x-requested-with", "t")
                .header("sec-fetch-site", "cross-site"),
        )
        .await;
    assert_eq!(fetch_site.status, 403);
    let allowed = app
        .send(
            app.raw(POST, "/api/webhooks")
                .header("x-org", "acme")
                .header("content-type", "application/json")
                .header("origin", "https://app.acme.example")
                .body(body.clone()),
        )
        .await;
    assert_eq!(allowed.status, 201, "{}", allowed.text);
    let host = app.base.trim_end_matches("/manage").to_owned();
    let same = app
        .send(
            app.raw(POST, "/api/webhooks")
                .header("x-org", "acme")
                .header("content-type", "application/json")
                .header("origin", host)
                .body(body),
        )
        .await;
    assert_eq!(same.status, 201, "{}", same.text);
    // Only the two accepted requests wrote anything.
    let list = app.call(ACME, GET, "/api/webhooks", &[], None).await;
    assert_eq!(list.json["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn the_organization_secret_is_shown_in_exactly_one_answer() {
    let app = App::start(None, ManagementOptions::new()).await;
    let receiver = TestServer::start(Reply::Status(200, "ok")).await;
    let status = app.call(ACME, GET, "/api/secret", &[], None).await;
    assert_eq!(status.json, json!({ "exists": false }));
    let generated = app.call(ACME, POST, "/api/secret", &[], None).await;
    assert_eq!(generated.status, 201);
    let secret = generated.json["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(generated.json["warning"]
        .as_str()
        .unwrap_or_default()
        .contains("shown once"));

    // Everything else a user can do, afterwards.
    let again = app.call(ACME, POST, "/api/secret", &[], None).await;
    assert_eq!((again.status, again.problem()), (409, "secret-exists"));
    let id = create(
        &app,
        ACME,
        Some("p"),
        &receiver.url("/"),
        &["issue-exported"],
    )
    .await;
    app.call(ACME, GET, "/api/webhooks/{id}", &[&id], None)
        .await;
    app.call(ACME, GET, "/api/webhooks", &[], None).await;
    app.call(ACME, GET, "/api/secret", &[], None).await;
    app.call(ACME, GET, "/api/access", &[], None).await;
    let test = app
        .call(ACME, POST, "/api/webhooks/{id}/test", &[&id], None)
        .await;
    assert_eq!(test.json["result"], "delivered");
    let event = json!({ "event": "issue-exported", "project": "p", "issue": issue() });
    let preview = app
        .call(
            ACME,
            POST,
            "/api/webhooks/{id}/preview",
            &[&id],
            Some(json!({ "event": event })),
        )
        .await;
    assert_eq!(preview.status, 200);
    let export = export(&app, ACME, "p").await;
    assert_eq!(export.status, 200);
    let deliveries = app
        .call(ACME, GET, "/api/webhooks/{id}/deliveries", &[&id], None)
        .await;
    let delivery = deliveries.json["items"][0]["id"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    app.call(ACME, GET, "/api/deliveries/{id}", &[&delivery], None)
        .await;
    app.call(
        ACME,
        GET,
        "/api/deliveries/{id}/attempts",
        &[&delivery],
        None,
    )
    .await;
    app.send(app.raw(GET, "/openapi.json")).await;
    app.send(app.raw(GET, "")).await;
    // The receiver got the shared-secret header: the secret signs, but is shown nowhere else.
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].header("x-aquarium-secret"), Some(secret.as_str()));
    let transcript = app.transcript.lock().expect("transcript").clone();
    let showing: Vec<usize> = (0..transcript.len())
        .filter(|&i| transcript[i].contains(&secret))
        .collect();
    assert_eq!(
        showing.len(),
        1,
        "the secret appeared in answers {showing:?}"
    );

    let rotated = app
        .call(
            ACME,
            POST,
            "/api/secret/rotate",
            &[],
            Some(json!({ "grace_seconds": 60 })),
        )
        .await;
    assert_eq!(rotated.status, 200);
    let new_secret = rotated.json["secret"].as_str().expect("secret");
    assert_ne!(new_secret, secret);
    let status = app.call(ACME, GET, "/api/secret", &[], None).await;
    assert_eq!(status.json, json!({ "exists": true }));
    assert!(!status.text.contains(new_secret));

    let limited = app.call(LABELER, GET, "/api/access", &[], None).await;
    assert_eq!(limited.json["org"], "acme");
    assert_eq!(limited.json["projects"], json!(["traffic-signs"]));
    assert_eq!(
        limited.json["event_types"].as_array().map(Vec::len),
        Some(5)
    );

    // The organization's secret is the whole organization's business.
    for (method, path) in [
        (GET, "/api/secret"),
        (POST, "/api/secret"),
        (POST, "/api/secret/rotate"),
    ] {
        let answer = app.call(LABELER, method.clone(), path, &[], None).await;
        assert_eq!(
            (answer.status, answer.problem()),
            (403, "forbidden"),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn the_send_icon_reports_success_the_endpoints_answer_or_the_error() {
    let app = App::start(None, ManagementOptions::new()).await;
    let ok = TestServer::start(Reply::Status(200, "thanks")).await;
    let down = TestServer::start(Reply::Status(500, "labeling service is down")).await;
    let good = create(&app, ACME, Some("p"), &ok.url("/hook"), &["issue-exported"]).await;
    let bad = create(
        &app,
        ACME,
        Some("p"),
        &down.url("/hook"),
        &["issue-exported"],
    )
    .await;
    let closed = create(
        &app,
        ACME,
        Some("p"),
        &format!("http://127.0.0.1:{}/hook", closed_port()),
        &["issue-exported"],
    )
    .await;
    app.call(ACME, POST, "/api/webhooks/{id}/deactivate", &[&good], None)
        .await;

    let sent = app
        .call(ACME, POST, "/api/webhooks/{id}/test", &[&good], None)
        .await;
    assert_eq!(
        (
            sent.status,
            sent.json["result"].clone(),
            sent.json["status"].clone()
        ),
        (200, json!("delivered"), json!(200))
    );
    assert_eq!(sent.json["error"], Value::Null);
    let got = ok.wait_for(1).await;
    assert_eq!(got[0].header("x-aquarium-event"), Some("webhook-test"));

    let rejected = app
        .call(ACME, POST, "/api/webhooks/{id}/test", &[&bad], None)
        .await;
    assert_eq!(
        (
            rejected.json["result"].clone(),
            rejected.json["status"].clone()
        ),
        (json!("rejected"), json!(500))
    );
    assert!(
        rejected.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("labeling service is down"),
        "{}",
        rejected.text
    );

    let failed = app
        .call(ACME, POST, "/api/webhooks/{id}/test", &[&closed], None)
        .await;
    assert_eq!(
        (failed.json["result"].clone(), failed.json["status"].clone()),
        (json!("failed"), Value::Null)
    );
    assert!(
        failed.json["error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("connect"),
        "{}",
        failed.text
    );

    // The test sends are in the delivery log.
    let log = app
        .call(ACME, GET, "/api/webhooks/{id}/deliveries", &[&bad], None)
        .await;
    assert_eq!(log.json["items"][0]["event_type"], "webhook-test");
}

#[tokio::test]
async fn preview_and_subscribers_show_what_an_export_would_do() {
    let app = App::start(None, ManagementOptions::new()).await;
    let receiver = TestServer::start(Reply::Status(200, "ok")).await;
    let body = json!({ "project": "p", "url": receiver.url("/h"), "events": ["issue-exported"], "headers": { "Authorization": "Bearer k" } });
    let id = app
        .call(ACME, POST, "/api/webhooks", &[], Some(body))
        .await
        .json["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let wide = create(&app, ACME, None, &receiver.url("/w"), &["*"]).await;
    let event = json!({ "event": "issue-exported", "project": "p", "issue": issue() });
    let preview = app
        .call(
            ACME,
            POST,
            "/api/webhooks/{id}/preview",
            &[&id],
            Some(json!({ "event": event.clone() })),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert_eq!(preview.json["url"], receiver.url("/h"));
    let sent: Value =
        serde_json::from_str(preview.json["body"].as_str().expect("body")).expect("json body");
    assert_eq!(sent, event);
    assert_eq!(preview.json["headers"]["authorization"], "<redacted>");
    assert_eq!(
        preview.json["headers"]["x-aquarium-event"],
        "issue-exported"
    );
    assert!(preview.json["headers"]["x-aquarium-delivery"]
        .as_str()
        .is_some_and(|d| d.starts_with("dlv_")));
    assert!(receiver.requests().is_empty(), "a preview sends nothing");

    let ids = |a: &harness::Answer| {
        a.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|w| w["id"].as_str().expect("id").to_owned())
            .collect::<BTreeSet<_>>()
    };
    let handled = app
        .call(
            ACME,
            GET,
            "/api/subscribers?project=p&event=issue-exported",
            &[],
            None,
        )
        .await;
    assert_eq!(ids(&handled), BTreeSet::from([id.clone(), wide.clone()]));
    let other = app
        .call(
            ACME,
            GET,
            "/api/subscribers?project=q&event=issue-exported",
            &[],
            None,
        )
        .await;
    assert_eq!(ids(&other), BTreeSet::from([wide.clone()]));
    app.call(ACME, POST, "/api/webhooks/{id}/deactivate", &[&wide], None)
        .await;
    let none = app
        .call(
            ACME,
            GET,
            "/api/subscribers?project=q&event=issue-exported",
            &[],
            None,
        )
        .await;
    assert_eq!(none.json["items"], json!([]));
    let limited = app
        .call(
            LABELER,
            GET,
            "/api/subscribers?project=p&event=issue-exported",
            &[],
            None,
        )
        .await;
    assert_eq!((limited.status, limited.problem()), (403, "forbidden"));
}

#[tokio::test]
async fn export_to_labeling_reports_each_first_attempt_or_that_no_webhook_handles_it() {
    let app = App::start(None, ManagementOptions::new()).await;
    let ok = TestServer::start(Reply::Status(200, "queued")).await;
    let down = TestServer::start(Reply::Status(503, "labeling service is down")).await;

    let unhandled = export(&app, ACME, "traffic-signs").await;
    assert_eq!((unhandled.status, unhandled.problem()), (409, "no-webhook"));
    assert!(unhandled.json["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("traffic-signs"));

    let good = create(
        &app,
        ACME,
        Some("traffic-signs"),
        &ok.url("/labelbox"),
        &["issue-exported"],
    )
    .await;
    let exported = export(&app, ACME, "traffic-signs").await;
    assert_eq!(exported.status, 200, "{}", exported.text);
    assert_eq!(exported.json["outcomes"].as_array().map(Vec::len), Some(1));
    assert_eq!(exported.json["outcomes"][0]["result"], "delivered");
    assert_eq!(exported.json["outcomes"][0]["webhook_id"], good.as_str());
    let got = ok.wait_for(1).await;
    let payload: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(
        payload,
        json!({ "event": "issue-exported", "project": "traffic-signs", "issue": issue() })
    );

    create(
        &app,
        ACME,
        Some("traffic-signs"),
        &down.url("/scale"),
        &["issue-exported"],
    )
    .await;
    let partly = export(&app, ACME, "traffic-signs").await;
    let results: BTreeSet<String> = partly.json["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| format!("{} {}", o["result"], o["error"]))
        .collect();
    assert!(
        results.iter().any(|r| r.starts_with("\"delivered\" null")),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.contains("\"rejected\"") && r.contains("labeling service is down")),
        "{results:?}"
    );

    let bad_issue = app
        .call(
            ACME,
            POST,
            "/api/projects/{project}/export",
            &["traffic-signs"],
            Some(json!({ "issue": { "id": 5 } })),
        )
        .await;
    assert_eq!((bad_issue.status, bad_issue.pointer()), (400, "/issue/id"));
    let other_project = export(&app, LABELER, "street-scenes").await;
    assert_eq!(other_project.status, 403);
}

#[tokio::test]
async fn an_export_with_no_worker_to_send_answers_pending_in_time() {
    let app = App::start(
        None,
        ManagementOptions::new().export_wait(Duration::from_millis(300)),
    )
    .await;
    let ok = TestServer::start(Reply::Gated).await;
    create(&app, ACME, Some("p"), &ok.url("/slow"), &["issue-exported"]).await;
    let exported = export(&app, ACME, "p").await;
    assert_eq!(exported.status, 200);
    assert_eq!(exported.json["outcomes"][0]["result"], "pending");
    ok.open_gate();
}

#[tokio::test]
async fn deliveries_are_listed_filtered_redelivered_and_recovered() {
    let app = App::start(None, ManagementOptions::new()).await;
    let down = TestServer::start(Reply::Status(500, "down")).await;
    let id = create(&app, ACME, Some("p"), &down.url("/h"), &["issue-exported"]).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    for _ in 0..3 {
        let exported = export(&app, ACME, "p").await;
        assert_eq!(exported.json["outcomes"][0]["result"], "rejected");
    }
    let all = app
        .call(ACME, GET, "/api/webhooks/{id}/deliveries", &[&id], None)
        .await;
    assert_eq!(all.json["items"].as_array().map(Vec::len), Some(3));
    // Each was attempted once and is dead (the test worker gives up after one attempt).
    let dead = app
        .call(
            ACME,
            GET,
            "/api/webhooks/{id}/deliveries?status=dead",
            &[&id],
            None,
        )
        .await;
    assert_eq!(
        dead.json["items"].as_array().map(Vec::len),
        Some(3),
        "{}",
        dead.text
    );
    let none = app
        .call(
            ACME,
            GET,
            "/api/webhooks/{id}/deliveries?status=succeeded",
            &[&id],
            None,
        )
        .await;
    assert_eq!(none.json["items"], json!([]));
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let later = app
        .call(
            ACME,
            GET,
            &format!("/api/webhooks/{{id}}/deliveries?since={future}"),
            &[&id],
            None,
        )
        .await;
    assert_eq!(later.json["items"], json!([]));

    let first = app
        .call(
            ACME,
            GET,
            "/api/webhooks/{id}/deliveries?limit=2",
            &[&id],
            None,
        )
        .await;
    let next = first.json["next"].as_str().expect("a next page").to_owned();
    let second = app
        .call(
            ACME,
            GET,
            &format!("/api/webhooks/{{id}}/deliveries?limit=2&cursor={next}"),
            &[&id],
            None,
        )
        .await;
    assert_eq!(second.json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(second.json["next"], Value::Null);

    let delivery = first.json["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let one = app
        .call(ACME, GET, "/api/deliveries/{id}", &[&delivery], None)
        .await;
    assert_eq!(
        (one.json["status"].clone(), one.json["attempts"].clone()),
        (json!("dead"), json!(1))
    );
    let attempts = app
        .call(
            ACME,
            GET,
            "/api/deliveries/{id}/attempts",
            &[&delivery],
            None,
        )
        .await;
    assert_eq!(attempts.json["items"][0]["status"], 500);
    assert_eq!(attempts.json["items"][0]["response"], "down");
    assert_eq!(attempts.json["items"][0]["error_kind"], "http_status");

    let before = down.requests().len();
    let again = app
        .call(
            ACME,
            POST,
            "/api/deliveries/{id}/redeliver",
            &[&delivery],
            None,
        )
        .await;
    assert_eq!(again.status, 202, "{}", again.text);
    down.wait_for(before + 1).await;
    let recovered = app
        .call(
            ACME,
            POST,
            "/api/webhooks/{id}/recover",
            &[&id],
            Some(json!({ "since": since })),
        )
        .await;
    assert_eq!(recovered.status, 200);
    let count = recovered.json["redelivered"].as_u64().expect("count");
    assert!((2..=3).contains(&count), "{}", recovered.text);
    down.wait_for(before + 1 + usize::try_from(count).expect("small"))
        .await;
    let nothing = app
        .call(
            ACME,
            POST,
            "/api/webhooks/{id}/recover",
            &[&id],
            Some(json!({ "since": future })),
        )
        .await;
    assert_eq!(nothing.json["redelivered"], 0);
    let unknown = app
        .call(
            ACME,
            POST,
            "/api/deliveries/{id}/redeliver",
            &["dlv_00000000000000000000000000000000"],
            None,
        )
        .await;
    assert_eq!(unknown.status, 404);
}

/// The newest delivery of `hook`.
async fn first_delivery(app: &App, who: Who, hook: &str) -> String {
    let page = app
        .call(who, GET, "/api/webhooks/{id}/deliveries", &[hook], None)
        .await;
    page.json["items"][0]["id"]
        .as_str()
        .expect("a delivery")
        .to_owned()
}

/// A valid body for each changing operation, so that only the scope check can refuse it.
fn valid_body(method: &Method, path: &str, url: &str) -> Option<Value> {
    let event = json!({ "event": "issue-exported", "project": "p", "issue": issue() });
    match (method.as_str(), path) {
        ("PATCH", "/api/webhooks/{id}") => Some(json!({ "url": url, "active": false })),
        ("POST", "/api/webhooks/{id}/preview") => Some(json!({ "event": event })),
        ("POST", "/api/webhooks/{id}/recover") => Some(json!({ "since": "2020-01-01T00:00:00Z" })),
        ("POST", "/api/webhooks") => Some(json!({ "project": "p", "url": url, "events": ["*"] })),
        ("POST", "/api/projects/{project}/export") => Some(json!({ "issue": issue() })),
        _ => None,
    }
}

/// Every operation of the OpenAPI document, as (method, path).
fn operations(doc: &Value) -> Vec<(Method, String)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            all.push((
                Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method"),
                path.clone(),
            ));
        }
    }
    all
}

#[tokio::test]
async fn no_route_lets_one_tenant_see_or_touch_anothers_webhooks_or_deliveries() {
    let app = App::start(None, ManagementOptions::new()).await;
    let acme_rx = TestServer::start(Reply::Status(200, "ok")).await;
    let globex_rx = TestServer::start(Reply::Status(200, "ok")).await;
    let globex_secret = app.call(GLOBEX, POST, "/api/secret", &[], None).await.json["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    app.call(ACME, POST, "/api/secret", &[], None).await;
    let globex_hook = create(&app, GLOBEX, Some("p"), &globex_rx.url("/g"), &["*"]).await;
    let acme_p = create(&app, ACME, Some("p"), &acme_rx.url("/p"), &["*"]).await;
    let acme_q = create(&app, ACME, Some("q"), &acme_rx.url("/q"), &["*"]).await;
    let acme_wide = create(&app, ACME, None, &acme_rx.url("/w"), &["dataset-failed"]).await;
    let labeler = Who {
        org: "acme",
        projects: Some("p"),
    };
    for (who, project) in [(GLOBEX, "p"), (ACME, "q")] {
        let exported = export(&app, who, project).await;
        assert_eq!(exported.status, 200, "{}", exported.text);
    }
    globex_rx.wait_for(1).await;
    let globex_delivery = first_delivery(&app, GLOBEX, &globex_hook).await;
    let acme_q_delivery = first_delivery(&app, ACME, &acme_q).await;
    let globex_before = app
        .call(GLOBEX, GET, "/api/webhooks/{id}", &[&globex_hook], None)
        .await
        .json;
    let globex_log_before = app
        .call(
            GLOBEX,
            GET,
            "/api/webhooks/{id}/deliveries",
            &[&globex_hook],
            None,
        )
        .await
        .json;

    // (caller, webhook id it may not reach, delivery id it may not reach)
    let attempts = [
        (ACME, globex_hook.clone(), globex_delivery.clone()),
        (labeler, acme_q.clone(), acme_q_delivery.clone()),
        (labeler, acme_wide.clone(), acme_q_delivery.clone()),
    ];
    let mut covered = BTreeSet::new();
    for (method, path) in operations(&app.doc) {
        if !path.contains("{id}") {
            continue;
        }
        for (who, hook, delivery) in &attempts {
            let id = if path.starts_with("/api/deliveries/") {
                delivery
            } else {
                hook
            };
            let body = valid_body(&method, &path, &acme_rx.url("/stolen"));
            let answer = app.call(*who, method.clone(), &path, &[id], body).await;
            assert_eq!(
                (answer.status, answer.problem()),
                (404, "not-found"),
                "{who:?} {method} {path} with {id}: {}",
                answer.text
            );
            assert!(
                !answer.text.contains(id.as_str()) && !answer.text.contains("/g"),
                "{method} {path} leaked: {}",
                answer.text
            );
        }
        covered.insert(format!("{method} {path}"));
    }
    assert!(
        covered.len() >= 13,
        "every id route is in the matrix: {covered:?}"
    );

    // Listings and look-ups never show the other tenant's webhooks.
    let listed = app.call(ACME, GET, "/api/webhooks", &[], None).await;
    assert!(!listed.text.contains(&globex_hook));
    let limited = app.call(labeler, GET, "/api/webhooks", &[], None).await;
    let limited_ids: Vec<&str> = limited.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(limited_ids, [acme_p.as_str()]);
    let limited_wide = app
        .call(labeler, GET, "/api/webhooks?scope=organization", &[], None)
        .await;
    assert_eq!(limited_wide.json["items"], json!([]));
    let subscribers = app
        .call(
            ACME,
            GET,
            "/api/subscribers?project=p&event=issue-exported",
            &[],
            None,
        )
        .await;
    assert!(!subscribers.text.contains(&globex_hook));
    // ACME's export, secret rotation and sends reach nothing of Globex.
    let sent_to_globex = globex_rx.requests().len();
    export(&app, ACME, "p").await;
    app.call(ACME, POST, "/api/secret/rotate", &[], None).await;
    assert_eq!(globex_rx.requests().len(), sent_to_globex);
    // Globex's webhook, log and secret are as they were.
    let globex_after = app
        .call(GLOBEX, GET, "/api/webhooks/{id}", &[&globex_hook], None)
        .await
        .json;
    assert_eq!(globex_after, globex_before);
    let globex_log_after = app
        .call(
            GLOBEX,
            GET,
            "/api/webhooks/{id}/deliveries",
            &[&globex_hook],
            None,
        )
        .await
        .json;
    assert_eq!(globex_log_after, globex_log_before);
    let test = app
        .call(
            GLOBEX,
            POST,
            "/api/webhooks/{id}/test",
            &[&globex_hook],
            None,
        )
        .await;
    assert_eq!(test.json["result"], "delivered");
    let last = globex_rx.wait_for(sent_to_globex + 1).await;
    assert_eq!(
        last.last().and_then(|r| r.header("x-aquarium-secret")),
        Some(globex_secret.as_str())
    );
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routers_routes() {
    let app = App::start(None, ManagementOptions::new()).await;
    let doc = &app.doc;
    assert_eq!(doc["openapi"], "3.1.0");
    let probe_id = "wh_00000000000000000000000000000000";
    let methods = [GET, POST, Method::PUT, PATCH, DELETE];
    for path in doc["paths"].as_object().expect("paths").keys() {
        let documented: BTreeSet<String> = doc["paths"][path]
            .as_object()
            .expect("item")
            .keys()
            .cloned()
            .collect();
        let url = harness::fill(path, &[probe_id]).replace(
            probe_id,
            if path.starts_with("/api/deliveries") {
                "dlv_00000000000000000000000000000000"
            } else {
                probe_id
            },
        );
        for method in &methods {
            let answer = app
                .send(
                    app.raw(method.clone(), &url)
                        .header("x-org", "acme")
                        .header("content-type", "application/json")
                        .body("{}"),
                )
                .await;
            if documented.contains(&method.as_str().to_ascii_lowercase()) {
                assert_ne!(
                    answer.status, 405,
                    "{method} {path} is documented but not routed"
                );
                assert_eq!(
                    answer.content_type.split(';').next(),
                    Some(if answer.status < 300 {
                        "application/json"
                    } else {
                        management::PROBLEM_JSON
                    }),
                    "{method} {path}: answered by a handler ({})",
                    answer.text
                );
            } else {
                assert_eq!(
                    answer.status, 405,
                    "{method} {path} is routed but not documented"
                );
            }
        }
    }
    // Paths outside the document are not routed.
    for path in [
        "/api/webhook",
        "/api/webhooks/x/y",
        "/api/organizations",
        "/api/deliveries",
    ] {
        let answer = app.send(app.raw(GET, path).header("x-org", "acme")).await;
        assert_eq!((answer.status, answer.text.as_str()), (404, ""), "{path}");
    }
    // The router serves the same document.
    let served = app.send(app.raw(GET, "/openapi.json")).await;
    assert_eq!(&served.json, doc);
}

#[test]
fn the_committed_openapi_file_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let current = management::openapi()
        .to_pretty_json()
        .expect("openapi json")
        + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &current).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == current, "docs/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test --all-features --test management` and commit it");
}
