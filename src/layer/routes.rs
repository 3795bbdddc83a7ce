//! Route templates and span names, made once per (method, route) and shared by every request.
//!
//! A span name is `Cow<'static, str>` all the way to the exporter: a name formatted per request
//! is an allocation per request. The routes of a service are a small fixed set, so each
//! `{method} {route}` name is made once and kept for the life of the process, up to
//! [`MAX_NAMES`]; past that (routes that are not templates), names are formatted per request.
//!
//! The names are kept once for the whole process, in [`ROUTES`], shared by every layer: a
//! process that builds layers and routers again and again (tests, hot reloads, a router per
//! tenant) finds the names it made before instead of leaking new ones, and never keeps more than
//! [`MAX_NAMES`] in all.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use rustc_hash::{FxBuildHasher, FxHashMap};

/// How many (method, route) span names the process keeps, for all its layers together.
const MAX_NAMES: usize = 1_000;

/// The routes every layer of the process has seen, with their span names.
pub(crate) static ROUTES: Routes = Routes::new();

/// The routes seen so far, with the span names made from them.
#[derive(Debug)]
pub(crate) struct Routes {
    /// Hashed with FxHash: the keys are the service's own route templates.
    seen: RwLock<FxHashMap<Box<str>, Route>>,
}

#[derive(Debug)]
struct Route {
    template: Arc<str>,
    /// `(method, "{method} {route}")`, for the few methods the route is called with.
    span_names: Vec<(&'static str, &'static str)>,
}

impl Routes {
    /// No route seen yet.
    pub(crate) const fn new() -> Self {
        Self {
            seen: RwLock::new(HashMap::with_hasher(FxBuildHasher)),
        }
    }

    /// The shared template of `route`, and the span name of `method` (the name as the
    /// conventions give it: `HTTP` stands for an unknown method) on it.
    pub(crate) fn named(&self, method: &'static str, route: &str) -> (Arc<str>, Cow<'static, str>) {
        if let Some(known) = self
            .seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            && let Some(&(_, name)) = known.span_names.iter().find(|(m, _)| *m == method)
        {
            return (known.template.clone(), Cow::Borrowed(name));
        }

        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        let names_kept: usize = seen.values().map(|known| known.span_names.len()).sum();
        let name = format!("{method} {route}");
        if names_kept >= MAX_NAMES {
            let template = seen
                .get(route)
                .map_or_else(|| Arc::from(route), |known| known.template.clone());
            return (template, Cow::Owned(name));
        }
        let known = seen.entry(route.into()).or_insert_with(|| Route {
            template: Arc::from(route),
            span_names: Vec::new(),
        });
        let name = match known.span_names.iter().find(|(m, _)| *m == method) {
            Some(&(_, name)) => name,
            None => {
                // Kept for the life of the process, and bounded by MAX_NAMES.
                let name: &'static str = Box::leak(name.into_boxed_str());
                known.span_names.push((method, name));
                name
            }
        };
        (known.template.clone(), Cow::Borrowed(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_named_once_and_shared() {
        let routes = Routes::new();
        let (template, name) = routes.named("GET", "/users/{id}");
        let (again, name_again) = routes.named("GET", "/users/{id}");
        assert_eq!(name, "GET /users/{id}");
        assert!(Arc::ptr_eq(&template, &again));
        assert!(matches!(name_again, Cow::Borrowed(_)));
        let (same_route, post) = routes.named("POST", "/users/{id}");
        assert_eq!(post, "POST /users/{id}");
        assert!(Arc::ptr_eq(&template, &same_route));
    }

    #[test]
    fn past_the_limit_names_are_made_per_request() {
        let routes = Routes::new();
        for n in 0..MAX_NAMES {
            routes.named("GET", &format!("/r{n}"));
        }
        let (_, name) = routes.named("GET", "/one-more");
        assert_eq!(name, "GET /one-more");
        assert!(matches!(name, Cow::Owned(_)));
        let (_, known) = routes.named("GET", "/r1");
        assert!(matches!(known, Cow::Borrowed(_)));
    }
}
