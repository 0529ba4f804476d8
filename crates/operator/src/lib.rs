//! portico-operator
