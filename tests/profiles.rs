//! Receivers written for other platforms, on loopback: the seeds' Labelbox receiver logic,
//! GitHub's and Standard Webhooks' conventions, every profile's headers exactly; imported and
//! rotated secrets with their grace period; Standard Webhooks asymmetric (`v1a`) signatures
//! checked by the crate's verifier and, where Python's `cryptography` is installed, by an
//! independent ed25519 implementation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::receiver::{Verifier, VerifyError};
use dataops_webhooks::retry::RetryPolicy;
use dataops_webhooks::secret::Secret;
use dataops_webhooks::signing::{HeaderProfile, SignatureScheme, SignatureSchemes};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, OrgId, Scope, WebhookError, WebhookId};
use dataops_webhooks::{Dispatcher, ManageError, WebhookDispatcher, WorkerOptions};
use hmac::{Hmac, Mac};
use tokio::net::TcpListener;

const MS: Duration = Duration::from_millis(1);

/// One request as a receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    /// What the receiver answered.
    status: u16,
}

/// A loopback receiver. `/labelbox` runs the seeds' Labelbox sample logic — the signature,
/// then `request.headers["X-Labelbox-Id"]` and `["X-Labelbox-Event"]`, a missing one being a
/// 500 (Python's `KeyError`) — and answers the first request of each delivery with 503, so
/// every delivery is retried. Other paths answer 204.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(labelbox_secret: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let first_tries: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let log = seen.clone();
        let app = Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let (log, first_tries) = (log.clone(), first_tries.clone());
                async move {
                    let status = if uri.path() == "/labelbox" {
                        labelbox_sample(labelbox_secret, &headers, &body, &first_tries)
                    } else {
                        StatusCode::NO_CONTENT
                    };
                    log.lock().expect("lock").push(Seen {
                        path: uri.path().to_owned(),
                        headers,
                        body,
                        status: status.as_u16(),
                    });
                    status
                }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    async fn wait_for(&self, path: &str, n: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen(path);
            if seen.len() >= n {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: {} of {n} requests arrived",
                seen.len()
            );
            tokio::time::sleep(10 * MS).await;
        }
    }
}

/// The seeds' Labelbox receiver, line by line: HMAC-SHA1 of the payload with the secret
/// compared to `X-Hub-Signature`, then the two headers read (a missing one raises, a 500).
fn labelbox_sample(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    first_tries: &Mutex<HashMap<String, usize>>,
) -> StatusCode {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    let computed = hex::encode(mac.finalize().into_bytes());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("X-Hub-Signature") != Some(format!("sha1={computed}").as_str()) {
        return StatusCode::UNAUTHORIZED; // "Error: computed_signature does not match"
    }
    let (Some(id), Some(_event)) = (header("X-Labelbox-Id"), header("X-Labelbox-Event")) else {
        return StatusCode::INTERNAL_SERVER_ERROR; // KeyError
    };
    let mut tries = first_tries.lock().expect("lock");
    let n = tries.entry(id.to_owned()).or_insert(0);
    *n += 1;
    if *n == 1 {
        StatusCode::SERVICE_UNAVAILABLE // once per delivery, so each is retried
    } else {
        StatusCode::OK
    }
}

fn dispatcher() -> WebhookDispatcher {
    WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(2_000 * MS)
        .build()
        .expect("dispatcher")
}

fn options() -> WorkerOptions {
    WorkerOptions::default()
        .retry(RetryPolicy::new(vec![Duration::ZERO, 30 * MS, 30 * MS]).jitter(0.0))
        .poll_interval(20 * MS)
}

fn dataset(n: usize) -> Event {
    Event::dataset_complete(
        "p",
        Dataset {
            id: format!("dataset-{n}"),
            ..Default::default()
        },
    )
}

