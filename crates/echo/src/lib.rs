//! portico-echo
