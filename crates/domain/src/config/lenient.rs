//! A serde `Deserializer` over a YAML value tree that types text by the field
//! it lands in.
//!
//! Environment variables and `!ENV` tags only ever produce text, yet
//! `SCRIBE_WEB_SERVER__PORT=8080` must fill a `u16` and a 64-digit all-numeric
//! `secret_key` must stay text. Guessing the type from the text (as figment's
//! `Env` provider does) gets the second case wrong, so the target field
//! decides instead: when serde asks for an integer, a boolean, a list or a
//! section and finds text, the text is parsed as that; when it asks for text,
//! text is what it gets. This mirrors pydantic's lax mode, which Project-W's
//! configs were written against (`port: "5000"` works there too).
//! Everything else (unknown keys, missing fields, enum variants) is left to
//! the derived `Deserialize` impls, so `deny_unknown_fields` still applies and
//! serde_path_to_error still sees every key.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Number, Value};

/// Deserialization error: just the message; the path is tracked by
/// serde_path_to_error around this deserializer.
#[derive(Debug)]
pub(crate) struct DeError(String);

impl DeError {
    pub(crate) fn into_message(self) -> String {
        self.0
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

/// A value to deserialize. `is_key` marks mapping keys: a key written as a
/// number (`0:`) may name something that is text (a provider called `2024`).
pub(crate) struct Lenient {
    value: Value,
    is_key: bool,
}

impl Lenient {
    pub(crate) fn new(value: Value) -> Self {
        Lenient {
            value,
            is_key: false,
        }
    }

    fn key(value: Value) -> Self {
        Lenient {
            value,
            is_key: true,
        }
    }
}

fn visit_number<'de, V: Visitor<'de>>(number: &Number, visitor: V) -> Result<V::Value, DeError> {
    if let Some(unsigned) = number.as_u64() {
        visitor.visit_u64(unsigned)
    } else if let Some(signed) = number.as_i64() {
        visitor.visit_i64(signed)
    } else if let Some(float) = number.as_f64() {
        visitor.visit_f64(float)
    } else {
        Err(de::Error::custom(format!("unsupported number {number}")))
    }
}

/// Text for a boolean field, with the spellings pydantic accepts.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Text for a list field: YAML flow syntax (`[a, b]`) or comma-separated
/// (`a, b`); empty text is an empty list.
fn parse_list(text: &str) -> Value {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        if let Ok(list @ Value::Sequence(_)) = serde_yaml::from_str::<Value>(trimmed) {
            return list;
        }
    }
    if trimmed.is_empty() {
        return Value::Sequence(Vec::new());
    }
    Value::Sequence(
        trimmed
            .split(',')
            .map(|item| Value::String(item.trim().to_owned()))
            .collect(),
    )
}

/// Text for a section: YAML flow syntax (`{a: b}`) only.
fn parse_mapping(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    match serde_yaml::from_str::<Value>(trimmed) {
        Ok(mapping @ Value::Mapping(_)) => Some(mapping),
        _ => None,
    }
}

macro_rules! integer_methods {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match &self.value {
                Value::String(text) => {
                    let text = text.trim();
                    if let Ok(unsigned) = text.parse::<u64>() {
                        visitor.visit_u64(unsigned)
                    } else if let Ok(signed) = text.parse::<i64>() {
                        visitor.visit_i64(signed)
                    } else {
                        // serde's own "invalid type: string .., expected u16"
                        visitor.visit_str(text)
                    }
                }
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}

macro_rules! float_methods {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match &self.value {
                Value::String(text) => match text.trim().parse::<f64>() {
                    Ok(float) => visitor.visit_f64(float),
                    Err(_) => visitor.visit_str(text),
                },
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}

macro_rules! text_methods {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match &self.value {
                Value::Number(number) if self.is_key => visitor.visit_string(number.to_string()),
                Value::Bool(flag) if self.is_key => visitor.visit_string(flag.to_string()),
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Lenient {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(flag) => visitor.visit_bool(flag),
            Value::Number(number) => visit_number(&number, visitor),
            Value::String(text) => visitor.visit_string(text),
            Value::Sequence(items) => visitor.visit_seq(LenientSeq(items.into_iter())),
            Value::Mapping(mapping) => visitor.visit_map(LenientMap::new(mapping)),
            Value::Tagged(tagged) => Err(de::Error::custom(format!(
                "unsupported YAML tag {} (only !ENV is understood)",
                tagged.tag
            ))),
        }
    }

    integer_methods!(deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128);
    float_methods!(deserialize_f32 deserialize_f64);
    text_methods!(deserialize_str deserialize_string deserialize_identifier);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::String(text) => match parse_bool(text) {
                Some(flag) => visitor.visit_bool(flag),
                None => visitor.visit_str(text),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::String(text) => Lenient::new(parse_list(&text)).deserialize_any(visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            // `security:` with every key commented out is an empty section,
            // not an error.
            Value::Null => visitor.visit_map(LenientMap::new(Mapping::new())),
            Value::String(text) => match parse_mapping(text) {
                Some(mapping) => Lenient::new(mapping).deserialize_any(visitor),
                None => self.deserialize_any(visitor),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            // Only unit variants occur in the config (`mode: enabled`).
            Value::String(text) => visitor.visit_enum(text.into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct LenientSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for LenientSeq {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.0
            .next()
            .map(|item| seed.deserialize(Lenient::new(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct LenientMap {
    entries: serde_yaml::mapping::IntoIter,
    pending_value: Option<Value>,
}

impl LenientMap {
    fn new(mapping: Mapping) -> Self {
        LenientMap {
            entries: mapping.into_iter(),
            pending_value: None,
        }
    }
}

impl<'de> MapAccess<'de> for LenientMap {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.pending_value = Some(value);
                seed.deserialize(Lenient::key(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let value = self.pending_value.take().unwrap_or(Value::Null);
        seed.deserialize(Lenient::new(value))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        port: u16,
        flag: bool,
        text: String,
        list: Vec<String>,
        by_id: BTreeMap<u32, String>,
        #[serde(default)]
        maybe: Option<u32>,
    }

    fn from_yaml(yaml: &str) -> Result<Sample, DeError> {
        Sample::deserialize(Lenient::new(serde_yaml::from_str(yaml).unwrap()))
    }

    #[test]
    fn text_is_typed_by_the_target_field() {
        let sample = from_yaml(
            "{port: '8080', flag: 'yes', text: '0123', list: 'a, b', by_id: {'7': x}, maybe: '3'}",
        )
        .unwrap();
        assert_eq!(sample.port, 8080);
        assert!(sample.flag);
        assert_eq!(sample.text, "0123");
        assert_eq!(sample.list, ["a", "b"]);
        assert_eq!(sample.by_id.get(&7).map(String::as_str), Some("x"));
        assert_eq!(sample.maybe, Some(3));
    }

    #[test]
    fn long_numeric_text_stays_text() {
        let digits = "1".repeat(64);
        let yaml = format!("{{port: 1, flag: true, text: '{digits}', list: [], by_id: {{}}}}");
        assert_eq!(from_yaml(&yaml).unwrap().text, digits);
    }

    #[test]
    fn flow_syntax_fills_lists() {
        let sample =
            from_yaml("{port: 1, flag: false, text: t, list: '[x, \"y,z\"]', by_id: {}}").unwrap();
        assert_eq!(sample.list, ["x", "y,z"]);
    }

    #[test]
    fn bad_text_gets_serdes_message() {
        let err = from_yaml("{port: abc, flag: true, text: t, list: [], by_id: {}}").unwrap_err();
        assert!(err.0.contains("expected u16"), "{err}");
        let err =
            from_yaml("{port: '70000', flag: true, text: t, list: [], by_id: {}}").unwrap_err();
        assert!(err.0.contains("70000"), "{err}");
        let err = from_yaml("{port: 1, flag: maybe, text: t, list: [], by_id: {}}").unwrap_err();
        assert!(err.0.contains("expected a boolean"), "{err}");
    }

    #[test]
    fn unknown_fields_are_still_rejected() {
        let err =
            from_yaml("{port: 1, flag: true, text: t, list: [], by_id: {}, extra: 1}").unwrap_err();
        assert!(err.0.contains("unknown field `extra`"), "{err}");
    }
}
