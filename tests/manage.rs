//! Webhook management: create, get, list, update, deactivate/reactivate, delete, secrets;
//! invalid input refused with nothing written.

use std::time::Duration;

use dataops_webhooks::secret::Secret;
use dataops_webhooks::store::{ScopeFilter, WebhookQuery};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{
    CustomHeaders, EventFilter, NewWebhook, OrgId, Scope, WebhookError, WebhookStatus,
    WebhookUpdate,
};
use dataops_webhooks::{EventType, ManageError, WebhookDispatcher, Webhooks};

fn webhooks() -> Webhooks {
    WebhookDispatcher::builder()
        .address_policy(AddressPolicy::public_only())
        .build()
        .expect("dispatcher")
        .webhooks()
        .clone()
}

fn new(project: &str) -> NewWebhook {
    NewWebhook::new(
        Scope::Project(project.into()),
        "https://hooks.example.com/aq",
    )
}

async fn count(w: &Webhooks) -> usize {
    w.list(&WebhookQuery::new(OrgId::default()))
        .await
        .expect("list")
        .items
        .len()
}

#[tokio::test]
async fn create_get_update_deactivate_reactivate_delete() {
    let w = webhooks();
    let created = w
        .create(
            new("p")
                .events(EventFilter::only([EventType::IssueExported]))
                .description("labeling"),
        )
        .await
        .expect("create");
    assert_eq!(created.status, WebhookStatus::Active);
    assert_eq!(created.org, OrgId::default());
    assert_eq!(w.get(&created.id).await.expect("get"), created);

    let updated = w
        .update(
            &created.id,
            WebhookUpdate::new()
                .url("https://hooks.example.com/v2")
                .events(EventFilter::All)
                .headers(CustomHeaders::new().with("x-team", "ml").expect("valid"))
                .description(None),
        )
        .await
        .expect("update");
    assert_eq!(updated.url.as_str(), "https://hooks.example.com/v2");
    assert_eq!(updated.events, EventFilter::All);
    assert_eq!(updated.description, None);
    assert_eq!(
        updated.headers.iter().collect::<Vec<_>>(),
        [("x-team", "ml")]
    );
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(w.get(&created.id).await.expect("get"), updated);

    assert_eq!(
        w.deactivate(&created.id).await.expect("deactivate").status,
        WebhookStatus::Inactive
    );
    assert_eq!(
        w.reactivate(&created.id).await.expect("reactivate").status,
        WebhookStatus::Active
    );

    w.delete(&created.id).await.expect("delete");
    assert!(matches!(w.get(&created.id).await, Err(ManageError::NotFound(id)) if id == created.id));
    assert!(matches!(
        w.delete(&created.id).await,
        Err(ManageError::NotFound(_))
    ));
    assert!(matches!(
        w.deactivate(&created.id).await,
        Err(ManageError::NotFound(_))
    ));
}

#[tokio::test]
async fn lists_per_project_and_per_organization_with_cursors() {
    let w = webhooks();
    let mut in_p = Vec::new();
    for _ in 0..5 {
        in_p.push(w.create(new("p")).await.expect("create").id);
    }
    let in_q = w.create(new("q")).await.expect("create").id;
    let org_wide = w
        .create(NewWebhook::new(
            Scope::Organization,
            "https://hooks.example.com/all",
        ))
        .await
        .expect("create")
        .id;

    let mut seen = Vec::new();
    let mut query = WebhookQuery::new(OrgId::default())
        .scope(ScopeFilter::Project("p".into()))
        .limit(2);
    loop {
        let page = w.list(&query).await.expect("list");
        seen.extend(page.items.iter().map(|h| h.id));
        match page.next {
            Some(cursor) => query = query.after(cursor),
            None => break,
        }
    }
    assert_eq!(seen, in_p);
    let all = w
        .list(&WebhookQuery::new(OrgId::default()))
        .await
        .expect("list");
    assert_eq!(all.items.len(), 7);
    assert!(all.items.iter().any(|h| h.id == in_q) && all.items.iter().any(|h| h.id == org_wide));
    assert!(all.next.is_none());
}

