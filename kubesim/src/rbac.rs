//! Who a bearer token is and what RBAC lets them do: the rules of the scenario's users and
//! service accounts, the Forbidden message the apiserver writes, and the rule lists that
//! SelfSubjectRulesReview reports.

use crate::scenario::Rule;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// User name (`alice`, `system:serviceaccount:ns:name`).
    pub name: String,
    /// Groups, including `system:authenticated`.
    pub groups: Vec<String>,
    /// RBAC rules with where they are bound.
    pub rules: Vec<Rule>,
    /// Audiences the token is valid for.
    pub audiences: Vec<String>,
    /// UID reported by TokenReview.
    pub uid: String,
}

/// The audience of tokens that name none, like the apiserver's `--api-audiences` default.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// What a request asks to do, as the RBAC authorizer sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    /// Verb (`get`, `list`, `watch`, `create`, ...).
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Resource (`pods`).
    pub resource: String,
    /// Subresource (`log`, `proxy`) or empty.
    pub subresource: String,
    /// Namespace, empty for cluster scope.
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
}

impl Attributes {
    /// Attributes for a core-group request.
    pub fn core(verb: &str, resource: &str, namespace: &str, name: &str) -> Self {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            verb: verb.to_string(),
            group: String::new(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn full_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

fn rule_matches(rule: &Rule, a: &Attributes) -> bool {
    let verb = rule.verbs.iter().any(|v| v == "*" || *v == a.verb);
    let group = rule.api_groups.iter().any(|g| g == "*" || *g == a.group);
    let full = a.full_resource();
    let resource = rule.resources.iter().any(|r| {
        r == "*"
            || *r == full
            || (!a.subresource.is_empty()
                && (*r == format!("{}/*", a.resource) || *r == format!("*/{}", a.subresource)))
    });
    let name = rule.resource_names.is_empty()
        || (!a.name.is_empty() && rule.resource_names.contains(&a.name));
    let namespace = rule.namespaces.is_empty()
        || (!a.namespace.is_empty() && rule.namespaces.contains(&a.namespace));
    verb && group && resource && name && namespace
}

impl Identity {
    /// Whether RBAC allows the request. Every authenticated user may create self reviews,
    /// as the `system:basic-user` binding grants.
    pub fn allows(&self, a: &Attributes) -> bool {
        if a.verb == "create"
            && a.group == "authorization.k8s.io"
            && (a.resource == "selfsubjectaccessreviews" || a.resource == "selfsubjectrulesreviews")
        {
            return true;
        }
        if a.verb == "create"
            && a.group == "authentication.k8s.io"
            && a.resource == "selfsubjectreviews"
        {
            return true;
        }
        self.rules.iter().any(|r| rule_matches(r, a))
    }

    /// The rules that apply in `namespace`, for SelfSubjectRulesReview.
    pub fn rules_in(&self, namespace: &str) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.namespaces.is_empty() || r.namespaces.iter().any(|n| n == namespace))
            .collect()
    }
}

/// The message of a 403, exactly as the apiserver words it.
pub fn forbidden_message(user: &str, a: &Attributes) -> String {
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let subject = if a.name.is_empty() {
        qualified
    } else {
        format!("{qualified} \"{}\"", a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{subject} is forbidden: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" \
         {scope}",
        a.verb,
        a.full_resource(),
        a.group
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob(rules: Vec<Rule>) -> Identity {
        Identity {
            name: "bob".to_string(),
            groups: vec!["system:authenticated".to_string()],
            rules,
            audiences: vec![API_AUDIENCE.to_string()],
            uid: "u1".to_string(),
        }
    }

    #[test]
    fn forbidden_message_matches_the_apiserver() {
        let a = Attributes::core("get", "pods", "shop", "x");
        assert_eq!(
            forbidden_message("bob", &a),
            "pods \"x\" is forbidden: User \"bob\" cannot get resource \"pods\" in API group \"\" \
             in the namespace \"shop\""
        );
        let a = Attributes::core("list", "pods", "", "");
        assert_eq!(
            forbidden_message("bob", &a),
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" at \
             the cluster scope"
        );
        let a = Attributes::core("get", "pods/log", "z", "x");
        assert!(forbidden_message("y", &a).contains("cannot get resource \"pods/log\""));
    }

    #[test]
    fn subresources_need_their_own_rule() {
        let id = bob(vec![Rule::new(&["get"], &["pods"])]);
        assert!(id.allows(&Attributes::core("get", "pods", "shop", "x")));
        assert!(!id.allows(&Attributes::core("get", "pods/log", "shop", "x")));
        let id = bob(vec![Rule::new(&["get"], &["pods/*"])]);
        assert!(id.allows(&Attributes::core("get", "pods/log", "shop", "x")));
        assert!(!id.allows(&Attributes::core("get", "pods", "shop", "x")));
    }

    #[test]
    fn namespaced_rules_do_not_apply_elsewhere_or_cluster_wide() {
        let id = bob(vec![
            Rule::new(&["list"], &["pods"]).in_namespaces(&["shop"]),
        ]);
        assert!(id.allows(&Attributes::core("list", "pods", "shop", "")));
        assert!(!id.allows(&Attributes::core("list", "pods", "other", "")));
        assert!(!id.allows(&Attributes::core("list", "pods", "", "")));
    }

    #[test]
    fn resource_names_limit_named_requests_only() {
        let id = bob(vec![
            Rule::new(&["get"], &["services/proxy"]).names(&["relay"]),
        ]);
        assert!(id.allows(&Attributes::core("get", "services/proxy", "ns", "relay")));
        assert!(!id.allows(&Attributes::core("get", "services/proxy", "ns", "other")));
        assert!(!id.allows(&Attributes::core("get", "services/proxy", "ns", "")));
    }

    #[test]
    fn everyone_may_review_themselves() {
        let id = bob(Vec::new());
        let a = Attributes {
            verb: "create".to_string(),
            group: "authorization.k8s.io".to_string(),
            resource: "selfsubjectaccessreviews".to_string(),
            ..Attributes::default()
        };
        assert!(id.allows(&a));
    }
}
