//! Authentication by bearer tokens, and authorization by role, checked in one place.
//!
//! A token is a random 256-bit secret, shown once when it is created
//! (`dmt_<id>_<64 hex digits>`); the node keeps only its SHA-256 in
//! `<data>/tokens.json` (mode 0600), with an id, a name, a role and, once revoked,
//! when. Clients send it as `authorization: Bearer <token>`. The file is managed by
//! `datamesh token create|list|revoke --data DIR`, which works whether or not the node
//! runs: the node reloads the file when it changes (checked at most once a second), so
//! a revocation takes effect within a second and the first admin token needs no
//! network.
//!
//! Authentication is on as soon as the file holds a token that is not revoked; a node
//! without tokens serves everyone (and only on loopback or its Unix socket unless
//! `--insecure`, see `node::check_exposure`). A node serving a network address
//! (with TLS and tokens) requires a token for good ([`Tokens::require`]): revoking
//! the last one locks everyone out. A client whose TLS certificate names a node
//! (`crate::tls`) needs no token: it has that node's peer role.
//!
//! Roles ([`Role`]): `admin` may do everything; `writer` may append; `reader` may
//! read (get, scan, read, subscribe, list projections, status); `peer:NAME` may only
//! read the export stream for `NAME`. A writer's token may be limited to some event
//! types, a reader's to some projections (its `scope`; a reader limited so reads
//! documents of those projections only, not the log). [`authorize`] is the one table
//! mapping each RPC to the roles allowed; the checks that need the request's content
//! (scopes, the export's peer name) are the `Principal::may_*` methods beside it.
//!
//! Invariants: a request without a valid token is refused with UNAUTHENTICATED, one
//! whose role does not allow the RPC with PERMISSION_DENIED, in both cases before it
//! reaches the service, so it changes nothing; a secret is never stored or logged,
//! and hashes are compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::Status;

/// The token file in a data directory.
pub fn tokens_file(data: &Path) -> PathBuf {
    data.join("tokens.json")
}

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Append.
    Writer,
    /// Read: documents, events, status.
    Reader,
    /// The export stream for this peer name, nothing else.
    Peer(String),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Writer => f.write_str("writer"),
            Role::Reader => f.write_str("reader"),
            Role::Peer(name) => write!(f, "peer:{name}"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "admin" => Ok(Role::Admin),
            "writer" => Ok(Role::Writer),
            "reader" => Ok(Role::Reader),
            _ => match text.strip_prefix("peer:") {
                Some(name) => {
                    crate::mesh::check_name(name)?;
                    Ok(Role::Peer(name.to_owned()))
                }
                None => Err(format!(
                    "`{text}` is not a role: admin, writer, reader or peer:NAME"
                )),
            },
        }
    }
}

/// One token as the file keeps it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its id (the part of the token before the secret).
    pub id: String,
    /// A name for people (who or what holds it).
    pub name: String,
    /// `admin`, `writer`, `reader` or `peer:NAME`.
    pub role: String,
    /// SHA-256 of the whole token, hex.
    pub hash: String,
    /// When it was created (µs since the epoch).
    pub created: i64,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<i64>,
    /// A writer's event types, a reader's projections; empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
}

/// The token file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file cannot be read or written.
    #[error("token file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A bad argument (role, scope, name).
    #[error("{0}")]
    Invalid(String),
    /// No token has this id.
    #[error("no token `{0}`")]
    NoToken(String),
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Equal in time independent of where two strings first differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

