//! backstop-store
