//! Stage two for resources: rendered, checked and turned into model specs.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use crate::diagnostic::{Diagnostic, Loc, SourceFile};
use crate::model::{Command, GroupSpec, Kind, Mode, PackageEnsure, PackageSpec, ResourceId, Spec};
use crate::raw::{RawMeta, RawResource, S, V};
use crate::render::{Renderer, Text};
use crate::values;

/// One declared resource, validated on its own (not yet against others).
#[derive(Debug, Clone)]
pub(crate) struct Decl {
    pub id: ResourceId,
    /// False when the id came from a template not rendered (syntax-only check).
    pub id_exact: bool,
    /// Where the `path` or `name` that makes the id is written.
    pub loc: Loc,
    pub spec: Spec,
    pub meta: DeclMeta,
    pub content: Option<Arc<[u8]>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DeclMeta {
    pub require: Vec<Ref>,
    pub before: Vec<Ref>,
    pub notify: Vec<Ref>,
    pub subscribe: Vec<Ref>,
    pub noop: bool,
    pub sensitive: bool,
    pub tags: Vec<String>,
}

/// A reference to another resource, as written.
#[derive(Debug, Clone)]
pub(crate) struct Ref {
    pub text: String,
    pub exact: bool,
    pub loc: Loc,
}

/// Builds the resources of one role file, collecting every error.
pub(crate) struct Builder<'a> {
    pub renderer: &'a Renderer,
    pub src: &'a SourceFile,
    pub files: &'a BTreeMap<String, Arc<[u8]>>,
    pub errors: Vec<Diagnostic>,
}

impl<'a> Builder<'a> {
    pub(crate) fn loc<T>(&self, s: &Spanned<T>) -> Loc {
        self.src.span(&s.span())
    }

    pub(crate) fn text(&mut self, s: &S) -> Option<Text> {
        let loc = self.loc(s);
        self.renderer
            .text(s.get_ref(), &loc)
            .map_err(|e| self.errors.push(e))
            .ok()
    }

    pub(crate) fn opt(&mut self, s: &Option<S>) -> Option<String> {
        s.as_ref().and_then(|s| self.text(s)).map(|t| t.value)
    }

    pub(crate) fn list(&mut self, items: &[S]) -> Vec<String> {
        items
            .iter()
            .filter_map(|s| self.text(s))
            .map(|t| t.value)
            .collect()
    }

    pub(crate) fn fail(&mut self, loc: Loc, msg: impl Into<String>) {
        self.errors.push(loc.error(msg));
    }

    /// A path field: rendered, then checked to be absolute and normalised.
    pub(crate) fn path(&mut self, s: &S, field: &str) -> Option<Text> {
        let text = self.text(s)?;
        if text.exact
            && let Some(why) = values::path_problem(&text.value)
        {
            self.fail(
                self.loc(s),
                format!(
                    "`{field}` must be an absolute, normalised path: `{}` ({why})",
                    text.value.escape_debug()
                ),
            );
        }
        Some(text)
    }

    pub(crate) fn opt_path(&mut self, s: &Option<S>, field: &str) -> Option<String> {
        s.as_ref()
            .and_then(|s| self.path(s, field))
            .map(|t| t.value)
    }

    pub(crate) fn mode(&mut self, s: &Option<S>) -> Option<Mode> {
        let s = s.as_ref()?;
        let text = self.text(s)?;
        if !text.exact {
            return None;
        }
        Mode::parse(&text.value)
            .map_err(|e| self.fail(self.loc(s), e))
            .ok()
    }

    /// An `ensure` word; `allowed` names the accepted words for the message.
    pub(crate) fn ensure<T>(
        &mut self,
        s: &Option<S>,
        parse: fn(&str) -> Option<T>,
        allowed: &str,
    ) -> Option<T> {
        let s = s.as_ref()?;
        let text = self.text(s)?;
        if !text.exact {
            return None;
        }
        let parsed = parse(&text.value);
        if parsed.is_none() {
            self.fail(
                self.loc(s),
                format!(
                    "invalid `ensure` value `{}`: expected {allowed}",
                    text.value
                ),
            );
        }
        parsed
    }

    /// A string or a list of strings (`command`, `unless`, `onlyif`).
    pub(crate) fn command(&mut self, v: &V, field: &str) -> Option<Command> {
        let loc = self.loc(v);
        match v.get_ref() {
            toml::Value::String(s) => self.render_at(s, &loc).map(Command::Shell),
            toml::Value::Array(items) if !items.is_empty() => {
                let mut argv = Vec::new();
                for item in items {
                    let toml::Value::String(s) = item else {
                        self.fail(
                            loc,
                            format!("`{field}` must be a string or a list of strings"),
                        );
                        return None;
                    };
                    argv.push(self.render_at(s, &loc)?);
                }
                Some(Command::Argv(argv))
            }
            _ => {
                self.fail(
                    loc,
                    format!("`{field}` must be a string or a non-empty list of strings"),
                );
                None
            }
        }
    }

    pub(crate) fn render_at(&mut self, s: &str, loc: &Loc) -> Option<String> {
        self.renderer
            .text(s, loc)
            .map_err(|e| self.errors.push(e))
            .ok()
            .map(|t| t.value)
    }

    /// `env`/`labels`: string values are rendered, numbers and booleans taken as text.
    pub(crate) fn string_map(
        &mut self,
        map: &BTreeMap<String, V>,
        field: &str,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, v) in map {
            let loc = self.loc(v);
            let value = match v.get_ref() {
                toml::Value::String(s) => self.render_at(s, &loc),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Float(f) => Some(f.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                _ => {
                    self.fail(
                        loc,
                        format!("`{field}.{key}` must be a string, number or boolean"),
                    );
                    None
                }
            };
            if let Some(value) = value {
                out.insert(key.clone(), value);
            }
        }
        out
    }

