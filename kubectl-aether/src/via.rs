//! Choosing the path: read pods directly, or go through the relay: [`choose`].
//!
//! With `--via auto` the apiserver is asked (SelfSubjectAccessReview) whether the user may
//! list and watch pods and get pods/log where the query looks; if so the engine runs here.
//! Otherwise, if the user may reach the relay service through the apiserver's proxy, the relay
//! path is taken. Neither: one error naming what is missing and both ways to fix it. This
//! module asks and decides; it reads no logs.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use podlogs::Namespaces;

/// Which path the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// Decide from the user's permissions.
    #[default]
    Auto,
    /// Read pods with the user's credentials.
    Direct,
    /// Go through the relay.
    Relay,
}

/// Where the relay service is, for the service-proxy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayService {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The name of its HTTP port.
    pub port: String,
}

impl RelayService {
    /// The `{id}` of the proxy URL, which is also the name RBAC checks.
    pub fn proxy_id(&self) -> String {
        format!("{}:{}", self.name, self.port)
    }
}

/// The chosen path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// The engine runs here.
    Direct,
    /// Through the relay service, via the apiserver's proxy.
    RelayProxy,
}

/// A permission that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Permission {
    verb: &'static str,
    resource: &'static str,
    subresource: Option<&'static str>,
    name: Option<String>,
    namespace: Option<String>,
}

impl Permission {
    fn describe(&self) -> String {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        };
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let place = match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "cluster-wide".to_string(),
        };
        format!("{} {resource}{name} {place}", self.verb)
    }
}

/// Why no path could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ChooseError {
    /// The apiserver could not answer the access reviews.
    #[error("cannot ask the apiserver what you may do; pass --via direct or --via relay")]
    Review(#[source] kube::Error),
    /// Neither path is allowed.
    #[error(
        "you may not read these logs: missing {missing_direct} for the direct path, and \
         {missing_relay} for the relay; ask an admin for the first (a Role with list and \
         watch on pods and get on pods/log), or for the second (get on services/proxy for \
         the relay, see the relay's example RBAC)"
    )]
    Denied {
        /// What the direct path lacks.
        missing_direct: String,
        /// What the relay path lacks.
        missing_relay: String,
    },
}

/// The namespaces a direct read would touch: `None` stands for cluster-wide.
fn scopes(namespaces: &Namespaces) -> Vec<Option<String>> {
    match namespaces {
        Namespaces::One(ns) => vec![Some(ns.clone())],
        Namespaces::Some(list) => list.iter().cloned().map(Some).collect(),
        Namespaces::All => vec![None],
    }
}

/// Decides between the direct path and the relay, asking the apiserver.
///
/// Direct when every namespace of the query may be read. Otherwise the relay, when the query
/// can go through it (`relay_possible`: an app by name in one namespace) and the user may
/// reach it. Otherwise direct again when at least one namespace may be read, so the engine
/// reads those and reports the others; with none, [`ChooseError::Denied`].
pub async fn choose(
    client: &Client,
    namespaces: &Namespaces,
    follow: bool,
    relay: &RelayService,
    relay_possible: bool,
) -> Result<(Path, String), ChooseError> {
    let scopes = scopes(namespaces);
    let mut needed = Vec::new();
    for scope in &scopes {
        needed.push(permission("list", "pods", None, None, scope.clone()));
        if follow {
            needed.push(permission("watch", "pods", None, None, scope.clone()));
        }
        needed.push(permission("get", "pods", Some("log"), None, scope.clone()));
    }
    let missing_direct = missing(client, &needed).await?;
    if missing_direct.is_empty() {
        return Ok((
            Path::Direct,
            "you may list and watch pods and read pods/log there".into(),
        ));
    }
    let readable_somewhere = scopes
        .iter()
        .any(|scope| !missing_direct.iter().any(|p| &p.namespace == scope));
    let missing_text = join(&missing_direct);

    let missing_relay = if relay_possible {
        let proxy = permission(
            "get",
            "services",
            Some("proxy"),
            Some(relay.proxy_id()),
            Some(relay.namespace.clone()),
        );
        let lacking = missing(client, std::slice::from_ref(&proxy)).await?;
        if lacking.is_empty() {
            return Ok((
                Path::RelayProxy,
                format!("you may not {missing_text}, but you may reach the relay"),
            ));
        }
        join(&lacking)
    } else {
        "an app name in a single namespace (the relay serves nothing else)".into()
    };

    if readable_somewhere || !relay_possible {
        return Ok((
            Path::Direct,
            format!("you may not {missing_text}; what is readable is read, the rest reported"),
        ));
    }
    Err(ChooseError::Denied {
        missing_direct: missing_text,
        missing_relay,
    })
}

fn permission(
    verb: &'static str,
    resource: &'static str,
    subresource: Option<&'static str>,
    name: Option<String>,
    namespace: Option<String>,
) -> Permission {
    Permission {
        verb,
        resource,
        subresource,
        name,
        namespace,
    }
}

fn join(permissions: &[Permission]) -> String {
    permissions
        .iter()
        .map(Permission::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The permissions of `needed` that the user lacks.
async fn missing(client: &Client, needed: &[Permission]) -> Result<Vec<Permission>, ChooseError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let reviews = needed.iter().map(|p| {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: p.namespace.clone(),
                    verb: Some(p.verb.to_string()),
                    resource: Some(p.resource.to_string()),
                    subresource: p.subresource.map(str::to_string),
                    name: p.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api = api.clone();
        async move { api.create(&PostParams::default(), &review).await }
    });
    let answers = futures::future::join_all(reviews).await;

    let mut lacking = Vec::new();
    for (permission, answer) in needed.iter().zip(answers) {
        let review = answer.map_err(ChooseError::Review)?;
        let allowed = review.status.as_ref().is_some_and(|s| s.allowed);
        tracing::debug!(permission = %permission.describe(), allowed, "access review");
        if !allowed {
            lacking.push(permission.clone());
        }
    }
    Ok(lacking)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_like_rbac() {
        let p = permission("get", "pods", Some("log"), None, Some("shop".into()));
        assert_eq!(p.describe(), "get pods/log in namespace shop");
        let p = permission("list", "pods", None, None, None);
        assert_eq!(p.describe(), "list pods cluster-wide");
        let p = permission(
            "get",
            "services",
            Some("proxy"),
            Some("aether-relay:http".into()),
            Some("aether-system".into()),
        );
        assert_eq!(
            p.describe(),
            "get services/proxy aether-relay:http in namespace aether-system"
        );
    }

    #[test]
    fn every_namespace_is_a_scope_and_all_is_cluster_wide() {
        assert_eq!(
            scopes(&Namespaces::Some(vec!["a".into(), "b".into()])),
            vec![Some("a".to_string()), Some("b".to_string())]
        );
        assert_eq!(scopes(&Namespaces::All), vec![None]);
    }

    #[test]
    fn the_proxy_id_names_the_port() {
        let relay = RelayService {
            namespace: "aether-system".into(),
            name: "aether-relay".into(),
            port: "http".into(),
        };
        assert_eq!(relay.proxy_id(), "aether-relay:http");
    }
}
