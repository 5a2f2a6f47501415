//! HTTP/1.1 server side: request parsing and responses (sans-IO).
