//! The live dashboard page: its HTML, script, style sheet and charting library, embedded
//! in the binary so the page works with no internet.
//!
//! Runs on: the dashboard core (called by the listener's router). Owns: nothing but the
//! static bytes. In: a request path. Out: the content type and bytes of the asset it
//! names, or `None` for a path that is not a page asset. Pure: no I/O, tested directly.
//! The files live in `assets/` beside this module; `assets/README.md` says where the
//! vendored library comes from.

/// The files served, by request path. `/` is the page itself; everything else lives
/// under `/assets/`, so the page's URLs never collide with the API's.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "/assets/style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "/assets/lightweight-charts.standalone.production.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/lightweight-charts.standalone.production.js"),
    ),
    (
        "/assets/lightweight-charts.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("assets/lightweight-charts.LICENSE"),
    ),
];

/// The content type and bytes of the page asset at `path` (without its query string).
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, content_type, body)| (*content_type, *body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_served_with_their_types() {
        let (ct, body) = asset("/").expect("the page");
        assert!(ct.starts_with("text/html"));
        let html = std::str::from_utf8(body).expect("utf-8 page");
        // Every local script and style sheet the page names is served.
        for name in ["/assets/app.js", "/assets/style.css"] {
            assert!(html.contains(name), "the page loads {name}");
        }
        assert!(html.contains("/assets/lightweight-charts.standalone.production.js"));
        for (path, want) in [
            ("/assets/app.js", "text/javascript"),
            ("/assets/style.css", "text/css"),
            (
                "/assets/lightweight-charts.standalone.production.js",
                "text/javascript",
            ),
            ("/assets/lightweight-charts.LICENSE", "text/plain"),
        ] {
            let (ct, body) = asset(path).unwrap_or_else(|| panic!("{path} is served"));
            assert!(ct.starts_with(want), "{path}: {ct}");
            assert!(!body.is_empty(), "{path} is empty");
        }
        assert_eq!(asset("/index.html").map(|a| a.1), Some(body));
    }

    #[test]
    fn the_page_needs_no_internet() {
        // No script, style sheet or font may come from another host: the page must work
        // on a trading desk with no internet access.
        for (path, _, body) in ASSETS {
            if path.ends_with(".LICENSE") || path.contains("lightweight-charts") {
                continue;
            }
            let text = std::str::from_utf8(body).expect("utf-8 asset");
            for needle in [
                "src=\"http",
                "src='http",
                "stylesheet\" href=\"http",
                "url(http",
                "@import",
                "fetch(\"http",
            ] {
                assert!(!text.contains(needle), "{path} refers to {needle}");
            }
        }
    }

    #[test]
    fn other_paths_are_not_assets() {
        for path in [
            "/api/status",
            "/assets/",
            "/assets/../Cargo.toml",
            "/assets/app.js/",
            "/ws",
            "",
        ] {
            assert!(asset(path).is_none(), "{path}");
        }
    }
}
