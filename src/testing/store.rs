//! The behaviours every [`ConfigStore`] must have, one function each: what
//! [`config_store_conformance!`](crate::config_store_conformance) runs as one test each.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};

use crate::secret::Secret;
use crate::signing::{HeaderProfile, SignatureScheme, SignatureSchemes};
use crate::store::{ConfigStore, ScopeFilter, StoreError, WebhookQuery};
use crate::webhook::{
    CustomHeaders, EventFilter, OrgId, PreviousSecret, Scope, SigningKeys, Webhook, WebhookId,
    WebhookStatus,
};
use crate::EventType;

fn org(name: &str) -> OrgId {
    OrgId::new(name)
}

fn webhook(org_name: &str, scope: Scope) -> Webhook {
    let at = Utc
        .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .unwrap_or_default();
    Webhook {
        id: WebhookId::new(),
        org: org(org_name),
        scope,
        url: url::Url::parse("https://hooks.example.com/aquarium?team=ml")
            .unwrap_or_else(|e| panic!("{e}")),
        events: EventFilter::All,
        status: WebhookStatus::Active,
        description: None,
        headers: CustomHeaders::new(),
        secret: None,
        schemes: SignatureSchemes::default(),
        profile: crate::signing::HeaderProfile::default(),
        previous_secret: None,
        rate_limit: None,
        created_at: at,
        updated_at: at,
        revision: 0,
    }
}

fn project(name: &str) -> Scope {
    Scope::Project(name.to_owned())
}

/// A webhook reads back exactly as written, every field included.
pub async fn round_trips_every_field<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let mut full = webhook("acme", project("traffic-signs"));
    full.events = EventFilter::only([EventType::IssueExported, EventType::DatasetFailed]);
    full.status = WebhookStatus::Disabled {
        reason: "every delivery failed for 5 days".into(),
        since: full.created_at + Duration::microseconds(123_456),
    };
    full.description = Some("export to labeling — ünïcode".into());
    full.headers = CustomHeaders::new()
        .with("authorization", "Bearer abc")
        .and_then(|h| h.with("x-team", "ml"))
        .unwrap_or_else(|e| panic!("{e}"));
    full.revision = 7;
    full.secret = Some(Secret::parse("labelbox-style-secret").unwrap_or_else(|e| panic!("{e}")));
    full.schemes = SignatureSchemes::NONE.with(SignatureScheme::HubSignature);
    full.profile = HeaderProfile::GitHub;
    full.rate_limit = Some(crate::webhook::RateLimit::per_second(12.5).burst(4));
    full.previous_secret = Some(PreviousSecret {
        secret: Secret::import("short").unwrap_or_else(|e| panic!("{e}")),
        expires_at: full.created_at + Duration::days(1),
    });
    full.updated_at = full.created_at + Duration::seconds(90);
    store
        .insert_webhook(&full)
        .await
        .unwrap_or_else(|e| panic!("round_trips_every_field: insert: {e}"));
    let got = store
        .get_webhook(&full.id)
        .await
        .unwrap_or_else(|e| panic!("round_trips_every_field: get: {e}"));
    assert_eq!(
        got.as_ref(),
        Some(&full),
        "round_trips_every_field: the stored webhook differs"
    );
    let missing = store
        .get_webhook(&WebhookId::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        missing.is_none(),
        "round_trips_every_field: an unknown id returned a webhook"
    );
}

/// Inserting a webhook whose id exists is a conflict and changes nothing.
pub async fn refuses_a_duplicate_id<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let w = webhook("acme", Scope::Organization);
    store
        .insert_webhook(&w)
        .await
        .unwrap_or_else(|e| panic!("refuses_a_duplicate_id: insert: {e}"));
    let mut again = w.clone();
    again.description = Some("second".into());
    let result = store.insert_webhook(&again).await;
    assert!(
        matches!(result, Err(StoreError::Conflict(id)) if id == w.id),
        "refuses_a_duplicate_id: expected Conflict, got {result:?}"
    );
    let kept = store
        .get_webhook(&w.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kept.as_ref(),
        Some(&w),
        "refuses_a_duplicate_id: the first webhook was overwritten"
    );
}