#[tokio::test]
async fn invalid_input_is_refused_and_nothing_is_written() {
    let w = webhooks();
    type Expect = fn(&WebhookError) -> bool;
    let cases: Vec<(NewWebhook, Expect)> = vec![
        (NewWebhook::new(Scope::Organization, "/relative"), |e| {
            matches!(e, WebhookError::InvalidUrl { .. })
        }),
        (
            NewWebhook::new(Scope::Organization, "ftp://files.example.com/"),
            |e| matches!(e, WebhookError::UnsupportedUrlScheme(_)),
        ),
        (
            NewWebhook::new(Scope::Organization, "https://u:p@example.com/"),
            |e| matches!(e, WebhookError::UrlHasCredentials),
        ),
        (
            NewWebhook::new(Scope::Organization, "http://10.0.0.7/hook"),
            |e| matches!(e, WebhookError::BlockedAddress { .. }),
        ),
        (new("p").events(EventFilter::only([])), |e| {
            matches!(e, WebhookError::EmptyEventSet)
        }),
        (new("p").header("X-Aquarium-Secret", "forged"), |e| {
            matches!(e, WebhookError::ReservedHeader(_))
        }),
        (new("p").header("x-ok", "line\r\nbreak"), |e| {
            matches!(e, WebhookError::InvalidHeader { .. })
        }),
        (new(""), |e| matches!(e, WebhookError::InvalidProject)),
        (
            new("p").secret(Secret::parse("labelbox-style-secret").expect("secret")),
            |e| matches!(e, WebhookError::SecretNotStandard),
        ),
    ];
    for (input, expected) in cases {
        let shown = format!("{input:?}");
        match w.create(input).await {
            Err(ManageError::Invalid(e)) => assert!(expected(&e), "{shown}: {e}"),
            other => panic!("{shown}: expected a validation error, got {other:?}"),
        }
    }
    assert!(matches!(
        EventFilter::from_names(["dataset-complete", "label-created"]),
        Err(WebhookError::UnknownEvent(e)) if e.name() == "label-created"
    ));
    assert_eq!(count(&w).await, 0, "a refused create wrote something");

    let kept = w.create(new("p")).await.expect("create");
    let refused = w
        .update(
            &kept.id,
            WebhookUpdate::new()
                .events(EventFilter::All)
                .url("javascript:alert(1)"),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(ManageError::Invalid(WebhookError::UnsupportedUrlScheme(_)))
        ),
        "{refused:?}"
    );
    assert_eq!(
        w.get(&kept.id).await.expect("get"),
        kept,
        "a refused update changed the webhook"
    );
}

#[tokio::test]
async fn the_organization_secret_is_shown_once_and_rotated() {
    let w = webhooks();
    let org = OrgId::new("acme");
    assert!(!w.has_org_secret(&org).await.expect("store"));
    let first = w.create_org_secret(&org).await.expect("secret");
    assert!(first.expose().starts_with("whsec_"));
    assert!(w.has_org_secret(&org).await.expect("store"));
    let again = w.create_org_secret(&org).await;
    assert!(
        matches!(&again, Err(ManageError::SecretExists(o)) if o == &org),
        "{again:?}"
    );
    let second = w
        .rotate_org_secret(&org, Duration::ZERO)
        .await
        .expect("rotate");
    assert_ne!(first, second);
    assert!(
        !format!("{first:?} {second:?}").contains("whsec_"),
        "Debug shows a secret"
    );
}

#[tokio::test]
async fn debug_never_shows_secrets_or_header_values() {
    let w = webhooks();
    let own = Secret::generate().expect("secret");
    let created = w
        .create(
            new("p")
                .secret(own.clone())
                .header("authorization", "Bearer sk_live_abc"),
        )
        .await
        .expect("create");
    let shown = format!("{created:?}");
    assert!(!shown.contains(own.expose()), "{shown}");
    assert!(!shown.contains("sk_live_abc"), "{shown}");
    assert!(shown.contains("authorization"), "{shown}");
}
