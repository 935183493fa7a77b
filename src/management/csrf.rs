//! The cross-site request guard: a change must come from a script of the same site (see the
//! module docs of [`management`](super) for the stance).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, Method, StatusCode};

use super::problem::{declares_json, kind, Problem};
use super::AppState;

/// Refuses a changing request that a cross-site form or script could have sent.
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if is_safe(request.method()) {
        return next.run(request).await;
    }
    match refusal(request.headers(), &state.options().allowed_origins) {
        Some(detail) => {
            Problem::new(StatusCode::FORBIDDEN, kind::CROSS_SITE, detail).into_response()
        }
        None => next.run(request).await,
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a changing request with these headers is refused, or `None` to let it through.
pub(crate) fn refusal(headers: &HeaderMap, allowed: &[String]) -> Option<&'static str> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return Some("a request from another site may not change webhooks");
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        let same_host = origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host));
        if !same_host && !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Some(
                "a request from another origin may not change webhooks; \
                 the server can allow it with ManagementOptions::allow_origin",
            );
        }
    }
    if !declares_json(headers) && !headers.contains_key("x-requested-with") {
        return Some(
            "a request that changes something must carry `Content-Type: application/json` \
             or an `X-Requested-With` header (this refuses cross-site form posts)",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_form_post_is_refused_and_a_script_of_the_same_site_passes() {
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert!(refusal(&form, &[]).is_some());
        let plain = headers(&[("content-type", "text/plain")]);
        assert!(refusal(&plain, &[]).is_some());
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(refusal(&json, &[]), None);
        let xhr = headers(&[("x-requested-with", "fetch")]);
        assert_eq!(refusal(&xhr, &[]), None);
    }

    #[test]
    fn another_origin_is_refused_unless_allowed() {
        let same = headers(&[
            ("content-type", "application/json"),
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(refusal(&same, &[]), None);
        let other = headers(&[
            ("content-type", "application/json"),
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(refusal(&other, &[]).is_some());
        assert_eq!(refusal(&other, &["https://evil.example".to_owned()]), None);
        let cross = headers(&[
            ("content-type", "application/json"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(refusal(&cross, &[]).is_some());
    }
}
