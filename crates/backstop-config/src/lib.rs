//! backstop-config
