//! [`ExportReceiver`] on axum (feature `axum`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{post, MethodRouter};

use super::{Export, ExportReceiver};

/// A `POST` route that verifies each request, hands exported issues to `handler`, and answers
/// as [`ExportReceiver::handle`] does (204, 502 when the handler fails, 400, 401, 413).
///
/// ```no_run
/// use axum::Router;
/// use dataops_webhooks::labeling::{axum::export_route, Export, ExportReceiver};
/// use dataops_webhooks::receiver::Verifier;
/// use dataops_webhooks::secret::Secret;
///
/// # fn app(secret: Secret) -> Router {
/// let receiver = ExportReceiver::new(Verifier::new(secret));
/// Router::new().route(
///     "/webhook",
///     export_route(receiver, |export: Export| async move {
///         println!("{} labels to requeue", export.issue.label_ids_to_requeue().len());
///         Ok::<(), std::convert::Infallible>(())
///     }),
/// )
/// # }
/// ```
pub fn export_route<H, Fut, E, S>(receiver: ExportReceiver, handler: H) -> MethodRouter<S>
where
    H: Fn(Export) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + 'static,
    S: Clone + Send + Sync + 'static,
{
    let receiver = Arc::new(receiver);
    post(move |headers: HeaderMap, body: Bytes| {
        let (receiver, handler) = (receiver.clone(), handler.clone());
        async move { receiver.handle(&headers, &body, handler).await }
    })
}