/// Updates replace a webhook, updating or deleting a missing one says so.
pub async fn updates_and_deletes<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let mut w = webhook("acme", project("p"));
    store
        .insert_webhook(&w)
        .await
        .unwrap_or_else(|e| panic!("updates_and_deletes: insert: {e}"));
    w.status = WebhookStatus::Inactive;
    w.url = url::Url::parse("https://hooks.example.com/v2").unwrap_or_else(|e| panic!("{e}"));
    w.revision = 1;
    store
        .update_webhook(&w, 0)
        .await
        .unwrap_or_else(|e| panic!("updates_and_deletes: update: {e}"));
    let got = store
        .get_webhook(&w.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.as_ref(),
        Some(&w),
        "updates_and_deletes: the update was not stored"
    );

    let ghost = webhook("acme", project("p"));
    let result = store.update_webhook(&ghost, 0).await;
    assert!(
        matches!(result, Err(StoreError::NotFound(id)) if id == ghost.id),
        "updates_and_deletes: updating an unknown webhook should be NotFound, got {result:?}"
    );
    let stored = store
        .get_webhook(&ghost.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stored.is_none(),
        "updates_and_deletes: updating an unknown webhook created it"
    );

    assert!(
        store
            .delete_webhook(&w.id)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "updates_and_deletes: delete returned false"
    );
    assert!(
        !store
            .delete_webhook(&w.id)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "updates_and_deletes: a second delete returned true"
    );
    let gone = store
        .get_webhook(&w.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        gone.is_none(),
        "updates_and_deletes: a deleted webhook is still returned"
    );
}

/// An update of a revision no longer stored is refused as stale and changes nothing.
pub async fn updates_only_the_revision_they_read<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let name = "updates_only_the_revision_they_read";
    let w = webhook("acme", project("p"));
    store
        .insert_webhook(&w)
        .await
        .unwrap_or_else(|e| panic!("{name}: insert: {e}"));
    let mut user = w.clone();
    user.url = url::Url::parse("https://hooks.example.com/user").unwrap_or_else(|e| panic!("{e}"));
    user.revision = 1;
    store
        .update_webhook(&user, 0)
        .await
        .unwrap_or_else(|e| panic!("{name}: the first update: {e}"));
    // A writer that read revision 0 (a worker disabling the endpoint) comes second.
    let mut late = w.clone();
    late.status = WebhookStatus::Inactive;
    late.revision = 1;
    let result = store.update_webhook(&late, 0).await;
    assert!(
        matches!(result, Err(StoreError::Stale(id)) if id == w.id),
        "{name}: an update of a revision no longer stored should be Stale, got {result:?}"
    );
    assert!(
        result.as_ref().is_err_and(StoreError::is_retryable),
        "{name}: Stale should say it is retryable"
    );
    let kept = store
        .get_webhook(&w.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kept.as_ref(),
        Some(&user),
        "{name}: a stale update overwrote the newer one"
    );
    let mut next = user.clone();
    next.description = Some("second change".into());
    next.revision = 2;
    store
        .update_webhook(&next, 1)
        .await
        .unwrap_or_else(|e| panic!("{name}: an update of the stored revision: {e}"));
}

/// Of concurrent updates of one revision, exactly one wins; the others are stale.
pub async fn concurrent_updates_of_one_revision_have_one_winner<B: ConfigStore + 'static>(
    store: Arc<B>,
) {
    let name = "concurrent_updates_of_one_revision_have_one_winner";
    let w = webhook("acme", project("p"));
    store
        .insert_webhook(&w)
        .await
        .unwrap_or_else(|e| panic!("{name}: insert: {e}"));
    let writers: Vec<Webhook> = (0..4)
        .map(|i| {
            let mut changed = w.clone();
            changed.description = Some(format!("writer {i}"));
            changed.revision = 1;
            changed
        })
        .collect();
    let (a, b, c, d) = tokio::join!(
        store.update_webhook(&writers[0], 0),
        store.update_webhook(&writers[1], 0),
        store.update_webhook(&writers[2], 0),
        store.update_webhook(&writers[3], 0),
    );
    let results = [a, b, c, d];
    let won: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "{name}: {} writers won: {results:?}",
        won.len()
    );
    for result in &results {
        assert!(
            matches!(result, Ok(()) | Err(StoreError::Stale(_))),
            "{name}: a loser should be Stale, got {result:?}"
        );
    }
    let stored = store
        .get_webhook(&w.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored.as_ref(),
        won.first().and_then(|i| writers.get(*i)),
        "{name}: the stored webhook is not the winner's"
    );
}

