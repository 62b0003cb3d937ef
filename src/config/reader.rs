//! Reads YAML into the conf's serde types, every error with its path, all of them at once.

use super::errors::{Errors, Kind, ReadError};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde_yaml::Value;
use std::collections::HashSet;

/// Reads `value`, found at `path`, as a `T`, recording every problem in `errors`. Returns what
/// could be read without the bad values (check `errors` before trusting it), or None when the
/// value as a whole is unusable (not a mapping where one is needed, …).
///
/// serde stops at the first error. This records it with its path, leaves the bad value out
/// (as if the conf had not written it) and reads again, until the rest reads cleanly: a
/// misspelt key does not hide a bad port beside it. `errors::ReadError` words unknown keys and
/// names with the closest known one. Values are read as `serde_yaml::Value` reads them, so
/// what this accepts is what serde_yaml accepts.
pub(crate) fn read<T: DeserializeOwned>(
    value: &Value,
    path: &str,
    errors: &mut Errors,
) -> Option<T> {
    let mut left_out = HashSet::new();
    loop {
        let node = Node {
            value: value.clone(),
            path: path.to_owned(),
            left_out: &left_out,
        };
        let error = match T::deserialize(node) {
            Ok(read) => return Some(read),
            Err(e) => e,
        };
        let at = error.path.unwrap_or_else(|| path.to_owned());
        // A required key left out for its own error is not missing as well.
        let echo = matches!(error.kind, Kind::Missing(key) if left_out.contains(&child(&at, key)));
        if !echo {
            errors.push(if at.is_empty() { "conf" } else { &at }, &error.kind);
        }
        if at == path || !left_out.insert(at) {
            return None;
        }
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A mapping key as a path segment: as written when it reads as one, quoted when it would not
/// (empty, spaced, with `:` or control characters), so an error line stays `path: reason`.
pub(crate) fn key_name(key: &Value) -> String {
    match key {
        Value::String(s)
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) =>
        {
            s.clone()
        }
        Value::String(s) => format!("{s:?}"),
        other => format!(
            "{:?}",
            serde_yaml::to_string(other).unwrap_or_default().trim()
        ),
    }
}

/// One value of the document and its path.
struct Node<'a> {
    value: Value,
    path: String,
    left_out: &'a HashSet<String>,
}

impl Node<'_> {
    /// The value under its YAML tags, as serde_yaml reads collections.
    fn untagged(mut self) -> Self {
        while let Value::Tagged(tagged) = self.value {
            self.value = tagged.value;
        }
        self
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (None, Some(i), _) => Unexpected::Signed(i),
            (None, None, f) => Unexpected::Float(f.unwrap_or(f64::NAN)),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Sequence(_) => Unexpected::Seq,
        Value::Mapping(_) => Unexpected::Map,
        Value::Tagged(_) => Unexpected::Enum,
    }
}

/// Scalars: tagged ones as serde_yaml reads them, the others through `deserialize_any`.
macro_rules! scalars {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
            match self.value {
                Value::Tagged(_) => {
                    let path = self.path;
                    self.value.$method(visitor).map_err(|e| ReadError::yaml(e).at(&path))
                }
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Node<'_> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let Node {
            value,
            path,
            left_out,
        } = self;
        let read = match value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, f) => visitor.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_string(s),
            Value::Sequence(items) => visitor.visit_seq(Items::new(items, &path, left_out)),
            Value::Mapping(entries) => visitor.visit_map(Entries::new(entries, &path, left_out)),
            tagged @ Value::Tagged(_) => tagged.deserialize_any(visitor).map_err(ReadError::yaml),
        };
        read.map_err(|e| e.at(&path))
    }

    scalars! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            ref other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
        .map_err(|e: ReadError| e.at(&self.path))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let Node {
            value,
            path,
            left_out,
        } = self.untagged();
        match value {
            Value::Sequence(items) => visitor.visit_seq(Items::new(items, &path, left_out)),
            Value::Null => visitor.visit_seq(Items::new(Vec::new(), &path, left_out)),
            ref other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
        .map_err(|e| e.at(&path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let Node {
            value,
            path,
            left_out,
        } = self.untagged();
        let empty = serde_yaml::Mapping::new();
        match value {
            Value::Mapping(entries) => visitor.visit_map(Entries::new(entries, &path, left_out)),
            Value::Null => visitor.visit_map(Entries::new(empty, &path, left_out)),
            ref other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
        .map_err(|e| e.at(&path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        let path = self.path;
        match self.value {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            tagged @ Value::Tagged(_) => tagged
                .deserialize_enum(name, variants, visitor)
                .map_err(ReadError::yaml),
            ref other => Err(de::Error::invalid_type(
                unexpected(other),
                &format!("one of: {}", variants.join(", ")).as_str(),
            )),
        }
        .map_err(|e| e.at(&path))
    }

    /// Keys: strings only, as serde_yaml reads them (a number is not a field's index).
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let path = self.path;
        match self.value {
            Value::String(s) => visitor.visit_string(s),
            tagged @ Value::Tagged(_) => {
                tagged.deserialize_string(visitor).map_err(ReadError::yaml)
            }
            ref other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
        .map_err(|e| e.at(&path))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }
}

/// The items of a sequence, without those left out.
struct Items<'a> {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    path: String,
    left_out: &'a HashSet<String>,
}

impl<'a> Items<'a> {
    fn new(items: Vec<Value>, path: &str, left_out: &'a HashSet<String>) -> Self {
        Items {
            items: items.into_iter().enumerate(),
            path: path.to_owned(),
            left_out,
        }
    }
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ReadError> {
        for (i, value) in self.items.by_ref() {
            let path = format!("{}[{i}]", self.path);
            if self.left_out.contains(&path) {
                continue;
            }
            let node = Node {
                value,
                path: path.clone(),
                left_out: self.left_out,
            };
            // The item's own errors, and those its type raises once read (`try_from`), are its.
            return seed.deserialize(node).map(Some).map_err(|e| e.at(&path));
        }
        Ok(None)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a mapping, without those left out; a key's errors (unknown, …) are its own.
struct Entries<'a> {
    entries: serde_yaml::mapping::IntoIter,
    path: String,
    left_out: &'a HashSet<String>,
    pending: Option<Node<'a>>,
}

impl<'a> Entries<'a> {
    fn new(entries: serde_yaml::Mapping, path: &str, left_out: &'a HashSet<String>) -> Self {
        Entries {
            entries: entries.into_iter(),
            path: path.to_owned(),
            left_out,
            pending: None,
        }
    }
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        for (key, value) in self.entries.by_ref() {
            let path = child(&self.path, &key_name(&key));
            if self.left_out.contains(&path) {
                continue;
            }
            self.pending = Some(Node {
                value,
                path: path.clone(),
                left_out: self.left_out,
            });
            let key = Node {
                value: key,
                path: path.clone(),
                left_out: self.left_out,
            };
            return seed.deserialize(key).map(Some).map_err(|e| e.at(&path));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        match self.pending.take() {
            Some(node) => {
                let path = node.path.clone();
                seed.deserialize(node).map_err(|e| e.at(&path))
            }
            None => Err(de::Error::custom("a value without its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