fn read_file(path: &Path) -> Result<TokenFile, AuthError> {
    let error = |message: String| AuthError::File {
        path: path.to_owned(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| error(format!("not a token file ({e}); restore it from a copy"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
        Err(e) => Err(error(e.to_string())),
    }
}

/// Writes the file whole: a temporary file (0600), synced, renamed over it.
fn write_file(path: &Path, file: &TokenFile) -> Result<(), AuthError> {
    use std::io::Write;
    let error = |e: std::io::Error| AuthError::File {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::log::private_dir(dir).map_err(error)?;
    let tmp = path.with_extension("json.tmp");
    let mut out = crate::log::private_file(&tmp).map_err(error)?;
    let bytes = serde_json::to_vec_pretty(file).unwrap_or_default();
    out.write_all(&bytes).map_err(error)?;
    out.sync_all().map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(error)?;
    Ok(())
}

/// Runs `change` (a read, change and write of the token file) holding the data
/// directory's token lock, so that a node and `datamesh token --data` changing tokens
/// at once do not lose one another's change.
fn locked<T>(data: &Path, change: impl FnOnce() -> Result<T, AuthError>) -> Result<T, AuthError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data.join("tokens.lock");
    let error = |e: std::io::Error| AuthError::File {
        path: path.clone(),
        message: e.to_string(),
    };
    crate::log::private_dir(data).map_err(error)?;
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(error)?;
    lock.lock().map_err(error)?;
    change()
}

/// Creates a token with `role` named `name` in the data directory `data`; returns its
/// record and the secret token, which is shown only now.
///
/// # Errors
/// [`AuthError`].
pub fn create(
    data: &Path,
    role: &str,
    name: &str,
    scope: &[String],
) -> Result<(TokenRecord, String), AuthError> {
    let role: Role = role.parse().map_err(AuthError::Invalid)?;
    if !scope.is_empty() && !matches!(role, Role::Writer | Role::Reader) {
        return Err(AuthError::Invalid(format!(
            "a scope limits a writer (to event types) or a reader (to projections), not {role}"
        )));
    }
    if let Some(bad) = scope.iter().find(|s| s.is_empty() || s.len() > 1024) {
        return Err(AuthError::Invalid(format!(
            "`{bad}` is not an event type or projection name"
        )));
    }
    if name.len() > 256 {
        return Err(AuthError::Invalid(
            "a token name has at most 256 bytes".into(),
        ));
    }
    locked(data, || create_locked(data, role, name, scope))
}

fn create_locked(
    data: &Path,
    role: Role,
    name: &str,
    scope: &[String],
) -> Result<(TokenRecord, String), AuthError> {
    let path = tokens_file(data);
    let mut file = read_file(&path)?;
    let mut random = [0u8; 36];
    getrandom::fill(&mut random)
        .map_err(|e| AuthError::Invalid(format!("no randomness for a token: {e}")))?;
    let id = hex(&random[..4]);
    let token = format!("dmt_{id}_{}", hex(&random[4..]));
    let record = TokenRecord {
        id,
        name: name.to_owned(),
        role: role.to_string(),
        hash: hash(&token),
        created: now_micros(),
        revoked: None,
        scope: scope.to_vec(),
    };
    file.tokens.push(record.clone());
    write_file(&path, &file)?;
    Ok((record, token))
}

/// Every token of the data directory `data` (revoked ones included).
///
/// # Errors
/// [`AuthError`].
pub fn list(data: &Path) -> Result<Vec<TokenRecord>, AuthError> {
    Ok(read_file(&tokens_file(data))?.tokens)
}

/// Revokes the token `id`.
///
/// # Errors
/// [`AuthError::NoToken`] when there is no such token.
pub fn revoke(data: &Path, id: &str) -> Result<TokenRecord, AuthError> {
    locked(data, || revoke_locked(data, id))
}

fn revoke_locked(data: &Path, id: &str) -> Result<TokenRecord, AuthError> {
    let path = tokens_file(data);
    let mut file = read_file(&path)?;
    let Some(record) = file.tokens.iter_mut().find(|t| t.id == id) else {
        return Err(AuthError::NoToken(id.to_owned()));
    };
    record.revoked.get_or_insert_with(now_micros);
    let revoked = record.clone();
    write_file(&path, &file)?;
    Ok(revoked)
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id.
    pub id: String,
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// A writer's event types, a reader's projections; empty: all of them.
    pub scope: Vec<String>,
}

impl Principal {
    /// The node `name`, proved by its client certificate: the role `peer:NAME`.
    pub fn certified(name: &str) -> Principal {
        Principal {
            id: format!("cert:{name}"),
            name: name.to_owned(),
            role: Role::Peer(name.to_owned()),
            scope: Vec::new(),
        }
    }

    fn in_scope(&self, name: &str) -> bool {
        self.scope.is_empty() || self.scope.iter().any(|s| s == name)
    }

    fn out_of_scope(&self, what: &str) -> Status {
        Status::permission_denied(format!(
            "token `{}` ({}) is limited to {}: not {what}",
            self.id,
            self.name,
            self.scope.join(", ")
        ))
    }

    /// Whether this principal may append events of `event_type`.
    ///
    /// # Errors
    /// PERMISSION_DENIED for a type outside a writer's scope.
    pub fn may_append(&self, event_type: &str) -> Result<(), Status> {
        match self.role {
            Role::Writer if !self.in_scope(event_type) => {
                Err(self.out_of_scope(&format!("event type `{event_type}`")))
            }
            _ => Ok(()),
        }
    }

    /// Whether this principal may read documents of `projection`.
    ///
    /// # Errors
    /// PERMISSION_DENIED for a projection outside a reader's scope.
    pub fn may_read_projection(&self, projection: &str) -> Result<(), Status> {
        match self.role {
            Role::Reader if !self.in_scope(projection) => {
                Err(self.out_of_scope(&format!("projection `{projection}`")))
            }
            _ => Ok(()),
        }
    }

    /// Whether this principal may read the log's events (a reader limited to some
    /// projections may not: the events hold what the other projections fold).
    ///
    /// # Errors
    /// PERMISSION_DENIED for a reader with a scope.
    pub fn may_read_log(&self) -> Result<(), Status> {
        match self.role {
            Role::Reader if !self.scope.is_empty() => Err(self.out_of_scope("the log's events")),
            _ => Ok(()),
        }
    }

    /// Whether this principal may read the export stream as `peer`.
    pub fn may_export_to(&self, peer: &str) -> bool {
        match &self.role {
            Role::Admin => true,
            Role::Peer(name) => name == peer,
            Role::Writer | Role::Reader => false,
        }
    }
}

/// The tokens a running node checks requests against, reloaded when the file changes.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    checked: Mutex<Instant>,
    /// Every call needs a token even when none is active (see [`Tokens::require`]).
    required: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Loaded {
    modified: Option<SystemTime>,
    active: Vec<(TokenRecord, Role)>,
}

/// How often a running node looks at the token file.
const RELOAD: Duration = Duration::from_secs(1);

impl Tokens {
    /// The tokens of the data directory `data`.
    ///
    /// # Errors
    /// [`AuthError`] when the file exists but cannot be read.
    pub fn load(data: &Path) -> Result<Tokens, AuthError> {
        let tokens = Tokens {
            path: tokens_file(data),
            loaded: RwLock::new(Loaded::default()),
            checked: Mutex::new(Instant::now()),
            required: std::sync::atomic::AtomicBool::new(false),
        };
        tokens.reload()?;
        Ok(tokens)
    }

    fn reload(&self) -> Result<(), AuthError> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let current = self.loaded.read().map(|l| l.modified).unwrap_or_default();
        if modified.is_some() && modified == current {
            return Ok(());
        }
        let file = read_file(&self.path)?;
        let active = file
            .tokens
            .into_iter()
            .filter(|t| t.revoked.is_none())
            .filter_map(|t| t.role.parse().ok().map(|role| (t, role)))
            .collect();
        if let Ok(mut loaded) = self.loaded.write() {
            *loaded = Loaded { modified, active };
        }
        Ok(())
    }

    /// Re-reads the file if it may have changed (at most once a second).
    fn refresh(&self) {
        let due = self.checked.lock().is_ok_and(|mut at| {
            let due = at.elapsed() >= RELOAD;
            if due {
                *at = Instant::now();
            }
            due
        });
        if due && let Err(e) = self.reload() {
            // The tokens loaded before stay in force; a broken file changes nothing.
            tracing::error!(error = %e, "cannot reload the token file");
        }
    }

    /// Whether requests must carry a token (some token is active, or tokens are
    /// required).
    pub fn enabled(&self) -> bool {
        self.refresh();
        self.required.load(std::sync::atomic::Ordering::Relaxed)
            || self.loaded.read().is_ok_and(|l| !l.active.is_empty())
    }

    /// Requires a token from now on, whatever the file holds: a node serving a
    /// network because it has tokens must lock everyone out when its last token is
    /// revoked or the file deleted, not let everyone in.
    pub fn require(&self) {
        self.required
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Who sent a request with this `authorization` header value.
    ///
    /// # Errors
    /// UNAUTHENTICATED: no header, not a bearer token, or no such active token.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, Status> {
        let Some(header) = header else {
            return Err(Status::unauthenticated(
                "this node requires a token: send `authorization: Bearer <token>` (datamesh: --token-file FILE or DATAMESH_TOKEN)",
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header must be `Bearer <token>`")
            })?
            .trim();
        let unknown = || Status::unauthenticated("the token is not valid (unknown or revoked)");
        let id = token
            .strip_prefix("dmt_")
            .and_then(|rest| rest.split('_').next())
            .ok_or_else(unknown)?;
        let hashed = hash(token);
        let loaded = self.loaded.read().map_err(|_| unknown())?;
        loaded
            .active
            .iter()
            .find(|(t, _)| t.id == id && same(&t.hash, &hashed))
            .map(|(t, role)| Principal {
                id: t.id.clone(),
                name: t.name.clone(),
                role: role.clone(),
                scope: t.scope.clone(),
            })
            .ok_or_else(unknown)
    }
}

/// The one table: whether `principal` may call `method` (the RPC's name, as in
/// `/datamesh.v1.DataMesh/Append`).
///
/// # Errors
/// PERMISSION_DENIED naming the role and what it may do.
pub fn authorize(principal: &Principal, method: &str) -> Result<(), Status> {
    let allowed = match &principal.role {
        Role::Admin => true,
        Role::Writer => matches!(method, "Append"),
        Role::Reader => matches!(
            method,
            "Read" | "Subscribe" | "Get" | "Scan" | "ListProjections" | "Status"
        ),
        Role::Peer(_) => matches!(method, "Export"),
    };
    if allowed {
        return Ok(());
    }
    let may = match &principal.role {
        Role::Admin => "everything",
        Role::Writer => "append",
        Role::Reader => "read and ask for status",
        Role::Peer(_) => "read its export stream",
    };
    Err(Status::permission_denied(format!(
        "token `{}` ({}) has role {}, which may {may}, not call {method}",
        principal.id, principal.name, principal.role
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_by_hash_and_roles_authorize_by_table() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path();
        let (admin, admin_token) = create(data, "admin", "ops", &[]).expect("create");
        let (_, reader_token) = create(data, "reader", "dashboards", &[]).expect("create");
        let (_, peer_token) = create(data, "peer:bank", "bank node", &[]).expect("create");
        assert!(create(data, "root", "x", &[]).is_err());
        assert!(create(data, "admin", "x", &["Paid".to_owned()]).is_err());
        let (_, scoped_token) =
            create(data, "writer", "orders", &["Paid".to_owned()]).expect("create");
        let stored = std::fs::read_to_string(tokens_file(data)).expect("file");
        assert!(!stored.contains(&admin_token), "the secret is never stored");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tokens_file(data))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let tokens = Tokens::load(data).expect("load");
        assert!(tokens.enabled());
        let who = tokens
            .authenticate(Some(&format!("Bearer {admin_token}")))
            .expect("admin");
        assert_eq!((who.role.clone(), who.name.as_str()), (Role::Admin, "ops"));
        for bad in [
            None,
            Some("Basic abc".to_owned()),
            Some("Bearer dmt_nothing".to_owned()),
            Some(format!("Bearer {}x", &admin_token[..admin_token.len() - 1])),
        ] {
            let refused = tokens.authenticate(bad.as_deref()).expect_err("refused");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        let reader = tokens
            .authenticate(Some(&format!("Bearer {reader_token}")))
            .expect("reader");
        assert!(authorize(&reader, "Get").is_ok());
        assert_eq!(
            authorize(&reader, "Append").map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied)
        );
        assert!(authorize(&who, "Deploy").is_ok());
        let peer = tokens
            .authenticate(Some(&format!("Bearer {peer_token}")))
            .expect("peer");
        assert!(authorize(&peer, "Export").is_ok() && authorize(&peer, "Status").is_err());
        assert!(peer.may_export_to("bank") && !peer.may_export_to("reporting"));
        let scoped = tokens
            .authenticate(Some(&format!("Bearer {scoped_token}")))
            .expect("scoped writer");
        assert!(scoped.may_append("Paid").is_ok() && scoped.may_append("Refunded").is_err());
        assert!(who.may_append("Refunded").is_ok());
        assert!(reader.may_read_projection("balances").is_ok() && reader.may_read_log().is_ok());

        // Revoked: refused once the node has looked at the file again.
        revoke(data, &admin.id).expect("revoke");
        *tokens.checked.lock().expect("lock") = Instant::now() - RELOAD;
        // (The API asks `enabled` first, which looks at the file.)
        assert!(tokens.enabled());
        assert!(
            tokens
                .authenticate(Some(&format!("Bearer {admin_token}")))
                .is_err()
        );
        assert!(revoke(data, "nope").is_err());
    }
}