/// A NUL in a project name, organization id or description is refused before the store is called.
pub async fn text_it_cannot_store_is_refused_first<B: ConfigStore + 'static>(store: Arc<B>) {
    use crate::store::{ManageError, Webhooks};
    use crate::webhook::{NewWebhook, WebhookError, WebhookUpdate};

    let name = "text_it_cannot_store_is_refused_first";
    let webhooks = Webhooks::new(store);
    let url = "https://hooks.example.com/a";
    let kept = webhooks
        .create(NewWebhook::new(project("p"), url))
        .await
        .unwrap_or_else(|e| panic!("{name}: create: {e}"));
    let refused = |result: Result<(), ManageError>, field: &str| match result {
        Err(ManageError::Invalid(WebhookError::UnstorableText(e))) => {
            assert_eq!(e.field(), field, "{name}")
        }
        other => panic!("{name}: a NUL in the {field} should be refused, got {other:?}"),
    };
    for (new, field) in [
        (NewWebhook::new(project("p\0"), url), "project name"),
        (
            NewWebhook::new(project("p"), url).org("acme\0"),
            "organization id",
        ),
        (
            NewWebhook::new(project("p"), url).description("a\0b"),
            "description",
        ),
    ] {
        refused(webhooks.create(new).await.map(drop), field);
    }
    refused(
        webhooks
            .update(
                &kept.id,
                WebhookUpdate::new().description(Some("\0".into())),
            )
            .await
            .map(drop),
        "description",
    );
    refused(
        webhooks.list(&WebhookQuery::new("acme\0")).await.map(drop),
        "organization id",
    );
    refused(
        webhooks.create_org_secret(&org("acme\0")).await.map(drop),
        "organization id",
    );
    let all = webhooks
        .list(&WebhookQuery::new(kept.org.clone()))
        .await
        .unwrap_or_else(|e| panic!("{name}: list: {e}"));
    assert_eq!(
        all.items,
        vec![kept],
        "{name}: a refused call wrote something"
    );
}

/// Listings page in id order, without gaps or repeats.
pub async fn pages_in_id_order_without_gaps<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let w = webhook("acme", project("p"));
        store
            .insert_webhook(&w)
            .await
            .unwrap_or_else(|e| panic!("pages_in_id_order_without_gaps: insert: {e}"));
        ids.push(w.id);
    }
    let mut seen = Vec::new();
    let mut query = WebhookQuery::new(org("acme")).limit(2);
    let mut pages = 0;
    loop {
        let page = store
            .list_webhooks(&query)
            .await
            .unwrap_or_else(|e| panic!("pages_in_id_order_without_gaps: list: {e}"));
        pages += 1;
        assert!(
            page.items.len() <= 2,
            "pages_in_id_order_without_gaps: a page exceeded its limit"
        );
        seen.extend(page.items.iter().map(|w| w.id));
        match page.next {
            Some(next) => {
                assert_eq!(
                    Some(&next),
                    seen.last(),
                    "pages_in_id_order_without_gaps: the cursor is not the page's last id"
                );
                query.after = Some(next);
            }
            None => break,
        }
        assert!(
            pages < 10,
            "pages_in_id_order_without_gaps: the listing does not end"
        );
    }
    assert_eq!(
        seen, ids,
        "pages_in_id_order_without_gaps: pages are not the webhooks in id order"
    );
    assert_eq!(
        pages, 3,
        "pages_in_id_order_without_gaps: 5 webhooks 2 a page should be 3 pages"
    );
}

/// Listings return one organization's webhooks, filtered by scope.
pub async fn filters_by_organization_and_scope<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let in_p = webhook("acme", project("p"));
    let in_q = webhook("acme", project("q"));
    let org_wide = webhook("acme", Scope::Organization);
    let other_org = webhook("globex", project("p"));
    for w in [&in_p, &in_q, &org_wide, &other_org] {
        store
            .insert_webhook(w)
            .await
            .unwrap_or_else(|e| panic!("filters_by_organization_and_scope: insert: {e}"));
    }
    let ids = |scope: ScopeFilter, org_name: &str| {
        let query = WebhookQuery::new(org(org_name)).scope(scope);
        async move {
            let page = store
                .list_webhooks(&query)
                .await
                .unwrap_or_else(|e| panic!("filters_by_organization_and_scope: list: {e}"));
            page.items.into_iter().map(|w| w.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(ScopeFilter::All, "acme").await,
        [in_p.id, in_q.id, org_wide.id],
        "filters_by_organization_and_scope: all of acme"
    );
    assert_eq!(
        ids(ScopeFilter::Project("p".into()), "acme").await,
        [in_p.id],
        "filters_by_organization_and_scope: project p"
    );
    assert_eq!(
        ids(ScopeFilter::OrganizationWide, "acme").await,
        [org_wide.id],
        "filters_by_organization_and_scope: organization-wide"
    );
    assert_eq!(
        ids(ScopeFilter::All, "globex").await,
        [other_org.id],
        "filters_by_organization_and_scope: another organization"
    );
    assert!(
        ids(ScopeFilter::All, "initech").await.is_empty(),
        "filters_by_organization_and_scope: an empty organization"
    );
}

/// Signing keys are kept per organization and replaced whole.
pub async fn keeps_signing_keys_per_organization<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let acme = org("acme");
    let none = store
        .signing_keys(&acme)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        none.is_none(),
        "keeps_signing_keys_per_organization: a new store has keys"
    );
    let at = Utc::now();
    let first = SigningKeys::new(Secret::generate().unwrap_or_else(|e| panic!("{e}")), at);
    store
        .put_signing_keys(&acme, &first)
        .await
        .unwrap_or_else(|e| panic!("keeps_signing_keys_per_organization: put: {e}"));
    let mut rotated = SigningKeys::new(Secret::generate().unwrap_or_else(|e| panic!("{e}")), at);
    rotated.previous = Some(PreviousSecret {
        secret: first.current.clone(),
        expires_at: at + Duration::hours(1),
    });
    store
        .put_signing_keys(&acme, &rotated)
        .await
        .unwrap_or_else(|e| panic!("keeps_signing_keys_per_organization: put: {e}"));
    let got = store
        .signing_keys(&acme)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.map(|k| (k.current, k.previous)),
        Some((rotated.current.clone(), rotated.previous.clone())),
        "keeps_signing_keys_per_organization: rotated keys differ"
    );
    let other = store
        .signing_keys(&org("globex"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        other.is_none(),
        "keeps_signing_keys_per_organization: keys leaked to another organization"
    );
}

