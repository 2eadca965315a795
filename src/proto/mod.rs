//! Socket-free FTP protocol core: bytes in, values out.
//!
//! Nothing in here touches a socket, a clock or a task; the session driver owns those. That
//! keeps every parsing and framing decision unit-testable and lets the property tests feed it
//! arbitrary bytes.
//!
//! - [`args`]: strict validators for the arguments the proxy reads before forwarding
//!   (`REST`, RFC 3659; `TYPE`/`MODE`/`STRU`, RFC 959; `HOST`, RFC 7151).
//! - [`line`]: bounded line framing with Telnet (RFC 854) handling, for both directions
//!   (RFC 959 section 4, RFC 1123 section 4.1.2.12).
//! - [`command`]: the client commands the proxy polices (RFC 959, RFC 2428, RFC 4217,
//!   RFC 3659, RFC 1639); everything else is relayed verbatim.
//! - [`reply`]: RFC 959 section 4.2 replies, with bounded multi-line assembly.
//! - [`hostport`]: PORT/227 (RFC 959, RFC 1123 section 4.1.2.6) and EPRT/EPSV/229 (RFC 2428)
//!   address encodings.

pub mod args;
pub mod command;
pub mod hostport;
pub mod line;
pub mod reply;
