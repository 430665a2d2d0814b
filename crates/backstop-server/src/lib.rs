//! backstop-server
