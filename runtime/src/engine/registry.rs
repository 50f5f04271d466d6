//! The deployed programs and their projections, with each projection's position.
//!
//! Invariant: a projection version (`name@vN`) has exactly one definition for the life of
//! a node: deploying the same text again is a no-op, deploying a different one under the
//! same version is refused (deploy it as a new version, which rebuilds beside the old).

use std::collections::HashMap;
use std::sync::Arc;

use datamesh_compiler::check::check_source;
use datamesh_compiler::codegen::{JitProgram, compile};
use datamesh_compiler::diag::Diagnostic;
use datamesh_compiler::ir::{EventType, Field, Program, Type};

use super::EngineKind;
use crate::store::{Store, StoreError, keyspace_name};

/// One deployed projection version.
#[derive(Debug, Clone)]
pub struct ProjectionInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// `name@vN`.
    pub label: String,
    /// Its fjall keyspace.
    pub keyspace: String,
    /// Index of its program in [`Registry::programs`].
    pub program: usize,
    /// Index of the projection in that program.
    pub index: usize,
    /// Next log position to apply.
    pub position: u64,
    /// The fault (JSON) that stopped it.
    pub fault: Option<String>,
    /// It has reached the log head at least once.
    pub caught_up: bool,
    /// Retired: stopped for good, documents deleted; invisible to reads and lists.
    pub retired: bool,
    /// Key component types.
    pub key: Arc<[Type]>,
    /// State fields.
    pub state: Arc<[Field]>,
    /// Normalised definition text, to recognise re-deploys.
    definition: Arc<str>,
}

/// What a deploy did.
#[derive(Debug, Clone, Default)]
pub struct DeployOutcome {
    /// Projection versions started.
    pub started: Vec<String>,
    /// Versions already deployed with the same definition.
    pub unchanged: Vec<String>,
    /// Event types the node did not know before, now declared.
    pub declared: Vec<String>,
    /// Warnings.
    pub warnings: Vec<Diagnostic>,
}

