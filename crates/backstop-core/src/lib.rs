//! backstop-core
