//! The page: one HTML document, its script and its stylesheet, embedded in the crate, plus
//! the OpenAPI document.

use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use http::{header, HeaderValue};

use super::AppState;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");

/// `/`, `/assets/…` and `/openapi.json`.
pub(super) fn router(state: AppState, doc: Arc<utoipa::openapi::OpenApi>) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .with_state(state)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The page, with the host's options (a stylesheet, a sample issue) written in.
async fn index(State(state): State<AppState>, OriginalUri(uri): OriginalUri) -> Response {
    let options = state.options();
    let config = serde_json::json!({ "sampleIssue": options.sample_issue });
    // Inside <script>, `<` must not start `</script>`: JSON allows it escaped.
    let config = config.to_string().replace('<', "\\u003c");
    let stylesheet = options
        .stylesheet
        .as_deref()
        .map(|url| format!(r#"<link rel="stylesheet" href="{}">"#, attribute(url)))
        .unwrap_or_default();
    // Relative URLs resolve against the page's own path, wherever the host nested it.
    let mut base = uri.path().to_owned();
    if !base.ends_with('/') {
        base.push('/');
    }
    let html = INDEX
        .replace("/*base*/", &attribute(&base))
        .replace("<!--host-stylesheet-->", &stylesheet)
        .replace("/*config*/null", &config);
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' *; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'; form-action 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Text made safe inside a double-quoted HTML attribute.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
