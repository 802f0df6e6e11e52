//! The kind-specific half of building resources: one function per kind.

use std::sync::Arc;

use crate::diagnostic::Loc;
use crate::model::{
    ContainerSpec, DirectorySpec, Ensure, ExecSpec, FileSpec, Healthcheck, ServiceSpec,
    SymlinkSpec, UserSpec, sha256_hex,
};
use crate::raw::{
    RawContainer, RawDirectory, RawExec, RawFile, RawService, RawSymlink, RawUser, S,
};
use crate::resources::Builder;
use crate::values;

impl Builder<'_> {
    /// A file and its content bytes (inline, template-rendered or `source`).
    pub(crate) fn file(&mut self, r: &RawFile, path: &str) -> (FileSpec, Option<Arc<[u8]>>) {
        let ensure = self
            .ensure(&r.ensure, values::ensure_present, "present or absent")
            .unwrap_or_default();
        let given: Vec<(&str, &S)> = [
            ("content", &r.content),
            ("source", &r.source),
            ("template", &r.template),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.as_ref().map(|v| (f, v)))
        .collect();
        if let [(first, _), (second, s), ..] = given.as_slice() {
            let msg = format!(
                "file `{path}` sets both `{first}` and `{second}`\nhint: a file takes at most one of `content`, `source` and `template`"
            );
            self.fail(self.loc(s), msg);
        }
        if let (Ensure::Absent, Some((field, s))) = (ensure, given.first()) {
            self.fail(
                self.loc(s),
                format!("file `{path}` has ensure = \"absent\" but sets `{field}`"),
            );
        }
        let content = match given.first() {
            Some(("content", s)) => self
                .text(s)
                .filter(|t| t.exact)
                .map(|t| Arc::from(t.value.into_bytes().into_boxed_slice())),
            Some(("source", s)) => self.source(s),
            Some((_, s)) => self.template_file(s, "template"),
            None => None,
        };
        let spec = FileSpec {
            path: path.to_owned(),
            ensure,
            sha256: content.as_deref().map(sha256_hex),
            size: content.as_ref().map(|c| c.len() as u64),
            mode: self.mode(&r.mode),
            owner: self.opt(&r.owner),
            group: self.opt(&r.group),
            backup: r.backup.unwrap_or(true),
            validate: self.opt(&r.validate),
        };
        (spec, content)
    }

    /// `source`: a file under `files/`, copied byte for byte (never rendered).
    fn source(&mut self, s: &S) -> Option<Arc<[u8]>> {
        let text = self.text(s)?;
        if !text.exact {
            return None;
        }
        if let Some(why) = values::repo_path_problem(&text.value, "files") {
            self.fail(
                self.loc(s),
                format!(
                    "`source` must name a file under files/: `{}` ({why})\nhint: write source = \"files/...\"",
                    text.value
                ),
            );
            return None;
        }
        match self.files.get(&text.value) {
            Some(bytes) => Some(Arc::clone(bytes)),
            None => {
                self.fail(
                    self.loc(s),
                    format!("`source` file `{}` does not exist", text.value),
                );
                None
            }
        }
    }

    /// `template`/`unit_template`: a file under `templates/`, rendered.
    fn template_file(&mut self, s: &S, field: &str) -> Option<Arc<[u8]>> {
        let text = self.text(s)?;
        if !text.exact {
            return None;
        }
        if let Some(why) = values::repo_path_problem(&text.value, "templates") {
            self.fail(
                self.loc(s),
                format!(
                    "`{field}` must name a file under templates/: `{}` ({why})\nhint: write {field} = \"templates/...\"",
                    text.value
                ),
            );
            return None;
        }
        let loc = self.loc(s);
        match self.renderer.file(&text.value, &loc) {
            Ok(t) if t.exact => Some(Arc::from(t.value.into_bytes().into_boxed_slice())),
            Ok(_) => None,
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    pub(crate) fn directory(&mut self, r: &RawDirectory, path: &str) -> DirectorySpec {
        DirectorySpec {
            path: path.to_owned(),
            ensure: self
                .ensure(&r.ensure, values::ensure_present, "present or absent")
                .unwrap_or_default(),
            mode: self.mode(&r.mode),
            owner: self.opt(&r.owner),
            group: self.opt(&r.group),
            purge: r.purge,
        }
    }

    pub(crate) fn symlink(&mut self, r: &RawSymlink, path: &str, loc: &Loc) -> SymlinkSpec {
        let ensure = self
            .ensure(&r.ensure, values::ensure_present, "present or absent")
            .unwrap_or_default();
        let target = self.opt(&r.target);
        if ensure == Ensure::Present && r.target.is_none() {
            self.fail(
                loc.clone(),
                format!("symlink `{path}` needs a `target` when ensure = \"present\""),
            );
        }
        SymlinkSpec {
            path: path.to_owned(),
            ensure,
            target,
        }
    }

    pub(crate) fn service(&mut self, r: &RawService, name: &str) -> ServiceSpec {
        let ensure = self.ensure(&r.ensure, values::ensure_service, "running or stopped");
        let unit = match (&r.unit, &r.unit_template) {
            (Some(_), Some(t)) => {
                self.fail(
                    self.loc(t),
                    format!("service `{name}` sets both `unit` and `unit_template`"),
                );
                None
            }
            (Some(u), None) => self.text(u).filter(|t| t.exact).map(|t| t.value),
            (None, Some(t)) => self
                .template_file(t, "unit_template")
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            (None, None) => None,
        };
        ServiceSpec {
            name: name.to_owned(),
            ensure,
            enabled: r.enabled,
            unit,
        }
    }

    pub(crate) fn container(&mut self, r: &RawContainer, name: &str) -> Option<ContainerSpec> {
        let image = self.text(&r.image)?.value;
        let memory_bytes = r.memory.as_ref().and_then(|m| {
            let loc = self.loc(m);
            let parsed = match m.get_ref() {
                toml::Value::Integer(i) => u64::try_from(*i).ok().filter(|b| *b > 0),
                toml::Value::String(s) => {
                    let text = self.renderer.text(s, &loc).map_err(|e| self.errors.push(e)).ok()?;
                    if !text.exact {
                        return None;
                    }
                    values::parse_memory(&text.value)
                }
                _ => None,
            };
            if parsed.is_none() {
                self.fail(loc, "invalid `memory`: expected bytes as an integer or a size such as \"256m\" or \"1g\"");
            }
            parsed
        });
        let millicpus = r.cpus.as_ref().and_then(|c| {
            let cpus = match c.get_ref() {
                toml::Value::Integer(i) => Some(*i as f64),
                toml::Value::Float(f) => Some(*f),
                toml::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            let milli = cpus.and_then(values::cpus_to_milli);
            if milli.is_none() {
                self.fail(
                    self.loc(c),
                    "invalid `cpus`: expected a positive number such as 0.5 or 2",
                );
            }
            milli
        });
        let healthcheck = r.healthcheck.as_ref().and_then(|h| {
            let test = match self.command(&h.test, "healthcheck.test")? {
                crate::model::Command::Argv(argv) => argv,
                crate::model::Command::Shell(s) => vec!["CMD-SHELL".to_owned(), s],
            };
            Some(Healthcheck {
                test,
                interval_secs: h.interval,
                timeout_secs: h.timeout,
                retries: h.retries,
            })
        });
        Some(ContainerSpec {
            name: name.to_owned(),
            image,
            ensure: self
                .ensure(
                    &r.ensure,
                    values::ensure_container,
                    "running, stopped or absent",
                )
                .unwrap_or_default(),
            command: r.command.as_ref().map(|c| self.list(c)),
            entrypoint: r.entrypoint.as_ref().map(|c| self.list(c)),
            env: self.string_map(&r.env, "env"),
            ports: self.list(&r.ports),
            volumes: self.list(&r.volumes),
            restart: self.opt(&r.restart),
            labels: self.string_map(&r.labels, "labels"),
            user: self.opt(&r.user),
            network: self.opt(&r.network),
            memory_bytes,
            millicpus,
            healthcheck,
        })
    }

    pub(crate) fn user(&mut self, r: &RawUser, name: &str) -> UserSpec {
        UserSpec {
            name: name.to_owned(),
            ensure: self
                .ensure(&r.ensure, values::ensure_present, "present or absent")
                .unwrap_or_default(),
            uid: r.uid,
            group: self.opt(&r.group),
            groups: self.list(&r.groups),
            home: self.opt_path(&r.home, "home"),
            shell: self.opt(&r.shell),
            system: r.system,
        }
    }

    pub(crate) fn exec(&mut self, r: &RawExec, name: &str) -> Option<ExecSpec> {
        let command = self.command(&r.command, "command")?;
        Some(ExecSpec {
            name: name.to_owned(),
            command,
            cwd: self.opt_path(&r.cwd, "cwd"),
            env: self.string_map(&r.env, "env"),
            user: self.opt(&r.user),
            creates: self.opt_path(&r.creates, "creates"),
            unless: r.unless.as_ref().and_then(|c| self.command(c, "unless")),
            onlyif: r.onlyif.as_ref().and_then(|c| self.command(c, "onlyif")),
            refreshonly: r.refreshonly,
            timeout_secs: r.timeout,
        })
    }
}
