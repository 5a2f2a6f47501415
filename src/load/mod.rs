//! `herd load`: an HTTP/1.1 load generator.
