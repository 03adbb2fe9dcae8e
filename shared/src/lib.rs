pub mod eventpattern;
pub mod permissions;
pub mod placeholder {}
