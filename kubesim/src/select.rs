//! Label and field selectors as the apiserver parses them: `=`, `==`, `!=`, `in`, `notin`,
//! exists and not exists for labels; `=`, `==`, `!=` on the pod fields the apiserver indexes.

use std::collections::BTreeMap;

/// Why a selector cannot be parsed; the message is what the apiserver puts in its 400.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector requirement is malformed.
    #[error("unable to parse requirement: {0}")]
    Label(String),
    /// A field selector term is malformed.
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    Field(String, String),
    /// A field that pods cannot be selected by.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the `labelSelector` query value.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(term)?);
        }
        Ok(LabelSelector { requirements })
    }

    /// A selector requiring each `key=value` of `labels`.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement::Equals(k.clone(), v.clone()))
            .collect();
        LabelSelector { requirements }
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => !labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(term: &str) -> Result<Requirement, SelectorError> {
    if let Some(key) = term.strip_prefix('!') {
        let key = valid_key(key.trim())?;
        return Ok(Requirement::NotExists(key));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            valid_key(key.trim())?,
            valid_value(value.trim())?,
        ));
    }
    if let Some((key, value)) = term.split_once("==") {
        return Ok(Requirement::Equals(
            valid_key(key.trim())?,
            valid_value(value.trim())?,
        ));
    }
    if let Some((key, value)) = term.split_once('=') {
        return Ok(Requirement::Equals(
            valid_key(key.trim())?,
            valid_value(value.trim())?,
        ));
    }
    let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = valid_key(words[0])?;
        let rest = words[1].trim_start();
        let (op, list) = if let Some(list) = rest.strip_prefix("notin") {
            ("notin", list)
        } else if let Some(list) = rest.strip_prefix("in") {
            ("in", list)
        } else {
            return Err(SelectorError::Label(format!(
                "found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
            )));
        };
        let list = list.trim();
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| SelectorError::Label(format!("found '{list}', expected: '('")))?;
        let values = inner
            .split(',')
            .map(|v| valid_value(v.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if values.iter().all(|v| v.is_empty()) {
            return Err(SelectorError::Label(format!(
                "for '{op}', 'notin' operators, values set can't be empty"
            )));
        }
        return Ok(if op == "in" {
            Requirement::In(key, values)
        } else {
            Requirement::NotIn(key, values)
        });
    }
    Ok(Requirement::Exists(valid_key(term)?))
}

fn valid_key(key: &str) -> Result<String, SelectorError> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(key.to_string())
    } else {
        Err(SelectorError::Label(format!(
            "key: Invalid value: \"{key}\": name part must consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character"
        )))
    }
}

fn valid_value(value: &str) -> Result<String, SelectorError> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(value.to_string())
    } else {
        Err(SelectorError::Label(format!(
            "values[0][{value}]: Invalid value: \"{value}\": a valid label must be an empty \
             string or consist of alphanumeric characters, '-', '_' or '.', and must start and \
             end with an alphanumeric character"
        )))
    }
}

/// The pod fields a field selector may name.
pub const POD_FIELDS: [&str; 4] = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
];

/// A parsed field selector over [`POD_FIELDS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query value.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in text.split(',') {
            if term.is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError::Field(text.to_string(), term.to_string()));
            };
            if !POD_FIELDS.contains(&field) {
                return Err(SelectorError::UnsupportedField(field.to_string()));
            }
            terms.push((field.to_string(), equal, value.to_string()));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether a pod with these field values matches; `fields` maps a field name to its value.
    pub fn matches(&self, fields: &dyn Fn(&str) -> String) -> bool {
        self.terms
            .iter()
            .all(|(f, equal, v)| (fields(f) == *v) == *equal)
    }

    /// The name an exact `metadata.name=` term pins the selection to, if any.
    pub fn pinned_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|(f, equal, _)| f == "metadata.name" && *equal)
            .map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_supports_every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,api)", true),
            ("app notin (web, api)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing", false),
            ("app=web,tier in (front)", true),
            ("app=web,tier=back", false),
            ("missing!=x", true),
            ("missing notin (x)", true),
            ("", true),
        ] {
            let parsed = LabelSelector::parse(sel).expect(sel);
            assert_eq!(parsed.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn malformed_label_selectors_are_errors() {
        for sel in ["app in web", "a b c", "=web", "app=we b", "app in ()"] {
            assert!(LabelSelector::parse(sel).is_err(), "{sel}");
        }
    }

    #[test]
    fn field_selector_matches_known_fields_and_rejects_others() {
        let sel = FieldSelector::parse("metadata.name=web-0,status.phase!=Failed").expect("ok");
        let f = |name: &str| match name {
            "metadata.name" => "web-0".to_string(),
            "status.phase" => "Running".to_string(),
            _ => String::new(),
        };
        assert!(sel.matches(&f));
        assert_eq!(sel.pinned_name(), Some("web-0"));
        assert_eq!(
            FieldSelector::parse("spec.foo=x").unwrap_err().to_string(),
            "field label not supported: spec.foo"
        );
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
