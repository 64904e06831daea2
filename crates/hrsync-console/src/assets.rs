//! The app's files, embedded at build time (`build.rs` lists `assets/`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::{page, Console};

/// Every file of `assets/`: name and contents.
static ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The file called `name`, if there is one.
fn find(name: &str) -> Option<&'static [u8]> {
    ASSETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, body)| *body)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /console/assets/{file}`.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let Some(body) = find(&file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file)),
    );
    // Names carry no version: the browser checks again each time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    page::harden(&mut response);
    response
}

/// Every console page: the app's `index.html`, which routes in the browser.
pub(crate) async fn index(State(_console): State<Arc<Console>>) -> Response {
    let Some(body) = find("index.html") else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the console was built without index.html",
        )
            .into_response();
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type("index.html")),
    );
    page::harden(&mut response);
    page::no_store(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_app_is_embedded_with_its_type() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let on_disk = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(ASSETS.len(), on_disk);
        assert!(find("index.html").is_some());
        assert!(find("main.js").is_some());
        assert!(find("style.css").is_some());
        assert_eq!(content_type("main.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
    }
}
