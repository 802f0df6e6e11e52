//! The kind-specific half of building resources: one function per kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::container::{self, Mount, PortMapping, RestartPolicy};
use crate::diagnostic::Loc;
use crate::model::{
    Command, ContainerSpec, DirectorySpec, Ensure, ExecSpec, FileSpec, Healthcheck, ServiceSpec,
    SymlinkSpec, UserSpec, sha256_hex,
};
use crate::raw::{
    RawContainer, RawDirectory, RawExec, RawFile, RawHealthcheck, RawService, RawSymlink, RawUser,
    S, V,
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
        // `build` rendered the name already; rendering it again tells whether
        // it is exact, so a syntax-only check does not judge template text.
        self.validated(&r.name, container::validate_name);
        let (image, _) = self.validated(&r.image, container::validate_image)?;
        self.env_keys(&r.env);
        Some(ContainerSpec {
            name: name.to_owned(),
            image,
            image_archive: self.opt_path(&r.image_archive, "image_archive"),
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
            ports: self.ports(&r.ports),
            volumes: r
                .volumes
                .iter()
                .filter_map(|s| self.validated(s, Mount::parse))
                .map(|(text, _)| text)
                .collect(),
            restart: r
                .restart
                .as_ref()
                .and_then(|s| self.validated(s, RestartPolicy::parse))
                .map(|(text, _)| text),
            labels: self.string_map(&r.labels, "labels"),
            user: self.opt(&r.user),
            network: self.opt(&r.network),
            memory_bytes: r.memory.as_ref().and_then(|m| self.memory(m)),
            millicpus: r.cpus.as_ref().and_then(|c| self.cpus(c)),
            healthcheck: r.healthcheck.as_ref().and_then(|h| self.healthcheck(h)),
            // An app's replica gets its probe from the app (`App::declare`).
            probe: None,
            stop_timeout_secs: r.stop_timeout,
        })
    }

    /// Renders `s` and, when the text is exact, parses it with `check`; a
    /// parse error is reported at `s`. Gives the text and the parsed value.
    fn validated<T>(
        &mut self,
        s: &S,
        check: fn(&str) -> Result<T, String>,
    ) -> Option<(String, Option<T>)> {
        let text = self.text(s)?;
        if !text.exact {
            return Some((text.value, None));
        }
        let parsed = check(&text.value)
            .map_err(|e| self.fail(self.loc(s), e))
            .ok();
        Some((text.value, parsed))
    }

    /// `ports`: each a valid mapping, and no host port published twice.
    fn ports(&mut self, items: &[S]) -> Vec<String> {
        let mut published: Vec<(PortMapping, String, Loc)> = Vec::new();
        let mut out = Vec::new();
        for s in items {
            let Some((text, parsed)) = self.validated(s, PortMapping::parse) else {
                continue;
            };
            if let Some(mapping) = parsed {
                let loc = self.loc(s);
                let clash = published
                    .iter()
                    .find(|(other, ..)| binds_same_host_port(&mapping, other));
                if let Some((_, first, first_loc)) = clash {
                    let msg = format!(
                        "port `{text}` publishes host port {}/{} again: `{first}` at {first_loc} publishes it already\n\
                         hint: a host port can be published once per container; choose another HOST_PORT or remove one",
                        mapping.host_port.unwrap_or_default(),
                        mapping.protocol
                    );
                    self.fail(loc.clone(), msg);
                }
                published.push((mapping, text.clone(), loc));
            }
            out.push(text);
        }
        out
    }

    /// Environment variable names: not empty, without `=` (Docker's `KEY=VALUE`).
    fn env_keys(&mut self, env: &BTreeMap<String, V>) {
        for (key, v) in env {
            if key.is_empty() || key.contains(['=', '\0']) {
                self.fail(
                    self.loc(v),
                    format!(
                        "`env` key `{key}` is not a variable name: it must be non-empty and contain no `=`"
                    ),
                );
            }
        }
    }

    /// `memory`: bytes as an integer, or a size such as `"256m"`.
    fn memory(&mut self, m: &V) -> Option<u64> {
        let loc = self.loc(m);
        let parsed = match m.get_ref() {
            toml::Value::Integer(i) => u64::try_from(*i).ok().filter(|b| *b > 0),
            toml::Value::String(s) => {
                let text = self
                    .renderer
                    .text(s, &loc)
                    .map_err(|e| self.errors.push(e))
                    .ok()?;
                if !text.exact {
                    return None;
                }
                values::parse_memory(&text.value)
            }
            _ => None,
        };
        if parsed.is_none() {
            self.fail(
                loc,
                "invalid `memory`: expected bytes as an integer or a size such as \"256m\" or \"1g\"",
            );
        }
        parsed
    }

    /// `cpus`: a positive number, kept as millicpus.
    fn cpus(&mut self, c: &V) -> Option<u64> {
        let milli = values::cpus_number(c.get_ref()).and_then(values::cpus_to_milli);
        if milli.is_none() {
            self.fail(
                self.loc(c),
                "invalid `cpus`: expected a positive number such as 0.5 or 2",
            );
        }
        milli
    }

    fn healthcheck(&mut self, h: &RawHealthcheck) -> Option<Healthcheck> {
        let test = match self.command(&h.test, "healthcheck.test")? {
            Command::Argv(argv) => argv,
            Command::Shell(s) => vec!["CMD-SHELL".to_owned(), s],
        };
        Some(Healthcheck {
            test,
            interval_secs: h.interval,
            timeout_secs: h.timeout,
            retries: h.retries,
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

/// Whether two mappings bind the same host port and protocol on the same
/// address (no HOST_IP, or an unspecified one, binds every address).
fn binds_same_host_port(a: &PortMapping, b: &PortMapping) -> bool {
    let same_address = match (a.host_ip, b.host_ip) {
        (Some(x), Some(y)) => {
            x == y || (x.is_ipv4() == y.is_ipv4() && (x.is_unspecified() || y.is_unspecified()))
        }
        _ => true,
    };
    a.host_port.is_some() && a.host_port == b.host_port && a.protocol == b.protocol && same_address
}
