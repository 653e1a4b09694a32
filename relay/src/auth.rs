//! Token mode: who is calling ([`Authorizer::check`] runs a TokenReview bound to the relay's
//! audience) and whether they may read the app (a SubjectAccessReview for `get` on
//! `apps/logs` in group `aether.dev`, name = the app). Positive decisions are remembered
//! briefly. Tokens are never logged; the cache keys on them only in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::metrics::{AuthOutcome, Metrics};

/// The API group of the virtual resource callers are authorized for.
pub const GROUP: &str = "aether.dev";
/// The virtual resource.
pub const RESOURCE: &str = "apps";
/// Its subresource.
pub const SUBRESOURCE: &str = "logs";

/// Why a caller was turned away, or why no decision could be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The apiserver did not accept the token for the relay's audience.
    #[error("the token was not accepted for audience {audience}; use a token bound to it")]
    Unauthenticated {
        /// The audience required.
        audience: String,
    },
    /// The caller may not read the app.
    #[error(
        "{user} may not get apps/logs {app} in group aether.dev in namespace {namespace}; \
         ask an admin for that permission"
    )]
    Denied {
        /// The caller's user name.
        user: String,
        /// The app.
        app: String,
        /// The namespace.
        namespace: String,
    },
    /// The TokenReview could not be made.
    #[error("the token could not be reviewed; the apiserver did not answer in time or failed")]
    TokenReviewFailed(#[source] Option<kube::Error>),
    /// The SubjectAccessReview could not be made.
    #[error("access could not be reviewed; the apiserver did not answer in time or failed")]
    AccessReviewFailed(#[source] Option<kube::Error>),
}

/// The authenticated caller, as the TokenReview described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name, such as `system:serviceaccount:ci:deployer`.
    pub username: String,
    /// User id.
    pub uid: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug)]
struct Entry {
    identity: Identity,
    expires: Instant,
}

/// TokenReview and SubjectAccessReview against the apiserver, with a small cache of
/// positive decisions.
pub struct Authorizer {
    client: kube::Client,
    audience: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
    cache: Mutex<DecisionCache>,
}

impl Authorizer {
    /// An authorizer asking through `client` (the relay's own credentials) for tokens bound to
    /// `audience`, remembering up to `capacity` positive decisions for `ttl`.
    pub fn new(
        client: kube::Client,
        audience: String,
        ttl: Duration,
        capacity: usize,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Authorizer {
            client,
            audience,
            timeout,
            metrics,
            cache: Mutex::new(DecisionCache::new(ttl, capacity)),
        }
    }

    /// Decides whether the holder of `token` may read `app` in `namespace`.
    pub async fn check(
        &self,
        token: &str,
        namespace: &str,
        app: &str,
    ) -> Result<Identity, AuthError> {
        let key = (token.to_string(), namespace.to_string(), app.to_string());
        if let Some(identity) = self.cached(&key) {
            self.metrics.auth_decision(AuthOutcome::AllowedCached);
            return Ok(identity);
        }

        let result = self.review(token, namespace, app).await;
        let outcome = match &result {
            Ok(_) => AuthOutcome::Allowed,
            Err(AuthError::Denied { .. }) => AuthOutcome::Denied,
            Err(AuthError::Unauthenticated { .. }) => AuthOutcome::Unauthenticated,
            Err(_) => AuthOutcome::Error,
        };
        self.metrics.auth_decision(outcome);
        match &result {
            Ok(identity) => {
                tracing::debug!(user = %identity.username, namespace, app, "access allowed");
                self.remember(key, identity.clone());
            }
            Err(AuthError::Denied { user, .. }) => {
                tracing::info!(user = %user, namespace, app, "access denied");
            }
            Err(e) => tracing::info!(namespace, app, error = %e, "access not granted"),
        }
        result
    }

