//! Request, response and domain types shared by every zhiku crate.
//!
//! The HTTP API, the CLI and the stores all speak these types, so the wire format is
//! defined once. Optional fields are skipped when absent so that responses stay small and
//! clients written against an older shape keep working as fields are added.

/// The impls every checked string type shares: read as `&str`, printed and parsed as its
/// string, and deserialised only through its check. `$t` has `new` and wraps a `String`;
/// `$err` is its check's error.
macro_rules! checked_string {
    ($t:ident, $err:ident) => {
        impl $t {
            /// The checked string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $t {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.0
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }

        impl std::error::Error for $err {}
    };
}

mod access;
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

pub use access::*;
pub use ask::*;
pub use conversations::*;
pub use documents::*;
pub use jobs::*;
pub use kbs::*;
pub use models::*;
pub use operations::*;
pub use search::*;
pub use stored::*;
