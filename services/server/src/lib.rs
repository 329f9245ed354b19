//! zhiku-server
