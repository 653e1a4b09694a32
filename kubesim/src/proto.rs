//! A decoder for the few protobuf messages kubectl posts: the Kubernetes envelope
//! (`k8s\0` + `runtime.Unknown`) around a SelfSubjectAccessReview or SelfSubjectRulesReview.
//! The result is the JSON form of the same object, so one code path answers both encodings.

use serde_json::{Map, Value, json};

/// Why a protobuf body cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtoError {
    /// The body does not start with the `k8s\0` magic.
    #[error(
        "the body is not a Kubernetes protobuf envelope; send JSON or the k8s protobuf encoding"
    )]
    NoEnvelope,
    /// The bytes end inside a field or use an unknown wire type.
    #[error("the protobuf body is truncated or malformed")]
    Malformed,
    /// A kind this server does not decode from protobuf.
    #[error("protobuf bodies of kind {0:?} are not supported; send JSON")]
    UnsupportedKind(String),
}

/// One length-delimited field: its number and bytes. Other wire types are skipped.
enum Field<'a> {
    Bytes(u32, &'a [u8]),
}

fn varint(data: &[u8], pos: &mut usize) -> Result<u64, ProtoError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos).ok_or(ProtoError::Malformed)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProtoError::Malformed)
}

fn fields(data: &[u8]) -> Result<Vec<Field<'_>>, ProtoError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < data.len() {
        let key = varint(data, &mut pos)?;
        let number = (key >> 3) as u32;
        match key & 7 {
            0 => {
                varint(data, &mut pos)?;
            }
            1 => {
                pos = pos
                    .checked_add(8)
                    .filter(|p| *p <= data.len())
                    .ok_or(ProtoError::Malformed)?
            }
            2 => {
                let len = varint(data, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= data.len())
                    .ok_or(ProtoError::Malformed)?;
                out.push(Field::Bytes(number, &data[pos..end]));
                pos = end;
            }
            5 => {
                pos = pos
                    .checked_add(4)
                    .filter(|p| *p <= data.len())
                    .ok_or(ProtoError::Malformed)?
            }
            _ => return Err(ProtoError::Malformed),
        }
    }
    Ok(out)
}

fn bytes_of(data: &[u8], number: u32) -> Result<Option<&[u8]>, ProtoError> {
    Ok(fields(data)?
        .into_iter()
        .find_map(|Field::Bytes(n, b)| (n == number).then_some(b)))
}

fn string_of(data: &[u8], number: u32) -> Result<String, ProtoError> {
    Ok(bytes_of(data, number)?
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default())
}

fn strings(data: &[u8], names: &[(u32, &str)]) -> Result<Value, ProtoError> {
    let mut map = Map::new();
    for (number, name) in names {
        let value = string_of(data, *number)?;
        if !value.is_empty() {
            map.insert(name.to_string(), json!(value));
        }
    }
    Ok(Value::Object(map))
}

/// Decodes an enveloped SelfSubjectAccessReview or SelfSubjectRulesReview into its JSON form.
pub fn decode_review(body: &[u8]) -> Result<Value, ProtoError> {
    let unknown = body.strip_prefix(b"k8s\0").ok_or(ProtoError::NoEnvelope)?;
    let type_meta = bytes_of(unknown, 1)?.unwrap_or_default();
    let api_version = string_of(type_meta, 1)?;
    let kind = string_of(type_meta, 2)?;
    let raw = bytes_of(unknown, 2)?.unwrap_or_default();
    let spec = bytes_of(raw, 2)?.unwrap_or_default();
    let spec = match kind.as_str() {
        "SelfSubjectAccessReview" => {
            let mut map = Map::new();
            if let Some(attrs) = bytes_of(spec, 1)? {
                let names = [
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ];
                map.insert("resourceAttributes".to_string(), strings(attrs, &names)?);
            }
            if let Some(attrs) = bytes_of(spec, 2)? {
                map.insert(
                    "nonResourceAttributes".to_string(),
                    strings(attrs, &[(1, "path"), (2, "verb")])?,
                );
            }
            Value::Object(map)
        }
        "SelfSubjectRulesReview" => strings(spec, &[(1, "namespace")])?,
        other => return Err(ProtoError::UnsupportedKind(other.to_string())),
    };
    Ok(json!({"kind": kind, "apiVersion": api_version, "metadata": {}, "spec": spec}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_self_subject_access_review_envelope() {
        let mut attrs = field(1, b"shop");
        attrs.extend(field(2, b"get"));
        attrs.extend(field(5, b"pods"));
        attrs.extend(field(6, b"log"));
        let spec = field(1, &attrs);
        let mut raw = field(1, b"");
        raw.extend(field(2, &spec));
        let mut type_meta = field(1, b"authorization.k8s.io/v1");
        type_meta.extend(field(2, b"SelfSubjectAccessReview"));
        let mut body = b"k8s\0".to_vec();
        body.extend(field(1, &type_meta));
        body.extend(field(2, &raw));
        body.extend(field(4, b"application/vnd.kubernetes.protobuf"));

        let v = decode_review(&body).expect("decodes");
        assert_eq!(v["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "shop", "verb": "get", "resource": "pods", "subresource": "log"})
        );
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        assert_eq!(
            decode_review(b"k8s\0\x0a\x50abc"),
            Err(ProtoError::Malformed)
        );
        assert_eq!(decode_review(b"{}"), Err(ProtoError::NoEnvelope));
    }
}
