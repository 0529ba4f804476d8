//! portico-translate
