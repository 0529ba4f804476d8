//! portico-proxy
