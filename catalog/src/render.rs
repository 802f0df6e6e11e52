//! minijinja rendering of resource strings and `templates/**` files, with
//! errors placed in the template file or at the TOML value.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};

use crate::diagnostic::{Diagnostic, Loc, SourceFile};
use crate::secret::Secrets;

/// Instructions one template may run before it is stopped: far above what
/// a real configuration file needs, low enough to end an endless loop fast.
pub const TEMPLATE_FUEL: u64 = 2_000_000;

/// A rendered string. `exact` is false in syntax-only mode for a string with
/// template syntax: its value is then the unrendered text and checks that
/// need the real value are skipped.
#[derive(Debug, Clone)]
pub(crate) struct Text {
    pub value: String,
    pub exact: bool,
}

pub(crate) struct Renderer {
    env: Environment<'static>,
    files: Arc<BTreeMap<String, Arc<[u8]>>>,
    /// `None`: syntax-only mode (no node to render for).
    ctx: Option<Value>,
    /// The node's sensitive values, and the flag reading one sets.
    secrets: Secrets,
}

impl Renderer {
    pub(crate) fn new(files: Arc<BTreeMap<String, Arc<[u8]>>>, ctx: Option<Value>) -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_debug(true);
        env.set_keep_trailing_newline(true);
        // Configuration files are not HTML: never escape by file extension.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_path_join_callback(|name, _parent| Cow::Owned(template_name(name)));
        let loader_files = Arc::clone(&files);
        env.set_loader(move |name| load(&loader_files, name));
        Renderer {
            env,
            files,
            ctx,
            secrets: Secrets::default(),
        }
    }

    /// A renderer whose context holds `secrets` (see [`Secrets::template_vars`]).
    pub(crate) fn with_secrets(mut self, secrets: Secrets) -> Renderer {
        self.secrets = secrets;
        self
    }

    pub(crate) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Whether a template read a sensitive value since the last call.
    pub(crate) fn read_sensitive(&self) -> bool {
        self.secrets.taint.take()
    }

    /// Renders one string of a resource, written at `loc`.
    pub(crate) fn text(&self, raw: &str, loc: &Loc) -> Result<Text, Diagnostic> {
        let Some(ctx) = &self.ctx else {
            if !has_syntax(raw) {
                return Ok(Text {
                    value: raw.to_owned(),
                    exact: true,
                });
            }
            return match self.env.template_from_named_str("<inline>", raw) {
                Ok(_) => Ok(Text {
                    value: raw.to_owned(),
                    exact: false,
                }),
                Err(e) => Err(self.error(&e, loc)),
            };
        };
        if !has_syntax(raw) {
            return Ok(Text {
                value: raw.to_owned(),
                exact: true,
            });
        }
        self.env
            .render_named_str("<inline>", raw, ctx)
            .map(|value| Text { value, exact: true })
            .map_err(|e| self.error(&e, loc))
    }

    /// Renders the file `templates/...` named at `loc`.
    pub(crate) fn file(&self, name: &str, loc: &Loc) -> Result<Text, Diagnostic> {
        let tmpl = self.env.get_template(name).map_err(|e| match e.kind() {
            ErrorKind::TemplateNotFound if e.name().is_none_or(|n| n == name) => {
                loc.error(format!("template `{name}` does not exist"))
            }
            _ => self.error(&e, loc),
        })?;
        match &self.ctx {
            None => Ok(Text {
                value: String::new(),
                exact: false,
            }),
            Some(ctx) => tmpl
                .render(ctx)
                .map(|value| Text { value, exact: true })
                .map_err(|e| self.error(&e, loc)),
        }
    }

    /// Checks the syntax of every file under `templates/`.
    pub(crate) fn check_all_templates(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for name in self.files.keys().filter(|p| p.starts_with("templates/")) {
            if let Err(e) = self.env.get_template(name) {
                out.push(self.error(&e, &Loc::start(name)));
            }
        }
        out
    }

    /// Places a template error: in the template file where it happened, or
    /// at the TOML value (`fallback`) for inline strings.
    fn error(&self, err: &Error, fallback: &Loc) -> Diagnostic {
        let inner = innermost(err);
        let loc = match inner.name() {
            Some(name) if name.starts_with("templates/") => self.template_loc(inner, name),
            _ => fallback.clone(),
        };
        loc.error(format!("template error: {}", describe(inner)))
    }

    fn template_loc(&self, err: &Error, name: &str) -> Loc {
        let source = self
            .files
            .get(name)
            .and_then(|b| std::str::from_utf8(b).ok());
        match (source, err.range()) {
            (Some(text), Some(range)) => SourceFile::new(name, text).loc(range.start),
            _ => Loc {
                file: name.to_owned(),
                line: err.line().unwrap_or(1) as u32,
                col: 1,
            },
        }
    }
}

/// The deepest minijinja error of a chain (an include's own error).
fn innermost(err: &Error) -> &Error {
    let mut current = err;
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<Error>() {
            current = e;
        }
        source = s.source();
    }
    current
}

/// A one-line description of a template error, with a hint where useful.
pub(crate) fn describe(err: &Error) -> String {
    let mut msg = err.kind().to_string();
    let expr = err
        .template_source()
        .zip(err.range())
        .and_then(|(src, r)| src.get(expression_start(src, r.start)..r.end))
        .filter(|e| !e.is_empty() && e.len() < 80 && !e.contains('\n'));
    if let Some(detail) = err.detail() {
        msg = format!("{msg}: {detail}");
    } else if let Some(expr) = expr {
        msg = format!("{msg}: `{expr}`");
    }
    match err.kind() {
        ErrorKind::UndefinedError => {
            msg.push_str(
                "\nhint: the context has `node`, `facts`, `vars`, `labels`, `apps`, `environment` and `commit`",
            );
        }
        ErrorKind::OutOfFuel => {
            msg.push_str(&format!(
                "\nhint: the template ran more than {TEMPLATE_FUEL} instructions; is there an endless loop?"
            ));
        }
        _ => {}
    }
    msg
}

/// An attribute error's span starts at the `.`: widen it to the whole
/// dotted name (`facts.os.nope`) so the message shows what was written.
fn expression_start(src: &str, start: usize) -> usize {
    let head = src.get(..start).unwrap_or("");
    let kept = head
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
        .map(char::len_utf8)
        .sum::<usize>();
    start - kept
}

pub(crate) fn has_syntax(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Include names are taken relative to `templates/`, with or without that prefix.
fn template_name(name: &str) -> String {
    if name.starts_with("templates/") || name.starts_with('/') {
        name.to_owned()
    } else {
        format!("templates/{name}")
    }
}

/// Only plain paths under `templates/` load; everything else is "not found".
fn load(files: &BTreeMap<String, Arc<[u8]>>, name: &str) -> Result<Option<String>, Error> {
    let Some(rest) = name.strip_prefix("templates/") else {
        return Ok(None);
    };
    if rest
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Ok(None);
    }
    match files.get(name) {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("{name} is not valid UTF-8"),
            )
        }),
    }
}
