//! Reading `agent.yaml`: any YAML scalar, list or map, each with the line it is on, checked
//! against the table of known keys ([`super::keys`]) so that an unknown key is refused with
//! its name and line before anything else is looked at.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub line: u64,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// A scalar as written (`22`, `true`, `open`); `null` and `~` are [`Value::Null`].
    Scalar(String),
    Null,
    List(Vec<Node>),
    /// Keys in file order, each with its line.
    Map(Vec<(Node, Node)>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Scalar(_) => "a single value",
            Self::Null => "nothing",
            Self::List(_) => "a list",
            Self::Map(_) => "a map",
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            line: spanned.referenced.line(),
            value: spanned.value,
        })
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            out.push(node);
        }
        Ok(Value::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            out.push((k, v));
        }
        Ok(Value::Map(out))
    }
}

/// Parses the text of a YAML document; `Err` is `(line, message)`.
pub(super) fn parse(text: &str) -> Result<Node, (u64, String)> {
    if text.trim().is_empty() {
        return Ok(Node {
            line: 1,
            value: Value::Map(Vec::new()),
        });
    }
    serde_saphyr::from_str::<Node>(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(1);
        let message = e.without_snippet().to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        (line, message)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_their_lines() {
        let node = parse("a: 1\nb:\n  c: [x, 2]\n  d: ~\n").unwrap();
        let Value::Map(entries) = node.value else {
            panic!("a map")
        };
        assert_eq!(entries[0].0.line, 1);
        assert_eq!(entries[0].1.value, Value::Scalar("1".into()));
        let Value::Map(inner) = &entries[1].1.value else {
            panic!("a map")
        };
        assert_eq!(inner[0].0.line, 3);
        let Value::List(items) = &inner[0].1.value else {
            panic!("a list")
        };
        assert_eq!(items[1].value, Value::Scalar("2".into()));
        assert_eq!(inner[1].0.line, 4);
        assert_eq!(inner[1].1.value, Value::Null);
    }
}
