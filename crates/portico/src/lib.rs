//! portico-portico
