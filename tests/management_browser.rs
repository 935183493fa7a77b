//! The Webhooks tab in a real headless Chromium, driven over WebDriver (chromedriver): create,
//! toggle, send a test (success, and the error of a closed port), generate and rotate the
//! secret (shown once), export an issue (preview, success, the error in the dialog) and the
//! prompt of a project with no webhook. Screenshots go to `target/management-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test says so and passes, except under `CI`, where it fails.

mod common;
#[path = "common/management.rs"]
mod harness;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataops_webhooks::event::ExportedIssue;
use dataops_webhooks::management::ManagementOptions;
use fantoccini::{Client, ClientBuilder, Locator};
use harness::App;
use serde_json::{json, Value};
use server::{Reply, TestServer};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver and a session of headless Chromium, or `None` (with the reason printed) when
/// they are not installed and this is not CI.
async fn browser() -> Option<(Driver, Client)> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        let message = format!(
            "skipped: {CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "{message}; CI must run the browser tests"
        );
        eprintln!("{message}");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().expect("profile dir");
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]
        }),
    );
    let client = ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session");
    Some((driver, client))
}

/// Waits until the JavaScript expression `expr` is true in the page.
async fn until(client: &Client, expr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = client
            .execute(&format!("return Boolean({expr});"), Vec::new())
            .await
            .unwrap_or(Value::Bool(false));
        if value == Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let body = client
                .execute("return document.body.innerText;", Vec::new())
                .await
                .unwrap_or_default();
            panic!("timed out waiting for {what} ({expr}); the page shows:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element matching `css`.
async fn text(client: &Client, css: &str) -> String {
    let value = client
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .await
        .expect("script");
    value.as_str().unwrap_or_default().to_owned()
}

/// Clicks the first element matching `css`. A click WebDriver refuses (the element not there
/// yet, re-rendered, or still covered by a closing dialog on a loaded machine) was not made,
/// so it is tried again for up to 15 s.
async fn click(client: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let clicked = match client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await.map(drop),
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("click {css}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn type_into(client: &Client, css: &str, value: &str) {
    let input = client.find(Locator::Css(css)).await.expect(css);
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("type");
}

async fn screenshot(client: &Client, name: &str) {
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "target",
        "management-screenshots",
    ]
    .iter()
    .collect();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(name), png).expect("write screenshot");
}

/// Adds a webhook of project `traffic-signs` through the API, and reloads the page.
async fn add_hook(app: &App, client: &Client, url: &str, event: &str) {
    let body = json!({ "project": "traffic-signs", "url": url, "events": [event] });
    let created = app
        .call(
            harness::admin("acme"),
            reqwest::Method::POST,
            "/api/webhooks",
            &[],
            Some(body),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    client.refresh().await.expect("reload");
}

/// The id of the webhook whose URL is `url`, through the public API.
async fn hook_id(app: &App, url: &str) -> String {
    let page = app
        .call(
            harness::admin("acme"),
            reqwest::Method::GET,
            "/api/webhooks",
            &[],
            None,
        )
        .await;
    page.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|w| w["url"] == url)
        .and_then(|w| w["id"].as_str())
        .unwrap_or_else(|| panic!("no webhook to {url}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhooks_tab_works_in_a_real_browser() {
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let issue: ExportedIssue =
        serde_json::from_value(common::fixture_value("issue_exported.json")["issue"].clone())
            .expect("sample issue");
    let app = App::start(Some("acme"), ManagementOptions::new().sample_issue(issue)).await;
    let labeling = TestServer::start(Reply::Status(200, "queued")).await;
    let down = TestServer::start(Reply::Status(503, "labeling service is down")).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!(
            "http://127.0.0.1:{}/hook",
            l.local_addr().expect("addr").port()
        )
    };
    let result = run(&client, &app, &labeling, &down, &closed).await;
    client.close().await.expect("close the browser");
    result
}

async fn run(client: &Client, app: &App, labeling: &TestServer, down: &TestServer, closed: &str) {
    client
        .goto(&format!("{}?project=traffic-signs", app.base))
        .await
        .expect("open the page");
    until(
        client,
        "!document.getElementById('hooks-empty').hidden",
        "the empty list",
    )
    .await;

    // Create a webhook for issue-exported with the form.
    let url = labeling.url("/labeling");
    click(client, "#create-open").await;
    type_into(client, "#f-url", &url).await;
    click(client, "#f-events input[value='issue-exported']").await;
    type_into(client, "#f-description", "labeling hand-off").await;
    click(client, "#form-save").await;
    until(
        client,
        "document.querySelectorAll('tr.dw-hook').length === 1",
        "the new row",
    )
    .await;
    assert_eq!(text(client, "tr.dw-hook .dw-url").await, url);
    let id = hook_id(app, &url).await;
    let row = format!("tr.dw-hook[data-id='{id}']");

    // A bad URL is refused in the form, at the field.
    click(client, "#create-open").await;
    type_into(client, "#f-url", "ftp://files.example").await;
    click(client, "#f-events input[value='dataset-failed']").await;
    click(client, "#form-save").await;
    until(
        client,
        "document.querySelector('.dw-field-error[data-for=\"/url\"]').textContent.includes('http')",
        "the URL error",
    )
    .await;
    click(client, "#form-cancel").await;

    // Toggle it off and on.
    click(client, &format!("{row} .dw-toggle")).await;
    until(
        client,
        &format!("document.querySelector(\"{row} .dw-badge\").textContent === 'inactive'"),
        "inactive",
    )
    .await;
    let stored = app
        .call(
            harness::admin("acme"),
            reqwest::Method::GET,
            "/api/webhooks/{id}",
            &[&id],
            None,
        )
        .await;
    assert_eq!(stored.json["active"], false);
    click(client, &format!("{row} .dw-toggle")).await;
    until(
        client,
        &format!("document.querySelector(\"{row} .dw-badge\").textContent === 'active'"),
        "active again",
    )
    .await;

    // The send icon: success.
    click(client, &format!("{row} .dw-send")).await;
    until(
        client,
        &format!(
            "document.querySelector(\"{row} .dw-send-result\").textContent.startsWith('Delivered')"
        ),
        "the test's success",
    )
    .await;
    let got = labeling.wait_for(1).await;
    assert_eq!(got[0].header("x-aquarium-event"), Some("webhook-test"));

    // The send icon: a closed port's error.
    add_hook(app, client, closed, "dataset-failed").await;
    let closed_row = format!("tr.dw-hook[data-id='{}']", hook_id(app, closed).await);
    until(
        client,
        &format!("document.querySelector(\"{closed_row}\")"),
        "the closed port's row",
    )
    .await;
    click(client, &format!("{closed_row} .dw-send")).await;
    until(
        client,
        &format!("document.querySelector(\"{closed_row} .dw-send-result.dw-error\")"),
        "the test's error",
    )
    .await;
    let error = text(client, &format!("{closed_row} .dw-send-result")).await;
    assert!(error.to_lowercase().contains("connect"), "{error}");
    screenshot(client, "webhooks-tab.png").await;

    // The secret: generated and shown once, then rotated (after a confirmation) and shown once.
    until(
        client,
        "!document.getElementById('secret-generate').hidden",
        "the generate button",
    )
    .await;
    click(client, "#secret-generate").await;
    until(
        client,
        "document.getElementById('secret-value').textContent.startsWith('whsec_')",
        "the secret",
    )
    .await;
    let first = text(client, "#secret-value").await;
    assert!(text(client, "#secret-warning").await.contains("shown once"));
    click(client, "#secret-done").await;
    until(client, "document.getElementById('secret-once').hidden && !document.getElementById('secret-rotate').hidden", "the secret hidden").await;
    assert_eq!(text(client, "#secret-value").await, "");
    click(client, "#secret-rotate").await;
    client.accept_alert().await.expect("confirm the rotation");
    until(
        client,
        "document.getElementById('secret-value').textContent.startsWith('whsec_')",
        "the new secret",
    )
    .await;
    let second = text(client, "#secret-value").await;
    assert_ne!(first, second);
    client.refresh().await.expect("reload");
    until(
        client,
        "!document.getElementById('secret-rotate').hidden",
        "the page again",
    )
    .await;
    let html: Value = client
        .execute("return document.documentElement.outerHTML;", Vec::new())
        .await
        .expect("html");
    assert!(
        !html.as_str().unwrap_or_default().contains(&second),
        "the secret is not shown again"
    );

    // Export: the preview, then success, and the dialog closes.
    until(
        client,
        "document.querySelectorAll('tr.dw-hook').length === 2",
        "both rows",
    )
    .await;
    click(client, "#export-open").await;
    until(
        client,
        "!document.getElementById('export-preview-box').hidden",
        "the payload preview",
    )
    .await;
    let preview = text(client, "#export-preview").await;
    assert!(
        preview.contains("\"event\": \"issue-exported\"")
            && preview.contains("stop signs predicted as yield"),
        "{preview}"
    );
    screenshot(client, "export-dialog.png").await;
    click(client, "#export-send").await;
    until(
        client,
        "!document.getElementById('export-dialog').open",
        "the dialog to close",
    )
    .await;
    assert!(text(client, "#notice")
        .await
        .starts_with("Exported to labeling"));
    let got = labeling.wait_for(2).await;
    assert_eq!(got[1].header("x-aquarium-event"), Some("issue-exported"));

    // Export to a failing endpoint: the endpoint's error stays in the dialog.
    add_hook(app, client, &down.url("/scale"), "issue-exported").await;
    until(
        client,
        "document.querySelectorAll('tr.dw-hook').length === 3",
        "three rows",
    )
    .await;
    click(client, "#export-open").await;
    until(
        client,
        "!document.getElementById('export-preview-box').hidden",
        "the preview",
    )
    .await;
    click(client, "#export-send").await;
    until(
        client,
        "!document.getElementById('export-error').hidden",
        "the export's error",
    )
    .await;
    let error = text(client, "#export-error").await;
    assert!(error.contains("labeling service is down"), "{error}");
    assert_eq!(
        client
            .execute(
                "return document.getElementById('export-dialog').open;",
                Vec::new()
            )
            .await
            .expect("open"),
        Value::Bool(true)
    );
    screenshot(client, "export-error.png").await;
    click(client, "#export-cancel").await;

    // The delivery log: a delivery, its attempts, and a redelivery.
    click(client, &format!("{row} .dw-log")).await;
    until(
        client,
        "document.querySelectorAll('tr.dw-delivery').length >= 2",
        "the deliveries",
    )
    .await;
    click(client, "tr.dw-delivery .dw-attempts-open").await;
    until(
        client,
        "!document.getElementById('attempts-box').hidden && document.querySelector('#attempts li')",
        "the attempts",
    )
    .await;
    let before = labeling.requests().len();
    click(client, "tr.dw-delivery .dw-redeliver").await;
    labeling.wait_for(before + 1).await;

    // Edit the description, then delete the closed port's webhook (after a confirmation).
    click(client, &format!("{row} .dw-edit")).await;
    until(client, "document.getElementById('form-dialog').open && document.getElementById('f-url').value !== ''", "the edit form").await;
    type_into(client, "#f-description", "to Labelbox").await;
    click(client, "#form-save").await;
    until(
        client,
        "!document.getElementById('form-dialog').open",
        "the form to close",
    )
    .await;
    let edited = app
        .call(
            harness::admin("acme"),
            reqwest::Method::GET,
            "/api/webhooks/{id}",
            &[&id],
            None,
        )
        .await;
    assert_eq!(edited.json["description"], "to Labelbox");
    assert_eq!(edited.json["events"], json!(["issue-exported"]));
    click(client, &format!("{closed_row} .dw-delete")).await;
    client.accept_alert().await.expect("confirm the deletion");
    until(
        client,
        &format!("!document.querySelector(\"{closed_row}\")"),
        "the row to go",
    )
    .await;

    // A project with no webhook: the dialog prompts to create one.
    type_into(client, "#project", "street-scenes").await;
    client
        .execute(
            "document.getElementById('project').dispatchEvent(new Event('change'));",
            Vec::new(),
        )
        .await
        .expect("change");
    until(
        client,
        "!document.getElementById('hooks-empty').hidden",
        "the other project's empty list",
    )
    .await;
    click(client, "#export-open").await;
    until(
        client,
        "!document.getElementById('export-prompt').hidden",
        "the prompt",
    )
    .await;
    assert!(text(client, "#export-prompt-text")
        .await
        .contains("No webhook handles issue-exported"));
    screenshot(client, "export-prompt.png").await;
    click(client, "#export-create").await;
    until(client, "document.getElementById('form-dialog').open && document.querySelector(\"#f-events input[value='issue-exported']\").checked", "the form, with issue-exported").await;
}
