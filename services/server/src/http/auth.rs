//! Who is calling: the API key's scope, for clients that adapt to it (the web page).

use super::*;

/// Who am I
///
/// What the request's API key may do: `open` when the server needs no key, else the key's
/// scope, id and (for a read or write key) its knowledge base. The web page asks this to
/// offer only the actions the key allows.
#[utoipa::path(get, path = "/v1/auth", tag = "access", responses(
    (status = 200, description = "The caller.", body = Caller),
))]
pub(crate) async fn caller(Extension(principal): Extension<Principal>) -> Json<Caller> {
    Json(principal.caller())
}