/// A webhook is found with its organization's keys when it signs with them.
pub async fn finds_a_webhook_with_its_keys<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let name = "finds_a_webhook_with_its_keys";
    let keys = SigningKeys::new(
        Secret::generate().unwrap_or_else(|e| panic!("{e}")),
        Utc::now(),
    );
    store
        .put_signing_keys(&org("acme"), &keys)
        .await
        .unwrap_or_else(|e| panic!("{name}: put keys: {e}"));
    let org_signed = webhook("acme", project("p"));
    let mut own_secret = webhook("acme", project("p"));
    own_secret.secret = Some(Secret::generate().unwrap_or_else(|e| panic!("{e}")));
    let keyless = webhook("globex", project("p"));
    for w in [&org_signed, &own_secret, &keyless] {
        store
            .insert_webhook(w)
            .await
            .unwrap_or_else(|e| panic!("{name}: insert: {e}"));
    }
    let found = |id| async move {
        store
            .webhook_with_keys(&id)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let (w, k) = found(org_signed.id)
        .await
        .unwrap_or_else(|| panic!("{name}: not found"));
    assert_eq!(w, org_signed, "{name}: the webhook");
    assert_eq!(
        k.map(|k| k.current),
        Some(keys.current.clone()),
        "{name}: the organization's keys"
    );
    let (_, k) = found(own_secret.id)
        .await
        .unwrap_or_else(|| panic!("{name}: not found"));
    assert!(
        k.is_none(),
        "{name}: a webhook with its own secret needs no keys"
    );
    let (_, k) = found(keyless.id)
        .await
        .unwrap_or_else(|| panic!("{name}: not found"));
    assert!(k.is_none(), "{name}: an organization without keys has none");
    assert!(
        found(WebhookId::new()).await.is_none(),
        "{name}: an unknown id is found"
    );
}

/// Subscribers are the active webhooks of the project and the organization that take the event type.
pub async fn finds_subscribers<B: ConfigStore>(store: Arc<B>) {
    let store = &*store;
    let exported = EventType::IssueExported;
    let mut subscribed = webhook("acme", project("p"));
    subscribed.events = EventFilter::only([exported]);
    let org_wide = webhook("acme", Scope::Organization);
    let mut inactive = webhook("acme", project("p"));
    inactive.status = WebhookStatus::Inactive;
    let mut disabled = webhook("acme", project("p"));
    disabled.status = WebhookStatus::Disabled {
        reason: "failing".into(),
        since: Utc::now(),
    };
    let mut other_event = webhook("acme", project("p"));
    other_event.events = EventFilter::only([EventType::DatasetComplete]);
    let other_project = webhook("acme", project("q"));
    let other_org = webhook("globex", project("p"));
    for w in [
        &subscribed,
        &org_wide,
        &inactive,
        &disabled,
        &other_event,
        &other_project,
        &other_org,
    ] {
        store
            .insert_webhook(w)
            .await
            .unwrap_or_else(|e| panic!("finds_subscribers: insert: {e}"));
    }
    let mut found: Vec<WebhookId> = store
        .subscribers(&org("acme"), "p", exported)
        .await
        .unwrap_or_else(|e| panic!("finds_subscribers: {e}"))
        .into_iter()
        .map(|w| w.id)
        .collect();
    found.sort();
    assert_eq!(
        found,
        [subscribed.id, org_wide.id],
        "finds_subscribers: wrong webhooks for issue-exported in p"
    );
}

