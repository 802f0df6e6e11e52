//! Errors of a catalog repository, each pinned to `file:line:col`.

use std::fmt;
use std::ops::Range;

/// One error at a place in the repository (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    /// Repo-relative, `/`-separated path.
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &str, line: u32, col: u32, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_owned(),
            line,
            col,
            message: message.into(),
        }
    }

    /// An error about a whole file (line 1, column 1).
    pub fn file(file: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(file, 1, 1, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for Diagnostic {}

/// Every error of one operation, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn one(d: Diagnostic) -> Diagnostics {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics(v)
    }
}

/// A place in the repository, kept with parsed values so later stages can
/// point back at the source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Loc {
    pub file: String,
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub(crate) fn start(file: &str) -> Loc {
        Loc {
            file: file.to_owned(),
            line: 1,
            col: 1,
        }
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.file, self.line, self.col, message)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Maps byte offsets of one source file to lines and columns.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub path: String,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub(crate) fn new(path: &str, text: &str) -> SourceFile {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path: path.to_owned(),
            text: text.to_owned(),
            line_starts,
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The place of a byte offset; columns count characters, not bytes.
    pub(crate) fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Loc {
            file: self.path.clone(),
            line: line as u32 + 1,
            col: col as u32 + 1,
        }
    }

    pub(crate) fn span(&self, span: &Range<usize>) -> Loc {
        self.loc(span.start)
    }

    /// A TOML syntax or shape error, placed where the parser points.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> Diagnostic {
        let loc = err
            .span()
            .map_or_else(|| Loc::start(&self.path), |s| self.span(&s));
        let message = err.message().trim_end().trim_end_matches('.').to_owned();
        // Shape errors (from serde) are not syntax errors: no "invalid TOML".
        let shape = [
            "unknown field",
            "missing field",
            "invalid type",
            "invalid value",
            "unknown variant",
            "invalid length",
        ];
        if shape.iter().any(|p| message.starts_with(p)) {
            loc.error(message)
        } else {
            loc.error(format!("invalid TOML: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_char_columns() {
        let f = SourceFile::new("a.toml", "x = 1\ny = \"é\" z\n");
        assert_eq!(f.loc(0).to_string(), "a.toml:1:1");
        assert_eq!(f.loc(6).to_string(), "a.toml:2:1");
        // `z` follows a two-byte character: column counts characters
        assert_eq!(f.loc(15).to_string(), "a.toml:2:9");
    }
}