/// Header names of a request, lower case, sorted.
fn names(headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = headers.keys().map(|n| n.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

fn value<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_seeds_labelbox_receiver_accepts_every_delivery_and_its_retries() {
    let receiver = Receiver::start("CHANGE-ME").await;
    let d = dispatcher();
    // Labelbox's own sample secret: far shorter than a generated one, imported as it is.
    let hook = NewWebhook::new(Scope::Project("p".into()), receiver.url("/labelbox"))
        .profile(HeaderProfile::Labelbox)
        .secret(Secret::import("CHANGE-ME").expect("imported"));
    let hook = d.webhooks().create(hook).await.expect("create").id;
    let worker = d.start_worker(options());
    let mut ids = Vec::new();
    for n in 0..5 {
        let receipt = d.emit(dataset(n)).await.expect("emit");
        ids.extend(receipt.deliveries.iter().map(|t| t.delivery_id.to_string()));
    }
    let seen = receiver.wait_for("/labelbox", 10).await;
    worker.shutdown().await;
    assert_eq!(
        seen.len(),
        10,
        "each delivery twice: refused once, then accepted"
    );
    for request in &seen {
        assert_ne!(request.status, 401, "the signature verifies");
        assert_ne!(request.status, 500, "both Labelbox headers are there");
        assert_eq!(
            names(&request.headers),
            [
                "accept",
                "content-length",
                "content-type",
                "host",
                "user-agent",
                "x-hub-signature",
                "x-labelbox-event",
                "x-labelbox-id"
            ],
            "exactly Labelbox's headers: no other signature, no X-Aquarium-*"
        );
        assert_eq!(
            value(&request.headers, "x-labelbox-event"),
            "dataset-complete"
        );
    }
    for id in &ids {
        let tries: Vec<&Seen> = seen
            .iter()
            .filter(|s| value(&s.headers, "x-labelbox-id") == id)
            .collect();
        assert_eq!(
            tries.iter().map(|s| s.status).collect::<Vec<_>>(),
            [503, 200],
            "delivery {id}: the same X-Labelbox-Id on its retry"
        );
    }
    let record = d.webhooks().get(&hook).await.expect("get");
    assert_eq!(record.profile, HeaderProfile::Labelbox);
}

#[tokio::test]
async fn every_profile_sends_exactly_its_headers() {
    let receiver = Receiver::start("unused").await;
    let d = dispatcher();
    let org_secret = d
        .webhooks()
        .create_org_secret(&OrgId::default())
        .await
        .expect("secret");
    let mut hooks = Vec::new();
    for (path, profile) in [
        ("/aquarium", HeaderProfile::Aquarium),
        ("/github", HeaderProfile::GitHub),
        ("/standard", HeaderProfile::StandardWebhooks),
    ] {
        let hook = NewWebhook::new(Scope::Project("p".into()), receiver.url(path))
            .profile(profile)
            .header("X-Team", "ml");
        hooks.push(d.webhooks().create(hook).await.expect("create").id);
    }
    let worker = d.start_worker(options());
    let receipt = d.emit(dataset(1)).await.expect("emit");
    for ticket in &receipt.deliveries {
        assert!(ticket.outcome().await.is_success());
    }
    worker.shutdown().await;
    let common = [
        "accept",
        "content-length",
        "content-type",
        "host",
        "user-agent",
        "x-team",
    ];
    let expect = |extra: &[&str]| {
        let mut all: Vec<String> = common
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect();
        all.sort();
        all
    };
    let one = |path: &str| {
        let seen = receiver.seen(path);
        assert_eq!(seen.len(), 1, "{path}");
        seen.into_iter().next().expect("one request")
    };
    let id_of = |hook: WebhookId| {
        receipt
            .deliveries
            .iter()
            .find(|t| t.webhook_id == hook)
            .map(|t| t.delivery_id.to_string())
            .unwrap_or_default()
    };

    let aquarium = one("/aquarium");
    assert_eq!(
        names(&aquarium.headers),
        expect(&[
            "webhook-id",
            "webhook-signature",
            "webhook-timestamp",
            "x-aquarium-delivery",
            "x-aquarium-event",
            "x-aquarium-secret"
        ])
    );
    assert_eq!(
        value(&aquarium.headers, "x-aquarium-delivery"),
        id_of(hooks[0])
    );
    assert_eq!(
        value(&aquarium.headers, "x-aquarium-secret"),
        org_secret.expose()
    );

    let github = one("/github");
    assert_eq!(
        names(&github.headers),
        expect(&["x-github-delivery", "x-github-event", "x-hub-signature-256"])
    );
    assert_eq!(value(&github.headers, "x-github-delivery"), id_of(hooks[1]));
    assert_eq!(value(&github.headers, "x-github-event"), "dataset-complete");
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(org_secret.expose().as_bytes()).expect("key");
    mac.update(&github.body);
    assert_eq!(
        value(&github.headers, "x-hub-signature-256"),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );

    let standard = one("/standard");
    assert_eq!(
        names(&standard.headers),
        expect(&["webhook-id", "webhook-signature", "webhook-timestamp"])
    );
    assert_eq!(value(&standard.headers, "webhook-id"), id_of(hooks[2]));
    // The official Standard Webhooks verifier accepts it.
    let official = standardwebhooks::Webhook::new(org_secret.expose()).expect("secret");
    official
        .verify(&standard.body, &standard.headers)
        .expect("the official verifier accepts the Standard Webhooks profile");

    // The crate's verifier reads the delivery id from whichever header carries it.
    for (request, hook) in [
        (&aquarium, hooks[0]),
        (&github, hooks[1]),
        (&standard, hooks[2]),
    ] {
        let received = Verifier::new(org_secret.clone())
            .receive(&request.headers, &request.body)
            .expect("verifies");
        assert_eq!(received.delivery_id, Some(id_of(hook)));
        assert_eq!(received.event, dataset(1));
    }
}

#[tokio::test]
async fn a_secret_that_cannot_sign_the_profile_is_refused_with_a_clear_error() {
    let d = dispatcher();
    let plain = Secret::import("CHANGE-ME").expect("imported");
    let refused = create_with(&d, HeaderProfile::StandardWebhooks, plain.clone()).await;
    assert!(
        matches!(
            refused,
            Err(ManageError::Invalid(WebhookError::SecretNotStandard))
        ),
        "{refused:?}"
    );
    let asymmetric = Secret::generate_asymmetric().expect("random");
    let refused = create_with(&d, HeaderProfile::Labelbox, asymmetric.clone()).await;
    assert!(
        matches!(
            refused,
            Err(ManageError::Invalid(WebhookError::SecretAsymmetric))
        ),
        "{refused:?}"
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("whsk_") && message.contains("Standard Webhooks"),
        "{message}"
    );
    // A plain secret on a Labelbox webhook, then a switch to a profile it cannot sign.
    let hook = create_with(&d, HeaderProfile::Labelbox, plain)
        .await
        .expect("a plain secret signs hub signatures")
        .id;
    let switched = d
        .webhooks()
        .update(
            &hook,
            dataops_webhooks::webhook::WebhookUpdate::new()
                .profile(HeaderProfile::StandardWebhooks),
        )
        .await;
    assert!(
        matches!(
            switched,
            Err(ManageError::Invalid(WebhookError::SecretNotStandard))
        ),
        "{switched:?}"
    );
    assert_eq!(
        d.webhooks().get(&hook).await.expect("get").profile,
        HeaderProfile::Labelbox,
        "nothing changed"
    );
}

/// Creates a webhook of project `p` with `profile` and its own `secret`.
async fn create_with(
    d: &WebhookDispatcher,
    profile: HeaderProfile,
    secret: Secret,
) -> Result<dataops_webhooks::webhook::Webhook, ManageError> {
    d.webhooks()
        .create(
            NewWebhook::new(Scope::Project("p".into()), "http://127.0.0.1:9/x")
                .profile(profile)
                .secret(secret),
        )
        .await
}

/// Standard Webhooks headers of a preview made now, as a receiver would get them.
async fn preview_headers(d: &WebhookDispatcher, hook: &WebhookId) -> (HeaderMap, Bytes) {
    let preview = d.preview(hook, &dataset(7)).await.expect("preview");
    (preview.headers, preview.body)
}

#[tokio::test]
async fn a_receiver_with_the_old_secret_verifies_during_the_grace_period_and_not_after() {
    let d = dispatcher();
    let old = Secret::generate().expect("random");
    let hook = create_with(&d, HeaderProfile::StandardWebhooks, old.clone())
        .await
        .expect("create")
        .id;
    let new = d
        .webhooks()
        .rotate_secret(&hook, None, Duration::from_millis(1_500))
        .await
        .expect("rotate");
    assert_ne!(new, old);
    let stored = d.webhooks().get(&hook).await.expect("get");
    assert_eq!(stored.secret.as_ref(), Some(&new));
    assert!(stored.previous_secret.is_some());

    let (headers, body) = preview_headers(&d, &hook).await;
    let signatures = value(&headers, "webhook-signature").split(' ').count();
    assert_eq!(signatures, 2, "one signature per valid secret");
    let with_old = Verifier::new(old.clone());
    let with_new = Verifier::new(new.clone());
    with_old
        .verify(&headers, &body)
        .expect("the old secret verifies during the grace");
    with_new
        .verify(&headers, &body)
        .expect("the new secret verifies");

    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let (headers, body) = preview_headers(&d, &hook).await;
    assert_eq!(value(&headers, "webhook-signature").split(' ').count(), 1);
    assert_eq!(
        with_old.verify(&headers, &body),
        Err(VerifyError::BadSignature(SignatureScheme::StandardWebhooks)),
        "after the grace the old secret no longer verifies"
    );
    with_new.verify(&headers, &body).expect("the new one does");

    // A zero grace replaces the secret at once.
    let newest = d
        .webhooks()
        .rotate_secret(
            &hook,
            Some(Secret::generate().expect("random")),
            Duration::ZERO,
        )
        .await
        .expect("rotate");
    let (headers, body) = preview_headers(&d, &hook).await;
    assert!(with_new.verify(&headers, &body).is_err());
    Verifier::new(newest)
        .verify(&headers, &body)
        .expect("only the newest");
}

#[tokio::test]
async fn an_imported_org_secret_signs_at_once_and_the_old_one_during_its_grace() {
    let d = dispatcher();
    let org = OrgId::default();
    let first = d.webhooks().create_org_secret(&org).await.expect("secret");
    let hook = d
        .webhooks()
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            "http://127.0.0.1:9/x",
        ))
        .await
        .expect("create")
        .id;
    // A plain secret cannot sign the Standard Webhooks scheme this webhook uses: refused.
    let plain = Secret::import("CHANGE-ME").expect("imported");
    let refused = d
        .webhooks()
        .import_org_secret(&org, plain, Duration::ZERO)
        .await;
    assert!(
        matches!(
            refused,
            Err(ManageError::Invalid(WebhookError::SecretNotStandard))
        ),
        "{refused:?}"
    );
    let imported = Secret::import("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
    d.webhooks()
        .import_org_secret(&org, imported.clone(), Duration::from_secs(60))
        .await
        .expect("import");
    let (headers, body) = preview_headers(&d, &hook).await;
    assert_eq!(
        value(&headers, "x-aquarium-secret"),
        imported.expose(),
        "the new one at once"
    );
    Verifier::new(first)
        .schemes(SignatureSchemes::of([SignatureScheme::StandardWebhooks]))
        .verify(&headers, &body)
        .expect("the old one still verifies Standard Webhooks during the grace");
}

#[tokio::test]
async fn asymmetric_signatures_verify_with_the_public_key_only() {
    let receiver = Receiver::start("unused").await;
    let d = dispatcher();
    let key = Secret::generate_asymmetric().expect("random");
    let public = key.public_key().expect("public key");
    let hook = NewWebhook::new(Scope::Project("p".into()), receiver.url("/v1a"))
        .profile(HeaderProfile::StandardWebhooks)
        .secret(key.clone());
    d.webhooks().create(hook).await.expect("create");
    let worker = d.start_worker(options());
    let receipt = d.emit(dataset(3)).await.expect("emit");
    assert!(receipt.deliveries[0].outcome().await.is_success());
    worker.shutdown().await;
    let request = receiver.seen("/v1a").remove(0);
    let signature = value(&request.headers, "webhook-signature").to_owned();
    assert!(signature.starts_with("v1a,"), "{signature}");

    let received = Verifier::public_key(public)
        .receive(&request.headers, &request.body)
        .expect("the public key verifies");
    assert_eq!(received.event, dataset(3));
    assert_eq!(received.scheme, SignatureScheme::StandardWebhooks);
    // A verifier holding another key, or only a symmetric secret, refuses it.
    let other = Secret::generate_asymmetric().expect("random");
    let other = other.public_key().expect("public key");
    assert!(Verifier::public_key(other)
        .verify(&request.headers, &request.body)
        .is_err());
    assert!(Verifier::new(Secret::generate().expect("random"))
        .verify(&request.headers, &request.body)
        .is_err());
    // Tampering with the body, the id or the timestamp breaks it.
    let verifier = Verifier::public_key(public);
    assert!(verifier.verify(&request.headers, b"{}").is_err());
    for (name, forged) in [("webhook-id", "dlv_forged"), ("webhook-timestamp", "1")] {
        let mut headers = request.headers.clone();
        headers.insert(name, forged.parse().expect("header"));
        assert!(verifier.verify(&headers, &request.body).is_err(), "{name}");
    }
    // Mixed `v1,… v1a,…`: either key verifies its own signature.
    let symmetric = Secret::generate().expect("random");
    let id = value(&request.headers, "webhook-id").to_owned();
    let ts: i64 = value(&request.headers, "webhook-timestamp")
        .parse()
        .expect("seconds");
    let v1 = dataops_webhooks::signing::standard_signature(
        symmetric.standard_key().unwrap_or_default(),
        &id,
        ts,
        &request.body,
    );
    let mut mixed = request.headers.clone();
    mixed.insert(
        "webhook-signature",
        format!("{v1} {signature}").parse().expect("header"),
    );
    verifier
        .verify(&mixed, &request.body)
        .expect("v1a among v1");
    Verifier::new(symmetric)
        .verify(&mixed, &request.body)
        .expect("v1 among v1a");

    python_verifies(&public.to_string(), &id, ts, &request.body, &signature);
}

/// Checks a `v1a` signature with Python's `cryptography` package, an ed25519 implementation
/// independent of ours; says so and returns when Python or the package is missing.
fn python_verifies(public: &str, id: &str, ts: i64, body: &[u8], signature: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let script = r#"
import base64, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
public, content, signature = sys.argv[1], base64.b64decode(sys.argv[2]), sys.argv[3]
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public[len("whpk_"):]))
key.verify(base64.b64decode(signature[len("v1a,"):]), content)
print("verified")
"#;
    let content = [id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body].concat();
    let output = std::process::Command::new("python3")
        .args(["-c", script, public, &b64.encode(content), signature])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "verified");
        }
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            eprintln!("skipped the independent check: Python's `cryptography` is not installed");
        }
        Ok(out) => panic!(
            "Python's ed25519 refused our v1a signature: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("skipped the independent check: no python3 ({e})"),
    }
}
