//! `Deserialize` for [`Resource`], by hand, for speed.
//!
//! A resource is one JSON object: `id`, the `kind` tag, the kind's fields
//! and the metaparameters side by side. Derived, with two `#[serde(flatten)]`
//! fields and an internally tagged [`Spec`], serde buffers every resource
//! into its generic `Content` tree and reads it again; on a 10,000-file
//! catalog that was half of the agent's no-change run. Here the object is
//! read once: the id and metaparameters are taken as they come, and the
//! other fields stream straight into the kind's derived `Deserialize`. Only
//! fields that come before `kind` (never in what drover writes) are held,
//! as JSON values, until the kind is known.
//!
//! What a derived implementation would accept, this accepts, with the same
//! errors: unknown fields are ignored, a duplicate field or a missing `id`
//! or `kind` is an error, an unknown kind names the known ones.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer};
use serde::de::{self, DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{
    ContainerSpec, DirectorySpec, ExecSpec, FileSpec, GroupSpec, Kind, Meta, PackageSpec, Resource,
    ResourceId, ServiceSpec, Spec, SymlinkSpec, UserSpec,
};

/// The `kind` tag's values, for serde's "expected one of" (a static list).
const KINDS: &[&str] = &[
    "file",
    "directory",
    "symlink",
    "package",
    "service",
    "container",
    "user",
    "group",
    "exec",
];

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Resource, D::Error> {
        d.deserialize_map(ResourceVisitor)
    }
}

struct ResourceVisitor;

impl<'de> Visitor<'de> for ResourceVisitor {
    type Value = Resource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resource, A::Error> {
        let mut common = Common::default();
        let mut early = Vec::new();
        let kind = loop {
            let Some(Key(key)) = map.next_key()? else {
                return Err(de::Error::missing_field("kind"));
            };
            if common.take(&key, &mut map)? {
                continue;
            }
            if key == "kind" {
                break map.next_value::<KindTag>()?.0;
            }
            early.push((key.into_owned(), map.next_value::<serde_json::Value>()?));
        };
        let mut fields = SpecFields {
            early: early.into_iter(),
            pending: None,
            map,
            common: &mut common,
        };
        let spec = spec(kind, &mut fields)?;
        // The kind's visitor reads to the end; this only makes sure of it.
        while fields.next_key::<IgnoredAny>()?.is_some() {
            fields.next_value::<IgnoredAny>()?;
        }
        common.finish(spec)
    }
}

fn spec<'de, M: MapAccess<'de>>(kind: Kind, fields: M) -> Result<Spec, M::Error> {
    let d = MapAccessDeserializer::new(fields);
    Ok(match kind {
        Kind::File => Spec::File(FileSpec::deserialize(d)?),
        Kind::Directory => Spec::Directory(DirectorySpec::deserialize(d)?),
        Kind::Symlink => Spec::Symlink(SymlinkSpec::deserialize(d)?),
        Kind::Package => Spec::Package(PackageSpec::deserialize(d)?),
        Kind::Service => Spec::Service(ServiceSpec::deserialize(d)?),
        Kind::Container => Spec::Container(Box::new(ContainerSpec::deserialize(d)?)),
        Kind::User => Spec::User(UserSpec::deserialize(d)?),
        Kind::Group => Spec::Group(GroupSpec::deserialize(d)?),
        Kind::Exec => Spec::Exec(Box::new(ExecSpec::deserialize(d)?)),
    })
}

/// The id and the metaparameters, as they are met.
#[derive(Default)]
struct Common {
    id: Option<ResourceId>,
    require: Option<Vec<ResourceId>>,
    subscribe: Option<Vec<ResourceId>>,
    noop: Option<bool>,
    sensitive: Option<bool>,
    tags: Option<Vec<String>>,
}

impl Common {
    /// Reads the value of `key` when it is the id or a metaparameter.
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "id" => put(&mut self.id, "id", map.next_value()?)?,
            "require" => put(&mut self.require, "require", map.next_value()?)?,
            "subscribe" => put(&mut self.subscribe, "subscribe", map.next_value()?)?,
            "noop" => put(&mut self.noop, "noop", map.next_value()?)?,
            "sensitive" => put(&mut self.sensitive, "sensitive", map.next_value()?)?,
            "tags" => put(&mut self.tags, "tags", map.next_value()?)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish<E: de::Error>(self, spec: Spec) -> Result<Resource, E> {
        let Common {
            id,
            require,
            subscribe,
            noop,
            sensitive,
            tags,
        } = self;
        Ok(Resource {
            id: id.ok_or_else(|| E::missing_field("id"))?,
            spec,
            meta: Meta {
                require: require.unwrap_or_default(),
                subscribe: subscribe.unwrap_or_default(),
                noop: noop.unwrap_or_default(),
                sensitive: sensitive.unwrap_or_default(),
                tags: tags.unwrap_or_default(),
            },
        })
    }
}

fn put<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    match slot.replace(value) {
        Some(_) => Err(E::duplicate_field(name)),
        None => Ok(()),
    }
}

