//! What is wrong with a conf: every problem as one `path: reason` line, collected before anything binds.

use serde::de;
use std::fmt;

/// Everything wrong with a conf file, one `path: reason` line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems in the order they were found, each `path: reason`
    /// (`gateway.clusters[1].port: 0 is not a port (1 to 65535)`).
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(f, "{n} error{} in conf:", if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// One problem: where it is in the conf (`gateway.clusters[1].port`) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub(crate) struct Problem {
    pub path: String,
    pub reason: String,
}

/// Collects the problems of one conf, in the order they are found.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<Problem>);

impl Errors {
    pub fn push(&mut self, path: impl fmt::Display, reason: impl fmt::Display) {
        self.0.push(Problem {
            path: path.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Keeps a parse's value, or records its error under `path`.
    pub fn check<T, E: fmt::Display>(
        &mut self,
        path: impl fmt::Display,
        parsed: Result<T, E>,
    ) -> Option<T> {
        parsed.map_err(|reason| self.push(path, reason)).ok()
    }

    /// How many problems so far: a section compares it before and after its checks.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Whether a problem is reported at `path` or inside it: the value was left out, so a check
    /// that would miss it (a required key, a default that disagrees) has nothing new to say.
    pub fn at(&self, path: &str) -> bool {
        self.0.iter().any(|p| {
            p.path
                .strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    /// A required key left out, unless it was there but wrong (then that is already reported).
    pub fn required<T>(&mut self, value: Option<T>, path: &str, key: &str) -> Option<T> {
        if value.is_none() && !self.at(&format!("{path}.{key}")) {
            self.push(path, format!("missing field `{key}`"));
        }
        value
    }

    /// One line per problem, whatever conf text it echoes: control characters are escaped.
    pub fn into_error(self) -> ConfigError {
        let errors = self
            .0
            .iter()
            .map(|problem| {
                let line = problem.to_string();
                if line.chars().any(char::is_control) {
                    line.chars()
                        .map(|c| match c.is_control() {
                            true => c.escape_default().to_string(),
                            false => c.to_string(),
                        })
                        .collect()
                } else {
                    line
                }
            })
            .collect();
        ConfigError { errors }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The candidate nearest to `name`, when it is near enough to be a typo of it.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)` when a candidate is close to `name`, else nothing.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    closest(name, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// `` `x` is not one of: a, b, c`` and the closest name, for a closed set of names.
pub(crate) fn not_one_of(name: &str, choices: &[&str], more: &str) -> String {
    format!(
        "`{name}` is not one of: {}{more}{}",
        choices.join(", "),
        did_you_mean(name, choices.iter().copied())
    )
}

/// A serde error while `reader` reads a section, and where: the innermost node it passes
/// through names itself.
#[derive(Debug)]
pub(crate) struct ReadError {
    pub path: Option<String>,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Missing(&'static str),
    Other(String),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Missing(key) => write!(f, "missing field `{key}`"),
            Kind::Other(reason) => f.write_str(reason),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    pub fn at(mut self, path: &str) -> ReadError {
        self.path.get_or_insert_with(|| path.to_owned());
        self
    }

    pub fn yaml(e: serde_yaml::Error) -> ReadError {
        de::Error::custom(e)
    }
}

impl de::Error for ReadError {
    fn custom<T: fmt::Display>(reason: T) -> Self {
        ReadError {
            path: None,
            kind: Kind::Other(reason.to_string()),
        }
    }

    fn missing_field(key: &'static str) -> Self {
        ReadError {
            path: None,
            kind: Kind::Missing(key),
        }
    }

    fn unknown_field(key: &str, expected: &'static [&'static str]) -> Self {
        let hint = did_you_mean(key, expected.iter().copied());
        let keys: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
        de::Error::custom(match (hint.is_empty(), keys.is_empty()) {
            (false, _) => format!("unknown field `{key}`{hint}"),
            (true, false) => format!("unknown field `{key}`, expected one of {}", keys.join(", ")),
            (true, true) => format!("unknown field `{key}`, there are no fields"),
        })
    }

    fn unknown_variant(name: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(not_one_of(name, expected, ""))
    }
}
