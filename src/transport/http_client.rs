//! The default transport: reqwest with rustls, no redirects, capped responses, an optional
//! egress proxy, and the address guard in the DNS resolver and before every connect.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Host;

use super::guard::{AddressPolicy, BlockedAddress};
use super::proxy::EgressProxy;
use super::{Transport, TransportError, TransportErrorKind, TransportRequest, TransportResponse};
use crate::error::{causes, chain};

/// The default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default cap on a response body; a larger one is [`TransportErrorKind::ResponseTooLarge`].
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The default length of the body excerpt kept from a response.
pub const DEFAULT_EXCERPT_BYTES: usize = 4 * 1024;

/// Sends webhooks over HTTP(S) with reqwest. Cheap to clone; clones share one connection
/// pool (HTTP keep-alive).
///
/// ```
/// use dataops_webhooks::transport::{guard::AddressPolicy, HttpTransport};
///
/// let transport = HttpTransport::builder()
///     .address_policy(AddressPolicy::allow_private()) // tests and on-premise only
///     .build()?;
/// # let _ = transport;
/// # Ok::<(), dataops_webhooks::transport::TransportError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    policy: AddressPolicy,
    /// Requests go through a proxy: target names are resolved and checked here first.
    proxied: bool,
    max_response_bytes: usize,
    excerpt_bytes: usize,
}

/// Configures an [`HttpTransport`]. Setters never fail; [`build`](Self::build) may.
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpTransportBuilder {
    policy: AddressPolicy,
    proxy: Option<EgressProxy>,
    connect_timeout: Duration,
    max_response_bytes: usize,
    excerpt_bytes: usize,
}

impl Default for HttpTransportBuilder {
    fn default() -> Self {
        Self {
            policy: AddressPolicy::default(),
            proxy: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            excerpt_bytes: DEFAULT_EXCERPT_BYTES,
        }
    }
}

