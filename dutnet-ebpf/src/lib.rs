#![no_std]
// Lets dutnet list this crate as a build-dependency (aya-template does the same).
