//! [`EgressProxy`]: an outbound proxy for every request, for platforms whose customers
//! allow-list a static egress address.

use std::fmt;

use url::Url;

use super::{TransportError, TransportErrorKind};

/// The proxy every request of an [`HttpTransport`](super::HttpTransport) goes through: HTTP
/// (`http://`, plain requests in absolute form, `https://` targets through `CONNECT`) or
/// SOCKS5 (`socks5://`, names resolved by the proxy; `socks5h://` is the same). Credentials
/// in the URL, or set with [`basic_auth`](Self::basic_auth), are sent to the proxy and never
/// shown by `Debug` or in errors.
///
/// What the address guard can promise through a proxy: the target is checked before the
/// proxy is asked — an IP literal against the policy, a name by resolving it here and
/// checking every address, as without a proxy. The proxy then resolves the name again and
/// connects on its own: a name whose DNS answers change between the two lookups (DNS
/// rebinding) can reach an address the guard never saw. Where that matters, the proxy must
/// enforce the same egress rules (smokescreen, squid ACLs). The proxy's own address is the
/// host's choice and is not checked against the policy.
///
/// ```
/// use dataops_webhooks::transport::{EgressProxy, HttpTransport};
///
/// let proxy = EgressProxy::new("http://egress.internal:3128")?.basic_auth("webhooks", "s3cret");
/// assert!(!format!("{proxy:?}").contains("s3cret"));
/// let transport = HttpTransport::builder().proxy(proxy).build()?;
/// # let _ = transport;
/// # Ok::<(), dataops_webhooks::transport::TransportError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct EgressProxy {
    /// The proxy's URL, without credentials.
    url: Url,
    credentials: Option<(String, String)>,
}

impl EgressProxy {
    /// A proxy at `url` (`http://host:port`, `socks5://host:port`); `user:password@` in it
    /// becomes [`basic_auth`](Self::basic_auth).
    ///
    /// # Errors
    /// [`TransportErrorKind::InvalidRequest`] for a URL that does not parse, has no host, or
    /// another scheme; the message never repeats a password.
    pub fn new(url: &str) -> Result<Self, TransportError> {
        let invalid = |reason: &str| {
            TransportError::new(
                TransportErrorKind::InvalidRequest,
                format!("invalid proxy URL: {reason}; give http://host:port or socks5://host:port"),
            )
        };
        let mut url = Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err(invalid(&format!("unsupported scheme `{}`", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        let credentials = (!url.username().is_empty()).then(|| {
            let user = decode(url.username());
            let password = url.password().map(decode).unwrap_or_default();
            (user, password)
        });
        // Cannot fail for a URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(Self { url, credentials })
    }

    /// Sends `Proxy-Authorization: Basic …` (HTTP) or the SOCKS5 user/password.
    #[must_use]
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// The proxy's URL, without credentials.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The proxy's host as reqwest's resolver is asked for it, when it is a name.
    pub(crate) fn host_name(&self) -> Option<String> {
        match self.url.host() {
            Some(url::Host::Domain(name)) => Some(name.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// The reqwest proxy for every request.
    pub(crate) fn to_reqwest(&self) -> Result<reqwest::Proxy, reqwest::Error> {
        let proxy = reqwest::Proxy::all(self.url.as_str())?;
        Ok(match &self.credentials {
            Some((user, password)) => proxy.basic_auth(user, password),
            None => proxy,
        })
    }
}

fn decode(text: &str) -> String {
    percent_decode(text)
}

/// `%XX` escapes decoded (URL user info is percent-encoded); bytes that do not form UTF-8
/// are replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("url", &self.url.as_str())
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_never_show() {
        let proxy =
            EgressProxy::new("http://hooks%40team:p%3Ass@proxy.internal:3128").expect("valid");
        assert_eq!(proxy.url().as_str(), "http://proxy.internal:3128/");
        assert_eq!(
            proxy.credentials,
            Some(("hooks@team".to_owned(), "p:ss".to_owned()))
        );
        let shown = format!("{proxy:?}");
        assert!(
            !shown.contains("p:ss") && !shown.contains("p%3Ass"),
            "{shown}"
        );
        assert_eq!(proxy.host_name().as_deref(), Some("proxy.internal"));
    }

    #[test]
    fn bad_proxy_urls_are_refused_without_their_password() {
        for url in ["ftp://proxy:21", "not a url", "http://user:hunter2@/"] {
            let err = EgressProxy::new(url)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("invalid proxy URL"), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        assert!(EgressProxy::new("socks5://127.0.0.1:1080").is_ok());
    }
}