/// Why a deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The program has errors.
    #[error("the program has {} error(s)", .0.iter().filter(|d| d.is_error()).count())]
    Invalid(Vec<Diagnostic>),
    /// It conflicts with what is deployed.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a promote or retire was refused.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such projection version.
    #[error("{0}")]
    NotFound(String),
    /// The version cannot take this step now.
    #[error("{0}")]
    NotReady(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Deployed programs and projections.
#[derive(Debug, Default)]
pub struct Registry {
    /// Programs in deploy order.
    pub programs: Vec<Arc<Program>>,
    /// Projections in deploy order.
    pub projections: Vec<ProjectionInfo>,
    /// Every declared event type (the union of all programs).
    pub schemas: Arc<HashMap<String, EventType>>,
    /// The engine programs are compiled for.
    kind: EngineKind,
    /// The promoted version of each projection name (reads without a version go there).
    pub promoted: HashMap<String, u32>,
    /// Per program (same index as `programs`): its native code, or `None` when the
    /// interpreter runs it (chosen, the JIT could not compile it, or every projection of
    /// it is faulted and its code was freed).
    jit: Vec<Option<JitProgram>>,
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of each projection declaration, by (name, version).
fn definitions(source: &str) -> HashMap<(String, u32), String> {
    let (file, _) = datamesh_compiler::parser::parse(source);
    let mut out = HashMap::new();
    for item in &file.items {
        if let datamesh_compiler::ast::Item::Projection(p) = item {
            let version = p
                .version
                .as_ref()
                .and_then(|v| v.name.strip_prefix('v')?.parse().ok())
                .unwrap_or(1);
            let text = source
                .get(p.span.start as usize..p.span.end as usize)
                .unwrap_or_default();
            out.insert((p.name.name.clone(), version), normalise(text));
        }
    }
    out
}

impl Registry {
    /// Rebuilds the registry from the store's deployments and checkpoints.
    ///
    /// # Errors
    /// Store errors.
    pub fn load(store: &Store, kind: EngineKind) -> Result<Registry, StoreError> {
        let mut registry = Registry {
            kind,
            promoted: store.promoted()?,
            ..Registry::default()
        };
        for deployment in store.deployments()? {
            let planned = registry.plan(&deployment.source);
            match planned.and_then(|p| registry.add(store, &deployment.source, p)) {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(origin = %deployment.origin, error = %e, "a deployed program no longer loads")
                }
            }
        }
        // Programs whose projections were all faulted before the restart never run.
        registry.release_unused_code();
        Ok(registry)
    }

    /// Checks a program, records it in the store and registers its new projections.
    ///
    /// # Errors
    /// [`DeployError`].
    pub fn deploy(
        &mut self,
        store: &Store,
        source: &str,
        origin: &str,
    ) -> Result<DeployOutcome, DeployError> {
        let seq = store.deployments()?.len() as u64;
        let planned = self.plan(source)?;
        // A program with nothing new is not recorded again. Event types count: a
        // program that only declares events puts their schemas in force (validation,
        // strict mode), so it is recorded like one that starts projections.
        if planned.0.started.is_empty() && planned.0.declared.is_empty() {
            return Ok(planned.0);
        }
        store.add_deployment(seq, origin, source)?;
        self.add(store, source, planned)
    }

    /// Checks a program against the deployed ones without changing anything.
    fn plan(&self, source: &str) -> Result<(DeployOutcome, Program), DeployError> {
        let checked = check_source(source);
        let Some(program) = checked.program else {
            return Err(DeployError::Invalid(checked.diagnostics));
        };
        for event in &program.events {
            if let Some(existing) = self.schemas.get(&event.name) {
                let same =
                    existing.fields.len() == event.fields.len()
                        && existing.fields.iter().zip(&event.fields).all(|(a, b)| {
                            a.name == b.name && a.ty == b.ty && a.default == b.default
                        });
                if !same {
                    return Err(DeployError::Conflict(format!(
                        "event `{}` is already declared with different fields by a deployed program; every program on a node must declare an event type the same way",
                        event.name
                    )));
                }
            }
        }
        let texts = definitions(source);
        let mut outcome = DeployOutcome {
            warnings: checked.diagnostics,
            declared: (program.events.iter())
                .filter(|e| !self.schemas.contains_key(&e.name))
                .map(|e| e.name.clone())
                .collect(),
            ..DeployOutcome::default()
        };
        for projection in &program.projections {
            let label = format!("{}@v{}", projection.name, projection.version);
            let text = texts
                .get(&(projection.name.clone(), projection.version))
                .cloned()
                .unwrap_or_default();
            match self.projections.iter().find(|p| p.label == label) {
                Some(existing) if existing.retired => {
                    return Err(DeployError::Conflict(format!(
                        "projection `{label}` was retired; deploy it as a new version"
                    )));
                }
                Some(existing) if *existing.definition == *text => outcome.unchanged.push(label),
                Some(_) => {
                    return Err(DeployError::Conflict(format!(
                        "projection `{label}` is already deployed with a different definition; deploy the change as a new version (v{})",
                        self.projections
                            .iter()
                            .filter(|p| p.name == projection.name)
                            .map(|p| p.version)
                            .max()
                            .unwrap_or(0)
                            + 1
                    )));
                }
                None => outcome.started.push(label),
            }
        }
        Ok((outcome, program))
    }

    /// Registers a planned program: its new projection versions start from their
    /// checkpoints.
    fn add(
        &mut self,
        store: &Store,
        source: &str,
        (outcome, program): (DeployOutcome, Program),
    ) -> Result<DeployOutcome, DeployError> {
        let texts = definitions(source);
        let program = Arc::new(program);
        let program_index = self.programs.len();
        let jit = match self.kind {
            EngineKind::Interp => None,
            EngineKind::Jit => match compile(&program) {
                Ok(code) => Some(code),
                Err(e) => {
                    tracing::warn!(projections = ?outcome.started, reason = %e, "the JIT cannot compile this program; its projections run on the interpreter");
                    None
                }
            },
        };
        for (index, projection) in program.projections.iter().enumerate() {
            let label = format!("{}@v{}", projection.name, projection.version);
            if !outcome.started.contains(&label) {
                continue;
            }
            let fault = store.fault(&label)?;
            let keyspace = keyspace_name(&projection.name, projection.version);
            self.projections.push(ProjectionInfo {
                retired: store.is_retired(&keyspace),
                name: projection.name.clone(),
                version: projection.version,
                keyspace,
                position: store.checkpoint(&label)?,
                label,
                program: program_index,
                index,
                fault,
                caught_up: false,
                key: projection.key.clone().into(),
                state: projection.state.clone().into(),
                definition: texts
                    .get(&(projection.name.clone(), projection.version))
                    .cloned()
                    .unwrap_or_default()
                    .into(),
            });
        }
        for event in &program.events {
            Arc::make_mut(&mut self.schemas)
                .entry(event.name.clone())
                .or_insert_with(|| event.clone());
        }
        self.programs.push(program);
        self.jit.push(jit);
        Ok(outcome)
    }

    /// The native code of program number `program`, if the JIT runs it.
    pub fn jit(&self, program: usize) -> Option<&JitProgram> {
        self.jit.get(program).and_then(Option::as_ref)
    }

    /// Frees the native code of every program whose projections are all faulted: a
    /// faulted projection never applies another event, so that code can never run
    /// again.
    pub fn release_unused_code(&mut self) {
        for (index, code) in self.jit.iter_mut().enumerate() {
            if code.is_some()
                && self
                    .projections
                    .iter()
                    .filter(|p| p.program == index)
                    .all(|p| p.fault.is_some() || p.retired)
            {
                tracing::debug!(
                    program = index,
                    "freeing the native code of a program whose projections are all faulted"
                );
                *code = None;
            }
        }
    }

    /// The lowest position some non-faulted projection still has to apply, if below
    /// `head`.
    pub fn lowest_pending(&self, head: u64) -> Option<u64> {
        self.projections
            .iter()
            .filter(|p| p.fault.is_none() && !p.retired && p.position < head)
            .map(|p| p.position)
            .min()
    }

    /// A projection's position by label.
    pub fn position(&self, label: &str) -> Option<u64> {
        self.projections
            .iter()
            .find(|p| p.label == label)
            .map(|p| p.position)
    }

    /// Whether a projection is faulted (unknown labels count as faulted).
    pub fn is_faulted(&self, label: &str) -> bool {
        self.projections
            .iter()
            .find(|p| p.label == label)
            .is_none_or(|p| p.fault.is_some() || p.retired)
    }

    /// The version a read addresses: the given one, or the active one — the promoted
    /// version if one was promoted, else the newest version that has caught up with the
    /// log and is not faulted (so a new version rebuilding in the background does not
    /// serve reads until it is complete), else the newest version. Retired versions
    /// are never addressed.
    pub fn resolve(&self, name: &str, version: Option<u32>) -> Option<&ProjectionInfo> {
        let mut versions = self
            .projections
            .iter()
            .filter(|p| p.name == name && !p.retired);
        match version.or_else(|| self.promoted_version(name)) {
            Some(v) => versions.find(|p| p.version == v),
            None => {
                let all: Vec<&ProjectionInfo> = versions.collect();
                all.iter()
                    .filter(|p| p.caught_up && p.fault.is_none())
                    .max_by_key(|p| p.version)
                    .or_else(|| all.iter().max_by_key(|p| p.version))
                    .copied()
            }
        }
    }

    /// The promoted version of `name`, if it was promoted and is still there.
    pub fn promoted_version(&self, name: &str) -> Option<u32> {
        let v = *self.promoted.get(name)?;
        self.projections
            .iter()
            .any(|p| p.name == name && p.version == v && !p.retired)
            .then_some(v)
    }

    /// Promotes a version (see [`Registry::resolve`]).
    ///
    /// # Errors
    /// [`LifecycleError`] when it does not exist or cannot serve yet.
    pub fn promote(
        &mut self,
        store: &Store,
        name: &str,
        version: u32,
    ) -> Result<String, LifecycleError> {
        let p = self.lifecycle_target(name, version)?;
        if let Some(fault) = &p.fault {
            return Err(LifecycleError::NotReady(format!(
                "`{}` is faulted and cannot serve reads ({fault}); deploy a fixed version",
                p.label
            )));
        }
        if !p.caught_up {
            return Err(LifecycleError::NotReady(format!(
                "`{}` is still catching up (at position {}); promote it once it has caught up (see `datamesh status`)",
                p.label, p.position
            )));
        }
        let label = p.label.clone();
        store.promote(name, version)?;
        self.promoted.insert(name.to_owned(), version);
        Ok(label)
    }

    /// Retires a version: it stops for good and its documents are deleted.
    ///
    /// # Errors
    /// [`LifecycleError`] when it does not exist or is the promoted version.
    pub fn retire(
        &mut self,
        store: &Store,
        name: &str,
        version: u32,
    ) -> Result<String, LifecycleError> {
        let p = self.lifecycle_target(name, version)?;
        if self.promoted_version(name) == Some(version) {
            return Err(LifecycleError::NotReady(format!(
                "`{}` is the promoted version; promote another version of `{name}` first",
                p.label
            )));
        }
        let (label, keyspace) = (p.label.clone(), p.keyspace.clone());
        store.retire(&keyspace)?;
        if let Some(p) = self.projections.iter_mut().find(|p| p.label == label) {
            p.retired = true;
        }
        self.release_unused_code();
        Ok(label)
    }

    fn lifecycle_target(
        &self,
        name: &str,
        version: u32,
    ) -> Result<&ProjectionInfo, LifecycleError> {
        self.projections
            .iter()
            .find(|p| p.name == name && p.version == version && !p.retired)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .projections
                    .iter()
                    .filter(|p| p.name == name && !p.retired)
                    .map(|p| format!("v{}", p.version))
                    .collect();
                LifecycleError::NotFound(if known.is_empty() {
                    format!("no projection `{name}` is deployed")
                } else {
                    format!(
                        "`{name}` has no version {version} (deployed: {})",
                        known.join(", ")
                    )
                })
            })
    }

    /// Whether `info` is the version reads go to by default.
    pub fn is_active(&self, info: &ProjectionInfo) -> bool {
        self.resolve(&info.name, None)
            .is_some_and(|p| p.label == info.label)
    }
}
