//! Who is calling: what `GET /v1/auth` answers, so that a client (the web page) shows only
//! what the caller's API key may do.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerScope {
    /// The server needs no API key: everything is allowed.
    Open,
    /// An admin key: everything, on every knowledge base.
    Admin,
    /// A read key: search, ask and read one knowledge base.
    Read,
    /// A write key: read and change one knowledge base.
    Write,
}

/// `GET /v1/auth` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Caller {
    /// What the caller may do.
    pub scope: CallerScope,
    /// The one knowledge base of a read or write key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kb: Option<String>,
    /// The API key's id (never its secret); absent when no key was needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}
