//! Request, response and domain types shared by every zhiku crate.
//!
//! The HTTP API, the CLI and the stores all speak these types, so the wire format is
//! defined once. Optional fields are skipped when absent so that responses stay small and
//! clients written against an older shape keep working as fields are added.

mod ask;
mod conversations;
mod documents;
mod jobs;
mod kbs;
mod models;
pub mod openai;
mod operations;
mod search;
mod stored;

pub use ask::*;
pub use conversations::*;
pub use documents::*;
pub use jobs::*;
pub use kbs::*;
pub use models::*;
pub use operations::*;
pub use search::*;
pub use stored::*;