/// The kind's fields as a map of their own: those read before `kind`, then
/// the rest of the object, less the id and the metaparameters.
struct SpecFields<'c, A> {
    early: std::vec::IntoIter<(String, serde_json::Value)>,
    /// The value of the early field whose key was handed out last.
    pending: Option<serde_json::Value>,
    map: A,
    common: &'c mut Common,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SpecFields<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some((key, value)) = self.early.next() {
            self.pending = Some(value);
            return seed.deserialize(key.into_deserializer()).map(Some);
        }
        while let Some(Key(key)) = self.map.next_key()? {
            if self.common.take(&key, &mut self.map)? {
                continue;
            }
            if key == "kind" {
                return Err(de::Error::duplicate_field("kind"));
            }
            return match key {
                Cow::Borrowed(key) => seed.deserialize(BorrowedStrDeserializer::new(key)),
                Cow::Owned(key) => seed.deserialize(key.into_deserializer()),
            }
            .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            Some(value) => seed.deserialize(value).map_err(de::Error::custom),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// A field name, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The value of `kind`.
struct KindTag(Kind);

impl<'de> Deserialize<'de> for KindTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KindTag, D::Error> {
        let Key(name) = Key::deserialize(d)?;
        Kind::parse(&name)
            .map(KindTag)
            .ok_or_else(|| de::Error::unknown_variant(&name, KINDS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mode;

    fn parse(json: &str) -> Result<Resource, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn the_kind_list_is_every_kind() {
        assert_eq!(KINDS, Kind::ALL.map(Kind::as_str));
    }

    #[test]
    fn every_metaparameter_is_read_wherever_it_comes() {
        let meta = Meta {
            require: vec![ResourceId::new(Kind::Directory, "/etc")],
            subscribe: vec![ResourceId::new(Kind::Package, "nginx")],
            noop: true,
            sensitive: true,
            tags: vec!["web".into()],
        };
        let mut resource = Resource::new(Spec::File(FileSpec::with_content("/etc/motd", b"hi")));
        resource.meta = meta;
        let json = serde_json::to_value(&resource).unwrap();
        assert_eq!(
            serde_json::from_value::<Resource>(json.clone()).unwrap(),
            resource
        );

        // Metaparameters and fields before the tag, and between fields.
        let shuffled = r#"{"noop":true,"path":"/etc/motd","tags":["web"],
            "mode":"0600","kind":"file","sensitive":true,"ensure":"present",
            "require":["directory:/etc"],"size":2,"subscribe":["package:nginx"],
            "sha256":"8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4",
            "id":"file:/etc/motd"}"#;
        let mut want = resource.clone();
        let Spec::File(file) = &mut want.spec else {
            unreachable!()
        };
        file.mode = Some(Mode::parse("0600").unwrap());
        assert_eq!(parse(shuffled).unwrap(), want);
    }

    #[test]
    fn every_kind_round_trips() {
        let kinds = [
            r#"{"id":"directory:/srv","kind":"directory","path":"/srv","purge":true}"#,
            r#"{"id":"symlink:/l","kind":"symlink","path":"/l","target":"/t"}"#,
            r#"{"id":"package:vim","kind":"package","name":"vim","ensure":"2:9.0"}"#,
            r#"{"id":"service:x","kind":"service","name":"x","ensure":"running","enabled":true}"#,
            r#"{"id":"container:web","kind":"container","name":"web","image":"nginx","env":{"A":"b"}}"#,
            r#"{"id":"user:u","kind":"user","name":"u","groups":["g"]}"#,
            r#"{"id":"group:g","kind":"group","name":"g","gid":7}"#,
            r#"{"id":"exec:e","kind":"exec","name":"e","command":"true","refreshonly":true}"#,
        ];
        for json in kinds {
            let resource = parse(json).unwrap();
            assert_eq!(resource.spec.kind(), resource.id.kind(), "{json}");
            let again = serde_json::to_string(&resource).unwrap();
            assert_eq!(parse(&again).unwrap(), resource, "{json}");
        }
    }

    #[test]
    fn bad_objects_get_the_errors_a_derived_one_gives() {
        let cases = [
            (r#"{"id":"file:/a","path":"/a"}"#, "missing field `kind`"),
            (r#"{"kind":"file","path":"/a"}"#, "missing field `id`"),
            (r#"{"id":"file:/a","kind":"file"}"#, "missing field `path`"),
            (
                r#"{"id":"file:/a","kind":"fiel","path":"/a"}"#,
                "unknown variant `fiel`, expected one of `file`, `directory`",
            ),
            (
                r#"{"id":"file:/a","kind":"file","kind":"file","path":"/a"}"#,
                "duplicate field `kind`",
            ),
            (
                r#"{"id":"file:/a","kind":"file","path":"/a","noop":true,"noop":false}"#,
                "duplicate field `noop`",
            ),
            (
                r#"{"id":"file:/a","kind":"file","path":"/a","mode":"0648"}"#,
                "invalid mode `0648`",
            ),
            (
                r#"{"id":"file:/a","mode":"0648","kind":"file","path":"/a"}"#,
                "invalid mode `0648`",
            ),
            (
                r#"{"id":"file:/a","kind":"file","path":"/a","require":["nope"]}"#,
                "is not a resource id",
            ),
            (r#"["file:/a"]"#, "expected a resource object"),
        ];
        for (json, want) in cases {
            let err = parse(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_escaped_keys_read() {
        let json = r#"{"id":"file:/a","kind":"file","p\u0061th":"/a","future":{"x":[1]}}"#;
        let Spec::File(file) = parse(json).unwrap().spec else {
            panic!("not a file")
        };
        assert_eq!(file.path, "/a");
    }
}
