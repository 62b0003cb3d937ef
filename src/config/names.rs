//! The names of a closed set (`lb_policy`, `protocol`, …), taken from its serde enum: listed once.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use std::fmt;

/// The names serde accepts for the unit-variant enum `T`, in declaration order.
pub(crate) fn names<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(Probe) {
        Err(Found(names)) => names,
        Ok(_) => &[],
    }
}

/// The conf's name of variant number `index` of `T` (`variant as usize`).
pub(crate) fn name_of<T: DeserializeOwned>(index: usize) -> &'static str {
    names::<T>().get(index).copied().unwrap_or("?")
}

/// A deserializer that reads nothing: it only catches the variant names serde derive hands to
/// `deserialize_enum`.
struct Probe;

#[derive(Debug)]
struct Found(&'static [&'static str]);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "names: {:?}", self.0)
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Found(&[])
    }
}

impl<'de> Deserializer<'de> for Probe {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
        Err(Found(&[]))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Found> {
        Err(Found(variants))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}