    async fn review(&self, token: &str, namespace: &str, app: &str) -> Result<Identity, AuthError> {
        let identity = self.authenticate(token).await?;

        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(identity.username.clone()),
                uid: identity.uid.clone(),
                groups: Some(identity.groups.clone()),
                extra: (!identity.extra.is_empty()).then(|| identity.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_string()),
                    verb: Some("get".into()),
                    group: Some(GROUP.into()),
                    resource: Some(RESOURCE.into()),
                    subresource: Some(SUBRESOURCE.into()),
                    name: Some(app.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(self.timeout, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| AuthError::AccessReviewFailed(None))?
                .map_err(|e| AuthError::AccessReviewFailed(Some(e)))?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        if !allowed {
            return Err(AuthError::Denied {
                user: identity.username,
                app: app.to_string(),
                namespace: namespace.to_string(),
            });
        }
        Ok(identity)
    }

    async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        // The answer echoes the token. `Api::create` logs the body of an answer it cannot
        // parse, so the request is made and parsed here, where nothing logs it.
        let body = serde_json::to_vec(&review)
            .map_err(|e| AuthError::TokenReviewFailed(Some(kube::Error::SerdeError(e))))?;
        let request = kube::core::Request::new("/apis/authentication.k8s.io/v1/tokenreviews")
            .create(&PostParams::default(), body)
            .map_err(|e| AuthError::TokenReviewFailed(Some(kube::Error::BuildRequest(e))))?;
        let text = tokio::time::timeout(self.timeout, self.client.request_text(request))
            .await
            .map_err(|_| AuthError::TokenReviewFailed(None))?
            .map_err(|e| AuthError::TokenReviewFailed(Some(e)))?;
        let answer: TokenReview = serde_json::from_str(&text)
            .map_err(|e| AuthError::TokenReviewFailed(Some(kube::Error::SerdeError(e))))?;

        let unauthenticated = || AuthError::Unauthenticated {
            audience: self.audience.clone(),
        };
        let status = answer.status.ok_or_else(unauthenticated)?;
        // A token valid only for other audiences must not pass, whatever the server says
        // about authentication: the audiences it reports are the ones the token matched.
        let audience_ok = status
            .audiences
            .as_ref()
            .is_some_and(|a| a.contains(&self.audience));
        if status.authenticated != Some(true) || !audience_ok {
            return Err(unauthenticated());
        }
        let user = status.user.ok_or_else(unauthenticated)?;
        let username = user
            .username
            .filter(|u| !u.is_empty())
            .ok_or_else(unauthenticated)?;
        Ok(Identity {
            username,
            uid: user.uid,
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        })
    }

    fn cached(&self, key: &CacheKey) -> Option<Identity> {
        self.cache.lock().ok()?.get(key, Instant::now())
    }

    fn remember(&self, key: CacheKey, identity: Identity) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, identity, Instant::now());
        }
    }
}

/// Token, namespace and app.
type CacheKey = (String, String, String);

/// Positive decisions, each valid for a while, at most `capacity` of them: when full, expired
/// entries go first, then the one closest to expiring.
#[derive(Debug)]
struct DecisionCache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
}

impl DecisionCache {
    fn new(ttl: Duration, capacity: usize) -> Self {
        DecisionCache {
            ttl,
            capacity,
            entries: HashMap::new(),
        }
    }

    fn get(&self, key: &CacheKey, now: Instant) -> Option<Identity> {
        self.entries
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| e.identity.clone())
    }

    fn insert(&mut self, key: CacheKey, identity: Identity, now: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.expires > now);
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            key,
            Entry {
                identity,
                expires: now + self.ttl,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> CacheKey {
        (token.into(), "shop".into(), "web".into())
    }

    fn identity(name: &str) -> Identity {
        Identity {
            username: name.into(),
            uid: None,
            groups: Vec::new(),
            extra: Default::default(),
        }
    }

    #[test]
    fn a_decision_expires_after_its_ttl() {
        let mut cache = DecisionCache::new(Duration::from_secs(30), 10);
        let now = Instant::now();
        cache.insert(key("t"), identity("ci"), now);
        assert_eq!(
            cache.get(&key("t"), now + Duration::from_secs(29)),
            Some(identity("ci"))
        );
        assert_eq!(cache.get(&key("t"), now + Duration::from_secs(30)), None);
    }

    #[test]
    fn a_decision_is_per_token_namespace_and_app() {
        let mut cache = DecisionCache::new(Duration::from_secs(30), 10);
        let now = Instant::now();
        cache.insert(key("t"), identity("ci"), now);
        assert_eq!(cache.get(&key("u"), now), None);
        assert_eq!(
            cache.get(&("t".into(), "shop".into(), "db".into()), now),
            None
        );
        assert_eq!(
            cache.get(&("t".into(), "pay".into(), "web".into()), now),
            None
        );
    }

    #[test]
    fn a_full_cache_drops_expired_then_the_oldest_entry() {
        let mut cache = DecisionCache::new(Duration::from_secs(30), 2);
        let now = Instant::now();
        cache.insert(key("a"), identity("a"), now);
        cache.insert(key("b"), identity("b"), now + Duration::from_secs(1));
        cache.insert(key("c"), identity("c"), now + Duration::from_secs(2));
        assert_eq!(cache.len(), 2);
        let later = now + Duration::from_secs(3);
        assert_eq!(cache.get(&key("a"), later), None);
        assert!(cache.get(&key("b"), later).is_some());
        assert!(cache.get(&key("c"), later).is_some());

        cache.insert(key("d"), identity("d"), now + Duration::from_secs(40));
        assert_eq!(cache.len(), 1, "expired entries go first");
    }

    #[test]
    fn a_zero_ttl_or_size_remembers_nothing() {
        let now = Instant::now();
        let mut off = DecisionCache::new(Duration::ZERO, 10);
        off.insert(key("t"), identity("ci"), now);
        assert_eq!(off.len(), 0);
        let mut empty = DecisionCache::new(Duration::from_secs(30), 0);
        empty.insert(key("t"), identity("ci"), now);
        assert_eq!(empty.len(), 0);
    }
}
