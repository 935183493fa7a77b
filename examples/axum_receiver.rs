//! A webhook receiver on axum: verifies each request with the organization's secret and
//! prints the event. The typed, verified version of the platform's sample Flask receivers.
//!
//! ```sh
//! AQ_WEBHOOK_SECRET=whsec_... PORT=8080 cargo run --example axum_receiver
//! ```
//!
//! Then point a webhook at `http://<this host>:8080/webhook`. It answers 204 for an event,
//! 401 for a request that fails verification and 400 for a body that is not an event; stop
//! it with Ctrl-C.

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use dataops_webhooks::receiver::{ReceiveError, Verifier};
use dataops_webhooks::secret::Secret;
use dataops_webhooks::{Event, ParseError};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let secret = std::env::var("AQ_WEBHOOK_SECRET")
        .map_err(|_| "set AQ_WEBHOOK_SECRET to the secret the platform showed you")?;
    let verifier = Verifier::new(Secret::parse(secret)?);
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => text.parse().map_err(|_| "PORT must be a port number")?,
        Err(_) => 8080,
    };

    let app = Router::new()
        .route("/webhook", post(receive))
        .with_state(verifier);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}/webhook");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn receive(
    State(verifier): State<Verifier>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let delivery = headers
        .get("x-aquarium-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    match verifier.receive(&headers, &body) {
        Ok(received) => {
            // The delivery id is the same across retries: a real receiver drops repeats by it.
            let id = received.delivery_id.as_deref().unwrap_or("-");
            println!("{id} {}", describe(&received.event));
            (StatusCode::NO_CONTENT, String::new())
        }
        Err(ReceiveError::Parse(ParseError::UnknownEvent(unknown))) => {
            println!("{delivery} not handled: {}", unknown.name());
            (
                StatusCode::BAD_REQUEST,
                format!("endpoint not set up to handle {} events", unknown.name()),
            )
        }
        Err(ReceiveError::Verify(e)) => {
            println!("{delivery} refused: {e}");
            (StatusCode::UNAUTHORIZED, e.to_string())
        }
        Err(e) => {
            println!("{delivery} bad request: {e}");
            (StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

fn describe(event: &Event) -> String {
    let project = event.project();
    match event {
        Event::DatasetComplete(e) => format!("{project}: `{}` finished processing", e.entity.id()),
        Event::DatasetFailed(e) => format!("{project}: `{}` failed to process", e.entity.id()),
        Event::IssuesCreated(e) => format!("{project}: {} issue(s) created", e.issues.len()),
        Event::IssueUpdated(e) => format!(
            "{project}: issue `{}` updated ({})",
            e.issue_update.id,
            e.issue_update.change.update_type()
        ),
        Event::IssueExported(e) => format!(
            "{project}: issue `{}` exported with {} element(s)",
            e.issue.id,
            e.issue.elements.len()
        ),
        Event::Test(e) => format!("{project}: test payload: {}", e.test.message),
        other => format!("{project}: {}", other.event_type()),
    }
}
