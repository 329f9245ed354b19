//! The web page (`/`) and the API reference (`/docs`). Their files (`services/server/ui/`)
//! are compiled into the binary: the service runs where there is no internet access, so
//! nothing may be fetched from elsewhere, and the Content-Security-Policy sent with every
//! file makes the browser hold the page to that.

use super::*;

/// Every file of `services/server/ui/`: name, content type, content. `ui_files_are_all_served`
/// below fails when a file is added to the folder and not here.
const ASSETS: &[(&str, &str, &str)] = &[
    ("api.js", JS, include_str!("../../ui/api.js")),
    ("app.js", JS, include_str!("../../ui/app.js")),
    ("ask.js", JS, include_str!("../../ui/ask.js")),
    ("docs.html", HTML, include_str!("../../ui/docs.html")),
    ("docs.js", JS, include_str!("../../ui/docs.js")),
    ("documents.js", JS, include_str!("../../ui/documents.js")),
    ("i18n-zh.js", JS, include_str!("../../ui/i18n-zh.js")),
    ("i18n.js", JS, include_str!("../../ui/i18n.js")),
    ("index.html", HTML, include_str!("../../ui/index.html")),
    ("models.js", JS, include_str!("../../ui/models.js")),
    ("search.js", JS, include_str!("../../ui/search.js")),
    ("style.css", CSS, include_str!("../../ui/style.css")),
    ("ui.js", JS, include_str!("../../ui/ui.js")),
    ("upload.js", JS, include_str!("../../ui/upload.js")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Scripts, styles and requests from this server only; inline styles are allowed because
/// scripts set element styles (progress widths). No frames, plugins or foreign forms.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The file called `name`, with the headers every UI file is sent with.
fn serve(name: &str) -> Option<Response> {
    let (_, content_type, body) = ASSETS.iter().find(|(file, ..)| *file == name)?;
    Some(
        (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // The files change with the binary: revalidating is cheap on loopback and
                // never shows a page older than the server.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
    )
}

/// Web page
///
/// The single-page web interface: knowledge bases, uploads with live progress, documents,
/// a search playground, questions with streamed answers and citations, conversations and
/// feedback, models and the tokenizer. It calls this API with the API key the user enters.
#[utoipa::path(get, path = "/", tag = "reference", responses(
    (status = 200, description = "The HTML page.", body = String, content_type = "text/html"),
))]
pub(crate) async fn index() -> Response {
    serve("index.html").expect("index.html is compiled in")
}

/// Web page asset
///
/// A script or style sheet of the web page or the API reference.
#[utoipa::path(get, path = "/ui/{file}", tag = "reference",
    params(("file" = String, Path, description = "File name, e.g. `app.js`.")),
    responses(
        (status = 200, description = "The file.", body = String),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    serve(&file).ok_or_else(|| ServiceError::NotFound(format!("no UI file {file:?}")).into())
}

/// API reference page
///
/// This API's reference, rendered in the browser from `/openapi.json` by a script the
/// binary serves itself, so it works without internet access.
#[utoipa::path(get, path = "/docs", tag = "reference", responses(
    (status = 200, description = "The HTML page.", body = String, content_type = "text/html"),
))]
pub(crate) async fn docs() -> Response {
    serve("docs.html").expect("docs.html is compiled in")
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    #[test]
    fn ui_files_are_all_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|(name, ..)| name.to_string()).collect();
        served.sort();
        assert_eq!(
            on_disk, served,
            "every file of ui/ is in ASSETS, and only those"
        );
    }

    #[test]
    fn no_file_names_another_site() {
        for (name, _, body) in ASSETS {
            for scheme in ["http://", "https://", "//cdn", "@import url("] {
                assert!(!body.contains(scheme), "{name} mentions {scheme}");
            }
        }
    }
}
