//! Helpers for the end-to-end tests and benchmarks: a small HTTP/1.1 client that talks to the
//! real server over a socket, with keep-alive, and nothing else between.

pub mod http;
