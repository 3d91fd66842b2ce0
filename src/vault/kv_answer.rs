//! Parses a KV read answer straight out of the (zeroized) response buffer into
//! zeroized values: no `serde_json::Value`, `String` or scratch copy of a secret
//! value is made, so none is left behind in freed memory. Also owns growing that
//! response buffer without leaving copies ([`append_zeroizing`]).
//!
//! Each value of the secret is taken as a raw JSON slice borrowed from the buffer.
//! A string is unescaped into a buffer reserved at its final size; any other value
//! (number, bool, object, array, null) is shown as the compact JSON text Vault sent,
//! whitespace outside strings removed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::{Secret, SecretBytes, StoreError};

/// `{"data": …}`: the envelope of every Vault answer.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// KV v2's `data`: the secret and its version metadata.
#[derive(Deserialize)]
struct VersionedData<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    /// Not secret; read tolerantly.
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

/// Key → value, each value converted while the map is read.
struct SecretValues(BTreeMap<String, SecretBytes>);

impl<'de> Deserialize<'de> for SecretValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SecretValuesVisitor)
    }
}

struct SecretValuesVisitor;

impl<'de> Visitor<'de> for SecretValuesVisitor {
    type Value = SecretValues;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of secret values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretValues, A::Error> {
        let mut values = BTreeMap::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let value = render_raw(raw.get()).ok_or_else(|| {
                serde::de::Error::custom("a string value holds an invalid escape")
            })?;
            values.insert(key.into_owned(), value);
        }
        Ok(SecretValues(values))
    }
}

/// Parses a KV v1 read answer (`data` is the secret).
pub fn parse_v1(body: &[u8], api_path: &str) -> Result<Secret, StoreError> {
    let data = envelope_data(body, api_path)?;
    Ok(Secret {
        values: values_of(data, api_path)?,
        version: None,
        created_time: None,
    })
}

/// Parses a KV v2 read answer (`data.data` is the secret, `data.metadata` its
/// version). `None` when `data.data` is `null` or missing: a deleted or destroyed
/// version.
pub fn parse_v2(body: &[u8], api_path: &str) -> Result<Option<Secret>, StoreError> {
    let data = envelope_data(body, api_path)?;
    let versioned: VersionedData =
        serde_json::from_str(data.get()).map_err(|_| no_data(api_path))?;
    let Some(secret) = versioned.data.filter(|d| is_object(d)) else {
        return Ok(None);
    };
    let metadata = versioned.metadata.unwrap_or_default();
    Ok(Some(Secret {
        values: values_of(secret, api_path)?,
        version: metadata.get("version").and_then(serde_json::Value::as_u64),
        created_time: metadata
            .get("created_time")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
    }))
}

/// The answer's `data`, which must be an object.
fn envelope_data<'a>(body: &'a [u8], api_path: &str) -> Result<&'a RawValue, StoreError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|_| not_json(api_path))?;
    envelope
        .data
        .filter(|d| is_object(d))
        .ok_or_else(|| no_data(api_path))
}

fn values_of(
    object: &RawValue,
    api_path: &str,
) -> Result<BTreeMap<String, SecretBytes>, StoreError> {
    // Never the parser's message: it may quote part of a value.
    serde_json::from_str::<SecretValues>(object.get())
        .map(|values| values.0)
        .map_err(|_| {
            StoreError::Malformed(format!("answer to {api_path} holds an unreadable value"))
        })
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// The error for an answer that does not parse (never the parser's message).
pub(super) fn not_json(api_path: &str) -> StoreError {
    StoreError::Malformed(format!("answer to {api_path} is not JSON"))
}

fn no_data(api_path: &str) -> StoreError {
    StoreError::Malformed(format!("answer to {api_path} has no `data` object"))
}

/// File content for one raw JSON value: a string unescaped, anything else compact.
/// `None` for a string with an invalid escape (a lone surrogate).
fn render_raw(raw: &str) -> Option<SecretBytes> {
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => unescape(inner),
        None => Some(compact(raw)),
    }
}

/// The text of a JSON string literal's inside, escapes resolved. The buffer is
/// reserved once at the escaped length, which the result never exceeds, so it is
/// never reallocated (a reallocation would free a copy unzeroized).
fn unescape(inner: &str) -> Option<SecretBytes> {
    let mut out = Zeroizing::new(Vec::with_capacity(inner.len()));
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let escape = *bytes.get(i + 1)?;
        i += 2;
        let simple = match escape {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            continue;
        }
        let first = hex4(bytes.get(i..i + 4)?)?;
        i += 4;
        let code = match first {
            0xD800..=0xDBFF => {
                if bytes.get(i..i + 2)? != b"\\u" {
                    return None;
                }
                let second = hex4(bytes.get(i + 2..i + 6)?)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return None;
                }
                i += 6;
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return None,
            other => other,
        };
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut utf8).as_bytes());
    }
    Some(out)
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let value = (d as char).to_digit(16)?;
        Some(acc * 16 + value)
    })
}

/// Valid JSON text with the whitespace outside strings removed.
fn compact(raw: &str) -> SecretBytes {
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        out.push(b);
    }
    out
}

/// Appends to a zeroized buffer without leaving a copy behind: where `Vec` would
/// reallocate (and free the old block as it is), the contents move to a larger
/// buffer and the old one is zeroized as it drops.
pub fn append_zeroizing(buffer: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    let needed = buffer.len() + bytes.len();
    if needed > buffer.capacity() {
        let mut larger = Zeroizing::new(Vec::with_capacity(needed.max(buffer.capacity() * 2)));
        larger.extend_from_slice(buffer);
        *buffer = larger;
    }
    buffer.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests;
