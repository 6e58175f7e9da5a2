//! Platforms in the file as `os/arch[/variant]` text (their JSON form,
//! elsewhere, is an object).

use serde::{de::Error, Deserialize, Deserializer, Serializer};

use crate::oci::Platform;

fn parse<E: Error>(s: &str) -> Result<Platform, E> {
    Platform::parse(s)
        .ok_or_else(|| E::custom(format!("'{s}' is not a platform (os/arch[/variant])")))
}

pub fn serialize<S: Serializer>(p: &Platform, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Platform, D::Error> {
    parse(&String::deserialize(d)?)
}

pub mod list {
    use super::*;

    pub fn serialize<S: Serializer>(ps: &[Platform], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ps.iter().map(Platform::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Platform>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s))
            .collect()
    }
}

pub mod optional {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Option<Platform>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_str(&p.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Platform>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| parse(&s))
            .transpose()
    }
}