    fn meta(&mut self, m: &RawMeta) -> DeclMeta {
        let refs = |b: &mut Self, list: &[S]| -> Vec<Ref> {
            list.iter()
                .filter_map(|s| {
                    let loc = b.loc(s);
                    b.text(s).map(|t| Ref {
                        text: t.value,
                        exact: t.exact,
                        loc,
                    })
                })
                .collect()
        };
        DeclMeta {
            require: refs(self, &m.require),
            before: refs(self, &m.before),
            notify: refs(self, &m.notify),
            subscribe: refs(self, &m.subscribe),
            noop: m.noop,
            sensitive: m.sensitive,
            tags: self.list(&m.tags),
        }
    }

    /// Builds one resource; `None` when it has errors (already recorded).
    pub(crate) fn build(&mut self, raw: &RawResource) -> Option<Decl> {
        let before = self.errors.len();
        let (key, kind) = match raw {
            RawResource::File(r) => (&r.path, Kind::File),
            RawResource::Directory(r) => (&r.path, Kind::Directory),
            RawResource::Symlink(r) => (&r.path, Kind::Symlink),
            RawResource::Package(r) => (&r.name, Kind::Package),
            RawResource::Service(r) => (&r.name, Kind::Service),
            RawResource::Container(r) => (&r.name, Kind::Container),
            RawResource::User(r) => (&r.name, Kind::User),
            RawResource::Group(r) => (&r.name, Kind::Group),
            RawResource::Exec(r) => (&r.name, Kind::Exec),
        };
        let loc = self.loc(key);
        // Reads of sensitive values count from here, for this resource.
        self.renderer.read_sensitive();
        let name = if kind.is_path() {
            self.path(key, "path")?
        } else {
            let text = self.text(key)?;
            if text.value.trim().is_empty() {
                self.fail(
                    loc.clone(),
                    format!("`name` of a {} must not be empty", kind.as_str()),
                );
                return None;
            }
            text
        };
        if self.renderer.read_sensitive() {
            let field = if kind.is_path() { "path" } else { "name" };
            self.fail(
                loc,
                format!(
                    "`{field}` uses a sensitive value, but a resource id is shown in reports and logs\nhint: name the {} without it; use the value in its other fields",
                    kind.as_str()
                ),
            );
            return None;
        }
        let (spec, mut meta, content) = match raw {
            RawResource::File(r) => {
                let (spec, content) = self.file(r, &name.value);
                (Spec::File(spec), self.meta(&r.meta()), content)
            }
            RawResource::Directory(r) => (
                Spec::Directory(self.directory(r, &name.value)),
                self.meta(&r.meta()),
                None,
            ),
            RawResource::Symlink(r) => (
                Spec::Symlink(self.symlink(r, &name.value, &loc)),
                self.meta(&r.meta()),
                None,
            ),
            RawResource::Package(r) => {
                let ensure = self
                    .ensure(
                        &r.ensure,
                        values::ensure_package,
                        "installed, absent or a Debian version (starting with a digit, e.g. 2.10-3)",
                    )
                    .unwrap_or(PackageEnsure::Installed);
                (
                    Spec::Package(PackageSpec {
                        name: name.value.clone(),
                        ensure,
                    }),
                    self.meta(&r.meta()),
                    None,
                )
            }
            RawResource::Service(r) => (
                Spec::Service(self.service(r, &name.value)),
                self.meta(&r.meta()),
                None,
            ),
            RawResource::Container(r) => (
                Spec::Container(Box::new(self.container(r, &name.value)?)),
                self.meta(&r.meta()),
                None,
            ),
            RawResource::User(r) => (
                Spec::User(self.user(r, &name.value)),
                self.meta(&r.meta()),
                None,
            ),
            RawResource::Group(r) => {
                let spec = GroupSpec {
                    name: name.value.clone(),
                    ensure: self
                        .ensure(&r.ensure, values::ensure_present, "present or absent")
                        .unwrap_or_default(),
                    gid: r.gid,
                    system: r.system,
                };
                (Spec::Group(spec), self.meta(&r.meta()), None)
            }
            RawResource::Exec(r) => (
                Spec::Exec(Box::new(self.exec(r, &name.value)?)),
                self.meta(&r.meta()),
                None,
            ),
        };
        if self.errors.len() > before {
            return None;
        }
        meta.sensitive |= self.renderer.read_sensitive()
            || self.shows_secret(&spec, &meta.tags, content.as_deref());
        Some(Decl {
            id: ResourceId::new(kind, &name.value),
            id_exact: name.exact,
            loc,
            spec,
            meta,
            content,
        })
    }
}

impl Builder<'_> {
    /// Whether a sensitive value of the node appears in the resource even
    /// though no template read it as one: the same text given plainly in
    /// other data, or inside a static `source` file.
    fn shows_secret(&self, spec: &Spec, tags: &[String], content: Option<&[u8]>) -> bool {
        let secrets = self.renderer.secrets();
        if secrets.values.is_empty() {
            return false;
        }
        let found = |text: &str| secrets.appears_in(text.as_bytes());
        let spec = serde_json::to_value(spec).expect("a spec serializes");
        any_string(&spec, &found)
            || tags.iter().any(|t| found(t))
            || content.is_some_and(|bytes| secrets.appears_in(bytes))
    }
}

/// Whether `test` holds for any string (or object key) inside `value`.
fn any_string(value: &serde_json::Value, test: &dyn Fn(&str) -> bool) -> bool {
    match value {
        serde_json::Value::String(s) => test(s),
        serde_json::Value::Array(items) => items.iter().any(|v| any_string(v, test)),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| test(k) || any_string(v, test)),
        _ => false,
    }
}
