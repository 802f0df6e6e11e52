//! The server's own certificate authority and its mutual-TLS listener.

pub mod files;
