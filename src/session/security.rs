//! The client leg's FTPS commands (RFC 4217) as pure functions: `AUTH`, `PBSZ`, `PROT`,
//! `CCC`, and what a `required` listener lets through before `AUTH`. Shared by the
//! session core and the forward-proxy login, which both answer them the same way; neither
//! `PBSZ` nor `PROT` is ever relayed (the server leg's are ftpgate's own).

use crate::proto::command::{CommandLine, Verb};
use crate::proto::reply::Reply;
use bytes::Bytes;

/// Where the client leg stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientSecurity {
    /// The control connection is TLS (after `AUTH`, or implicit).
    pub tls: bool,
    /// `PBSZ` was accepted (RFC 4217 section 9: it must precede `PROT`).
    pub pbsz: bool,
    /// `PROT P`: the client's data connections are TLS.
    pub private: bool,
}

impl ClientSecurity {
    /// A control connection that has just become TLS (implicit, or after AUTH): no
    /// PBSZ or PROT yet.
    pub fn secured() -> ClientSecurity {
        ClientSecurity {
            tls: true,
            ..ClientSecurity::default()
        }
    }
}

/// `AUTH`: `Ok` to answer 234 and start the handshake, or the refusal.
pub fn auth(
    listener_has_tls: bool,
    state: &ClientSecurity,
    cmd: &CommandLine,
) -> Result<(), Reply> {
    if !listener_has_tls {
        return Err(Reply::new(
            502,
            "AUTH not available: this listener has no TLS.",
        ));
    }
    if state.tls {
        return Err(Reply::new(503, "Already using TLS."));
    }
    let mech = cmd.arg.trim_ascii().to_ascii_uppercase();
    // SSL is what curl tries first; TLS-C and TLS-P are the older drafts' names.
    if matches!(mech.as_slice(), b"TLS" | b"SSL" | b"TLS-C" | b"TLS-P") {
        Ok(())
    } else {
        Err(Reply::new(
            504,
            "Unsupported security mechanism; use AUTH TLS.",
        ))
    }
}

pub fn auth_accepted() -> Reply {
    Reply::new(234, "AUTH TLS successful; start the TLS handshake.")
}

/// `PBSZ`: only `0` makes sense over TLS (RFC 4217 section 8); any decimal is answered
/// `PBSZ=0`.
pub fn pbsz(state: &mut ClientSecurity, cmd: &CommandLine) -> Reply {
    if !state.tls {
        return Reply::new(503, "PBSZ needs AUTH TLS first.");
    }
    let arg = cmd.arg.trim_ascii();
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) || arg.len() > 10 {
        return Reply::new(501, "Syntax error in PBSZ argument: a decimal size.");
    }
    state.pbsz = true;
    Reply::new(200, "PBSZ=0")
}

/// `PROT`: `Ok(private)` for a level ftpgate supports, else the refusal.
pub fn prot(state: &ClientSecurity, cmd: &CommandLine) -> Result<bool, Reply> {
    if !state.tls {
        return Err(Reply::new(503, "PROT needs AUTH TLS first."));
    }
    match cmd.arg.trim_ascii().to_ascii_uppercase().as_slice() {
        // Clear data needs no buffer size; Python's ftplib sends `PROT C` alone, and
        // vsftpd and pure-ftpd take it.
        b"C" => Ok(false),
        b"P" if !state.pbsz => Err(Reply::new(503, "PBSZ must come before PROT P.")),
        b"P" => Ok(true),
        b"S" | b"E" => Err(Reply::new(
            536,
            "Protection level not supported; use PROT C or PROT P.",
        )),
        _ => Err(Reply::new(504, "PROT takes C or P.")),
    }
}

pub fn prot_set(private: bool) -> Reply {
    let level = if private { "P" } else { "C" };
    Reply::new(200, &format!("Protection level set to {level}."))
}

/// `CCC`: a proxy that dropped TLS on the control connection mid-session would let the
/// rest of it be read and injected; refused.
pub fn ccc() -> Reply {
    Reply::new(534, "CCC refused: the control connection stays protected.")
}

/// On a `required` listener before `AUTH`: `None` lets the command through, else the
/// refusal. Nothing but `AUTH`, `FEAT`, `NOOP`, `QUIT`, `HOST` (and `PBSZ`/`PROT`, for
/// their 503) is taken before TLS,
/// so no credential and no command reaches the server in plaintext.
pub fn before_auth(cmd: &CommandLine) -> Option<Reply> {
    let verb = cmd.verb_str();
    // PBSZ and PROT go on to their own 503 (RFC 4217: AUTH first).
    let allowed = matches!(
        cmd.verb,
        Verb::Auth | Verb::Feat | Verb::Quit | Verb::Host | Verb::Pbsz | Verb::Prot
    ) || verb.eq_ignore_ascii_case(b"NOOP");
    if allowed {
        return None;
    }
    Some(match cmd.verb {
        Verb::User | Verb::Pass | Verb::Acct => Reply::new(
            530,
            "This listener requires TLS: send AUTH TLS before logging in.",
        ),
        _ => Reply::new(
            534,
            "Request denied: this listener requires AUTH TLS first.",
        ),
    })
}

/// The feature lines ftpgate itself offers on a TLS listener (RFC 4217 section 6).
pub const FEATURES: [&str; 3] = [" AUTH TLS", " PBSZ", " PROT"];

/// ftpgate's own FEAT reply (before the server is reached or before `AUTH`).
pub fn own_features(tls: bool) -> Reply {
    let mut lines: Vec<Bytes> = vec![Bytes::from_static(b"211-Features:")];
    if tls {
        lines.extend(FEATURES.iter().map(|f| Bytes::from_static(f.as_bytes())));
    }
    lines.extend([
        Bytes::from_static(b" EPRT"),
        Bytes::from_static(b" EPSV"),
        Bytes::from_static(b"211 End"),
    ]);
    Reply { code: 211, lines }
}

/// Data commands on a `data: required` listener before `PROT P` (RFC 4217 section 9).
pub fn data_refused() -> Reply {
    Reply::new(
        521,
        "Data connections must be protected: send PROT P first.",
    )
}
