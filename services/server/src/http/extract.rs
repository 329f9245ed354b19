//! Extractors for what a route's path names, checked once here so that handlers and the
//! use cases below them only ever see checked values; a rejection is an [`ApiError`],
//! answered with the JSON error body like every other.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use zhiku_app::error::{ServiceError, existing_kb_name};
use zhiku_schemas::KbName;

use crate::error::ApiError;

/// The decoded value of the path parameter `name` (`{kb}`, `{id}`, `{*id}`).
pub(crate) async fn path_param(parts: &mut Parts, name: &str) -> Result<String, ServiceError> {
    let params = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|e| ServiceError::bad_request("invalid_path", e.body_text()))?;
    params
        .iter()
        .find(|(param, _)| *param == name)
        .map(|(_, value)| value.to_string())
        .ok_or_else(|| ServiceError::Internal(format!("a route without {{{name}}} in its path")))
}

/// The `{kb}` of a route on a knowledge base that must exist. A name no knowledge base can
/// have gets the 404 of one that does not exist, as a lookup by that name would.
pub(crate) struct Kb(pub KbName);

impl<S: Send + Sync> FromRequestParts<S> for Kb {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let name = path_param(parts, "kb").await?;
        Ok(Self(existing_kb_name(&name)?))
    }
}

/// The `{kb}` of a route that creates the knowledge base when it is missing (uploads): a
/// bad name is a 400 (`invalid_kb_name`) saying what a name may be.
pub(crate) struct NewKb(pub KbName);

impl<S: Send + Sync> FromRequestParts<S> for NewKb {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let name = path_param(parts, "kb").await?;
        Ok(Self(KbName::new(name).map_err(ServiceError::from)?))
    }
}

/// The `{kb}` and `{*id}` of a route on one document. The id is a lookup key here, not a
/// new id: one that no document can have simply finds nothing.
pub(crate) struct DocPath {
    /// The knowledge base, as [`Kb`] checks it.
    pub kb: KbName,
    /// The document id, as written in the path.
    pub id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for DocPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Kb(kb) = Kb::from_request_parts(parts, state).await?;
        let id = path_param(parts, "id").await?;
        Ok(Self { kb, id })
    }
}
