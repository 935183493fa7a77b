//! A management router served on 127.0.0.1 over a SQLite file, a header-based authorizer,
//! and a client that checks every answer against the router's own OpenAPI document.
#![allow(dead_code)] // each test crate uses its own subset

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dataops_webhooks::management::{self, Access, Authorizer, Denied, ManagementOptions};
use dataops_webhooks::retry::RetryPolicy;
use dataops_webhooks::sqlite::SqliteStore;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::{WebhookDispatcher, WorkerHandle, WorkerOptions};
use reqwest::Method;
use serde_json::Value;
use tokio::net::TcpListener;

/// `X-Org: <org>` names the caller's organization, `X-Projects: a,b` limits it to some
/// projects; `X-Org: banned` is refused (403); no `X-Org` is the default organization if
/// there is one, else 401.
#[derive(Debug)]
pub(crate) struct HeaderAuth {
    pub default_org: Option<String>,
}

#[async_trait]
impl Authorizer for HeaderAuth {
    async fn authorize(&self, request: &http::request::Parts) -> Result<Access, Denied> {
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        let org = match (header("x-org"), &self.default_org) {
            (Some("banned"), _) => {
                return Err(Denied::forbidden("this account may not manage webhooks"))
            }
            (Some(org), _) => org.to_owned(),
            (None, Some(org)) => org.clone(),
            (None, None) => return Err(Denied::unauthenticated("sign in to manage webhooks")),
        };
        let access = Access::organization(org);
        Ok(match header("x-projects") {
            Some(list) => access.projects(list.split(',').map(str::trim)),
            None => access,
        })
    }
}

/// A caller: organization and, optionally, the projects it is limited to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who {
    pub org: &'static str,
    pub projects: Option<&'static str>,
}

pub(crate) const NOBODY: Who = Who {
    org: "",
    projects: None,
};

pub(crate) fn admin(org: &'static str) -> Who {
    Who {
        org,
        projects: None,
    }
}

/// One answer of the API.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: String,
    pub text: String,
    pub json: Value,
}

impl Answer {
    /// The problem's `type` without its URN prefix.
    pub(crate) fn problem(&self) -> &str {
        self.json["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:dataops-webhooks:problem:"))
            .unwrap_or("")
    }

    /// The first field pointer of a problem.
    pub(crate) fn pointer(&self) -> &str {
        self.json["errors"][0]["pointer"].as_str().unwrap_or("")
    }
}

pub(crate) struct App {
    pub base: String,
    pub dispatcher: WebhookDispatcher,
    pub doc: Value,
    client: reqwest::Client,
    /// Every answer's text, in order (to count where a secret appears).
    pub transcript: Arc<Mutex<Vec<String>>>,
    _worker: WorkerHandle,
    _dir: tempfile::TempDir,
}

impl App {
    /// A router over a fresh SQLite file, with a worker that gives up after one attempt, nested
    /// under `/manage`.
    pub(crate) async fn start(default_org: Option<&str>, options: ManagementOptions) -> App {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(
            SqliteStore::open(dir.path().join("hooks.sqlite"))
                .await
                .expect("open sqlite"),
        );
        let dispatcher = WebhookDispatcher::builder()
            .backend(store)
            .address_policy(AddressPolicy::allow_private())
            .request_timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("dispatcher");
        let worker = dispatcher.start_worker(
            WorkerOptions::default()
                .retry(RetryPolicy::new(Vec::new()))
                .poll_interval(std::time::Duration::from_millis(50)),
        );
        let auth = HeaderAuth {
            default_org: default_org.map(str::to_owned),
        };
        let app = axum::Router::new().nest(
            "/manage",
            management::router_with(dispatcher.clone(), auth, options),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let doc = serde_json::to_value(management::openapi()).expect("openapi as json");
        App {
            base: format!("http://{addr}/manage"),
            dispatcher,
            doc,
            client: reqwest::Client::new(),
            transcript: Arc::default(),
            _worker: worker,
            _dir: dir,
        }
    }

    /// Calls `method template` (ids filled in from `args`) as `who`, with a JSON body, and
    /// checks the answer against the OpenAPI document: its status must be documented for the
    /// operation and its body must validate against the documented schema.
    pub(crate) async fn call(
        &self,
        who: Who,
        method: Method,
        template: &str,
        args: &[&str],
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.client.request(
            method.clone(),
            format!("{}{}", self.base, fill(template, args)),
        );
        if !who.org.is_empty() {
            request = request.header("x-org", who.org);
        }
        if let Some(projects) = who.projects {
            request = request.header("x-projects", projects);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        } else if method != Method::GET {
            request = request.header("x-requested-with", "test");
        }
        let answer = self.send(request).await;
        check_against_doc(&self.doc, &method, template, &answer);
        answer
    }

    /// Sends a request as built, without checks beyond recording it.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request
            .send()
            .await
            .expect("request to the management router");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("body");
        self.transcript
            .lock()
            .expect("transcript")
            .push(text.clone());
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            content_type,
            text,
            json,
        }
    }

    /// A raw request builder for `path` under the router.
    pub(crate) fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
    }
}

/// `/api/webhooks/{id}` with `{…}` replaced by `args` in order.
pub(crate) fn fill(template: &str, args: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = template;
    let mut args = args.iter();
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        out.push_str(args.next().expect("an argument for each placeholder"));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Panics unless `answer` is documented for `method template` and validates against it.
pub(crate) fn check_against_doc(doc: &Value, method: &Method, template: &str, answer: &Answer) {
    let path = template.split('?').next().unwrap_or(template);
    let operation = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
    assert!(
        operation.is_object(),
        "{method} {path} is not in the OpenAPI document"
    );
    let documented = &operation["responses"][answer.status.to_string()];
    assert!(
        documented.is_object(),
        "{method} {path} answered {} (`{}`), which its OpenAPI operation does not list",
        answer.status,
        answer.text
    );
    let content = &documented["content"];
    let Some(media) = content.as_object().and_then(|c| c.keys().next().cloned()) else {
        assert!(
            answer.text.is_empty(),
            "{method} {path} {}: documented without a body, answered `{}`",
            answer.status,
            answer.text
        );
        return;
    };
    assert_eq!(
        answer.content_type.split(';').next().unwrap_or_default(),
        media,
        "{method} {path} {}: content type",
        answer.status
    );
    let mut schema = content[&media]["schema"].clone();
    if let Some(object) = schema.as_object_mut() {
        object.insert("components".into(), doc["components"].clone());
    }
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{method} {path}: the documented schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&answer.json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {}: the answer does not match its schema: {errors:?}\n{}",
        answer.status,
        answer.text
    );
}
