//! Who may manage what: the host's [`Authorizer`] turns a request into an [`Access`] (an
//! organization and the projects of it the caller may manage) or a [`Denied`].

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use http::request::Parts;
use http::StatusCode;

use crate::webhook::{OrgId, Scope, Webhook};

/// Decides, from a request's method, URI and headers (its session cookie or bearer token),
/// which organization the caller acts for and which of its projects they may manage.
///
/// Every route of the [router](super::router) calls it first and is scoped by its answer:
/// ids of another organization's webhooks and deliveries answer 404, as if they did not
/// exist. The crate never reads credentials itself.
///
/// ```
/// use async_trait::async_trait;
/// use dataops_webhooks::management::{Access, Authorizer, Denied};
///
/// /// Bearer tokens mapped to organizations; a real host asks its session store.
/// #[derive(Debug)]
/// struct Tokens;
///
/// #[async_trait]
/// impl Authorizer for Tokens {
///     async fn authorize(&self, request: &http::request::Parts) -> Result<Access, Denied> {
///         match request.headers.get("authorization").and_then(|v| v.to_str().ok()) {
///             Some("Bearer admin-a") => Ok(Access::organization("org-a")),
///             Some("Bearer labeler-a") => Ok(Access::organization("org-a").projects(["traffic-signs"])),
///             Some(_) => Err(Denied::forbidden("this token may not manage webhooks")),
///             None => Err(Denied::unauthenticated("sign in first")),
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// The caller's access, or why there is none.
    ///
    /// # Errors
    /// [`Denied`]: the route answers 401 or 403 with its message, and does nothing.
    async fn authorize(&self, request: &Parts) -> Result<Access, Denied>;
}

/// What a caller may manage: one organization, and all of its projects or some of them.
///
/// A caller limited to some projects manages only those projects' webhooks: it cannot see
/// organization-wide webhooks, nor generate or rotate the organization's secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Access {
    org: OrgId,
    projects: Option<BTreeSet<String>>,
}

impl Access {
    /// All of `org`: every project, its organization-wide webhooks and its secret.
    pub fn organization(org: impl Into<OrgId>) -> Self {
        Self {
            org: org.into(),
            projects: None,
        }
    }

    /// The same organization, limited to these projects.
    #[must_use]
    pub fn projects<I, S>(mut self, projects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.projects = Some(projects.into_iter().map(Into::into).collect());
        self
    }

    /// The organization.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// Whether the caller manages the whole organization (not only some projects).
    pub fn is_org_wide(&self) -> bool {
        self.projects.is_none()
    }

    /// The projects the caller is limited to; `None` for all of them.
    pub fn allowed_projects(&self) -> Option<&BTreeSet<String>> {
        self.projects.as_ref()
    }

    /// Whether the caller may manage `project`.
    pub fn allows_project(&self, project: &str) -> bool {
        self.projects.as_ref().is_none_or(|p| p.contains(project))
    }

    /// Whether the caller may see and change `webhook`.
    pub fn allows(&self, webhook: &Webhook) -> bool {
        webhook.org == self.org
            && match &webhook.scope {
                Scope::Project(project) => self.allows_project(project),
                _ => self.is_org_wide(),
            }
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("org", &self.org)
            .field("projects", &self.projects)
            .finish()
    }
}

/// Why a request was refused: not signed in (401), or not allowed (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    status: StatusCode,
    message: String,
}

impl Denied {
    /// The caller is not signed in (401): `message` tells them what to do.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    /// The caller is signed in but may not manage webhooks (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// 401 or 403.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}
