//! Helpers at the protobuf edge: unpacking `Any`, and finding fields the conversion did not
//! consume, so that a resource setting something the proxy does not implement is rejected
//! instead of half-applied.

use std::fmt;

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

/// One resource (or one part of it) the proxy cannot honour, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Rejection {
    /// Envoy's message name: `Cluster`, `Listener`, `RouteConfiguration`, ...
    pub kind: &'static str,
    pub name: String,
    /// Names the field, e.g. `lb_policy MAGLEV is not supported`.
    pub problem: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == "config" {
            // `name` already says where, e.g. `cluster "x" endpoint 0`.
            write!(f, "{}: {}", self.name, self.problem)
        } else {
            write!(f, "{} {:?}: {}", self.kind, self.name, self.problem)
        }
    }
}

/// Every rejection of one push; never empty. Its text is what a NACK carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Rejections(pub Vec<Rejection>);

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Collects the rejections of one resource.
#[derive(Debug)]
pub struct Problems<'a> {
    kind: &'static str,
    name: String,
    out: &'a mut Vec<Rejection>,
}

impl<'a> Problems<'a> {
    pub fn new(kind: &'static str, name: impl Into<String>, out: &'a mut Vec<Rejection>) -> Self {
        Self {
            kind,
            name: name.into(),
            out,
        }
    }

    pub fn add(&mut self, problem: impl Into<String>) {
        self.out.push(Rejection {
            kind: self.kind,
            name: self.name.clone(),
            problem: problem.into(),
        });
    }

    /// Problems of another resource, collected in the same list.
    pub fn other(&mut self, kind: &'static str, name: impl Into<String>) -> Problems<'_> {
        Problems::new(kind, name, self.out)
    }

    pub fn count(&self) -> usize {
        self.out.len()
    }

    /// Rejects whatever `rest` still sets: `at` names the message (e.g. `common_tls_context`).
    pub fn leftover<M: Message + Name>(&mut self, at: &str, rest: &M) {
        let fields = set_fields(rest);
        if !fields.is_empty() {
            let list = fields
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let at = if at.is_empty() {
                String::new()
            } else {
                format!("{at}: ")
            };
            self.add(format!(
                "{at}field(s) {list} of {} are set but not supported",
                M::full_name()
            ));
        }
    }
}

/// Decodes `any` as `M`, checking its type URL.
pub fn unpack<M: Message + Name + Default>(any: &Any) -> Result<M, String> {
    if any.type_url != M::type_url() {
        return Err(format!(
            "holds {:?} where {} was expected",
            any.type_url,
            M::type_url()
        ));
    }
    M::decode(any.value.as_slice()).map_err(|e| format!("does not decode as {}: {e}", M::NAME))
}

/// The numbers of the fields `m` sets (proto3: non-default), read from its encoding.
pub fn set_fields<M: Message>(m: &M) -> Vec<u32> {
    let bytes = m.encode_to_vec();
    let mut buf = bytes.as_slice();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let Ok(key) = prost::encoding::decode_varint(&mut buf) else {
            break;
        };
        let field = (key >> 3) as u32;
        let skip = match key & 7 {
            0 => prost::encoding::decode_varint(&mut buf).map(|_| 0).ok(),
            1 => Some(8),
            2 => prost::encoding::decode_varint(&mut buf)
                .ok()
                .and_then(|l| usize::try_from(l).ok()),
            5 => Some(4),
            _ => None,
        };
        let Some(skip) = skip.filter(|s| *s <= buf.len()) else {
            break;
        };
        buf = &buf[skip..];
        if out.last() != Some(&field) {
            out.push(field);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::google::protobuf::{Duration, UInt32Value};

    use super::*;

    #[test]
    fn set_fields_lists_what_is_not_default() {
        let c = Cluster {
            name: "x".into(),
            connect_timeout: Some(Duration {
                seconds: 1,
                nanos: 0,
            }),
            per_connection_buffer_limit_bytes: Some(UInt32Value { value: 5 }),
            ..Default::default()
        };
        assert_eq!(set_fields(&c), vec![1, 4, 5]);
        assert!(set_fields(&Cluster::default()).is_empty());
    }

    #[test]
    fn unpack_checks_the_type() {
        let any = envoy_types::util::pack_any(Cluster::default());
        assert!(unpack::<Cluster>(&any).is_ok());
        let err = unpack::<envoy_types::pb::envoy::config::listener::v3::Listener>(&any);
        assert!(err.unwrap_err().contains("Cluster"));
    }
}
