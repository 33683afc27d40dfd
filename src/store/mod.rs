//! The per-user backup store, and the appliance's own state database.

pub mod state_db;