/// Secrets imported, rotated and replaced through [`Webhooks`](crate::Webhooks) read back
/// from the store with their profile and grace periods: a webhook's replaced secret signs
/// until it expires and not after; a zero grace keeps no previous secret; an organization's
/// imported secret replaces the generated one, which keeps its grace.
pub async fn keeps_imported_and_rotated_secrets<B: ConfigStore + 'static>(store: Arc<B>) {
    let webhooks = crate::Webhooks::new(store.clone());
    let acme = org("acme");
    let short = Secret::import("CHANGE-ME").unwrap_or_else(|e| panic!("{e}"));
    let created = webhooks
        .create(
            crate::webhook::NewWebhook::new(project("p"), "https://hooks.example.com/labelbox")
                .org(acme.clone())
                .profile(HeaderProfile::Labelbox)
                .secret(short.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("keeps_imported_and_rotated_secrets: create: {e}"));
    let read = |id| {
        let store = store.clone();
        async move {
            store
                .get_webhook(&id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("keeps_imported_and_rotated_secrets: webhook gone"))
        }
    };
    let stored = read(created.id).await;
    assert_eq!(
        stored.profile,
        HeaderProfile::Labelbox,
        "keeps_imported_and_rotated_secrets: profile"
    );
    assert_eq!(
        stored.secret.as_ref(),
        Some(&short),
        "keeps_imported_and_rotated_secrets: a short imported secret"
    );

    let before = Utc::now();
    let rotated = webhooks
        .rotate_secret(&created.id, None, std::time::Duration::from_secs(3_600))
        .await
        .unwrap_or_else(|e| panic!("keeps_imported_and_rotated_secrets: rotate: {e}"));
    let stored = read(created.id).await;
    assert_eq!(
        stored.secret.as_ref(),
        Some(&rotated),
        "keeps_imported_and_rotated_secrets: the new secret"
    );
    let previous = stored
        .previous_secret
        .clone()
        .unwrap_or_else(|| panic!("keeps_imported_and_rotated_secrets: the old secret is kept"));
    assert_eq!(previous.secret, short);
    assert!(
        previous.expires_at >= before + Duration::minutes(59)
            && previous.expires_at <= Utc::now() + Duration::minutes(61),
        "keeps_imported_and_rotated_secrets: expires after the grace: {:?}",
        previous.expires_at
    );
    assert_eq!(
        stored.valid_previous_secrets(Utc::now()),
        std::slice::from_ref(&short)
    );
    assert!(
        stored
            .valid_previous_secrets(Utc::now() + Duration::hours(2))
            .is_empty(),
        "keeps_imported_and_rotated_secrets: dropped once the grace is over"
    );
    let (with_keys, _) = store
        .webhook_with_keys(&created.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("keeps_imported_and_rotated_secrets: webhook_with_keys"));
    assert_eq!(
        with_keys, stored,
        "keeps_imported_and_rotated_secrets: what the worker reads"
    );

    let third = Secret::import("abc").unwrap_or_else(|e| panic!("{e}"));
    webhooks
        .rotate_secret(&created.id, Some(third.clone()), std::time::Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("keeps_imported_and_rotated_secrets: rotate: {e}"));
    let stored = read(created.id).await;
    assert_eq!(stored.secret.as_ref(), Some(&third));
    assert_eq!(
        stored.previous_secret, None,
        "keeps_imported_and_rotated_secrets: a zero grace keeps nothing"
    );

    let generated = webhooks
        .create_org_secret(&acme)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let imported = Secret::import("org-wide-secret-from-before").unwrap_or_else(|e| panic!("{e}"));
    webhooks
        .import_org_secret(&acme, imported.clone(), std::time::Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| panic!("keeps_imported_and_rotated_secrets: import: {e}"));
    let keys = store
        .signing_keys(&acme)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("keeps_imported_and_rotated_secrets: keys"));
    assert_eq!(
        keys.current, imported,
        "keeps_imported_and_rotated_secrets: the imported org secret"
    );
    assert_eq!(
        keys.valid_previous(Utc::now()),
        std::slice::from_ref(&generated)
    );
    assert!(keys
        .valid_previous(Utc::now() + Duration::minutes(11))
        .is_empty());
}
