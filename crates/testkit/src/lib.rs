//! portico-testkit
