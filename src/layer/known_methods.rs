//! The HTTP methods recorded as they are; any other is recorded as `_OTHER`.
//!
//! The HTTP semantic conventions (v1.44.0, `http.request.method`): by default the methods of
//! RFC 9110, `PATCH` (RFC 5789) and `QUERY` (httpbis-safe-method-w-body); an instrumentation that
//! can turn a valid method into `_OTHER` MUST let the list be overridden, through
//! `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` when by environment variable: a comma-separated,
//! case-sensitive list that replaces the defaults (it does not add to them).

use std::sync::{Mutex, PoisonError};

use http::Method;

use crate::config::Warnings;

/// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`: the known methods, replacing the defaults.
pub(crate) const OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS: &str =
    "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS";

/// The method names of every custom list the process has built, each kept once: the request
/// path records them as `&'static str`, and a process building layer after layer with the same
/// list keeps one copy.
static INTERNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// The methods a layer knows.
#[derive(Debug, Clone, Default)]
pub(crate) enum KnownMethods {
    /// The conventions' list.
    #[default]
    Conventions,
    /// A list that replaces it, in the case given.
    Custom(Box<[&'static str]>),
}

impl KnownMethods {
    /// The list the builder gave (`configured`), else `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`
    /// read through `env` (unset or empty: the conventions' list), each name trimmed; names that
    /// are not method tokens are ignored with a warning.
    pub(crate) fn resolve(
        configured: Option<&[String]>,
        env: impl Fn(&str) -> Option<String>,
        warnings: &mut Warnings,
    ) -> Self {
        let mut names = Vec::new();
        let mut add = |name: &str, source: &str| {
            if Method::from_bytes(name.as_bytes()).is_err() {
                warnings.push(format!(
                    "{source}: {name:?} is not an HTTP method name: ignored"
                ));
            } else if !names.contains(&name) {
                names.push(intern(name));
            }
        };
        match configured {
            Some(configured) => configured
                .iter()
                .for_each(|name| add(name.trim(), "known_methods")),
            None => {
                let value = env(OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS).unwrap_or_default();
                if value.trim().is_empty() {
                    return Self::Conventions;
                }
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .for_each(|name| add(name, OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS));
            }
        }
        Self::Custom(names.into())
    }

    /// `method` as recorded in `http.request.method` when it is known.
    pub(crate) fn get(&self, method: &Method) -> Option<&'static str> {
        match self {
            Self::Conventions => conventions_method(method),
            Self::Custom(names) => names.iter().copied().find(|name| *name == method.as_str()),
        }
    }
}

/// The conventions' known methods.
fn conventions_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        // An extension method to the `http` crate: compared as the bytes it holds.
        _ if method.as_str() == "QUERY" => "QUERY",
        _ => return None,
    })
}

/// `name`, kept for the rest of the process once per distinct name.
fn intern(name: &str) -> &'static str {
    let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&kept) = interned.iter().find(|kept| **kept == name) {
        return kept;
    }
    let kept: &'static str = Box::leak(name.into());
    interned.push(kept);
    kept
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(configured: Option<&[&str]>, env: &[(&str, &str)]) -> (KnownMethods, usize) {
        let env: HashMap<&str, &str> = env.iter().copied().collect();
        let configured: Option<Vec<String>> =
            configured.map(|names| names.iter().map(|name| name.to_string()).collect());
        let mut warnings = Warnings::default();
        let methods = KnownMethods::resolve(
            configured.as_deref(),
            |name| env.get(name).map(|value| value.to_string()),
            &mut warnings,
        );
        (methods, warnings.0.len())
    }

    fn method(name: &str) -> Method {
        Method::from_bytes(name.as_bytes()).unwrap()
    }

    #[test]
    fn the_conventions_know_rfc_9110_patch_and_query_in_upper_case_only() {
        let (known, _) = resolve(None, &[]);
        for name in [
            "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "QUERY",
        ] {
            assert_eq!(known.get(&method(name)), Some(name));
        }
        for name in ["get", "Query", "PURGE", "PROPFIND"] {
            assert_eq!(known.get(&method(name)), None, "{name}");
        }
    }

    #[test]
    fn the_variable_replaces_the_list_case_sensitively_and_skips_invalid_names() {
        let variable = OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS;
        let (known, warnings) = resolve(None, &[(variable, " GET, PURGE ,,bad name,get,GET")]);
        assert_eq!(warnings, 1);
        assert_eq!(known.get(&method("PURGE")), Some("PURGE"));
        assert_eq!(known.get(&method("GET")), Some("GET"));
        assert_eq!(known.get(&method("get")), Some("get"));
        assert_eq!(known.get(&method("POST")), None, "a full override");
        assert_eq!(known.get(&method("QUERY")), None);
        // Empty is unset.
        let (known, _) = resolve(None, &[(variable, "  ")]);
        assert_eq!(known.get(&method("QUERY")), Some("QUERY"));
    }

    #[test]
    fn the_builder_list_overrides_the_variable_and_may_be_empty() {
        let variable = OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS;
        let (known, _) = resolve(Some(&["PURGE"]), &[(variable, "GET")]);
        assert_eq!(known.get(&method("PURGE")), Some("PURGE"));
        assert_eq!(known.get(&method("GET")), None);
        let (known, _) = resolve(Some(&[]), &[]);
        assert_eq!(known.get(&method("GET")), None);
    }

    #[test]
    fn a_name_is_kept_once_however_many_lists_hold_it() {
        let first = intern("INTERNED-ONCE");
        let second = intern(&String::from("INTERNED-ONCE"));
        assert!(std::ptr::eq(first, second));
    }
}
