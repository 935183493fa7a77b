//! Host code written against `impl Dispatcher`, unit-tested with `FakeDispatcher`: no
//! network, no worker, outcomes chosen by the test.

use std::time::Duration;

use dataops_webhooks::event::ExportedIssue;
use dataops_webhooks::queue::QueueError;
use dataops_webhooks::testing::FakeDispatcher;
use dataops_webhooks::{AttemptResult, DispatchError, Dispatcher, Event, EventType};
use http::StatusCode;

/// What the host's "Export to labeling" dialog shows after the user clicks Export.
#[derive(Debug, PartialEq)]
enum Dialog {
    /// No webhook handles issue-exported: offer to create one.
    CreateWebhook,
    /// Delivered: close the dialog.
    Close,
    /// Show this error in the dialog.
    Error(String),
}

async fn export_to_labeling(
    dispatcher: &impl Dispatcher,
    project: &str,
    issue: ExportedIssue,
) -> Dialog {
    let receipt = match dispatcher.emit(Event::issue_exported(project, issue)).await {
        Ok(receipt) => receipt,
        Err(error) => return Dialog::Error(error.to_string()),
    };
    if receipt.is_unhandled() {
        return Dialog::CreateWebhook;
    }
    match receipt
        .outcomes()
        .await
        .iter()
        .find_map(|outcome| outcome.error_message())
    {
        Some(error) => Dialog::Error(error),
        None => Dialog::Close,
    }
}

fn issue() -> ExportedIssue {
    ExportedIssue {
        id: "issue-7".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn no_webhook_prompts_to_create_one() {
    let dispatcher = FakeDispatcher::new();
    assert_eq!(
        export_to_labeling(&dispatcher, "signs", issue()).await,
        Dialog::CreateWebhook
    );
    assert_eq!(dispatcher.event_types(), [EventType::IssueExported]);
}

#[tokio::test]
async fn a_delivered_export_closes_the_dialog_and_records_the_event() {
    let dispatcher = FakeDispatcher::new().subscriber("https://labeling.example/hook");
    assert_eq!(
        export_to_labeling(&dispatcher, "signs", issue()).await,
        Dialog::Close
    );
    let emitted = dispatcher.emitted();
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].event, Event::issue_exported("signs", issue()));
}

#[tokio::test]
async fn the_endpoints_error_is_shown() {
    let dispatcher = FakeDispatcher::new()
        .subscriber("https://labeling.example/hook")
        .answer(AttemptResult::Rejected {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: "unknown project".into(),
            duration: Duration::from_millis(4),
        });
    assert_eq!(
        export_to_labeling(&dispatcher, "signs", issue()).await,
        Dialog::Error("the endpoint answered 422 Unprocessable Entity: unknown project".into())
    );
}

#[tokio::test]
async fn a_failed_emit_is_shown_and_nothing_is_recorded() {
    let dispatcher = FakeDispatcher::new().subscriber("https://labeling.example/hook");
    dispatcher.fail_next_emit(DispatchError::Queue(QueueError::backend(
        "the outbox is down",
        std::io::Error::other("disk full"),
    )));
    let shown = export_to_labeling(&dispatcher, "signs", issue()).await;
    assert!(
        matches!(&shown, Dialog::Error(e) if e.contains("the outbox is down")),
        "{shown:?}"
    );
    assert!(dispatcher.emitted().is_empty());
    // The next one goes through.
    assert_eq!(
        export_to_labeling(&dispatcher, "signs", issue()).await,
        Dialog::Close
    );
}

#[tokio::test]
async fn test_sends_and_previews_answer_for_known_webhooks_only() {
    let dispatcher = FakeDispatcher::new().subscriber("https://labeling.example/hook");
    let id = dispatcher.webhook_ids()[0];
    let outcome = dispatcher.send_test(&id).await.expect("known webhook");
    assert!(outcome.is_success());
    let event = Event::issue_exported("signs", issue());
    let preview = dispatcher.preview(&id, &event).await.expect("preview");
    assert_eq!(Event::from_slice(&preview.body).expect("parses"), event);
    let unknown = dataops_webhooks::webhook::WebhookId::new();
    assert!(matches!(
        dispatcher.send_test(&unknown).await,
        Err(DispatchError::WebhookNotFound(_))
    ));
}
