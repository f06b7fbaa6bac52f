//! 64-bit integers as protojson writes them: decimal strings (`"size_arg": "4096"`), since a
//! JSON number cannot carry every 64-bit value exactly. Numbers are read too: lines recorded
//! before vigil wrote strings, and what other tools write, still read back.

use std::fmt;

use serde::{de, Deserializer, Serializer};

/// `serialize_with` for a `u64` written as protojson writes `uint64`.
pub(crate) fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

/// `deserialize_with` for a `u64` written either as a string or as a number.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(U64Visitor)
}

struct U64Visitor;

impl de::Visitor<'_> for U64Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an unsigned 64-bit integer, as a number or a decimal string")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        Ok(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        u64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        s.parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
    }
}
