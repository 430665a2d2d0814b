//! backstop-drivers