impl HttpTransportBuilder {
    /// Which addresses may be reached (default: public only).
    pub fn address_policy(mut self, policy: AddressPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sends every request through `proxy` (default: none, and the environment's proxy
    /// variables are ignored). See [`EgressProxy`] for what the address guard still
    /// guarantees.
    pub fn proxy(mut self, proxy: EgressProxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// How long connecting may take (default 5 s). The whole exchange is bounded by each
    /// request's own timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest response body read (default 1 MiB); larger is an error.
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// How much of the response body is kept (default 4 KiB).
    pub fn excerpt_bytes(mut self, limit: usize) -> Self {
        self.excerpt_bytes = limit;
        self
    }

    /// Builds the transport.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn build(self) -> Result<HttpTransport, TransportError> {
        let failed = |e: reqwest::Error| {
            TransportError::new(
                TransportErrorKind::InvalidRequest,
                format!("could not build the HTTP client: {}", chain(&e)),
            )
            .with_source(e)
        };
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(crate::USER_AGENT)
            .dns_resolver(Arc::new(GuardedResolver {
                policy: self.policy.clone(),
                proxy_host: self.proxy.as_ref().and_then(EgressProxy::host_name),
            }));
        let builder = match &self.proxy {
            Some(proxy) => builder.proxy(proxy.to_reqwest().map_err(failed)?),
            None => builder,
        };
        let client = builder.build().map_err(failed)?;
        Ok(HttpTransport {
            client,
            proxied: self.proxy.is_some(),
            policy: self.policy,
            max_response_bytes: self.max_response_bytes,
            excerpt_bytes: self.excerpt_bytes.min(self.max_response_bytes),
        })
    }
}

impl HttpTransport {
    /// A builder with the defaults.
    pub fn builder() -> HttpTransportBuilder {
        HttpTransportBuilder::default()
    }

    /// Refuses IP-literal and `localhost` hosts the policy blocks: reqwest does not ask the
    /// resolver about IP literals, so this check is the guard for them.
    fn check_host(&self, request: &TransportRequest) -> Result<(), TransportError> {
        let blocked = match request.url.host() {
            Some(Host::Ipv4(ip)) => self.policy.check(IpAddr::V4(ip)).err(),
            Some(Host::Ipv6(ip)) => self.policy.check(IpAddr::V6(ip)).err(),
            Some(Host::Domain(name)) => self.policy.check_name(name).err(),
            None => {
                return Err(TransportError::new(
                    TransportErrorKind::InvalidRequest,
                    "the URL has no host",
                ))
            }
        };
        match blocked {
            None => Ok(()),
            Some(range) => {
                let host = request.url.host_str().unwrap_or_default().to_owned();
                let refused = BlockedAddress {
                    ip: host.trim_matches(['[', ']']).to_owned(),
                    host,
                    range,
                };
                Err(blocked_error(refused))
            }
        }
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, TransportError> {
        let mut excerpt = BytesMut::new();
        let mut total = 0usize;
        let status = response.status();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| classify(e).with_status(status))?
        {
            total += chunk.len();
            if total > self.max_response_bytes {
                return Err(TransportError::new(
                    TransportErrorKind::ResponseTooLarge,
                    format!(
                        "the endpoint answered {} with a body over the {} byte limit",
                        response.status(),
                        self.max_response_bytes
                    ),
                )
                .with_status(response.status()));
            }
            let room = self.excerpt_bytes.saturating_sub(excerpt.len());
            excerpt.extend_from_slice(&chunk[..room.min(chunk.len())]);
        }
        Ok(excerpt.freeze())
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: TransportRequest) -> Result<TransportResponse, TransportError> {
        self.check_host(&request)?;
        if self.proxied {
            // The proxy resolves the target itself; check the name here first.
            if let Some(Host::Domain(name)) = request.url.host() {
                resolve_checked(&self.policy, name).await.map_err(refused)?;
            }
        }
        // Built by hand so the header map is moved in, not copied header by header.
        let mut outgoing = reqwest::Request::new(reqwest::Method::POST, request.url);
        *outgoing.headers_mut() = request.headers;
        *outgoing.body_mut() = Some(request.body.into());
        *outgoing.timeout_mut() = Some(request.timeout);
        let started = Instant::now();
        let mut response = self.client.execute(outgoing).await.map_err(classify)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let body = self.read_body(response).await?;
        Ok(TransportResponse::new(
            status,
            headers,
            body,
            started.elapsed(),
        ))
    }
}

/// Whether an I/O error means the endpoint ended the connection before answering.
fn is_cut(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

/// Resolves names with the system resolver and refuses them when any address is blocked
/// (except the proxy's own name, which the host chose).
#[derive(Debug)]
struct GuardedResolver {
    policy: AddressPolicy,
    proxy_host: Option<String>,
}

/// A name that did not resolve: found again in the error chain to classify it as DNS.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve `{host}`: {reason}")]
struct DnsFailure {
    host: String,
    reason: String,
}

/// Why [`resolve_checked`] refused a name.
enum Refusal {
    Dns(DnsFailure),
    Blocked(BlockedAddress),
}

/// The addresses of `host`, every one allowed by `policy`.
async fn resolve_checked(policy: &AddressPolicy, host: &str) -> Result<Vec<SocketAddr>, Refusal> {
    let failed = |reason: String| {
        Refusal::Dns(DnsFailure {
            host: host.to_owned(),
            reason,
        })
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| failed(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(failed("no addresses".into()));
    }
    for addr in &addrs {
        if let Err(range) = policy.check(addr.ip()) {
            return Err(Refusal::Blocked(BlockedAddress {
                host: host.to_owned(),
                ip: addr.ip().to_string(),
                range,
            }));
        }
    }
    Ok(addrs)
}

/// A refusal as the transport reports it.
fn refused(refusal: Refusal) -> TransportError {
    match refusal {
        Refusal::Blocked(blocked) => blocked_error(blocked),
        Refusal::Dns(dns) => {
            TransportError::new(TransportErrorKind::Dns, dns.to_string()).with_source(dns)
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = if self.proxy_host.as_deref() == Some(host.to_ascii_lowercase().as_str()) {
            AddressPolicy::allow_private()
        } else {
            self.policy.clone()
        };
        Box::pin(async move {
            match resolve_checked(&policy, &host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(Refusal::Dns(e)) => Err(Box::new(e) as Box<dyn StdError + Send + Sync>),
                Err(Refusal::Blocked(e)) => Err(Box::new(e) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

fn blocked_error(refused: BlockedAddress) -> TransportError {
    TransportError::new(TransportErrorKind::BlockedAddress, refused.to_string())
        .with_source(refused)
}

/// Sorts a reqwest error into a [`TransportErrorKind`], with the whole cause chain as message.
/// The message leaves out the URL (its query may hold a token): the delivery log and the
/// logs know the endpoint already.
fn classify(error: reqwest::Error) -> TransportError {
    let had_url = error.url().is_some();
    let error = error.without_url();
    let mut tls = false;
    let mut dns = None;
    let mut cut = false;
    for e in causes(&error) {
        if let Some(refused) = e.downcast_ref::<BlockedAddress>() {
            return blocked_error(refused.clone());
        }
        if e.is::<DnsFailure>() {
            dns = Some(e.to_string());
        }
        tls |= e.is::<rustls::Error>();
        cut |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| is_cut(io.kind()))
            || e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_incomplete_message);
    }
    if let Some(message) = dns {
        return TransportError::new(TransportErrorKind::Dns, message).with_source(error);
    }
    let message = chain(&error);
    let kind = if error.is_timeout() {
        TransportErrorKind::Timeout
    } else if tls {
        TransportErrorKind::Tls
    } else if error.is_connect() || cut {
        TransportErrorKind::Connect
    } else if error.is_builder() || error.is_request() && !had_url {
        TransportErrorKind::InvalidRequest
    } else {
        TransportErrorKind::Other
    };
    TransportError::new(kind, message).with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        text.parse()
            .unwrap_or_else(|_| panic!("{text} is a valid name"))
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        // `localhost` resolves through /etc/hosts, without a DNS query. The transport refuses
        // the name before resolving; calling the resolver directly checks its own guard, the
        // one every other name goes through.
        let guarded = GuardedResolver {
            policy: AddressPolicy::default(),
            proxy_host: None,
        };
        let err = guarded
            .resolve(name("localhost"))
            .await
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("loopback")),
            "{err:?}"
        );
        let open = GuardedResolver {
            policy: AddressPolicy::allow_private(),
            proxy_host: None,
        };
        let addrs: Vec<SocketAddr> = open
            .resolve(name("localhost"))
            .await
            .map(Iterator::collect)
            .unwrap_or_default();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()),
            "{addrs:?}"
        );
    }
}
